import { test } from "node:test";
import assert from "node:assert/strict";
import { parseGenerationConfig, parseHfConfig, SUPPORTED_ARCHITECTURES } from "../../src/io/hf-config.js";
import { FormatError } from "../../src/io/errors.js";
import { ropeInverseFrequencies } from "../../src/model/config.js";
import { referenceInverseFrequencies, type Json } from "../fixtures/hf/tiny-hf.js";

/** Llama-3.2-1B's config.json (transformers 4.x form), as published. */
const LLAMA32: Json = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: 128001,
  head_dim: 64,
  hidden_act: "silu",
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.45.0.dev0",
  use_cache: true,
  vocab_size: 128256,
};

/** The same model as transformers 5 writes it: rope_theta moves into rope_parameters. */
function transformers5Form(c: Json): Json {
  const { rope_theta, rope_scaling, ...rest } = c;
  return { ...rest, rope_parameters: { ...(rope_scaling as Json), rope_theta } };
}

function refuses(f: () => unknown, ...parts: string[]): void {
  assert.throws(f, (e: Error) => {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${e.name}: ${e.message}`);
    for (const part of parts) assert.ok(e.message.includes(part), `"${e.message}" lacks "${part}"`);
    return true;
  });
}

test("Llama 3.2: every field lands where transformers puts it", () => {
  const c = parseHfConfig(LLAMA32);
  assert.deepEqual(c, {
    architecture: "LlamaForCausalLM",
    vocabSize: 128256,
    hiddenSize: 2048,
    intermediateSize: 8192,
    numLayers: 16,
    numHeads: 32,
    numKvHeads: 8,
    headDim: 64,
    rmsNormEps: 1e-5,
    rope: { theta: 500000, dim: 64, scaling: { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } },
    maxPositions: 131072,
    tieEmbeddings: true,
    attentionBias: false,
    qkNorm: false,
    bosTokenId: 128000,
    eosTokenIds: [128001],
  });
});

test("both RoPE forms (rope_theta + rope_scaling, and rope_parameters) give equal configs", () => {
  assert.deepEqual(parseHfConfig(transformers5Form(LLAMA32)), parseHfConfig(LLAMA32));
  const plain = { ...LLAMA32, rope_scaling: null, rope_theta: 10000 };
  const plain5 = { ...LLAMA32, rope_scaling: undefined, rope_theta: undefined, rope_parameters: { rope_type: "default", rope_theta: 10000 } };
  assert.deepEqual(parseHfConfig(plain5), parseHfConfig(plain));
  assert.equal(parseHfConfig(plain).rope.scaling, undefined);
  const linear = { ...LLAMA32, rope_scaling: { type: "linear", factor: 4 } };
  const linear5 = transformers5Form({ ...LLAMA32, rope_scaling: { rope_type: "linear", factor: 4 } });
  assert.deepEqual(parseHfConfig(linear5), parseHfConfig(linear));
  assert.deepEqual(parseHfConfig(linear).rope.scaling, { type: "linear", factor: 4 });
});

test("llama3 RoPE scaling: inverse frequencies equal transformers' _compute_llama3_parameters", () => {
  for (const config of [LLAMA32, transformers5Form(LLAMA32), { ...LLAMA32, head_dim: 128, hidden_size: 4096, rope_scaling: { ...(LLAMA32["rope_scaling"] as Json), factor: 8 } }]) {
    const c = parseHfConfig(config);
    const got = ropeInverseFrequencies(c.rope);
    const scaling = (config["rope_scaling"] ?? config["rope_parameters"]) as Json;
    const want = referenceInverseFrequencies(500000, c.headDim, scaling);
    assert.equal(got.length, c.headDim / 2);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-12 * want[i]!, `pair ${i}: ${got[i]} vs ${want[i]}`);
    // all three regimes (kept, interpolated, divided by factor) must occur, or the test proves less than it claims
    const plain = referenceInverseFrequencies(500000, c.headDim, null);
    const kept = want.filter((f, i) => f === plain[i]).length;
    const divided = want.filter((f, i) => Math.abs(f - plain[i]! / (scaling["factor"] as number)) < 1e-18).length;
    assert.ok(kept > 0 && divided > 0 && kept + divided < want.length, `kept ${kept}, divided ${divided} of ${want.length}`);
  }
});

test("defaults: num_key_value_heads = heads, head_dim = hidden / heads, no tie, no bias; eos may be a list", () => {
  const c = parseHfConfig({
    architectures: ["LlamaForCausalLM"],
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    vocab_size: 100,
    rms_norm_eps: 1e-6,
    eos_token_id: [5, 7],
  });
  assert.equal(c.numKvHeads, 4);
  assert.equal(c.headDim, 16);
  assert.equal(c.tieEmbeddings, false);
  assert.equal(c.attentionBias, false);
  assert.deepEqual(c.eosTokenIds, [5, 7]);
  assert.equal(c.bosTokenId, undefined);
  assert.equal(c.rope.theta, 10000);
  assert.equal(c.maxPositions, 2048);
});

test("Qwen2 always has q/k/v bias; Qwen3 has q/k norm and an explicit head_dim", () => {
  const base = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 100, rms_norm_eps: 1e-6, rope_theta: 1e6 };
  const q2 = parseHfConfig({ ...base, architectures: ["Qwen2ForCausalLM"], tie_word_embeddings: true, sliding_window: 32, use_sliding_window: false });
  assert.deepEqual([q2.attentionBias, q2.qkNorm, q2.tieEmbeddings, q2.headDim], [true, false, true, 16]);
  const q3 = parseHfConfig({ ...base, architectures: ["Qwen3ForCausalLM"], head_dim: 32, attention_bias: false });
  assert.deepEqual([q3.attentionBias, q3.qkNorm, q3.headDim, q3.rope.dim], [false, true, 32, 32]);
  // model_type stands in for a missing architectures list
  assert.equal(parseHfConfig({ ...base, model_type: "qwen3" }).architecture, "Qwen3ForCausalLM");
});

test("an unknown architecture is refused naming it and the supported ones", () => {
  refuses(() => parseHfConfig({ ...LLAMA32, architectures: ["GPTNeoXForCausalLM"] }, "/m/config.json"), "/m/config.json", "GPTNeoXForCausalLM", ...SUPPORTED_ARCHITECTURES);
  refuses(() => parseHfConfig({ ...LLAMA32, architectures: undefined, model_type: "gpt2" }), "gpt2", "LlamaForCausalLM");
});

test("a missing or ill-typed required field is refused naming config.json and the field", () => {
  for (const field of ["hidden_size", "vocab_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"]) {
    refuses(() => parseHfConfig({ ...LLAMA32, [field]: undefined }, "dir/config.json"), "dir/config.json", field, "missing");
  }
  refuses(() => parseHfConfig({ ...LLAMA32, hidden_size: "2048" }), "config.json", "hidden_size");
  refuses(() => parseHfConfig({ ...LLAMA32, rope_scaling: { rope_type: "llama3", factor: 8 } }), "low_freq_factor");
  refuses(() => parseHfConfig({ ...LLAMA32, num_key_value_heads: 5 }), "num_key_value_heads");
});

test("what the engine cannot compute is refused by name, not ignored", () => {
  refuses(() => parseHfConfig({ ...LLAMA32, rope_scaling: { rope_type: "yarn", factor: 4 } }), "yarn");
  refuses(() => parseHfConfig({ ...LLAMA32, rope_scaling: { type: "dynamic", factor: 2 } }), "dynamic");
  refuses(() => parseHfConfig({ ...LLAMA32, attention_bias: true }), "attention_bias");
  refuses(() => parseHfConfig({ ...LLAMA32, mlp_bias: true }), "mlp_bias");
  refuses(() => parseHfConfig({ ...LLAMA32, hidden_act: "gelu" }), "gelu");
  const mistral = { ...LLAMA32, architectures: ["MistralForCausalLM"], rope_scaling: null, max_position_embeddings: 32768 };
  refuses(() => parseHfConfig({ ...mistral, sliding_window: 4096 }), "sliding_window 4096");
  assert.equal(parseHfConfig({ ...mistral, sliding_window: null }).architecture, "MistralForCausalLM");
  assert.equal(parseHfConfig({ ...mistral, sliding_window: 32768 }).maxPositions, 32768);
  const qwen = { ...mistral, architectures: ["Qwen2ForCausalLM"], sliding_window: 4096 };
  assert.equal(parseHfConfig(qwen).architecture, "Qwen2ForCausalLM"); // use_sliding_window defaults to false
  refuses(() => parseHfConfig({ ...qwen, use_sliding_window: true }), "sliding_window");
});

test("generation_config.json: sampling defaults and eos ids; do_sample=false means greedy", () => {
  assert.deepEqual(parseGenerationConfig({ do_sample: true, temperature: 0.7, top_k: 20, top_p: 0.8, eos_token_id: [151645, 151643], repetition_penalty: 1.05 }), {
    temperature: 0.7,
    topK: 20,
    topP: 0.8,
    eosTokenIds: [151645, 151643],
  });
  assert.deepEqual(parseGenerationConfig({ do_sample: false, temperature: 0.6, eos_token_id: 2 }), { temperature: 0, eosTokenIds: [2] });
  assert.deepEqual(parseGenerationConfig({ bos_token_id: 1 }), {});
  refuses(() => parseGenerationConfig({ temperature: "hot" }, "g/generation_config.json"), "g/generation_config.json", "temperature");
});
