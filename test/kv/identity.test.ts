import { test } from "node:test";
import assert from "node:assert/strict";
import { loadModel } from "../../src/load.js";
import type { Model } from "../../src/model/model.js";
import type { KVCache } from "../../src/backend/backend.js";
import { kvStoreFactory } from "../../src/kv/spec.js";
import { STORIES } from "../paths.js";

const TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside with her dog.";

/** Logits of a prefill of `prompt` tokens, then one row per teacher-forced decode step of the rest. */
async function run(model: Model, cache: KVCache, ids: number[], prompt: number): Promise<Float32Array[]> {
  const net = model.network;
  const rows = [await model.backend.read(net.forward(Int32Array.from(ids.slice(0, prompt)), 0, cache))];
  for (let t = prompt; t < ids.length; t++) rows.push(await model.backend.read(net.forward(Int32Array.of(ids[t]!), t, cache)));
  return rows;
}

function sameBits(a: Float32Array[], b: Float32Array[], what: string): void {
  assert.equal(a.length, b.length);
  for (let r = 0; r < a.length; r++) assert.deepEqual(a[r], b[r], `${what}: step ${r}`);
}

test("dense through the KV interface is bit-identical to the plain cache, prefill and decode", async () => {
  const model = await loadModel(STORIES);
  try {
    const ids = model.tokenizer.encode(TEXT, { addSpecialTokens: true });
    const net = model.network;
    const plain = await run(model, net.newCache(64), ids, 8);
    const store = kvStoreFactory("dense")(net.kvContext(64));
    sameBits(await run(model, store, ids, 8), plain, "dense store");
    assert.equal(store.length, ids.length);
    assert.equal(store.bytes(), ids.length * net.config.numLayers * 2 * net.config.numKvHeads * net.config.headDim * 4);
  } finally {
    model.dispose();
  }
});

const POLICIES = ["oracle", "h2o", "snapkv", "quest", "streaming"];

test("keep = 1 equals dense bit for bit for every selection policy; at keep 0.25 the first token is dense's and later ones are not", async () => {
  const model = await loadModel(STORIES);
  try {
    const ids = model.tokenizer.encode(TEXT, { addSpecialTokens: true });
    const net = model.network;
    const dense = await run(model, net.newCache(64), ids, 8);
    for (const name of POLICIES) {
      const full = await run(model, kvStoreFactory(`${name}:keep=1`)(net.kvContext(64)), ids, 8);
      sameBits(full, dense, `${name}:keep=1`);
      const sparse = await run(model, kvStoreFactory(`${name}:keep=0.25${name === "quest" ? ",page=4" : ""}`)(net.kvContext(64)), ids, 8);
      assert.deepEqual(sparse[0], dense[0], `${name}:keep=0.25 first generated token's logits`);
      assert.ok(sparse.some((row, r) => row.some((x, i) => x !== dense[r]![i])), `${name}:keep=0.25 changes some decode logits`);
    }
  } finally {
    model.dispose();
  }
});
