/** Appending keys and values to a layer's cache: a copy of n rows to positions pos0.. (one thread per value). */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

export const KV_GROUP = 256;

/** Bindings: kCache, vCache, k, v. Params: n (values), dstBase (first value in the cache). */
export function kvWriteKernel(): Kernel {
  return memoKernel("kvWrite", () => ({
    name: "kvWrite",
    bindings: ["write", "write", "read", "read"],
    code: /* wgsl */ `
struct P { n: u32, dstBase: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> kc: array<f32>;
@group(0) @binding(2) var<storage, read_write> vc: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@compute @workgroup_size(${KV_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${KV_GROUP}u + lid;
  if (i >= p.n) { return; }
  kc[p.dstBase + i] = k[i];
  vc[p.dstBase + i] = v[i];
}`,
  }));
}
