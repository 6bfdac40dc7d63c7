import type { Backend, KVCache, KVSlot, RopeTable, Tensor, Weight } from "../backend.js";
import type { RawTensor } from "../../tensor/raw.js";
import { PACKED_DTYPES, type DType } from "../../tensor/dtype.js";
import { Arena } from "./arena.js";
import { decodeRow, matmulRef } from "./reference.js";
import { createWasmMatmul, type WasmMatmulOptions } from "./wasm-matmul.js";
import { ropeCosSin } from "../../model/config.js";
import { SlotPool } from "../../kv/slot-pool.js";

export class CpuTensor implements Tensor {
  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly offset: number,
    readonly data: Float32Array,
  ) {}
}

export class CpuWeight implements Weight {
  constructor(
    readonly name: string,
    readonly dtype: DType,
    readonly shape: readonly number[],
    readonly offset: number,
    readonly bytes: Uint8Array,
  ) {}
  get outFeatures(): number {
    return this.shape.length === 1 ? 1 : this.shape[0]!;
  }
  get inFeatures(): number {
    return this.shape[this.shape.length - 1]!;
  }
}

export class CpuKVCache implements KVCache {
  constructor(
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly capacity: number,
    /** [layer][position][kvHeads * headDim] */
    readonly k: Float32Array,
    readonly v: Float32Array,
    readonly slot?: KVSlot,
  ) {}
}

export class CpuRopeTable implements RopeTable {
  constructor(
    readonly maxPositions: number,
    readonly half: number,
    /** [position][half] */
    readonly cos: Float32Array,
    readonly sin: Float32Array,
  ) {}
}

/** Matrix-multiply engines the CPU backend can use; the WebAssembly one is faster, the reference is the oracle. */
export interface CpuMatmul {
  matmul(w: CpuWeight, x: CpuTensor, out: CpuTensor, rows: number): void;
  /** Backend.attention, if the engine has it for this shape; false leaves it to the backend's own loop. */
  attention?(out: CpuTensor, q: CpuTensor, cache: CpuKVCache, layer: number, pos0: number, heads: number): boolean;
  /** Backend.rmsnorm and Backend.swiglu likewise. */
  rmsnorm?(out: CpuTensor, x: CpuTensor, weight: CpuWeight, eps: number, group: number): boolean;
  swiglu?(out: CpuTensor, gate: CpuTensor, up: CpuTensor): boolean;
  dispose(): void;
}

export const referenceMatmul: CpuMatmul = {
  matmul(w, x, out, rows) {
    matmulRef(w.dtype, w.bytes, w.inFeatures, w.outFeatures, x.data, out.data, rows);
  },
  dispose() {},
};

export class CpuBackend implements Backend {
  readonly kind = "cpu" as const;
  readonly formats: readonly DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0", ...PACKED_DTYPES, "sparse-f32", "sparse-f16", "sparse-bf16"];
  readonly arena: Arena;
  private engine: CpuMatmul;

  constructor(options: { arena?: Arena; matmul?: CpuMatmul } = {}) {
    this.arena = options.arena ?? new Arena();
    this.engine = options.matmul ?? referenceMatmul;
  }

  setMatmul(engine: CpuMatmul): void {
    this.engine = engine;
  }

  /** The matmul engine in use (the reference or the WebAssembly one). */
  get matmulEngine(): CpuMatmul {
    return this.engine;
  }

  private f32(offset: number, length: number): Float32Array {
    return new Float32Array(this.arena.buffer, offset, length);
  }

  upload(raw: RawTensor): CpuWeight {
    const offset = this.arena.alloc(raw.data.byteLength);
    const bytes = new Uint8Array(this.arena.buffer, offset, raw.data.byteLength);
    bytes.set(raw.data);
    return new CpuWeight(raw.name, raw.dtype, raw.shape, offset, bytes);
  }

  activation(rows: number, cols: number): CpuTensor {
    const offset = this.arena.alloc(rows * cols * 4);
    return new CpuTensor(rows, cols, offset, this.f32(offset, rows * cols));
  }

  view(t: Tensor, rows: number): CpuTensor {
    const ct = t as CpuTensor;
    if (rows > ct.rows) throw new Error(`view of ${rows} rows of a ${ct.rows}-row tensor`);
    return new CpuTensor(rows, ct.cols, ct.offset, ct.data.subarray(0, rows * ct.cols));
  }

  rowView(t: Tensor, row0: number, rows: number): CpuTensor {
    const ct = t as CpuTensor;
    if (row0 < 0 || row0 + rows > ct.rows) throw new Error(`rows [${row0}, ${row0 + rows}) of a ${ct.rows}-row tensor`);
    return new CpuTensor(rows, ct.cols, ct.offset + row0 * ct.cols * 4, ct.data.subarray(row0 * ct.cols, (row0 + rows) * ct.cols));
  }

  kvCache(layers: number, kvHeads: number, headDim: number, capacity: number): CpuKVCache {
    const n = layers * capacity * kvHeads * headDim;
    const k = this.f32(this.arena.alloc(n * 4), n);
    const v = this.f32(this.arena.alloc(n * 4), n);
    return new CpuKVCache(layers, kvHeads, headDim, capacity, k, v);
  }

  /** Caches of a pool are separate arena allocations, made when a slot is first taken. */
  kvPool(layers: number, kvHeads: number, headDim: number, capacity: number, slots: number): SlotPool<CpuKVCache> {
    return new SlotPool(slots, capacity, (slot) => {
      const c = this.kvCache(layers, kvHeads, headDim, capacity);
      return new CpuKVCache(layers, kvHeads, headDim, capacity, c.k, c.v, slot);
    });
  }

  // The batched ops run the single-row ops row by row: the same arithmetic, so the same numbers.
  ropeRows(x: Tensor, headDim: number, positions: readonly number[], table: RopeTable): void {
    for (let r = 0; r < positions.length; r++) this.rope(this.rowView(x, r, 1), headDim, positions[r]!, table);
  }

  kvWriteRows(caches: readonly KVCache[], layer: number, k: Tensor, v: Tensor, positions: readonly number[]): void {
    checkRows("kvWriteRows", caches, positions, (k as CpuTensor).rows);
    for (let r = 0; r < positions.length; r++) this.kvWrite(caches[r]!, layer, this.rowView(k, r, 1), this.rowView(v, r, 1), positions[r]!);
  }

  attentionRows(out: Tensor, q: Tensor, caches: readonly KVCache[], layer: number, positions: readonly number[], heads: number): void {
    checkRows("attentionRows", caches, positions, (q as CpuTensor).rows);
    for (let r = 0; r < positions.length; r++) this.attention(this.rowView(out, r, 1), this.rowView(q, r, 1), caches[r]!, layer, positions[r]!, heads);
  }

  hostView(t: Tensor): Float32Array {
    return (t as CpuTensor).data;
  }

  kvView(cache: KVCache, layer: number): { k: Float32Array; v: Float32Array } {
    const c = cache as CpuKVCache;
    const n = c.capacity * c.kvHeads * c.headDim;
    return { k: c.k.subarray(layer * n, (layer + 1) * n), v: c.v.subarray(layer * n, (layer + 1) * n) };
  }

  ropeTable(inv: Float64Array, maxPositions: number): CpuRopeTable {
    const half = inv.length;
    const { cos, sin } = ropeCosSin(inv, maxPositions);
    return new CpuRopeTable(maxPositions, half, cos, sin);
  }

  embed(out: Tensor, table: Weight, tokens: Int32Array): void {
    const o = out as CpuTensor;
    const t = table as CpuWeight;
    const cols = t.inFeatures;
    const row = new Float32Array(cols);
    for (let r = 0; r < tokens.length; r++) {
      const id = tokens[r]!;
      if (id < 0 || id >= t.outFeatures) throw new Error(`token id ${id} is outside the vocabulary [0, ${t.outFeatures})`);
      decodeRow(t.dtype, t.bytes, id, cols, row);
      o.data.set(row, r * cols);
    }
  }

  matmul(out: Tensor, x: Tensor, w: Weight, rows?: number): void {
    const o = out as CpuTensor;
    const xt = x as CpuTensor;
    const wt = w as CpuWeight;
    if (xt.cols !== wt.inFeatures || o.cols !== wt.outFeatures) {
      throw new Error(`matmul ${wt.name}: x [${xt.rows}, ${xt.cols}] · [${wt.shape.join(", ")}]ᵀ -> [${o.rows}, ${o.cols}] do not fit`);
    }
    this.engine.matmul(wt, xt, o, rows ?? xt.rows);
  }

  addBias(x: Tensor, bias: Weight): void {
    const xt = x as CpuTensor;
    const b = new Float32Array(xt.cols);
    decodeRow((bias as CpuWeight).dtype, (bias as CpuWeight).bytes, 0, xt.cols, b);
    for (let r = 0; r < xt.rows; r++) for (let c = 0; c < xt.cols; c++) xt.data[r * xt.cols + c]! += b[c]!;
  }

  rmsnorm(out: Tensor, x: Tensor, weight: Weight, eps: number, group: number): void {
    if (this.engine.rmsnorm?.(out as CpuTensor, x as CpuTensor, weight as CpuWeight, eps, group)) return;
    const o = (out as CpuTensor).data;
    const xs = (x as CpuTensor).data;
    const w = new Float32Array(group);
    decodeRow((weight as CpuWeight).dtype, (weight as CpuWeight).bytes, 0, group, w);
    const n = (x as CpuTensor).rows * (x as CpuTensor).cols;
    for (let g = 0; g < n; g += group) {
      let ss = 0;
      for (let i = 0; i < group; i++) ss += xs[g + i]! * xs[g + i]!;
      const scale = 1 / Math.sqrt(ss / group + eps);
      for (let i = 0; i < group; i++) o[g + i] = w[i]! * (xs[g + i]! * scale);
    }
  }

  rmsnormRow(out: Tensor, x: Tensor, row: number, weight: Weight, eps: number): void {
    const xt = x as CpuTensor;
    const one = new CpuTensor(1, xt.cols, xt.offset + row * xt.cols * 4, xt.data.subarray(row * xt.cols, (row + 1) * xt.cols));
    this.rmsnorm(out, one, weight, eps, xt.cols);
  }

  rope(x: Tensor, headDim: number, pos0: number, table: RopeTable): void {
    const xt = x as CpuTensor;
    const t = table as CpuRopeTable;
    const half = headDim / 2;
    const heads = xt.cols / headDim;
    for (let r = 0; r < xt.rows; r++) {
      const p = pos0 + r;
      if (p >= t.maxPositions) throw new Error(`position ${p} is beyond the RoPE table (${t.maxPositions})`);
      for (let h = 0; h < heads; h++) {
        const base = r * xt.cols + h * headDim;
        for (let i = 0; i < half; i++) {
          const c = t.cos[p * t.half + i]!;
          const s = t.sin[p * t.half + i]!;
          const a = xt.data[base + i]!;
          const b = xt.data[base + i + half]!;
          xt.data[base + i] = a * c - b * s;
          xt.data[base + i + half] = b * c + a * s;
        }
      }
    }
  }

  kvWrite(cache: KVCache, layer: number, k: Tensor, v: Tensor, pos0: number): void {
    const c = cache as CpuKVCache;
    const kt = k as CpuTensor;
    const width = c.kvHeads * c.headDim;
    if (pos0 + kt.rows > c.capacity) throw new Error(`KV cache full: ${pos0 + kt.rows} positions > capacity ${c.capacity}`);
    const base = (layer * c.capacity + pos0) * width;
    c.k.set(kt.data.subarray(0, kt.rows * width), base);
    c.v.set((v as CpuTensor).data.subarray(0, kt.rows * width), base);
  }

  attention(out: Tensor, q: Tensor, cache: KVCache, layer: number, pos0: number, heads: number): void {
    if (this.engine.attention?.(out as CpuTensor, q as CpuTensor, cache as CpuKVCache, layer, pos0, heads)) return;
    const c = cache as CpuKVCache;
    const qt = q as CpuTensor;
    const o = (out as CpuTensor).data;
    const d = c.headDim;
    const width = c.kvHeads * d;
    const group = heads / c.kvHeads;
    const scale = 1 / Math.sqrt(d);
    const lbase = layer * c.capacity * width;
    const scores = new Float32Array(pos0 + qt.rows);
    for (let r = 0; r < qt.rows; r++) {
      const len = pos0 + r + 1;
      for (let h = 0; h < heads; h++) {
        const qo = r * qt.cols + h * d;
        const kvo = lbase + Math.floor(h / group) * d;
        let max = -Infinity;
        for (let t = 0; t < len; t++) {
          let s = 0;
          const ko = kvo + t * width;
          for (let i = 0; i < d; i++) s += qt.data[qo + i]! * c.k[ko + i]!;
          s *= scale;
          scores[t] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let t = 0; t < len; t++) {
          const e = Math.exp(scores[t]! - max);
          scores[t] = e;
          sum += e;
        }
        const oo = r * heads * d + h * d;
        for (let i = 0; i < d; i++) o[oo + i] = 0;
        for (let t = 0; t < len; t++) {
          const a = scores[t]! / sum;
          const vo = kvo + t * width;
          for (let i = 0; i < d; i++) o[oo + i]! += a * c.v[vo + i]!;
        }
      }
    }
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    const o = (out as CpuTensor).data;
    const x = (a as CpuTensor).data;
    const y = (b as CpuTensor).data;
    for (let i = 0; i < o.length; i++) o[i] = x[i]! + y[i]!;
  }

  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    if (this.engine.swiglu?.(out as CpuTensor, gate as CpuTensor, up as CpuTensor)) return;
    const o = (out as CpuTensor).data;
    const g = (gate as CpuTensor).data;
    const u = (up as CpuTensor).data;
    for (let i = 0; i < o.length; i++) {
      const x = g[i]!;
      o[i] = (x / (1 + Math.exp(-x))) * u[i]!;
    }
  }

  async read(t: Tensor, row = 0, rows = t.rows - row): Promise<Float32Array> {
    const ct = t as CpuTensor;
    return ct.data.slice(row * ct.cols, (row + rows) * ct.cols);
  }

  async argmax(logits: Tensor): Promise<number> {
    const t = logits as CpuTensor;
    if (t.rows === 0 || t.cols === 0) throw new Error("argmax of an empty tensor");
    const row = t.data.subarray((t.rows - 1) * t.cols, t.rows * t.cols);
    let best = 0;
    for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
    return best;
  }

  dispose(): void {
    this.engine.dispose();
  }
}

/**
 * A CPU backend on the WebAssembly SIMD engine (worker threads when `threads` > 1, default: one per core);
 * the TypeScript reference engine where this JavaScript engine lacks WebAssembly SIMD or threads.
 */
export async function createCpuBackend(options: WasmMatmulOptions = {}): Promise<CpuBackend> {
  const arena = new Arena();
  const engine = await createWasmMatmul(arena, options);
  return new CpuBackend({ arena, matmul: engine ?? referenceMatmul });
}

/** A batched op's caches and positions must match its rows. */
export function checkRows(op: string, caches: readonly KVCache[], positions: readonly number[], rows: number): void {
  if (caches.length !== positions.length || positions.length > rows) {
    throw new Error(`${op}: ${caches.length} caches and ${positions.length} positions for ${rows} rows`);
  }
}
