/**
 * Sparse KV cache (spec sparamx §5): K and V pruned by magnitude and stored per KV head as one bitmap row
 * per token (head_dim bits) plus its packed non-zeros, appended as tokens arrive; decode attention reads
 * only the non-zeros. `--kv sparse:k=50,v=50` (percent pruned), threshold modes:
 *  - `sparse`      one threshold per layer (the reference statistic): τ from the first step's K (or V) of
 *                  the layer (heads, tokens, channels) so that floor(s·n) entries fall below it, frozen and
 *                  applied to every later token; keep |·| ≥ τ (ties kept, so realised sparsity ≤ target);
 *  - `sparse-head` the same per layer and KV head;
 *  - `sparse-row`  keep the ceil((1 − s)·d) largest |·| of each token row (no statistic).
 * Unlike the reference (spec §6.1 quirks 2-4): pruned per KV head (not after the GQA repeat), appended
 * incrementally (generated tokens are attended), nothing is cached across prompts.
 *
 * Prefill attention is exact (the backend's op over its own f32 cache, which this store keeps for that);
 * decode attends over the pruned rows of past tokens and the exact current token. `bytes()` counts the
 * sparse cache (masks, packed f32 values, one u32 row pointer per row); `realised()` the sparsity per layer.
 * CPU backend only (host memory).
 */
import type { KVCache } from "../backend/backend.js";
import type { KvContext, KvMethod, KvParam, KvStep, KvStore } from "../kv/store.js";

export type KvThresholdMode = "layer" | "head" | "row";

/** One layer's sparse rows for K or V: row i = token t, kv head g at i = t·kvHeads + g. */
class SparseRows {
  masks: Uint32Array;
  values: Float32Array;
  rowPtr: Uint32Array;
  rows = 0;
  /** Thresholds (layer: one, head: one per kv head), NaN until the first step sets them. */
  readonly tau: Float32Array;
  constructor(capacityRows: number, readonly words: number, kvHeads: number) {
    this.masks = new Uint32Array(capacityRows * words);
    this.rowPtr = new Uint32Array(capacityRows + 1);
    this.values = new Float32Array(Math.max(64, capacityRows * 8));
    this.tau = new Float32Array(kvHeads).fill(NaN);
  }
  get nnz(): number {
    return this.rowPtr[this.rows]!;
  }
  /** Appends a row's values that pass `keep(j)`. */
  append(src: Float32Array, off: number, d: number, keep: (v: number, j: number) => boolean): void {
    let p = this.rowPtr[this.rows]!;
    if (this.values.length < p + d) {
      const grown = new Float32Array(Math.max(2 * this.values.length, p + d));
      grown.set(this.values.subarray(0, p));
      this.values = grown;
    }
    const mw = this.rows * this.words;
    for (let j = 0; j < d; j++) {
      const v = src[off + j]!;
      if (v === 0 || !keep(v, j)) continue;
      this.masks[mw + (j >> 5)]! |= 1 << (j & 31);
      this.values[p++] = v;
    }
    this.rows++;
    this.rowPtr[this.rows] = p;
  }
  reset(): void {
    this.masks.fill(0, 0, this.rows * this.words);
    this.rows = 0;
    this.tau.fill(NaN);
  }
}

/**
 * The threshold τ that prunes the k = floor(s·n) smallest |values| when keeping |v| ≥ τ: the (k+1)-th
 * smallest (ties at τ are kept, so realised sparsity ≤ s). 0 at s = 0.
 */
export function magnitudeThreshold(values: Float32Array, s: number): number {
  const k = Math.floor(s * values.length);
  if (k === 0) return 0;
  if (k >= values.length) return Infinity;
  return values.map(Math.abs).sort()[k]!;
}

export class SparseKvStore implements KvStore {
  readonly batchable = false;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  readonly backendCache: KVCache;
  private readonly k: SparseRows[];
  private readonly v: SparseRows[];
  private written = 0;
  private scores = new Float32Array(256);

  constructor(private readonly ctx: KvContext, readonly spec: string, private readonly sk: number, private readonly sv: number, private readonly mode: KvThresholdMode) {
    if (ctx.format !== "f32") throw new Error(`--kv ${spec}: the sparse cache stores f32 values (--kv-format ${ctx.format} is not supported with it)`);
    this.layers = ctx.layers;
    this.kvHeads = ctx.kvHeads;
    this.headDim = ctx.headDim;
    this.capacity = ctx.capacity;
    this.backendCache = ctx.backend.kvCache(ctx.layers, ctx.kvHeads, ctx.headDim, ctx.capacity);
    const words = Math.ceil(ctx.headDim / 32);
    this.k = Array.from({ length: ctx.layers }, () => new SparseRows(ctx.capacity * ctx.kvHeads, words, ctx.kvHeads));
    this.v = Array.from({ length: ctx.layers }, () => new SparseRows(ctx.capacity * ctx.kvHeads, words, ctx.kvHeads));
  }

  get length(): number {
    return this.written;
  }

  step(s: KvStep): void {
    const b = this.ctx.backend;
    if (!b.hostView) throw new Error(`--kv ${this.spec}: the sparse cache computes on the host; the ${b.kind} backend keeps tensors on the device (CPU only)`);
    if (s.pos0 === 0) {
      this.k[s.layer]!.reset();
      this.v[s.layer]!.reset();
      if (s.layer === 0) this.written = 0;
    }
    if (s.pos0 !== this.k[s.layer]!.rows / this.kvHeads) throw new Error(`--kv ${this.spec}: write at position ${s.pos0} but ${this.k[s.layer]!.rows / this.kvHeads} are cached`);
    s.rope(s.k);
    const k = b.hostView(s.k), v = b.hostView(s.v);
    if (s.rows === 1 && s.pos0 > 0) {
      // decode: pruned past rows, the exact current token
      this.attendDecode(s, b.hostView(s.q), k, v, b.hostView(s.att));
      b.kvWrite(this.backendCache, s.layer, s.k, s.v, s.pos0);
    } else {
      b.kvWrite(this.backendCache, s.layer, s.k, s.v, s.pos0);
      b.attention(s.att, s.q, this.backendCache, s.layer, s.pos0, s.heads);
    }
    this.append(this.k[s.layer]!, k, s.rows, this.sk);
    this.append(this.v[s.layer]!, v, s.rows, this.sv);
    if (s.layer === this.layers - 1) this.written = s.pos0 + s.rows;
  }

  /** Prunes and appends `rows` token rows of K or V ([rows, kvHeads·d]). */
  private append(store: SparseRows, x: Float32Array, rows: number, sparsity: number): void {
    const d = this.headDim, H = this.kvHeads, width = H * d;
    if (this.mode !== "row" && Number.isNaN(store.tau[0]!)) {
      // the first step written (the prefill) fixes the thresholds
      if (this.mode === "layer") store.tau.fill(magnitudeThreshold(x.subarray(0, rows * width), sparsity));
      else {
        for (let g = 0; g < H; g++) {
          const part = new Float32Array(rows * d);
          for (let r = 0; r < rows; r++) part.set(x.subarray(r * width + g * d, r * width + (g + 1) * d), r * d);
          store.tau[g] = magnitudeThreshold(part, sparsity);
        }
      }
    }
    const keepCount = Math.ceil((1 - sparsity) * d);
    const sorted = new Float32Array(d);
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < H; g++) {
        const off = r * width + g * d;
        let tau = store.tau[g]!;
        if (this.mode === "row") {
          // the keepCount-th largest |·| of the row; ties at it are kept
          for (let j = 0; j < d; j++) sorted[j] = Math.abs(x[off + j]!);
          sorted.sort();
          tau = keepCount === 0 ? Infinity : sorted[d - keepCount]!;
        }
        store.append(x, off, d, (val) => Math.abs(val) >= tau);
      }
    }
  }

  /** One decode row: scores over pruned K rows (t < pos) and the exact current k; output from pruned V and the exact v. */
  private attendDecode(s: KvStep, q: Float32Array, kNow: Float32Array, vNow: Float32Array, out: Float32Array): void {
    const d = this.headDim, H = this.kvHeads, heads = s.heads, group = heads / H, len = s.pos0 + 1;
    const K = this.k[s.layer]!, V = this.v[s.layer]!;
    const scale = 1 / Math.sqrt(d);
    if (this.scores.length < len) this.scores = new Float32Array(Math.max(len, 2 * this.scores.length));
    const sc = this.scores;
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      const qo = h * d;
      let max = -Infinity;
      for (let t = 0; t < len; t++) {
        let acc = 0;
        if (t < s.pos0) {
          const row = t * H + g;
          let p = K.rowPtr[row]!;
          for (let w = 0; w < K.words; w++) {
            for (let m = K.masks[row * K.words + w]!; m !== 0; m &= m - 1) acc += q[qo + w * 32 + 31 - Math.clz32(m & -m)]! * K.values[p++]!;
          }
        } else {
          for (let i = 0; i < d; i++) acc += q[qo + i]! * kNow[g * d + i]!;
        }
        acc *= scale;
        sc[t] = acc;
        if (acc > max) max = acc;
      }
      let sum = 0;
      for (let t = 0; t < len; t++) {
        const e = Math.exp(sc[t]! - max);
        sc[t] = e;
        sum += e;
      }
      const oo = h * d;
      for (let i = 0; i < d; i++) out[oo + i] = 0;
      for (let t = 0; t < len; t++) {
        const a = sc[t]! / sum;
        if (t < s.pos0) {
          const row = t * H + g;
          let p = V.rowPtr[row]!;
          for (let w = 0; w < V.words; w++) {
            for (let m = V.masks[row * V.words + w]!; m !== 0; m &= m - 1) out[oo + w * 32 + 31 - Math.clz32(m & -m)]! += a * V.values[p++]!;
          }
        } else {
          for (let i = 0; i < d; i++) out[oo + i]! += a * vNow[g * d + i]!;
        }
      }
    }
  }

  /** Sparse cache bytes: mask words, packed f32 values and a u32 row pointer per (token, kv head) row, K and V. */
  bytes(): number {
    let total = 0;
    for (const rows of [...this.k, ...this.v]) total += rows.rows * (rows.words * 4 + 4) + rows.nnz * 4;
    return total;
  }

  /** Realised sparsity per layer of K and V (zeros / entries stored so far). */
  realised(): { k: number[]; v: number[] } {
    const f = (r: SparseRows) => (r.rows === 0 ? 0 : 1 - r.nnz / (r.rows * this.headDim));
    return { k: this.k.map(f), v: this.v.map(f) };
  }

  /** Token t, kv head g of `layer` decoded to dense (tests). */
  row(which: "k" | "v", layer: number, t: number, g: number): Float32Array {
    const r = (which === "k" ? this.k : this.v)[layer]!;
    const row = t * this.kvHeads + g;
    const out = new Float32Array(this.headDim);
    let p = r.rowPtr[row]!;
    for (let w = 0; w < r.words; w++) for (let m = r.masks[row * r.words + w]!; m !== 0; m &= m - 1) out[w * 32 + 31 - Math.clz32(m & -m)] = r.values[p++]!;
    return out;
  }

  threshold(which: "k" | "v", layer: number, g = 0): number {
    return (which === "k" ? this.k : this.v)[layer]!.tau[g]!;
  }
}

const PARAMS: readonly KvParam[] = [
  { name: "k", summary: "percent of K entries pruned (0..99)", kind: "int", min: 0, default: 50 },
  { name: "v", summary: "percent of V entries pruned (0..99)", kind: "int", min: 0, default: 50 },
];

function sparseMethod(name: string, mode: KvThresholdMode, summary: string): KvMethod {
  return {
    name,
    summary,
    params: PARAMS,
    create: (p, spec) => {
      for (const key of ["k", "v"]) if (p[key]! > 99) throw new Error(`--kv ${spec}: ${key}=${p[key]} must be at most 99 (percent pruned)`);
      return (ctx) => new SparseKvStore(ctx, spec, p["k"]! / 100, p["v"]! / 100, mode);
    },
  };
}

export const sparseKvMethods: readonly KvMethod[] = [
  sparseMethod("sparse", "layer", "magnitude-pruned K/V (SparAMX), one threshold per layer from the prefill; k, v = percent pruned"),
  sparseMethod("sparse-head", "head", "magnitude-pruned K/V, one threshold per layer and KV head"),
  sparseMethod("sparse-row", "row", "magnitude-pruned K/V, the largest (1 - s)·d entries of every token row"),
];
