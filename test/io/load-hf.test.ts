import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync, rmSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { loadHfFolder } from "../../src/io/load-hf.js";
import { FormatError } from "../../src/io/errors.js";
import { loadModel, readSource } from "../../src/load.js";
import { naiveLogits, writeTinyModel, tempDir, type Json, type TinyModel } from "../fixtures/hf/tiny-hf.js";

const LLAMA_GQA_LLAMA3: Json = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 32,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  hidden_act: "silu",
  rope_theta: 10000,
  // with head_dim 8: wavelengths 6.3 (kept), 63 (interpolated), 628 and 6283 (divided by the factor)
  rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
  tie_word_embeddings: false,
  bos_token_id: 0,
  eos_token_id: 1,
};

const QWEN2: Json = {
  architectures: ["Qwen2ForCausalLM"],
  model_type: "qwen2",
  hidden_size: 32,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  vocab_size: 24,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-6,
  hidden_act: "silu",
  // the transformers-5 form
  rope_parameters: { rope_type: "default", rope_theta: 1000000 },
  sliding_window: 16,
  use_sliding_window: false,
  tie_word_embeddings: true,
  eos_token_id: [1, 0],
};

const QWEN3: Json = {
  architectures: ["Qwen3ForCausalLM"],
  model_type: "qwen3",
  hidden_size: 32,
  head_dim: 12,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 20,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-6,
  hidden_act: "silu",
  rope_theta: 1000000,
  rope_scaling: null,
  attention_bias: false,
  tie_word_embeddings: false,
};

/** Largest |a - b| over largest |b|. */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

/** Loads `tiny` with loadModel and checks its logits against the naive forward pass, whole and in two chunks. */
async function checkForward(tiny: TinyModel): Promise<void> {
  const model = await loadModel(tiny.dir);
  try {
    const tokens = [...model.tokenizer.encode("hello world! hold", { addSpecialTokens: true }), 3];
    assert.deepEqual(tokens, [0, 14, 19, 10, 6, 2, 5, 4, 9, 3]); // the byte-level fixture, by hand
    const V = tiny.config["vocab_size"] as number;
    const want = naiveLogits(tiny.config, tiny.weights, tokens);
    const logits = await model.backend.read(model.network.forward(Int32Array.from(tokens), 0, model.network.newCache(16), true));
    const err = relativeError(logits, want.flatMap((row) => [...row]));
    assert.ok(err <= 1e-4, `relative error ${err}`);
    // again in two pieces, the second attending over the cache the first filled
    const cache = model.network.newCache(16);
    model.network.forward(Int32Array.from(tokens.slice(0, 4)), 0, cache, true);
    const tail = await model.backend.read(model.network.forward(Int32Array.from(tokens.slice(4)), 4, cache, true));
    const tailErr = relativeError(tail, want.slice(4).flatMap((row) => [...row]));
    assert.ok(tailErr <= 1e-4, `relative error ${tailErr} after a cached prefix`);
    assert.equal(tail.length, (tokens.length - 4) * V);
  } finally {
    model.dispose();
  }
}

test("end to end: Llama with GQA and llama3 RoPE scaling (f32) matches a naive forward pass", async () => {
  await checkForward(writeTinyModel(LLAMA_GQA_LLAMA3, { dtype: "F32", seed: 11 }));
});

test("end to end: Qwen2 with q/k/v biases, tied embeddings, one KV head (f16) matches a naive forward pass", async () => {
  await checkForward(writeTinyModel(QWEN2, { dtype: "F16", seed: 12 }));
});

test("end to end: Qwen3 with q/k norm and head_dim 12 != 32/4 (bf16, 3 shards) matches a naive forward pass", async () => {
  await checkForward(writeTinyModel(QWEN3, { dtype: "BF16", seed: 13, shards: 3 }));
});

test("loadHfFolder: config, tokenizer, generation defaults; a tied lm_head stored anyway is dropped", async () => {
  const tiny = writeTinyModel({ ...QWEN2, tie_word_embeddings: false }, { seed: 1 });
  // the same weights, now declared tied: transformers ignores the stored lm_head
  writeFileSync(join(tiny.dir, "config.json"), JSON.stringify({ ...QWEN2, tie_word_embeddings: true }));
  writeFileSync(join(tiny.dir, "generation_config.json"), JSON.stringify({ do_sample: true, temperature: 0.7, top_p: 0.8, top_k: 20, eos_token_id: [1, 0] }));
  const src = await loadHfFolder(tiny.dir, { name: "org/tiny" });
  assert.equal(src.format, "safetensors");
  assert.equal(src.source, "org/tiny");
  assert.equal(src.config.architecture, "Qwen2ForCausalLM");
  assert.equal(src.tensors.has("lm_head.weight"), false);
  assert.equal(src.tensors.get("model.layers.1.self_attn.k_proj.bias")!.dtype, "f32");
  assert.deepEqual(src.generation, { temperature: 0.7, topP: 0.8, topK: 20, eosTokenIds: [1, 0] });
  assert.deepEqual(src.tokenizer.encode("hello", { addSpecialTokens: true }), [0, 14]);
  assert.equal((await readSource(tiny.dir)).config.vocabSize, 24);
});

test("a tokenizer larger than the model's vocabulary is refused naming both sizes", async () => {
  const tiny = writeTinyModel({ ...QWEN3, vocab_size: 16 }, { seed: 2 });
  await assert.rejects(loadHfFolder(tiny.dir), (e: Error) => {
    assert.ok(e instanceof FormatError);
    assert.match(e.message, /20 tokens/);
    assert.match(e.message, /vocab_size is 16/);
    return true;
  });
});

test("folder problems name the file: missing config field, missing shard, no config at all", async () => {
  const tiny = writeTinyModel(QWEN3, { seed: 3, shards: 2 });
  writeFileSync(join(tiny.dir, "config.json"), JSON.stringify({ ...QWEN3, num_hidden_layers: undefined }));
  await assert.rejects(loadHfFolder(tiny.dir), (e: Error) => e instanceof FormatError && e.message.includes(join(tiny.dir, "config.json")) && e.message.includes("num_hidden_layers"));
  writeFileSync(join(tiny.dir, "config.json"), JSON.stringify(QWEN3));
  renameSync(join(tiny.dir, "model-00002-of-00002.safetensors"), join(tiny.dir, "moved.safetensors"));
  await assert.rejects(loadHfFolder(tiny.dir), (e: Error) => e instanceof FormatError && e.message.includes("model-00002-of-00002.safetensors"));
  const empty = tempDir();
  mkdirSync(join(empty, "sub"));
  await assert.rejects(loadHfFolder(join(empty, "sub")), (e: Error) => e instanceof FormatError && e.message.includes("config.json"));
  rmSync(empty, { recursive: true });
});

test("readSource resolves an org/name id through the hub cache (offline) and names the model by its id", async () => {
  const cache = tempDir();
  const sha = "0123456789abcdef0123456789abcdef01234567";
  const repo = join(cache, "models--tiny-org--tiny-llama");
  writeTinyModel(LLAMA_GQA_LLAMA3, { seed: 4, dir: join(repo, "snapshots", sha) });
  mkdirSync(join(repo, "refs"));
  writeFileSync(join(repo, "refs", "main"), sha);
  const saved = process.env["HF_HUB_CACHE"];
  process.env["HF_HUB_CACHE"] = cache;
  try {
    const src = await readSource("tiny-org/tiny-llama", { offline: true });
    assert.equal(src.source, "tiny-org/tiny-llama");
    assert.equal(src.config.numKvHeads, 2);
    await assert.rejects(readSource("tiny-org/absent", { offline: true }), /tiny-org\/absent.*no cached copy/);
  } finally {
    if (saved === undefined) delete process.env["HF_HUB_CACHE"];
    else process.env["HF_HUB_CACHE"] = saved;
  }
});
