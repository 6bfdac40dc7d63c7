/**
 * The roofline's byte counts against real files and loaded models: decodeWeightBytes must equal what
 * the GGUF tensor table says the decode step's weights occupy (every tensor, the output projection
 * whole, one embedding row), for tied and untied Llama models, q/k/v biases (qwen2) and q/k norms
 * (qwen3), in each weight format; kvReadBytes must equal an f32 cache's size. The files come from
 * make-random-gguf's --fast path, which this also checks loads as the model it claims to be.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/load.js";
import { CpuKVCache } from "../../src/backend/cpu/cpu-backend.js";
import { readGgufHeader } from "../../src/io/gguf.js";
import { ggufModelMetadata, spmVocabMetadata, syntheticSpmVocab, writeGguf } from "../../src/io/gguf-writer.js";
import type { ModelConfig } from "../../src/model/config.js";
import { byteSize, type BlockDType as DType } from "../../src/tensor/dtype.js";
import { tensorBytes } from "../../src/quant/packed-raw.js";
import { elementCount } from "../../src/tensor/raw.js";
import type { Weight } from "../../src/backend/backend.js";
import { fastRandomTensors, randomLlamaConfig } from "../../bench/make-random-gguf.js";
import { decodeWeightBytes, kvReadBytes } from "../../bench/roofline.js";

const dir = mkdtempSync(join(tmpdir(), "frugal-roofline-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const llama = (tied: boolean) => randomLlamaConfig({ dim: 64, layers: 2, hidden: 96, heads: 4, kvHeads: 2, vocab: 320, ctx: 64, tied });
const CONFIGS: [string, ModelConfig][] = [
  ["llama tied", llama(true)],
  ["llama untied", llama(false)],
  ["qwen2 (q/k/v bias)", { ...llama(false), architecture: "qwen2", attentionBias: true }],
  // head width 32 with 4 heads: q is 128 wide on a 64-wide residual stream, so o_proj is not square
  ["qwen3 (q/k norm, wide heads)", { ...llama(true), architecture: "qwen3", qkNorm: true, headDim: 32, rope: { theta: 10000, dim: 32 } }],
];

async function writeModel(config: ModelConfig, dtype: DType, name: string): Promise<string> {
  const path = join(dir, `${name.replace(/\W+/g, "-")}-${dtype}.gguf`);
  const metadata = { ...ggufModelMetadata(config, dtype, "roofline-test"), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)) };
  await writeGguf(path, metadata, fastRandomTensors(config, dtype, 7));
  return path;
}

for (const [name, config] of CONFIGS) {
  for (const dtype of ["f32", "f16", "q8_0", "q4_0"] as DType[]) {
    test(`decode weight bytes = the file's tensor table (${name}, ${dtype})`, async () => {
      const path = await writeModel(config, dtype, name);
      const header = await readGgufHeader(path);
      let fromTable = 0;
      let embedBytes = 0;
      let embedRows = 0;
      for (const t of header.tensors) {
        assert.ok(t.byteLength !== undefined, `${t.name} is readable`);
        if (t.name === "token_embd.weight") {
          embedBytes = t.byteLength;
          embedRows = t.dims[1]!;
        } else {
          fromTable += t.byteLength;
        }
      }
      const tied = !header.tensors.some((t) => t.name === "output.weight");
      assert.equal(tied, config.tieEmbeddings);
      // a tied model reads the whole embedding as its output projection, and one row as its input
      const expected = fromTable + (tied ? embedBytes : 0) + embedBytes / embedRows;
      assert.equal(decodeWeightBytes(config, dtype), expected);

      // the loaded model holds exactly those weights, in those formats
      const model = await loadModel(path, { device: "cpu", threads: 1 });
      try {
        const shape = (c: ModelConfig) => [c.architecture, c.vocabSize, c.hiddenSize, c.intermediateSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.tieEmbeddings, c.attentionBias, c.qkNorm];
        assert.deepEqual(shape(model.config), shape(config));
        const w = model.network.weights;
        const size = (x: Weight) => tensorBytes(x.dtype, x.shape);
        const layers = w.layers.flatMap((l) => Object.values(l).filter((x): x is Weight => x !== undefined));
        const loaded = layers.reduce((s, x) => s + size(x), 0) + size(w.norm) + size(w.lmHead) + size(w.embed) / w.embed.shape[0]!;
        assert.equal(loaded, expected);
        assert.equal(w.lmHead === w.embed, tied);
      } finally {
        model.dispose();
      }
    });
  }
}

test("KV bytes read at depth d = an f32 cache of capacity d", async () => {
  const model = await loadModel(await writeModel(CONFIGS[3]![1], "f16", "kv"), { device: "cpu", threads: 1 });
  try {
    for (const depth of [1, 17, 64]) {
      const cache = model.network.newCache(depth) as CpuKVCache;
      assert.equal(cache.capacity, depth);
      assert.equal(kvReadBytes(model.config, depth, 4), cache.k.byteLength + cache.v.byteLength);
    }
  } finally {
    model.dispose();
  }
});
