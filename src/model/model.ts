import type { Backend, KVCache, PickedToken, Tensor } from "../backend/backend.js";
import { settleKv } from "../kv/store.js";
import type { Tokenizer } from "../io/tokenizer.js";
import { StreamDecoder } from "../io/tokenizer.js";
import type { LoadedSource } from "../io/source.js";
import type { ModelConfig } from "./config.js";
import { LlamaModel } from "./llama.js";
import { Sampler, type SamplingOptions } from "../generate/sampler.js";
import { StopMatcher } from "../generate/stop.js";
import { renderChat, startsWithBos, type ChatMessage } from "../generate/chat-template.js";

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate. Defaults to 256. */
  maxTokens?: number;
  /** Generation ends before any of these strings; they are not part of the output. */
  stop?: string[];
  /** Prepend the BOS token to the prompt. Defaults to true for generate, false for chat (the template decides). */
  addBos?: boolean;
  /** Stop at an end-of-sequence token. Defaults to true. */
  stopAtEos?: boolean;
  /** Aborts generation between tokens. */
  signal?: AbortSignal;
}

export interface Piece {
  /** Text that this step completes; may be empty while a character or stop string is incomplete. */
  text: string;
  /** The token generated in this step (undefined for a final flush). */
  tokenId?: number;
}

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  finishReason: "stop" | "length" | "abort";
  prefillMs: number;
  decodeMs: number;
}

/** Prompt tokens processed per forward call during prefill: bounds activation memory. */
const PREFILL_CHUNK = 256;

export class Model {
  private disposed = false;
  /** Statistics of the last finished generate/chat call. */
  lastStats?: GenerationStats;

  constructor(
    readonly source: LoadedSource,
    readonly backend: Backend,
    readonly network: LlamaModel,
  ) {}

  get config(): ModelConfig {
    return this.source.config;
  }

  get tokenizer(): Tokenizer {
    return this.source.tokenizer;
  }

  /** A KV cache kept from a finished generation: backends free memory only at dispose, so reuse it. */
  private spareCache?: KVCache;

  /**
   * The KV method (`--kv` spec) and number format (`--kv-format`) of the caches of later generations
   * (src/kv). Dense f32 batches in the server; other methods run one sequence per forward.
   */
  setKv(spec = "dense", format = "f32"): void {
    this.network.setKv(spec, format);
    this.spareCache = undefined;
  }

  private acquireCache(capacity: number): KVCache {
    const spare = this.spareCache;
    if (spare && spare.capacity >= capacity) {
      this.spareCache = undefined;
      return spare;
    }
    return this.network.newCache(capacity);
  }

  private releaseCache(cache: KVCache): void {
    if (!this.spareCache || cache.capacity > this.spareCache.capacity) this.spareCache = cache;
  }

  private ensureLive(): void {
    if (this.disposed) throw new Error("this model was disposed");
  }

  /**
   * Records prompt tokens through the network in chunks; returns the (still device-side) logits of
   * the last one. Nothing is waited for: the caller's read or argmax is the sync point.
   */
  prefill(tokens: readonly number[], cache: KVCache, pos0 = 0): Tensor {
    if (tokens.length === 0) throw new Error("prefill needs at least one token");
    let out: Tensor | undefined;
    for (let i = 0; i < tokens.length; i += PREFILL_CHUNK) {
      out = this.network.forward(Int32Array.from(tokens.slice(i, i + PREFILL_CHUNK)), pos0 + i, cache);
    }
    return out!;
  }

  /** Streams the continuation of `prompt`. */
  async *generate(prompt: string, options: GenerateOptions = {}): AsyncGenerator<Piece> {
    this.ensureLive();
    const ids = this.tokenizer.encode(prompt, { addSpecialTokens: options.addBos ?? true });
    yield* this.generateFromTokens(ids, options);
  }

  /** Streams the assistant's reply to `messages` under the model's chat template. */
  async *chat(messages: readonly ChatMessage[], options: GenerateOptions = {}): AsyncGenerator<Piece> {
    this.ensureLive();
    yield* this.generateFromTokens(this.chatPromptIds(messages, options.addBos), options);
  }

  /** The prompt token ids chat() conditions on: `messages` under the chat template, BOS added unless the template has it. */
  chatPromptIds(messages: readonly ChatMessage[], addBos?: boolean): number[] {
    const text = renderChat(this.tokenizer, messages);
    let ids = this.tokenizer.encode(text, { addSpecialTokens: false });
    const bos = this.config.bosTokenId ?? this.tokenizer.bosTokenId;
    const wantBos = addBos ?? !startsWithBos(this.tokenizer, text);
    if (wantBos && bos !== undefined && ids[0] !== bos) ids = [bos, ...ids];
    return ids;
  }

  /** The set of token ids that end generation (config, tokenizer and generation_config). */
  get eosTokenIds(): Set<number> {
    return new Set([...this.config.eosTokenIds, ...this.tokenizer.eosTokenIds, ...(this.source.generation?.eosTokenIds ?? [])]);
  }

  /** Streams the continuation of already-tokenized input. */
  async *generateFromTokens(promptIds: readonly number[], options: GenerateOptions = {}): AsyncGenerator<Piece> {
    this.ensureLive();
    const maxTokens = options.maxTokens ?? 256;
    if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new RangeError(`maxTokens must be a non-negative integer, got ${maxTokens}`);
    if (promptIds.length === 0) throw new Error("the prompt is empty and no BOS token was added; nothing to condition on");
    const capacity = this.network.contextLength;
    if (promptIds.length >= capacity) {
      throw new RangeError(`the prompt has ${promptIds.length} tokens; the context holds ${capacity}`);
    }
    const sampler = new Sampler(options);
    const limit = Math.min(maxTokens, capacity - promptIds.length);
    const cache = this.acquireCache(Math.min(capacity, promptIds.length + limit));
    try {
      yield* this.decodeLoop(promptIds, options, sampler, cache, limit);
    } finally {
      this.releaseCache(cache);
    }
  }

  private async *decodeLoop(
    promptIds: readonly number[], options: GenerateOptions, sampler: Sampler, cache: KVCache, limit: number,
  ): AsyncGenerator<Piece> {
    const eos = this.eosTokenIds;
    const stopAtEos = options.stopAtEos ?? true;
    const stops = new StopMatcher(options.stop ?? []);
    const decoder = new StreamDecoder(this.tokenizer, promptIds);
    const history = [...promptIds];

    // without a penalty only the token id is needed: the backend can pick it where the logits are
    const b = this.backend;
    const argmaxOnDevice = sampler.greedy && b.argmax !== undefined;
    const deviceParams = b.sample ? sampler.deviceParams : undefined;
    // and where it can also embed it there, the next step is recorded before this one's id is back
    const pipelined = b.pickAhead !== undefined && b.embedPicked !== undefined && (sampler.greedy || sampler.deviceParams !== undefined);
    const pickAhead = (logits: Tensor): PickedToken =>
      b.pickAhead!(logits, sampler.greedy ? undefined : { params: sampler.deviceParams!, uniform: sampler.uniform() });
    const pick = async (logits: Tensor): Promise<number> => {
      if (argmaxOnDevice) return b.argmax!(logits);
      if (deviceParams) return b.sample!(logits, deviceParams, sampler.uniform());
      return sampler.sample(await b.read(logits), history);
    };

    const t0 = performance.now();
    const first = this.prefill(promptIds, cache);
    let pending: PickedToken | undefined;
    let next = 0;
    if (pipelined) pending = pickAhead(first);
    else next = await pick(first);
    // the end of the prompt for stores that compress it with host work (xKV on WebGPU)
    await settleKv(cache);
    const t1 = performance.now();
    let generated = 0;
    let finish: GenerationStats["finishReason"] = "length";
    while (generated < limit) {
      if (options.signal?.aborted) {
        finish = "abort";
        break;
      }
      // token `generated` sits at position promptIds.length + generated; its step yields the next token
      const pos = promptIds.length + generated;
      let upcoming: PickedToken | undefined;
      if (pending) {
        if (generated + 1 < limit) upcoming = pickAhead(this.network.forward(pending, pos, cache));
        next = await pending.id;
      }
      const id = next;
      generated++;
      if (stopAtEos && eos.has(id)) {
        finish = "stop";
        break;
      }
      history.push(id);
      const text = stops.push(decoder.push(id));
      yield { text, tokenId: id };
      if (stops.stopped) {
        finish = "stop";
        break;
      }
      if (pending) pending = upcoming;
      else if (generated < limit) next = await pick(this.network.forward(Int32Array.of(id), pos, cache));
    }
    if (!stops.stopped) {
      const rest = stops.push(decoder.flush()) + stops.flush();
      if (rest) yield { text: rest };
    }
    this.lastStats = {
      promptTokens: promptIds.length,
      generatedTokens: generated,
      finishReason: finish,
      prefillMs: t1 - t0,
      decodeMs: performance.now() - t1,
    };
  }

  /** Convenience: the whole continuation as one string. */
  async complete(prompt: string, options: GenerateOptions = {}): Promise<string> {
    let text = "";
    for await (const p of this.generate(prompt, options)) text += p.text;
    return text;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.backend.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}
