/**
 * The position-dependent ops of a batched decode step over several sequences, one dispatch each whatever
 * the number of sequences: RoPE at a position per row, the KV write of row r into its sequence's slot of a
 * pooled cache, and attention of row r against that slot. A KV pool (webgpu-backend.ts, `kvPool`) keeps
 * every sequence's layer-l cache in one buffer, slot s starting at s * slotStride floats, so a kernel
 * reaches all of them through one binding and a per-row table in its parameter block:
 * (slot, position, attention splits, positions per split).
 *
 * Each kernel does, per row, exactly the arithmetic of its single-sequence twin (rope.ts, kv.ts,
 * attention.ts with the splits that twin would pick for that row alone), so a batched step gives the
 * same numbers, bit for bit, as running the rows one by one.
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";
import { COMBINE_SHARED, SCORES_SHARED, accumulateWgsl, combineWgsl, maxTreeWgsl, scoresWgsl } from "./attention.js";

/** Rows one dispatch's table holds; a larger batch runs in chunks of this many rows. */
export const TABLE_ROWS = 64;
const HEADER_WORDS = 8;
/** Header, then a vec4<u32> per row. */
export const ROWS_PARAM_BYTES = HEADER_WORDS * 4 + TABLE_ROWS * 16;
export const ROWS_GROUP = 256;
const TILE = 64;
const NEG = "-3.0e38";

/** The parameter block: 8 header words, then (slot, position, splits, span) per row. */
export function rowsParams(header: readonly number[], rows: readonly (readonly [number, number, number, number])[]): Uint32Array {
  if (header.length > HEADER_WORDS || rows.length > TABLE_ROWS) throw new Error(`rows params: ${header.length} header words, ${rows.length} rows`);
  const p = new Uint32Array(HEADER_WORDS + rows.length * 4);
  p.set(header);
  rows.forEach((r, i) => p.set(r, HEADER_WORDS + i * 4));
  return p;
}

const HEAD = (fields: string) => `struct P { ${fields}, rows: array<vec4<u32>> }
@group(0) @binding(0) var<storage, read> p: P;`;

/** Bindings: x, cos, sin. Header: pairs (rows * cols / 2), cols, headDim, half, tableHalf. Row: (_, position). */
export function ropeRowsKernel(): Kernel {
  return memoKernel("rope.rows", () => ({
    name: "rope.rows",
    params: "storage",
    paramBytes: ROWS_PARAM_BYTES,
    bindings: ["write", "read", "read"],
    code: /* wgsl */ `
${HEAD("pairs: u32, cols: u32, headDim: u32, half: u32, tableHalf: u32, h5: u32, h6: u32, h7: u32")}
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> cosT: array<f32>;
@group(0) @binding(3) var<storage, read> sinT: array<f32>;
@compute @workgroup_size(${ROWS_GROUP})
fn main(${ENTRY_ARGS}) {
  let t = ${GROUP_INDEX} * ${ROWS_GROUP}u + lid;
  if (t >= p.pairs) { return; }
  let perRow = p.cols / 2u;
  let r = t / perRow;
  let rem = t % perRow;
  let h = rem / p.half;
  let i = rem % p.half;
  let base = r * p.cols + h * p.headDim;
  let at = p.rows[r].y * p.tableHalf + i;
  let c = cosT[at];
  let s = sinT[at];
  let a = x[base + i];
  let b = x[base + i + p.half];
  x[base + i] = a * c - b * s;
  x[base + i + p.half] = b * c + a * s;
}`,
  }));
}

/** Bindings: kPool, vPool (one layer), k, v. Header: n (values: rows * width), width, slotStride. Row: (slot, position). */
export function kvWriteRowsKernel(): Kernel {
  return memoKernel("kvWrite.rows", () => ({
    name: "kvWrite.rows",
    params: "storage",
    paramBytes: ROWS_PARAM_BYTES,
    bindings: ["write", "write", "read", "read"],
    code: /* wgsl */ `
${HEAD("n: u32, width: u32, slotStride: u32, h3: u32, h4: u32, h5: u32, h6: u32, h7: u32")}
@group(0) @binding(1) var<storage, read_write> kc: array<f32>;
@group(0) @binding(2) var<storage, read_write> vc: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@compute @workgroup_size(${ROWS_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${ROWS_GROUP}u + lid;
  if (i >= p.n) { return; }
  let r = i / p.width;
  let e = p.rows[r];
  let dst = e.x * p.slotStride + e.y * p.width + i % p.width;
  kc[dst] = k[i];
  vc[dst] = v[i];
}`,
  }));
}

/**
 * Bindings: partial, q, kPool, vPool (one layer). Header: rows, heads, group, width, qCols, maxSplits,
 * slotStride, scale (f32 bits). Row: (slot, position, splits, span). Workgroup (r, h, split) for split <
 * maxSplits; splits past the row's own do nothing. The loop is attention.ts's f32 partial kernel with
 * the cache offset by the row's slot and the length by its position.
 */
export function attentionRowsPartialKernel(headDim: number): Kernel {
  return memoKernel(`attention.rows.partial.${headDim}`, () => {
    const V4 = headDim % 4 === 0;
    const T = V4 ? "vec4<f32>" : "f32";
    const QN = V4 ? headDim / 4 : headDim;
    const DPT = Math.ceil(headDim / TILE);
    const code = /* wgsl */ `
${HEAD("rows_: u32, heads: u32, group: u32, width: u32, qCols: u32, maxSplits: u32, slotStride: u32, scale: u32")}
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> kc: array<${T}>;
@group(0) @binding(4) var<storage, read> vc: array<f32>;
const D = ${headDim}u;
const WG = ${TILE}u;
var<workgroup> qs: array<${T}, ${QN}>;
var<workgroup> probs: array<f32, WG>;
var<workgroup> red: array<f32, WG>;
${SCORES_SHARED}

@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  if (id >= p.rows_ * p.heads * p.maxSplits) { return; }
  let split = id % p.maxSplits;
  let h = (id / p.maxSplits) % p.heads;
  let r = id / (p.maxSplits * p.heads);
  let e = p.rows[r];
  if (split >= e.z) { return; }
  let scale = bitcast<f32>(p.scale);
  let len = e.y + 1u;
  let start = split * e.w;
  let end = min(start + e.w, len);
  let out = id * (D + 2u);
  let slot = e.x * p.slotStride;
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
      "scale",
      V4 ? "let kb = (slot + t * p.width + kvBase) / 4u;" : "let kb = slot + t * p.width + kvBase;",
      "",
      V4 ? "dot(qs[i], kc[kb + i])" : "qs[i] * kc[kb + i]",
    )}
    red[lid] = s;
    workgroupBarrier();
    ${maxTreeWgsl("m")}
    let corr = exp(m - mNew);
    var ex = 0.0;
    if (t < end) { ex = exp(s - mNew); }
    probs[lid] = ex;
    l = l * corr + ex;
    m = mNew;
    workgroupBarrier();
    let count = min(WG, end - t0);
    for (var j = 0u; j < ${DPT}u; j++) {
      let i = lid + j * WG;
      if (i < D) {
        var a = acc[j] * corr;
        ${accumulateWgsl((u) => `vc[slot + (t0 + ${u}) * p.width + kvBase + i]`)}
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
    return { name: "attention.rows.partial", params: "storage", paramBytes: ROWS_PARAM_BYTES, code, bindings: ["write", "read", "read", "read"] };
  });
}

/**
 * Bindings: out, partial. Header: rows, heads, maxSplits, outCols. Row: (_, _, splits). One workgroup
 * per (row, head) merges that row's own splits, as attention.ts's combine kernel does.
 */
export function attentionRowsCombineKernel(headDim: number): Kernel {
  return memoKernel(`attention.rows.combine.${headDim}`, () => ({
    name: "attention.rows.combine",
    params: "storage",
    paramBytes: ROWS_PARAM_BYTES,
    bindings: ["write", "read"],
    code: /* wgsl */ `
${HEAD("rows_: u32, heads: u32, maxSplits: u32, outCols: u32, h4: u32, h5: u32, h6: u32, h7: u32")}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> partial: array<f32>;
const D = ${headDim}u;
const WG = 64u;
${COMBINE_SHARED}
@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let rh = ${GROUP_INDEX};
  if (rh >= p.rows_ * p.heads) { return; }
  let r = rh / p.heads;
  let h = rh % p.heads;
  let splits = p.rows[r].z;
  let base = rh * p.maxSplits * (D + 2u);
  ${combineWgsl("r * p.outCols + h * D")}
}`,
  }));
}
