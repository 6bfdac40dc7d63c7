/**
 * Batched decoding on WebGPU: forwardBatch runs RoPE, the KV write and attention on row views (buffer
 * sub-ranges) of the shared activations. The batch's matmuls are GEMMs and a lone step's are GEMVs, whose
 * sums run in different orders, so rows agree to f32 rounding, not bit for bit.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../../../src/load.js";
import { ROOT, STORIES } from "../../paths.js";
import { checkBatchMatchesSingle } from "../../model/batch-check.js";
import { openOrSkip } from "./helpers.js";

const probe = await openOrSkip();
probe.gpu?.dispose();
const skip = !probe.gpu && probe.reason;

test("WebGPU forwardBatch rows equal each sequence's own forward to f32 rounding (frugal-ar-small)", { skip }, async () => {
  const model = await loadModel(join(ROOT, "models/frugal-ar-small"), { device: "webgpu" });
  try {
    assert.ok(model.network.batches, "frugal-ar-small's rows are 256-byte aligned");
    await checkBatchMatchesSingle(model, "frugal-ar-small on WebGPU", 1e-3);
  } finally {
    model.dispose();
  }
});

test("WebGPU does not batch a model whose KV rows cannot be bound at their offsets (stories260K: 128-byte rows)", { skip }, async () => {
  const model = await loadModel(STORIES, { device: "webgpu" });
  try {
    const align = model.backend.rowViewAlign!;
    assert.ok((model.config.numKvHeads * model.config.headDim * 4) % align !== 0);
    assert.equal(model.network.batches, false);
    const x = model.backend.activation(2, 32);
    assert.throws(() => model.backend.rowView!(x, 1, 1), /storage alignment/);
  } finally {
    model.dispose();
  }
});
