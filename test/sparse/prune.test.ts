/**
 * Pruning (spec sparamx §7.1.5): Wanda with equal column norms is magnitude pruning; every row loses
 * exactly floor(s·K) weights (ties to the lower column, pre-existing zeros first); the kept weights keep
 * their stored bits; Wanda on a real model prunes every linear to the target and differs from magnitude.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { applyPruneMask, pruneMask, pruneTensor, realisedSparsity, decodeMatrix } from "../../src/sparse/prune.js";
import { f32ToBf16 } from "../../src/tensor/half.js";
import { readSource, loadModel } from "../../src/load.js";
import { prunedTensors, writePrunedFolder, linearSparsity } from "../../src/sparse/source.js";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { perplexityOfTokens } from "../../src/eval/perplexity.js";
import { rng } from "../rng.js";


test("Wanda with equal column norms equals magnitude pruning; each row loses exactly floor(s*K)", () => {
  const r = rng(1);
  const [rows, cols] = [7, 45];
  const w = Float32Array.from({ length: rows * cols }, () => r() * 2 - 1);
  for (const s of [0, 0.5, 0.6, 0.7, 0.9, 1]) {
    const mag = pruneMask(w, rows, cols, s);
    const wanda = pruneMask(w, rows, cols, s, new Float64Array(cols).fill(3.5));
    assert.deepEqual(wanda, mag);
    assert.deepEqual(pruneMask(w, rows, cols, s), mag, "deterministic");
    for (let n = 0; n < rows; n++) {
      const row = mag.subarray(n * cols, (n + 1) * cols);
      assert.equal(row.reduce((a, b) => a + b, 0), Math.floor(s * cols));
      // every pruned |w| is <= every kept |w| in the row
      let maxPruned = -1, minKept = Infinity;
      for (let k = 0; k < cols; k++) {
        const a = Math.abs(w[n * cols + k]!);
        if (row[k]) maxPruned = Math.max(maxPruned, a);
        else minKept = Math.min(minKept, a);
      }
      assert.ok(maxPruned <= minKept);
    }
  }
});

test("ties go to the lower column; pre-existing zeros count toward the target", () => {
  const w = Float32Array.from([1, 1, 1, 1, 0, 2, 1, 3]);
  assert.deepEqual([...pruneMask(w, 1, 8, 0.5)], [1, 1, 1, 0, 1, 0, 0, 0]);
});

test("Wanda weighs columns by their activation norms", () => {
  const w = Float32Array.from([1, 2, 3, 4]);
  assert.deepEqual([...pruneMask(w, 1, 4, 0.5, Float64Array.from([10, 10, 1, 1]))], [0, 0, 1, 1]);
  assert.deepEqual([...pruneMask(w, 1, 4, 0.5)], [1, 1, 0, 0]);
});

test("pruning zeroes the stored bits and keeps the others (bf16, q8_0)", () => {
  const r = rng(2);
  const vals = Array.from({ length: 64 }, () => r() * 2 - 1);
  const bf = new Uint16Array(vals.map(f32ToBf16));
  const t = { name: "w", dtype: "bf16" as const, shape: [2, 32], data: new Uint8Array(bf.buffer) };
  const p = pruneTensor(t, 0.5);
  const out = new Uint16Array(p.data.buffer, p.data.byteOffset, 64);
  for (let i = 0; i < 64; i++) assert.ok(out[i] === 0 || out[i] === bf[i]);
  assert.equal(realisedSparsity(p), 0.5);
  const q8 = new Uint8Array(34 * 2);
  for (let i = 0; i < q8.length; i++) q8[i] = (r() * 250) | 0 || 1;
  q8[0] = 0x00; q8[1] = 0x3c; q8[34] = 0x00; q8[35] = 0x3c;
  const tq = { name: "q", dtype: "q8_0" as const, shape: [2, 32], data: q8 };
  const pq = applyPruneMask(tq, pruneMask(decodeMatrix(tq), 2, 32, 0.75));
  assert.equal(realisedSparsity(pq), 0.75);
  assert.throws(() => pruneTensor({ name: "blk.q4", dtype: "q4_0", shape: [1, 32], data: new Uint8Array(18) }, 0.5), /blk\.q4.*q4_0/);
});

const SMALL = resolve("models/frugal-ar-small");

test("Wanda on frugal-ar-small: every linear at the target; a pruned folder loads on the sparse kernels", async () => {
  const loaded = await readSource(SMALL);
  const calib = (await readFile("models/corpus-val.txt", "utf8")).slice(0, 20000);
  const wanda = await prunedTensors(loaded, { method: "wanda", sparsity: 0.5, calibText: calib, seqLen: 64, sequences: 4, threads: 1 });
  const mag = await prunedTensors(loaded, { method: "magnitude", sparsity: 0.5 });
  assert.equal(wanda.size, loaded.config.numLayers * 7);
  for (const t of wanda.values()) {
    const cols = t.shape[1]!;
    assert.equal(realisedSparsity(t), Math.floor(0.5 * cols) / cols, t.name);
  }
  const name = "model.layers.1.mlp.down_proj.weight";
  assert.notDeepEqual(wanda.get(name)!.data, mag.get(name)!.data, "Wanda's choice differs from magnitude's");
  const dir = await mkdtemp(join(tmpdir(), "frugal-prune-"));
  try {
    await writePrunedFolder(dir, { source: SMALL, method: "wanda", sparsity: 0.5, realised: linearSparsity(wanda) }, wanda);
    const sparse = await loadModel(dir, { threads: 1 });
    const dense = await loadModel(dir, { threads: 1, sparse: { kernels: false } });
    try {
      assert.equal(sparse.network.weights.layers[0]!.q.dtype, "sparse-f32");
      assert.equal(dense.network.weights.layers[0]!.q.dtype, "f32");
      const ids = sparse.tokenizer.encode(calib.slice(0, 2000), { addSpecialTokens: false }).slice(0, 64);
      const a = await perplexityOfTokens(sparse, ids, { ctx: 64 });
      const b = await perplexityOfTokens(dense, ids, { ctx: 64 });
      assert.ok(Math.abs(a.nll - b.nll) < 1e-4, `sparse kernels ${a.nll} vs dense kernels ${b.nll} on the same pruned weights`);
    } finally {
      sparse.dispose();
      dense.dispose();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
