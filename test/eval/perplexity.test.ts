import { test } from "node:test";
import assert from "node:assert/strict";
import { loadModel } from "../../src/load.js";
import { perplexityOfTokens } from "../../src/eval/perplexity.js";
import { STORIES } from "../paths.js";

test("windowed perplexity equals the mean NLL computed token by token through the KV cache", async () => {
  const model = await loadModel(STORIES);
  try {
    const ids = model.tokenizer.encode("Lily and Tom went to the park. They saw a big dog and a little cat. The dog was happy.");
    const ctx = 9;
    const chunks = 2;
    let total = 0;
    let count = 0;
    for (let w = 0; w < chunks; w++) {
      const window = ids.slice(w * ctx, (w + 1) * ctx);
      const cache = model.network.newCache(ctx);
      for (let t = 0; t + 1 < window.length; t++) {
        const logits = await model.backend.read(model.network.forward(Int32Array.of(window[t]!), t, cache));
        const max = Math.max(...logits);
        const lse = max + Math.log(logits.reduce((s, l) => s + Math.exp(l - max), 0));
        total += lse - logits[window[t + 1]!]!;
        count++;
      }
    }
    const r = await perplexityOfTokens(model, ids, { ctx, chunks });
    assert.equal(r.tokens, count);
    assert.ok(Math.abs(r.nll - total / count) < 1e-5, `${r.nll} vs ${total / count}`);
    assert.ok(Math.abs(r.ppl - Math.exp(r.nll)) < 1e-9);
  } finally {
    model.dispose();
  }
});
