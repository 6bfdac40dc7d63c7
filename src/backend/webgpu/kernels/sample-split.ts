/**
 * Temperature sampling over a vocabulary row in three dispatches of many workgroups, for the common case
 * with no top-k and no top-p cut (min-p allowed): sample.ts's one workgroup took ~0.8 ms of an H200 for a
 * 128K row, longer than a 1B model's whole forward pass.
 *
 * The row is cut into SAMPLE_PARTS contiguous parts, each part into one contiguous range per thread, so
 * the walk is still in ascending id order (as the CPU's `drawKept`):
 * 1. `sampleMaxKernel`: the largest logit key of each part.
 * 2. `sampleSumKernel`: every part takes the row's largest logit from (1) and sums its kept weights
 *    exp((l − max)/T) (kept: weight ≥ min-p), thread ranges summed in order by one thread.
 * 3. `sampleWalkKernel` (one workgroup): goal = u · Σ part sums (in order); the part where the running sum
 *    reaches it, then the thread range inside it (its sums recomputed as in (2)), then the id inside that,
 *    as sample.ts's `firstReaching`: the last member when rounding keeps the sum short of the goal.
 * f32 arithmetic like sample.ts: draws match the CPU's except where u · total lands within rounding of a
 * cumulative boundary.
 */
import { memoKernel, type Kernel } from "../kernel.js";
import { MAX_U, ORDER_KEYS } from "./sample.js";

export const SAMPLE_PARTS = 128;
const WG = 256;
const ALL = 0xffffffff;

/** Rows one dispatch samples (grid y; a server step's batch). */
export const SAMPLE_ROWS = 8;
/** Parameter words: n, base (first row's first value), chunk, result stride (words), then per row the temperature, min-p and u. */
export const SAMPLE_SPLIT_PARAM_BYTES = 16 + 3 * 4 * SAMPLE_ROWS;

const COMMON = /* wgsl */ `
struct P { n: u32, base: u32, chunk: u32, stride: u32, t: array<vec4<f32>, ${SAMPLE_ROWS / 4}>, mp: array<vec4<f32>, ${SAMPLE_ROWS / 4}>, uu: array<vec4<f32>, ${SAMPLE_ROWS / 4}> }
@group(0) @binding(0) var<uniform> p: P;
const WG = ${WG}u;
const PARTS = ${SAMPLE_PARTS}u;
const ALL = ${ALL}u;
var<workgroup> redU: array<u32, WG>;
var<workgroup> redF: array<f32, WG>;
var<private> maxLogit: f32;
// this workgroup's row (grid y): its first value, temperature, min-p, u and its parts' first slot
var<private> rowBase: u32;
var<private> temperature: f32;
var<private> minP: f32;
var<private> uDraw: f32;
var<private> part0: u32;
fn setRow(r: u32) {
  rowBase = p.base + r * p.n;
  temperature = p.t[r / 4u][r % 4u];
  minP = p.mp[r / 4u][r % 4u];
  uDraw = p.uu[r / 4u][r % 4u];
  part0 = r * PARTS;
}

${ORDER_KEYS}
fn weight(l: f32) -> f32 { return exp((l - maxLogit) / temperature); }
${MAX_U}
// ids [i0, i1) of thread lid in part w
fn range(w: u32, lid: u32) -> vec2<u32> {
  let p0 = min(w * p.chunk, p.n);
  let p1 = min(p0 + p.chunk, p.n);
  let sub = (p.chunk + WG - 1u) / WG;
  let i0 = min(p0 + lid * sub, p1);
  return vec2<u32>(i0, min(i0 + sub, p1));
}
// the kept weight of id i (0 when min-p drops it) and whether it is kept
fn member(i: u32) -> vec2<f32> {
  let w = weight(x[rowBase + i]);
  return vec2<f32>(select(0.0, 1.0, w >= minP), w);
}
// the sum of kept weights of thread lid's range of part w, and their count
fn rangeSum(w: u32, lid: u32) -> vec2<f32> {
  let r = range(w, lid);
  var s = 0.0;
  var c = 0.0;
  for (var i = r.x; i < r.y; i++) {
    let e = member(i);
    if (e.x > 0.0) { s += e.y; c += 1.0; }
  }
  return vec2<f32>(s, c);
}
fn rowMax(lid: u32) -> f32 {
  var k = 0u;
  for (var i = lid; i < PARTS; i += WG) { k = max(k, partKey[part0 + i]); }
  return valueOf(maxU(lid, k));
}`;

/**
 * The kernels take up to SAMPLE_ROWS consecutive logits rows at once (grid y = rows; part buffers hold
 * SAMPLE_PARTS words a row; row r's id goes to result[r · stride]), so a server step's draws are three
 * dispatches, not three a row run one after another.
 * Bindings: part keys (u32), logits. Params: SAMPLE_SPLIT_PARAM_BYTES as described there. Grid: SAMPLE_PARTS x rows.
 */
export function sampleMaxKernel(): Kernel {
  return memoKernel("sample.max", () => ({
    name: "sample",
    paramBytes: SAMPLE_SPLIT_PARAM_BYTES,
    bindings: ["write", "read"],
    code: /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> partKey: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
${COMMON}
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  setRow(wid.y);
  let p0 = min(wid.x * p.chunk, p.n);
  let p1 = min(p0 + p.chunk, p.n);
  var k = 0u;
  for (var i = p0 + lid; i < p1; i += WG) { k = max(k, keyOf(x[rowBase + i])); }
  let m = maxU(lid, k);
  if (lid == 0u) { partKey[part0 + wid.x] = m; }
}`,
  }));
}

/** Bindings: part sums (f32), part keys, logits. Grid: SAMPLE_PARTS x rows. */
export function sampleSumKernel(): Kernel {
  return memoKernel("sample.sum", () => ({
    name: "sample",
    paramBytes: SAMPLE_SPLIT_PARAM_BYTES,
    bindings: ["write", "read", "read"],
    code: /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> partSum: array<f32>;
@group(0) @binding(2) var<storage, read> partKey: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
${COMMON}
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  setRow(wid.y);
  maxLogit = rowMax(lid);
  let e = rangeSum(wid.x, lid);
  redF[lid] = e.x;
  redU[lid] = u32(e.y);
  workgroupBarrier();
  if (lid == 0u) {
    // in thread order, as the walk adds them; -1 marks a part without members
    var s = 0.0;
    var any = false;
    for (var j = 0u; j < WG; j++) { if (redU[j] > 0u) { s += redF[j]; any = true; } }
    partSum[part0 + wid.x] = select(-1.0, s, any);
  }
}`,
  }));
}

/** Bindings: result (u32), part sums, part keys, logits. Grid: 1 x rows. */
export function sampleWalkKernel(): Kernel {
  return memoKernel("sample.walk", () => ({
    name: "sample",
    paramBytes: SAMPLE_SPLIT_PARAM_BYTES,
    bindings: ["write", "read", "read", "read"],
    code: /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> result: array<u32>;
@group(0) @binding(2) var<storage, read> partSum: array<f32>;
@group(0) @binding(3) var<storage, read> partKey: array<u32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
${COMMON}
var<workgroup> shU: array<u32, 2>;
var<workgroup> shF: array<f32, 2>;
var<workgroup> ps: array<f32, PARTS>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  setRow(wid.y);
  maxLogit = rowMax(lid);
  // the part sums into workgroup memory at once: thread 0's walk over them is serial (a dependent global
  // load per part would be a chain of 128 loads)
  for (var w = lid; w < PARTS; w += WG) { ps[w] = partSum[part0 + w]; }
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    for (var w = 0u; w < PARTS; w++) { if (ps[w] >= 0.0) { total += ps[w]; } }
    let goal = uDraw * total;
    var acc = 0.0;
    var owner = ALL;
    var base = 0.0;
    for (var w = 0u; w < PARTS; w++) {
      if (ps[w] >= 0.0) {
        if (owner == ALL || acc < goal) { owner = w; base = acc; }
        acc += ps[w];
        if (acc >= goal) { break; }
      }
    }
    shU[0] = owner;
    shF[0] = base;
    shF[1] = goal;
  }
  let part = workgroupUniformLoad(&shU[0]);
  workgroupBarrier();
  if (part == ALL) {
    if (lid == 0u) { result[wid.y * p.stride] = ALL; }
    return;
  }
  let e = rangeSum(part, lid);
  redF[lid] = e.x;
  redU[lid] = u32(e.y);
  workgroupBarrier();
  if (lid == 0u) {
    var acc = shF[0];
    var owner = ALL;
    var base = 0.0;
    for (var j = 0u; j < WG; j++) {
      if (redU[j] > 0u) {
        if (owner == ALL || acc < shF[1]) { owner = j; base = acc; }
        acc += redF[j];
        if (acc >= shF[1]) { break; }
      }
    }
    shU[1] = owner;
    shF[0] = base;
  }
  workgroupBarrier();
  if (lid == shU[1]) {
    let r = range(part, lid);
    var acc = shF[0];
    var last = ALL;
    for (var i = r.x; i < r.y; i++) {
      let m = member(i);
      if (m.x > 0.0) {
        last = i;
        acc += m.y;
        if (acc >= shF[1]) { break; }
      }
    }
    result[wid.y * p.stride] = last;
  }
}`,
  }));
}
