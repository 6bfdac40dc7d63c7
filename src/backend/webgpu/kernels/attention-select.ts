/**
 * KV selection on the device (docs/kv-cache.md, "WebGPU selection"): the WGSL that lets a selection
 * method pick, per query head, a subset of positions and attend over only those, without a readback.
 *
 * - `selectScoresKernel`: true scores q·k/√d of one query row over positions [0, n), per query head
 *   (the oracle's ranking; H2O's probabilities are softmaxes of them).
 * - `topKKernel`: per head, the sinks plus the k largest keys (ties: lower position), written as an
 *   ascending position list and a count: an exact radix select on the order-preserving u32 image of the
 *   f32 keys (4 passes of 8 bits), then a workgroup prefix sum to compact the marks in position order.
 * - `attentionSelectPartialKernel`: the flash-decoding partial kernel of attention.ts walking a head's
 *   list instead of [0, n); attention.ts's combine kernel merges its splits unchanged.
 *
 * Lists live in one buffer [heads][stride] (the host `KvSelection` layout, u32) plus counts [heads].
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

/** Threads of the scores kernel's workgroups (one position each). */
export const SCORE_GROUP = 64;
const TILE = 64;
const NEG = "-3.0e38";

/** Bindings: keys (write), q, kCache. Params: n, heads, group, width, stride, scale, tiles (ceil(n / 64)). */
export function selectScoresKernel(headDim: number): Kernel {
  return memoKernel(`select.scores.${headDim}`, () => ({
    name: "select.scores",
    bindings: ["write", "read", "read"],
    code: /* wgsl */ `
struct P { n: u32, heads: u32, group: u32, width: u32, stride: u32, scale: f32, tiles: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> keys: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> kc: array<f32>;
const D = ${headDim}u;
@compute @workgroup_size(${SCORE_GROUP})
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  let h = id / p.tiles;
  let t = (id % p.tiles) * ${SCORE_GROUP}u + lid;
  if (h >= p.heads || t >= p.n) { return; }
  let kb = t * p.width + (h / p.group) * D;
  var s = 0.0;
  for (var i = 0u; i < D; i++) { s += q[h * D + i] * kc[kb + i]; }
  keys[h * p.stride + t] = s * p.scale;
}`,
  }));
}

/** Threads of a top-K workgroup (one workgroup per head). */
export const TOPK_GROUP = 256;

/**
 * Bindings: idx (write, [heads][stride] u32), counts (write, [heads] u32), keys ([heads][stride] f32).
 * Params: n, k, stride, sinks. Head h's list: positions t < sinks, plus the k largest keys[h][t] over
 * t < n (ties: lower t first), ascending. One workgroup per head.
 */
export function topKKernel(): Kernel {
  return memoKernel("select.topk", () => ({
    name: "select.topk",
    bindings: ["write", "write", "read"],
    code: /* wgsl */ `
struct P { n: u32, k: u32, stride: u32, sinks: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;
@group(0) @binding(3) var<storage, read> keys: array<f32>;
const WG = ${TOPK_GROUP}u;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> scan: array<u32, WG>;
var<workgroup> found: vec2<u32>;
// a larger f32 maps to a larger u32 (flip every bit of negatives, the sign bit of the rest)
fn ord(x: f32) -> u32 { let u = bitcast<u32>(x); return select(u | 0x80000000u, ~u, (u & 0x80000000u) != 0u); }
@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let h = ${GROUP_INDEX};
  let base = h * p.stride;
  let n = p.n;
  // radix select: after 4 passes 'prefix' is the k-th largest key and 'need' how many keys equal to it are taken
  var prefix = 0u;
  var mask = 0u;
  var need = p.k;
  for (var round = 0u; round < 4u; round++) {
    let shift = 24u - 8u * round;
    atomicStore(&hist[lid], 0u);
    workgroupBarrier();
    for (var t = lid; t < n; t += WG) {
      let u = ord(keys[base + t]);
      if ((u & mask) == prefix) { atomicAdd(&hist[(u >> shift) & 255u], 1u); }
    }
    workgroupBarrier();
    if (lid == 0u) {
      var rem = need;
      var b = 255u;
      loop {
        let c = atomicLoad(&hist[b]);
        if (c >= rem || b == 0u) { break; }
        rem -= c;
        b -= 1u;
      }
      found = vec2<u32>(prefix | (b << shift), rem);
    }
    let f = workgroupUniformLoad(&found);
    prefix = f.x;
    need = f.y;
    mask |= 255u << shift;
  }
  // each thread owns a contiguous chunk of positions, so ranks among equal keys follow position order
  let chunk = (n + WG - 1u) / WG;
  let lo = min(lid * chunk, n);
  let hi = min(lo + chunk, n);
  var eq = 0u;
  for (var t = lo; t < hi; t++) { if (ord(keys[base + t]) == prefix) { eq++; } }
  scan[lid] = eq;
  workgroupBarrier();
  if (lid == 0u) {
    var s = 0u;
    for (var i = 0u; i < WG; i++) { let v = scan[i]; scan[i] = s; s += v; }
  }
  workgroupBarrier();
  let eq0 = scan[lid];
  var rank = eq0;
  var marked = 0u;
  for (var t = lo; t < hi; t++) {
    let u = ord(keys[base + t]);
    if (t < p.sinks || (p.k > 0u && (u > prefix || (u == prefix && rank < need)))) { marked++; }
    if (u == prefix) { rank++; }
  }
  workgroupBarrier();
  scan[lid] = marked;
  workgroupBarrier();
  if (lid == 0u) {
    var s = 0u;
    for (var i = 0u; i < WG; i++) { let v = scan[i]; scan[i] = s; s += v; }
    counts[h] = s;
  }
  workgroupBarrier();
  var o = base + scan[lid];
  rank = eq0;
  for (var t = lo; t < hi; t++) {
    let u = ord(keys[base + t]);
    if (t < p.sinks || (p.k > 0u && (u > prefix || (u == prefix && rank < need)))) { idx[o] = t; o++; }
    if (u == prefix) { rank++; }
  }
}`,
  }));
}

/**
 * Bindings: partial (write), q, kCache, vCache, idx, counts. Params: heads, group, width, splits, span,
 * scale, stride. One workgroup per (head, split) walks entries [split·span, min((split+1)·span, count))
 * of the head's list; partial layout and arithmetic are attention.ts's (its combine kernel follows).
 */
export function attentionSelectPartialKernel(headDim: number): Kernel {
  return memoKernel(`select.attention.${headDim}`, () => {
    const V4 = headDim % 4 === 0;
    const T = V4 ? "vec4<f32>" : "f32";
    const QN = V4 ? headDim / 4 : headDim;
    const DPT = Math.ceil(headDim / TILE);
    return {
      name: "select.attention",
      bindings: ["write", "read", "read", "read", "read", "read"],
      code: /* wgsl */ `
struct P { heads: u32, group: u32, width: u32, splits: u32, span: u32, scale: f32, stride: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> kc: array<${T}>;
@group(0) @binding(4) var<storage, read> vc: array<f32>;
@group(0) @binding(5) var<storage, read> idx: array<u32>;
@group(0) @binding(6) var<storage, read> counts: array<u32>;
const D = ${headDim}u;
const WG = ${TILE}u;
var<workgroup> qs: array<${T}, ${QN}>;
var<workgroup> probs: array<f32, WG>;
var<workgroup> red: array<f32, WG>;
var<workgroup> pos: array<u32, WG>;
var<workgroup> len: u32;

@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  if (id >= p.heads * p.splits) { return; }
  let split = id % p.splits;
  let h = id / p.splits;
  if (lid == 0u) { len = counts[h]; }
  let count = workgroupUniformLoad(&len);
  let start = split * p.span;
  let end = min(start + p.span, count);
  let out = id * (D + 2u);
  let kvBase = (h / p.group) * D;
  let list = h * p.stride;
  for (var i = lid; i < ${QN}u; i += WG) {
    ${V4 ? "qs[i] = vec4<f32>(q[h * D + 4u * i], q[h * D + 4u * i + 1u], q[h * D + 4u * i + 2u], q[h * D + 4u * i + 3u]);" : "qs[i] = q[h * D + i];"}
  }
  workgroupBarrier();
  var m = ${NEG};
  var l = 0.0;
  var acc: array<f32, ${DPT}>;
  for (var t0 = start; t0 < end; t0 += WG) {
    let j = t0 + lid;
    var s = ${NEG};
    if (j < end) {
      let t = idx[list + j];
      pos[lid] = t;
      let kb = ${V4 ? "(t * p.width + kvBase) / 4u" : "t * p.width + kvBase"};
      var d = 0.0;
      for (var i = 0u; i < ${QN}u; i++) { d += ${V4 ? "dot(qs[i], kc[kb + i])" : "qs[i] * kc[kb + i]"}; }
      s = d * p.scale;
    }
    red[lid] = s;
    workgroupBarrier();
    var mNew = m;
    for (var u = 0u; u < WG; u++) { mNew = max(mNew, red[u]); }
    let corr = exp(m - mNew);
    var e = 0.0;
    if (j < end) { e = exp(s - mNew); }
    probs[lid] = e;
    l = l * corr + e;
    m = mNew;
    workgroupBarrier();
    let n = min(WG, end - t0);
    for (var c = 0u; c < ${DPT}u; c++) {
      let i = lid + c * WG;
      if (i < D) {
        var a = acc[c] * corr;
        for (var u = 0u; u < n; u++) { a += probs[u] * vc[pos[u] * p.width + kvBase + i]; }
        acc[c] = a;
      }
    }
    workgroupBarrier();
  }
  probs[lid] = l;
  workgroupBarrier();
  if (lid == 0u) {
    var sum = 0.0;
    for (var u = 0u; u < WG; u++) { sum += probs[u]; }
    partial[out] = m;
    partial[out + 1u] = sum;
  }
  for (var c = 0u; c < ${DPT}u; c++) {
    let i = lid + c * WG;
    if (i < D) { partial[out + 2u + i] = acc[c]; }
  }
}`,
    };
  });
}
