/**
 * xKV and per-layer SVD on a backend that keeps tensors on the device (WebGPU), the twin of XkvStore
 * (xkv-store.ts, the CPU's): the same prompt, the same factorization (compressPrompt, on the host), the same
 * decode arithmetic (kernels/xkv-attention.ts mirrors xkv-attention.ts), test/kv/gpu-xkv.test.ts checks
 * that the two agree.
 *
 * - Prefill (multi-row steps, and every step before `settle`) writes and attends over an exact f32 cache
 *   with the backend's own kvWrite/attention, so the first generated token is dense's; pre-RoPE keys are
 *   copied aside as they come.
 * - `settle()` (awaited by drivers after the prefill: Model.generate, the server, eval ppl) reads the prompt's
 *   pre-RoPE keys and values back ONCE, factorizes them on the host in f64 (svd.ts, the CPU store's code),
 *   uploads A per group and B per layer, and frees the exact cache and the staging: from then on the
 *   prompt lives only as factors on the GPU. Every position written so far is the prompt (the CPU store's
 *   rule "everything before the first decode step", with the step made explicit because reading back is
 *   asynchronous while `forward` records synchronously).
 * - Decode steps append exact post-RoPE rows to a recent cache and run xKV attention over
 *   [factors ∪ recent rows]: two dispatches, inside the step's one submission, no readback.
 */
import type { DeviceXkvOps, KVCache, XkvDeviceState } from "../../backend/backend.js";
import type { KvContext, KvStep, KvStore } from "../store.js";
import { compressPrompt, promptBytes, type XkvPrompt, type XkvRanks } from "./xkv-factors.js";

export class XkvDeviceStore implements KvStore {
  readonly batchable = false;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  private readonly ops: DeviceXkvOps;
  private readonly state: XkvDeviceState;
  private exact?: KVCache;
  private recent?: KVCache;
  private prompt?: XkvPrompt;
  private written = 0;
  /** Milliseconds the last compression took: readback, SVDs and upload (`svdMs`: the host factorization alone). */
  compressMs = 0;
  svdMs = 0;

  constructor(private readonly ctx: KvContext, readonly spec: string, private readonly ranks: XkvRanks) {
    const b = ctx.backend;
    if (!b.xkvOps) throw new Error(`--kv ${spec}: the ${b.kind} backend has neither host views nor device xKV`);
    if (ctx.format !== "f32") throw new Error(`--kv ${spec} --kv-format ${ctx.format}: xKV on the ${b.kind} backend stores f32 factors and rows`);
    this.ops = b.xkvOps;
    this.state = this.ops.state(ctx.layers, ctx.kvHeads, ctx.headDim, ctx.capacity, ctx.rope);
    this.layers = ctx.layers;
    this.kvHeads = ctx.kvHeads;
    this.headDim = ctx.headDim;
    this.capacity = ctx.capacity;
  }

  get length(): number {
    return this.written;
  }

  /** The compressed prompt (after `settle`), for tests and tools. */
  get compressed(): XkvPrompt | undefined {
    return this.prompt;
  }

  step(s: KvStep): void {
    const b = this.ctx.backend;
    if (s.pos0 === 0 && s.layer === 0) {
      this.prompt = undefined;
      this.recent = undefined;
      this.written = 0;
      this.exact = this.ops.begin(this.state);
    }
    if (s.layer === 0 && s.pos0 !== this.written) throw new Error(`--kv ${this.spec}: write at position ${s.pos0} but ${this.written} are cached (positions must follow on)`);
    if (s.pos0 + s.rows > this.capacity) throw new Error(`KV cache full: ${s.pos0 + s.rows} positions > capacity ${this.capacity}`);
    if (!this.prompt) {
      if (s.rows === 1 && s.pos0 > 0) {
        throw new Error(`--kv ${this.spec} on ${b.kind}: a decode step before the prompt was compressed; await settleKv(cache) (src/kv/store.ts) after the prefill, as Model.generate does`);
      }
      this.ops.stashKeys(this.state, s.layer, s.k, s.pos0);
      s.rope(s.k);
      b.kvWrite(this.exact!, s.layer, s.k, s.v, s.pos0);
      b.attention(s.att, s.q, this.exact!, s.layer, s.pos0, s.heads);
    } else {
      s.rope(s.k);
      b.kvWrite(this.recent!, s.layer, s.k, s.v, s.pos0 - this.prompt.tokens);
      this.ops.attend(s.att, s.q, this.state, s.layer, s.pos0, s.heads);
    }
    if (s.layer === this.layers - 1) this.written = s.pos0 + s.rows;
  }

  /**
   * Compresses every position written so far (the prompt): one readback, the host SVDs, one upload; the
   * exact cache is freed. A no-op when nothing is written or the prompt is already compressed.
   */
  async settle(): Promise<void> {
    if (this.prompt || this.written === 0) return;
    const t0 = performance.now();
    const T = this.written;
    const { kPre, v } = await this.ops.readPrompt(this.state, T);
    const t1 = performance.now();
    const prompt = compressPrompt({ layers: this.layers, kvHeads: this.kvHeads, headDim: this.headDim }, this.ranks, T, kPre, v);
    this.svdMs = performance.now() - t1;
    this.recent = this.ops.load(this.state, prompt);
    this.prompt = prompt;
    this.exact = undefined;
    this.compressMs = performance.now() - t0;
  }

  /**
   * Resident K/V bytes, counted as the CPU store counts them: the exact rows before compression, then the
   * factors (the authors' formula, B included) and the rows written after the prompt.
   */
  bytes(): number {
    const rowBytes = 2 * this.kvHeads * this.headDim * 4 * this.layers;
    if (!this.prompt) return this.written * rowBytes;
    return promptBytes(this.prompt, this) + (this.written - this.prompt.tokens) * rowBytes;
  }

  /** Bytes of the device buffers held now (capacity-sized caches included), for checks of the real saving. */
  deviceBytes(): number {
    return this.ops.residentBytes(this.state);
  }

  /** Frees the store's device buffers (a later prefill makes them again). */
  release(): void {
    this.ops.release(this.state);
    this.prompt = undefined;
    this.exact = undefined;
    this.recent = undefined;
    this.written = 0;
  }
}
