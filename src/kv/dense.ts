/**
 * The dense cache through the KV interface: exactly the backend's rope, kvWrite and attention ops in the
 * order forward used to call them, so it is bit-identical to the pre-interface path on every backend.
 */
import type { KVCache } from "../backend/backend.js";
import type { KvContext, KvMethod, KvStep, KvStore } from "./store.js";
import { createHostStore } from "./host-store.js";
import { kvFormat } from "./format.js";

export class DenseStore implements KvStore {
  readonly batchable = true;
  readonly backendCache: KVCache;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  private written = 0;

  /** Bytes of one (position, kv head) row of K or V in the cache's format. */
  private readonly headBytes: number;

  constructor(private readonly ctx: KvContext, readonly spec = "dense") {
    this.backendCache = ctx.format === "f32"
      ? ctx.backend.kvCache(ctx.layers, ctx.kvHeads, ctx.headDim, ctx.capacity)
      : ctx.backend.kvCache(ctx.layers, ctx.kvHeads, ctx.headDim, ctx.capacity, ctx.format);
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
    s.rope(s.k);
    b.kvWrite(this.backendCache, s.layer, s.k, s.v, s.pos0);
    b.attention(s.att, s.q, this.backendCache, s.layer, s.pos0, s.heads);
    if (s.layer === this.layers - 1) this.written = s.pos0 + s.rows;
  }

  /** Resident bytes: the positions written so far, keys and values in the cache's format. */
  bytes(): number {
    return this.written * this.layers * 2 * this.kvHeads * this.headBytes;
  }
}

export const denseMethod: KvMethod = {
  name: "dense",
  summary: "the full cache (with --kv-format other than f32: quantized, every position kept)",
  params: [],
  // a quantized format the backend stores natively (WebGPU int8) stays on the backend; the rest run on the host
  create: (_params, spec) => (ctx) =>
    ctx.format === "f32" || ctx.backend.kvFormats?.includes(ctx.format) ? new DenseStore(ctx, spec) : createHostStore(ctx, spec, undefined),
};
