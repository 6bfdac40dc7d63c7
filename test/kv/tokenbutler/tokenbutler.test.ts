import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../../../src/load.js";
import type { Model } from "../../../src/model/model.js";
import type { KVCache } from "../../../src/backend/backend.js";
import { kvStoreFactory } from "../../../src/kv/spec.js";
import { DEFAULT_PREDICTOR, TokenButlerStore } from "../../../src/kv/tokenbutler/tokenbutler-store.js";
import { PredictorState, predictorParameters, readPredictor } from "../../../src/kv/tokenbutler/predictor.js";
import { ROOT } from "../../paths.js";

const BASE = join(ROOT, "models/frugal-ar-base");
const PARITY = JSON.parse(readFileSync(join(ROOT, "test/fixtures/tokenbutler/parity.json"), "utf8")) as { ids: number[]; last_row: number[][][]; row_10: number[][][] };

async function run(model: Model, cache: KVCache, ids: number[], prompt: number): Promise<Float32Array[]> {
  const net = model.network;
  const rows = [Float32Array.from(await model.backend.read(net.forward(Int32Array.from(ids.slice(0, prompt)), 0, cache)))];
  for (let t = prompt; t < ids.length; t++) rows.push(Float32Array.from(await model.backend.read(net.forward(Int32Array.of(ids[t]!), t, cache))));
  return rows;
}

test("the exported predictor: every tensor present with its shape, parameter count equals the spec's formula", () => {
  const w = readPredictor(DEFAULT_PREDICTOR);
  let n = 0;
  for (const t of w.t.values()) n += t.length;
  assert.equal(n, predictorParameters(w.config));
  assert.equal(w.header.parameters, n);
});

test("TS predictor matches the PyTorch predictor on the same tokens (S̃ max abs error <= 1e-4 scaled), and incremental decode equals one-pass", async () => {
  const model = await loadModel(BASE);
  try {
    const net = model.network;
    const ids = PARITY.ids;
    const store = kvStoreFactory("tokenbutler:keep=0.5")(net.kvContext(64)) as TokenButlerStore;
    await run(model, store, ids, ids.length);
    const N = net.config.numLayers, H = net.config.numHeads;
    const out = new Float64Array(64);
    let worst = 0, scale = 0;
    for (let l = 1; l < N; l++) for (let h = 0; h < H; h++) {
      store.predictor.scores(l, h, ids.length - 1, out);
      const want = PARITY.last_row[l - 1]![h]!;
      for (let t = 0; t < ids.length; t++) {
        worst = Math.max(worst, Math.abs(out[t]! - want[t]!));
        scale = Math.max(scale, Math.abs(want[t]!));
      }
    }
    assert.ok(worst <= 1e-4 * Math.max(1, scale), `max abs error ${worst} (largest |S̃| ${scale})`);
    // one position at a time (the decode path) gives the same importance keys and queries
    const step = kvStoreFactory("tokenbutler:keep=0.5")(net.kvContext(64)) as TokenButlerStore;
    await run(model, step, ids, 1);
    let diff = 0;
    const n = ids.length * step.predictor.slots * 32;
    for (let i = 0; i < n; i++) diff = Math.max(diff, Math.abs(step.predictor.keys[i]! - store.predictor.keys[i]!));
    assert.ok(diff < 1e-5, `incremental vs one-pass importance keys: ${diff}`);
    const last = new Float64Array(64);
    step.predictor.scores(3, 5, ids.length - 1, last);
    store.predictor.scores(3, 5, ids.length - 1, out);
    for (let t = 0; t < ids.length; t++) assert.ok(Math.abs(last[t]! - out[t]!) < 1e-4);
  } finally {
    model.dispose();
  }
});

test("tokenbutler keep = 1 equals dense bit for bit; keep = 0.3: first generated token is dense's, later ones are not", async () => {
  const model = await loadModel(BASE);
  try {
    const net = model.network;
    const ids = model.tokenizer.encode("The kernel is the core of the operating system. It manages memory, processes and devices, and it", { addSpecialTokens: true });
    const dense = await run(model, net.newCache(64), ids, 8);
    const full = await run(model, kvStoreFactory("tokenbutler:keep=1")(net.kvContext(64)), ids, 8);
    for (let r = 0; r < dense.length; r++) assert.deepEqual(full[r], dense[r], `keep=1 step ${r}`);
    const sparse = kvStoreFactory("tokenbutler:keep=0.3")(net.kvContext(64)) as TokenButlerStore;
    const rows = await run(model, sparse, ids, 8);
    assert.deepEqual(rows[0], dense[0]);
    assert.ok(rows.some((row, r) => row.some((x, i) => x !== dense[r]![i])));
    assert.ok(sparse.usage.attended < sparse.usage.visible);
  } finally {
    model.dispose();
  }
});

test("tokenbutler refuses a model its predictor was not trained for, naming the shapes", async () => {
  const model = await loadModel(join(ROOT, "models/stories260K/stories260K.bin"));
  try {
    assert.throws(() => kvStoreFactory("tokenbutler:keep=0.5")(model.network.kvContext(64)), /trained for 8 layers x 8 heads/);
  } finally {
    model.dispose();
  }
});

test("readPredictor names the file when it is missing", () => {
  assert.throws(() => readPredictor("/nonexistent/tb.safetensors"), /\/nonexistent\/tb.safetensors: cannot read the TokenButler predictor/);
  assert.ok(PredictorState);
});
