/**
 * Fused GEMVs: matmul.ts's GEMV skeleton with a row mapping and an epilogue (GemvHooks), so that one
 * dispatch does what took two to four (src/backend/webgpu/README.md, "Fusions"):
 * - stacked: the weights of several matmuls with the same x (q, k, v) lie one after another in one buffer
 *   (stacked-weights.ts); team row r reads row r of the stack and the epilogue stores it in the output of
 *   the weight it belongs to, times that weight's factor (packed formats' tensor scale; p.mul is 1).
 * - swiglu: gate and up are stacked; team rows 2i and 2i + 1 read gate row i and up row i, so one team
 *   holds both sums and stores silu(gate) * up (the expression of the swiglu kernel) without a round trip.
 * - add: out += W·x, the residual add as the store (out is read and written by the same thread only).
 * Each takes a batch B (1..8, matmul.ts's `batch`): x rows 0..B-1, and row b of each output (stacked: of
 * its member's width; swiglu: of half; add: of p.ocols) from x row b, the weights read once for all rows.
 */
import { gemvKernel, gemvRows, gemvSplit, type GemvHooks, type GemvVariant, type XMode } from "./matmul.js";
import { GEMV_I8_ROWS, GEMV_I8_UNROLL, gemvI8Kernel, type BlockFormat } from "./gemv-i8.js";
import { GEMV_BLOCKS, GEMV_BLOCKS_PAIRS, GEMV_BLOCKS_QUANT, QUANT_WINDOW, gemvBlocksI8Kernel, gemvBlocksQuantKernel } from "./gemv-blocks.js";
import type { GpuFormat } from "../weights.js";
import type { Kernel } from "../kernel.js";

/** The most weights one stacked GEMV serves (its parameter block holds a bound and a factor per weight). */
export const MAX_STACK = 4;

/** Extra parameter words of a stacked GEMV of `m` weights: bounds b1..b(m-1) (first row of each), factors. */
export function stackedParams(rows: readonly number[], muls: readonly number[], bits: (v: number) => number): number[] {
  const bounds: number[] = [];
  let at = 0;
  for (let i = 0; i + 1 < rows.length; i++) bounds.push((at += rows[i]!));
  return [...bounds, ...muls.map(bits)];
}

function stackedHooks(m: number): GemvHooks {
  if (!(m >= 2 && m <= MAX_STACK)) throw new Error(`a stacked GEMV takes 2 to ${MAX_STACK} weights, not ${m}`);
  const ids = Array.from({ length: m }, (_, i) => i);
  const outName = (i: number) => (i === 0 ? "out" : `out${i}`);
  // weight i owns rows [b_i, b_(i+1)); b_0 = 0
  const bound = (i: number) => (i === 0 ? "0u" : `p.b${i}`);
  // the width of weight i's output rows (batched kernels: x row xr goes to row xr of each output)
  const width = (i: number) => `(${i === m - 1 ? "p.n" : `p.b${i + 1}`} - ${bound(i)})`;
  const branches = (batched: boolean) => ids
    .map((i) => {
      const put = `${outName(i)}[${batched ? `xr * ${width(i)} + ` : ""}r - ${bound(i)}] = v * p.mul${i};`;
      return i === m - 1 ? `{ ${put} }` : `if (r < p.b${i + 1}) { ${put} }`;
    })
    .join(" else ");
  return {
    key: `stack${m}`,
    params: ids.slice(1).map((i) => `, b${i}: u32`).join("") + ids.map((i) => `, mul${i}: f32`).join(""),
    decls: (first, batch = 1) => `${ids.slice(1).map((i) => `@group(0) @binding(${first + i - 1}) var<storage, read_write> out${i}: array<f32>;`).join("\n")}
fn put(r: u32, v: f32${batch > 1 ? ", xr: u32" : ""}) {
  ${branches(batch > 1)}
}`,
    bindings: ids.slice(1).map(() => "write" as const),
    store: (sums, rows, b) => sums.map((s, j) => `if (${rows[j]} < p.n) { put(${rows[j]}, ${s}${b === undefined ? "" : `, ${b}u`}); }`).join("\n    "),
  };
}

const SWIGLU_HOOKS: GemvHooks = {
  key: "swiglu",
  params: ", half: u32, mulGate: f32, mulUp: f32",
  row: (r) => `((${r}) >> 1u) + ((${r}) & 1u) * p.half`,
  decls: () => `fn silu_mul(g: f32, u: f32) -> f32 { return (g / (1.0 + exp(-g))) * u; }`,
  store: (sums, rows, b) =>
    sums
      .flatMap((s, j) => (j % 2 === 0 ? [`if (${rows[j]} < p.n) { out[${b === undefined ? `${rows[j]} >> 1u` : `${b}u * p.half + (${rows[j]} >> 1u)`}] = silu_mul(${s} * p.mulGate, ${sums[j + 1]} * p.mulUp); }`] : []))
      .join("\n    "),
};

const ADD_HOOKS: GemvHooks = {
  key: "add",
  store: (sums, rows, b) =>
    sums
      .map((s, j) => {
        const o = `${b === undefined ? "" : `${b}u * p.ocols + `}p.o0 + ${rows[j]}`;
        return `if (${rows[j]} < p.n) { out[${o}] = out[${o}] + ${s}; }`;
      })
      .join("\n    "),
};

/**
 * q, k and v stacked ([q; k; v], q of `qk - kStart`... see params), RoPE and the KV write as the store:
 * team rows 2i and 2i + 1 of the q and k part read a half-split RoPE pair (h·hd + i, h·hd + i + half) of
 * one head, so one team holds both sums and stores them rotated, q into `out` and k into the cache at
 * position p.pos; v rows go to the cache as they are. The arithmetic is rope-kv.ts's on the values the
 * stacked GEMV would store (sum · the member's factor), so the results are those of the stacked GEMV then
 * ropeKvWrite. Params: qk (rows of q and k), kStart (rows of q), hd, half, pos, tableHalf, kvCols,
 * mulQ, mulK, mulV. Bindings after out (q): the K and V caches of the layer, cos, sin. Teams hold even
 * numbers of rows.
 */
const QKV_ROPE_HOOKS: GemvHooks = {
  key: "qkvrope",
  params: ", qk: u32, kStart: u32, hd: u32, half: u32, pos: u32, tableHalf: u32, kvCols: u32, mulQ: f32, mulK: f32, mulV: f32",
  row: (r) => `qkvRow(${r})`,
  decls: (first) => /* wgsl */ `@group(0) @binding(${first}) var<storage, read_write> kc: array<f32>;
@group(0) @binding(${first + 1}) var<storage, read_write> vc: array<f32>;
@group(0) @binding(${first + 2}) var<storage, read> cosT: array<f32>;
@group(0) @binding(${first + 3}) var<storage, read> sinT: array<f32>;
fn qkvRow(r: u32) -> u32 {
  if (r >= p.qk) { return r; }
  let t = r >> 1u;
  return (t / p.half) * p.hd + t % p.half + (r & 1u) * p.half;
}
// team rows r (even) and r + 1: the pair (a, b) of one head, rotated as rope-kv.ts does
fn putPair(r: u32, sa: f32, sb: f32) {
  let row = qkvRow(r);
  let at = p.pos * p.tableHalf + (r >> 1u) % p.half;
  let c = cosT[at];
  let s = sinT[at];
  let isQ = row < p.kStart;
  let m = select(p.mulK, p.mulQ, isQ);
  let a = sa * m;
  let b = sb * m;
  let ra = a * c - b * s;
  let rb = b * c + a * s;
  if (isQ) {
    out[row] = ra;
    out[row + p.half] = rb;
  } else {
    let dst = p.pos * p.kvCols + row - p.kStart;
    kc[dst] = ra;
    kc[dst + p.half] = rb;
  }
}
fn putV(r: u32, v: f32) { vc[p.pos * p.kvCols + r - p.qk] = v * p.mulV; }`,
  bindings: ["write", "write", "read", "read"],
  store: (sums, rows) => {
    const parts: string[] = [];
    for (let j = 0; j + 1 < sums.length; j += 2) {
      parts.push(`if (${rows[j]} < p.qk) { putPair(${rows[j]}, ${sums[j]}, ${sums[j + 1]}); } else if (${rows[j]} < p.n) {
      putV(${rows[j]}, ${sums[j]});
      if (${rows[j + 1]} < p.n) { putV(${rows[j + 1]}, ${sums[j + 1]}); }
    }`);
    }
    return parts.join("\n    ");
  },
};

/**
 * RMSNorm, then q/k/v, RoPE and the KV write in one self-quantizing GEMV over the blocks layout
 * (QKV_ROPE_HOOKS): bindings x, norm weight, normed row, w, scales, q, K cache, V cache, cos, sin; params
 * n (all rows), k, o0 (0), blocks, eps, then the hooks'. Grid: selfQuantGrid.
 */
export function qkvRopeGemvKernel(sg: number, window = QUANT_WINDOW): { kernel: Kernel; rowsPerGroup: number } {
  const R = GEMV_BLOCKS_QUANT.rowsPerTeam;
  if (R % 2 !== 0) throw new Error(`the q/k/v + RoPE GEMV needs an even number of rows per team, not ${R}`);
  return { kernel: gemvBlocksQuantKernel(sg, R, GEMV_BLOCKS_QUANT.unroll, QKV_ROPE_HOOKS, true, window), rowsPerGroup: gemvRows(sg, R, 1) };
}

/**
 * A GEMV over a stack of `m` weights (one buffer, rows one weight after another) writing each weight's
 * rows to its own output. Bindings: x, w, [scales,] out, out1..out(m-1). Params: the GEMV's (n = all rows,
 * mul = 1), then stackedParams (and, for a batch over 1, ocols, unused: each output's width is its member's rows).
 */
export function stackedGemvKernel(format: GpuFormat, mode: XMode, sg: number, v: GemvVariant, m: number, batch = 1, tiled = true): Kernel {
  return variantKernel(format, mode, sg, v, stackedHooks(m), batch, tiled);
}

/** Rows per team of the swiglu GEMV: a team must hold whole (gate, up) pairs. */
export function swigluRowsPerTeam(rowsPerTeam: number): number {
  return rowsPerTeam % 2 === 0 ? rowsPerTeam : 2 * rowsPerTeam;
}

/**
 * out[i] = silu(gate_i · x) * (up_i · x) over a stack [gate; up] of 2 * half rows. Bindings: x, w,
 * [scales,] out. Params: the GEMV's (n = 2 * half, mul = 1), half, gate's factor, up's factor (and, for a
 * batch over 1, ocols, unused: out rows are half wide).
 */
export function swigluGemvKernel(format: GpuFormat, mode: XMode, sg: number, v: GemvVariant, batch = 1, tiled = true): Kernel {
  if (v.rowsPerTeam % 2 !== 0) throw new Error(`the swiglu GEMV needs an even number of rows per team, not ${v.rowsPerTeam}`);
  return variantKernel(format, mode, sg, v, SWIGLU_HOOKS, batch, tiled);
}

/** out[o] += w_o · x: the GEMV with the residual add as its store. Bindings and params as the GEMV's (ocols: out's row width). */
export function addGemvKernel(format: GpuFormat, mode: XMode, sg: number, v: GemvVariant, batch = 1, tiled = true): Kernel {
  return variantKernel(format, mode, sg, v, ADD_HOOKS, batch, tiled);
}

/** The plain GEMV's variant `v` (matmul.ts's tables, as the backend picks it) with hooks, over `batch` x rows. */
function variantKernel(format: GpuFormat, mode: XMode, sg: number, v: GemvVariant, hooks: GemvHooks, batch: number, tiled: boolean): Kernel {
  return gemvKernel(format, mode, sg, v.rowsPerTeam, v.split, v.unroll, v.pipeline, v.x, hooks, batch, tiled);
}

/**
 * The same three fusions on the int8-activation GEMV for q8_0/q4_0 (gemv-i8.ts; q4_0 in the blocks
 * layout, `tiled` false: gemv-blocks.ts): bindings x quants, x scales, w, scales, out(, out1..); params n,
 * k, o0, blocks, then the hooks' as above.
 */
export function fusedGemvI8Kernel(format: BlockFormat, sg: number, fusion: { stacked: number } | "swiglu" | "add", tiled = true): { kernel: Kernel; rowsPerGroup: number } {
  const hooks = fusion === "swiglu" ? SWIGLU_HOOKS : fusion === "add" ? ADD_HOOKS : stackedHooks(fusion.stacked);
  if (!tiled) {
    const v = fusion === "swiglu" ? GEMV_BLOCKS_PAIRS : GEMV_BLOCKS;
    return { kernel: gemvBlocksI8Kernel(sg, v.rowsPerTeam, v.split, v.unroll, hooks), rowsPerGroup: gemvRows(sg, v.rowsPerTeam, v.split) };
  }
  const R = fusion === "swiglu" ? swigluRowsPerTeam(GEMV_I8_ROWS[format]) : GEMV_I8_ROWS[format];
  return { kernel: gemvI8Kernel(format, sg, R, gemvSplit(sg, R), GEMV_I8_UNROLL[format], hooks), rowsPerGroup: gemvRows(sg, R) };
}

/**
 * The three fusions on the self-quantizing q4_0 blocks GEMV (gemv-blocks.ts): bindings x (f32), w,
 * scales, out(, out1..); params n, k, o0, blocks, then the hooks' as above. swiglu's teams hold pairs.
 * `norm`: RMSNorm first (gemv-blocks.ts): eps after blocks, the norm weight and normalized row after x.
 * `window`: blocks of x quantized at a time (gemv-blocks.ts quantWindow).
 */
export function fusedGemvBlocksQuantKernel(sg: number, fusion: { stacked: number } | "swiglu" | "add", norm = false, window = QUANT_WINDOW): { kernel: Kernel; rowsPerGroup: number } {
  const hooks = fusion === "swiglu" ? SWIGLU_HOOKS : fusion === "add" ? ADD_HOOKS : stackedHooks(fusion.stacked);
  const R = fusion === "swiglu" ? swigluRowsPerTeam(GEMV_BLOCKS_QUANT.rowsPerTeam) : GEMV_BLOCKS_QUANT.rowsPerTeam;
  return { kernel: gemvBlocksQuantKernel(sg, R, GEMV_BLOCKS_QUANT.unroll, hooks, norm, window), rowsPerGroup: gemvRows(sg, R, 1) };
}
