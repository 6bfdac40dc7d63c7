/**
 * Unstructured pruning of the linear layers (spec sparamx §2): in every output row, zero the floor(s·K)
 * weights with the smallest score, ties to the lower column. Magnitude scores |W_ij|; Wanda scores
 * |W_ij|·‖X_j‖₂ with the column norms of the layer's calibration inputs (wanda.ts collects them).
 * Pruning zeroes the stored bits in place of the weight's own format, so kept weights are never re-rounded.
 */
import type { DType } from "../tensor/dtype.js";
import type { RawTensor } from "../tensor/raw.js";
import { decodeRow } from "../backend/cpu/reference.js";

export const PRUNE_METHODS = ["magnitude", "wanda"] as const;
export type PruneMethod = (typeof PRUNE_METHODS)[number];

/** Formats whose single weights can be zeroed in place (q8_0: the int8 code; q4_0 has no zero code). */
export const PRUNABLE_DTYPES: readonly DType[] = ["f32", "f16", "bf16", "q8_0"];

/** The linear weights pruning applies to (never embeddings, norms or lm_head). */
export function isPrunableLinear(name: string): boolean {
  return /^model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$/.test(name);
}

export function checkSparsity(s: number, what = "sparsity"): number {
  if (!Number.isFinite(s) || s < 0 || s > 1) throw new Error(`${what} must be a fraction in [0, 1], got ${s}`);
  return s;
}

/**
 * Which weights of a [rows, cols] matrix to prune: pruned[n*cols + k] = 1. `colScale` (length cols) is
 * Wanda's ‖X_j‖₂; without it the score is |W|.
 */
export function pruneMask(w: Float32Array, rows: number, cols: number, sparsity: number, colScale?: Float64Array): Uint8Array {
  checkSparsity(sparsity);
  if (w.length !== rows * cols) throw new Error(`pruneMask: ${w.length} weights for [${rows}, ${cols}]`);
  if (colScale && colScale.length !== cols) throw new Error(`pruneMask: ${colScale.length} column scales for ${cols} columns`);
  const drop = Math.floor(sparsity * cols);
  const pruned = new Uint8Array(rows * cols);
  if (drop === 0) return pruned;
  const score = new Float64Array(cols);
  const sorted = new Float64Array(cols);
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const a = Math.abs(w[n * cols + k]!);
      score[k] = colScale ? a * colScale[k]! : a;
    }
    // the drop-th smallest score t: everything below t goes, then entries equal to t from the lowest column
    sorted.set(score);
    sorted.sort();
    const t = sorted[drop - 1]!;
    let left = drop;
    for (let k = 0; k < cols; k++) if (score[k]! < t) { pruned[n * cols + k] = 1; left--; }
    for (let k = 0; k < cols && left > 0; k++) if (score[k] === t) { pruned[n * cols + k] = 1; left--; }
  }
  return pruned;
}

/** A copy of `t` with the masked weights zeroed in its own format. */
export function applyPruneMask(t: RawTensor, pruned: Uint8Array): RawTensor {
  const [rows, cols] = [t.shape[0]!, t.shape[t.shape.length - 1]!];
  const data = t.data.slice();
  if (t.dtype === "f32" || t.dtype === "f16" || t.dtype === "bf16") {
    const width = t.dtype === "f32" ? 4 : 2;
    for (let i = 0; i < rows * cols; i++) if (pruned[i]) data.fill(0, i * width, (i + 1) * width);
  } else if (t.dtype === "q8_0") {
    // block of 32: f16 scale, then 32 int8 codes; the code 0 decodes to exactly 0
    for (let i = 0; i < rows * cols; i++) if (pruned[i]) data[Math.floor(i / 32) * 34 + 2 + (i % 32)] = 0;
  } else {
    throw new Error(`tensor ${t.name}: cannot prune ${t.dtype} weights (prunable: ${PRUNABLE_DTYPES.join(", ")})`);
  }
  return { ...t, data };
}

/** The weights of a [rows, cols] tensor as f32. */
export function decodeMatrix(t: RawTensor): Float32Array {
  if (t.shape.length !== 2) throw new Error(`tensor ${t.name}: pruning needs a 2-D weight, got [${t.shape.join(", ")}]`);
  const [rows, cols] = [t.shape[0]!, t.shape[1]!];
  if (!PRUNABLE_DTYPES.includes(t.dtype)) throw new Error(`tensor ${t.name}: cannot prune ${t.dtype} weights (prunable: ${PRUNABLE_DTYPES.join(", ")})`);
  const out = new Float32Array(rows * cols);
  for (let n = 0; n < rows; n++) decodeRow(t.dtype, t.data, n, cols, out.subarray(n * cols, (n + 1) * cols));
  return out;
}

/** `t` pruned to `sparsity` per output row (magnitude, or Wanda when `colScale` is given). */
export function pruneTensor(t: RawTensor, sparsity: number, colScale?: Float64Array): RawTensor {
  const w = decodeMatrix(t);
  return applyPruneMask(t, pruneMask(w, t.shape[0]!, t.shape[1]!, sparsity, colScale));
}

/** Fraction of zero weights (either sign) in a prunable tensor. */
export function realisedSparsity(t: RawTensor): number {
  const w = decodeMatrix(t);
  let z = 0;
  for (let i = 0; i < w.length; i++) if (w[i] === 0) z++;
  return z / w.length;
}
