/**
 * Writes a Llama-shaped GGUF model with random weights, for benchmarks that must not depend on
 * downloads. The file is what llama.cpp's converter would write (llama architecture, q/k rows in
 * interleaved RoPE order, all llama.* keys, a SentencePiece vocabulary with byte fallback), so both
 * Frugal and llama.cpp load it.
 *
 *   node dist/bench/make-random-gguf.js --out FILE --type f16|q8_0|q4_0|iq4_nl|f32 --dim D --layers L \
 *     --hidden H --heads N --kv-heads K --vocab V [--ctx 2048] [--seed 1] [--tied] [--fast]
 *
 * Weights are uniform with standard deviation 1/sqrt(fan-in), so every projection keeps activations
 * near unit scale and the logits stay finite; each tensor's values depend only on the seed and its name.
 * --fast (for 1B-8B shapes) tiles one encoded random block instead: see fastRandomTensors.
 */
import { parseArgs } from "node:util";
import { stat } from "node:fs/promises";
import type { ModelConfig } from "../src/model/config.js";
import { expectedShape, expectedTensorNames } from "../src/model/llama.js";
import { isBlockDType as isDType, type BlockDType as DType } from "../src/tensor/dtype.js";
import {
  type HfF32Tensor, ggufModelMetadata, ggufModelTensors, spmVocabMetadata, syntheticSpmVocab, writeGguf,
  type GgufWriteTensor, encodeF32As, meta,
} from "../src/io/gguf-writer.js";
import { ggufTensorName } from "../src/io/load-gguf.js";
import { BLOCK, byteSize } from "../src/tensor/dtype.js";
import { elementCount } from "../src/tensor/raw.js";

/** mulberry32 seeded with the FNV-1a hash of the tensor name mixed with the global seed. */
function rng(seed: number, name: string): () => number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  let a = h >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random values for one tensor: norms near 1, everything else uniform with std 1/sqrt(fan-in). */
export function randomTensor(name: string, shape: readonly number[], seed: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const next = rng(seed, name);
  if (shape.length === 1) {
    for (let i = 0; i < n; i++) out[i] = 1 + (next() - 0.5) * 0.2;
    return out;
  }
  // the embedding feeds an RMSNorm, so its scale is free; unit std keeps it comparable to the rest
  const fanIn = name === "model.embed_tokens.weight" ? 1 : shape[shape.length - 1]!;
  const a = Math.sqrt(3 / fanIn);
  for (let i = 0; i < n; i++) out[i] = (next() * 2 - 1) * a;
  return out;
}

/** llama.cpp's numbers for IQ4_NL: its ggml tensor type and its whole-file type (general.file_type). */
const GGML_TYPE_IQ4_NL = 20;
const LLAMA_FTYPE_IQ4_NL = 25;

/** Values in the block that --fast tiles; a multiple of every block format's 32 elements. */
export const FAST_BLOCK_ELEMS = 1 << 20;

/**
 * The model's tensors (llama.cpp names, matrices as `dtype`, vectors f32) made fast enough for 8B
 * shapes: one block of FAST_BLOCK_ELEMS uniform values is drawn once, scaled by 1/sqrt(fan-in) and
 * encoded once per distinct fan-in (so quantizing costs a few million values, not billions), and each
 * matrix is that block's bytes tiled, starting at a block-aligned offset hashed from its name so that
 * tensors differ. Tiling encoded bytes is exact for q8_0/q4_0 because their 32-value blocks are
 * independent. Rows repeat with a period of FAST_BLOCK_ELEMS values, which a speed benchmark does not
 * mind; q/k rows are not permuted (random either way). Vectors are drawn as randomTensor does.
 */
export function fastRandomTensors(config: ModelConfig, dtype: DType, seed: number): GgufWriteTensor[] {
  const next = rng(seed, "fast block");
  const unit = new Float32Array(FAST_BLOCK_ELEMS);
  for (let i = 0; i < unit.length; i++) unit[i] = (next() * 2 - 1) * Math.sqrt(3);
  const encoded = new Map<number, Uint8Array>();
  const blockFor = (fanIn: number): Uint8Array => {
    let bytes = encoded.get(fanIn);
    if (!bytes) {
      const s = 1 / Math.sqrt(fanIn);
      bytes = encodeF32As(dtype, unit.map((v) => v * s));
      encoded.set(fanIn, bytes);
    }
    return bytes;
  };
  return expectedTensorNames(config).map((name) => {
    const shape = expectedShape(config, name);
    if (shape.length === 1) return { name: ggufTensorName(name), dtype: "f32" as DType, shape, data: () => encodeF32As("f32", randomTensor(name, shape, seed)) };
    const fanIn = name === "model.embed_tokens.weight" ? 1 : shape[shape.length - 1]!;
    const data = () => {
      const pattern = blockFor(fanIn);
      const out = new Uint8Array(byteSize(dtype, elementCount(shape)));
      const unitBytes = BLOCK[dtype].bytes;
      let from = (Math.floor(rng(seed, name)() * (pattern.length / unitBytes)) * unitBytes) % pattern.length;
      for (let at = 0; at < out.length; from = 0) {
        const n = Math.min(pattern.length - from, out.length - at);
        out.set(pattern.subarray(from, from + n), at);
        at += n;
      }
      return out;
    };
    return { name: ggufTensorName(name), dtype, shape, data };
  });
}

/** The config of a random Llama model; vocabulary and context as given. */
export function randomLlamaConfig(o: { dim: number; layers: number; hidden: number; heads: number; kvHeads: number; vocab: number; ctx: number; tied: boolean }): ModelConfig {
  const headDim = o.dim / o.heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new Error(`--dim ${o.dim} must split into --heads ${o.heads} heads of even width`);
  if (o.heads % o.kvHeads !== 0) throw new Error(`--heads ${o.heads} must be a multiple of --kv-heads ${o.kvHeads}`);
  return {
    architecture: "llama",
    vocabSize: o.vocab,
    hiddenSize: o.dim,
    intermediateSize: o.hidden,
    numLayers: o.layers,
    numHeads: o.heads,
    numKvHeads: o.kvHeads,
    headDim,
    rmsNormEps: 1e-5,
    rope: { theta: 10000, dim: headDim },
    maxPositions: o.ctx,
    tieEmbeddings: o.tied,
    attentionBias: false,
    qkNorm: false,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: "string" }, type: { type: "string", default: "f16" },
      dim: { type: "string" }, layers: { type: "string" }, hidden: { type: "string" }, heads: { type: "string" },
      "kv-heads": { type: "string" }, vocab: { type: "string" }, ctx: { type: "string", default: "2048" },
      seed: { type: "string", default: "1" }, tied: { type: "boolean", default: false },
      fast: { type: "boolean", default: false },
    },
  });
  const int = (key: keyof typeof values): number => {
    const v = values[key];
    const n = Number(v);
    if (typeof v !== "string" || !Number.isInteger(n) || n <= 0) throw new Error(`--${key} must be a positive integer, got ${v ?? "nothing"}`);
    return n;
  };
  if (!values.out) throw new Error("--out FILE is required");
  // iq4_nl: q4_0's bytes under llama.cpp's IQ4_NL type (the same 18-byte blocks of 32: an f16 scale and 16
  // bytes of nibbles, read as indices into a fixed non-uniform table), so llama.cpp's cost for a 4-bit format
  // decoded through a lookup can be timed against its q4_0 on the same shapes; Frugal does not read IQ4_NL
  const iq4nl = values.type === "iq4_nl";
  const dtype = iq4nl ? "q4_0" : values.type!;
  if (!isDType(dtype) || dtype === "bf16") throw new Error(`--type must be f32, f16, q8_0, q4_0 or iq4_nl, got ${dtype}`);
  const config = randomLlamaConfig({
    dim: int("dim"), layers: int("layers"), hidden: int("hidden"), heads: int("heads"),
    kvHeads: int("kv-heads"), vocab: int("vocab"), ctx: int("ctx"), tied: values.tied!,
  });
  if ((dtype === "q8_0" || dtype === "q4_0") && (config.hiddenSize % 32 || config.intermediateSize % 32)) {
    throw new Error(`${dtype} needs --dim and --hidden to be multiples of 32`);
  }
  const seed = int("seed");
  const tensors: HfF32Tensor[] = expectedTensorNames(config).map((name) => {
    const shape = expectedShape(config, name);
    return { name, shape, values: () => randomTensor(name, shape, seed) };
  });
  const vocab = syntheticSpmVocab(config.vocabSize);
  const metadata = { ...ggufModelMetadata(config, dtype as DType, "frugal-random"), ...spmVocabMetadata(vocab) };
  const t0 = performance.now();
  const written = values.fast ? fastRandomTensors(config, dtype as DType, seed) : ggufModelTensors(config, tensors, dtype as DType);
  await writeGguf(values.out, iq4nl ? { ...metadata, "general.file_type": meta.u32(LLAMA_FTYPE_IQ4_NL) } : metadata, iq4nl ? written.map((t) => (t.dtype === "q4_0" ? { ...t, ggmlTypeOverride: GGML_TYPE_IQ4_NL } : t)) : written);
  const size = (await stat(values.out)).size;
  console.log(`${values.out}: ${values.type}, ${config.numLayers} layers of ${config.hiddenSize} (ffn ${config.intermediateSize}, ${config.numHeads}/${config.numKvHeads} heads), vocab ${config.vocabSize}: ${(size / 2 ** 20).toFixed(1)} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
