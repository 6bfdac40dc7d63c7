/**
 * Test fixtures for GGUF: tiny random models written with the GGUF writer, and a naive forward pass
 * that reads a GGUF file the way llama.cpp computes with it (weights as stored, RoPE on interleaved
 * pairs for llama/mistral and on half-split pairs for qwen2/qwen3), in float64. It shares nothing with
 * src/model or the loader's name mapping and un-permutation.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ModelConfig } from "../../src/model/config.js";
import { expectedShape, expectedTensorNames } from "../../src/model/llama.js";
import type { BlockDType as DType } from "../../src/tensor/dtype.js";
import { decodeRow } from "../../src/backend/cpu/reference.js";
import { dtypeOfGgmlType, parseGgufHeader } from "../../src/io/gguf.js";
import {
  type GgufWriteValue, type HfF32Tensor, encodeGguf, ggufModelMetadata, ggufModelTensors, spmVocabMetadata, syntheticSpmVocab,
} from "../../src/io/gguf-writer.js";

const made: string[] = [];

/** A path named `name` in a fresh temporary folder, removed when the test process exits. */
export function tempPath(name: string): string {
  if (made.length === 0) process.once("exit", () => made.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const dir = mkdtempSync(join(tmpdir(), "frugal-gguf-"));
  made.push(dir);
  return join(dir, name);
}

/** Seedable uniform numbers in [0, 1) (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A tiny model config of an architecture GGUF supports; dimensions are multiples of 32 for q8_0/q4_0. */
export function tinyConfig(arch: "llama" | "mistral" | "qwen2" | "qwen3", over: Partial<ModelConfig> = {}): ModelConfig {
  const base: ModelConfig = {
    architecture: arch,
    vocabSize: 300,
    hiddenSize: 64,
    intermediateSize: 96,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: arch === "qwen3" ? 32 : 16,
    rmsNormEps: Math.fround(1e-5),
    rope: { theta: 10000, dim: arch === "qwen3" ? 32 : 16 },
    maxPositions: 64,
    tieEmbeddings: arch === "qwen3",
    attentionBias: arch === "qwen2",
    qkNorm: arch === "qwen3",
    bosTokenId: 1,
    eosTokenIds: [2],
  };
  return { ...base, ...over };
}

/** Random f32 tensors (Hugging Face names and order) for every tensor the config needs. */
export function randomHfTensors(config: ModelConfig, seed = 1): (HfF32Tensor & { values: Float32Array })[] {
  const next = rng(seed);
  return expectedTensorNames(config).map((name) => {
    const shape = expectedShape(config, name);
    const n = shape.reduce((a, b) => a * b, 1);
    const scale = shape.length === 1 ? 0.2 : 1 / Math.sqrt(shape[shape.length - 1]!);
    const values = Float32Array.from({ length: n }, () => (shape.length === 1 ? 1 : 0) + (next() * 2 - 1) * scale * 1.7);
    return { name, shape, values };
  });
}

/** A whole GGUF model file in memory: metadata for `config`, a synthetic SentencePiece vocabulary, the tensors as `dtype`. */
export function tinyGguf(
  config: ModelConfig,
  tensors: readonly HfF32Tensor[],
  dtype: DType,
  options: { metadata?: Record<string, GgufWriteValue>; version?: 2 | 3; alignment?: number } = {},
): Uint8Array {
  const metadata = { ...ggufModelMetadata(config, dtype), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)), ...options.metadata };
  return encodeGguf(metadata, ggufModelTensors(config, tensors, dtype), options);
}

/**
 * Logits [position][vocab] of `tokens` from a GGUF file, computed as llama.cpp's graph does from the
 * file's own contents (llm_build_llama / qwen2 / qwen3): rope mode NORM (pairs 2i, 2i+1) for llama and
 * mistral, NEOX (pairs i, i + d/2) for qwen2/qwen3; rope_freqs divides the frequencies when present.
 */
export function naiveGgufLogits(path: string, tokens: number[]): Float64Array[] {
  const bytes = new Uint8Array(readFileSync(path));
  const h = parseGgufHeader(bytes, path);
  const md = (k: string) => {
    const e = h.metadata.get(k);
    if (!e) throw new Error(`fixture lacks metadata ${k}`);
    return e.value as number;
  };
  const arch = h.metadata.get("general.architecture")!.value as string;
  const E = md(`${arch}.embedding_length`);
  const heads = md(`${arch}.attention.head_count`);
  const kvHeads = md(`${arch}.attention.head_count_kv`);
  const D = h.metadata.has(`${arch}.attention.key_length`) ? md(`${arch}.attention.key_length`) : E / heads;
  const eps = md(`${arch}.attention.layer_norm_rms_epsilon`);
  const base = md(`${arch}.rope.freq_base`);
  const layers = md(`${arch}.block_count`);
  const neox = arch === "qwen2" || arch === "qwen3";

  const tensors = new Map<string, { rows: number; cols: number; w: Float64Array }>();
  for (const t of h.tensors) {
    const cols = t.dims[0]!;
    const rows = t.dims.length > 1 ? t.dims[1]! : 1;
    const data = bytes.subarray(t.offset, t.offset + t.byteLength!);
    const row = new Float32Array(cols);
    const w = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      decodeRow(dtypeOfGgmlType(t.ggmlType)!, data, r, cols, row);
      w.set(row, r * cols);
    }
    tensors.set(t.name, { rows, cols, w });
  }
  const W = (name: string) => {
    const t = tensors.get(name);
    if (!t) throw new Error(`file lacks tensor ${name}`);
    return t;
  };
  const has = (name: string) => tensors.has(name);
  // ggml_mul_mat(w, x): y[o] = sum_i w[o, i] x[i], rows of w are ne1
  const mul = (name: string, x: Float64Array): Float64Array => {
    const { rows, cols, w } = W(name);
    const y = new Float64Array(rows);
    for (let o = 0; o < rows; o++) {
      let s = 0;
      for (let i = 0; i < cols; i++) s += w[o * cols + i]! * x[i]!;
      y[o] = s;
    }
    if (has(name.replace(/weight$/, "bias"))) W(name.replace(/weight$/, "bias")).w.forEach((b, i) => (y[i]! += b));
    return y;
  };
  const norm = (x: Float64Array, name: string): Float64Array => {
    const g = W(name).w;
    let ss = 0;
    for (const v of x) ss += v * v;
    const r = 1 / Math.sqrt(ss / x.length + eps);
    return x.map((v, i) => v * r * g[i]!);
  };
  const freqFactors = has("rope_freqs.weight") ? W("rope_freqs.weight").w : undefined;
  const rope = (v: Float64Array, n: number, pos: number) => {
    for (let hd = 0; hd < n; hd++) {
      for (let i = 0; i < D / 2; i++) {
        const theta = (pos * base ** ((-2 * i) / D)) / (freqFactors ? freqFactors[i]! : 1);
        const [a, b] = neox ? [hd * D + i, hd * D + i + D / 2] : [hd * D + 2 * i, hd * D + 2 * i + 1];
        const x0 = v[a]!, x1 = v[b]!;
        v[a] = x0 * Math.cos(theta) - x1 * Math.sin(theta);
        v[b] = x0 * Math.sin(theta) + x1 * Math.cos(theta);
      }
    }
  };
  const headNorm = (v: Float64Array, n: number, name: string) => {
    for (let hd = 0; hd < n; hd++) v.set(norm(v.slice(hd * D, (hd + 1) * D), name), hd * D);
  };

  const embd = W("token_embd.weight");
  let x = tokens.map((t) => embd.w.slice(t * E, (t + 1) * E));
  for (let l = 0; l < layers; l++) {
    const p = `blk.${l}.`;
    const q: Float64Array[] = [], k: Float64Array[] = [], v: Float64Array[] = [];
    x.forEach((xt, pos) => {
      const hN = norm(xt, `${p}attn_norm.weight`);
      const qt = mul(`${p}attn_q.weight`, hN), kt = mul(`${p}attn_k.weight`, hN);
      if (has(`${p}attn_q_norm.weight`)) {
        headNorm(qt, heads, `${p}attn_q_norm.weight`);
        headNorm(kt, kvHeads, `${p}attn_k_norm.weight`);
      }
      rope(qt, heads, pos);
      rope(kt, kvHeads, pos);
      q.push(qt), k.push(kt), v.push(mul(`${p}attn_v.weight`, hN));
    });
    x = x.map((xt, pos) => {
      const att = new Float64Array(heads * D);
      for (let hd = 0; hd < heads; hd++) {
        const g = Math.floor((hd * kvHeads) / heads);
        const s: number[] = [];
        for (let j = 0; j <= pos; j++) {
          let dot = 0;
          for (let i = 0; i < D; i++) dot += q[pos]![hd * D + i]! * k[j]![g * D + i]!;
          s.push(dot / Math.sqrt(D));
        }
        const m = Math.max(...s);
        const e = s.map((z) => Math.exp(z - m));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= pos; j++) for (let i = 0; i < D; i++) att[hd * D + i]! += (e[j]! / sum) * v[j]![g * D + i]!;
      }
      const o = mul(`${p}attn_output.weight`, att);
      const r = xt.map((z, i) => z + o[i]!);
      const f = norm(r, `${p}ffn_norm.weight`);
      const gate = mul(`${p}ffn_gate.weight`, f), up = mul(`${p}ffn_up.weight`, f);
      const down = mul(`${p}ffn_down.weight`, gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!));
      return r.map((z, i) => z + down[i]!);
    });
  }
  const out = has("output.weight") ? "output.weight" : "token_embd.weight";
  return x.map((xt) => mul(out, norm(xt, "output_norm.weight")));
}
