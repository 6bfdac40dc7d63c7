/**
 * Greedy sampling on the GPU: the index of the largest value of one row, ties to the lowest index (as
 * the CPU sampler's argmax). One workgroup scans the row with a stride and reduces (value, index) pairs.
 */
import { memoKernel, type Kernel } from "../kernel.js";

export const ARGMAX_GROUP = 256;

/** Tree reduction of each thread's (v, idx) into bestV[0], bestI[0]: the larger value, the lower index on ties. */
const REDUCE = /* wgsl */ `bestV[lid] = v;
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
  }`;

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
  ${REDUCE}
  if (lid == 0u) { result[0] = bestI[0]; }
}`,
  }));
}

/** Rows at least this long (and a multiple of 4) take the two-stage argmax. */
export const ARGMAX_SPLIT_MIN = 16384;
/** Workgroups of the two-stage argmax's first stage. */
export const ARGMAX_PARTS = 128;

/**
 * First stage of the two-stage argmax: workgroup w scans vec4s [w·chunk4, (w+1)·chunk4) of the row and
 * writes its first largest (value, index) to parts[w] (index 0xffffffff when its range is empty).
 * One workgroup over a 128K vocabulary took 127 µs of an 8B step on an H200; 128 take a few.
 * Bindings: part values (f32), part indices (u32), logits (vec4). Params: n, base (multiples of 4), chunk4.
 * Grid: ARGMAX_PARTS.
 */
export function argmaxPartsKernel(): Kernel {
  return memoKernel("argmax.parts", () => ({
    name: "argmax",
    bindings: ["write", "write", "read"],
    code: /* wgsl */ `
struct P { n: u32, base: u32, chunk4: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> partV: array<f32>;
@group(0) @binding(2) var<storage, read_write> partI: array<u32>;
@group(0) @binding(3) var<storage, read> x4: array<vec4<f32>>;
const WG = ${ARGMAX_GROUP}u;
var<workgroup> bestV: array<f32, WG>;
var<workgroup> bestI: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let n4 = p.n / 4u;
  let b4 = p.base / 4u;
  let end = min((wid.x + 1u) * p.chunk4, n4);
  var v = -3.0e38;
  var idx = 0xffffffffu;
  for (var j = wid.x * p.chunk4 + lid; j < end; j += WG) {
    let q = x4[b4 + j];
    for (var c = 0u; c < 4u; c++) {
      if (q[c] > v || idx == 0xffffffffu) { v = q[c]; idx = 4u * j + c; }
    }
  }
  ${REDUCE}
  if (lid == 0u) {
    partV[wid.x] = bestV[0];
    partI[wid.x] = bestI[0];
  }
}`,
  }));
}

/** Second stage: the first largest of the parts' (value, index) pairs. Bindings: result, part values, part indices. Params: parts. */
export function argmaxFinalKernel(): Kernel {
  return memoKernel("argmax.final", () => ({
    name: "argmax",
    bindings: ["write", "read", "read"],
    code: /* wgsl */ `
struct P { parts: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> result: array<u32>;
@group(0) @binding(2) var<storage, read> partV: array<f32>;
@group(0) @binding(3) var<storage, read> partI: array<u32>;
const WG = ${ARGMAX_GROUP}u;
var<workgroup> bestV: array<f32, WG>;
var<workgroup> bestI: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var v = -3.0e38;
  var idx = 0xffffffffu;
  // parts cover increasing index ranges: scanning them in order keeps the lowest index on ties
  for (var i = lid; i < p.parts; i += WG) {
    let oi = partI[i];
    if (oi != 0xffffffffu && (idx == 0xffffffffu || partV[i] > v)) { v = partV[i]; idx = oi; }
  }
  ${REDUCE}
  if (lid == 0u) { result[0] = bestI[0]; }
}`,
  }));
}
