/**
 * Loads a llama.cpp GGUF model (architectures llama, mistral, qwen2, qwen3) into the engine's
 * vocabulary: Hugging Face tensor names, outermost-first shapes, q/k rows in half-split RoPE order, and
 * a ModelConfig read from the `{arch}.*` metadata.
 */
import type { ModelConfig, RopeConfig } from "../model/config.js";
import { rawTensor, type TensorMap } from "../tensor/raw.js";
import { BLOCK } from "../tensor/dtype.js";
import { FormatError } from "./errors.js";
import {
  type GgufHeader, type GgufTensorInfo, GgufMetadata,
  dtypeOfGgmlType, ggmlTypeName, parseGgufHeader, readGgufHeader, readGgufTensors,
} from "./gguf.js";
import { interleavedToHalfRows } from "./llama2c.js";
import { tokenizerFromGguf, ggufSpecialIds, ggufAddsBos } from "./gguf-tokenizer.js";
import type { LoadedSource } from "./source.js";

/** Architectures whose converter permuted q/k rows into interleaved RoPE order. */
const PERMUTED_ARCHS = new Set(["llama", "mistral"]);
const SUPPORTED_ARCHS = ["llama", "mistral", "qwen2", "qwen3"];

const GLOBAL_NAMES: Record<string, string> = {
  "token_embd.weight": "model.embed_tokens.weight",
  "output_norm.weight": "model.norm.weight",
  "output.weight": "lm_head.weight",
};

const LAYER_NAMES: Record<string, string> = {
  "attn_norm.weight": "input_layernorm.weight",
  "attn_q.weight": "self_attn.q_proj.weight",
  "attn_k.weight": "self_attn.k_proj.weight",
  "attn_v.weight": "self_attn.v_proj.weight",
  "attn_output.weight": "self_attn.o_proj.weight",
  "attn_q.bias": "self_attn.q_proj.bias",
  "attn_k.bias": "self_attn.k_proj.bias",
  "attn_v.bias": "self_attn.v_proj.bias",
  "attn_q_norm.weight": "self_attn.q_norm.weight",
  "attn_k_norm.weight": "self_attn.k_norm.weight",
  "ffn_norm.weight": "post_attention_layernorm.weight",
  "ffn_gate.weight": "mlp.gate_proj.weight",
  "ffn_up.weight": "mlp.up_proj.weight",
  "ffn_down.weight": "mlp.down_proj.weight",
};

/** The Hugging Face name of a llama.cpp tensor name, or undefined when it has none. */
export function hfTensorName(ggufName: string): string | undefined {
  const global = GLOBAL_NAMES[ggufName];
  if (global) return global;
  const m = /^blk\.(\d+)\.(.+)$/.exec(ggufName);
  const leaf = m ? LAYER_NAMES[m[2]!] : undefined;
  return leaf ? `model.layers.${m![1]}.${leaf}` : undefined;
}

/** The llama.cpp name of a Hugging Face tensor name (the inverse of hfTensorName). */
export function ggufTensorName(hfName: string): string {
  for (const [g, h] of Object.entries(GLOBAL_NAMES)) if (h === hfName) return g;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  if (m) for (const [g, h] of Object.entries(LAYER_NAMES)) if (h === m[2]) return `blk.${m[1]}.${g}`;
  throw new Error(`no llama.cpp name for tensor ${hfName}`);
}

/** Reads the architecture and checks it is one we run. */
export function ggufArchitecture(md: GgufMetadata): string {
  const arch = md.string("general.architecture");
  if (!SUPPORTED_ARCHS.includes(arch)) {
    throw new FormatError(md.source, `architecture "${arch}" is not supported (supported: ${SUPPORTED_ARCHS.join(", ")})`);
  }
  return arch;
}

/**
 * The model config of a GGUF header. `ropeFreqs` is the content of rope_freqs.weight when the file has
 * one (llama.cpp's per-pair frequency divisors, written for Llama 3.1-style scaling).
 */
export function ggufConfig(header: GgufHeader, ropeFreqs?: Float32Array): ModelConfig {
  const md = new GgufMetadata(header.metadata, header.source);
  const arch = ggufArchitecture(md);
  const k = (key: string) => `${arch}.${key}`;
  const tensor = (name: string) => header.tensors.find((t) => t.name === name);

  const hiddenSize = md.count(k("embedding_length"));
  const numHeads = md.count(k("attention.head_count"));
  const numKvHeads = md.optCount(k("attention.head_count_kv")) ?? numHeads;
  const headDim = md.optCount(k("attention.key_length")) ?? hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) throw new FormatError(header.source, `${k("embedding_length")} ${hiddenSize} is not a multiple of ${k("attention.head_count")} ${numHeads}`);
  const valueLength = md.optCount(k("attention.value_length"));
  if (valueLength !== undefined && valueLength !== headDim) {
    throw new FormatError(header.source, `${k("attention.value_length")} ${valueLength} differs from the key length ${headDim}; not supported`);
  }
  if (numHeads % numKvHeads !== 0) throw new FormatError(header.source, `${numHeads} heads do not share ${numKvHeads} key/value heads evenly`);
  const ropeDim = md.optCount(k("rope.dimension_count")) ?? headDim;
  if (ropeDim !== headDim) throw new FormatError(header.source, `${k("rope.dimension_count")} ${ropeDim} rotates part of each ${headDim}-wide head; partial rotary embeddings are not supported`);

  const embed = tensor("token_embd.weight");
  if (!embed) throw new FormatError(header.source, "missing tensor token_embd.weight");
  if (embed.dims.length !== 2) throw new FormatError(header.source, `tensor token_embd.weight has ${embed.dims.length} dimensions, not 2`);
  const vocabSize = embed.dims[1]!;
  const tokens = md.optStrings("tokenizer.ggml.tokens");
  if (tokens && tokens.length !== vocabSize) {
    throw new FormatError(header.source, `tokenizer.ggml.tokens has ${tokens.length} tokens but token_embd.weight has ${vocabSize} rows`);
  }

  const rope: RopeConfig = { theta: md.optNumber(k("rope.freq_base")) ?? 10000, dim: ropeDim, ...ropeScaling(md, arch, ropeDim, ropeFreqs) };
  const ids = ggufSpecialIds(md, vocabSize);
  return {
    architecture: arch,
    vocabSize,
    hiddenSize,
    intermediateSize: md.count(k("feed_forward_length")),
    numLayers: md.count(k("block_count")),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: md.number(k("attention.layer_norm_rms_epsilon")),
    rope,
    maxPositions: md.count(k("context_length")),
    tieEmbeddings: !tensor("output.weight"),
    attentionBias: !!tensor("blk.0.attn_q.bias"),
    qkNorm: !!tensor("blk.0.attn_q_norm.weight"),
    // only when prompts start with it: Model.chat prepends this id
    ...(ids.bos === undefined || !ggufAddsBos(md) ? {} : { bosTokenId: ids.bos }),
    eosTokenIds: ids.endOfGeneration,
  };
}

function ropeScaling(md: GgufMetadata, arch: string, dim: number, ropeFreqs?: Float32Array): Pick<RopeConfig, "scaling" | "inverseFrequencies"> {
  const type = md.optString(`${arch}.rope.scaling.type`);
  let factor = md.optNumber(`${arch}.rope.scaling.factor`) ?? md.optNumber(`${arch}.rope.scale_linear`);
  if (type !== undefined && type !== "none" && type !== "linear") {
    throw new FormatError(md.source, `metadata ${arch}.rope.scaling.type = "${type}" is not supported (none, linear)`);
  }
  if (type === "none" || factor === 0) factor = undefined;
  const out: { scaling?: RopeConfig["scaling"]; inverseFrequencies?: readonly number[] } = {};
  if (factor !== undefined && factor !== 1) out.scaling = { type: "linear", factor };
  if (ropeFreqs) {
    if (ropeFreqs.length !== dim / 2) throw new FormatError(md.source, `tensor rope_freqs.weight has ${ropeFreqs.length} entries, RoPE has ${dim / 2} pairs`);
    // llama.cpp rotates pair i by pos * theta^(-2i/d) / rope_freqs[i] (times the linear scale)
    const theta = md.optNumber(`${arch}.rope.freq_base`) ?? 10000;
    const scale = out.scaling?.type === "linear" ? out.scaling.factor : 1;
    out.inverseFrequencies = Array.from(ropeFreqs, (f, i) => 1 / theta ** ((2 * i) / dim) / f / scale);
    delete out.scaling;
  }
  return out;
}

/** Reads the data of tensors, one buffer per tensor, and hands each to `onTensor`. */
export type GgufTensorReader = (
  infos: readonly GgufTensorInfo[],
  onTensor: (info: GgufTensorInfo, data: Uint8Array) => void,
) => Promise<void>;

/** Reads tensor data from the file the header came from. */
function fileTensorReader(header: GgufHeader): GgufTensorReader {
  return (infos, onTensor) => readGgufTensors(header, infos, onTensor);
}

/**
 * Reads tensor data from the whole file held in memory: views where the data is 8-byte aligned (GGUF
 * aligns it to 32 from the start of the file), copies otherwise so that typed views stay possible.
 */
function memoryTensorReader(header: GgufHeader, bytes: Uint8Array): GgufTensorReader {
  return async (infos, onTensor) => {
    for (const info of infos) {
      if (info.byteLength === undefined) {
        throw new FormatError(header.source, `tensor ${info.name} has type ${ggmlTypeName(info.ggmlType)} (${info.ggmlType}), which this engine cannot read`);
      }
      // parseGgufHeader has checked that the data of every readable tensor lies inside the file
      const start = info.offset;
      const end = start + info.byteLength;
      onTensor(info, (bytes.byteOffset + start) % 8 === 0 ? bytes.subarray(start, end) : bytes.slice(start, end));
    }
  };
}

/**
 * Turns the file's tensors into Hugging Face-named RawTensors, un-permuting q/k rows for architectures
 * whose converter interleaved them. Refuses tensors of unreadable types and tensors the model has no
 * place for.
 */
export async function ggufTensors(header: GgufHeader, config: ModelConfig, read: GgufTensorReader = fileTensorReader(header)): Promise<TensorMap> {
  const permute = PERMUTED_ARCHS.has(config.architecture);
  const wanted: GgufTensorInfo[] = [];
  for (const info of header.tensors) {
    checkReadable(header, info);
    if (info.name === "rope_freqs.weight") continue;
    if (!hfTensorName(info.name)) throw new FormatError(header.source, `tensor ${info.name} is not part of a ${config.architecture} model this engine runs`);
    wanted.push(info);
  }
  const tensors: TensorMap = new Map();
  await read(wanted, (info, data) => {
    const name = hfTensorName(info.name)!;
    const dtype = dtypeOfGgmlType(info.ggmlType)!;
    const shape = [...info.dims].reverse();
    if (permute) {
      const heads = /\.attn_q\.(weight|bias)$/.test(info.name) ? config.numHeads : /\.attn_k\.(weight|bias)$/.test(info.name) ? config.numKvHeads : 0;
      if (heads) {
        if (shape[0] !== heads * config.headDim) {
          throw new FormatError(header.source, `tensor ${info.name} has ${shape[0]} rows, not ${heads} heads of ${config.headDim}`);
        }
        const rowBytes = (data.byteLength / shape[0]!) | 0;
        if (shape.length === 1 && BLOCK[dtype].elems !== 1) throw new FormatError(header.source, `tensor ${info.name} is a ${dtype} vector; its rows cannot be reordered`);
        data = interleavedToHalfRows(data, heads, config.headDim, rowBytes);
      }
    }
    tensors.set(name, rawTensor(name, dtype, shape, data));
  });
  return tensors;
}

function checkReadable(header: GgufHeader, info: GgufTensorInfo): void {
  if (!dtypeOfGgmlType(info.ggmlType)) {
    throw new FormatError(header.source, `tensor ${info.name} has type ${ggmlTypeName(info.ggmlType)} (ggml type ${info.ggmlType}), which this engine cannot read (it reads F32, F16, BF16, Q8_0, Q4_0)`);
  }
}

async function readRopeFreqs(header: GgufHeader, read: GgufTensorReader): Promise<Float32Array | undefined> {
  const info = header.tensors.find((t) => t.name === "rope_freqs.weight");
  if (!info) return undefined;
  if (dtypeOfGgmlType(info.ggmlType) !== "f32") {
    throw new FormatError(header.source, `tensor rope_freqs.weight has type ${ggmlTypeName(info.ggmlType)}, expected F32`);
  }
  let out: Float32Array | undefined;
  await read([info], (_, data) => (out = new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4)));
  return out;
}

/** Reads a GGUF model file: config, tensors (Hugging Face names) and tokenizer. */
export async function loadGguf(path: string): Promise<LoadedSource> {
  const header = await readGgufHeader(path);
  return ggufSource(header, fileTensorReader(header));
}

/**
 * Reads a GGUF model held in memory (a browser's fetch or file picker); `name` names it in errors.
 * Tensor data may be views into `bytes`, so the caller must not modify it afterwards.
 */
export async function ggufFromBytes(bytes: Uint8Array, name: string): Promise<LoadedSource> {
  const header = parseGgufHeader(bytes, name);
  return ggufSource(header, memoryTensorReader(header, bytes));
}

async function ggufSource(header: GgufHeader, read: GgufTensorReader): Promise<LoadedSource> {
  const md = new GgufMetadata(header.metadata, header.source);
  ggufArchitecture(md);
  for (const info of header.tensors) checkReadable(header, info);
  const config = ggufConfig(header, await readRopeFreqs(header, read));
  const tokenizer = tokenizerFromGguf(header.metadata, header.source);
  const tensors = await ggufTensors(header, config, read);
  const generation = samplingDefaults(md);
  return { source: header.source, format: "gguf", config, tensors, tokenizer, ...(generation ? { generation } : {}) };
}

/** general.sampling.* (written by recent converters from generation_config.json). */
function samplingDefaults(md: GgufMetadata): LoadedSource["generation"] | undefined {
  const temperature = md.optNumber("general.sampling.temp");
  const topK = md.optNumber("general.sampling.top_k");
  const topP = md.optNumber("general.sampling.top_p");
  if (temperature === undefined && topK === undefined && topP === undefined) return undefined;
  return {
    ...(temperature === undefined ? {} : { temperature }),
    ...(topK === undefined ? {} : { topK }),
    ...(topP === undefined ? {} : { topP }),
  };
}
