/** Turning a row of logits into the next token id. */
import type { SampleParams } from "../backend/backend.js";

export interface SamplingOptions {
  /** 0 picks the most likely token (greedy). Defaults to 0.8 in generate, 0 in eval. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 disables. */
  topK?: number;
  /** Keep the smallest set of tokens whose probabilities sum to at least p; 1 disables. */
  topP?: number;
  /** Drop tokens less likely than minP times the most likely one; 0 disables. */
  minP?: number;
  /** Divide positive (multiply negative) logits of tokens already seen by this; 1 disables. */
  repetitionPenalty?: number;
  /** Seed of the sampler's random numbers; the same seed gives the same text. */
  seed?: number;
}

/** A small, fast, seedable generator (mulberry32); Math.random cannot be seeded. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

export class Sampler {
  private readonly rng: Rng;
  private readonly o: SamplingOptions;
  constructor(options: SamplingOptions = {}) {
    const o = options;
    for (const [k, lo, hi] of [["temperature", 0, Infinity], ["topK", 0, Infinity], ["topP", 0, 1], ["minP", 0, 1], ["repetitionPenalty", 0, Infinity]] as const) {
      const v = o[k];
      if (v !== undefined && !(v >= lo && v <= hi)) throw new RangeError(`${k} must be in [${lo}, ${hi}], got ${v}`);
    }
    if (o.repetitionPenalty === 0) throw new RangeError("repetitionPenalty must be positive");
    // top-p 0 would keep nothing; like transformers (min_tokens_to_keep = 1) it keeps the most likely token
    this.o = o.topP === 0 ? { ...o, topK: 1, topP: 1 } : o;
    this.rng = new Rng(o.seed ?? (Math.random() * 2 ** 32) >>> 0);
  }

  /** True when the choice depends on nothing but the largest logit (temperature 0, no penalty). */
  get greedy(): boolean {
    return (this.o.temperature ?? 0) === 0 && (this.o.repetitionPenalty ?? 1) === 1;
  }

  /** Picks the next token; `history` feeds the repetition penalty. `logits` may be modified. */
  sample(logits: Float32Array, history: readonly number[] = []): number {
    const pen = this.o.repetitionPenalty ?? 1;
    if (pen !== 1) {
      for (const id of new Set(history)) {
        const l = logits[id]!;
        logits[id] = l > 0 ? l / pen : l * pen;
      }
    }
    const temperature = this.o.temperature ?? 0;
    if (temperature === 0) return argmax(logits);
    const { ids, w } = keptTokens(logits, this.o);
    return drawKept(ids, w, this.rng.next());
  }

  /**
   * What a backend's `sample` needs to draw where the logits are, or undefined when the draw needs the
   * logits here (greedy, or a repetition penalty, which depends on the history).
   */
  get deviceParams(): SampleParams | undefined {
    const temperature = this.o.temperature ?? 0;
    if (temperature === 0 || (this.o.repetitionPenalty ?? 1) !== 1) return undefined;
    return { temperature, topK: this.o.topK ?? 0, topP: this.o.topP ?? 1, minP: this.o.minP ?? 0 };
  }

  /** The next number of the seeded stream, for a draw made elsewhere: the same one `sample` would use. */
  uniform(): number {
    return this.rng.next();
  }
}

/**
 * Draws from a kept set: walks the tokens in ascending id order and returns the first at which the running
 * weight reaches u * (total weight), u in [0, 1). Id order (not the order keptTokens returns) is what a
 * GPU can walk with a prefix sum, so both backends pick the same token for the same u.
 */
export function drawKept(ids: Int32Array, w: Float64Array, u: number): number {
  if (ids.length === 0) throw new RangeError("no token is left to sample from (top-p 0 keeps none)");
  let order: ArrayLike<number> | undefined;
  for (let i = 1; i < ids.length; i++) {
    if (ids[i]! < ids[i - 1]!) {
      order = Int32Array.from(ids.keys()).sort((a, b) => ids[a]! - ids[b]!);
      break;
    }
  }
  let sum = 0;
  for (let i = 0; i < ids.length; i++) sum += w[order ? order[i]! : i]!;
  let r = u * sum;
  for (let i = 0; i < ids.length; i++) {
    const j = order ? order[i]! : i;
    r -= w[j]!;
    if (r <= 0) return ids[j]!;
  }
  return ids[order ? order[ids.length - 1]! : ids.length - 1]!;
}

/** The ids of the k largest logits (all ids when k is 0 or covers the vocabulary), in no particular order. */
function candidates(logits: Float32Array, k: number): Int32Array {
  const n = logits.length;
  if (k <= 0 || k >= n) {
    const all = new Int32Array(n);
    for (let i = 0; i < n; i++) all[i] = i;
    return all;
  }
  const kth = kthLargest(Float32Array.from(logits), k);
  const out = new Int32Array(k);
  let m = 0;
  for (let i = 0; i < n; i++) if (logits[i]! > kth) out[m++] = i;
  for (let i = 0; i < n && m < k; i++) if (logits[i] === kth) out[m++] = i;
  return out;
}

/** The k-th largest value (k >= 1) by quickselect; reorders `v`. */
function kthLargest(v: Float32Array, k: number): number {
  let lo = 0;
  let hi = v.length - 1;
  const target = k - 1;
  while (lo < hi) {
    const pivot = v[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (v[i]! > pivot) i++;
      while (v[j]! < pivot) j--;
      if (i <= j) {
        const t = v[i]!;
        v[i++] = v[j]!;
        v[j--] = t;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return v[target]!;
  }
  return v[lo]!;
}

/**
 * The smallest set of most likely tokens whose weights reach `mass`, most likely first. The nucleus
 * is made of the largest weights, so it lies inside any set {w >= t} whose total reaches `mass`:
 * only that set is sorted, and t is lowered until it is big enough.
 */
function nucleus(ids: Int32Array, w: Float64Array, mass: number): [Int32Array, Float64Array] {
  let t = Math.exp(-4);
  for (;;) {
    let covered = 0;
    let count = 0;
    for (let i = 0; i < w.length; i++) if (w[i]! >= t) { covered += w[i]!; count++; }
    if (covered >= mass || t === 0) break;
    t = t * t < 1e-300 ? 0 : t * t;
  }
  const pick = new Int32Array(w.length);
  let m = 0;
  for (let i = 0; i < w.length; i++) if (w[i]! >= t) pick[m++] = i;
  const order = pick.subarray(0, m).sort((a, b) => w[b]! - w[a]! || ids[a]! - ids[b]!);
  let acc = 0;
  let keep = 0;
  while (keep < order.length && acc < mass) acc += w[order[keep++]!]!;
  const kept = order.subarray(0, keep);
  return [Int32Array.from(kept, (i) => ids[i]!), Float64Array.from(kept, (i) => w[i]!)];
}

/**
 * The tokens temperature sampling may pick after top-k, min-p and top-p, with weights proportional to
 * their probabilities (w = p / p_max). No full sort of the vocabulary: that cost ~3.6 ms a token at
 * 8K entries and far more at 128K.
 */
export function keptTokens(logits: Float32Array, o: SamplingOptions): { ids: Int32Array; w: Float64Array } {
  const temperature = o.temperature || 1;
  let ids: Int32Array = candidates(logits, o.topK ?? 0);
  let max = -Infinity;
  for (let i = 0; i < ids.length; i++) if (logits[ids[i]!]! > max) max = logits[ids[i]!]!;
  let w: Float64Array = new Float64Array(ids.length);
  let total = 0;
  for (let i = 0; i < ids.length; i++) total += w[i] = Math.exp((logits[ids[i]!]! - max) / temperature);
  const minP = o.minP ?? 0;
  if (minP > 0) {
    let m = 0;
    for (let i = 0; i < w.length; i++) if (w[i]! >= minP) { ids[m] = ids[i]!; w[m++] = w[i]!; }
    ids = ids.subarray(0, m);
    w = w.subarray(0, m);
  }
  const topP = o.topP ?? 1;
  if (topP < 1) [ids, w] = nucleus(ids, w, topP * total);
  return { ids, w };
}
