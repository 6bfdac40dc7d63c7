/**
 * Writes GGUF files (version 3 by default, little-endian) as llama.cpp's gguf library lays them out:
 * header, metadata, tensor infos, padding to the alignment, then each tensor's data padded to the
 * alignment. Used by tests and benchmarks to make model files, and by anything that exports models.
 */
import { open } from "node:fs/promises";
import { type BlockDType as DType, byteSize } from "../tensor/dtype.js";
import { elementCount } from "../tensor/raw.js";
import type { ModelConfig } from "../model/config.js";
import { f32ToBf16, f32ToF16 } from "../tensor/half.js";
import { quantizeQ8_0 } from "../quant/q8_0.js";
import { quantizeQ4_0 } from "../quant/q4_0.js";
import { GGUF_DEFAULT_ALIGNMENT, GgufType, type GgufTypeCode, ggmlTypeOf } from "./gguf.js";
import { ggufTensorName } from "./load-gguf.js";

type Scalar = number | bigint | boolean | string;
type ScalarTypeName = "uint8" | "int8" | "uint16" | "int16" | "uint32" | "int32" | "float32" | "bool" | "string" | "uint64" | "int64" | "float64";

/** A metadata value with the GGUF type it is written as. */
export type GgufWriteValue =
  | { readonly type: ScalarTypeName; readonly value: Scalar }
  | { readonly type: "array"; readonly itemType: ScalarTypeName; readonly value: readonly Scalar[] };

/** Shorthands for metadata values: `meta.u32(4)`, `meta.strings(["a", "b"])`. */
export const meta = {
  u8: (value: number): GgufWriteValue => ({ type: "uint8", value }),
  i8: (value: number): GgufWriteValue => ({ type: "int8", value }),
  u16: (value: number): GgufWriteValue => ({ type: "uint16", value }),
  i16: (value: number): GgufWriteValue => ({ type: "int16", value }),
  u32: (value: number): GgufWriteValue => ({ type: "uint32", value }),
  i32: (value: number): GgufWriteValue => ({ type: "int32", value }),
  f32: (value: number): GgufWriteValue => ({ type: "float32", value }),
  f64: (value: number): GgufWriteValue => ({ type: "float64", value }),
  u64: (value: number | bigint): GgufWriteValue => ({ type: "uint64", value }),
  i64: (value: number | bigint): GgufWriteValue => ({ type: "int64", value }),
  bool: (value: boolean): GgufWriteValue => ({ type: "bool", value }),
  str: (value: string): GgufWriteValue => ({ type: "string", value }),
  array: (itemType: ScalarTypeName, value: readonly Scalar[]): GgufWriteValue => ({ type: "array", itemType, value }),
  strings: (value: readonly string[]): GgufWriteValue => ({ type: "array", itemType: "string", value }),
  f32s: (value: ArrayLike<number>): GgufWriteValue => ({ type: "array", itemType: "float32", value: Array.from(value) }),
  i32s: (value: ArrayLike<number>): GgufWriteValue => ({ type: "array", itemType: "int32", value: Array.from(value) }),
};

const TYPE_CODE: Record<ScalarTypeName | "array", GgufTypeCode> = {
  uint8: GgufType.UINT8, int8: GgufType.INT8, uint16: GgufType.UINT16, int16: GgufType.INT16,
  uint32: GgufType.UINT32, int32: GgufType.INT32, float32: GgufType.FLOAT32, bool: GgufType.BOOL,
  string: GgufType.STRING, array: GgufType.ARRAY, uint64: GgufType.UINT64, int64: GgufType.INT64,
  float64: GgufType.FLOAT64,
};

/** A tensor to write. `shape` is outermost-first (RawTensor's order); the file stores it reversed. */
export interface GgufWriteTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** The bytes in the format's layout, or a function making them when the writer reaches this tensor. */
  readonly data: Uint8Array | (() => Uint8Array);
  /** Writes this ggml type number instead of dtype's (for making files with types a reader must refuse). */
  readonly ggmlTypeOverride?: number;
}

export interface GgufWriteOptions {
  /** 2 or 3; the layouts are the same for little-endian files. Defaults to 3. */
  version?: 2 | 3;
  /** Data alignment; anything but 32 is recorded as general.alignment. Defaults to 32. */
  alignment?: number;
}

/** Grows a byte buffer as values are appended. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private dv = new DataView(this.buf.buffer);
  length = 0;
  private readonly utf8 = new TextEncoder();

  /** Makes room for n bytes and returns where they start; call it before touching buf/dv, which it may replace. */
  private reserve(n: number): number {
    if (this.length + n > this.buf.byteLength) {
      const next = new Uint8Array(Math.max(this.buf.byteLength * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.dv = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  u8(v: number) { const at = this.reserve(1); this.dv.setUint8(at, v); }
  i8(v: number) { const at = this.reserve(1); this.dv.setInt8(at, v); }
  u16(v: number) { const at = this.reserve(2); this.dv.setUint16(at, v, true); }
  i16(v: number) { const at = this.reserve(2); this.dv.setInt16(at, v, true); }
  u32(v: number) { const at = this.reserve(4); this.dv.setUint32(at, v, true); }
  i32(v: number) { const at = this.reserve(4); this.dv.setInt32(at, v, true); }
  f32(v: number) { const at = this.reserve(4); this.dv.setFloat32(at, v, true); }
  f64(v: number) { const at = this.reserve(8); this.dv.setFloat64(at, v, true); }
  u64(v: number | bigint) { const at = this.reserve(8); this.dv.setBigUint64(at, BigInt(v), true); }
  i64(v: number | bigint) { const at = this.reserve(8); this.dv.setBigInt64(at, BigInt(v), true); }
  bytes(b: Uint8Array) { const at = this.reserve(b.byteLength); this.buf.set(b, at); }
  string(s: string) {
    const b = this.utf8.encode(s);
    this.u64(b.byteLength);
    this.bytes(b);
  }
  padTo(alignment: number) {
    const pad = (alignment - (this.length % alignment)) % alignment;
    this.reserve(pad); // fresh bytes are zero
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function writeScalar(s: ByteSink, type: ScalarTypeName, v: Scalar, key: string): void {
  const num = (): number => {
    if (typeof v !== "number") throw new Error(`metadata ${key}: ${type} needs a number, got ${typeof v}`);
    return v;
  };
  switch (type) {
    case "uint8": return s.u8(num());
    case "int8": return s.i8(num());
    case "uint16": return s.u16(num());
    case "int16": return s.i16(num());
    case "uint32": return s.u32(num());
    case "int32": return s.i32(num());
    case "float32": return s.f32(num());
    case "float64": return s.f64(num());
    case "uint64": return s.u64(typeof v === "bigint" ? v : num());
    case "int64": return s.i64(typeof v === "bigint" ? v : num());
    case "bool":
      if (typeof v !== "boolean") throw new Error(`metadata ${key}: bool needs a boolean, got ${typeof v}`);
      return s.u8(v ? 1 : 0);
    case "string":
      if (typeof v !== "string") throw new Error(`metadata ${key}: string needs a string, got ${typeof v}`);
      return s.string(v);
  }
}

interface Layout {
  header: Uint8Array;
  /** Offsets of each tensor's data relative to the data section, and their sizes. */
  offsets: number[];
  sizes: number[];
  alignment: number;
}

function layout(metadata: ReadonlyMap<string, GgufWriteValue> | Record<string, GgufWriteValue>, tensors: readonly GgufWriteTensor[], options: GgufWriteOptions): Layout {
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!(alignment > 0 && (alignment & (alignment - 1)) === 0)) throw new Error(`alignment ${alignment} is not a power of two`);
  const entries = new Map<string, GgufWriteValue>(metadata instanceof Map ? metadata : Object.entries(metadata as Record<string, GgufWriteValue>));
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) entries.set("general.alignment", meta.u32(alignment));

  const s = new ByteSink();
  s.bytes(new TextEncoder().encode("GGUF"));
  s.u32(options.version ?? 3);
  s.u64(tensors.length);
  s.u64(entries.size);
  for (const [key, v] of entries) {
    s.string(key);
    s.u32(TYPE_CODE[v.type]);
    if (v.type === "array") {
      s.u32(TYPE_CODE[v.itemType]);
      s.u64(v.value.length);
      for (const item of v.value) writeScalar(s, v.itemType, item, key);
    } else {
      writeScalar(s, v.type, v.value, key);
    }
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    const size = byteSize(t.dtype, elementCount(t.shape));
    s.string(t.name);
    s.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) s.u64(t.shape[d]!);
    s.u32(t.ggmlTypeOverride ?? ggmlTypeOf(t.dtype));
    s.u64(offset);
    offsets.push(offset);
    sizes.push(size);
    offset += Math.ceil(size / alignment) * alignment;
  }
  s.padTo(alignment);
  return { header: s.result(), offsets, sizes, alignment };
}

function tensorBytes(t: GgufWriteTensor, size: number): Uint8Array {
  const data = typeof t.data === "function" ? t.data() : t.data;
  if (data.byteLength !== size) throw new Error(`tensor ${t.name}: ${t.dtype} [${t.shape.join(", ")}] needs ${size} bytes, got ${data.byteLength}`);
  return data;
}

/** The whole GGUF file in memory. */
export function encodeGguf(
  metadata: ReadonlyMap<string, GgufWriteValue> | Record<string, GgufWriteValue>,
  tensors: readonly GgufWriteTensor[],
  options: GgufWriteOptions = {},
): Uint8Array {
  const l = layout(metadata, tensors, options);
  const last = tensors.length ? l.offsets[tensors.length - 1]! + Math.ceil(l.sizes[tensors.length - 1]! / l.alignment) * l.alignment : 0;
  const out = new Uint8Array(l.header.byteLength + last);
  out.set(l.header);
  tensors.forEach((t, i) => out.set(tensorBytes(t, l.sizes[i]!), l.header.byteLength + l.offsets[i]!));
  return out;
}

/** Writes a GGUF file tensor by tensor, so only one tensor's bytes need to be in memory at a time. */
export async function writeGguf(
  path: string,
  metadata: ReadonlyMap<string, GgufWriteValue> | Record<string, GgufWriteValue>,
  tensors: readonly GgufWriteTensor[],
  options: GgufWriteOptions = {},
): Promise<void> {
  const l = layout(metadata, tensors, options);
  const fh = await open(path, "w");
  try {
    await fh.write(l.header, 0, l.header.byteLength, 0);
    for (let i = 0; i < tensors.length; i++) {
      const data = tensorBytes(tensors[i]!, l.sizes[i]!);
      const padded = Math.ceil(data.byteLength / l.alignment) * l.alignment;
      const at = l.header.byteLength + l.offsets[i]!;
      await fh.write(data, 0, data.byteLength, at);
      if (padded > data.byteLength) await fh.write(new Uint8Array(padded - data.byteLength), 0, padded - data.byteLength, at + data.byteLength);
    }
  } finally {
    await fh.close();
  }
}

/**
 * Reorders the rows of a q or k projection from Hugging Face's half-split RoPE pairs (i, i + headDim/2)
 * to the interleaved pairs (2i, 2i+1) that llama.cpp's converter writes for Llama-family models, head
 * by head; the inverse of interleavedToHalfRows. Rows are moved whole, so any row format works.
 */
export function halfToInterleavedRows(data: Uint8Array, heads: number, headDim: number, rowBytes: number): Uint8Array {
  if (data.byteLength !== heads * headDim * rowBytes) {
    throw new Error(`${data.byteLength} bytes are not ${heads} heads of ${headDim} rows of ${rowBytes} bytes`);
  }
  const out = new Uint8Array(data.byteLength);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = h * headDim + j * half + i;
        const dst = h * headDim + 2 * i + j;
        out.set(data.subarray(src * rowBytes, (src + 1) * rowBytes), dst * rowBytes);
      }
    }
  }
  return out;
}

/** A value array to write as `dtype`: f32 copies, the others round or quantize as llama.cpp does. */
export function encodeF32As(dtype: DType, values: Float32Array): Uint8Array {
  switch (dtype) {
    case "f32":
      return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
    case "f16":
    case "bf16": {
      const out = new Uint16Array(values.length);
      const conv = dtype === "f16" ? f32ToF16 : f32ToBf16;
      for (let i = 0; i < values.length; i++) out[i] = conv(values[i]!);
      return new Uint8Array(out.buffer);
    }
    case "q8_0":
      return quantizeQ8_0(values);
    case "q4_0":
      return quantizeQ4_0(values);
  }
}

/** An f32 tensor under its Hugging Face name, its values made on demand. */
export interface HfF32Tensor {
  readonly name: string;
  /** Outermost first, as RawTensor. */
  readonly shape: readonly number[];
  readonly values: Float32Array | (() => Float32Array);
}

/** llama.cpp's general.file_type (llama_ftype) of a file whose matrices are `dtype`. */
const FILE_TYPE: Record<DType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32 };

/**
 * The `general.*` and `{arch}.*` metadata llama.cpp needs for a Llama-family model (llama, mistral,
 * qwen2, qwen3), with matrices stored as `dtype`.
 */
export function ggufModelMetadata(config: ModelConfig, dtype: DType, name = "frugal"): Record<string, GgufWriteValue> {
  const arch = config.architecture;
  if (!["llama", "mistral", "qwen2", "qwen3"].includes(arch)) throw new Error(`cannot write architecture ${arch} as GGUF (llama, mistral, qwen2, qwen3)`);
  const m: Record<string, GgufWriteValue> = {
    "general.architecture": meta.str(arch),
    "general.name": meta.str(name),
    "general.file_type": meta.u32(FILE_TYPE[dtype]),
    [`${arch}.context_length`]: meta.u32(config.maxPositions),
    [`${arch}.embedding_length`]: meta.u32(config.hiddenSize),
    [`${arch}.block_count`]: meta.u32(config.numLayers),
    [`${arch}.feed_forward_length`]: meta.u32(config.intermediateSize),
    [`${arch}.attention.head_count`]: meta.u32(config.numHeads),
    [`${arch}.attention.head_count_kv`]: meta.u32(config.numKvHeads),
    [`${arch}.attention.layer_norm_rms_epsilon`]: meta.f32(config.rmsNormEps),
    [`${arch}.rope.freq_base`]: meta.f32(config.rope.theta),
    [`${arch}.rope.dimension_count`]: meta.u32(config.rope.dim),
  };
  if (config.headDim * config.numHeads !== config.hiddenSize) {
    m[`${arch}.attention.key_length`] = meta.u32(config.headDim);
    m[`${arch}.attention.value_length`] = meta.u32(config.headDim);
  }
  const s = config.rope.scaling;
  if (s?.type === "linear") {
    m[`${arch}.rope.scaling.type`] = meta.str("linear");
    m[`${arch}.rope.scaling.factor`] = meta.f32(s.factor);
  } else if (s || config.rope.inverseFrequencies) {
    throw new Error("only linear RoPE scaling can be written to GGUF metadata (llama3 scaling needs a rope_freqs tensor)");
  }
  return m;
}

/**
 * A Llama-family model's f32 tensors (Hugging Face names) as llama.cpp would write them: llama.cpp
 * names, matrices as `dtype` (vectors stay f32, as llama.cpp's quantizer leaves them), and for
 * llama/mistral the q/k rows permuted into interleaved RoPE order.
 */
export function ggufModelTensors(config: ModelConfig, tensors: readonly HfF32Tensor[], dtype: DType): GgufWriteTensor[] {
  const permute = config.architecture === "llama" || config.architecture === "mistral";
  return tensors.map((t) => {
    const d: DType = t.shape.length >= 2 ? dtype : "f32";
    const isQ = /\.q_proj\.(weight|bias)$/.test(t.name);
    const isK = /\.k_proj\.(weight|bias)$/.test(t.name);
    const data = () => {
      let bytes = encodeF32As(d, typeof t.values === "function" ? t.values() : t.values);
      if (permute && (isQ || isK)) {
        const rows = t.shape[0]!;
        bytes = halfToInterleavedRows(bytes, isQ ? config.numHeads : config.numKvHeads, config.headDim, bytes.byteLength / rows);
      }
      return bytes;
    };
    return { name: ggufTensorName(t.name), dtype: d, shape: t.shape, data };
  });
}

/** A SentencePiece-style vocabulary as GGUF stores it. */
export interface SpmVocab {
  readonly tokens: readonly string[];
  readonly scores: readonly number[];
  readonly types: readonly number[];
  readonly bos: number;
  readonly eos: number;
  readonly unk: number;
}

/** The tokenizer.ggml.* metadata of a SentencePiece vocabulary (tokenizer.ggml.model "llama"). */
export function spmVocabMetadata(v: SpmVocab, chatTemplate?: string): Record<string, GgufWriteValue> {
  const m: Record<string, GgufWriteValue> = {
    "tokenizer.ggml.model": meta.str("llama"),
    "tokenizer.ggml.pre": meta.str("default"),
    "tokenizer.ggml.tokens": meta.strings(v.tokens),
    "tokenizer.ggml.scores": meta.f32s(v.scores),
    "tokenizer.ggml.token_type": meta.i32s(v.types),
    "tokenizer.ggml.bos_token_id": meta.u32(v.bos),
    "tokenizer.ggml.eos_token_id": meta.u32(v.eos),
    "tokenizer.ggml.unknown_token_id": meta.u32(v.unk),
    "tokenizer.ggml.add_bos_token": meta.bool(true),
    "tokenizer.ggml.add_eos_token": meta.bool(false),
  };
  if (chatTemplate !== undefined) m["tokenizer.chat_template"] = meta.str(chatTemplate);
  return m;
}

/**
 * A small but complete llama-style vocabulary of `size` tokens: <unk>, <s>, </s>, the 256 byte tokens
 * <0x00>..<0xFF>, then single characters ("▁" for space, printable ASCII), then pieces built by
 * joining earlier pieces (so SentencePiece merging can reach each), scored so earlier pieces merge first.
 */
export function syntheticSpmVocab(size: number): SpmVocab {
  if (size < 259) throw new Error(`a SentencePiece vocabulary with byte fallback needs at least 259 tokens, asked for ${size}`);
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);
  }
  const seen = new Set(tokens);
  const add = (piece: string) => {
    if (tokens.length < size && !seen.has(piece)) {
      seen.add(piece);
      tokens.push(piece);
      types.push(1);
    }
  };
  const chars = ["\u2581", ..."etaoinshrdlucmfwypvbgkjqxz", ..."ETAOINSHRDLUCMFWYPVBGKJQXZ", ..."0123456789.,!?'\"-:;()"];
  for (const c of chars) add(c);
  // pieces of growing length: a piece joined with each of the first few characters, breadth first
  const seeds = chars.slice(0, 27);
  let frontier = [...chars];
  while (tokens.length < size && frontier.length) {
    const next: string[] = [];
    for (const left of frontier) {
      for (const c of seeds) {
        const piece = left + c;
        if (tokens.length >= size) break;
        if (!seen.has(piece)) {
          add(piece);
          next.push(piece);
        }
      }
    }
    frontier = next;
  }
  // SentencePiece's BPE scores: the later a piece was learned, the lower its score
  const scores = tokens.map((_, i) => (types[i] === 1 ? -i : 0));
  return { tokens, scores, types, bos: 1, eos: 2, unk: 0 };
}
