/** A streaming copy, dst = src in vec4s: the bandwidth yardstick that benchmarks compare kernels against. */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

export const COPY_GROUP = 256;

/** Bindings: dst, src. Params: n (vec4s). */
export function copyKernel(): Kernel {
  return memoKernel("copy", () => ({
    name: "copy",
    bindings: ["write", "read"],
    code: /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> src: array<vec4<f32>>;
@compute @workgroup_size(${COPY_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${COPY_GROUP}u + lid;
  if (i < p.n) { dst[i] = src[i]; }
}`,
  }));
}
