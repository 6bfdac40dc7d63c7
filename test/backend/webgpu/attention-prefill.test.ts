/**
 * The tiled prefill attention (kernels/attention-prefill.ts) against the f64 causal GQA softmax computed
 * here, and against the per-row kernel it replaces for long prompts (kernels/attention.ts), with subgroup
 * and workgroup-memory score sums: head widths 32, 64, 96 and 128, prompts from position 0 and after a
 * cached prefix, row counts that leave a partial tile of rows, and positions past a tile of keys. On the
 * quantized caches both kernels dequantize the same codes, so the tiled one must match the per-row one.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../../src/load.js";
import { ggufModelMetadata, spmVocabMetadata, syntheticSpmVocab, writeGguf } from "../../../src/io/gguf-writer.js";
import { fastRandomTensors, randomLlamaConfig } from "../../../bench/make-random-gguf.js";
import type { WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import { PREFILL_ROWS } from "../../../src/backend/webgpu/kernels/attention-prefill.js";
import type { GpuKvFormat } from "../../../src/backend/webgpu/kernels/kv.js";
import { Rng, assertClose, openOrSkip, randoms, tensorOf } from "./helpers.js";

const { gpu, reason } = await openOrSkip();
const noSubgroups = gpu ? await openOrSkip({ subgroups: false }) : { gpu: undefined, reason };
const dir = mkdtempSync(join(tmpdir(), "frugal-prefill-attention-"));
after(() => {
  gpu?.dispose();
  noSubgroups.gpu?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** out[r][h] = Σ_j softmax_j(q·k_j / √d) v_j over positions j <= pos0 + r of kv head h / (heads / kvHeads), in f64. */
function reference(q: Float32Array, k: Float32Array, v: Float32Array, rows: number, pos0: number, heads: number, kvHeads: number, d: number): Float64Array {
  const out = new Float64Array(rows * heads * d);
  const width = kvHeads * d;
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < heads; h++) {
      const kv = Math.floor(h / (heads / kvHeads)) * d;
      const n = pos0 + r + 1;
      const s = new Float64Array(n);
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[(r * heads + h) * d + i]! * k[j * width + kv + i]!;
        s[j] = dot / Math.sqrt(d);
      }
      const m = Math.max(...s);
      let sum = 0;
      for (let j = 0; j < n; j++) sum += (s[j] = Math.exp(s[j]! - m));
      for (let j = 0; j < n; j++) for (let i = 0; i < d; i++) out[(r * heads + h) * d + i] += (s[j]! / sum) * v[j * width + kv + i]!;
    }
  }
  return out;
}

async function attend(g: WebGpuBackend, tiled: boolean, q: Float32Array, k: Float32Array, v: Float32Array, rows: number, pos0: number, heads: number, kvHeads: number, d: number, format: GpuKvFormat = "f32"): Promise<{ out: Float32Array; dispatches: number }> {
  const width = kvHeads * d;
  const cache = g.kvCache(1, kvHeads, d, pos0 + rows + 3, format);
  g.kvWrite(cache, 0, tensorOf(g, pos0 + rows, width, k), tensorOf(g, pos0 + rows, width, v), 0);
  const qt = tensorOf(g, rows, heads * d, q);
  const out = g.activation(rows, heads * d);
  g.prefillAttention = tiled;
  try {
    const before = g.recorder.dispatches;
    g.attention(out, qt, cache, 0, pos0, heads);
    const dispatches = g.recorder.dispatches - before;
    return { out: await g.read(out), dispatches };
  } finally {
    g.prefillAttention = true;
  }
}

test("prefill attention: the tiled kernel matches the f64 softmax and the per-row kernel", { skip: !gpu && reason }, async () => {
  const rng = new Rng(17);
  const [heads, kvHeads] = [4, 2];
  for (const g of [gpu!, noSubgroups.gpu!]) {
    const what0 = `subgroups ${g.gpu.subgroups ? g.gpu.subgroupMinSize : "off"}`;
    for (const [d, rows, pos0] of [[64, 70, 0], [128, 33, 37], [32, 40, 5], [96, PREFILL_ROWS, 16]] as const) {
      const what = `${what0}, d=${d} rows=${rows} pos0=${pos0}`;
      const n = (pos0 + rows) * kvHeads * d;
      // keys scaled up so that the softmax is peaked and the running max changes between tiles
      const [k, v, q] = [randoms(n, rng, 3), randoms(n, rng), randoms(rows * heads * d, rng)];
      const want = reference(q, k, v, rows, pos0, heads, kvHeads, d);
      const tiled = await attend(g, true, q, k, v, rows, pos0, heads, kvHeads, d);
      const perRow = await attend(g, false, q, k, v, rows, pos0, heads, kvHeads, d);
      assert.equal(tiled.dispatches, 1, `${what}: one dispatch`);
      assert.equal(perRow.dispatches, 2, `${what}: the per-row kernel and its combine`);
      let worst = 0;
      for (let i = 0; i < want.length; i++) {
        const tol = 1e-5 * (1 + Math.abs(want[i]!));
        assert.ok(Math.abs(tiled.out[i]! - want[i]!) <= tol, `${what}: element ${i}: ${tiled.out[i]}, f64 ${want[i]}`);
        worst = Math.max(worst, Math.abs(tiled.out[i]! - perRow.out[i]!));
      }
      assert.ok(worst <= 2e-5, `${what}: tiled and per-row kernels differ by ${worst}`);
    }
  }
});

test("prefill attention on quantized caches: the tiled kernel matches the per-row kernel over the same codes", { skip: !gpu && reason }, async () => {
  const rng = new Rng(23);
  const [heads, kvHeads] = [4, 2];
  for (const format of ["int8", "int4", "razer", "nvfp4"] as const) {
    for (const [d, rows, pos0] of [[64, 45, 20], [128, 33, 0]] as const) {
      const what = `${format} d=${d} rows=${rows} pos0=${pos0}`;
      const n = (pos0 + rows) * kvHeads * d;
      const [k, v, q] = [randoms(n, rng, 3), randoms(n, rng), randoms(rows * heads * d, rng)];
      const tiled = await attend(gpu!, true, q, k, v, rows, pos0, heads, kvHeads, d, format);
      const perRow = await attend(gpu!, false, q, k, v, rows, pos0, heads, kvHeads, d, format);
      assert.equal(tiled.dispatches, 1, `${what}: one dispatch`);
      for (let i = 0; i < perRow.out.length; i++) {
        const tol = 2e-5 * (1 + Math.abs(perRow.out[i]!));
        assert.ok(Math.abs(tiled.out[i]! - perRow.out[i]!) <= tol, `${what}: element ${i}: tiled ${tiled.out[i]}, per-row ${perRow.out[i]}`);
      }
    }
  }
});

test("a Llama's 70-token prefill on WebGPU: the tiled attention's logits match the CPU's at every position", { skip: !gpu && reason }, async () => {
  const config = randomLlamaConfig({ dim: 256, layers: 2, hidden: 512, heads: 4, kvHeads: 2, vocab: 320, ctx: 96, tied: true });
  const path = join(dir, "llama-f32.gguf");
  await writeGguf(path, { ...ggufModelMetadata(config, "f32", "prefill-attention-test"), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)) }, fastRandomTensors(config, "f32", 5));
  const g = await openOrSkip();
  const models = [await loadModel(path, { backend: g.gpu! }), await loadModel(path, { device: "cpu", threads: 1 })];
  try {
    const ids = Int32Array.from({ length: 70 }, (_, i) => (i * 53 + 7) % config.vocabSize);
    const logits = async (m: (typeof models)[number]) => m.backend.read(m.network.forward(ids, 0, m.network.newCache(80), true));
    const cpu = await logits(models[1]!);
    const tiled = await logits(models[0]!);
    g.gpu!.prefillAttention = false;
    const perRow = await logits(models[0]!);
    assertClose(tiled, cpu, "tiled prefill attention vs CPU", 1e-3, 1e-4);
    assertClose(perRow, cpu, "per-row attention vs CPU", 1e-3, 1e-4);
    assert.ok(tiled.some((v, i) => v !== perRow[i]), "the tiled kernel ran (its bits differ from the per-row kernel's)");
  } finally {
    for (const m of models) m.dispose();
  }
});
