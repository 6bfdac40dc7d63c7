/**
 * llama2.c checkpoints (run.c's version-0 format) and tokenizers (tokenizer.bin).
 *
 * Checkpoint: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
 * negative vocab_size means a separate classifier), then f32 tensors in run.c's order. Its q/k rows are
 * in Meta's interleaved RoPE order; we permute them to Hugging Face's half-split order so one model
 * definition serves every source.
 */
import type { ModelConfig } from "../model/config.js";
import type { Tokenizer } from "./tokenizer.js";
import { rawTensor, type TensorMap } from "../tensor/raw.js";
import { FormatError } from "./errors.js";

const HEADER_BYTES = 28;

export function parseLlama2cCheckpoint(bytes: Uint8Array, source: string): { config: ModelConfig; tensors: TensorMap } {
  if (bytes.byteLength < HEADER_BYTES) throw new FormatError(source, `${bytes.byteLength} bytes is too short for a llama2.c header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [dim, hidden, layers, heads, kvHeads, vocabRaw, seqLen] = Array.from({ length: 7 }, (_, i) => dv.getInt32(i * 4, true)) as [
    number, number, number, number, number, number, number,
  ];
  const fields = { dim, hidden_dim: hidden, n_layers: layers, n_heads: heads, n_kv_heads: kvHeads, seq_len: seqLen };
  for (const [k, v] of Object.entries(fields)) {
    if (!(v > 0 && v < 1 << 24)) throw new FormatError(source, `header field ${k} = ${v} is not a plausible size`);
  }
  if (vocabRaw === 0 || Math.abs(vocabRaw) >= 1 << 24) throw new FormatError(source, `header field vocab_size = ${vocabRaw} is not a plausible size`);
  if (dim % heads !== 0 || heads % kvHeads !== 0) throw new FormatError(source, `dim ${dim}, n_heads ${heads}, n_kv_heads ${kvHeads} do not divide`);
  const shared = vocabRaw > 0;
  const vocab = Math.abs(vocabRaw);
  const headDim = dim / heads;
  const kvDim = kvHeads * headDim;

  let offset = HEADER_BYTES;
  const tensors: TensorMap = new Map();
  const take = (count: number, what: string): Uint8Array => {
    const end = offset + count * 4;
    if (end > bytes.byteLength) {
      throw new FormatError(source, `truncated: ${what} needs bytes ${offset}..${end}, the file has ${bytes.byteLength}`);
    }
    // copy so the f32 data is 4-byte aligned whatever the source buffer's alignment
    const out = bytes.slice(offset, end);
    offset = end;
    return out;
  };
  const perLayer = (hfName: string, shape: number[], permuteHeads?: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const all = take(n * layers, hfName);
    for (let l = 0; l < layers; l++) {
      let data: Uint8Array = all.slice(l * n * 4, (l + 1) * n * 4);
      if (permuteHeads) data = interleavedToHalfRows(data, permuteHeads, headDim, shape[1]! * 4);
      tensors.set(`model.layers.${l}.${hfName}`, rawTensor(`model.layers.${l}.${hfName}`, "f32", shape, data));
    }
  };
  tensors.set("model.embed_tokens.weight", rawTensor("model.embed_tokens.weight", "f32", [vocab, dim], take(vocab * dim, "token_embedding_table")));
  perLayer("input_layernorm.weight", [dim]);
  perLayer("self_attn.q_proj.weight", [dim, dim], heads);
  perLayer("self_attn.k_proj.weight", [kvDim, dim], kvHeads);
  perLayer("self_attn.v_proj.weight", [kvDim, dim]);
  perLayer("self_attn.o_proj.weight", [dim, dim]);
  perLayer("post_attention_layernorm.weight", [dim]);
  perLayer("mlp.gate_proj.weight", [hidden, dim]);
  perLayer("mlp.down_proj.weight", [dim, hidden]);
  perLayer("mlp.up_proj.weight", [hidden, dim]);
  tensors.set("model.norm.weight", rawTensor("model.norm.weight", "f32", [dim], take(dim, "rms_final_weight")));
  take((seqLen * headDim) / 2, "freq_cis_real (unused)");
  take((seqLen * headDim) / 2, "freq_cis_imag (unused)");
  if (!shared) tensors.set("lm_head.weight", rawTensor("lm_head.weight", "f32", [vocab, dim], take(vocab * dim, "wcls")));
  if (offset !== bytes.byteLength) {
    throw new FormatError(source, `${bytes.byteLength - offset} bytes left after the last tensor; is this a llama2.c version-0 checkpoint?`);
  }

  const config: ModelConfig = {
    architecture: "llama2.c",
    vocabSize: vocab,
    hiddenSize: dim,
    intermediateSize: hidden,
    numLayers: layers,
    numHeads: heads,
    numKvHeads: kvHeads,
    headDim,
    rmsNormEps: 1e-5,
    rope: { theta: 10000, dim: headDim },
    maxPositions: seqLen,
    tieEmbeddings: shared,
    attentionBias: false,
    qkNorm: false,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
  return { config, tensors };
}

/**
 * Reorders the rows of a q or k projection from interleaved RoPE pairs (2i, 2i+1) to half-split pairs
 * (i, i + headDim/2), head by head. Works on any row format: rows are moved whole.
 */
export function interleavedToHalfRows(data: Uint8Array, heads: number, headDim: number, rowBytes: number): Uint8Array {
  const out = new Uint8Array(data.byteLength);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = h * headDim + 2 * i + j;
        const dst = h * headDim + j * half + i;
        out.set(data.subarray(src * rowBytes, (src + 1) * rowBytes), dst * rowBytes);
      }
    }
  }
  return out;
}

/** llama2.c's tokenizer.bin: int32 max_token_length, then per token f32 score, int32 length, bytes. */
export class Llama2cTokenizer implements Tokenizer {
  readonly bosTokenId = 1;
  readonly eosTokenIds = [2];
  readonly chatTemplate = undefined;
  readonly specialTokens = { bos_token: "<s>", eos_token: "</s>" };
  private readonly pieces: Uint8Array[];
  private readonly scores: Float32Array;
  private readonly lookup = new Map<string, number>();
  private readonly latin1 = new TextDecoder("latin1");
  private readonly utf8 = new TextDecoder("utf-8");

  constructor(bytes: Uint8Array, vocabSize: number, source: string) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pieces = [];
    this.scores = new Float32Array(vocabSize);
    let p = 4;
    for (let i = 0; i < vocabSize; i++) {
      if (p + 8 > bytes.byteLength) throw new FormatError(source, `truncated at token ${i} of ${vocabSize}: the tokenizer does not match the model's vocabulary size`);
      this.scores[i] = dv.getFloat32(p, true);
      const len = dv.getInt32(p + 4, true);
      p += 8;
      if (len < 0 || p + len > bytes.byteLength) throw new FormatError(source, `token ${i} has length ${len} past the end of the file`);
      const piece = bytes.slice(p, p + len);
      p += len;
      this.pieces.push(piece);
      const key = this.latin1.decode(piece);
      if (!this.lookup.has(key)) this.lookup.set(key, i);
    }
    if (p !== bytes.byteLength) {
      throw new FormatError(source, `${bytes.byteLength - p} bytes left after ${vocabSize} tokens: the tokenizer does not match the model's vocabulary size`);
    }
  }

  get vocabSize(): number {
    return this.pieces.length;
  }

  /** run.c's encode: a dummy-prefix space, one token per UTF-8 character (byte fallback), then greedy best-score merges. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const ids: number[] = [];
    if (options.addSpecialTokens) ids.push(this.bosTokenId);
    if (text.length === 0) return ids;
    const tokens: number[] = [];
    const space = this.lookup.get(" ");
    if (space !== undefined) tokens.push(space);
    const bytes = new TextEncoder().encode(text);
    for (let i = 0; i < bytes.length; ) {
      let len = 1;
      while (i + len < bytes.length && (bytes[i + len]! & 0xc0) === 0x80 && len < 4) len++;
      const id = this.lookup.get(this.latin1.decode(bytes.subarray(i, i + len)));
      if (id !== undefined) tokens.push(id);
      else for (let j = 0; j < len; j++) tokens.push(bytes[i + j]! + 3);
      i += len;
    }
    for (;;) {
      let best = -Infinity;
      let bestId = -1;
      let bestAt = -1;
      for (let i = 0; i + 1 < tokens.length; i++) {
        const key = this.latin1.decode(this.pieces[tokens[i]!]!) + this.latin1.decode(this.pieces[tokens[i + 1]!]!);
        const id = this.lookup.get(key);
        if (id !== undefined && this.scores[id]! > best) {
          best = this.scores[id]!;
          bestId = id;
          bestAt = i;
        }
      }
      if (bestAt < 0) break;
      tokens.splice(bestAt, 2, bestId);
    }
    return ids.concat(tokens);
  }

  decode(ids: readonly number[], options: { keepSpecial?: boolean } = {}): string {
    const parts: number[] = [];
    let first = true;
    for (const id of ids) {
      if ((id === 1 || id === 2) && !options.keepSpecial) continue;
      const piece = this.pieces[id];
      if (!piece) throw new Error(`token id ${id} is outside the vocabulary [0, ${this.pieces.length})`);
      const s = this.latin1.decode(piece);
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(s);
      if (m) parts.push(parseInt(m[1]!, 16));
      else for (let i = first && piece[0] === 0x20 ? 1 : 0; i < piece.length; i++) parts.push(piece[i]!);
      first = false;
    }
    return this.utf8.decode(new Uint8Array(parts));
  }
}
