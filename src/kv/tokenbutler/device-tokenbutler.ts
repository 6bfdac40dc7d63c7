/**
 * TokenButler on a backend that keeps tensors on the device (WebGPU): the predictor runs on the device
 * (device-predictor.ts) at layer 0 of every step, and each decode step of a layer >= 1 ranks positions by
 * its logits and takes the shared radix top-K (`selectOps.topK`) — the CPU policy's rules exactly
 * (tokenbutler-store.ts: K_i = keepBudget of the ABSOLUTE number of visible positions, plus the 4 sinks,
 * ties to the lower position, layer 0 and prefill dense), all recorded into the step's one submission.
 * The window variant pins its anchors and window by giving them the largest f32 key in the scores kernel,
 * so the same top-K_i takes them all first and then the rest by predicted logit (the CPU's set exactly).
 * device-select-store.ts does the rest (cache, dense fallback, list attention).
 */
import type { DeviceSelectOps, KVCache, SelectState } from "../../backend/backend.js";
import type { KvContext, KvStep, KvStore } from "../store.js";
import { DeviceSelectStore, type DevicePolicy } from "../device-select-store.js";
import { SINKS, keepBudget, pinnedSplit } from "../selection.js";
import { DevicePredictor } from "./device-predictor.js";
import type { PredictorWeights } from "./predictor.js";

class DeviceButler implements DevicePolicy {
  constructor(private readonly keep: number, private readonly predictor: DevicePredictor, private readonly window: number, private readonly anchors: number) {}
  reset(): void {}
  select(s: KvStep, _cache: KVCache, ops: DeviceSelectOps, state: SelectState): number {
    const n = s.pos0 + 1;
    const k = keepBudget(n, this.keep);
    if (k >= n) return 0;
    const pin = this.window > 0 ? pinnedSplit(k, this.anchors, this.window) : { anchors: 0, window: 0 };
    this.predictor.scores(state, s.layer, n, pin.anchors, n - pin.window);
    ops.topK(state, s.layer, n, k, SINKS);
    return Math.min(n, k + SINKS);
  }
}

export class DeviceTokenButlerStore implements KvStore {
  readonly batchable = false;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  readonly predictor: DevicePredictor;
  readonly inner: DeviceSelectStore;

  constructor(ctx: KvContext, readonly spec: string, weights: PredictorWeights, keep: number, window = 0, anchors = SINKS) {
    const c = weights.config, ops = ctx.backend.selectOps?.predictor;
    if (!ops) throw new Error(`--kv ${spec}: the ${ctx.backend.kind} backend has neither host views nor device predictor ops`);
    if (c.layers !== ctx.layers || c.heads !== ctx.heads) {
      throw new Error(`--kv ${spec}: the predictor was trained for ${c.layers} layers x ${c.heads} heads, this model has ${ctx.layers} x ${ctx.heads} (train one with training/tokenbutler/train_tokenbutler.py)`);
    }
    this.inner = new DeviceSelectStore(ctx, spec, new DeviceButler(keep, (this.predictor = new DevicePredictor(ctx.backend, ops, weights, ctx.capacity)), window, anchors));
    this.layers = ctx.layers;
    this.kvHeads = ctx.kvHeads;
    this.headDim = ctx.headDim;
    this.capacity = ctx.capacity;
  }

  get length(): number {
    return this.inner.length;
  }

  get backendCache(): KVCache {
    return this.inner.backendCache;
  }

  get state(): SelectState {
    return this.inner.state;
  }

  get usage(): DeviceSelectStore["usage"] {
    return this.inner.usage;
  }

  step(s: KvStep): void {
    if (s.layer === 0) this.predictor.append(s.pos0, s.rows, s.h);
    this.inner.step(s);
  }

  /** The full f32 cache plus the predictor's caches, as the CPU store counts them. */
  bytes(): number {
    return this.inner.bytes() + this.predictor.bytes();
  }
}
