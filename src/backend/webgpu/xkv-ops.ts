/**
 * xKV / per-layer SVD on the device (the WebGPU side of `DeviceXkvOps`, src/backend/backend.ts): a
 * sequence's buffers (the exact prefill cache, the pre-RoPE key staging, then the factors and the recent
 * rows) and the dispatches of kernels/xkv-attention.ts. The factorization itself runs on the host
 * (src/kv/xkv/xkv-device-store.ts); this file only moves data and records decode attention.
 */
import type { DeviceXkvOps, KVCache, RopeTable, Tensor, XkvDeviceState, XkvFactors } from "../backend.js";
import type { Buf, BufferPool } from "./buffers.js";
import { f32bits, grid, type Kernel } from "./kernel.js";
import { XKV_MAX_SPLITS, XKV_WG, checkXkvHeadDim, xkvCombineKernel, xkvPartialKernel, xkvPartialStride, xkvRankChunk } from "./kernels/xkv-attention.js";
import { GpuKVCache, type GpuRopeTable, type GpuTensor } from "./webgpu-backend.js";

/** Workgroups a decode step aims for (prompt splits are heavy: r_k·d MACs a position). */
const TARGET_GROUPS = 1024;

export class GpuXkvState implements XkvDeviceState {
  /** Prefill: the exact f32 cache prefill attends over, and pre-RoPE keys per layer [position][width]. */
  exact?: GpuKVCache;
  stage: Buf[] = [];
  /** After `load`: the prompt length, A per group, B per layer, ranks per layer, the recent rows. */
  tokens = 0;
  a: Buf[] = [];
  b: Buf[] = [];
  groupOf: number[] = [];
  ranks: { k: number; v: number }[] = [];
  recent?: GpuKVCache;

  constructor(
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly capacity: number,
    readonly rope: GpuRopeTable,
  ) {}

  get width(): number {
    return this.kvHeads * this.headDim;
  }
}

type Run = (k: Kernel, params: ArrayLike<number>, bufs: readonly Buf[], groups: readonly [number, number]) => void;
type Read = (buffer: GPUBuffer, offset: number, bytes: number) => Promise<ArrayBuffer>;
type Copy = (src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number) => void;

/** What the ops need of the recorder: buffer reads and copies in queue order, and submitting what is recorded. */
export interface XkvRecorder {
  run: Run;
  read: Read;
  copy: Copy;
  /** Submits what is recorded, so that buffers it uses may be destroyed. */
  flush(): void;
}

export class GpuXkvOps implements DeviceXkvOps {
  private scratch?: Buf;

  constructor(
    private readonly pool: BufferPool,
    private readonly rec: XkvRecorder,
    private readonly workgroupBytes: number,
  ) {}

  state(layers: number, kvHeads: number, headDim: number, capacity: number, rope: RopeTable): GpuXkvState {
    checkXkvHeadDim(headDim);
    return new GpuXkvState(layers, kvHeads, headDim, capacity, rope as GpuRopeTable);
  }

  begin(state: XkvDeviceState): KVCache {
    const st = state as GpuXkvState;
    this.dropFactors(st);
    if (!st.exact) {
      const bytes = st.capacity * st.width * 4;
      const k: Buf[] = [], v: Buf[] = [];
      for (let l = 0; l < st.layers; l++) {
        k.push(this.pool.storage(bytes, `xkv exact k ${l}`));
        v.push(this.pool.storage(bytes, `xkv exact v ${l}`));
        st.stage.push(this.pool.storage(bytes, `xkv pre-rope k ${l}`));
      }
      st.exact = new GpuKVCache(st.layers, st.kvHeads, st.headDim, st.capacity, k, v);
    }
    return st.exact;
  }

  stashKeys(state: XkvDeviceState, layer: number, k: Tensor, pos0: number): void {
    const st = state as GpuXkvState, kt = k as GpuTensor;
    if (!st.exact) throw new Error("xKV staging: begin() the sequence first");
    if (kt.cols !== st.width || pos0 + kt.rows > st.capacity) throw new Error(`xKV staging: keys [${kt.rows}, ${kt.cols}] at ${pos0} do not fit ${st.capacity} positions of ${st.width}`);
    const bytes = kt.rows * st.width * 4;
    this.rec.copy(kt.buf.buffer, kt.buf.offset ?? 0, st.stage[layer]!.buffer, pos0 * st.width * 4, bytes);
  }

  async readPrompt(state: XkvDeviceState, tokens: number): Promise<{ kPre: Float32Array[]; v: Float32Array[] }> {
    const st = state as GpuXkvState;
    if (!st.exact) throw new Error("xKV: there is no prefill to read back");
    const bytes = tokens * st.width * 4;
    // one buffer at a time, so that one map-read staging buffer serves them all (the readback pool keeps it)
    const kPre: Float32Array[] = [], v: Float32Array[] = [];
    for (let l = 0; l < st.layers; l++) {
      kPre.push(new Float32Array(await this.rec.read(st.stage[l]!.buffer, 0, bytes)));
      v.push(new Float32Array(await this.rec.read(st.exact.v[l]!.buffer, 0, bytes)));
    }
    return { kPre, v };
  }

  load(state: XkvDeviceState, f: XkvFactors): KVCache {
    const st = state as GpuXkvState;
    const d = st.headDim, T = f.tokens;
    if (!(T >= 1 && T <= st.capacity)) throw new Error(`xKV: a prompt of ${T} positions does not fit ${st.capacity}`);
    this.dropFactors(st);
    st.tokens = T;
    st.groupOf = new Array<number>(st.layers).fill(-1);
    st.ranks = [];
    st.b = new Array<Buf>(st.layers);
    f.groups.forEach((g, gi) => {
      const { k, v } = g;
      if (k.a.length !== T * k.rank || v.a.length !== T * v.rank) throw new Error(`xKV group ${gi}: A is not [${T}][rank]`);
      const a = new Float32Array(T * (k.rank + v.rank));
      a.set(k.a);
      a.set(v.a, T * k.rank);
      st.a.push(this.upload(a, `xkv A group ${gi}`));
      for (let j = 0; j < g.size; j++) {
        const l = g.firstLayer + j;
        const b = new Float32Array(st.kvHeads * d * (k.rank + v.rank));
        for (let h = 0; h < st.kvHeads; h++) {
          const bk = k.b[j]![h]!, bv = v.b[j]![h]!;
          if (bk.length !== k.rank * d || bv.length !== v.rank * d) throw new Error(`xKV layer ${l} head ${h}: B is not [rank][${d}]`);
          b.set(bk, h * k.rank * d);
          b.set(bv, st.kvHeads * k.rank * d + h * v.rank * d);
        }
        st.b[l] = this.upload(b, `xkv B layer ${l}`);
        st.groupOf[l] = gi;
        st.ranks[l] = { k: k.rank, v: v.rank };
      }
    });
    const missing = st.groupOf.indexOf(-1);
    if (missing >= 0) throw new Error(`xKV: no group holds layer ${missing}`);
    // the exact prompt goes: from here on only the factors and the rows after the prompt are resident
    this.dropExact(st);
    const rest = st.capacity - T;
    const bytes = rest * st.width * 4;
    const rk: Buf[] = [], rv: Buf[] = [];
    for (let l = 0; l < st.layers; l++) {
      rk.push(this.pool.storage(bytes, `xkv recent k ${l}`));
      rv.push(this.pool.storage(bytes, `xkv recent v ${l}`));
    }
    st.recent = new GpuKVCache(st.layers, st.kvHeads, d, rest, rk, rv);
    return st.recent;
  }

  attend(out: Tensor, q: Tensor, state: XkvDeviceState, layer: number, pos0: number, heads: number): void {
    const st = state as GpuXkvState, qt = q as GpuTensor, o = out as GpuTensor;
    const d = st.headDim, T = st.tokens;
    if (!st.recent) throw new Error("xKV attention: the prompt is not compressed (load the factors first)");
    if (heads % st.kvHeads !== 0 || qt.cols !== heads * d || o.cols !== heads * d || o.rows < qt.rows) {
      throw new Error(`xKV attention: q [${qt.rows}, ${qt.cols}] of ${heads} heads does not fit ${st.kvHeads} kv heads of ${d}`);
    }
    if (o.buf === qt.buf) throw new Error("xKV attention: the output may not share storage with q");
    const rows = qt.rows;
    if (!(pos0 >= T && pos0 + rows <= st.capacity)) throw new Error(`xKV attention: rows at ${pos0}..${pos0 + rows - 1} must follow the ${T}-position prompt within ${st.capacity}`);
    const { k: rk, v: rv } = st.ranks[layer]!;
    const group = heads / st.kvHeads;
    const recentMax = pos0 + rows - T;
    const sr = Math.min(XKV_MAX_SPLITS / 2, Math.ceil(recentMax / XKV_WG));
    const spanR = Math.ceil(recentMax / sr);
    const want = Math.ceil(TARGET_GROUPS / (rows * st.kvHeads));
    const sp = Math.max(1, Math.min(XKV_MAX_SPLITS - sr, Math.ceil(T / XKV_WG), want));
    const spanP = Math.ceil(T / sp);
    const splits = sp + sr;
    const stride = xkvPartialStride(rv, d);
    const partial = this.scratchFor(rows * heads * splits * stride * 4);
    const rc = xkvRankChunk(d, group, this.workgroupBytes);
    const recent = st.recent;
    this.rec.run(
      xkvPartialKernel(d, group, rc, Math.max(1, Math.ceil(rv / XKV_WG))),
      [rows, heads, st.width, qt.cols, pos0, T, rk, rv, sp, spanP, sr, spanR, f32bits(1 / Math.sqrt(d)), st.rope.half],
      [partial, qt.buf, st.a[st.groupOf[layer]!]!, st.b[layer]!, recent.k[layer]!, recent.v[layer]!, st.rope.cos, st.rope.sin],
      grid(rows * st.kvHeads * splits),
    );
    this.rec.run(xkvCombineKernel(d), [rows, heads, splits, o.cols, rk, rv, group, st.kvHeads], [o.buf, partial, st.b[layer]!], grid(rows * heads));
  }

  residentBytes(state: XkvDeviceState): number {
    const st = state as GpuXkvState;
    let n = 0;
    for (const b of [...st.a, ...st.b, ...st.stage]) n += b.size;
    for (const c of [st.exact, st.recent]) if (c) for (const b of [...c.k, ...c.v]) n += b.size;
    return n;
  }

  release(state: XkvDeviceState): void {
    const st = state as GpuXkvState;
    this.dropFactors(st);
    this.dropExact(st);
  }

  private dropExact(st: GpuXkvState): void {
    if (!st.exact) return;
    this.rec.flush();
    for (const b of [...st.exact.k, ...st.exact.v, ...st.stage]) this.pool.destroy(b);
    st.exact = undefined;
    st.stage = [];
  }

  private dropFactors(st: GpuXkvState): void {
    if (st.a.length > 0 || st.recent) this.rec.flush();
    for (const b of [...st.a, ...st.b.filter((x) => x)]) this.pool.destroy(b);
    if (st.recent) for (const b of [...st.recent.k, ...st.recent.v]) this.pool.destroy(b);
    st.a = [];
    st.b = [];
    st.recent = undefined;
    st.tokens = 0;
  }

  private upload(a: Float32Array, label: string): Buf {
    return this.pool.upload(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), label);
  }

  /** The partials buffer, grown as needed (old ones stay: recorded work may still use them). */
  private scratchFor(bytes: number): Buf {
    if (!this.scratch || this.scratch.size < bytes) this.scratch = this.pool.storage(Math.max(bytes, 1 << 16), "xkv partials");
    return this.scratch;
  }
}
