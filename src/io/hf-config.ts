/**
 * Hugging Face config.json and generation_config.json -> our ModelConfig, for the Llama family of
 * architectures. Every field transformers would read is either translated or, where it changes the
 * computation in a way we do not implement, refused by name; nothing is silently ignored.
 */
import type { ModelConfig, RopeConfig, RopeScaling } from "../model/config.js";
import type { LoadedSource } from "./source.js";
import { FormatError } from "./errors.js";

/** Architectures this loader maps onto src/model/llama.ts. */
export const SUPPORTED_ARCHITECTURES = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"] as const;
type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

/** config.json files that lack `architectures` still carry model_type. */
const MODEL_TYPES: Readonly<Record<string, Architecture>> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
};

/** transformers' defaults for fields a config.json may leave out, per architecture. */
const DEFAULTS: Readonly<Record<Architecture, { maxPositions: number; rmsNormEps: number; ropeTheta: number }>> = {
  LlamaForCausalLM: { maxPositions: 2048, rmsNormEps: 1e-6, ropeTheta: 10000 },
  MistralForCausalLM: { maxPositions: 4096 * 32, rmsNormEps: 1e-6, ropeTheta: 10000 },
  Qwen2ForCausalLM: { maxPositions: 32768, rmsNormEps: 1e-6, ropeTheta: 10000 },
  Qwen3ForCausalLM: { maxPositions: 32768, rmsNormEps: 1e-6, ropeTheta: 10000 },
};

type Json = Record<string, unknown>;

/** Reads fields of one JSON object, naming the file and the field in every error. */
class Fields {
  constructor(readonly json: Json, readonly source: string) {}

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  private fail(key: string, want: string): never {
    throw new FormatError(this.source, `field ${key} is ${JSON.stringify(this.json[key])}, expected ${want}`);
  }

  int(key: string, fallback?: number): number {
    if (!this.has(key)) {
      if (fallback !== undefined) return fallback;
      throw new FormatError(this.source, `required field ${key} is missing`);
    }
    const v = this.json[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) this.fail(key, "a positive integer");
    return v;
  }

  num(key: string, fallback?: number): number {
    if (!this.has(key)) {
      if (fallback !== undefined) return fallback;
      throw new FormatError(this.source, `required field ${key} is missing`);
    }
    const v = this.json[key];
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, "a number");
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    if (!this.has(key)) return fallback;
    const v = this.json[key];
    if (typeof v !== "boolean") this.fail(key, "true or false");
    return v;
  }

  /** A token id or list of token ids (eos_token_id may be either); [] when absent. */
  ids(key: string): number[] {
    if (!this.has(key)) return [];
    const v = this.json[key];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) this.fail(key, "a token id or a list of token ids");
    return list as number[];
  }
}

/** Parses the text of a JSON file into an object, naming the file on failure. */
export function parseJsonObject(text: string, source: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FormatError(source, `is not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new FormatError(source, "is not a JSON object");
  return v as Json;
}

function architectureOf(f: Fields): Architecture {
  const supported = SUPPORTED_ARCHITECTURES.join(", ");
  const archs = f.json["architectures"];
  if (Array.isArray(archs) && archs.length > 0) {
    const known = archs.find((a): a is Architecture => (SUPPORTED_ARCHITECTURES as readonly unknown[]).includes(a));
    if (known) return known;
    throw new FormatError(f.source, `architecture ${archs.join(", ")} is not supported; supported: ${supported}`);
  }
  const type = f.json["model_type"];
  if (typeof type === "string" && MODEL_TYPES[type]) return MODEL_TYPES[type];
  throw new FormatError(f.source, `names no architecture (architectures: ${JSON.stringify(archs)}, model_type: ${JSON.stringify(type)}); supported: ${supported}`);
}

/**
 * The RoPE description of a config, from either form transformers writes: `rope_theta` + `rope_scaling`
 * (4.x) or `rope_parameters` (5.x).
 */
function ropeOf(f: Fields, headDim: number, defaultTheta: number): RopeConfig {
  const params = f.json["rope_parameters"];
  let theta: number;
  let scaling: Json | undefined;
  let where: string;
  if (typeof params === "object" && params !== null && !Array.isArray(params)) {
    const p = new Fields(params as Json, `${f.source} rope_parameters`);
    theta = p.num("rope_theta", f.num("rope_theta", defaultTheta));
    scaling = params as Json;
    where = "rope_parameters";
  } else {
    theta = f.num("rope_theta", defaultTheta);
    const s = f.json["rope_scaling"];
    if (s !== undefined && s !== null && (typeof s !== "object" || Array.isArray(s))) {
      throw new FormatError(f.source, `field rope_scaling is ${JSON.stringify(s)}, expected an object or null`);
    }
    scaling = (s as Json | null | undefined) ?? undefined;
    where = "rope_scaling";
  }
  const partial = f.json["partial_rotary_factor"] ?? scaling?.["partial_rotary_factor"];
  if (partial !== undefined && partial !== null && partial !== 1) {
    throw new FormatError(f.source, `partial_rotary_factor ${JSON.stringify(partial)} is not supported (only full rotary embeddings)`);
  }
  return { theta, dim: headDim, ...(scaling ? scalingOf(new Fields(scaling, `${f.source} ${where}`)) : {}) };
}

function scalingOf(s: Fields): { scaling?: RopeScaling } {
  const type = s.json["rope_type"] ?? s.json["type"] ?? "default";
  switch (type) {
    case "default":
      return {};
    case "linear":
      return { scaling: { type: "linear", factor: s.num("factor") } };
    case "llama3":
      return {
        scaling: {
          type: "llama3",
          factor: s.num("factor"),
          lowFreqFactor: s.num("low_freq_factor"),
          highFreqFactor: s.num("high_freq_factor"),
          originalMaxPositions: s.int("original_max_position_embeddings"),
        },
      };
    default:
      throw new FormatError(s.source, `RoPE scaling type ${JSON.stringify(type)} is not supported (supported: default, linear, llama3)`);
  }
}

/** Refuses sliding-window attention that would actually restrict attention within the context. */
function checkSlidingWindow(f: Fields, arch: Architecture, maxPositions: number): void {
  // Qwen2/Qwen3 configs always carry sliding_window but apply it only with use_sliding_window
  const applies = arch === "MistralForCausalLM" || f.bool("use_sliding_window", false);
  if (!applies || !f.has("sliding_window")) return;
  const window = f.int("sliding_window");
  if (window < maxPositions) {
    throw new FormatError(
      f.source,
      `sliding_window ${window} < max_position_embeddings ${maxPositions}: sliding-window attention is not supported yet`,
    );
  }
}

/** Translates a parsed config.json (`source` names it in errors) into a ModelConfig. */
export function parseHfConfig(json: Json, source = "config.json"): ModelConfig {
  const f = new Fields(json, source);
  const arch = architectureOf(f);
  const d = DEFAULTS[arch];

  const hiddenSize = f.int("hidden_size");
  const numHeads = f.int("num_attention_heads");
  const numKvHeads = f.int("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new FormatError(source, `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  if (!f.has("head_dim") && hiddenSize % numHeads !== 0) {
    throw new FormatError(source, `hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads} and head_dim is not given`);
  }
  const headDim = f.int("head_dim", hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw new FormatError(source, `head_dim ${headDim} is odd; RoPE rotates pairs`);

  const act = json["hidden_act"] ?? json["hidden_activation"] ?? "silu";
  if (act !== "silu") throw new FormatError(source, `hidden_act ${JSON.stringify(act)} is not supported (only silu)`);
  if (f.bool("mlp_bias", false)) throw new FormatError(source, "mlp_bias=true is not supported");

  // Qwen2 always has q/k/v biases and no o_proj bias; elsewhere attention_bias puts a bias on all four,
  // and the o_proj bias is something llama.ts does not have
  const attentionBias = arch === "Qwen2ForCausalLM";
  if (arch !== "Qwen2ForCausalLM" && f.bool("attention_bias", false)) {
    throw new FormatError(source, `attention_bias=true (biases on q/k/v/o projections) is not supported for ${arch}`);
  }

  const maxPositions = f.int("max_position_embeddings", d.maxPositions);
  checkSlidingWindow(f, arch, maxPositions);

  const bos = f.ids("bos_token_id");
  return {
    architecture: arch,
    vocabSize: f.int("vocab_size"),
    hiddenSize,
    intermediateSize: f.int("intermediate_size"),
    numLayers: f.int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: f.num("rms_norm_eps", d.rmsNormEps),
    rope: ropeOf(f, headDim, d.ropeTheta),
    maxPositions,
    tieEmbeddings: f.bool("tie_word_embeddings", false),
    attentionBias,
    qkNorm: arch === "Qwen3ForCausalLM",
    ...(bos.length > 0 ? { bosTokenId: bos[0] } : {}),
    eosTokenIds: f.ids("eos_token_id"),
  };
}

/**
 * The sampling defaults of a parsed generation_config.json. do_sample=false means the authors want greedy
 * decoding, which our sampler spells temperature 0.
 */
export function parseGenerationConfig(json: Json, source = "generation_config.json"): NonNullable<LoadedSource["generation"]> {
  const f = new Fields(json, source);
  const out: { temperature?: number; topK?: number; topP?: number; eosTokenIds?: number[] } = {};
  if (json["do_sample"] === false) out.temperature = 0;
  else if (f.has("temperature")) out.temperature = f.num("temperature");
  if (f.has("top_k")) out.topK = Math.max(0, Math.trunc(f.num("top_k")));
  if (f.has("top_p")) out.topP = f.num("top_p");
  const eos = f.ids("eos_token_id");
  if (eos.length > 0) out.eosTokenIds = eos;
  return out;
}
