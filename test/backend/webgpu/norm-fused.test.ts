/**
 * RMSNorm inside the self-quantizing q4_0 blocks GEMV (kernels/gemv-blocks.ts, `norm`; normMatmulStacked
 * and normMatmulSwiglu): against rmsnorm followed by the fused GEMV it replaces,
 * - the normalized row it stores and every output are the same bits (the norm's sums are formed in the
 *   norm kernel's order, and the GEMV quantizes the same values);
 * - it declines where it cannot run (f32 activations, tiles, several rows), recording nothing;
 * and on a whole q4_0 Llama model, a decode step on int8 activations records two dispatches a layer fewer
 * with the unfused step's logits, which also agree with the CPU backend's int8 path.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { GpuKVCache, GpuTensor, WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import { ropeInverseFrequencies } from "../../../src/model/config.js";
import type { GpuWeight } from "../../../src/backend/webgpu/weights.js";
import { QUANT_X_ONCE_GROUPS } from "../../../src/backend/webgpu/kernels/gemv-blocks.js";
import { loadModel } from "../../../src/load.js";
import { ggufModelMetadata, spmVocabMetadata, syntheticSpmVocab, writeGguf } from "../../../src/io/gguf-writer.js";
import { fastRandomTensors, randomLlamaConfig } from "../../../bench/make-random-gguf.js";
import { Rng, assertClose, openOrSkip, randomWeight, randoms, tensorOf } from "./helpers.js";

const { gpu, reason } = await openOrSkip({ activations: "int8" });
const plain = gpu ? await openOrSkip({ activations: "int8", subgroups: false }) : { gpu: undefined, reason };
const dir = mkdtempSync(join(tmpdir(), "frugal-norm-fused-"));
after(() => {
  gpu?.dispose();
  plain.gpu?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** An f32 norm weight of width K with values around 1. */
function normWeight(g: WebGpuBackend, K: number, rng: Rng): GpuWeight {
  const data = Float32Array.from({ length: K }, () => 0.5 + rng.next());
  return g.upload({ name: "norm", dtype: "f32", shape: [K], data: new Uint8Array(data.buffer) });
}

test("normMatmulStacked / normMatmulSwiglu equal rmsnorm then the fused GEMV, bit for bit", { skip: !gpu && reason }, async () => {
  const rng = new Rng(17);
  for (const g of [gpu!, plain.gpu!]) {
    // K = 2 windows of 256 blocks and a part: the norm's loop and the window loop both wrap
    for (const K of [1024, 2 * 8192 + 1024]) {
      const what = `K=${K} sg=${g.gpu.subgroupMinSize}`;
      const x = tensorOf(g, 1, K, randoms(K, rng, 3)) as GpuTensor;
      const norm = normWeight(g, K, rng);
      const eps = 1e-5;
      const [q, k, v] = g.uploadStack([40, 16, 16].map((n, i) => randomWeight("q4_0", [n, K], rng, `w${i}`)));
      const sep = [40, 16, 16].map((n) => g.activation(1, n));
      const fused = [40, 16, 16].map((n) => g.activation(1, n));
      const [h1, h2] = [g.activation(1, K), g.activation(1, K)];
      g.rmsnorm(h1, x, norm, eps, K);
      assert.equal(g.matmulStacked(sep, h1, [q!, k!, v!]), true, `${what}: stacked`);
      const before = g.recorder.dispatches;
      assert.equal(g.normMatmulStacked(fused, h2, x, norm, eps, [q!, k!, v!]), true, `${what}: norm + stacked`);
      assert.equal(g.recorder.dispatches - before, 1, `${what}: one dispatch`);
      assert.deepEqual(await g.read(h2), await g.read(h1), `${what}: the normalized row`);
      for (let i = 0; i < 3; i++) assert.deepEqual(await g.read(fused[i]!), await g.read(sep[i]!), `${what}: stacked out ${i}`);

      const [gate, up] = g.uploadStack([24, 24].map((n, i) => randomWeight("q4_0", [n, K], rng, `gu${i}`)));
      const [o1, o2] = [g.activation(1, 24), g.activation(1, 24)];
      g.rmsnorm(h1, x, norm, eps, K);
      assert.equal(g.matmulSwiglu(o1, h1, gate!, up!), true, `${what}: swiglu`);
      assert.equal(g.normMatmulSwiglu(o2, h2, x, norm, eps, gate!, up!), true, `${what}: norm + swiglu`);
      assert.deepEqual(await g.read(o2), await g.read(o1), `${what}: swiglu out`);
      assert.deepEqual(await g.read(h2), await g.read(h1), `${what}: the normalized row (swiglu)`);
    }
  }
});

test("self-quantizing GEMVs: x quantized once (fewer workgroups than row groups, all of x in one window) gives the same bits", { skip: !gpu && reason }, async () => {
  const rng = new Rng(29);
  for (const g of [gpu!, plain.gpu!]) {
    // K = 1024: one window; K = 17408 (544 blocks): several windows of 256, or one of 576 where the device allows
    for (const K of [1024, 17408]) {
      const x = tensorOf(g, 1, K, randoms(K, rng, 3)) as GpuTensor;
      const norm = normWeight(g, K, rng);
      // 72 + 40 + 8 stacked rows and 2 x 88 swiglu rows: several row groups each, the last one partial
      const stack = g.uploadStack([72, 40, 8].map((n, i) => randomWeight("q4_0", [n, K], rng, `s${i}`)));
      const [gate, up] = g.uploadStack([88, 88].map((n, i) => randomWeight("q4_0", [n, K], rng, `g${i}`)));
      const plainW = g.upload(randomWeight("q4_0", [200, K], rng, "p"));
      const run = async (groups: number, wholeX: boolean, selfQuantizing: boolean) => {
        g.quantOnceGroups = groups;
        g.quantWholeX = wholeX;
        g.quantizeInGemv = selfQuantizing;
        const outs = [72, 40, 8].map((n) => g.activation(1, n));
        const [h, o, op] = [g.activation(1, K), g.activation(1, 88), g.activation(1, 200)];
        if (selfQuantizing) {
          assert.equal(g.normMatmulStacked(outs, h, x, norm, 1e-5, stack), true);
          assert.equal(g.normMatmulSwiglu(o, g.activation(1, K), x, norm, 1e-5, gate!, up!), true);
        } else {
          g.rmsnorm(h, x, norm, 1e-5, K);
          assert.equal(g.matmulStacked(outs, h, stack), true);
          assert.equal(g.matmulSwiglu(o, h, gate!, up!), true);
        }
        g.matmul(op, x, plainW);
        return Promise.all([...outs, o, op].map((t) => g.read(t)));
      };
      try {
        const want = await run(0, false, false);
        for (const wholeX of [false, true]) {
          for (const groups of [0, 1, 2, 3]) assert.deepEqual(await run(groups, wholeX, true), want, `K=${K} sg=${g.gpu.subgroupMinSize}, whole x ${wholeX}, ${groups} workgroups (0: one a row group)`);
        }
      } finally {
        g.quantOnceGroups = QUANT_X_ONCE_GROUPS;
        g.quantWholeX = true;
        g.quantizeInGemv = true;
      }
    }
  }
});

test("normMatmulQkvRope equals normMatmulStacked then ropeKvWrite: q, the K and V cache rows, the normalized row", { skip: !gpu && reason }, async () => {
  const rng = new Rng(41);
  const [heads, kvHeads, hd, K, pos] = [4, 2, 16, 1024, 5];
  for (const g of [gpu!, plain.gpu!]) {
    const table = g.ropeTable(ropeInverseFrequencies({ theta: 10000, dim: hd } as never), 16);
    const x = tensorOf(g, 1, K, randoms(K, rng, 3)) as GpuTensor;
    const norm = normWeight(g, K, rng);
    const [wq, wk, wv] = g.uploadStack([heads * hd, kvHeads * hd, kvHeads * hd].map((n, i) => randomWeight("q4_0", [n, K], rng, `r${i}`))) as [GpuWeight, GpuWeight, GpuWeight];
    const caches = [g.kvCache(1, kvHeads, hd, 16), g.kvCache(1, kvHeads, hd, 16)] as [GpuKVCache, GpuKVCache];
    for (const groups of [QUANT_X_ONCE_GROUPS, 1]) {
      g.quantOnceGroups = groups;
      try {
        const [q1, h1] = [g.activation(1, heads * hd), g.activation(1, K)];
        const before = g.recorder.dispatches;
        assert.equal(g.normMatmulQkvRope(q1, h1, x, norm, 1e-5, [wq, wk, wv], caches[0], 0, pos, hd, table), true);
        assert.equal(g.recorder.dispatches - before, 1, "one dispatch");
        const [q2, k2, v2, h2] = [g.activation(1, heads * hd), g.activation(1, kvHeads * hd), g.activation(1, kvHeads * hd), g.activation(1, K)];
        assert.equal(g.normMatmulStacked([q2, k2, v2], h2, x, norm, 1e-5, [wq, wk, wv]), true);
        assert.equal(g.ropeKvWrite(q2, k2, v2, caches[1], 0, pos, hd, table), true);
        const what = `sg=${g.gpu.subgroupMinSize}, ${groups} workgroups`;
        assert.deepEqual(await g.read(q1), await g.read(q2), `${what}: q`);
        assert.deepEqual(await g.read(h1), await g.read(h2), `${what}: the normalized row`);
        const cache = async (c: GpuKVCache, which: "k" | "v") => new Float32Array(await g.recorder.read(c[which][0]!.buffer, 0, 16 * kvHeads * hd * 4));
        for (const which of ["k", "v"] as const) assert.deepEqual(await cache(caches[0], which), await cache(caches[1], which), `${what}: ${which} cache`);
        const row = (await cache(caches[0], "k")).subarray(pos * kvHeads * hd, (pos + 1) * kvHeads * hd);
        assert.ok(row.some((v) => v !== 0), `${what}: position ${pos} of the K cache was written`);
      } finally {
        g.quantOnceGroups = QUANT_X_ONCE_GROUPS;
      }
    }
    // an int8 cache keeps the separate ops
    assert.equal(g.normMatmulQkvRope(g.activation(1, heads * hd), g.activation(1, K), x, norm, 1e-5, [wq, wk, wv], g.kvCache(1, kvHeads, hd, 16, "int8"), 0, pos, hd, table), false);
  }
});

test("the norm fusion declines off the self-quantizing path, recording nothing", { skip: !gpu && reason }, async () => {
  const rng = new Rng(3);
  const K = 512;
  const f32 = await openOrSkip({ activations: "f32" });
  try {
    for (const [g, rows, label] of [[f32.gpu!, 1, "f32 activations"], [gpu!, 2, "two rows"]] as const) {
      const x = tensorOf(g, rows, K, randoms(rows * K, rng)) as GpuTensor;
      const ws = g.uploadStack([8, 8].map((n, i) => randomWeight("q4_0", [n, K], rng, `d${i}`)));
      const outs = [g.activation(rows, 8), g.activation(rows, 8)];
      const before = g.recorder.dispatches;
      assert.equal(g.normMatmulStacked(outs, g.activation(rows, K), x, normWeight(g, K, rng), 1e-5, ws), false, label);
      assert.equal(g.recorder.dispatches, before, `${label}: nothing recorded`);
    }
    gpu!.quantizeInGemv = false;
    const x = tensorOf(gpu!, 1, K, randoms(K, rng)) as GpuTensor;
    const ws = gpu!.uploadStack([8, 8].map((n, i) => randomWeight("q4_0", [n, K], rng, `e${i}`)));
    assert.equal(gpu!.normMatmulStacked([gpu!.activation(1, 8), gpu!.activation(1, 8)], gpu!.activation(1, K), x, normWeight(gpu!, K, rng), 1e-5, ws), false, "x quantized by its own dispatch");
  } finally {
    gpu!.quantizeInGemv = true;
    f32.gpu?.dispose();
  }
});

test("a q4_0 Llama on int8 activations: norms and RoPE + KV write fused into the GEMVs, the unfused step's logits and the CPU's", { skip: !gpu && reason }, async () => {
  const config = randomLlamaConfig({ dim: 256, layers: 2, hidden: 512, heads: 4, kvHeads: 2, vocab: 320, ctx: 64, tied: true });
  const path = join(dir, "llama-q4_0.gguf");
  await writeGguf(path, { ...ggufModelMetadata(config, "q4_0", "norm-fused-test"), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)) }, fastRandomTensors(config, "q4_0", 5));
  const fused = await openOrSkip({ activations: "int8" });
  const unfused = await openOrSkip({ activations: "int8", fuse: false });
  const models = [await loadModel(path, { backend: fused.gpu! }), await loadModel(path, { backend: unfused.gpu! }), await loadModel(path, { device: "cpu", threads: 1 })];
  try {
    const ids = [1, 40, 77, 200, 13];
    const steps = await Promise.all(models.map(async (m) => {
      const cache = m.network.newCache(32);
      await m.backend.read(m.prefill(ids.slice(0, -1), cache));
      const gb = m.backend as WebGpuBackend;
      const before = gb.recorder?.dispatches ?? 0;
      const logits = m.network.forward(Int32Array.of(ids.at(-1)!), ids.length - 1, cache);
      const dispatches = (gb.recorder?.dispatches ?? 0) - before;
      return { dispatches, logits: await m.backend.read(logits) };
    }));
    const [f, u, cpu] = steps as [typeof steps[0], typeof steps[0], typeof steps[0]];
    // per layer: the 8 fusions of fused.test.ts, the two norms, and RoPE + KV write inside the q/k/v GEMV
    assert.equal(u.dispatches - f.dispatches, 11 * config.numLayers, `dispatches per step: ${u.dispatches} unfused, ${f.dispatches} fused`);
    assertClose(f.logits, u.logits, "fused vs unfused decode logits", 1e-4, 2e-5);
    assertClose(f.logits, cpu.logits, "WebGPU int8 vs CPU int8 decode logits", 2e-3, 2e-4);
  } finally {
    for (const m of models) m.dispose();
  }
});
