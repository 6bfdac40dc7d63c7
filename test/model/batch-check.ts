import assert from "node:assert/strict";
import type { KVCache } from "../../src/backend/backend.js";
import type { Model } from "../../src/model/model.js";

/**
 * Three sequences with prompts of different lengths decode side by side. Each step, forwardBatch of the
 * three current tokens must give, row by row, exactly the logits that each sequence's own single-token
 * forward gives on a second, independent set of caches: same ops on the same numbers, row by row
 * (exactly, or within `tolerance` where the backend multiplies one row and many rows with different kernels).
 * With `pooled`, the batch's caches come from one KV slot pool (LlamaModel.newCachePool), so RoPE, the KV
 * write and attention run once per layer over all three rows (Backend.ropeRows, kvWriteRows, attentionRows).
 */
export async function checkBatchMatchesSingle(model: Model, label: string, tolerance = 0, pooled = false): Promise<void> {
  const net = model.network;
  const vocab = model.config.vocabSize;
  const prompts = ["Once upon a time", "The cat sat on the mat and looked at the", "Hi"];
  const ids = prompts.map((p) => model.tokenizer.encode(p, { addSpecialTokens: true }));
  const batchCaches: KVCache[] = [];
  const soloCaches: KVCache[] = [];
  const next: number[] = [];
  // pooled: the batch's caches are slots of one KV pool, so forwardBatch takes the batched ops
  const pool = pooled ? net.newCachePool(ids.length, 96) : undefined;
  if (pooled) assert.ok(pool, `${label}: the model gives a KV pool`);
  for (const seq of ids) {
    const a = pool ? pool.take() : net.newCache(96), b = net.newCache(96);
    model.prefill(seq, a);
    const logits = await model.backend.read(model.prefill(seq, b));
    next.push(argmax(logits));
    batchCaches.push(a);
    soloCaches.push(b);
  }
  const positions = ids.map((s) => s.length);
  assert.ok(new Set(positions).size === 3, "the sequences must sit at different positions");
  for (let step = 0; step < 6; step++) {
    const batch = await model.backend.read(net.forwardBatch(Int32Array.from(next), positions, batchCaches));
    assert.equal(batch.length, 3 * vocab);
    for (let r = 0; r < 3; r++) {
      const solo = await model.backend.read(net.forward(Int32Array.of(next[r]!), positions[r]!, soloCaches[r]!));
      const row = batch.subarray(r * vocab, (r + 1) * vocab);
      const where = `${label}: step ${step}, sequence ${r} at position ${positions[r]}`;
      if (tolerance === 0) assert.deepEqual(row, solo, where);
      else {
        let worst = 0;
        for (let i = 0; i < vocab; i++) worst = Math.max(worst, Math.abs(row[i]! - solo[i]!));
        assert.ok(worst <= tolerance, `${where}: max |batch - solo| = ${worst}`);
        assert.equal(argmax(row), argmax(solo), where);
      }
      next[r] = argmax(solo);
      positions[r]!++;
    }
  }
}

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

