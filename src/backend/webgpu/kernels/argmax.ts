/**
 * Greedy sampling on the GPU: the index of the largest value of one row, ties to the lowest index (as
 * the CPU sampler's argmax). One workgroup scans the row with a stride and reduces (value, index) pairs.
 */
import { memoKernel, type Kernel } from "../kernel.js";

export const ARGMAX_GROUP = 256;

/** Bindings: result (u32), logits. Params: n (values), base (first value). */
export function argmaxKernel(): Kernel {
  return memoKernel("argmax", () => ({
    name: "argmax",
    bindings: ["write", "read"],
    code: /* wgsl */ `
struct P { n: u32, base: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> result: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
const WG = ${ARGMAX_GROUP}u;
var<workgroup> bestV: array<f32, WG>;
var<workgroup> bestI: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var v = -3.0e38;
  var idx = 0xffffffffu;
  for (var i = lid; i < p.n; i += WG) {
    let val = x[p.base + i];
    if (val > v || idx == 0xffffffffu) { v = val; idx = i; }
  }
  bestV[lid] = v;
  bestI[lid] = idx;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = bestV[lid + s];
      let oi = bestI[lid + s];
      if (oi != 0xffffffffu && (bestI[lid] == 0xffffffffu || ov > bestV[lid] || (ov == bestV[lid] && oi < bestI[lid]))) {
        bestV[lid] = ov;
        bestI[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { result[0] = bestI[0]; }
}`,
  }));
}
