/**
 * Elementwise kernels: add, swiglu and addBias, one thread per element. WebGPU forbids binding one
 * buffer both writable and read-only in a dispatch, so when the output aliases an input (x += proj,
 * gate = silu(gate) * up) the variant reads that input through the output binding.
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type BindingKind, type Kernel } from "../kernel.js";

export const ELEMENTWISE_GROUP = 256;

/**
 * A binary elementwise kernel out[i] = f(a[i], b[i]); `aliasA` / `aliasB` say which inputs are the
 * output buffer. Bindings: out, then each input that is not aliased. Params: n.
 */
function binary(name: string, expr: string, aliasA: boolean, aliasB: boolean): Kernel {
  return memoKernel(`${name}.${+aliasA}${+aliasB}`, () => {
    const inputs = [!aliasA ? "a" : "", !aliasB ? "b" : ""].filter((s) => s);
    const decls = inputs.map((n, i) => `@group(0) @binding(${i + 2}) var<storage, read> ${n}: array<f32>;`).join("\n");
    const code = /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${decls}
@compute @workgroup_size(${ELEMENTWISE_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${ELEMENTWISE_GROUP}u + lid;
  if (i >= p.n) { return; }
  let av = ${aliasA ? "out" : "a"}[i];
  let bv = ${aliasB ? "out" : "b"}[i];
  out[i] = ${expr};
}`;
    return { name, code, bindings: ["write", ...inputs.map((): BindingKind => "read")] };
  });
}

/** out = a + b. */
export function addKernel(aliasA: boolean, aliasB: boolean): Kernel {
  return binary("add", "av + bv", aliasA, aliasB);
}

/** out = silu(gate) * up, with silu(g) = g / (1 + exp(-g)). */
export function swigluKernel(aliasGate: boolean, aliasUp: boolean): Kernel {
  return binary("swiglu", "(av / (1.0 + exp(-av))) * bv", aliasGate, aliasUp);
}

/** x[r, c] += bias[c]. Bindings: x, bias. Params: n, cols. */
export function addBiasKernel(): Kernel {
  return memoKernel("addBias", () => ({
    name: "addBias",
    bindings: ["write", "read"],
    code: /* wgsl */ `
struct P { n: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@compute @workgroup_size(${ELEMENTWISE_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${ELEMENTWISE_GROUP}u + lid;
  if (i >= p.n) { return; }
  x[i] += bias[i % p.cols];
}`,
  }));
}
