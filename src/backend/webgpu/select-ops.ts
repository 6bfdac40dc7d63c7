/**
 * KV selection on the device (the WebGPU side of `DeviceSelectOps`, src/backend/backend.ts): per-store
 * buffers and the dispatches of kernels/attention-select.ts. Everything is recorded into the decode
 * step's one submission; nothing is read back except by `readSelection` (tests, tools).
 */
import type { DeviceSelectOps, KVCache, SelectState, Tensor } from "../backend.js";
import type { Buf, BufferPool } from "./buffers.js";
import { f32bits, grid, type Kernel } from "./kernel.js";
import { MAX_SPLITS, attentionCombineKernel, attentionSplits, partialStride } from "./kernels/attention.js";
import { SCORE_GROUP, attentionSelectPartialKernel, selectScoresKernel, topKKernel } from "./kernels/attention-select.js";
import type { GpuKVCache, GpuTensor } from "./webgpu-backend.js";

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
}

type Run = (k: Kernel, params: ArrayLike<number>, bufs: readonly Buf[], groups: readonly [number, number]) => void;
type Read = (buffer: GPUBuffer, offset: number, bytes: number) => Promise<ArrayBuffer>;

export class GpuSelectOps implements DeviceSelectOps {
  constructor(private readonly pool: BufferPool, private readonly run: Run, private readonly read: Read) {}

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
