/**
 * loadGguf: the tensors written come back under Hugging Face names, in PyTorch shape order, with q/k rows
 * in half-split order and their bytes exactly as written (f16 rounding and llama.cpp's quantizers
 * computed independently here); the config comes from the metadata; malformed files are refused by name.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { loadGguf, ggufConfig } from "../../src/io/load-gguf.js";
import { parseGgufHeader, readGgufHeader } from "../../src/io/gguf.js";
import { FormatError } from "../../src/io/errors.js";
import { encodeGguf, ggufModelMetadata, ggufModelTensors, meta, spmVocabMetadata, syntheticSpmVocab } from "../../src/io/gguf-writer.js";
import { f32ToF16 } from "../../src/tensor/half.js";
import { quantizeQ8_0 } from "../../src/quant/q8_0.js";
import { quantizeQ4_0 } from "../../src/quant/q4_0.js";
import type { DType } from "../../src/tensor/dtype.js";
import { expectedTensorNames } from "../../src/model/llama.js";
import { randomHfTensors, tempPath, tinyConfig, tinyGguf } from "./gguf-fixture.js";

/** What a tensor's bytes must be after a round trip through a file of `dtype`. */
function expectedBytes(dtype: DType, values: Float32Array, rank: number): Uint8Array {
  if (rank === 1 || dtype === "f32") return new Uint8Array(values.buffer.slice(0));
  if (dtype === "f16") return new Uint8Array(Uint16Array.from(values, f32ToF16).buffer);
  return dtype === "q8_0" ? quantizeQ8_0(values) : quantizeQ4_0(values);
}

function save(bytes: Uint8Array, name = "m.gguf"): string {
  const path = tempPath(name);
  writeFileSync(path, bytes);
  return path;
}

for (const arch of ["llama", "qwen2", "qwen3"] as const) {
  for (const dtype of ["f32", "f16", "q8_0", "q4_0"] as const) {
    test(`${arch} ${dtype}: every tensor comes back exactly, under its Hugging Face name, q/k in half-split order`, async () => {
      const config = tinyConfig(arch);
      const tensors = randomHfTensors(config, 3);
      const loaded = await loadGguf(save(tinyGguf(config, tensors, dtype)));
      assert.equal(loaded.format, "gguf");
      assert.deepEqual([...loaded.tensors.keys()].sort(), expectedTensorNames(config).sort());
      for (const t of tensors) {
        const got = loaded.tensors.get(t.name)!;
        assert.deepEqual(got.shape, t.shape, t.name);
        assert.equal(got.dtype, t.shape.length === 1 ? "f32" : dtype, t.name);
        assert.ok(Buffer.from(got.data).equals(expectedBytes(dtype, t.values, t.shape.length)), `${t.name}: bytes differ`);
      }
    });
  }
}

test("llama files store q/k rows interleaved (as llama.cpp's converter does), qwen files do not", () => {
  for (const arch of ["llama", "qwen2"] as const) {
    const config = tinyConfig(arch);
    const tensors = randomHfTensors(config, 4);
    const bytes = tinyGguf(config, tensors, "f32");
    const h = parseGgufHeader(bytes);
    const q = h.tensors.find((t) => t.name === "blk.0.attn_q.weight")!;
    const stored = new Float32Array(bytes.slice(q.offset, q.offset + q.byteLength!).buffer);
    const hf = tensors.find((t) => t.name === "model.layers.0.self_attn.q_proj.weight")!.values;
    const cols = config.hiddenSize;
    const half = config.headDim / 2;
    // stored row 2i + j of head h is HF row j * half + i (and for qwen, row r is row r)
    for (let h2 = 0; h2 < config.numHeads; h2++) {
      for (let i = 0; i < half; i++) {
        for (let j = 0; j < 2; j++) {
          const storedRow = h2 * config.headDim + 2 * i + j;
          const hfRow = arch === "llama" ? h2 * config.headDim + j * half + i : storedRow;
          assert.deepEqual(stored.subarray(storedRow * cols, (storedRow + 1) * cols), hf.subarray(hfRow * cols, (hfRow + 1) * cols));
        }
      }
    }
  }
});

test("the config comes from the metadata: GQA, Qwen3 head_dim and q/k norms, Qwen2 biases, tied embeddings", () => {
  for (const arch of ["llama", "mistral", "qwen2", "qwen3"] as const) {
    const config = tinyConfig(arch, { rope: { theta: 500000, dim: arch === "qwen3" ? 32 : 16, scaling: { type: "linear", factor: 4 } }, maxPositions: 96 });
    const h = parseGgufHeader(tinyGguf(config, randomHfTensors(config), "q8_0"));
    assert.deepEqual(ggufConfig(h), config, arch);
  }
});

test("rope_freqs.weight becomes explicit inverse frequencies theta^(-2i/d) / rope_freqs[i]", () => {
  const config = tinyConfig("llama");
  const factors = Float32Array.from([1, 1, 1.5, 2, 4, 8, 8, 8]);
  const metadata = { ...ggufModelMetadata(config, "f32"), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)) };
  const tensors = [...ggufModelTensors(config, randomHfTensors(config), "f32"), { name: "rope_freqs.weight", dtype: "f32" as const, shape: [8], data: new Uint8Array(factors.buffer) }];
  const h = parseGgufHeader(encodeGguf(metadata, tensors));
  const got = ggufConfig(h, factors).rope.inverseFrequencies!;
  const want = Array.from(factors, (f, i) => 10000 ** (-i / 8) / f);
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) <= 1e-15 * want[i]!, `pair ${i}: ${v} vs ${want[i]}`));
});

test("llama3.1 files: loadGguf reads rope_freqs and does not take it for a model tensor", async () => {
  const config = tinyConfig("llama");
  const factors = Float32Array.from([1, 1, 1, 2, 3, 8, 8, 8]);
  const metadata = { ...ggufModelMetadata(config, "f16"), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)) };
  const tensors = [...ggufModelTensors(config, randomHfTensors(config), "f16"), { name: "rope_freqs.weight", dtype: "f32" as const, shape: [8], data: new Uint8Array(factors.buffer) }];
  const loaded = await loadGguf(save(encodeGguf(metadata, tensors)));
  assert.ok(!loaded.tensors.has("rope_freqs.weight"));
  assert.equal(loaded.config.rope.inverseFrequencies?.length, 8);
  assert.ok(Math.abs(loaded.config.rope.inverseFrequencies![4]! - 10000 ** -0.5 / 3) < 1e-15);
});

// ---------------------------------------------------------------------------------------------
// refusals

async function refuses(bytes: Uint8Array, pattern: RegExp): Promise<void> {
  const path = save(bytes, "bad.gguf");
  await assert.rejects(loadGguf(path), (e: unknown) => {
    assert.ok(e instanceof FormatError, `not a FormatError: ${String(e)}`);
    assert.ok(e.message.startsWith(`${path}: `), e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

function withMetadata(edit: (m: Record<string, ReturnType<typeof meta.u32>>) => void, arch: "llama" | "qwen3" = "llama"): Uint8Array {
  const config = tinyConfig(arch);
  const m = { ...ggufModelMetadata(config, "f32"), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)) };
  edit(m);
  return encodeGguf(m, ggufModelTensors(config, randomHfTensors(config), "f32"));
}

test("refuses a tensor type it cannot read, naming the tensor and the type", async () => {
  const config = tinyConfig("llama");
  const metadata = { ...ggufModelMetadata(config, "f32"), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)) };
  for (const [type, name] of [[13, "Q5_K"], [12, "Q4_K"], [99, "unknown"]] as const) {
    const tensors = ggufModelTensors(config, randomHfTensors(config), "f32").map((t) => (t.name === "blk.1.ffn_down.weight" ? { ...t, ggmlTypeOverride: type } : t));
    await refuses(encodeGguf(metadata, tensors), new RegExp(`tensor blk\\.1\\.ffn_down\\.weight has type ${name} \\(ggml type ${type}\\)`));
  }
});

test("refuses missing or mistyped required metadata, naming the key", async () => {
  for (const key of ["llama.attention.layer_norm_rms_epsilon", "llama.context_length", "llama.embedding_length", "llama.block_count", "llama.feed_forward_length", "llama.attention.head_count", "general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.tokens"]) {
    await refuses(withMetadata((m) => delete m[key]), new RegExp(`missing metadata key ${key.replace(/\./g, "\\.")}`));
  }
  await refuses(withMetadata((m) => (m["llama.block_count"] = meta.str("two"))), /metadata llama\.block_count should be a positive integer, got "two"/);
  await refuses(withMetadata((m) => (m["tokenizer.ggml.tokens"] = meta.strings(["a", "b"]))), /tokenizer\.ggml\.tokens has 2 tokens but token_embd\.weight has 300 rows/);
  await refuses(withMetadata((m) => (m["tokenizer.ggml.eos_token_id"] = meta.u32(300))), /tokenizer\.ggml\.eos_token_id = 300 is outside the vocabulary/);
});

test("refuses unknown architectures, tokenizers and RoPE scalings by name", async () => {
  await refuses(withMetadata((m) => (m["general.architecture"] = meta.str("gemma2"))), /architecture "gemma2" is not supported \(supported: llama, mistral, qwen2, qwen3\)/);
  await refuses(withMetadata((m) => (m["tokenizer.ggml.model"] = meta.str("bert"))), /tokenizer\.ggml\.model = "bert" is not supported/);
  await refuses(withMetadata((m) => (m["llama.rope.scaling.type"] = meta.str("yarn"))), /llama\.rope\.scaling\.type = "yarn" is not supported/);
  await refuses(withMetadata((m) => (m["llama.rope.dimension_count"] = meta.u32(8))), /partial rotary embeddings are not supported/);
});

test("refuses tensors the model has no place for, and tensors missing from the model", async () => {
  const config = tinyConfig("llama");
  const metadata = { ...ggufModelMetadata(config, "f32"), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)) };
  const tensors = ggufModelTensors(config, randomHfTensors(config), "f32");
  await refuses(encodeGguf(metadata, [...tensors, { name: "blk.0.attn_output.bias", dtype: "f32", shape: [64], data: new Uint8Array(256) }]), /tensor blk\.0\.attn_output\.bias is not part of a llama model/);
  await refuses(encodeGguf(metadata, tensors.filter((t) => t.name !== "token_embd.weight")), /missing tensor token_embd\.weight/);
});

test("refuses a truncated file and lying offsets with the file's name", async () => {
  const good = tinyGguf(tinyConfig("llama"), randomHfTensors(tinyConfig("llama")), "q4_0");
  await refuses(good.slice(0, good.byteLength - 200), /tensor blk\.1\.ffn_down\.weight: its data \(bytes \d+\.\.\d+\) lies outside the file/);
  await refuses(good.slice(0, 1000), /truncated/);
  await refuses(new Uint8Array(0), /too short for a GGUF file/);
  // a header that reads fine from the file: the file-based reader agrees with the in-memory one
  const path = save(good);
  assert.deepEqual((await readGgufHeader(path)).tensors, parseGgufHeader(good, path).tensors);
});
