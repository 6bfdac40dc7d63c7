/**
 * Attention of one query row over host-memory K/V: every position 0..len-1 (causal, like the dense loop)
 * or each query head's selected positions. The arithmetic is the CPU backend's reference loop, operation
 * for operation (f64 dot products rounded to f32 scores, max over the unrounded scores, f32 accumulators),
 * so over the same K/V rows it gives the same bits.
 */
import type { KvSelection } from "./selection.js";

/** A layer's K and V: row t of kv head g starts at t * width + g * headDim. */
export interface LayerKv {
  readonly k: Float32Array;
  readonly v: Float32Array;
  readonly width: number;
  readonly headDim: number;
}

let scoreBuf = new Float32Array(256);

/**
 * out[outOff + h*d ..] = attention of q[qOff + h*d ..] for every query head h. With `sel`, head h attends to
 * sel's list; else to positions [0, len). `probs` (when given) receives head h's probabilities at
 * [h * probStride + j] for the j-th attended position.
 */
export function attendRow(
  q: Float32Array, qOff: number, kv: LayerKv, heads: number, len: number,
  out: Float32Array, outOff: number, sel?: KvSelection, probs?: Float32Array, probStride = 0,
): void {
  const d = kv.headDim;
  const width = kv.width;
  const group = heads / (width / d);
  const scale = 1 / Math.sqrt(d);
  if (scoreBuf.length < len) scoreBuf = new Float32Array(Math.max(len, 2 * scoreBuf.length));
  const scores = scoreBuf;
  const K = kv.k, V = kv.v;
  for (let h = 0; h < heads; h++) {
    const qo = qOff + h * d;
    const kvo = Math.floor(h / group) * d;
    const count = sel ? sel.counts[h]! : len;
    const list = sel ? sel.positions : undefined;
    const lo = h * (sel?.stride ?? 0);
    let max = -Infinity;
    for (let j = 0; j < count; j++) {
      const t = list ? list[lo + j]! : j;
      let s = 0;
      const ko = kvo + t * width;
      for (let i = 0; i < d; i++) s += q[qo + i]! * K[ko + i]!;
      s *= scale;
      scores[j] = s;
      if (s > max) max = s;
    }
    let sum = 0;
    for (let j = 0; j < count; j++) {
      const e = Math.exp(scores[j]! - max);
      scores[j] = e;
      sum += e;
    }
    const oo = outOff + h * d;
    for (let i = 0; i < d; i++) out[oo + i] = 0;
    for (let j = 0; j < count; j++) {
      const t = list ? list[lo + j]! : j;
      const a = scores[j]! / sum;
      if (probs) probs[h * probStride + j] = a;
      const vo = kvo + t * width;
      for (let i = 0; i < d; i++) out[oo + i]! += a * V[vo + i]!;
    }
  }
}

/** Query head h's raw scores q·k/sqrt(d) over positions [0, len) into `out` (f64, unrounded). */
export function headScores(q: Float32Array, qOff: number, kv: LayerKv, heads: number, h: number, len: number, out: Float64Array): void {
  const d = kv.headDim;
  const group = heads / (kv.width / d);
  const scale = 1 / Math.sqrt(d);
  const qo = qOff + h * d;
  const kvo = Math.floor(h / group) * d;
  for (let t = 0; t < len; t++) {
    let s = 0;
    const ko = kvo + t * kv.width;
    for (let i = 0; i < d; i++) s += q[qo + i]! * kv.k[ko + i]!;
    out[t] = s * scale;
  }
}
