/**
 * Per-query-head token selection: which cached positions each query head attends to at one decode step.
 * Lists are ascending (attention sums in position order, like the dense loop).
 */

/** Sink tokens every selection policy keeps (TokenButler spec §5: "same 4 sinks"). */
export const SINKS = 4;

/**
 * SnapKV's priority of the observation window and generated positions: above any pooled score (a sum of
 * at most `window` probabilities), most recent first; RECENT + t is exact in f64 and, below 2^24, in f32.
 */
export const RECENT = 1e6;

export class KvSelection {
  /** [heads][stride] positions, the first counts[h] of each head's row in use. */
  readonly positions: Int32Array;
  readonly counts: Int32Array;
  constructor(readonly heads: number, readonly stride: number) {
    this.positions = new Int32Array(heads * stride);
    this.counts = new Int32Array(heads);
  }
}

/**
 * K_i, the positions a head keeps when n are visible (TokenButler spec §3.2, the same rule for every method):
 * min(ceil(fround(fround(n)·fround(keep))), n). The f32 product is the reference's.
 */
export function keepBudget(n: number, keep: number): number {
  return Math.min(Math.ceil(Math.fround(Math.fround(n) * Math.fround(keep))), n);
}

/**
 * Fills head h's list with the sinks plus the `k` positions of [0, n) with the highest score (ties go to the
 * lower position), ascending. `order` is scratch of length >= n.
 */
export function selectTopK(sel: KvSelection, h: number, score: Float64Array | Float32Array, n: number, k: number, order: Int32Array): void {
  const mark = markScratch(n);
  for (let t = 0; t < Math.min(SINKS, n); t++) mark[t] = 1;
  if (k > 0) {
    for (let t = 0; t < n; t++) order[t] = t;
    const ord = order.subarray(0, n);
    ord.sort((a, b) => score[b]! - score[a]! || a - b);
    for (let j = 0; j < k; j++) mark[ord[j]!] = 1;
  }
  writeMarked(sel, h, mark, n);
}

let markBuf = new Uint8Array(0);
/** A zeroed mark array of n entries (one shared scratch: selection runs on one thread). */
export function markScratch(n: number): Uint8Array {
  if (markBuf.length < n) markBuf = new Uint8Array(Math.max(n, 2 * markBuf.length));
  const m = markBuf.subarray(0, n);
  m.fill(0);
  return m;
}

/** Writes the marked positions of [0, n) as head h's ascending list. */
export function writeMarked(sel: KvSelection, h: number, mark: Uint8Array, n: number): void {
  let c = 0;
  const row = h * sel.stride;
  for (let t = 0; t < n; t++) if (mark[t]) sel.positions[row + c++] = t;
  sel.counts[h] = c;
}

/**
 * TokenButler's windowed variant (spec tokenbutler.md §2.3's "-Butler" checkpoints: a sliding window and
 * anchor tokens; §3.6 v2: sinks + local window + top-K): anchors and window count INSIDE K_i, so the set
 * holds exactly K_i positions (at least the 4 sinks). `anchors` (>= SINKS) first positions and the
 * floor(share·K_i) most recent ones are pinned, each capped so that the two fit in K_i.
 */
export function pinnedSplit(k: number, anchors: number, share: number): { anchors: number; window: number } {
  const a = Math.min(anchors, k);
  return { anchors: a, window: Math.min(Math.floor(share * k), k - a) };
}

/**
 * Fills head h's list with the sinks, positions [0, a), [n − w, n) and the k − a − w positions of [a, n − w)
 * with the highest score (ties go to the lower position), ascending. With a + w <= k < n the pinned ranges
 * do not overlap and the list holds max(k, min(SINKS, n)) positions.
 */
export function selectPinnedTopK(sel: KvSelection, h: number, score: Float64Array | Float32Array, n: number, k: number, a: number, w: number, order: Int32Array): void {
  const mark = markScratch(n);
  for (let t = 0; t < Math.min(SINKS, n); t++) mark[t] = 1;
  for (let t = 0; t < a; t++) mark[t] = 1;
  for (let t = n - w; t < n; t++) mark[t] = 1;
  const rest = k - a - w;
  if (rest > 0) {
    let m = 0;
    for (let t = a; t < n - w; t++) order[m++] = t;
    const ord = order.subarray(0, m);
    ord.sort((x, y) => score[y]! - score[x]! || x - y);
    for (let j = 0; j < Math.min(rest, m); j++) mark[ord[j]!] = 1;
  }
  writeMarked(sel, h, mark, n);
}
