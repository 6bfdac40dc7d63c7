/**
 * Causal grouped-query attention over the GPU KV cache, split over positions (flash-decoding): a
 * workgroup handles one (query row, head, split) and walks its span of positions in tiles of TILE,
 * keeping an online softmax (running max, per-thread running sums, rescaled accumulators); a second
 * kernel merges the splits of each (row, head). A decode step has one query row, so the splits are
 * what fills the GPU; prefill has rows x heads workgroups already and uses fewer.
 *
 * The work of a split is chains of dependent loads, so the kernels are latency-bound, not
 * bandwidth-bound: decode aims for ~1024 workgroups of spans down to 16 positions; four threads share
 * each key's q·k (coalesced loads, and a 16-position span still keeps all 64 threads loading); the tile
 * max is a log2 tree in workgroup memory; V loads go four at a time before their (serial-order) sums;
 * the combine loads each split's max and weight once into workgroup memory. The WGSL pieces are shared
 * with kernels/rows.ts (whose rows must equal this kernel's bit for bit) and kernels/attention-select.ts.
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";
import { checkKv4HeadDim, isKv4, kvDecode4, type GpuKvFormat } from "./kv.js";

const TILE = 64;
/** Most splits of one (row, head). */
export const MAX_SPLITS = 64;
/** Finite "minus infinity", so that exp(m - m') never sees inf - inf. */
const NEG = "-3.0e38";

/** Fewest positions a split walks: shorter spans cost more partials to merge than they save. */
const MIN_SPAN = 16;
/**
 * Workgroups a decode step aims for. A split's work is chains of dependent loads (q·k, then V per
 * position), so the kernel is latency-bound: more, shorter splits put more of them in flight at once.
 */
const TARGET_GROUPS = 1024;

/**
 * Splits for `rows` query rows of `heads` heads over up to `maxLen` positions. Batched attention
 * (kernels/rows.ts) asks this for each row alone, so both paths split a row alike.
 */
export function attentionSplits(rows: number, heads: number, maxLen: number): number {
  if (rows * heads >= 256) return 1;
  const spans = Math.ceil(maxLen / MIN_SPAN);
  return Math.max(1, Math.min(MAX_SPLITS, spans, Math.ceil(TARGET_GROUPS / (rows * heads))));
}

/**
 * WGSL: `mNew`, the max of `m` and the WG scores in workgroup array `red` (filled, then a barrier), by a
 * log2(WG)-step tree. Max is exact in any order, so this equals a serial scan bit for bit.
 */
export const maxTreeWgsl = (m: string) => `for (var w = WG / 2u; w > 0u; w >>= 1u) {
      if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
      workgroupBarrier();
    }
    let mNew = max(${m}, red[0]);`;

/**
 * WGSL: `a += probs[u] * V(u)` for u in [0, count), four loads issued before their sums so that their
 * latencies overlap; the sums run in the serial order.
 */
export function accumulateWgsl(v: (u: string) => string): string {
  return `var u = 0u;
        for (; u + 4u <= count; u += 4u) {
          let v0 = ${v("u")};
          let v1 = ${v("(u + 1u)")};
          let v2 = ${v("(u + 2u)")};
          let v3 = ${v("(u + 3u)")};
          a += probs[u] * v0;
          a += probs[u + 1u] * v1;
          a += probs[u + 2u] * v2;
          a += probs[u + 3u] * v3;
        }
        for (; u < count; u++) { a += probs[u] * ${v("u")}; }`;
}

/**
 * WGSL body of a combine workgroup: given `splits` (<= MAX_SPLITS), `base` (the row-head's first
 * partial) and `outAt` (the row-head's first output), merges the splits. Each thread loads one split's
 * max and sum once into workgroup memory, instead of every thread reading all of them from global
 * memory in dependent chains; the sums keep the serial order, so the result equals a serial merge's.
 */
export function combineWgsl(outAt: string): string {
  return `var ms = ${NEG};
  if (lid < splits) { ms = partial[base + lid * (D + 2u)]; }
  red[lid] = ms;
  workgroupBarrier();
  ${maxTreeWgsl(NEG)}
  let m = mNew;
  if (lid < splits) {
    wts[lid] = exp(ms - m);
    sums[lid] = partial[base + lid * (D + 2u) + 1u];
  }
  workgroupBarrier();
  var l = 0.0;
  for (var s = 0u; s < splits; s++) { l += wts[s] * sums[s]; }
  for (var i = lid; i < D; i += WG) {
    var a = 0.0;
    var s = 0u;
    for (; s + 4u <= splits; s += 4u) {
      let o = base + s * (D + 2u) + 2u + i;
      let y0 = partial[o];
      let y1 = partial[o + (D + 2u)];
      let y2 = partial[o + 2u * (D + 2u)];
      let y3 = partial[o + 3u * (D + 2u)];
      a += wts[s] * y0;
      a += wts[s + 1u] * y1;
      a += wts[s + 2u] * y2;
      a += wts[s + 3u] * y3;
    }
    for (; s < splits; s++) { a += wts[s] * partial[base + s * (D + 2u) + 2u + i]; }
    out[${outAt} + i] = a / l;
  }`;
}

/** Workgroup arrays of combineWgsl (WG = 64 = MAX_SPLITS threads). */
export const COMBINE_SHARED = `var<workgroup> red: array<f32, ${MAX_SPLITS}>;
var<workgroup> wts: array<f32, ${MAX_SPLITS}>;
var<workgroup> sums: array<f32, ${MAX_SPLITS}>;`;

/** Threads that share one key's q·k, each summing every KEY_LANES-th element (coalesced loads). */
const KEY_LANES = 4;

/** Workgroup array of scoresWgsl: one partial dot a thread and pass. */
export const SCORES_SHARED = `var<workgroup> dots: array<f32, ${TILE * KEY_LANES}>;`;

/**
 * WGSL: the scores of the tile of positions [t0, min(t0 + WG, end)), leaving `t` (this thread's position
 * in the tile) and `s` (its scaled score, NEG past end). KEY_LANES threads share a key, so a split
 * shorter than WG still keeps every thread loading; `prelude` (per key) and `term` (element i) see the
 * key's list position `t` (`kb` declares its base index), and qs holds the query as `qn` elements.
 */
export function scoresWgsl(qn: number, scale: string, kb: string, prelude: string, term: string): string {
  return `for (var k0 = 0u; k0 < min(WG, end - t0); k0 += WG / ${KEY_LANES}u) {
      let t = t0 + k0 + lid / ${KEY_LANES}u;
      var d = 0.0;
      if (t < end) {
        ${kb}
        ${prelude}
        for (var i = lid % ${KEY_LANES}u; i < ${qn}u; i += ${KEY_LANES}u) { d += ${term}; }
      }
      dots[k0 * ${KEY_LANES}u + lid] = d;
    }
    workgroupBarrier();
    let t = t0 + lid;
    var s = ${NEG};
    if (t < end) {
      // KEY_LANES = 4 partial dots, summed pairwise
      let b = lid * ${KEY_LANES}u;
      s = ((dots[b] + dots[b + 1u]) + (dots[b + 2u] + dots[b + 3u])) * ${scale};
    }`;
}

/** Floats of one split's partial result: max, sum, then headDim accumulators. */
export const partialStride = (headDim: number) => headDim + 2;

/**
 * Bindings: partial, q, kCache, vCache (int8: partial, q, kCodes, kScales, vCodes, vScales). Params: rows,
 * heads, group (query heads a kv head), width (kv values a position), qCols, pos0, splits, span (positions
 * a split), scale. The int8 variant reads codes packed four to a u32 and one f32 scale per (position, kv
 * head), and dequantizes each value (code × scale, f32) before it is used: it computes the f32 kernel's
 * arithmetic over the dequantized cache.
 */
export function attentionPartialKernel(headDim: number, kvFormat: GpuKvFormat = "f32", windowed = false): Kernel {
  const int8 = kvFormat === "int8";
  // int4, razer, nvfp4: the 4-bit caches of kernels/kv.ts, decoded per element by kvDecode4 (same bindings as int8)
  const four = isKv4(kvFormat);
  if (int8 && headDim % 4 !== 0) throw new Error(`int8 KV attention: head dim ${headDim} must be a multiple of 4`);
  if (four) checkKv4HeadDim(kvFormat, headDim);
  const quant = int8 || four;
  // windowed (StreamingLLM): list entry j is position j below `sinks`, else j + shift; pos0 + 1 = list length
  const at = (e: string) => (windowed ? `at(${e})` : e);
  return memoKernel(`attention.partial.${headDim}${kvFormat === "f32" ? "" : `.${kvFormat}`}${windowed ? ".window" : ""}`, () => {
    const V4 = headDim % 4 === 0;
    const T = V4 ? "vec4<f32>" : "f32";
    const QN = V4 ? headDim / 4 : headDim;
    const DPT = Math.ceil(headDim / TILE);
    const code = /* wgsl */ `
struct P { rows: u32, heads: u32, group: u32, width: u32, qCols: u32, pos0: u32, splits: u32, span: u32, scale: f32${windowed ? ", sinks: u32, shift: u32" : ""} }
${windowed ? "fn at(j: u32) -> u32 { return select(j + p.shift, j, j < p.sinks); }" : ""}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
${four ? `@group(0) @binding(3) var<storage, read> kq: array<u32>;
@group(0) @binding(4) var<storage, read> ks: array<u32>;
@group(0) @binding(5) var<storage, read> vq: array<u32>;
@group(0) @binding(6) var<storage, read> vs: array<u32>;
${kvDecode4(kvFormat, headDim)}` : int8 ? `@group(0) @binding(3) var<storage, read> kq: array<u32>;
@group(0) @binding(4) var<storage, read> ks: array<f32>;
@group(0) @binding(5) var<storage, read> vq: array<u32>;
@group(0) @binding(6) var<storage, read> vs: array<f32>;
fn i8(w: u32, b: u32) -> f32 { return f32(bitcast<i32>(w << (24u - 8u * b)) >> 24u); }
fn kAt(i: u32, s: f32) -> vec4<f32> { let w = kq[i]; return vec4<f32>(i8(w, 0u) * s, i8(w, 1u) * s, i8(w, 2u) * s, i8(w, 3u) * s); }
fn vAt(i: u32, kvh: u32) -> f32 { return i8(vq[i / 4u], i % 4u) * vs[kvh]; }` : `@group(0) @binding(3) var<storage, read> kc: array<${T}>;
@group(0) @binding(4) var<storage, read> vc: array<f32>;`}
const D = ${headDim}u;
const WG = ${TILE}u;
var<workgroup> qs: array<${T}, ${QN}>;
var<workgroup> probs: array<f32, WG>;
var<workgroup> red: array<f32, WG>;
${SCORES_SHARED}

@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  if (id >= p.rows * p.heads * p.splits) { return; }
  let split = id % p.splits;
  let h = (id / p.splits) % p.heads;
  let r = id / (p.splits * p.heads);
  let len = p.pos0 + r + 1u;
  let start = split * p.span;
  let end = min(start + p.span, len);
  let out = id * (D + 2u);
  let kvBase = (h / p.group) * D;
  let qBase = r * p.qCols + h * D;
  for (var i = lid; i < ${QN}u; i += WG) {
    ${V4 ? "qs[i] = vec4<f32>(q[qBase + 4u * i], q[qBase + 4u * i + 1u], q[qBase + 4u * i + 2u], q[qBase + 4u * i + 3u]);" : "qs[i] = q[qBase + i];"}
  }
  workgroupBarrier();
  var m = ${NEG};
  var l = 0.0;
  var acc: array<f32, ${DPT}>;
  for (var t0 = start; t0 < end; t0 += WG) {
    ${scoresWgsl(
      QN,
      "p.scale",
      V4 ? `let kb = (${at("t")} * p.width + kvBase) / 4u;` : `let kb = ${at("t")} * p.width + kvBase;`,
      four ? `let ph = ${at("t")} * p.width / D + kvBase / D;` : int8 ? `let sk = ks[${at("t")} * p.width / D + kvBase / D];` : "",
      four ? "dot(qs[i], kv4_k(ph, i))" : int8 ? "dot(qs[i], kAt(kb + i, sk))" : V4 ? "dot(qs[i], kc[kb + i])" : "qs[i] * kc[kb + i]",
    )}
    red[lid] = s;
    workgroupBarrier();
    ${maxTreeWgsl("m")}
    let corr = exp(m - mNew);
    var e = 0.0;
    if (t < end) { e = exp(s - mNew); }
    probs[lid] = e;
    l = l * corr + e;
    m = mNew;
    workgroupBarrier();
    let count = min(WG, end - t0);
    for (var j = 0u; j < ${DPT}u; j++) {
      let i = lid + j * WG;
      if (i < D) {
        var a = acc[j] * corr;
        ${accumulateWgsl((u) => {
          const t = at(`(t0 + ${u})`);
          return four ? `kv_v(${t} * p.width / D + kvBase / D, i)` : int8 ? `vAt(${t} * p.width + kvBase + i, ${t} * p.width / D + kvBase / D)` : `vc[${t} * p.width + kvBase + i]`;
        })}
        acc[j] = a;
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
  for (var j = 0u; j < ${DPT}u; j++) {
    let i = lid + j * WG;
    if (i < D) { partial[out + 2u + i] = acc[j]; }
  }
}`;
    return { name: "attention.partial", code, bindings: quant ? ["write", "read", "read", "read", "read", "read"] : ["write", "read", "read", "read"] };
  });
}

/** Bindings: out, partial. Params: rows, heads, splits, outCols. One workgroup per (row, head). */
export function attentionCombineKernel(headDim: number): Kernel {
  return memoKernel(`attention.combine.${headDim}`, () => ({
    name: "attention.combine",
    bindings: ["write", "read"],
    code: /* wgsl */ `
struct P { rows: u32, heads: u32, splits: u32, outCols: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> partial: array<f32>;
const D = ${headDim}u;
const WG = 64u;
${COMBINE_SHARED}
@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let rh = ${GROUP_INDEX};
  if (rh >= p.rows * p.heads) { return; }
  let r = rh / p.heads;
  let h = rh % p.heads;
  let base = rh * p.splits * (D + 2u);
  let splits = p.splits;
  ${combineWgsl("r * p.outCols + h * D")}
}`,
  }));
}
