/**
 * The Llama family, written once against Backend: Llama 1-3.x, Mistral, Qwen2/2.5 (q/k/v bias), Qwen3
 * (q/k RMSNorm, explicit head_dim), SmolLM, llama2.c checkpoints. Weight names are Hugging Face's;
 * every loader translates its own names to these, and q/k rows are in Hugging Face's half-split RoPE
 * order (loaders of interleaved-order files permute them back).
 */
import type { Backend, KVCache, KVPool, PickedRows, PickedToken, RopeTable, Tensor, Weight } from "../backend/backend.js";
import type { RawTensor, TensorMap } from "../tensor/raw.js";
import { type ModelConfig, ropeInverseFrequencies } from "./config.js";
import { isKvStore, type KvContext, type KvStore } from "../kv/store.js";
import { parseKvSpec } from "../kv/spec.js";
import { checkKvFormat } from "../kv/format.js";
import { commonPool } from "../kv/slot-pool.js";

interface LayerWeights {
  inputNorm: Weight; // [hidden]
  q: Weight; // [heads * headDim, hidden]
  k: Weight; // [kvHeads * headDim, hidden]
  v: Weight; // [kvHeads * headDim, hidden]
  o: Weight; // [hidden, heads * headDim]
  qBias?: Weight; // [heads * headDim]
  kBias?: Weight; // [kvHeads * headDim]
  vBias?: Weight; // [kvHeads * headDim]
  qNorm?: Weight; // [headDim]
  kNorm?: Weight; // [headDim]
  postNorm: Weight; // [hidden]
  gate: Weight; // [intermediate, hidden]
  up: Weight; // [intermediate, hidden]
  down: Weight; // [hidden, intermediate]
}

export interface LlamaWeights {
  embed: Weight; // [vocab, hidden]
  layers: LayerWeights[];
  norm: Weight; // [hidden]
  lmHead: Weight; // [vocab, hidden] (the embedding when tied)
}

/** Scratch activations for up to `rows` tokens at a time, allocated once and reused. */
interface Scratch {
  rows: number;
  x: Tensor; // residual stream [rows, hidden]
  h: Tensor; // normed [rows, hidden]
  q: Tensor; // [rows, heads * headDim]
  k: Tensor; // [rows, kvHeads * headDim]
  v: Tensor;
  att: Tensor; // [rows, heads * headDim]
  proj: Tensor; // [rows, hidden]
  gate: Tensor; // [rows, intermediate]
  up: Tensor;
}

/** Hugging Face names of the tensors a config needs, for loaders and error messages. */
export function expectedTensorNames(c: ModelConfig): string[] {
  const names = ["model.embed_tokens.weight", "model.norm.weight"];
  if (!c.tieEmbeddings) names.push("lm_head.weight");
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    names.push(
      `${p}input_layernorm.weight`, `${p}post_attention_layernorm.weight`,
      `${p}self_attn.q_proj.weight`, `${p}self_attn.k_proj.weight`, `${p}self_attn.v_proj.weight`, `${p}self_attn.o_proj.weight`,
      `${p}mlp.gate_proj.weight`, `${p}mlp.up_proj.weight`, `${p}mlp.down_proj.weight`,
    );
    if (c.attentionBias) names.push(`${p}self_attn.q_proj.bias`, `${p}self_attn.k_proj.bias`, `${p}self_attn.v_proj.bias`);
    if (c.qkNorm) names.push(`${p}self_attn.q_norm.weight`, `${p}self_attn.k_norm.weight`);
  }
  return names;
}

/** The shape each named tensor must have under config c. */
export function expectedShape(c: ModelConfig, name: string): number[] {
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const leaf = name.replace(/^model\.layers\.\d+\./, "");
  const table: Record<string, number[]> = {
    "model.embed_tokens.weight": [c.vocabSize, c.hiddenSize],
    "lm_head.weight": [c.vocabSize, c.hiddenSize],
    "model.norm.weight": [c.hiddenSize],
    "input_layernorm.weight": [c.hiddenSize],
    "post_attention_layernorm.weight": [c.hiddenSize],
    "self_attn.q_proj.weight": [qDim, c.hiddenSize],
    "self_attn.k_proj.weight": [kvDim, c.hiddenSize],
    "self_attn.v_proj.weight": [kvDim, c.hiddenSize],
    "self_attn.o_proj.weight": [c.hiddenSize, qDim],
    "self_attn.q_proj.bias": [qDim],
    "self_attn.k_proj.bias": [kvDim],
    "self_attn.v_proj.bias": [kvDim],
    "self_attn.q_norm.weight": [c.headDim],
    "self_attn.k_norm.weight": [c.headDim],
    "mlp.gate_proj.weight": [c.intermediateSize, c.hiddenSize],
    "mlp.up_proj.weight": [c.intermediateSize, c.hiddenSize],
    "mlp.down_proj.weight": [c.hiddenSize, c.intermediateSize],
  };
  const shape = table[leaf];
  if (!shape) throw new Error(`no expected shape for tensor ${name}`);
  return shape;
}

export class LlamaModel {
  private scratch?: Scratch;
  /** [1, vocab]: decode and prefill need only the last position's logits. */
  private lastLogits?: Tensor;
  /** [rows, vocab] for scoring every position (perplexity); made on first use. */
  private allLogits?: Tensor;
  /** [sequences, vocab] for batched decoding; made on first use. */
  private batchLogits?: Tensor;
  private readonly rope: RopeTable;
  /** Makes each new cache (`--kv`, `--kv-format`); undefined: the backend's plain cache. */
  private kvFactory?: (ctx: KvContext) => KvStore;
  private kvFormat = "f32";
  /** Whether the configured stores run in forwardBatch (dense, f32). */
  private kvBatchable = true;

  /** Longest context this instance serves: the model's, or less when the caller asked for less. */
  readonly contextLength: number;

  private constructor(
    readonly config: ModelConfig,
    readonly backend: Backend,
    readonly weights: LlamaWeights,
    contextLength: number,
  ) {
    this.contextLength = contextLength;
    this.rope = backend.ropeTable(ropeInverseFrequencies(config.rope), contextLength);
  }

  /**
   * Checks every tensor's presence and shape against the config, then uploads them. `source` names the
   * file or folder in error messages.
   */
  static create(config: ModelConfig, tensors: TensorMap, backend: Backend, source: string, contextLength = config.maxPositions): LlamaModel {
    const raw = (name: string): RawTensor => {
      const t = tensors.get(name);
      if (!t) throw new Error(`${source}: missing tensor ${name}`);
      checkShape(t, expectedShape(config, name), source);
      return t;
    };
    const get = (name: string): Weight => backend.upload(raw(name));
    // weights that fused matmuls read as one matrix, where the backend stacks them
    const stack = (names: string[]): Weight[] => (backend.uploadStack ? backend.uploadStack(names.map(raw)) : names.map(get));
    const opt = (name: string, wanted: boolean): Weight | undefined => (wanted ? get(name) : undefined);
    const layers: LayerWeights[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      const p = `model.layers.${i}.`;
      const [q, k, v] = stack([`${p}self_attn.q_proj.weight`, `${p}self_attn.k_proj.weight`, `${p}self_attn.v_proj.weight`]) as [Weight, Weight, Weight];
      const [gate, up] = stack([`${p}mlp.gate_proj.weight`, `${p}mlp.up_proj.weight`]) as [Weight, Weight];
      layers.push({
        inputNorm: get(`${p}input_layernorm.weight`),
        q,
        k,
        v,
        o: get(`${p}self_attn.o_proj.weight`),
        qBias: opt(`${p}self_attn.q_proj.bias`, config.attentionBias),
        kBias: opt(`${p}self_attn.k_proj.bias`, config.attentionBias),
        vBias: opt(`${p}self_attn.v_proj.bias`, config.attentionBias),
        qNorm: opt(`${p}self_attn.q_norm.weight`, config.qkNorm),
        kNorm: opt(`${p}self_attn.k_norm.weight`, config.qkNorm),
        postNorm: get(`${p}post_attention_layernorm.weight`),
        gate,
        up,
        down: get(`${p}mlp.down_proj.weight`),
      });
    }
    const embed = get("model.embed_tokens.weight");
    const lmHead = config.tieEmbeddings && !tensors.has("lm_head.weight") ? embed : get("lm_head.weight");
    const context = Math.min(contextLength, config.maxPositions);
    return new LlamaModel(config, backend, { embed, layers, norm: get("model.norm.weight"), lmHead }, context);
  }

  /**
   * Chooses the KV method (`--kv` spec, src/kv/spec.ts) and number format (`--kv-format`, src/kv/format.ts)
   * of every cache made from now on; "dense" and "f32" restore the backend's plain cache. Bad specs throw here.
   */
  setKv(spec = "dense", format = "f32"): void {
    checkKvFormat(format);
    const parsed = parseKvSpec(spec);
    const plain = parsed.method.name === "dense" && format === "f32";
    this.kvFactory = plain ? undefined : parsed.method.create(parsed.params, parsed.canonical);
    this.kvFormat = format;
    // dense in a format the backend stores itself still runs per-row ops on the backend's cache
    this.kvBatchable = parsed.method.name === "dense" && (format === "f32" || this.backend.kvFormats?.includes(format) === true);
  }

  /** A fresh KV cache for up to `capacity` positions. */
  newCache(capacity = this.contextLength): KVCache {
    const c = this.config;
    const cap = Math.min(capacity, this.contextLength);
    if (!this.kvFactory) return this.backend.kvCache(c.numLayers, c.numKvHeads, c.headDim, cap);
    return this.kvFactory(this.kvContext(cap, this.kvFormat));
  }

  /**
   * A pool of `slots` caches for batched decoding (the server's sequences), or undefined where the
   * backend has no pools or the configured caches are not the backend's plain f32 ones (`setKv`): then
   * caches come from newCache one by one. forwardBatch over caches of one pool runs RoPE, the KV write
   * and attention once per layer for all rows (Backend.ropeRows, kvWriteRows, attentionRows).
   */
  newCachePool(slots: number, capacity = this.contextLength): KVPool | undefined {
    const b = this.backend;
    if (this.kvFactory || !this.batchedOps) return undefined;
    const c = this.config;
    return b.kvPool!(c.numLayers, c.numKvHeads, c.headDim, Math.min(capacity, this.contextLength), slots);
  }

  /** Whether the backend has the batched position-dependent ops and pools for them. */
  private get batchedOps(): boolean {
    const b = this.backend;
    return b.kvPool !== undefined && b.ropeRows !== undefined && b.kvWriteRows !== undefined && b.attentionRows !== undefined;
  }

  /** What a KV store for this model needs (src/kv/store.ts); for tests and tools that make stores directly. */
  kvContext(capacity = this.contextLength, format = "f32"): KvContext {
    const c = this.config;
    return {
      backend: this.backend, layers: c.numLayers, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim,
      capacity: Math.min(capacity, this.contextLength), rope: this.rope, format,
    };
  }

  private scratchFor(rows: number): Scratch {
    if (!this.scratch || this.scratch.rows < rows) {
      const b = this.backend;
      const c = this.config;
      const qDim = c.numHeads * c.headDim;
      const kvDim = c.numKvHeads * c.headDim;
      this.scratch = {
        rows,
        x: b.activation(rows, c.hiddenSize),
        h: b.activation(rows, c.hiddenSize),
        q: b.activation(rows, qDim),
        k: b.activation(rows, kvDim),
        v: b.activation(rows, kvDim),
        att: b.activation(rows, qDim),
        proj: b.activation(rows, c.hiddenSize),
        gate: b.activation(rows, c.intermediateSize),
        up: b.activation(rows, c.intermediateSize),
      };
    }
    return this.scratch;
  }

  /**
   * Embeds `tokens` and runs every layer over them; `attend` does the position-dependent part (RoPE,
   * KV write, attention from q/k/v into att) for layer l. Returns the residual stream x, the scratch
   * row h and the row-count view used.
   */
  private layers(
    tokens: Int32Array | PickedToken | PickedBatch,
    attend: (layer: number, q: Tensor, k: Tensor, v: Tensor, att: Tensor, h: Tensor) => void,
    /** Tries input norm + q/k/v (+ whatever the caller folds in, e.g. RoPE and the KV write); false: the separate ops run. */
    qkv?: (layer: number, q: Tensor, h: Tensor, x: Tensor) => boolean,
  ): { x: Tensor; h: Tensor; view: (t: Tensor) => Tensor } {
    const n = tokenCount(tokens);
    const b = this.backend;
    const c = this.config;
    const w = this.weights;
    const s = this.scratchFor(n);
    const view = (t: Tensor) => (t.rows === n ? t : b.view(t, n));
    const x = view(s.x), h = view(s.h), q = view(s.q), k = view(s.k), v = view(s.v);
    const att = view(s.att), proj = view(s.proj), gate = view(s.gate), up = view(s.up);

    if (tokens instanceof Int32Array) b.embed(x, w.embed, tokens);
    else if (isPickedBatch(tokens)) b.embedPickedRows!(x, w.embed, tokens.picked, tokens.rows);
    else b.embedPicked!(x, w.embed, tokens);
    for (let l = 0; l < c.numLayers; l++) {
      const L = w.layers[l]!;
      // each fused op (Backend, "Fused ops") declines by returning false; the separate ops follow
      if (qkv?.(l, q, h, x)) {
        // q/k/v done by the caller's fused op
      } else if (!b.normMatmulStacked?.([q, k, v], h, x, L.inputNorm, c.rmsNormEps, [L.q, L.k, L.v])) {
        b.rmsnorm(h, x, L.inputNorm, c.rmsNormEps, c.hiddenSize);
        if (!b.matmulStacked?.([q, k, v], h, [L.q, L.k, L.v])) {
          b.matmul(q, h, L.q);
          b.matmul(k, h, L.k);
          b.matmul(v, h, L.v);
        }
      }
      if (L.qBias) b.addBias(q, L.qBias);
      if (L.kBias) b.addBias(k, L.kBias);
      if (L.vBias) b.addBias(v, L.vBias);
      if (L.qNorm) b.rmsnorm(q, q, L.qNorm, c.rmsNormEps, c.headDim);
      if (L.kNorm) b.rmsnorm(k, k, L.kNorm, c.rmsNormEps, c.headDim);
      attend(l, q, k, v, att, h);
      if (!b.matmulAdd?.(x, att, L.o)) {
        b.matmul(proj, att, L.o);
        b.add(x, x, proj);
      }

      if (!b.normMatmulSwiglu?.(gate, h, x, L.postNorm, c.rmsNormEps, L.gate, L.up)) {
        b.rmsnorm(h, x, L.postNorm, c.rmsNormEps, c.hiddenSize);
        if (!b.matmulSwiglu?.(gate, h, L.gate, L.up)) {
          b.matmul(gate, h, L.gate);
          b.matmul(up, h, L.up);
          b.swiglu(gate, gate, up);
        }
      }
      if (!b.matmulAdd?.(x, gate, L.down)) {
        b.matmul(proj, gate, L.down);
        b.add(x, x, proj);
      }
    }
    return { x, h, view };
  }

  /**
   * Runs `tokens` at positions pos0.. through the network, filling the cache, and returns the logits
   * tensor: one row per token when `allLogits`, else one row for the last token. A PickedToken (one
   * token still on the device, from the backend's pickAhead) needs the backend's embedPicked.
   */
  forward(tokens: Int32Array | PickedToken, pos0: number, cache: KVCache, allLogits = false): Tensor {
    const n = tokenCount(tokens);
    if (!(tokens instanceof Int32Array) && !this.backend.embedPicked) throw new Error(`the ${this.backend.kind} backend cannot embed a token picked on the device`);
    if (n === 0) throw new Error("forward needs at least one token");
    if (pos0 + n > cache.capacity) throw new Error(`context full: ${pos0 + n} positions > ${cache.capacity}`);
    const b = this.backend;
    const c = this.config;
    const w = this.weights;
    const store = isKvStore(cache) ? cache : undefined;
    const rope = (t: Tensor) => b.rope(t, c.headDim, pos0, this.rope);
    // one token on a plain cache: norm, q/k/v, RoPE and the KV write may be one op (Backend.normMatmulQkvRope)
    let roped = false;
    const qkv = store || n !== 1 || !b.normMatmulQkvRope ? undefined : (l: number, q: Tensor, h: Tensor, x: Tensor) => {
      const L = w.layers[l]!;
      roped = !L.qBias && !L.kBias && !L.vBias && !L.qNorm && !L.kNorm &&
        b.normMatmulQkvRope!(q, h, x, L.inputNorm, c.rmsNormEps, [L.q, L.k, L.v], cache, l, pos0, c.headDim, this.rope);
      return roped;
    };
    const { x, h, view } = this.layers(tokens, (l, q, k, v, att, hn) => {
      if (store) {
        b.rope(q, c.headDim, pos0, this.rope);
        store.step({ layer: l, pos0, rows: n, heads: c.numHeads, h: hn, q, k, v, att, rope });
        return;
      }
      if (!roped && !b.ropeKvWrite?.(q, k, v, cache, l, pos0, c.headDim, this.rope)) {
        b.rope(q, c.headDim, pos0, this.rope);
        b.rope(k, c.headDim, pos0, this.rope);
        b.kvWrite(cache, l, k, v, pos0);
      }
      b.attention(att, q, cache, l, pos0, c.numHeads);
    }, qkv);
    if (allLogits) {
      b.rmsnorm(h, x, w.norm, c.rmsNormEps, c.hiddenSize);
      if (!this.allLogits || this.allLogits.rows < n) this.allLogits = b.activation(n, c.vocabSize);
      const logits = view(this.allLogits);
      b.matmul(logits, h, w.lmHead);
      return logits;
    }
    // only the last row feeds the next-token distribution
    const last = b.view(h, 1);
    b.rmsnormRow(last, x, n - 1, w.norm, c.rmsNormEps);
    this.lastLogits ??= b.activation(1, c.vocabSize);
    b.matmul(this.lastLogits, last, w.lmHead);
    return this.lastLogits;
  }
  /**
   * Whether forwardBatch runs several sequences in one pass: over caches of one `newCachePool` where the
   * backend has the batched ops, else over any caches where it has row views its rows can start at.
   */
  get batches(): boolean {
    return this.kvBatchable && (this.rowViewsFit || (this.batchedOps && !this.kvFactory));
  }

  /** Whether every row of q, k, v and att starts where the backend can view it (the per-row path). */
  private get rowViewsFit(): boolean {
    const c = this.config;
    const align = this.backend.rowViewAlign ?? 1;
    return this.backend.rowView !== undefined && [c.numHeads * c.headDim, c.numKvHeads * c.headDim].every((cols) => (cols * 4) % align === 0);
  }

  /**
   * One decode step of several independent sequences: row r is token tokens[r] at position positions[r]
   * of caches[r]. The matmuls run once over all rows (weights are read once per step, not once per
   * sequence). When the caches all come from one `newCachePool` and the backend has the batched ops,
   * RoPE, the KV write and attention run once per layer over every row; otherwise once per row against
   * that row's own cache, through row views. Returns logits [sequences, vocab], row r for sequence r.
   * `tokens` may be a PickedBatch: the previous step's tokens, still on the device (pipelined serving).
   */
  forwardBatch(tokens: Int32Array | PickedBatch, positions: readonly number[], caches: readonly KVCache[]): Tensor {
    const n = tokenCount(tokens);
    const b = this.backend;
    if (n === 0) throw new Error("forwardBatch needs at least one token");
    if (isPickedBatch(tokens) && !b.embedPickedRows) throw new Error(`the ${b.kind} backend cannot embed tokens picked on the device`);
    if (positions.length !== n || caches.length !== n) {
      throw new Error(`forwardBatch: ${n} tokens, ${positions.length} positions, ${caches.length} caches`);
    }
    const plain = caches.map((cache) => {
      if (!isKvStore(cache)) return cache;
      if (!cache.batchable || !cache.backendCache) throw new Error(`forwardBatch: --kv ${cache.spec} runs one sequence at a time (use forward)`);
      return cache.backendCache;
    });
    for (let r = 0; r < n; r++) {
      if (positions[r]! + 1 > caches[r]!.capacity) throw new Error(`context full: ${positions[r]! + 1} positions > ${caches[r]!.capacity}`);
    }
    const c = this.config;
    const w = this.weights;
    const pooled = this.batchedOps && commonPool(plain) !== undefined;
    if (!pooled && !this.rowViewsFit) {
      throw new Error(`forwardBatch on ${b.kind}: the caches must come from one newCachePool (this backend cannot view single rows of this model's activations)`);
    }
    const row = (t: Tensor, r: number) => b.rowView!(t, r, 1);
    const { x, h } = this.layers(tokens, (l, q, k, v, att) => {
      if (pooled) {
        b.ropeRows!(q, c.headDim, positions, this.rope);
        b.ropeRows!(k, c.headDim, positions, this.rope);
        b.kvWriteRows!(plain, l, k, v, positions);
        b.attentionRows!(att, q, plain, l, positions, c.numHeads);
        return;
      }
      for (let r = 0; r < n; r++) {
        const qr = row(q, r), kr = row(k, r), vr = row(v, r), pos = positions[r]!, cache = plain[r]!;
        if (!b.ropeKvWrite?.(qr, kr, vr, cache, l, pos, c.headDim, this.rope)) {
          b.rope(qr, c.headDim, pos, this.rope);
          b.rope(kr, c.headDim, pos, this.rope);
          b.kvWrite(cache, l, kr, vr, pos);
        }
        b.attention(row(att, r), qr, cache, l, pos, c.numHeads);
      }
    });
    b.rmsnorm(h, x, w.norm, c.rmsNormEps, c.hiddenSize);
    if (!this.batchLogits || this.batchLogits.rows < n) this.batchLogits = b.activation(n, c.vocabSize);
    const logits = b.view(this.batchLogits, n);
    b.matmul(logits, h, w.lmHead);
    return logits;
  }
}

/**
 * A batched step's tokens still on the device (pipelined decoding): row i is the token that
 * `pickRowsAhead` picked for row rows[i] of the previous step.
 */
export interface PickedBatch {
  picked: PickedRows;
  rows: readonly number[];
}

function isPickedBatch(t: Int32Array | PickedToken | PickedBatch): t is PickedBatch {
  return !(t instanceof Int32Array) && "rows" in t && "picked" in t;
}

function tokenCount(tokens: Int32Array | PickedToken | PickedBatch): number {
  if (tokens instanceof Int32Array) return tokens.length;
  return isPickedBatch(tokens) ? tokens.rows.length : 1;
}

function checkShape(t: RawTensor, want: number[], source: string): void {
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
    throw new Error(`${source}: tensor ${t.name} has shape [${t.shape.join(", ")}], the config needs [${want.join(", ")}]`);
  }
}
