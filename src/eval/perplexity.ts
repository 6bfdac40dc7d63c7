import type { Model } from "../model/model.js";
import type { KVCache } from "../backend/backend.js";
import { settleKv } from "../kv/store.js";

export interface PerplexityOptions {
  /** Tokens per window. Defaults to 512 (or the model's context if shorter). */
  ctx?: number;
  /** Evaluate only the first `chunks` windows. */
  chunks?: number;
  /**
   * Score tokens after the first `decodeFrom` of each window one decode step at a time (a prefill of the
   * first decodeFrom tokens, then teacher-forced single-token forwards), so KV methods that act on decode
   * steps (src/kv) are measured; undefined: one forward a window.
   */
  decodeFrom?: number;
  /** Called after each window with (windows done, windows total). */
  onProgress?: (done: number, total: number) => void;
}

export interface PerplexityResult {
  /** Tokens scored (each window scores all but its first token). */
  tokens: number;
  /** Mean negative log-likelihood in nats. */
  nll: number;
  ppl: number;
}

/**
 * Perplexity as `frugal eval ppl` defines it: the whole text tokenized without special tokens, cut
 * into consecutive non-overlapping windows of `ctx` tokens (a shorter last window is kept if it has
 * at least two tokens), each token after the first in a window scored given the tokens before it in
 * that window.
 */
export async function evaluatePerplexity(model: Model, text: string, options: PerplexityOptions = {}): Promise<PerplexityResult> {
  const ids = model.tokenizer.encode(text, { addSpecialTokens: false });
  return perplexityOfTokens(model, ids, options);
}

export async function perplexityOfTokens(model: Model, ids: readonly number[], options: PerplexityOptions = {}): Promise<PerplexityResult> {
  const context = model.network.contextLength;
  const ctx = options.ctx ?? Math.min(512, context);
  if (!Number.isInteger(ctx) || ctx < 2) throw new RangeError(`ctx must be an integer >= 2, got ${ctx}`);
  if (ctx > context) throw new RangeError(`ctx ${ctx} exceeds the model's context of ${context}`);
  const windows: number[][] = [];
  for (let i = 0; i + 1 < ids.length; i += ctx) {
    const w = ids.slice(i, i + ctx);
    if (w.length >= 2) windows.push(w);
  }
  if (options.chunks !== undefined) windows.splice(options.chunks);
  if (windows.length === 0) throw new Error(`the text has ${ids.length} tokens: too few to score`);
  let total = 0;
  let count = 0;
  const cache = model.network.newCache(ctx);
  for (const [wi, w] of windows.entries()) {
    const logits = await windowLogits(model, w, cache, options.decodeFrom);
    const vocab = model.config.vocabSize;
    for (let t = 0; t + 1 < w.length; t++) {
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      let max = -Infinity;
      for (let i = 0; i < vocab; i++) if (row[i]! > max) max = row[i]!;
      let sum = 0;
      for (let i = 0; i < vocab; i++) sum += Math.exp(row[i]! - max);
      total += max + Math.log(sum) - row[w[t + 1]!]!;
      count++;
    }
    options.onProgress?.(wi + 1, windows.length);
  }
  const nll = total / count;

  return { tokens: count, nll, ppl: Math.exp(nll) };
}

/** Logits [window length, vocab]: one forward, or a prefill of `decodeFrom` tokens then one forward a token. */
async function windowLogits(model: Model, w: readonly number[], cache: KVCache, decodeFrom: number | undefined): Promise<Float32Array> {
  const net = model.network;
  if (decodeFrom === undefined || decodeFrom >= w.length) return model.backend.read(net.forward(Int32Array.from(w), 0, cache, true));
  if (!Number.isInteger(decodeFrom) || decodeFrom < 1) throw new RangeError(`decodeFrom must be an integer >= 1, got ${decodeFrom}`);
  const vocab = model.config.vocabSize;
  const out = new Float32Array(w.length * vocab);
  out.set(await model.backend.read(net.forward(Int32Array.from(w.slice(0, decodeFrom)), 0, cache, true)));
  await settleKv(cache);
  for (let t = decodeFrom; t < w.length; t++) out.set(await model.backend.read(net.forward(Int32Array.of(w[t]!), t, cache)), t * vocab);
  return out;
}
