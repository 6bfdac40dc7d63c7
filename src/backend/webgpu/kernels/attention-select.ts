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
import { accumulateWgsl, maxTreeWgsl } from "./attention.js";

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
    ${maxTreeWgsl("m")}
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
        let count = n;
        ${accumulateWgsl((u) => `vc[pos[${u}] * p.width + kvBase + i]`)}
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

/**
 * Shared WGSL of the H2O / SnapKV kernels: the score of query row r, head h at position t over the cache.
 * Needs p.qCols, p.width, p.group, p.scale and bindings q, kc.
 */
const SCORE_FN = (headDim: number) => /* wgsl */ `
fn score(r: u32, h: u32, t: u32) -> f32 {
  let qb = r * p.qCols + h * ${headDim}u;
  let kb = t * p.width + (h / p.group) * ${headDim}u;
  var s = 0.0;
  for (var i = 0u; i < ${headDim}u; i++) { s += q[qb + i] * kc[kb + i]; }
  return s * p.scale;
}`;

/**
 * Bindings: stats (write, [rows][heads] pairs), q, kCache. Params: rows, heads, group, width, qCols, pos0,
 * scale, r0. For each query row r in [r0, rows) and head h: the max m and Σ exp(s − m) of its causal scores
 * (positions 0 .. pos0 + r). One workgroup of 64 per (row, head).
 */
export function rowStatsKernel(headDim: number): Kernel {
  return memoKernel(`select.rowstats.${headDim}`, () => ({
    name: "select.rowstats",
    bindings: ["write", "read", "read"],
    code: /* wgsl */ `
struct P { rows: u32, heads: u32, group: u32, width: u32, qCols: u32, pos0: u32, scale: f32, r0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> kc: array<f32>;
var<workgroup> red: array<f32, 64>;
${SCORE_FN(headDim)}
@compute @workgroup_size(64)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  if (id >= (p.rows - p.r0) * p.heads) { return; }
  let r = p.r0 + id / p.heads;
  let h = id % p.heads;
  let n = p.pos0 + r + 1u;
  var m = ${NEG};
  for (var t = lid; t < n; t += 64u) { m = max(m, score(r, h, t)); }
  red[lid] = m;
  workgroupBarrier();
  for (var w = 32u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
    workgroupBarrier();
  }
  let mx = red[0];
  workgroupBarrier();
  var l = 0.0;
  for (var t = lid; t < n; t += 64u) { l += exp(score(r, h, t) - mx); }
  red[lid] = l;
  workgroupBarrier();
  for (var w = 32u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] += red[lid + w]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    stats[2u * (r * p.heads + h)] = mx;
    stats[2u * (r * p.heads + h) + 1u] = red[0];
  }
}`,
  }));
}

/**
 * Bindings: out (read_write, [heads][stride] from outBase), stats, q, kCache. Params: rows, heads, group,
 * width, qCols, pos0, scale, r0, stride, outBase, tiles (ceil(n / 64)), accumulate (0/1). For each head h
 * and position t < n = pos0 + rows: Σ over rows r in [r0, rows) that see t of the softmax probability
 * exp(s − m_r)/l_r; added to out (H2O's accumulators) or written (SnapKV's window sums).
 */
export function columnProbsKernel(headDim: number): Kernel {
  return memoKernel(`select.colprobs.${headDim}`, () => ({
    name: "select.colprobs",
    bindings: ["write", "read", "read", "read"],
    code: /* wgsl */ `
struct P { rows: u32, heads: u32, group: u32, width: u32, qCols: u32, pos0: u32, scale: f32, r0: u32, stride: u32, outBase: u32, tiles: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> outv: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> kc: array<f32>;
${SCORE_FN(headDim)}
@compute @workgroup_size(64)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  let h = id / p.tiles;
  let t = (id % p.tiles) * 64u + lid;
  let n = p.pos0 + p.rows;
  if (h >= p.heads || t >= n) { return; }
  var sum = 0.0;
  let first = max(p.r0, select(0u, t - p.pos0, t > p.pos0));
  for (var r = first; r < p.rows; r++) {
    let o = 2u * (r * p.heads + h);
    sum += exp(score(r, h, t) - stats[o]) / stats[o + 1u];
  }
  let at = p.outBase + h * p.stride + t;
  if (p.accumulate == 1u) { outv[at] += sum; } else { outv[at] = sum; }
}`,
  }));
}

/** Bindings: buf (write). Params: count, offset (u32 words). Zeroes words [offset, offset + count). */
export function zeroKernel(): Kernel {
  return memoKernel("select.zero", () => ({
    name: "select.zero",
    bindings: ["write"],
    code: /* wgsl */ `
struct P { count: u32, offset: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> buf: array<u32>;
@compute @workgroup_size(256)
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * 256u + lid;
  if (i < p.count) { buf[p.offset + i] = 0u; }
}`,
  }));
}

/**
 * H2O's decode step, one workgroup of 256 per query head. Bindings: idx (write), counts (write), evicted
 * (read_write u32 [layers][heads][stride]), acc (read f32, same layout). Params: n, k, recent, stride,
 * sinks, base (layer · heads · stride). Active = not evicted (every position joins when written). While
 * more than k positions past the sinks are active, the min(count − k, candidates) candidates (active, in
 * [sinks, n − recent)) with the lowest accumulated attention are evicted (ties: lower position first);
 * then the list is the sinks plus the active positions, ascending.
 */
export function h2oSelectKernel(): Kernel {
  return memoKernel("select.h2o", () => ({
    name: "select.h2o",
    bindings: ["write", "write", "write", "read"],
    code: /* wgsl */ `
struct P { n: u32, k: u32, recent: u32, stride: u32, sinks: u32, base: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> evicted: array<u32>;
@group(0) @binding(4) var<storage, read> acc: array<f32>;
const WG = ${TOPK_GROUP}u;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> tally: array<atomic<u32>, 2>;
var<workgroup> scan: array<u32, WG>;
var<workgroup> found: vec2<u32>;
fn ord(x: f32) -> u32 { let u = bitcast<u32>(x); return select(u | 0x80000000u, ~u, (u & 0x80000000u) != 0u); }
@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let h = ${GROUP_INDEX};
  let e0 = p.base + h * p.stride;
  let l0 = h * p.stride;
  let n = p.n;
  let cut = select(0u, n - p.recent, n > p.recent);
  if (lid < 2u) { atomicStore(&tally[lid], 0u); }
  workgroupBarrier();
  for (var t = p.sinks + lid; t < n; t += WG) {
    if (evicted[e0 + t] == 0u) {
      atomicAdd(&tally[0], 1u);
      if (t < cut) { atomicAdd(&tally[1], 1u); }
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    let count = atomicLoad(&tally[0]);
    let cand = atomicLoad(&tally[1]);
    found = vec2<u32>(select(0u, min(count - p.k, cand), count > p.k), 0u);
  }
  let evict = workgroupUniformLoad(&found).x;
  if (evict > 0u) {
    // radix select of the evict largest −acc among candidates (= lowest acc, ties to the lower position)
    var prefix = 0u;
    var mask = 0u;
    var need = evict;
    for (var round = 0u; round < 4u; round++) {
      let shift = 24u - 8u * round;
      atomicStore(&hist[lid], 0u);
      workgroupBarrier();
      for (var t = p.sinks + lid; t < cut; t += WG) {
        if (evicted[e0 + t] == 0u) {
          let u = ord(-acc[e0 + t]);
          if ((u & mask) == prefix) { atomicAdd(&hist[(u >> shift) & 255u], 1u); }
        }
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
    // ties at the threshold: the lowest positions first, counted in one thread (position order)
    if (lid == 0u) {
      var left = need;
      for (var t = p.sinks; t < cut; t++) {
        if (evicted[e0 + t] == 0u) {
          let u = ord(-acc[e0 + t]);
          if (u == prefix && left > 0u) { left--; evicted[e0 + t] = 2u; }
        }
      }
    }
    storageBarrier();
    workgroupBarrier();
    for (var t = p.sinks + lid; t < cut; t += WG) {
      if (evicted[e0 + t] == 0u && ord(-acc[e0 + t]) > prefix) { evicted[e0 + t] = 1u; }
      if (evicted[e0 + t] == 2u) { evicted[e0 + t] = 1u; }
    }
  }
  storageBarrier();
  workgroupBarrier();
  let chunk = (n + WG - 1u) / WG;
  let lo = min(lid * chunk, n);
  let hi = min(lo + chunk, n);
  var marked = 0u;
  for (var t = lo; t < hi; t++) { if (t < p.sinks || evicted[e0 + t] == 0u) { marked++; } }
  scan[lid] = marked;
  workgroupBarrier();
  if (lid == 0u) {
    var s = 0u;
    for (var i = 0u; i < WG; i++) { let v = scan[i]; scan[i] = s; s += v; }
    counts[h] = s;
  }
  workgroupBarrier();
  var o = l0 + scan[lid];
  for (var t = lo; t < hi; t++) { if (t < p.sinks || evicted[e0 + t] == 0u) { idx[o] = t; o++; } }
}`,
  }));
}

/**
 * After a selected attention: acc[base + h·stride + t] += the head's softmax probability of t over its
 * list. Bindings: acc (read_write), q, kCache, idx, counts. Params: heads, group, width, qCols (the row's
 * width), stride, scale, base. One workgroup of 64 per head.
 */
export function observeKernel(headDim: number): Kernel {
  return memoKernel(`select.observe.${headDim}`, () => ({
    name: "select.observe",
    bindings: ["write", "read", "read", "read", "read"],
    code: /* wgsl */ `
struct P { heads: u32, group: u32, width: u32, qCols: u32, stride: u32, scale: f32, base: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> kc: array<f32>;
@group(0) @binding(4) var<storage, read> idx: array<u32>;
@group(0) @binding(5) var<storage, read> counts: array<u32>;
var<workgroup> red: array<f32, 64>;
var<workgroup> len: u32;
${SCORE_FN(headDim)}
@compute @workgroup_size(64)
fn main(${ENTRY_ARGS}) {
  let h = ${GROUP_INDEX};
  if (h >= p.heads) { return; }
  if (lid == 0u) { len = counts[h]; }
  let count = workgroupUniformLoad(&len);
  let l0 = h * p.stride;
  var m = ${NEG};
  for (var j = lid; j < count; j += 64u) { m = max(m, score(0u, h, idx[l0 + j])); }
  red[lid] = m;
  workgroupBarrier();
  for (var w = 32u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
    workgroupBarrier();
  }
  let mx = red[0];
  workgroupBarrier();
  var l = 0.0;
  for (var j = lid; j < count; j += 64u) { l += exp(score(0u, h, idx[l0 + j]) - mx); }
  red[lid] = l;
  workgroupBarrier();
  for (var w = 32u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] += red[lid + w]; }
    workgroupBarrier();
  }
  let sum = red[0];
  for (var j = lid; j < count; j += 64u) {
    let t = idx[l0 + j];
    acc[p.base + h * p.stride + t] += exp(score(0u, h, t) - mx) / sum;
  }
}`,
  }));
}

/**
 * SnapKV after a prefill chunk: score[base + h·stride + t] for t < T = max-pool of the window sums over
 * [t − half, t + half] ∩ [0, T), or RECENT + t for positions of the observation window (t >= first).
 * Bindings: score (write), sums ([heads][stride]). Params: T, first, half, stride, base, heads, tiles, recent.
 */
export function snapPoolKernel(): Kernel {
  return memoKernel("select.snappool", () => ({
    name: "select.snappool",
    bindings: ["write", "read"],
    code: /* wgsl */ `
struct P { T: u32, first: u32, half: u32, stride: u32, base: u32, heads: u32, tiles: u32, recent: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> score: array<f32>;
@group(0) @binding(2) var<storage, read> sums: array<f32>;
@compute @workgroup_size(64)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  let h = id / p.tiles;
  let t = (id % p.tiles) * 64u + lid;
  if (h >= p.heads || t >= p.T) { return; }
  var v = ${NEG};
  if (t >= p.first) {
    v = p.recent + f32(t);
  } else {
    let lo = select(0u, t - p.half, t > p.half);
    let hi = min(p.T - 1u, t + p.half);
    for (var u = lo; u <= hi; u++) { v = max(v, sums[h * p.stride + u]); }
  }
  score[p.base + h * p.stride + t] = v;
}`,
  }));
}

/**
 * SnapKV's decode ranking: keys[h][t] = score[base + h·stride + t] for prompt positions, RECENT + t for
 * generated ones. Bindings: keys (write), score. Params: n, prompt, stride, base, heads, tiles, recent.
 */
export function snapKeysKernel(): Kernel {
  return memoKernel("select.snapkeys", () => ({
    name: "select.snapkeys",
    bindings: ["write", "read"],
    code: /* wgsl */ `
struct P { n: u32, prompt: u32, stride: u32, base: u32, heads: u32, tiles: u32, recent: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> keys: array<f32>;
@group(0) @binding(2) var<storage, read> score: array<f32>;
@compute @workgroup_size(64)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  let h = id / p.tiles;
  let t = (id % p.tiles) * 64u + lid;
  if (h >= p.heads || t >= p.n) { return; }
  keys[h * p.stride + t] = select(score[p.base + h * p.stride + t], p.recent + f32(t), t >= p.prompt);
}`,
  }));
}

/**
 * Quest: per-channel key minima and maxima of pages [p0, p1) of `page` positions (positions < n), per kv
 * head. Bindings: lo (write), hi (write), kCache. Params: n, page, p0, p1, kvHeads, width, base (layer ·
 * kvHeads · pagesMax · headDim), pagesMax. Thread per (kv head, page, channel).
 */
export function questFoldKernel(headDim: number): Kernel {
  return memoKernel(`select.questfold.${headDim}`, () => ({
    name: "select.questfold",
    bindings: ["write", "write", "read"],
    code: /* wgsl */ `
struct P { n: u32, page: u32, p0: u32, p1: u32, kvHeads: u32, width: u32, base: u32, pagesMax: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> lo: array<f32>;
@group(0) @binding(2) var<storage, read_write> hi: array<f32>;
@group(0) @binding(3) var<storage, read> kc: array<f32>;
const D = ${headDim}u;
@compute @workgroup_size(64)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX} * 64u + lid;
  let i = id % D;
  let pg = p.p0 + (id / D) % (p.p1 - p.p0);
  let g = id / (D * (p.p1 - p.p0));
  if (g >= p.kvHeads) { return; }
  let t0 = pg * p.page;
  let t1 = min(p.n, t0 + p.page);
  var mn = kc[t0 * p.width + g * D + i];
  var mx = mn;
  for (var t = t0 + 1u; t < t1; t++) {
    let x = kc[t * p.width + g * D + i];
    mn = min(mn, x);
    mx = max(mx, x);
  }
  let o = p.base + (g * p.pagesMax + pg) * D + i;
  lo[o] = mn;
  hi[o] = mx;
}`,
  }));
}

/**
 * Quest's selection, one workgroup of 256 per query head. Bindings: idx (write), counts (write), scores
 * (read_write scratch [heads][stride]), lo, hi, q, marks (scratch [heads][pagesMax]). Params: n, k, page, stride, sinks, group, base, pagesMax.
 * A page scores Σ_c max(q_c·max_c, q_c·min_c); pages are taken whole in score order (ties: lower page)
 * while they fit in k positions. Only the last page can be partial, so that greedy rule is: the partial
 * page (size s, rank r among all pages) is taken iff min(r, ⌊k/P⌋)·P + s <= k, and then the best
 * min(F, ⌊(k − s)/P⌋) of the F full pages, else the best min(F, ⌊k/P⌋).
 */
export function questSelectKernel(headDim: number): Kernel {
  return memoKernel(`select.quest.${headDim}`, () => ({
    name: "select.quest",
    bindings: ["write", "write", "write", "read", "read", "read", "write"],
    code: /* wgsl */ `
struct P { n: u32, k: u32, page: u32, stride: u32, sinks: u32, group: u32, base: u32, pagesMax: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> sc: array<f32>;
@group(0) @binding(4) var<storage, read> lo: array<f32>;
@group(0) @binding(5) var<storage, read> hi: array<f32>;
@group(0) @binding(6) var<storage, read> q: array<f32>;
@group(0) @binding(7) var<storage, read_write> marks: array<u32>;
const D = ${headDim}u;
const WG = ${TOPK_GROUP}u;
var<workgroup> rankPartial: atomic<u32>;
var<workgroup> scan: array<u32, WG>;
var<workgroup> plan: vec2<u32>;
fn before(a: u32, b: u32, s0: u32) -> bool { return sc[s0 + a] > sc[s0 + b] || (sc[s0 + a] == sc[s0 + b] && a < b); }
@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let h = ${GROUP_INDEX};
  let s0 = h * p.stride;
  let n = p.n;
  let pages = (n + p.page - 1u) / p.page;
  let full = n / p.page;
  let g = h / p.group;
  for (var pg = lid; pg < pages; pg += WG) {
    let b = p.base + (g * p.pagesMax + pg) * D;
    var s = 0.0;
    for (var i = 0u; i < D; i++) { let qc = q[h * D + i]; s += max(qc * hi[b + i], qc * lo[b + i]); }
    sc[s0 + pg] = s;
  }
  if (lid == 0u) { atomicStore(&rankPartial, 0u); }
  storageBarrier();
  workgroupBarrier();
  if (full < pages) {
    for (var pg = lid; pg < full; pg += WG) { if (before(pg, full, s0)) { atomicAdd(&rankPartial, 1u); } }
  }
  workgroupBarrier();
  if (lid == 0u) {
    let fit = p.k / p.page;
    var m = min(full, fit);
    var partial = 0u;
    if (full < pages) {
      let size = n - full * p.page;
      if (min(atomicLoad(&rankPartial), fit) * p.page + size <= p.k) {
        partial = 1u;
        m = min(full, (p.k - size) / p.page);
      }
    }
    plan = vec2<u32>(m, partial);
  }
  let pl = workgroupUniformLoad(&plan);
  // a full page is kept when fewer than m full pages come before it
  for (var pg = lid; pg < pages; pg += WG) {
    var kept = 0u;
    if (pg < full) {
      var r = 0u;
      for (var o = 0u; o < full; o++) { if (before(o, pg, s0)) { r++; } }
      kept = select(0u, 1u, r < pl.x);
    } else {
      kept = pl.y;
    }
    marks[h * p.pagesMax + pg] = kept;
  }
  storageBarrier();
  workgroupBarrier();
  let chunk = (n + WG - 1u) / WG;
  let a = min(lid * chunk, n);
  let z = min(a + chunk, n);
  var marked = 0u;
  for (var t = a; t < z; t++) { if (t < p.sinks || marks[h * p.pagesMax + t / p.page] == 1u) { marked++; } }
  scan[lid] = marked;
  workgroupBarrier();
  if (lid == 0u) {
    var s = 0u;
    for (var i = 0u; i < WG; i++) { let v = scan[i]; scan[i] = s; s += v; }
    counts[h] = s;
  }
  workgroupBarrier();
  var o = s0 + scan[lid];
  for (var t = a; t < z; t++) { if (t < p.sinks || marks[h * p.pagesMax + t / p.page] == 1u) { idx[o] = t; o++; } }
}`,
  }));
}
