/**
 * Decode attention straight from xKV's factors (spec xkv.md §3.4, storage mode), the device twin of
 * src/kv/xkv/xkv-attention.ts. A workgroup handles one (query row, kv head, split) and the kv head's G
 * query heads together, so each rebuilt key serves all of them. Splits are of two kinds, never mixed:
 *
 * - prompt splits walk positions [0, T) a tile of 64 at a time: thread t rebuilds the pre-RoPE key
 *   k_t = A_K[t,:]·B_K^(l,h) (A's tile and B's rows staged through workgroup memory in rank chunks), rotates
 *   it at position t with the model's RoPE table, and scores it; values are never rebuilt: the split
 *   accumulates z = Σ_t e_t·A_V[t,:] in the rank-r_v latent;
 * - recent splits walk the exact post-RoPE rows of positions [T, len) (kvWrite'd into a plain cache, index
 *   p − T) and accumulate e_t·v_t as ordinary attention does.
 *
 * Each split keeps an online softmax per query head and writes (max, sum, z, acc); the combine merges the
 * splits of a (row, head) by log-sum-exp and applies B_V once: out = (Σ w_s z_s)·B_V^(l,h) + Σ w_s acc_s,
 * divided by the merged sum. Transient memory is one tile of keys in registers; nothing of size T·d is
 * ever materialized.
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

/** Threads of a workgroup, and positions of a tile (one per thread). */
export const XKV_WG = 64;
/** Most splits (prompt + recent) of one (row, kv head). */
export const XKV_MAX_SPLITS = 256;
/** Finite "minus infinity", so that exp(m - m') never sees inf - inf. */
const NEG = "-3.0e38";

/**
 * WGSL: `use(x, i)` for i in [0, count) in order, the loads `load(i)` issued four at a time before their
 * uses so that their latencies overlap (the loops' trip counts are not constants the compiler unrolls).
 */
function accumulate4(x: string, load: (i: string) => string, use: (x: string, i: string) => string, i = "tt", count = "count"): string {
  return `var ${i} = 0u;
          for (; ${i} + 4u <= ${count}; ${i} += 4u) {
            let ${x}0 = ${load(i)};
            let ${x}1 = ${load(`(${i} + 1u)`)};
            let ${x}2 = ${load(`(${i} + 2u)`)};
            let ${x}3 = ${load(`(${i} + 3u)`)};
            ${use(`${x}0`, i)}
            ${use(`${x}1`, `(${i} + 1u)`)}
            ${use(`${x}2`, `(${i} + 2u)`)}
            ${use(`${x}3`, `(${i} + 3u)`)}
          }
          for (; ${i} < ${count}; ${i}++) {
            let ${x}0 = ${load(i)};
            ${use(`${x}0`, i)}
          }`;
}

/** Floats of one split's partial result for one query head: max, sum, z (r_v), acc (headDim). */
export const xkvPartialStride = (rankV: number, headDim: number) => 2 + rankV + headDim;

/** Checks what the kernels assume of the head dim (vec4 keys, RoPE halves of whole vec4s). */
export function checkXkvHeadDim(headDim: number): void {
  if (!(Number.isInteger(headDim) && headDim % 8 === 0 && headDim >= 8 && headDim <= 256)) {
    throw new Error(`xKV attention on WebGPU: head dim ${headDim} must be a multiple of 8 in [8, 256]`);
  }
}

/**
 * Ranks of B_K staged per chunk so that the workgroup arrays fit `workgroupBytes` (q of G heads, B's chunk,
 * A's transposed tile, scores and probabilities of G heads).
 */
export function xkvRankChunk(headDim: number, group: number, workgroupBytes: number): number {
  const fixed = group * headDim + 2 * group * XKV_WG;
  const rc = Math.min(32, Math.floor((workgroupBytes / 4 - fixed) / (headDim + XKV_WG + 1)));
  if (rc < 1) throw new Error(`xKV attention on WebGPU: ${group} query heads of ${headDim} per kv head need more workgroup memory than ${workgroupBytes} bytes`);
  return rc;
}

/**
 * Bindings: partial, q, a ([A_K T×r_k | A_V T×r_v] of the layer's group), b ([B_K kvHeads×r_k×d | B_V
 * kvHeads×r_v×d] of the layer), recent k, recent v (post-RoPE rows of positions T.., width apart), cos, sin.
 * Params: rows, heads, width, qCols, pos0, T, rankK, rankV, promptSplits, promptSpan, recentSplits,
 * recentSpan, scale, tableHalf. `zPerThread` = ceil(rankV / 64) (latent values each thread keeps per head).
 */
export function xkvPartialKernel(headDim: number, group: number, rankChunk: number, zPerThread: number): Kernel {
  checkXkvHeadDim(headDim);
  return memoKernel(`xkv.partial.${headDim}.${group}.${rankChunk}.${zPerThread}`, () => {
    const D4 = headDim / 4;
    const DPT = Math.ceil(headDim / XKV_WG);
    const code = /* wgsl */ `
struct P { rows: u32, heads: u32, width: u32, qCols: u32, pos0: u32, T: u32, rk: u32, rv: u32, sp: u32, spanP: u32, sr: u32, spanR: u32, scale: f32, tableHalf: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> a: array<f32>;
@group(0) @binding(4) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> rk: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> rv: array<f32>;
@group(0) @binding(7) var<storage, read> cosT: array<f32>;
@group(0) @binding(8) var<storage, read> sinT: array<f32>;
const D = ${headDim}u;
const D4 = ${D4}u;
const H4 = ${D4 / 2}u;
const G = ${group}u;
const WG = ${XKV_WG}u;
const RC = ${rankChunk}u;
const ZPT = ${zPerThread}u;
const DPT = ${DPT}u;
var<workgroup> qs: array<vec4<f32>, ${group * D4}>;
var<workgroup> bs: array<vec4<f32>, ${rankChunk * D4}>;
var<workgroup> at: array<f32, ${rankChunk * (XKV_WG + 1)}>;
var<workgroup> sc: array<f32, ${group * XKV_WG}>;
var<workgroup> pr: array<f32, ${group * XKV_WG}>;

@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  let S = p.sp + p.sr;
  let kvHeads = p.heads / G;
  if (id >= p.rows * kvHeads * S) { return; }
  let split = id % S;
  let kvh = (id / S) % kvHeads;
  let r = id / (S * kvHeads);
  let len = p.pos0 + r + 1u;
  let prompt = split < p.sp;
  var start = split * p.spanP;
  var end = min(start + p.spanP, p.T);
  if (!prompt) {
    start = p.T + (split - p.sp) * p.spanR;
    end = min(start + p.spanR, len);
  }
  for (var e = lid; e < G * D4; e += WG) {
    let qb = r * p.qCols + (kvh * G + e / D4) * D + 4u * (e % D4);
    qs[e] = vec4<f32>(q[qb], q[qb + 1u], q[qb + 2u], q[qb + 3u]);
  }
  workgroupBarrier();
  var m: array<f32, G>;
  var l: array<f32, G>;
  var corr: array<f32, G>;
  var sv: array<f32, G>;
  var z: array<f32, ${group * zPerThread}>;
  var acc: array<f32, ${group * DPT}>;
  for (var u = 0u; u < G; u++) { m[u] = ${NEG}; l[u] = 0.0; }
  for (var j = 0u; j < G * ZPT; j++) { z[j] = 0.0; }
  for (var j = 0u; j < G * DPT; j++) { acc[j] = 0.0; }
  let bk = kvh * p.rk * D4;
  let av0 = p.T * p.rk;
  for (var t0 = start; t0 < end; t0 += WG) {
    let t = t0 + lid;
    let live = t < end;
    var k: array<vec4<f32>, D4>;
    for (var i = 0u; i < D4; i++) { k[i] = vec4<f32>(0.0); }
    if (prompt) {
      // k_t = A_K[t,:]·B_K^(l,h), rank chunk by rank chunk (the ranks in order, as the host sums them)
      for (var m0 = 0u; m0 < p.rk; m0 += RC) {
        let mc = min(RC, p.rk - m0);
        for (var e = lid; e < mc * D4; e += WG) { bs[e] = b[bk + m0 * D4 + e]; }
        // four loads in flight before their stores (the copy is latency-bound, not bandwidth-bound)
        for (var e = lid; e < WG * mc; e += 4u * WG) {
          var xs = vec4<f32>(0.0);
          for (var c = 0u; c < 4u; c++) {
            let f = e + c * WG;
            if (f < WG * mc && t0 + f / mc < end) { xs[c] = a[(t0 + f / mc) * p.rk + m0 + f % mc]; }
          }
          for (var c = 0u; c < 4u; c++) {
            let f = e + c * WG;
            if (f < WG * mc) { at[(f % mc) * (WG + 1u) + f / mc] = xs[c]; }
          }
        }
        workgroupBarrier();
        if (live) {
          for (var mm = 0u; mm < mc; mm++) {
            let x = at[mm * (WG + 1u) + lid];
            for (var i = 0u; i < D4; i++) { k[i] += x * bs[mm * D4 + i]; }
          }
        }
        workgroupBarrier();
      }
      if (live) {
        // RoPE at the key's own position, half-split pairs (i, i + D/2): whole vec4s since D % 8 == 0
        let ro = t * p.tableHalf;
        for (var j = 0u; j < H4; j++) {
          let o = ro + 4u * j;
          let c = vec4<f32>(cosT[o], cosT[o + 1u], cosT[o + 2u], cosT[o + 3u]);
          let s = vec4<f32>(sinT[o], sinT[o + 1u], sinT[o + 2u], sinT[o + 3u]);
          let x = k[j];
          let y = k[j + H4];
          k[j] = x * c - y * s;
          k[j + H4] = y * c + x * s;
        }
      }
    } else if (live) {
      let kb = ((t - p.T) * p.width + kvh * D) / 4u;
      for (var i = 0u; i < D4; i++) { k[i] = rk[kb + i]; }
    }
    for (var u = 0u; u < G; u++) {
      var s = ${NEG};
      if (live) {
        var d = 0.0;
        for (var i = 0u; i < D4; i++) { d += dot(qs[u * D4 + i], k[i]); }
        s = d * p.scale;
      }
      sv[u] = s;
      sc[u * WG + lid] = s;
    }
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
      if (lid < w) {
        for (var u = 0u; u < G; u++) { sc[u * WG + lid] = max(sc[u * WG + lid], sc[u * WG + lid + w]); }
      }
      workgroupBarrier();
    }
    for (var u = 0u; u < G; u++) {
      let mNew = max(m[u], sc[u * WG]);
      corr[u] = exp(m[u] - mNew);
      var e = 0.0;
      if (live) { e = exp(sv[u] - mNew); }
      pr[u * WG + lid] = e;
      l[u] = l[u] * corr[u] + e;
      m[u] = mNew;
    }
    workgroupBarrier();
    let count = min(WG, end - t0);
    if (prompt) {
      for (var j = 0u; j < ZPT; j++) {
        let mm = lid + j * WG;
        if (mm < p.rv) {
          for (var u = 0u; u < G; u++) { z[u * ZPT + j] *= corr[u]; }
          ${accumulate4("x", (tt) => `a[av0 + (t0 + ${tt}) * p.rv + mm]`, (x, tt) => `for (var u = 0u; u < G; u++) { z[u * ZPT + j] += pr[u * WG + ${tt}] * ${x}; }`)}
        }
      }
    } else {
      for (var j = 0u; j < DPT; j++) {
        let i = lid + j * WG;
        if (i < D) {
          for (var u = 0u; u < G; u++) { acc[u * DPT + j] *= corr[u]; }
          ${accumulate4("x", (tt) => `rv[(t0 + ${tt} - p.T) * p.width + kvh * D + i]`, (x, tt) => `for (var u = 0u; u < G; u++) { acc[u * DPT + j] += pr[u * WG + ${tt}] * ${x}; }`)}
        }
      }
    }
    workgroupBarrier();
  }
  for (var u = 0u; u < G; u++) { pr[u * WG + lid] = l[u]; }
  workgroupBarrier();
  let stride = 2u + p.rv + D;
  for (var u = 0u; u < G; u++) {
    let out = ((r * p.heads + kvh * G + u) * S + split) * stride;
    if (lid == 0u) {
      var sum = 0.0;
      for (var w = 0u; w < WG; w++) { sum += pr[u * WG + w]; }
      partial[out] = m[u];
      partial[out + 1u] = sum;
    }
    for (var j = 0u; j < ZPT; j++) {
      let mm = lid + j * WG;
      if (mm < p.rv) { partial[out + 2u + mm] = z[u * ZPT + j]; }
    }
    for (var j = 0u; j < DPT; j++) {
      let i = lid + j * WG;
      if (i < D) { partial[out + 2u + p.rv + i] = acc[u * DPT + j]; }
    }
  }
}`;
    return { name: "xkv.partial", code, bindings: ["write", "read", "read", "read", "read", "read", "read", "read"] };
  });
}

/**
 * Bindings: out, partial, b (the layer's [B_K | B_V]). Params: rows, heads, splits, outCols, rankK, rankV,
 * group (query heads a kv head), kvHeads. One workgroup per (row, head): the splits' weights exp(m_s − m)
 * once into workgroup memory, then the latent z merged a chunk of 64 ranks at a time and multiplied by
 * B_V^(l,h), plus the recent splits' accumulators, over the merged sum.
 */
export function xkvCombineKernel(headDim: number): Kernel {
  checkXkvHeadDim(headDim);
  return memoKernel(`xkv.combine.${headDim}`, () => ({
    name: "xkv.combine",
    bindings: ["write", "read", "read"],
    code: /* wgsl */ `
struct P { rows: u32, heads: u32, splits: u32, outCols: u32, rk: u32, rv: u32, group: u32, kvHeads: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> partial: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
const D = ${headDim}u;
const WG = ${XKV_WG}u;
const DPT = ${Math.ceil(headDim / XKV_WG)}u;
var<workgroup> red: array<f32, WG>;
var<workgroup> wts: array<f32, ${XKV_MAX_SPLITS}>;
var<workgroup> zs: array<f32, WG>;
@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let rh = ${GROUP_INDEX};
  if (rh >= p.rows * p.heads) { return; }
  let r = rh / p.heads;
  let h = rh % p.heads;
  let stride = 2u + p.rv + D;
  let base = rh * p.splits * stride;
  var mx = ${NEG};
  for (var s = lid; s < p.splits; s += WG) { mx = max(mx, partial[base + s * stride]); }
  red[lid] = mx;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
    workgroupBarrier();
  }
  let m = red[0];
  for (var s = lid; s < p.splits; s += WG) { wts[s] = exp(partial[base + s * stride] - m); }
  workgroupBarrier();
  var l = 0.0;
  for (var s = 0u; s < p.splits; s++) { l += wts[s] * partial[base + s * stride + 1u]; }
  var o: array<f32, DPT>;
  for (var j = 0u; j < DPT; j++) { o[j] = 0.0; }
  let bv = p.kvHeads * p.rk * D + (h / p.group) * p.rv * D;
  for (var m0 = 0u; m0 < p.rv; m0 += WG) {
    let mc = min(WG, p.rv - m0);
    if (lid < mc) {
      var zz = 0.0;
      ${accumulate4("y", (s) => `partial[base + ${s} * stride + 2u + m0 + lid]`, (y, s) => `zz += wts[${s}] * ${y};`, "s", "p.splits")}
      zs[lid] = zz;
    }
    workgroupBarrier();
    for (var j = 0u; j < DPT; j++) {
      let i = lid + j * WG;
      if (i < D) {
        ${accumulate4("y", (mm) => `b[bv + (m0 + ${mm}) * D + i]`, (y, mm) => `o[j] += zs[${mm}] * ${y};`, "mm", "mc")}
      }
    }
    workgroupBarrier();
  }
  for (var j = 0u; j < DPT; j++) {
    let i = lid + j * WG;
    if (i < D) {
      var a = 0.0;
      ${accumulate4("y", (s) => `partial[base + ${s} * stride + 2u + p.rv + i]`, (y, s) => `a += wts[${s}] * ${y};`, "s", "p.splits")}
      out[r * p.outCols + h * D + i] = (o[j] + a) / l;
    }
  }
}`,
  }));
}
