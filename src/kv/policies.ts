/**
 * The non-learned selection baselines (TokenButler spec §5, same budget rule K_i for all, 4 sinks always
 * kept, layer 0 dense, per query head): oracle, H2O (original: accumulated attention plus a recent window),
 * SnapKV (original: one-shot scoring at the end of prefill), Quest (page min/max bounds) and StreamingLLM.
 * Every policy falls back to the dense path at a step where K_i covers every visible position, which makes
 * keep = 1 bit-identical to dense.
 */
import type { KvContext, KvMethod, KvParam } from "./store.js";
import { createHostStore, type SelectionPolicy } from "./host-store.js";
import { headScores, type LayerKv } from "./host-attention.js";
import { WindowStore, streamingRecent } from "./window-store.js";
import { KvSelection, RECENT, SINKS, keepBudget, markScratch, selectTopK, writeMarked } from "./selection.js";
import { DeviceSelectStore, type DevicePolicy } from "./device-select-store.js";
import { DeviceH2o, DeviceOracle, DeviceQuest, DeviceSnapKv } from "./device-policies.js";


const KEEP: KvParam = { name: "keep", summary: "fraction of visible positions each head attends to, (0, 1]", kind: "fraction" };

/**
 * A selection method: the host policy on a backend with host views (CPU), else the device policy when the
 * method has one (WebGPU, device-select-store.ts); HostStore's clear error otherwise.
 */
function selectionMethod(
  name: string, summary: string, params: readonly KvParam[], policy: (p: Readonly<Record<string, number>>, ctx: KvContext) => SelectionPolicy,
  device?: (p: Readonly<Record<string, number>>, ctx: KvContext) => DevicePolicy,
): KvMethod {
  return {
    name,
    summary,
    params,
    create: (p, spec) => (ctx) =>
      !ctx.backend.hostView && ctx.backend.selectOps && device ? new DeviceSelectStore(ctx, spec, device(p, ctx)) : createHostStore(ctx, spec, policy(p, ctx)),
  };
}

/** Top-K_i by the true attention scores of the head's query (the upper bound every predictor chases). */
export class OraclePolicy implements SelectionPolicy {
  readonly wantsProbs = false;
  readonly evicts = false;
  private score: Float64Array;
  private order: Int32Array;
  constructor(private readonly keep: number, private readonly ctx: KvContext) {
    this.score = new Float64Array(ctx.capacity);
    this.order = new Int32Array(ctx.capacity);
  }
  reset(): void {}
  select(_layer: number, pos: number, q: Float32Array, kv: LayerKv, sel: KvSelection): boolean {
    const n = pos + 1;
    const k = keepBudget(n, this.keep);
    if (k >= n) return false;
    for (let h = 0; h < sel.heads; h++) {
      headScores(q, 0, kv, sel.heads, h, n, this.score);
      selectTopK(sel, h, this.score, n, k, this.order);
    }
    return true;
  }
}

/** The 4 sinks plus the most recent K_i − 4 positions. */
class StreamingPolicy implements SelectionPolicy {
  readonly wantsProbs = false;
  readonly evicts = true;
  /** Per layer: the keep share (keep, or its pyramid tilt). */
  private readonly keeps: number[];
  constructor(private readonly keep: number, private readonly sinks: number, private readonly window: number, readonly firstLayer: number, layers: number, pyramid: number) {
    this.keeps = streamingKeeps(keep, layers, firstLayer, pyramid);
  }
  reset(): void {}
  select(layer: number, pos: number, _q: Float32Array, _kv: LayerKv, sel: KvSelection): boolean {
    const n = pos + 1;
    // keep > 0: the budget rule; else the fixed sink + window of the spec's parameters
    const recent = streamingRecent(n, this.keeps[layer]!, this.sinks, this.window);
    if (this.sinks + recent >= n) return false;
    const mark = markScratch(n);
    for (let t = 0; t < Math.min(this.sinks, n); t++) mark[t] = 1;
    for (let t = n - recent; t < n; t++) mark[t] = 1;
    for (let h = 0; h < sel.heads; h++) writeMarked(sel, h, mark, n);
    return true;
  }
}

/**
 * Per layer, the keep share of StreamingLLM's `pyramid=s` (PyramidKV's allocation, linear; s < 0 inverts it): the
 * windowed layers first .. layers − 1 get keep·(1 + s) to keep·(1 − s) in equal steps, whose mean is keep, so the budget
 * summed over layers is the uniform one (up to each layer's rounding up, and a share capped at 1).
 */
export function streamingKeeps(keep: number, layers: number, firstLayer: number, pyramid: number): number[] {
  const m = layers - firstLayer;
  return Array.from({ length: layers }, (_, l) => {
    if (l < firstLayer || m <= 1 || pyramid === 0) return keep;
    return Math.min(1, keep * (1 + pyramid * (1 - (2 * (l - firstLayer)) / (m - 1))));
  });
}

/**
 * H2O: per (layer, query head) an active set; every new position joins it; while it holds more than K_i
 * (sinks aside), the position with the lowest accumulated attention probability outside the recent window
 * of floor(K_i / 2) positions is evicted for good. Prefill queries' probabilities seed the accumulators.
 */
export class H2oPolicy implements SelectionPolicy {
  readonly wantsProbs = true;
  readonly evicts = true;
  /** [layer][head][position] */
  private readonly acc: Float64Array;
  private readonly active: Uint8Array;
  private readonly row: Float64Array;
  private readonly cap: number;
  constructor(private readonly keep: number, private readonly ctx: KvContext) {
    this.cap = ctx.capacity;
    this.acc = new Float64Array(ctx.layers * ctx.heads * ctx.capacity);
    this.active = new Uint8Array(ctx.layers * ctx.heads * ctx.capacity);
    this.row = new Float64Array(ctx.capacity);
  }
  reset(): void {
    this.acc.fill(0);
    this.active.fill(0);
  }
  prefill(layer: number, pos0: number, rows: number, q: Float32Array, kv: LayerKv): void {
    if (layer === 0) return;
    const H = this.ctx.heads;
    const cols = H * this.ctx.headDim;
    for (let r = 0; r < rows; r++) {
      const n = pos0 + r + 1;
      for (let h = 0; h < H; h++) {
        headScores(q, r * cols, kv, H, h, n, this.row);
        softmaxInPlace(this.row, n);
        const base = (layer * H + h) * this.cap;
        for (let t = 0; t < n; t++) this.acc[base + t] += this.row[t]!;
        this.active[base + n - 1] = 1;
      }
    }
  }
  select(layer: number, pos: number, _q: Float32Array, _kv: LayerKv, sel: KvSelection): boolean {
    if (this.keep >= 1) return false;
    const n = pos + 1;
    const k = keepBudget(n, this.keep);
    const recent = Math.floor(k / 2);
    const H = this.ctx.heads;
    for (let h = 0; h < H; h++) {
      const base = (layer * H + h) * this.cap;
      this.active[base + pos] = 1;
      const candidates: number[] = [];
      let count = 0;
      for (let t = SINKS; t < n; t++) {
        if (!this.active[base + t]) continue;
        count++;
        if (t < n - recent) candidates.push(t);
      }
      if (count > k) {
        candidates.sort((a, b) => this.acc[base + a]! - this.acc[base + b]! || a - b);
        for (let j = 0; j < count - k && j < candidates.length; j++) this.active[base + candidates[j]!] = 0;
      }
      const mark = markScratch(n);
      for (let t = 0; t < n; t++) mark[t] = t < SINKS || this.active[base + t]! ? 1 : 0;
      writeMarked(sel, h, mark, n);
    }
    return true;
  }
  observe(layer: number, _pos: number, sel: KvSelection, probs: Float32Array): void {
    const H = this.ctx.heads;
    for (let h = 0; h < H; h++) {
      const base = (layer * H + h) * this.cap;
      const lo = h * sel.stride;
      for (let j = 0; j < sel.counts[h]!; j++) this.acc[base + sel.positions[lo + j]!] += probs[lo + j]!;
    }
  }
}

/**
 * SnapKV: at the end of prefill, each prompt position's score is the attention it gets from the last
 * `window` prompt queries, max-pooled over `pool` neighbouring positions; decode keeps the window and all
 * generated positions first (most recent first), then the best-scored prompt positions, K_i in all.
 */
export class SnapKvPolicy implements SelectionPolicy {
  readonly wantsProbs = false;
  readonly evicts = true;
  /** [layer][head][position]: pooled prompt scores; +inf-like priorities for the window and generated. */
  private readonly score: Float64Array;
  private prompt = 0;
  private readonly row: Float64Array;
  private readonly sum: Float64Array;
  private readonly order: Int32Array;
  constructor(private readonly keep: number, private readonly window: number, private readonly pool: number, private readonly ctx: KvContext) {
    this.score = new Float64Array(ctx.layers * ctx.heads * ctx.capacity);
    this.row = new Float64Array(ctx.capacity);
    this.sum = new Float64Array(ctx.capacity);
    this.order = new Int32Array(ctx.capacity);
  }
  reset(): void {
    this.prompt = 0;
  }
  prefill(layer: number, pos0: number, rows: number, q: Float32Array, kv: LayerKv): void {
    const T = pos0 + rows;
    if (layer === this.ctx.layers - 1) this.prompt = T;
    if (layer === 0) return;
    const H = this.ctx.heads;
    const cols = H * this.ctx.headDim;
    // the observation window is the last `window` rows of this (last) prefill chunk
    const w0 = Math.max(0, rows - this.window);
    const half = Math.floor(this.pool / 2);
    for (let h = 0; h < H; h++) {
      this.sum.fill(0, 0, T);
      for (let r = w0; r < rows; r++) {
        const n = pos0 + r + 1;
        headScores(q, r * cols, kv, H, h, n, this.row);
        softmaxInPlace(this.row, n);
        for (let t = 0; t < n; t++) this.sum[t] += this.row[t]!;
      }
      const base = (layer * H + h) * this.ctx.capacity;
      const firstWindow = pos0 + w0;
      for (let t = 0; t < T; t++) {
        let m = -Infinity;
        for (let u = Math.max(0, t - half); u <= Math.min(T - 1, t + half); u++) m = Math.max(m, this.sum[u]!);
        this.score[base + t] = t >= firstWindow ? RECENT + t : m;
      }
    }
  }
  select(layer: number, pos: number, _q: Float32Array, _kv: LayerKv, sel: KvSelection): boolean {
    const n = pos + 1;
    const k = keepBudget(n, this.keep);
    if (k >= n) return false;
    const H = this.ctx.heads;
    for (let h = 0; h < H; h++) {
      const base = (layer * H + h) * this.ctx.capacity;
      const s = this.score.subarray(base, base + n);
      for (let t = Math.max(this.prompt, 0); t < n; t++) s[t] = RECENT + t;
      selectTopK(sel, h, s, n, k, this.order);
    }
    return true;
  }
}

/**
 * Quest: pages of `page` positions with per-channel key minima and maxima (per layer and kv head); a query
 * head scores a page Σ_c max(q_c·max_c, q_c·min_c) and takes whole pages in score order while they fit in
 * K_i positions (ties: lower page first), plus the sinks. Nothing is evicted.
 */
export class QuestPolicy implements SelectionPolicy {
  readonly wantsProbs = false;
  readonly evicts = false;
  /** [layer][kvHead][page][headDim] */
  private readonly lo: Float32Array;
  private readonly hi: Float32Array;
  private readonly folded: Int32Array;
  private readonly pages: number;
  private readonly pageScore: Float64Array;
  private readonly order: Int32Array;
  constructor(private readonly keep: number, private readonly page: number, private readonly ctx: KvContext) {
    this.pages = Math.ceil(ctx.capacity / page);
    const n = ctx.layers * ctx.kvHeads * this.pages * ctx.headDim;
    this.lo = new Float32Array(n);
    this.hi = new Float32Array(n);
    this.folded = new Int32Array(ctx.layers);
    this.pageScore = new Float64Array(this.pages);
    this.order = new Int32Array(this.pages);
  }
  reset(): void {
    this.folded.fill(0);
  }
  /** Folds positions [folded, n) of `layer` into their pages' bounds. */
  private fold(layer: number, n: number, kv: LayerKv): void {
    const d = this.ctx.headDim, G = this.ctx.kvHeads;
    for (let t = this.folded[layer]!; t < n; t++) {
      const p = Math.floor(t / this.page);
      for (let g = 0; g < G; g++) {
        const b = ((layer * G + g) * this.pages + p) * d;
        const k0 = t * kv.width + g * d;
        for (let i = 0; i < d; i++) {
          const x = kv.k[k0 + i]!;
          if (t % this.page === 0 || x < this.lo[b + i]!) this.lo[b + i] = x;
          if (t % this.page === 0 || x > this.hi[b + i]!) this.hi[b + i] = x;
        }
      }
    }
    this.folded[layer] = n;
  }
  select(layer: number, pos: number, q: Float32Array, kv: LayerKv, sel: KvSelection): boolean {
    const n = pos + 1;
    this.fold(layer, n, kv);
    const k = keepBudget(n, this.keep);
    if (k >= n) return false;
    const d = this.ctx.headDim, H = sel.heads, G = this.ctx.kvHeads, group = H / G;
    const pages = Math.ceil(n / this.page);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      for (let p = 0; p < pages; p++) {
        const b = ((layer * G + g) * this.pages + p) * d;
        let s = 0;
        for (let i = 0; i < d; i++) {
          const qc = q[h * d + i]!;
          s += Math.max(qc * this.hi[b + i]!, qc * this.lo[b + i]!);
        }
        this.pageScore[p] = s;
        this.order[p] = p;
      }
      const ord = this.order.subarray(0, pages);
      ord.sort((a, b) => this.pageScore[b]! - this.pageScore[a]! || a - b);
      const mark = markScratch(n);
      let taken = 0;
      for (const p of ord) {
        const size = Math.min(n, (p + 1) * this.page) - p * this.page;
        if (taken + size > k) continue;
        taken += size;
        for (let t = p * this.page; t < p * this.page + size; t++) mark[t] = 1;
      }
      for (let t = 0; t < Math.min(SINKS, n); t++) mark[t] = 1;
      writeMarked(sel, h, mark, n);
    }
    return true;
  }
  /** Page bounds: two f32 vectors of headDim per (layer, kv head, page in use). */
  metadataBytes(): number {
    const used = Math.ceil(Math.max(...this.folded) / this.page);
    return this.ctx.layers * this.ctx.kvHeads * used * 2 * this.ctx.headDim * 4;
  }
}

function softmaxInPlace(x: Float64Array, n: number): void {
  let max = -Infinity;
  for (let t = 0; t < n; t++) if (x[t]! > max) max = x[t]!;
  let sum = 0;
  for (let t = 0; t < n; t++) {
    x[t] = Math.exp(x[t]! - max);
    sum += x[t]!;
  }
  for (let t = 0; t < n; t++) x[t] = x[t]! / sum;
}

export const oracleMethod = selectionMethod("oracle", "each head attends to its top-K_i positions by true attention score", [KEEP], (p, ctx) => new OraclePolicy(p.keep!, ctx), (p) => new DeviceOracle(p.keep!));
export const h2oMethod = selectionMethod("h2o", "heavy hitters (accumulated attention) plus a recent window, evicted for good", [KEEP], (p, ctx) => new H2oPolicy(p.keep!, ctx), (p) => new DeviceH2o(p.keep!));
export const snapkvMethod = selectionMethod(
  "snapkv", "prompt positions scored once by the last prompt queries' pooled attention",
  [KEEP, { name: "window", summary: "observation window (prompt queries)", kind: "int", default: 32 }, { name: "pool", summary: "max-pool width (odd)", kind: "int", default: 7 }],
  (p, ctx) => new SnapKvPolicy(p.keep!, p.window!, p.pool!, ctx),
  (p, ctx) => new DeviceSnapKv(p.keep!, p.window!, p.pool!, ctx.layers),
);
export const questMethod = selectionMethod(
  "quest", "whole pages ranked by a key min/max upper bound of q·k",
  [KEEP, { name: "page", summary: "positions a page", kind: "int", default: 16 }],
  (p, ctx) => new QuestPolicy(p.keep!, p.page!, ctx),
  (p, ctx) => new DeviceQuest(p.keep!, p.page!, ctx.layers),
);
export const streamingMethod: KvMethod = {
  name: "streaming",
  summary: "attention sinks plus a recent window: keep=F (the budget rule) or sink=S,window=W (fixed)",
  params: [
    { name: "keep", summary: "fraction of visible positions, (0, 1]", kind: "fraction", default: 0 },
    { name: "sink", summary: "sink positions", kind: "int", min: 0, default: SINKS },
    { name: "window", summary: "recent positions (with sink=, instead of keep=)", kind: "int", default: 0, min: 0 },
    { name: "dense0", summary: "1: layer 0 attends to every position (the baseline rule); 0: layer 0 keeps the window too, as in the StreamingLLM paper", kind: "int", default: 1, min: 0 },
    { name: "pyramid", summary: "with keep=: the first windowed layer keeps keep·(1 + s), the last keep·(1 − s), linear between (s > 0: PyramidKV; s < 0: more in the deeper layers); CPU only", kind: "signed", default: 0 },
  ],
  create(p, spec) {
    if ((p.keep! > 0) === (p.window! > 0)) throw new Error(`--kv ${spec}: streaming needs exactly one of keep=F or window=W`);
    if (p.dense0! > 1) throw new Error(`--kv ${spec}: dense0=${p.dense0} must be 0 or 1`);
    if (p.pyramid !== 0 && !(p.keep! > 0)) throw new Error(`--kv ${spec}: pyramid= shares keep= among layers; it needs keep=F`);
    const first = p.dense0 ? 1 : 0;
    // on a device-memory backend the position-only rule runs as the backend's windowed attention (one window for all layers)
    return (ctx) => {
      if (ctx.backend.hostView) return createHostStore(ctx, spec, new StreamingPolicy(p.keep!, p.sink!, p.window!, first, ctx.layers, p.pyramid!));
      if (p.pyramid !== 0) throw new Error(`--kv ${spec}: pyramid= runs on the CPU only (the ${ctx.backend.kind} backend's windowed attention takes one window for all layers)`);
      return new WindowStore(ctx, spec, p.keep!, p.sink!, p.window!, first);
    };
  },
};
