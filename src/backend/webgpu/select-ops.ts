/**
 * KV selection on the device (the WebGPU side of `DeviceSelectOps`, src/backend/backend.ts): per-store
 * buffers and the dispatches of kernels/attention-select.ts. Everything is recorded into the decode
 * step's one submission; nothing is read back except by `readSelection` (tests, tools).
 */
import type { DeviceSelectOps, KVCache, SelectState, Tensor } from "../backend.js";
import type { Buf, BufferPool } from "./buffers.js";
import { f32bits, grid, type Kernel } from "./kernel.js";
import { MAX_SPLITS, attentionCombineKernel, attentionSplits, partialStride } from "./kernels/attention.js";
import {
  SCORE_GROUP, attentionSelectPartialKernel, columnProbsKernel, h2oSelectKernel, observeKernel, rowStatsKernel, selectScoresKernel,
  questFoldKernel, questSelectKernel, snapKeysKernel, snapPoolKernel, topKKernel, zeroKernel,
} from "./kernels/attention-select.js";
import type { GpuKVCache, GpuTensor } from "./webgpu-backend.js";
import { GpuPredictorOps } from "./predictor-ops.js";

export class GpuSelectState implements SelectState {
  constructor(
    readonly layers: number,
    readonly heads: number,
    readonly capacity: number,
    /** Ranking keys of the current step [heads][capacity] f32 (scratch shared by the layers). */
    readonly keys: Buf,
    /** Per layer: lists [heads][capacity] u32 and counts [heads] u32 (kept per layer for readSelection). */
    readonly idx: readonly Buf[],
    readonly counts: readonly Buf[],
    readonly partial: Buf,
  ) {}
  private readonly extra = new Map<string, Buf>();
  /** A policy's own buffer (H2O accumulators, SnapKV scores), made on first use. */
  buffer(pool: BufferPool, name: string, bytes: number): Buf {
    let b = this.extra.get(name);
    if (!b) {
      b = pool.storage(bytes, `selection ${name}`);
      this.extra.set(name, b);
    }
    return b;
  }
}

type Run = (k: Kernel, params: ArrayLike<number>, bufs: readonly Buf[], groups: readonly [number, number]) => void;
type Read = (buffer: GPUBuffer, offset: number, bytes: number) => Promise<ArrayBuffer>;

export class GpuSelectOps implements DeviceSelectOps {
  constructor(private readonly pool: BufferPool, private readonly run: Run, private readonly read: Read) {}
  /** TokenButler's predictor ops (predictor-ops.ts). */
  readonly predictor = new GpuPredictorOps((k, p, b, g) => this.run(k, p, b, g));

  state(layers: number, heads: number, capacity: number, headDim: number): GpuSelectState {
    const idx: Buf[] = [], counts: Buf[] = [];
    for (let l = 0; l < layers; l++) {
      idx.push(this.pool.storage(heads * capacity * 4, `selection ${l}`));
      counts.push(this.pool.storage(heads * 4, `selection counts ${l}`));
    }
    const keys = this.pool.storage(heads * capacity * 4, "selection keys");
    const partial = this.pool.storage(heads * MAX_SPLITS * partialStride(headDim) * 4, "selection partials");
    return new GpuSelectState(layers, heads, capacity, keys, idx, counts, partial);
  }

  trueScores(state: SelectState, q: Tensor, cache: KVCache, layer: number, n: number, heads: number): void {
    const st = state as GpuSelectState, c = cache as GpuKVCache, qt = q as GpuTensor;
    this.check(st, c, qt, heads, n);
    const tiles = Math.ceil(n / SCORE_GROUP);
    this.run(selectScoresKernel(c.headDim), [n, heads, heads / c.kvHeads, c.kvHeads * c.headDim, st.capacity, f32bits(1 / Math.sqrt(c.headDim)), tiles], [st.keys, qt.buf, c.k[layer]!], grid(heads * tiles));
  }

  topK(state: SelectState, layer: number, n: number, k: number, sinks: number): void {
    const st = state as GpuSelectState;
    if (!(n <= st.capacity && k >= 0 && k <= n)) throw new Error(`selection top-K: k ${k} of n ${n} (capacity ${st.capacity})`);
    this.run(topKKernel(), [n, k, st.capacity, sinks], [st.idx[layer]!, st.counts[layer]!, st.keys], [st.heads, 1]);
  }

  attend(out: Tensor, q: Tensor, cache: KVCache, layer: number, state: SelectState, heads: number, maxCount: number): void {
    const st = state as GpuSelectState, c = cache as GpuKVCache, qt = q as GpuTensor, o = out as GpuTensor;
    this.check(st, c, qt, heads, maxCount);
    if (o.cols !== qt.cols || o.buf === qt.buf) throw new Error("selected attention: the output must be a distinct row of the query's width");
    const d = c.headDim;
    const splits = attentionSplits(1, heads, maxCount);
    const span = Math.ceil(maxCount / splits);
    this.run(
      attentionSelectPartialKernel(d),
      [heads, heads / c.kvHeads, c.kvHeads * d, splits, span, f32bits(1 / Math.sqrt(d)), st.capacity],
      [st.partial, qt.buf, c.k[layer]!, c.v[layer]!, st.idx[layer]!, st.counts[layer]!],
      grid(heads * splits),
    );
    this.run(attentionCombineKernel(d), [1, heads, splits, o.cols], [o.buf, st.partial], grid(heads));
  }

  /** Per (layer, head, position) f32/u32 words. */
  private perPosition(st: GpuSelectState, name: string): Buf {
    return st.buffer(this.pool, name, st.layers * st.heads * st.capacity * 4);
  }

  h2oReset(state: SelectState): void {
    const st = state as GpuSelectState;
    const words = st.layers * st.heads * st.capacity;
    for (const name of ["acc", "evicted"]) this.run(zeroKernel(), [words, 0], [this.perPosition(st, name)], grid(Math.ceil(words / 256)));
  }

  /** Softmax column sums of prefill rows [r0, rows) into `out` from word outBase ([heads][capacity]). */
  private columnProbs(st: GpuSelectState, q: GpuTensor, c: GpuKVCache, layer: number, pos0: number, rows: number, heads: number, r0: number, out: Buf, outBase: number, accumulate: boolean): void {
    const d = c.headDim, scale = f32bits(1 / Math.sqrt(d)), n = pos0 + rows, tiles = Math.ceil(n / SCORE_GROUP);
    if (q.cols !== heads * d || heads !== st.heads || n > st.capacity) throw new Error(`KV selection prefill: q [${q.rows}, ${q.cols}] of ${heads} heads at ${pos0} does not fit`);
    const stats = st.buffer(this.pool, "row stats", st.capacity * st.heads * 2 * 4);
    if (rows > st.capacity) throw new Error(`KV selection prefill: ${rows} rows exceed the capacity`);
    this.run(rowStatsKernel(d), [rows, heads, heads / c.kvHeads, c.kvHeads * d, q.cols, pos0, scale, r0], [stats, q.buf, c.k[layer]!], grid((rows - r0) * heads));
    this.run(columnProbsKernel(d), [rows, heads, heads / c.kvHeads, c.kvHeads * d, q.cols, pos0, scale, r0, st.capacity, outBase, tiles, accumulate ? 1 : 0], [out, stats, q.buf, c.k[layer]!], grid(heads * tiles));
  }

  h2oPrefill(state: SelectState, q: Tensor, cache: KVCache, layer: number, pos0: number, rows: number, heads: number): void {
    const st = state as GpuSelectState;
    this.columnProbs(st, q as GpuTensor, cache as GpuKVCache, layer, pos0, rows, heads, 0, this.perPosition(st, "acc"), layer * st.heads * st.capacity, true);
  }

  h2oSelect(state: SelectState, layer: number, n: number, k: number, recent: number, sinks: number): void {
    const st = state as GpuSelectState;
    this.run(h2oSelectKernel(), [n, k, recent, st.capacity, sinks, layer * st.heads * st.capacity], [st.idx[layer]!, st.counts[layer]!, this.perPosition(st, "evicted"), this.perPosition(st, "acc")], [st.heads, 1]);
  }

  h2oObserve(state: SelectState, q: Tensor, cache: KVCache, layer: number, heads: number): void {
    const st = state as GpuSelectState, c = cache as GpuKVCache, qt = q as GpuTensor;
    this.check(st, c, qt, heads, 1);
    const d = c.headDim;
    this.run(observeKernel(d), [heads, heads / c.kvHeads, c.kvHeads * d, qt.cols, st.capacity, f32bits(1 / Math.sqrt(d)), layer * st.heads * st.capacity], [this.perPosition(st, "acc"), qt.buf, c.k[layer]!, st.idx[layer]!, st.counts[layer]!], [heads, 1]);
  }

  snapPrefill(state: SelectState, q: Tensor, cache: KVCache, layer: number, pos0: number, rows: number, heads: number, window: number, pool: number, recent: number): void {
    const st = state as GpuSelectState;
    const r0 = Math.max(0, rows - window), T = pos0 + rows, tiles = Math.ceil(T / SCORE_GROUP);
    this.columnProbs(st, q as GpuTensor, cache as GpuKVCache, layer, pos0, rows, heads, r0, st.keys, 0, false);
    this.run(snapPoolKernel(), [T, pos0 + r0, Math.floor(pool / 2), st.capacity, layer * st.heads * st.capacity, heads, tiles, f32bits(recent)], [this.perPosition(st, "snap"), st.keys], grid(heads * tiles));
  }

  snapSelect(state: SelectState, layer: number, n: number, prompt: number, k: number, sinks: number, recent: number): void {
    const st = state as GpuSelectState;
    const tiles = Math.ceil(n / SCORE_GROUP);
    this.run(snapKeysKernel(), [n, prompt, st.capacity, layer * st.heads * st.capacity, st.heads, tiles, f32bits(recent)], [st.keys, this.perPosition(st, "snap")], grid(st.heads * tiles));
    this.topK(st, layer, n, k, sinks);
  }

  questFold(state: SelectState, cache: KVCache, layer: number, from: number, n: number, page: number): void {
    const st = state as GpuSelectState, c = cache as GpuKVCache;
    const pagesMax = Math.ceil(st.capacity / page), d = c.headDim;
    const p0 = Math.floor(from / page), p1 = Math.ceil(n / page);
    if (p1 <= p0) return;
    const bytes = st.layers * c.kvHeads * pagesMax * d * 4;
    const base = layer * c.kvHeads * pagesMax * d;
    const items = c.kvHeads * (p1 - p0) * d;
    this.run(questFoldKernel(d), [n, page, p0, p1, c.kvHeads, c.kvHeads * d, base, pagesMax], [st.buffer(this.pool, "quest lo", bytes), st.buffer(this.pool, "quest hi", bytes), c.k[layer]!], grid(Math.ceil(items / 64)));
  }

  questSelect(state: SelectState, q: Tensor, cache: KVCache, layer: number, n: number, k: number, page: number, sinks: number, heads: number): void {
    const st = state as GpuSelectState, c = cache as GpuKVCache, qt = q as GpuTensor;
    this.check(st, c, qt, heads, n);
    const pagesMax = Math.ceil(st.capacity / page), d = c.headDim;
    const bytes = st.layers * c.kvHeads * pagesMax * d * 4;
    this.run(
      questSelectKernel(d),
      [n, k, page, st.capacity, sinks, heads / c.kvHeads, layer * c.kvHeads * pagesMax * d, pagesMax],
      [st.idx[layer]!, st.counts[layer]!, st.keys, st.buffer(this.pool, "quest lo", bytes), st.buffer(this.pool, "quest hi", bytes), qt.buf, st.buffer(this.pool, "quest marks", heads * pagesMax * 4)],
      [heads, 1],
    );
  }

  async readSelection(state: SelectState, layer: number): Promise<{ positions: Int32Array; counts: Int32Array }> {
    const st = state as GpuSelectState;
    const positions = new Int32Array(await this.read(st.idx[layer]!.buffer, 0, st.heads * st.capacity * 4));
    const counts = new Int32Array(await this.read(st.counts[layer]!.buffer, 0, st.heads * 4));
    return { positions, counts };
  }

  private check(st: GpuSelectState, c: GpuKVCache, q: GpuTensor, heads: number, n: number): void {
    if (c.format !== "f32") throw new Error(`KV selection on WebGPU reads an f32 cache, not ${c.format}`);
    if (q.rows !== 1 || q.cols !== heads * c.headDim || heads !== st.heads || heads % c.kvHeads !== 0) {
      throw new Error(`KV selection: q [${q.rows}, ${q.cols}] of ${heads} heads does not fit ${st.heads} heads of ${c.headDim} over ${c.kvHeads} kv heads`);
    }
    if (n > st.capacity || n > c.capacity) throw new Error(`KV selection: ${n} positions exceed the capacity ${Math.min(st.capacity, c.capacity)}`);
  }
}
