/**
 * TokenButler as a KV method (spec tokenbutler.md §3.2–3.4): the full cache stays resident (nothing is
 * evicted); at every decode step of every layer >= 1, each query head attends to the top-K_i positions by
 * the predictor's logits plus the 4 sinks, K_i from the ABSOLUTE number of visible positions n = pos + 1
 * (not the reference's chunk-relative budget). Prefill is dense (the spec's "densely" option), which makes
 * the first generated token dense's. The store is kv-core's host store with a selection policy, plus the
 * predictor fed with layer 0's normalised hidden states.
 *
 * `window=F` (F > 0) is the LABELED local-window variant (spec §2.3: the published "-Butler" checkpoints use a
 * sliding window and anchor tokens; §3.6 v2: sinks + local window + top-K): the first `anchors` positions and
 * the floor(F·K_i) most recent ones are pinned INSIDE the budget, the predictor ranks the rest, K_i in all
 * (selection.ts `pinnedSplit`). F = 0.5 gives the window H2O's share of the budget. window=0 is v1 unchanged.
 */
import type { KvContext, KvMethod, KvStep, KvStore } from "../store.js";
import { createHostStore, type HostStore, type SelectionPolicy } from "../host-store.js";
import type { LayerKv } from "../host-attention.js";
import { type KvSelection, SINKS, keepBudget, pinnedSplit, selectPinnedTopK, selectTopK } from "../selection.js";
import { PredictorState, readPredictor, type PredictorWeights } from "./predictor.js";
import { DeviceTokenButlerStore } from "./device-tokenbutler.js";

/** The predictor trained for models/frugal-ar-base (training/tokenbutler); FRUGAL_TOKENBUTLER overrides it. */
export const DEFAULT_PREDICTOR = decodeURIComponent(new URL("../../../../models/frugal-ar-base/tokenbutler/tokenbutler.safetensors", import.meta.url).pathname);

/** The CPU selection rule (exported for the WebGPU identity tests, test/kv/gpu-tokenbutler.test.ts). */
export class ButlerPolicy implements SelectionPolicy {
  readonly wantsProbs = false;
  readonly evicts = false;
  private readonly score: Float64Array;
  private readonly order: Int32Array;
  /** window: the share of K_i pinned to the most recent positions (0: v1's rule, sinks on top of K_i). */
  constructor(private readonly keep: number, readonly predictor: PredictorState, private readonly window = 0, private readonly anchors = SINKS) {
    this.score = new Float64Array(predictor.capacity);
    this.order = new Int32Array(predictor.capacity);
  }
  reset(): void {}
  select(layer: number, pos: number, _q: Float32Array, _kv: LayerKv, sel: KvSelection): boolean {
    const n = pos + 1;
    const k = keepBudget(n, this.keep);
    if (k >= n) return false;
    const pin = pinnedSplit(k, this.anchors, this.window);
    for (let h = 0; h < sel.heads; h++) {
      this.predictor.scores(layer, h, pos, this.score);
      if (this.window > 0) selectPinnedTopK(sel, h, this.score, n, k, pin.anchors, pin.window, this.order);
      else selectTopK(sel, h, this.score, n, k, this.order);
    }
    return true;
  }
}

export class TokenButlerStore implements KvStore {
  readonly batchable = false;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  readonly predictor: PredictorState;
  private readonly inner: HostStore;

  constructor(private readonly ctx: KvContext, readonly spec: string, weights: PredictorWeights, keep: number, window = 0, anchors = SINKS) {
    const c = weights.config;
    if (c.layers !== ctx.layers || c.heads !== ctx.heads) {
      throw new Error(`--kv ${spec}: the predictor was trained for ${c.layers} layers x ${c.heads} heads, this model has ${ctx.layers} x ${ctx.heads} (train one with training/tokenbutler/train_tokenbutler.py)`);
    }
    this.layers = ctx.layers;
    this.kvHeads = ctx.kvHeads;
    this.headDim = ctx.headDim;
    this.capacity = ctx.capacity;
    this.predictor = new PredictorState(weights, ctx.capacity);
    this.inner = createHostStore(ctx, spec, new ButlerPolicy(keep, this.predictor, window, anchors));
  }

  get length(): number {
    return this.inner.length;
  }

  get usage(): HostStore["usage"] {
    return this.inner.usage;
  }

  step(s: KvStep): void {
    if (s.layer === 0) {
      const b = this.ctx.backend;
      if (!b.hostView) throw new Error(`--kv ${this.spec}: computes on the host; the ${b.kind} backend keeps tensors on the device (use the CPU backend)`);
      if (s.h.cols !== this.predictor.w.config.hidden) throw new Error(`--kv ${this.spec}: the predictor expects hidden size ${this.predictor.w.config.hidden}, the model has ${s.h.cols}`);
      if (s.pos0 === 0) this.predictor.reset();
      this.predictor.append(s.pos0, s.rows, b.hostView(s.h));
    }
    this.inner.step(s);
  }

  /** The full K/V cache (nothing is evicted) plus the predictor's caches (the importance keys dominate). */
  bytes(): number {
    return this.inner.bytes() + this.predictor.bytes();
  }
}

let cached: { path: string; weights: PredictorWeights } | undefined;
function predictorWeights(): PredictorWeights {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const path = env?.FRUGAL_TOKENBUTLER ?? DEFAULT_PREDICTOR;
  if (cached?.path !== path) cached = { path, weights: readPredictor(path) };
  return cached.weights;
}

export const tokenbutlerMethod: KvMethod = {
  name: "tokenbutler",
  summary: "learned per-head token selection at every decode step (predictor on layer 0's hidden state; full cache resident)",
  params: [
    { name: "keep", summary: "fraction of visible positions each head attends to, (0, 1]", kind: "fraction" },
    { name: "window", summary: "labeled local-window variant: share of K_i given to the most recent positions, [0, 1] (0: the spec's v1 rule)", kind: "share", default: 0 },
    { name: "anchors", summary: "with window > 0: first positions always kept, inside K_i (>= the 4 sinks)", kind: "int", default: SINKS, min: SINKS },
  ],
  create: (p, spec) => {
    if (p.window === 0 && p.anchors !== SINKS) throw new Error(`--kv ${spec}: anchors=${p.anchors} needs window > 0 (window=0 is the spec's v1 rule: the 4 sinks on top of K_i)`);
    const weights = predictorWeights();
    // a backend without host views (WebGPU) runs the predictor and the selection on the device
    return (ctx) => (!ctx.backend.hostView && ctx.backend.selectOps?.predictor
      ? new DeviceTokenButlerStore(ctx, spec, weights, p.keep!, p.window!, p.anchors!)
      : new TokenButlerStore(ctx, spec, weights, p.keep!, p.window!, p.anchors!));
  },
};
