import type { Model } from "../src/model/model.js";

/**
 * Perplexity over non-overlapping windows (as `frugal eval ppl`), plus the mean KL divergence
 * KL(p_base ‖ p) of each next-token distribution from the unquantized model's and the share of tokens whose
 * argmax agrees: on text far from a model's training data (stories260K here) perplexity itself moves by
 * noise, while KL measures how far quantization moved the model. `base` holds the baseline's log-probs
 * (filled when undefined).
 */
export async function score(model: Model, ids: number[], ctx: number, base: Float32Array[]): Promise<{ ppl: number; kl: number; top1: number }> {
  const vocab = model.config.vocabSize;
  const cache = model.network.newCache(ctx);
  let nll = 0, kl = 0, agree = 0, count = 0, wi = 0;
  for (let i = 0; i + 1 < ids.length; i += ctx, wi++) {
    const w = ids.slice(i, i + ctx);
    if (w.length < 2) break;
    const logits = await model.backend.read(model.network.forward(Int32Array.from(w), 0, cache, true));
    const lp = new Float32Array((w.length - 1) * vocab);
    for (let t = 0; t + 1 < w.length; t++) {
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      let max = -Infinity;
      for (let v = 0; v < vocab; v++) if (row[v]! > max) max = row[v]!;
      let sum = 0;
      for (let v = 0; v < vocab; v++) sum += Math.exp(row[v]! - max);
      const lse = max + Math.log(sum);
      for (let v = 0; v < vocab; v++) lp[t * vocab + v] = row[v]! - lse;
      nll -= lp[t * vocab + w[t + 1]!]!;
      count++;
    }
    base[wi] ??= lp;
    const b = base[wi]!;
    for (let t = 0; t + 1 < w.length; t++) {
      let argB = 0, argQ = 0;
      for (let v = 0; v < vocab; v++) {
        const pb = b[t * vocab + v]!, pq = lp[t * vocab + v]!;
        kl += Math.exp(pb) * (pb - pq);
        if (pb > b[t * vocab + argB]!) argB = v;
        if (pq > lp[t * vocab + argQ]!) argQ = v;
      }
      if (argB === argQ) agree++;
    }
  }
  return { ppl: Math.exp(nll / count), kl: kl / count, top1: agree / count };
}
