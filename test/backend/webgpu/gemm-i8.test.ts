/**
 * The int8-activation GEMM (kernels/gemm-blocks.ts), which q4_0 prefill on int8 activations runs: against
 * the f64 sum over the decoded weights and the GPU's own quantization of x (read back, every block's
 * stored sum checked), to f32 rounding; against the self-quantizing GEMV on each row (the same quantized
 * products, another order); and not equal to the f32 GEMM (the int8 path did run). Shapes leave partial
 * tiles in both directions, an odd number of blocks (a half-empty K step) and, on the small-binding
 * backend, weights split into parts.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../../src/load.js";
import { ggufModelMetadata, spmVocabMetadata, syntheticSpmVocab, writeGguf } from "../../../src/io/gguf-writer.js";
import { fastRandomTensors, randomLlamaConfig } from "../../../bench/make-random-gguf.js";
import { decodeRow } from "../../../src/backend/cpu/reference.js";
import type { GpuTensor } from "../../../src/backend/webgpu/webgpu-backend.js";
import { Rng, assertClose, openOrSkip, quantizedPlanes, randomWeight, tensorOf } from "./helpers.js";

const { gpu, reason } = await openOrSkip({ activations: "int8" });
const split = gpu ? await openOrSkip({ activations: "int8", subgroups: false, maxBindingBytes: 20 * 1072 }) : { gpu: undefined, reason };
const dir = mkdtempSync(join(tmpdir(), "frugal-gemm-i8-"));
after(() => {
  gpu?.dispose();
  split.gpu?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test("q4_0 prefill on int8 x: the GEMM equals the f64 sum over its quantized x, the GEMV row by row, and differs from the f32 GEMM", { skip: !gpu && reason }, async () => {
  const rng = new Rng(31);
  const [M, N, K] = [70, 70, 67 * 32];
  const raw = randomWeight("q4_0", [N, K], rng);
  const xs = Float32Array.from({ length: M * K }, (_, i) => (rng.next() * 2 - 1) * 2 ** (((i >> 5) % 7) - 3));
  xs.fill(0, 64, 96);
  const wrow = new Float64Array(N * K);
  const row = new Float32Array(K);
  for (let o = 0; o < N; o++) {
    decodeRow("q4_0", raw.data, o, K, row);
    wrow.set(row, o * K);
  }
  for (const g of [gpu!, split.gpu!]) {
    const what = `sg=${g.gpu.subgroupMinSize} parts=${g.upload(raw).parts.length}`;
    const w = g.upload(raw);
    const x = tensorOf(g, M, K, xs) as GpuTensor;
    const out = g.activation(M, N);
    const before = g.recorder.dispatches;
    g.matmul(out, x, w);
    assert.equal(g.recorder.dispatches - before, 1 + w.parts.length, `${what}: one quantization and a GEMM a part`);
    const got = await g.read(out);
    const { q, s } = await quantizedPlanes(g, x, M * K);
    const singles = await Promise.all(Array.from({ length: M }, async (_, r) => {
      const o1 = g.activation(1, N);
      g.matmul(o1, tensorOf(g, 1, K, xs.subarray(r * K, (r + 1) * K)), w);
      return g.read(o1);
    }));
    for (let r = 0; r < M; r++) {
      for (let o = 0; o < N; o++) {
        let want = 0;
        let mag = 0;
        for (let k = 0; k < K; k++) {
          const t = wrow[o * K + k]! * q[r * K + k]! * s[(r * K + k) >> 5]!;
          want += t;
          mag += Math.abs(t);
        }
        const tol = (K / 32 + 8) * 2 ** -23 * mag;
        const v = got[r * N + o]!;
        assert.ok(Math.abs(v - want) <= tol, `${what}: out[${r}][${o}] = ${v}, f64 ${want} (tolerance ${tol})`);
        assert.ok(Math.abs(v - singles[r]![o]!) <= 2 * tol, `${what}: out[${r}][${o}] = ${v}, the GEMV gave ${singles[r]![o]}`);
      }
    }
    g.int8Gemm = false;
    try {
      const f32 = g.activation(M, N);
      g.matmul(f32, x, w);
      const other = await g.read(f32);
      assert.ok(other.some((v, i) => v !== got[i]), `${what}: the f32 GEMM gave the same bits`);
    } finally {
      g.int8Gemm = true;
    }
  }
});

test("a q4_0 Llama's prefill on int8 x: every position's logits match the CPU's int8 path", { skip: !gpu && reason }, async () => {
  const config = randomLlamaConfig({ dim: 256, layers: 2, hidden: 512, heads: 4, kvHeads: 2, vocab: 320, ctx: 64, tied: true });
  const path = join(dir, "llama-q4_0.gguf");
  await writeGguf(path, { ...ggufModelMetadata(config, "q4_0", "gemm-i8-test"), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)) }, fastRandomTensors(config, "q4_0", 7));
  const g = await openOrSkip({ activations: "int8" });
  const models = [await loadModel(path, { backend: g.gpu! }), await loadModel(path, { device: "cpu", threads: 1 })];
  try {
    // 24 positions: more rows than a batched GEMV takes, so every matmul of the prompt is a GEMM
    const ids = Int32Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % config.vocabSize);
    const before = g.gpu!.recorder.dispatches;
    const [gpuLogits, cpuLogits] = await Promise.all(models.map((m) => m.backend.read(m.network.forward(ids, 0, m.network.newCache(32), true))));
    assert.ok(g.gpu!.recorder.dispatches > before);
    assertClose(gpuLogits!, cpuLogits!, "WebGPU int8 GEMM vs CPU int8 prefill logits", 2e-3, 2e-4);
  } finally {
    for (const m of models) m.dispose();
  }
});
