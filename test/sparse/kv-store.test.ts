/**
 * The sparse KV cache (spec sparamx §7.1.6) on stories260K, teacher-forced: with k = v = 0 it equals dense
 * attention (≤ 1e-5 relative on the logits; the orders of summation differ); the layer threshold prunes
 * the prefill to within 0.5% of the target; rows appended during decode are exactly the rows of the final
 * exact cache pruned with the same frozen threshold; the row mode keeps ceil((1 − s)·d) per row.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadModel } from "../../src/load.js";
import type { Model } from "../../src/model/model.js";
import { SparseKvStore, magnitudeThreshold } from "../../src/sparse/kv-store.js";
import type { CpuBackend } from "../../src/backend/cpu/cpu-backend.js";

const PROMPT = [1, 403, 407, 261, 378, 429, 259, 1019 % 512, 300, 301, 302, 303, 304, 305, 306, 307];
const NEXT = [280, 281, 282, 283, 284, 285, 286, 287];

/** Logits of the prompt's last row and of each teacher-forced decode step, and the cache. */
async function run(model: Model, spec: string) {
  model.setKv(spec);
  const cache = model.network.newCache(64);
  const rows: Float32Array[] = [];
  rows.push(await model.backend.read(model.network.forward(Int32Array.from(PROMPT), 0, cache)));
  for (let i = 0; i < NEXT.length; i++) rows.push(await model.backend.read(model.network.forward(Int32Array.of(NEXT[i]!), PROMPT.length + i, cache)));
  return { rows, cache };
}

test("sparse KV: s = 0 equals dense; layer threshold hits the target; appends equal pruning the final cache", async () => {
  const model = await loadModel(undefined, { threads: 1 });
  try {
    const dense = await run(model, "dense");
    const zero = await run(model, "sparse:k=0,v=0");
    for (let i = 0; i < dense.rows.length; i++) {
      const a = dense.rows[i]!, b = zero.rows[i]!;
      let scale = 0;
      for (const x of a) scale = Math.max(scale, Math.abs(x));
      for (let j = 0; j < a.length; j++) assert.ok(Math.abs(a[j]! - b[j]!) <= 1e-5 * scale, `step ${i} logit ${j}: ${a[j]} vs ${b[j]}`);
    }
    const half = await run(model, "sparse:k=50,v=50");
    const store = half.cache as SparseKvStore;
    assert.ok(store instanceof SparseKvStore);
    const backend = model.backend as CpuBackend;
    const cfg = model.config;
    const width = cfg.numKvHeads * cfg.headDim;
    for (let l = 0; l < cfg.numLayers; l++) {
      const exact = backend.kvView(store.backendCache, l);
      for (const which of ["k", "v"] as const) {
        const all = exact[which];
        // the frozen threshold is the statistic of the prefill rows
        const tau = magnitudeThreshold(all.subarray(0, PROMPT.length * width), 0.5);
        assert.equal(store.threshold(which, l), tau);
        let zeros = 0;
        for (let t = 0; t < PROMPT.length + NEXT.length; t++) {
          for (let g = 0; g < cfg.numKvHeads; g++) {
            const row = store.row(which, l, t, g);
            for (let j = 0; j < cfg.headDim; j++) {
              const x = all[t * width + g * cfg.headDim + j]!;
              const want = Math.abs(x) >= tau ? x : 0;
              assert.equal(row[j], want, `layer ${l} ${which} token ${t} head ${g} channel ${j}`);
              if (t < PROMPT.length && want === 0) zeros++;
            }
          }
        }
        const realised = zeros / (PROMPT.length * width);
        assert.ok(Math.abs(realised - 0.5) <= 0.005, `layer ${l} ${which}: realised prefill sparsity ${realised}`);
      }
    }
    assert.ok(store.bytes() < (PROMPT.length + NEXT.length) * cfg.numLayers * 2 * width * 4, "the sparse cache is smaller than the f32 cache");
    const row = await run(model, "sparse-row:k=75,v=25");
    const rs = row.cache as SparseKvStore;
    const keepK = Math.ceil(0.25 * cfg.headDim), keepV = Math.ceil(0.75 * cfg.headDim);
    for (let t = 0; t < PROMPT.length + NEXT.length; t++) {
      assert.equal(rs.row("k", 1, t, 0).filter((x) => x !== 0).length, keepK);
      assert.equal(rs.row("v", 1, t, 0).filter((x) => x !== 0).length, keepV);
    }
    assert.throws(() => model.setKv("sparse:k=100"), /at most 99/);
  } finally {
    model.dispose();
  }
});
