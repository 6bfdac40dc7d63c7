/**
 * A selection method on a backend that keeps tensors on the device (WebGPU): the policy's ranking, the
 * per-head top-K and the attention over the chosen positions are all recorded on the device
 * (`backend.selectOps`, src/backend/webgpu/select-ops.ts), so a decode step stays one submission with no
 * readback. The CPU runs the same rules through HostStore (host-store.ts); test/kv/gpu-select.test.ts
 * checks that the two choose the same positions and give the same logits.
 *
 * Like HostStore: prefill rows, layer 0 and steps where the budget covers every position run the
 * backend's dense attention (keep = 1 is bit-identical to dense; the first generated token is dense's).
 * Nothing is compacted: the whole f32 cache stays resident and bytes() counts it.
 */
import type { DeviceSelectOps, KVCache, SelectState } from "../backend/backend.js";
import type { KvContext, KvStep, KvStore } from "./store.js";

/** A selection rule as device work; one instance per sequence. */
export interface DevicePolicy {
  /** A new sequence starts (position 0 is being written). */
  reset(ops: DeviceSelectOps, state: SelectState): void;
  /** After the dense attention of prefill rows (a multi-row step) of s.layer. */
  prefill?(s: KvStep, cache: KVCache, ops: DeviceSelectOps, state: SelectState): void;
  /** After a selected decode attention of s.layer. */
  observe?(s: KvStep, cache: KVCache, ops: DeviceSelectOps, state: SelectState): void;
  /**
   * Records the lists of layer s.layer (>= 1) for the decode query at s.pos0 into `state` and returns the
   * most positions a head may attend to, or 0 when every head attends to every position (dense path).
   */
  select(s: KvStep, cache: KVCache, ops: DeviceSelectOps, state: SelectState): number;
}

export class DeviceSelectStore implements KvStore {
  readonly batchable = false;
  readonly backendCache: KVCache;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  readonly state: SelectState;
  private readonly ops: DeviceSelectOps;
  private written = 0;
  /** Decode steps of layers >= 1 whose attention used lists (the rest ran dense). */
  readonly usage = { selectedSteps: 0 };

  constructor(private readonly ctx: KvContext, readonly spec: string, readonly policy: DevicePolicy) {
    const b = ctx.backend;
    if (!b.selectOps) throw new Error(`--kv ${spec}: the ${b.kind} backend has neither host views nor device selection`);
    if (ctx.format !== "f32") throw new Error(`--kv ${spec} --kv-format ${ctx.format}: selection on the ${b.kind} backend reads an f32 cache (only dense and streaming run int8 there)`);
    this.ops = b.selectOps;
    this.backendCache = b.kvCache(ctx.layers, ctx.kvHeads, ctx.headDim, ctx.capacity);
    this.state = this.ops.state(ctx.layers, ctx.heads, ctx.capacity, ctx.headDim);
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
    if (s.pos0 === 0 && s.layer === 0) this.policy.reset(this.ops, this.state);
    if (s.pos0 !== this.written && s.layer === 0) throw new Error(`--kv ${this.spec}: write at position ${s.pos0} but ${this.written} are cached (positions must follow on)`);
    s.rope(s.k);
    b.kvWrite(this.backendCache, s.layer, s.k, s.v, s.pos0);
    const most = s.rows === 1 && s.layer > 0 ? this.policy.select(s, this.backendCache, this.ops, this.state) : 0;
    if (most > 0) {
      this.ops.attend(s.att, s.q, this.backendCache, s.layer, this.state, s.heads, most);
      this.policy.observe?.(s, this.backendCache, this.ops, this.state);
      this.usage.selectedSteps++;
    } else {
      b.attention(s.att, s.q, this.backendCache, s.layer, s.pos0, s.heads);
    }
    if (s.rows > 1) this.policy.prefill?.(s, this.backendCache, this.ops, this.state);
    if (s.layer === this.layers - 1) this.written = s.pos0 + s.rows;
  }

  /** The whole f32 cache: positions are chosen per step, never compacted away on the device. */
  bytes(): number {
    return this.written * this.layers * 2 * this.kvHeads * this.headDim * 4;
  }
}
