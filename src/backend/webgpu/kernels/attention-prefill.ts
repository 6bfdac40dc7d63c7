/**
 * Causal grouped-query attention for many query rows at once (prefill) over the GPU KV cache, tiled as
 * FlashAttention-2 does: a workgroup takes 32 consecutive query rows of one head, brings 16 positions of
 * K and V at a time into workgroup memory, and keeps an online softmax per row. Each K/V element is then
 * read from memory once per 32 rows, where kernels/attention.ts (one workgroup a row) reads it once a row:
 * that kernel's L2 traffic, not arithmetic, is what bounds prefill at long prompts.
 *
 * A row is 8 threads, each holding D/32 vec4s of q and of the output, interleaved (vec4 c of the row
 * belongs to thread c % 8) so that the 8 threads read consecutive vec4s of a K or V row. A score is the 8
 * partial dots summed by XOR shuffles in a subgroup (which assumes, as kernels/lane-blocks.ts does, that
 * invocations 8i..8i+7 are lanes of one subgroup), or through workgroup memory where subgroups are
 * missing or narrower than 8. Summation orders differ from kernels/attention.ts, so results agree to f32
 * rounding, not bit for bit; decode and batched decode (one row a sequence) keep that kernel. Quantized
 * caches (int8 and the 4-bit formats of kernels/kv.ts) are dequantized as their tile is loaded, value by
 * value as kernels/attention.ts does, so both compute over the same f32 values.
 */
import { ENTRY_ARGS, memoKernel, type Kernel } from "../kernel.js";
import { checkKv4HeadDim, isKv4, kvDecode4, type GpuKvFormat } from "./kv.js";

/** Query rows a workgroup. */
export const PREFILL_ROWS = 32;
/** Positions of K and V a workgroup holds at a time. */
const KEYS = 16;
/** Finite "minus infinity" (as kernels/attention.ts), so that exp(m - m') never sees inf - inf. */
const NEG = "-3.0e38";

/** Whether the prefill kernel handles heads of `headDim` (a multiple of 32, at most 128; every KV format's width rule holds then). */
export const prefillAttentionFits = (headDim: number): boolean => headDim % 32 === 0 && headDim <= 128;

/**
 * The cache's bindings (3.., as kernels/attention.ts has them) and loadK / loadV: vec4 c of the head row of
 * kv head h at position t, as f32 (kv heads a position: p.width / D).
 */
function cacheReads(format: GpuKvFormat, headDim: number): string {
  const D4 = headDim / 4;
  if (format === "f32") {
    return `@group(0) @binding(3) var<storage, read> kc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> vc: array<vec4<f32>>;
fn loadK(t: u32, h: u32, c: u32) -> vec4<f32> { return kc[t * (p.width / 4u) + h * ${D4}u + c]; }
fn loadV(t: u32, h: u32, c: u32) -> vec4<f32> { return vc[t * (p.width / 4u) + h * ${D4}u + c]; }`;
  }
  if (format === "int8") {
    return `@group(0) @binding(3) var<storage, read> kq: array<u32>;
@group(0) @binding(4) var<storage, read> ks: array<f32>;
@group(0) @binding(5) var<storage, read> vq: array<u32>;
@group(0) @binding(6) var<storage, read> vs: array<f32>;
fn i8(w: u32, b: u32) -> f32 { return f32(bitcast<i32>(w << (24u - 8u * b)) >> 24u); }
fn word(w: u32, s: f32) -> vec4<f32> { return vec4<f32>(i8(w, 0u) * s, i8(w, 1u) * s, i8(w, 2u) * s, i8(w, 3u) * s); }
fn loadK(t: u32, h: u32, c: u32) -> vec4<f32> { return word(kq[t * (p.width / 4u) + h * ${D4}u + c], ks[t * (p.width / ${headDim}u) + h]); }
fn loadV(t: u32, h: u32, c: u32) -> vec4<f32> { return word(vq[t * (p.width / 4u) + h * ${D4}u + c], vs[t * (p.width / ${headDim}u) + h]); }`;
  }
  checkKv4HeadDim(format, headDim);
  return `@group(0) @binding(3) var<storage, read> kq: array<u32>;
@group(0) @binding(4) var<storage, read> ks: array<u32>;
@group(0) @binding(5) var<storage, read> vq: array<u32>;
@group(0) @binding(6) var<storage, read> vs: array<u32>;
${kvDecode4(format, headDim)}
fn loadK(t: u32, h: u32, c: u32) -> vec4<f32> { return kv4_k(t * (p.width / ${headDim}u) + h, c); }
fn loadV(t: u32, h: u32, c: u32) -> vec4<f32> { let ph = t * (p.width / ${headDim}u) + h; return vec4<f32>(kv_v(ph, 4u * c), kv_v(ph, 4u * c + 1u), kv_v(ph, 4u * c + 2u), kv_v(ph, 4u * c + 3u)); }`;
}

/**
 * Bindings: out, q, then the cache as kernels/attention.ts binds it (f32: kCache, vCache; quantized:
 * kCodes, kScales, vCodes, vScales). Params: rows, heads, group (query heads a kv head), width (kv values a
 * position), qCols, outCols, pos0 (position of row 0), scale. Grid: [ceil(rows / 32), heads].
 * `subgroups`: reduce scores with subgroup shuffles (subgroups of at least 8 lanes).
 */
export function prefillAttentionKernel(headDim: number, subgroups: boolean, kvFormat: GpuKvFormat = "f32"): Kernel {
  if (!prefillAttentionFits(headDim)) throw new Error(`prefill attention: head dim ${headDim} must be a multiple of 32 and at most 128`);
  const quant = kvFormat !== "f32";
  if (quant && kvFormat !== "int8" && !isKv4(kvFormat)) throw new Error(`prefill attention: no KV format ${String(kvFormat)}`);
  return memoKernel(`attention.prefill.${headDim}${kvFormat === "f32" ? "" : `.${kvFormat}`}${subgroups ? ".sg" : ""}`, () => {
    const D4 = headDim / 4;
    const NV = D4 / 8;
    const vs = Array.from({ length: NV }, (_, t) => t);
    const ks = Array.from({ length: KEYS }, (_, j) => j);
    const rowSum = subgroups
      ? `fn rowSum(v: f32, lid: u32) -> f32 {
  var s = v + subgroupShuffleXor(v, 1u);
  s += subgroupShuffleXor(s, 2u);
  return s + subgroupShuffleXor(s, 4u);
}`
      : `var<workgroup> red: array<f32, 256>;
fn rowSum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  let b = lid & ~7u;
  let s = ((red[b] + red[b + 1u]) + (red[b + 2u] + red[b + 3u])) + ((red[b + 4u] + red[b + 5u]) + (red[b + 6u] + red[b + 7u]));
  workgroupBarrier();
  return s;
}`;
    const code = /* wgsl */ `${subgroups ? "enable subgroups;" : ""}
struct P { rows: u32, heads: u32, group: u32, width: u32, qCols: u32, outCols: u32, pos0: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
${cacheReads(kvFormat, headDim)}
// [position in the tile][vec4 of the head row]
var<workgroup> kt: array<vec4<f32>, ${KEYS * D4}>;
var<workgroup> vt: array<vec4<f32>, ${KEYS * D4}>;
${rowSum}

@compute @workgroup_size(256)
fn main(${ENTRY_ARGS}) {
  let part = lid % 8u;
  let row = wid.x * ${PREFILL_ROWS}u + lid / 8u;
  let head = wid.y;
  let kvh = head / p.group;
  let live = row < p.rows;
  let pos = p.pos0 + row;
  // the last position any row of this workgroup attends to
  let last = p.pos0 + min(p.rows, (wid.x + 1u) * ${PREFILL_ROWS}u) - 1u;
  let qBase = (row * p.qCols + head * ${headDim}u) / 4u + part;
  ${vs.map((t) => `var q${t} = vec4<f32>(0.0); var o${t} = vec4<f32>(0.0);`).join(" ")}
  if (live) { ${vs.map((t) => `q${t} = q[qBase + ${8 * t}u] * p.scale;`).join(" ")} }
  var m = ${NEG};
  var l = 0.0;
  for (var k0 = 0u; k0 <= last; k0 += ${KEYS}u) {
    for (var e = lid; e < ${KEYS * D4}u; e += 256u) {
      let kp = k0 + e / ${D4}u;
      var kv = vec4<f32>(0.0);
      var vv = vec4<f32>(0.0);
      if (kp <= last) {
        kv = loadK(kp, kvh, e % ${D4}u);
        vv = loadV(kp, kvh, e % ${D4}u);
      }
      kt[e] = kv;
      vt[e] = vv;
    }
    workgroupBarrier();
    ${ks.map((j) => `let s${j} = rowSum(${vs.map((t) => `dot(q${t}, kt[${j * D4}u + part + ${8 * t}u])`).join(" + ")}, lid);`).join("\n    ")}
    var mt = ${NEG};
    ${ks.map((j) => `if (k0 + ${j}u <= pos) { mt = max(mt, s${j}); }`).join(" ")}
    if (mt > ${NEG}) {
      let mn = max(m, mt);
      let keep = exp(m - mn);
      l *= keep;
      ${vs.map((t) => `o${t} *= keep;`).join(" ")}
      ${ks.map((j) => `{
        let w = select(0.0, exp(s${j} - mn), k0 + ${j}u <= pos);
        l += w;
        ${vs.map((t) => `o${t} += w * vt[${j * D4}u + part + ${8 * t}u];`).join(" ")}
      }`).join("\n      ")}
      m = mn;
    }
    workgroupBarrier();
  }
  if (live) {
    let oBase = (row * p.outCols + head * ${headDim}u) / 4u + part;
    ${vs.map((t) => `out[oBase + ${8 * t}u] = o${t} / l;`).join(" ")}
  }
}`;
    return { name: `attention.prefill.${headDim}`, code, bindings: quant ? ["write", "read", "read", "read", "read", "read"] : ["write", "read", "read", "read"] };
  });
}
