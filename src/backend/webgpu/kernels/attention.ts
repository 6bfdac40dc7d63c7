/**
 * Causal grouped-query attention over the GPU KV cache, split over positions (flash-decoding): a
 * workgroup handles one (query row, head, split) and walks its span of positions in tiles of TILE,
 * keeping an online softmax (running max, per-thread running sums, rescaled accumulators; three
 * barriers a tile); a second
 * kernel merges the splits of each (row, head). A decode step has one query row, so the splits are
 * what fills the GPU at long contexts; prefill has rows x heads workgroups already and uses fewer.
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";
import { checkKv4HeadDim, kvDecode4, type GpuKvFormat } from "./kv.js";

const TILE = 64;
/** Most splits of one (row, head). */
export const MAX_SPLITS = 64;
/** Finite "minus infinity", so that exp(m - m') never sees inf - inf. */
const NEG = "-3.0e38";

/** Splits for `rows` query rows of `heads` heads over up to `maxLen` positions. */
export function attentionSplits(rows: number, heads: number, maxLen: number): number {
  const tiles = Math.ceil(maxLen / TILE);
  if (rows * heads >= 256) return 1;
  return Math.max(1, Math.min(MAX_SPLITS, tiles, Math.ceil(256 / (rows * heads))));
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
  // int4, razer: the 4-bit caches of kernels/kv.ts, decoded per element by kvDecode4 (same bindings as int8)
  const four = kvFormat === "int4" || kvFormat === "razer";
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
    let t = t0 + lid;
    var s = ${NEG};
    if (t < end) {
      let kb = ${V4 ? `(${at("t")} * p.width + kvBase) / 4u` : `${at("t")} * p.width + kvBase`};
      var d = 0.0;
      ${four ? `let ph = ${at("t")} * p.width / D + kvBase / D;
      for (var i = 0u; i < ${QN}u; i++) { d += dot(qs[i], kv4_k(ph, i)); }` : int8 ? `let sk = ks[${at("t")} * p.width / D + kvBase / D];
      for (var i = 0u; i < ${QN}u; i++) { d += dot(qs[i], kAt(kb + i, sk)); }` : `for (var i = 0u; i < ${QN}u; i++) { d += ${V4 ? "dot(qs[i], kc[kb + i])" : "qs[i] * kc[kb + i]"}; }`}
      s = d * p.scale;
    }
    red[lid] = s;
    workgroupBarrier();
    // every thread reads all WG scores (broadcast reads): one barrier instead of a log2(WG)-step tree
    var mNew = m;
    for (var u = 0u; u < WG; u++) { mNew = max(mNew, red[u]); }
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
        for (var u = 0u; u < count; u++) { a += probs[u] * ${four ? `kv_v(${at("(t0 + u)")} * p.width / D + kvBase / D, i)` : int8 ? `vAt(${at("(t0 + u)")} * p.width + kvBase + i, ${at("(t0 + u)")} * p.width / D + kvBase / D)` : `vc[${at("(t0 + u)")} * p.width + kvBase + i]`}; }
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
@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let rh = ${GROUP_INDEX};
  if (rh >= p.rows * p.heads) { return; }
  let r = rh / p.heads;
  let h = rh % p.heads;
  let base = rh * p.splits * (D + 2u);
  var m = ${NEG};
  for (var s = 0u; s < p.splits; s++) { m = max(m, partial[base + s * (D + 2u)]); }
  var l = 0.0;
  for (var s = 0u; s < p.splits; s++) {
    let o = base + s * (D + 2u);
    l += exp(partial[o] - m) * partial[o + 1u];
  }
  for (var i = lid; i < D; i += WG) {
    var a = 0.0;
    for (var s = 0u; s < p.splits; s++) {
      let o = base + s * (D + 2u);
      a += exp(partial[o] - m) * partial[o + 2u + i];
    }
    out[r * p.outCols + h * D + i] = a / l;
  }
}`,
  }));
}
