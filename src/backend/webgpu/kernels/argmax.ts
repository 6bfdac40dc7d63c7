/**
 * Greedy sampling on the GPU: the index of the largest value of one row, ties to the lowest index (as
 * the CPU sampler's argmax). One workgroup scans the row with a stride and reduces (value, index) pairs.
 */
import { memoKernel, type Kernel } from "../kernel.js";

export const ARGMAX_GROUP = 256;

/**
 * Bindings: result (u32), logits. Params: n (values), base (first value). `vec4` (n and base multiples
 * of 4) reads vec4s, four loads in flight a thread: one workgroup scanning 128K logits one dependent
 * load at a time took 190 us on an H200, 4% of an 8B decode step and more of a 1B one.
 */
export function argmaxKernel(vec4 = false): Kernel {
  const scan = vec4
    ? `let n4 = p.n / 4u;
  let b4 = p.base / 4u;
  for (var j = lid; j < n4; j += 4u * WG) {
    // four independent loads first, then the compares in increasing index order (ties keep the lowest)
    var q: array<vec4<f32>, 4>;
    for (var u = 0u; u < 4u; u++) {
      let jj = min(j + u * WG, n4 - 1u);
      q[u] = x4[b4 + jj];
    }
    for (var u = 0u; u < 4u; u++) {
      let jj = j + u * WG;
      if (jj < n4) {
        for (var c = 0u; c < 4u; c++) {
          let val = q[u][c];
          if (val > v || idx == 0xffffffffu) { v = val; idx = 4u * jj + c; }
        }
      }
    }
  }`
    : `for (var i = lid; i < p.n; i += WG) {
    let val = x[p.base + i];
    if (val > v || idx == 0xffffffffu) { v = val; idx = i; }
  }`;
  return memoKernel(`argmax${vec4 ? ".v4" : ""}`, () => ({
    name: "argmax",
    bindings: ["write", "read"],
    code: /* wgsl */ `
struct P { n: u32, base: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> result: array<u32>;
@group(0) @binding(2) var<storage, read> ${vec4 ? "x4: array<vec4<f32>>" : "x: array<f32>"};
const WG = ${ARGMAX_GROUP}u;
var<workgroup> bestV: array<f32, WG>;
var<workgroup> bestI: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var v = -3.0e38;
  var idx = 0xffffffffu;
  ${scan}
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
