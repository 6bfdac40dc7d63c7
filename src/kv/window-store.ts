/**
 * StreamingLLM on a backend that keeps tensors on the device (WebGPU): the selection depends only on the
 * position, so decode steps run the backend's `attentionWindow` over the sinks and the recent window of
 * its own cache; no host data is needed. The CPU runs the same rule through HostStore (host-store.ts);
 * test/kv/gpu-int8.test.ts checks that the two agree.
 */
import type { KVCache } from "../backend/backend.js";
import type { KvContext, KvStep, KvStore } from "./store.js";
import { kvFormat } from "./format.js";
import { keepBudget } from "./selection.js";

/** Recent positions StreamingLLM keeps at n visible positions (at least the current one). */
export function streamingRecent(n: number, keep: number, sinks: number, window: number): number {
  return Math.max(1, keep > 0 ? keepBudget(n, keep) - sinks : window);
}

export class WindowStore implements KvStore {
  readonly batchable = false;
  readonly backendCache: KVCache;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  private written = 0;
  private kept = -1;
  private readonly headBytes: number;

  /** `firstLayer`: the first layer that attends to the window only (1: layer 0 attends to every position). */
  constructor(private readonly ctx: KvContext, readonly spec: string, private readonly keep: number, private readonly sinks: number, private readonly window: number, private readonly firstLayer = 1) {
    const b = ctx.backend;
    if (!b.attentionWindow) throw new Error(`--kv ${spec}: the ${b.kind} backend has neither host views nor windowed attention`);
    if (ctx.format !== "f32" && !b.kvFormats?.includes(ctx.format)) throw new Error(`--kv ${spec} --kv-format ${ctx.format}: the ${b.kind} backend stores KV only as f32${b.kvFormats?.length ? ` or ${b.kvFormats.join(", ")}` : ""}`);
    this.backendCache = ctx.format === "f32" ? b.kvCache(ctx.layers, ctx.kvHeads, ctx.headDim, ctx.capacity) : b.kvCache(ctx.layers, ctx.kvHeads, ctx.headDim, ctx.capacity, ctx.format);
    this.headBytes = ctx.format === "f32" ? ctx.headDim * 4 : kvFormat(ctx.format).headBytes(ctx.headDim);
    this.layers = ctx.layers;
    this.kvHeads = ctx.kvHeads;
    this.headDim = ctx.headDim;
    this.capacity = ctx.capacity;
  }

  get length(): number {
    return this.written;
  }

  step(s: KvStep): void {
    const b = this.ctx.backend;
    if (s.pos0 === 0 && s.layer === 0) this.kept = -1;
    s.rope(s.k);
    b.kvWrite(this.backendCache, s.layer, s.k, s.v, s.pos0);
    const n = s.pos0 + 1;
    const recent = streamingRecent(n, this.keep, this.sinks, this.window);
    if (s.rows === 1 && s.layer >= this.firstLayer && this.sinks + recent < n) {
      b.attentionWindow!(s.att, s.q, this.backendCache, s.layer, s.pos0, s.heads, this.sinks, recent);
      this.kept = this.sinks + recent;
    } else {
      b.attention(s.att, s.q, this.backendCache, s.layer, s.pos0, s.heads);
    }
    if (s.layer === this.layers - 1) this.written = s.pos0 + s.rows;
  }

  /** Resident bytes: layer 0 (unless windowed too) and a not-yet-windowed cache whole, else the sinks and the window. */
  bytes(): number {
    const windowed = this.layers - this.firstLayer;
    const rows = this.kept >= 0 ? (this.layers - windowed) * this.written + windowed * this.kept : this.layers * this.written;
    return rows * this.kvHeads * 2 * this.headBytes;
  }
}
