/**
 * The one owner of the model while serving. Requests wait in a bounded queue; up to `maxBatch` of them
 * are active at once, each with a KV cache of its own, taken from a pool and given back when the
 * sequence ends (the CPU backend's memory is a bump allocator, so caches are reused rather than made per
 * request): a KV slot pool of `maxBatch` slots where the backend has one (LlamaModel.newCachePool), so
 * that a batched step runs RoPE, the KV write and attention once per layer for every sequence, else
 * caches made one by one. Every tick emits one token for every active sequence and then runs all their
 * next positions together: as one forwardBatch (one multi-row matmul per weight) where the model
 * batches, else one forward per sequence in turn.
 */
import type { KVCache, KVPool, PickedRows, SampleParams, Tensor } from "../backend/backend.js";
import { settleKv } from "../kv/store.js";
import { StreamDecoder } from "../io/tokenizer.js";
import type { Model } from "../model/model.js";
import type { PickedBatch } from "../model/llama.js";
import { Sampler } from "../generate/sampler.js";
import { StopMatcher } from "../generate/stop.js";
import type { FinishReason, TokenLogprob } from "./wire.js";

/** What the scheduler needs to run one request. */
export interface Job {
  promptIds: readonly number[];
  maxTokens: number;
  temperature: number;
  topP: number;
  seed?: number;
  stop: readonly string[];
  /** Alternatives per token to report; undefined: no logprobs. */
  topLogprobs?: number;
  /** Aborting it (client gone) ends the sequence and frees its cache at the next tick. */
  signal?: AbortSignal;
  /** Text completed by one step (may be empty), and the token's logprobs when asked for. */
  onPiece(text: string, logprob?: TokenLogprob): void;
  onDone(result: JobResult): void;
  onError(e: Error): void;
}

export interface JobResult {
  finishReason: FinishReason | "abort";
  promptTokens: number;
  completionTokens: number;
  /** From submit to the first generated token. */
  timeToFirstTokenMs?: number;
}

/** Raised by submit when the queue is full. */
export class QueueFullError extends Error {}

/** Raised by submit after shutdown began. */
export class ShuttingDownError extends Error {}

export interface SchedulerOptions {
  /** Sequences decoded together. Default 8. */
  maxBatch?: number;
  /** Requests that may wait for a free slot; more are refused. Default 64. */
  maxQueue?: number;
  /** Told of every finished tick: tokens emitted and its duration. */
  onTick?: (tokens: number, ms: number) => void;
}

/** A submitted step whose picked tokens the host has not consumed yet: row r is seqs[r]. */
interface Inflight {
  seqs: Sequence[];
  picked: PickedRows;
}

interface Sequence {
  job: Job;
  cache: KVCache;
  history: number[];
  sampler: Sampler;
  decoder: StreamDecoder;
  stops: StopMatcher;
  generated: number;
  limit: number;
  logits?: Float32Array;
  /** The next token when it was picked on the device (no logits came back). */
  picked?: number;
  submittedAt: number;
  ttft?: number;
}

/** Runs requests against one model, several at a time. */
export class Scheduler {
  readonly maxBatch: number;
  readonly maxQueue: number;
  private readonly waiting: { job: Job; at: number }[] = [];
  private readonly active: Sequence[] = [];
  private readonly freeCaches: KVCache[] = [];
  /** The slot pool, made at the first admission; null where the model has none (caches come from freeCaches). */
  private pool?: KVPool | null;
  /** The pipelined step in flight, if any. */
  private inflight?: Inflight;
  private readonly eos: Set<number>;
  private running = false;
  private closing = false;
  private idle?: () => void;

  constructor(readonly model: Model, private readonly options: SchedulerOptions = {}) {
    this.maxBatch = options.maxBatch ?? 8;
    this.maxQueue = options.maxQueue ?? 64;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new RangeError(`maxBatch must be a positive integer, got ${this.maxBatch}`);
    if (!Number.isInteger(this.maxQueue) || this.maxQueue < 0) throw new RangeError(`maxQueue must be a non-negative integer, got ${this.maxQueue}`);
    this.eos = model.eosTokenIds;
  }

  /** Requests waiting for a slot. */
  get queueDepth(): number {
    return this.waiting.length;
  }

  /** Sequences being decoded. */
  get activeSequences(): number {
    return this.active.length;
  }

  /** Whether steps run as one batched forward (else one forward per sequence). */
  get batched(): boolean {
    return this.model.network.batches;
  }

  /** Queues a job; throws QueueFullError or ShuttingDownError instead of queueing past the limits. */
  submit(job: Job): void {
    if (this.closing) throw new ShuttingDownError("the server is shutting down");
    const free = this.maxBatch - this.active.length;
    if (this.waiting.length >= this.maxQueue + Math.max(0, free)) throw new QueueFullError(`the queue is full (${this.maxQueue} waiting)`);
    const entry = { job, at: performance.now() };
    this.waiting.push(entry);
    job.signal?.addEventListener(
      "abort",
      () => {
        // not started yet: leave the queue now
        const i = this.waiting.indexOf(entry);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          job.onDone({ finishReason: "abort", promptTokens: job.promptIds.length, completionTokens: 0 });
        }
      },
      { once: true },
    );
    this.kick();
  }

  /** Refuses new jobs; resolves once every queued and active one has finished. */
  drain(): Promise<void> {
    this.closing = true;
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => (this.idle = resolve));
  }

  /** Ends every queued and active job now (finish reason "abort"). */
  abortAll(): void {
    for (const { job } of this.waiting.splice(0)) job.onDone({ finishReason: "abort", promptTokens: job.promptIds.length, completionTokens: 0 });
    for (const s of this.active.splice(0)) this.finish(s, "abort", false);
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      while (this.waiting.length > 0 || this.active.length > 0) {
        const t0 = performance.now();
        const emitted = await this.tick();
        this.options.onTick?.(emitted, performance.now() - t0);
        // the forward pass blocks this thread: let sockets, new requests and aborts in between ticks
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      // a step still in flight belongs to sequences that have all ended
      this.inflight = undefined;
      this.running = false;
      const idle = this.idle;
      this.idle = undefined;
      idle?.();
    }
  }

  /** Slots of the KV slot pool not taken by a sequence (undefined without a pool): for tests and metrics. */
  get freeSlots(): number | undefined {
    return this.pool ? this.pool.available : undefined;
  }

  /**
   * Records and runs one batched step at every batch size from 1 to maxBatch on the pool's slots (and
   * gives them back), so that each size's kernels are compiled before the first request: on WebGPU each
   * batch size is its own GEMV pipeline, and compiling them during a load test stalled steps for seconds.
   * A no-op on the CPU backend (it compiles nothing per size) and without a KV slot pool.
   */
  async warmUp(): Promise<void> {
    if (this.model.backend.kind !== "webgpu") return;
    if (this.pool === undefined) this.pool = this.model.network.newCachePool(this.maxBatch) ?? null;
    const pool = this.pool;
    if (!pool || pool.available < this.maxBatch) return;
    const net = this.model.network;
    const caches = Array.from({ length: this.maxBatch }, () => pool.take());
    try {
      for (let n = 1; n <= this.maxBatch; n++) {
        const logits = net.forwardBatch(new Int32Array(n), new Array<number>(n).fill(0), caches.slice(0, n));
        await this.model.backend.read(logits, 0, 1);
      }
    } finally {
      for (const c of caches) pool.release(c);
    }
  }

  private takeCache(): KVCache {
    if (this.pool === undefined) this.pool = this.model.network.newCachePool(this.maxBatch) ?? null;
    if (this.pool) return this.pool.take();
    return this.freeCaches.pop() ?? this.model.network.newCache();
  }

  private releaseCache(cache: KVCache): void {
    if (this.pool && cache.slot?.pool === this.pool) this.pool.release(cache);
    else this.freeCaches.push(cache);
  }

  /** Admits waiting jobs while slots are free; returns how many were admitted. */
  private async admit(): Promise<number> {
    let admitted = 0;
    while (this.active.length < this.maxBatch && this.waiting.length > 0) {
      const { job, at } = this.waiting.shift()!;
      const cache = this.takeCache();
      const seq: Sequence = {
        job,
        cache,
        history: [...job.promptIds],
        sampler: new Sampler({ temperature: job.temperature, topP: job.topP, seed: job.seed }),
        decoder: new StreamDecoder(this.model.tokenizer, job.promptIds),
        stops: new StopMatcher(job.stop),
        generated: 0,
        limit: Math.min(job.maxTokens, cache.capacity - job.promptIds.length),
        submittedAt: at,
      };
      try {
        if (seq.limit < 1) throw new RangeError(`the prompt has ${job.promptIds.length} tokens; the context holds ${cache.capacity}`);
        seq.logits = await this.model.backend.read(this.model.prefill(job.promptIds, cache));
        await settleKv(cache);
      } catch (e) {
        this.releaseCache(cache);
        job.onError(e as Error);
        continue;
      }
      this.active.push(seq);
      admitted++;
    }
    return admitted;
  }

  /**
   * One token for every active sequence, then their next forward; returns the tokens emitted. Pipelined
   * (a step in flight, `inflight`): when the batch is unchanged since that step, the next one is recorded
   * and submitted on the device's picks before the host waits for them, so the GPU never idles while
   * the host emits tokens and records; a row whose sequence turns out to have stopped is ignored (its KV
   * entry lies past the sequence's end, and the slot's next user overwrites it before reading it).
   */
  private async tick(): Promise<number> {
    for (const s of [...this.active]) if (s.job.signal?.aborted) this.finish(s, "abort");
    const admitted = await this.admit();
    let ahead: Inflight | undefined;
    const flight = this.inflight;
    this.inflight = undefined;
    if (flight) {
      const live = flight.seqs.filter((s) => this.active.includes(s));
      // sequences that may go on after the token in flight (an EOS or a stop string is not known yet);
      // a sequence that joined this tick has its first token on the host, so it waits for the next step
      const next = live.filter((s) => s.generated + 1 < s.limit);
      if (admitted === 0 && live.length === this.active.length && next.length > 0 && this.pipelines(next)) {
        try {
          ahead = this.launch(next, { picked: flight.picked, rows: next.map((s) => flight.seqs.indexOf(s)) }, next.map((s) => s.history.length));
        } catch (e) {
          this.fail(live, e as Error);
          return 0;
        }
      }
      try {
        const ids = await flight.picked.ids;
        for (const s of live) s.picked = ids[flight.seqs.indexOf(s)];
      } catch (e) {
        this.fail(live, e as Error);
        return 0;
      }
    }
    let emitted = 0;
    const stepping: Sequence[] = [];
    for (const s of [...this.active]) {
      emitted++;
      if (this.step(s) && !ahead?.seqs.includes(s)) stepping.push(s);
    }
    this.inflight = ahead;
    if (stepping.length === 0) return emitted;
    try {
      await this.forward(stepping);
    } catch (e) {
      this.fail(stepping, e as Error);
    }
    return emitted;
  }

  private fail(seqs: readonly Sequence[], e: Error): void {
    for (const s of seqs) {
      if (!this.active.includes(s)) continue;
      this.remove(s);
      s.job.onError(e);
    }
  }

  /**
   * Whether these sequences' steps can run pipelined: batched over one KV pool, every token picked on the
   * device, and a backend that feeds picked tokens to the next step.
   */
  private pipelines(seqs: readonly Sequence[]): boolean {
    const b = this.model.backend;
    if (!b.pickRowsAhead || !b.embedPickedRows || !this.model.network.batches) return false;
    const pool = seqs[0]?.cache.slot?.pool;
    return pool !== undefined && seqs.every((s) => s.cache.slot?.pool === pool && this.picksOnDevice(s));
  }

  /** Records one batched step of `seqs` and the device's picks of their next tokens, and submits it. */
  private launch(seqs: Sequence[], tokens: Int32Array | PickedBatch, positions: number[]): Inflight {
    const logits = this.model.network.forwardBatch(tokens, positions, seqs.map((s) => s.cache));
    // each sequence's uniform is drawn in its own order, so seeded draws do not depend on the pipelining
    const picked = this.model.backend.pickRowsAhead!(logits, seqs.map((s) => this.devicePick(s)));
    return { seqs, picked };
  }

  private devicePick(s: Sequence): { params: SampleParams; uniform: number } | undefined {
    return s.sampler.greedy ? undefined : { params: s.sampler.deviceParams!, uniform: s.sampler.uniform() };
  }

  /** Samples and emits a sequence's next token; true when it goes on. */
  private step(s: Sequence): boolean {
    const logits = s.logits;
    const picked = s.picked;
    s.logits = undefined;
    s.picked = undefined;
    const logprob = s.job.topLogprobs !== undefined ? this.logprobs(logits!, s.job.topLogprobs) : undefined;
    const id = picked ?? s.sampler.sample(logits!, s.history);
    s.ttft ??= performance.now() - s.submittedAt;
    if (this.eos.has(id)) {
      this.finish(s, "stop");
      return false;
    }
    const prev = s.history[s.history.length - 1];
    s.generated++;
    s.history.push(id);
    const text = s.stops.push(s.decoder.push(id));
    if (logprob) {
      const chosen = logprob.top.find((t) => t.id === id);
      s.job.onPiece(text, {
        token: this.tokenText(id, prev),
        logprob: chosen?.logprob ?? logprob.of(id),
        top: logprob.top.slice(0, s.job.topLogprobs).map((t) => ({ token: this.tokenText(t.id, prev), logprob: t.logprob })),
      });
    } else if (text) s.job.onPiece(text);
    if (s.stops.stopped) {
      this.finish(s, "stop");
      return false;
    }
    if (s.generated >= s.limit) {
      this.finish(s, "length");
      return false;
    }
    return true;
  }

  /** A token's text as it reads after `prev` (SentencePiece drops a leading space of a text's first token). */
  private tokenText(id: number, prev: number | undefined): string {
    const t = this.model.tokenizer;
    if (prev === undefined) return t.decode([id], { keepSpecial: true });
    return t.decode([prev, id], { keepSpecial: true }).slice(t.decode([prev], { keepSpecial: true }).length);
  }

  /** log-softmax of the raw logits: the chosen token's and the `k` best. */
  private logprobs(logits: Float32Array, k: number) {
    let max = -Infinity;
    for (const v of logits) if (v > max) max = v;
    let sum = 0;
    for (const v of logits) sum += Math.exp(v - max);
    const logZ = max + Math.log(sum);
    const top: { id: number; logprob: number }[] = [];
    if (k > 0) {
      // partial selection: k is small, the vocabulary is not
      for (let i = 0; i < logits.length; i++) {
        const v = logits[i]!;
        if (top.length < k || v > top[top.length - 1]!.logprob) {
          top.push({ id: i, logprob: v });
          top.sort((a, b) => b.logprob - a.logprob || a.id - b.id);
          if (top.length > k) top.pop();
        }
      }
      for (const t of top) t.logprob -= logZ;
    }
    const copy = Float32Array.from(logits);
    return { top, of: (id: number) => copy[id]! - logZ };
  }

  private async forward(seqs: Sequence[]): Promise<void> {
    const b = this.model.backend;
    const net = this.model.network;
    const pipelined = this.pipelines(seqs);
    if (pipelined) {
      // the ids are awaited by the next tick, after it has recorded the step after this one
      this.inflight = this.launch(seqs, Int32Array.from(seqs, (s) => s.history[s.history.length - 1]!), seqs.map((s) => s.history.length - 1));
      return;
    }
    if (net.batches && seqs.length > 1) {
      const tokens = Int32Array.from(seqs, (s) => s.history[s.history.length - 1]!);
      const positions = seqs.map((s) => s.history.length - 1);
      const logits: Tensor = net.forwardBatch(tokens, positions, seqs.map((s) => s.cache));
      if (b.pickRows && seqs.every((s) => this.picksOnDevice(s))) {
        // every row's token in one read (one submission a step), each with its sequence's own seeded draw
        const ids = await b.pickRows(logits, seqs.map((s) => this.devicePick(s)));
        seqs.forEach((s, r) => (s.picked = ids[r]));
        return;
      }
      const rowsAligned = (logits.cols * 4) % (b.rowViewAlign ?? 1) === 0;
      if (rowsAligned && seqs.every((s) => this.picksOnDevice(s))) {
        // only the token ids come back: the host neither reads vocab-wide rows nor samples them
        const ids = await Promise.all(seqs.map((s, r) => this.pickOnDevice(s, b.rowView!(logits, r, 1))));
        seqs.forEach((s, r) => (s.picked = ids[r]));
        return;
      }
      const all = await b.read(logits);
      const vocab = logits.cols;
      seqs.forEach((s, r) => (s.logits = all.slice(r * vocab, (r + 1) * vocab)));
      return;
    }
    for (const s of seqs) {
      const id = s.history[s.history.length - 1]!;
      const logits = net.forward(Int32Array.of(id), s.history.length - 1, s.cache);
      if (this.picksOnDevice(s)) s.picked = await this.pickOnDevice(s, logits);
      else s.logits = await b.read(logits);
    }
  }

  /**
   * Whether a sequence's next token can be chosen where the logits are: the backend picks tokens (the
   * GPU does) and the request needs no logprobs and no repetition penalty (both need the whole row).
   */
  private picksOnDevice(s: Sequence): boolean {
    const b = this.model.backend;
    if (s.job.topLogprobs !== undefined || !b.argmax || !b.sample) return false;
    return s.sampler.greedy || s.sampler.deviceParams !== undefined;
  }

  /** The next token from one row of logits, picked on the device with the sequence's own seeded draws. */
  private pickOnDevice(s: Sequence, row: Tensor): Promise<number> {
    const b = this.model.backend;
    if (s.sampler.greedy) return b.argmax!(row);
    return b.sample!(row, s.sampler.deviceParams!, s.sampler.uniform());
  }

  private remove(s: Sequence): void {
    const i = this.active.indexOf(s);
    if (i >= 0) this.active.splice(i, 1);
    this.releaseCache(s.cache);
  }

  private finish(s: Sequence, reason: JobResult["finishReason"], removeFromActive = true): void {
    if (removeFromActive) this.remove(s);
    else this.releaseCache(s.cache);
    if (reason !== "abort" && !s.stops.stopped) {
      const rest = s.stops.push(s.decoder.flush()) + s.stops.flush();
      if (rest) s.job.onPiece(rest);
    }
    s.job.onDone({ finishReason: reason, promptTokens: s.job.promptIds.length, completionTokens: s.generated, timeToFirstTokenMs: s.ttft });
  }
}
