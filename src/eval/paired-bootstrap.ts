/**
 * How sure a perplexity difference is: a row's pooled Δppl against a baseline scored on the same windows,
 * with a paired bootstrap interval over windows.
 *
 * Windows, not tokens, are resampled because tokens of one window share its text (a hard window is hard for
 * every row), so they are not independent draws; the window is the unit the text varies by. The pairing
 * (one draw of window indices serves both row and baseline) removes the between-window spread that the two
 * share, which is most of it: dense perplexity alone moved 4.6–15.6 across sets of four windows.
 */
import { Rng } from "../generate/sampler.js";

/** Per-window scores of one row: summed NLL (nats) and the number of scored tokens of each window. */
export interface WindowScores {
  readonly nll: readonly number[];
  readonly tokens: readonly number[];
}

export interface PairedBootstrapOptions {
  /** Bootstrap resamples. Defaults to 10,000. */
  readonly draws?: number;
  /** Seed of the resampling (mulberry32), so an interval reproduces. Defaults to 1. */
  readonly seed?: number;
  /** Two-sided coverage of the interval. Defaults to 0.95. */
  readonly level?: number;
}

export interface PairedDelta {
  /** exp(mean NLL of the row − mean NLL of the baseline) − 1, over all scored tokens (pooled). */
  readonly delta: number;
  /** Percentile interval of the same statistic over resampled windows. */
  readonly lo: number;
  readonly hi: number;
}

/** exp(Σ(row − base) / Σ tokens) − 1 of the windows in `idx`; differences first, so a shared offset cancels exactly. */
function pooled(row: readonly number[], base: readonly number[], tokens: readonly number[], idx: Iterable<number>): number {
  let diff = 0, count = 0;
  for (const i of idx) (diff += row[i]! - base[i]!), (count += tokens[i]!);
  return Math.expm1(diff / count);
}

/**
 * Pooled Δppl of `row` against `base` and its paired bootstrap interval: each draw picks as many windows as
 * there are, with replacement, the same ones for both; lo/hi are the draws' (1 − level)/2 and (1 + level)/2
 * order statistics (sorted[floor(q·B)] and sorted[ceil(q'·B) − 1]).
 */
export function pairedDeltaPpl(row: WindowScores, base: WindowScores, options: PairedBootstrapOptions = {}): PairedDelta {
  const draws = options.draws ?? 10_000, level = options.level ?? 0.95;
  const w = base.nll.length;
  if (w === 0) throw new Error("pairedDeltaPpl: no windows");
  for (const [name, s] of [["row", row], ["baseline", base]] as const) {
    if (s.nll.length !== w || s.tokens.length !== w) throw new Error(`pairedDeltaPpl: ${name} has ${s.nll.length} NLLs and ${s.tokens.length} token counts for ${w} windows`);
  }
  for (let i = 0; i < w; i++) {
    if (row.tokens[i] !== base.tokens[i]) throw new Error(`pairedDeltaPpl: window ${i} scores ${row.tokens[i]} tokens in the row and ${base.tokens[i]} in the baseline (not the same windows)`);
    if (!(base.tokens[i]! > 0)) throw new Error(`pairedDeltaPpl: window ${i} has ${base.tokens[i]} scored tokens`);
    if (!Number.isFinite(row.nll[i]!) || !Number.isFinite(base.nll[i]!)) throw new Error(`pairedDeltaPpl: window ${i} has a non-finite NLL`);
  }
  if (!(Number.isInteger(draws) && draws > 0)) throw new Error(`pairedDeltaPpl: draws must be a positive integer, got ${draws}`);
  if (!(level > 0 && level < 1)) throw new Error(`pairedDeltaPpl: level must be in (0, 1), got ${level}`);
  const all = Array.from({ length: w }, (_, i) => i);
  const delta = pooled(row.nll, base.nll, base.tokens, all);
  const rng = new Rng(options.seed ?? 1);
  const stats = new Float64Array(draws);
  const idx = new Int32Array(w);
  for (let b = 0; b < draws; b++) {
    for (let j = 0; j < w; j++) idx[j] = Math.floor(rng.next() * w);
    stats[b] = pooled(row.nll, base.nll, base.tokens, idx);
  }
  stats.sort();
  const q = (1 - level) / 2;
  return { delta, lo: stats[Math.floor(q * draws)]!, hi: stats[Math.ceil((1 - q) * draws) - 1]! };
}
