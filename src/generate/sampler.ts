/** Turning a row of logits into the next token id. */

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
  constructor(private readonly o: SamplingOptions = {}) {
    for (const [k, lo, hi] of [["temperature", 0, Infinity], ["topK", 0, Infinity], ["topP", 0, 1], ["minP", 0, 1], ["repetitionPenalty", 0, Infinity]] as const) {
      const v = o[k];
      if (v !== undefined && !(v >= lo && v <= hi)) throw new RangeError(`${k} must be in [${lo}, ${hi}], got ${v}`);
    }
    if (o.repetitionPenalty === 0) throw new RangeError("repetitionPenalty must be positive");
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

    let ids = Array.from(logits.keys());
    ids.sort((a, b) => logits[b]! - logits[a]!);
    const k = this.o.topK ?? 0;
    if (k > 0 && k < ids.length) ids = ids.slice(0, k);
    const max = logits[ids[0]!]! / temperature;
    let probs = ids.map((id) => Math.exp(logits[id]! / temperature - max));
    let sum = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / sum);
    const minP = this.o.minP ?? 0;
    if (minP > 0) {
      const keep = probs.filter((p) => p >= minP * probs[0]!).length;
      ids = ids.slice(0, keep);
      probs = probs.slice(0, keep);
    }
    const topP = this.o.topP ?? 1;
    if (topP < 1) {
      let acc = 0;
      let keep = 0;
      while (keep < probs.length && acc < topP) acc += probs[keep++]!;
      ids = ids.slice(0, keep);
      probs = probs.slice(0, keep);
    }
    sum = probs.reduce((a, b) => a + b, 0);
    let r = this.rng.next() * sum;
    for (let i = 0; i < ids.length; i++) {
      r -= probs[i]!;
      if (r <= 0) return ids[i]!;
    }
    return ids[ids.length - 1]!;
  }
}
