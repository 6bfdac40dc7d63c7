import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../../src/load.js";
import { checkBatchMatchesSingle } from "./batch-check.js";
import { ROOT, STORIES } from "../paths.js";

test("forwardBatch rows equal each sequence's own forward exactly (stories260K)", async () => {
  const model = await loadModel(STORIES, { threads: 1 });
  try {
    assert.ok(model.network.batches);
    await checkBatchMatchesSingle(model, "stories260K");
  } finally {
    model.dispose();
  }
});

test("forwardBatch rows equal each sequence's own forward exactly (frugal-ar-small, 2 threads)", async () => {
  const model = await loadModel(join(ROOT, "models/frugal-ar-small"), { threads: 2 });
  try {
    await checkBatchMatchesSingle(model, "frugal-ar-small");
  } finally {
    model.dispose();
  }
});

test("forwardBatch over caches of one KV pool (batched RoPE/KV write/attention) equals each sequence's own forward exactly (stories260K, frugal-ar-small)", async () => {
  for (const [name, source] of [["stories260K", STORIES], ["frugal-ar-small", join(ROOT, "models/frugal-ar-small")]] as const) {
    const model = await loadModel(source, { threads: 1 });
    try {
      await checkBatchMatchesSingle(model, `${name}, pooled`, 0, true);
    } finally {
      model.dispose();
    }
  }
});

test("forwardBatch rejects mismatched lengths and a full cache", async () => {
  const model = await loadModel(STORIES, { threads: 1 });
  try {
    const net = model.network;
    const c = net.newCache(4);
    assert.throws(() => net.forwardBatch(Int32Array.of(1, 2), [0], [c, c]), /2 tokens, 1 positions, 2 caches/);
    assert.throws(() => net.forwardBatch(Int32Array.of(1), [4], [c]), /context full/);
  } finally {
    model.dispose();
  }
});
