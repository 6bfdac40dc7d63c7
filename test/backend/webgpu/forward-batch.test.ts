/**
 * Batched decoding on WebGPU: forwardBatch runs RoPE, the KV write and attention on row views (buffer
 * sub-ranges) of the shared activations, or over a KV pool. The batch's matmuls (up to 8 rows) are GEMVs
 * over all rows whose rows sum exactly as a lone step's GEMV, so rows equal each sequence's own forward
 * bit for bit; with `batchedGemv` off, rows whose widths cannot be row views take the GEMM, whose sums
 * run in another order (f32 rounding).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../../../src/load.js";
import { ROOT, STORIES } from "../../paths.js";
import { checkBatchMatchesSingle } from "../../model/batch-check.js";
import { openOrSkip } from "./helpers.js";
import type { WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";

const probe = await openOrSkip();
probe.gpu?.dispose();
const skip = !probe.gpu && probe.reason;

test("WebGPU forwardBatch rows equal each sequence's own forward bit for bit (frugal-ar-small; separate caches, then a KV pool)", { skip }, async () => {
  const model = await loadModel(join(ROOT, "models/frugal-ar-small"), { device: "webgpu" });
  try {
    assert.ok(model.network.batches, "frugal-ar-small's rows are 256-byte aligned");
    await checkBatchMatchesSingle(model, "frugal-ar-small on WebGPU", 0);
    await checkBatchMatchesSingle(model, "frugal-ar-small on WebGPU, pooled", 0, true);
  } finally {
    model.dispose();
  }
});

test("WebGPU forwardBatch over a KV pool (batched RoPE/KV write/attention) equals the per-row path bit for bit (frugal-ar-small)", { skip }, async () => {
  const model = await loadModel(join(ROOT, "models/frugal-ar-small"), { device: "webgpu" });
  try {
    const net = model.network;
    const prompts = ["Once upon a time", "The cat sat on the mat and looked at the", "Hi"].map((p) => model.tokenizer.encode(p, { addSpecialTokens: true }));
    const pool = net.newCachePool(3, 96)!;
    assert.ok(pool);
    const pooled = prompts.map(() => pool.take());
    const plain = prompts.map(() => net.newCache(96));
    prompts.forEach((ids, r) => {
      model.prefill(ids, pooled[r]!);
      model.prefill(ids, plain[r]!);
    });
    const positions = prompts.map((ids) => ids.length);
    let tokens = Int32Array.from(prompts, (ids) => ids[ids.length - 1]!);
    for (let step = 0; step < 4; step++) {
      // both are GEMM batches; only the position-dependent ops differ (one dispatch vs one per row)
      const rec = (model.backend as WebGpuBackend).recorder;
      const d0 = rec.dispatches;
      const a = await model.backend.read(net.forwardBatch(tokens, positions, pooled));
      const d1 = rec.dispatches;
      const b = await model.backend.read(net.forwardBatch(tokens, positions, plain));
      // per layer: 5 dispatches (2 ropeRows, kvWriteRows, attention partial + combine) instead of 5 per row,
      // or 3 per row where the per-row path fuses RoPE and the KV write (ropeKvWrite)
      const perRow = (model.backend as WebGpuBackend).fuse ? 3 : 5;
      assert.equal((rec.dispatches - d1) - (d1 - d0), model.config.numLayers * (3 * perRow - 5), "dispatches saved");
      assert.deepEqual(a, b, `step ${step}`);
      const vocab = model.config.vocabSize;
      tokens = Int32Array.from(positions, (_, r) => argmaxOf(a.subarray(r * vocab, (r + 1) * vocab)));
      positions.forEach((_, r) => positions[r]!++);
    }
  } finally {
    model.dispose();
  }
});

test("WebGPU batches stories260K through a KV pool though its 128-byte KV rows cannot be row views", { skip }, async () => {
  const model = await loadModel(STORIES, { device: "webgpu" });
  try {
    const align = model.backend.rowViewAlign!;
    assert.ok((model.config.numKvHeads * model.config.headDim * 4) % align !== 0);
    const x = model.backend.activation(2, 32);
    assert.throws(() => model.backend.rowView!(x, 1, 1), /storage alignment/);
    assert.equal(model.network.batches, true);
    await checkBatchMatchesSingle(model, "stories260K on WebGPU, pooled", 0, true);
    // one GEMV a row needs row views, so these widths took the GEMM: equal to f32 rounding only
    const backend = model.backend as WebGpuBackend;
    backend.batchedGemv = false;
    try {
      await checkBatchMatchesSingle(model, "stories260K on WebGPU, pooled, batchedGemv off", 1e-3, true);
    } finally {
      backend.batchedGemv = true;
    }
    const c = [model.network.newCache(8), model.network.newCache(8)];
    assert.throws(() => model.network.forwardBatch(Int32Array.of(1, 2), [0, 0], c), /one newCachePool/);
  } finally {
    model.dispose();
  }
});

test("WebGPU forwardBatch: batched GEMVs take one dispatch for all rows of each matmul (frugal-ar-small, 3 rows over a KV pool)", { skip }, async () => {
  const model = await loadModel(join(ROOT, "models/frugal-ar-small"), { device: "webgpu" });
  try {
    const net = model.network;
    const b = model.backend as WebGpuBackend;
    const pool = net.newCachePool(3, 32)!;
    const caches = [pool.take(), pool.take(), pool.take()];
    for (const c of caches) model.prefill([1, 2, 3], c);
    const step = (batched: boolean, pos: number) => {
      b.batchedGemv = batched;
      try {
        const d0 = b.recorder.dispatches;
        const out = net.forwardBatch(Int32Array.of(5, 6, 7), [pos, pos, pos], caches);
        return { dispatches: b.recorder.dispatches - d0, out };
      } finally {
        b.batchedGemv = true;
      }
    };
    const on = step(true, 3);
    const a = await b.read(on.out);
    const off = step(false, 3);
    assert.deepEqual(await b.read(off.out), a, "one GEMV a row gives the same logits");
    // per layer qkv, o + add, gate/up + SwiGLU, down + add, then the LM head: one dispatch instead of 3
    assert.equal(off.dispatches - on.dispatches, 2 * (4 * model.config.numLayers + 1));
  } finally {
    model.dispose();
  }
});

function argmaxOf(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}
