/**
 * A cache whose attention runs on the host (CPU backend): the f32 cache stays the backend's own (written
 * with kvWrite, read through backend.kvView) while a quantized cache keeps codes here and dequantizes the
 * rows attention reads, per step, into a transient per-layer scratch. Keys and values (and layer 0) may
 * each have their own format (a mixed `--kv-format`), so a layer's position row is its K heads at the K
 * codec's bytes then its V heads at the V codec's. An optional selection policy
 * chooses, at each decode step of layers >= 1 (>= its firstLayer), which positions each query head attends to.
 *
 * Exactness: prefill rows (a multi-row step), layer 0 (unless the policy's firstLayer is 0), and decode steps whose selection is every position
 * run the dense attention (the backend's op over f32; the host loop over dequantized rows), so keep = 1 is
 * bit-identical to dense and the first generated token is dense's at any budget.
 */
import type { KVCache } from "../backend/backend.js";
import type { KvContext, KvStep, KvStore } from "./store.js";
import { type KvFormat, kvCodecs } from "./format.js";
import { attendRow, type LayerKv } from "./host-attention.js";
import { KvSelection } from "./selection.js";

/** What a selection policy sees and decides; one instance per sequence. */
export interface SelectionPolicy {
  /** A new sequence starts (position 0 is being written). */
  reset(): void;
  /**
   * Every step, before attention: the layer's normed input rows (host f32 [rows, hidden]) at positions
   * pos0.. (TokenButler's predictor reads layer 0's).
   */
  input?(layer: number, pos0: number, rows: number, h: Float32Array): void;
  /**
   * After the exact attention of prefill rows pos0 .. pos0 + rows - 1 of `layer` (q: those rows' queries,
   * host f32 [rows, heads * headDim]); kv holds positions up to pos0 + rows - 1.
   */
  prefill?(layer: number, pos0: number, rows: number, q: Float32Array, kv: LayerKv): void;
  /**
   * Chooses head h's positions for the decode query at `pos` of `layer` (>= 1) into sel (ascending).
   * Returns false when every head attends to every position (the dense path runs).
   */
  select(layer: number, pos: number, q: Float32Array, kv: LayerKv, sel: KvSelection): boolean;
  /** Whether `observe` wants the attention probabilities of the selected positions. */
  readonly wantsProbs: boolean;
  /** After a selected decode attention: probs[h * sel.stride + j] for sel's j-th position of head h. */
  observe?(layer: number, pos: number, sel: KvSelection, probs: Float32Array): void;
  /**
   * Whether dropped positions never return (H2O, SnapKV, StreamingLLM): then only the union, per kv head, of
   * the last selection is resident and bytes() counts that; otherwise the whole cache stays resident.
   */
  readonly evicts: boolean;
  /** Extra bytes of method metadata (Quest's page bounds). */
  metadataBytes?(): number;
  /**
   * The first layer whose decode steps the policy selects for (default 1: layer 0 attends to every position,
   * the baseline rules' convention; StreamingLLM's `dense0=0` selects in layer 0 too).
   */
  readonly firstLayer?: number;
}

export function createHostStore(ctx: KvContext, spec: string, policy: SelectionPolicy | undefined): HostStore {
  return new HostStore(ctx, spec, policy);
}

export class HostStore implements KvStore {
  readonly batchable = false;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  /** The backend's cache (f32 format only). */
  readonly backendCache?: KVCache;
  /** Per layer: the K and V codecs (quantized formats only; a mixed format may differ by layer and part). */
  private readonly codecK: KvFormat[] = [];
  private readonly codecV: KvFormat[] = [];
  /** Per layer: bytes of one position's row (K heads then V heads), and where the layer's rows start. */
  private readonly rowBytes: number[] = [];
  private readonly layerBase: number[] = [];
  /** Quantized rows [layer][position][K heads, V heads] (quantized formats only). */
  private readonly codes?: Uint8Array;
  private scratchK?: Float32Array;
  private scratchV?: Float32Array;
  private readonly sel: KvSelection;
  private readonly probs: Float32Array;
  private written = 0;
  /** Per layer: (position, kv head) rows an evicting policy's last selection keeps; -1 before any. */
  private readonly resident: Int32Array;
  /** Decode steps whose attention used a strict subset, and positions attended over all heads and layers. */
  readonly usage = { selectedSteps: 0, attended: 0, visible: 0 };

  constructor(private readonly ctx: KvContext, readonly spec: string, private readonly policy: SelectionPolicy | undefined) {
    this.layers = ctx.layers;
    this.kvHeads = ctx.kvHeads;
    this.headDim = ctx.headDim;
    this.capacity = ctx.capacity;
    if (ctx.format === "f32") {
      this.backendCache = ctx.backend.kvCache(ctx.layers, ctx.kvHeads, ctx.headDim, ctx.capacity);
      for (let l = 0; l < ctx.layers; l++) this.rowBytes.push(2 * ctx.kvHeads * ctx.headDim * 4);
    } else {
      // a device backend runs its own KV formats through DenseStore and the device stores; the rest (int4g64,
      // the 3-bit formats) exist only as host codecs, so refuse them here, when the cache is made
      const b = ctx.backend;
      if (!b.hostView) throw new Error(`--kv ${spec} --kv-format ${ctx.format}: ${ctx.format} is a CPU-only KV format; the ${b.kind} backend stores KV as f32${b.kvFormats?.length ? `, ${b.kvFormats.join(", ")}` : ""} (use the CPU backend)`);
      const c = kvCodecs(ctx.format);
      let base = 0;
      for (let l = 0; l < ctx.layers; l++) {
        this.codecK.push(l === 0 ? c.k0 : c.k);
        this.codecV.push(l === 0 ? c.v0 : c.v);
        this.rowBytes.push(ctx.kvHeads * (this.codecK[l]!.headBytes(ctx.headDim) + this.codecV[l]!.headBytes(ctx.headDim)));
        this.layerBase.push(base);
        base += ctx.capacity * this.rowBytes[l]!;
      }
      this.codes = new Uint8Array(base);
    }
    this.sel = new KvSelection(ctx.heads, ctx.capacity);
    this.probs = new Float32Array(ctx.heads * ctx.capacity);
    this.resident = new Int32Array(ctx.layers).fill(-1);
  }

  get length(): number {
    return this.written;
  }

  /** The last decode step's selection (valid after a step whose attention used one; tests and tools). */
  get selection(): KvSelection {
    return this.sel;
  }

  step(s: KvStep): void {
    const b = this.ctx.backend;
    if (!b.hostView || !b.kvView) {
      throw new Error(`--kv ${this.spec} --kv-format ${this.ctx.format}: this store computes on the host and the ${b.kind} backend keeps tensors on the device; it runs only --kv dense --kv-format f32 (see docs/kv-cache.md)`);
    }
    if (s.pos0 === 0 && s.layer === 0) {
      this.policy?.reset();
      this.written = 0;
      this.resident.fill(-1);
    }
    if (s.pos0 !== this.written && s.layer === 0) throw new Error(`--kv ${this.spec}: write at position ${s.pos0} but ${this.written} are cached (positions must follow on)`);
    this.policy?.input?.(s.layer, s.pos0, s.rows, b.hostView(s.h));
    s.rope(s.k);
    const len = s.pos0 + s.rows;
    if (this.backendCache) b.kvWrite(this.backendCache, s.layer, s.k, s.v, s.pos0);
    else this.writeCodes(s.layer, s.pos0, s.rows, b.hostView(s.k), b.hostView(s.v));
    const kv = this.layerKv(s.layer, len);
    const q = b.hostView(s.q);
    const decode = s.rows === 1 && this.policy !== undefined && s.layer >= (this.policy.firstLayer ?? 1);
    if (decode && this.policy!.select(s.layer, s.pos0, q, kv, this.sel)) {
      const out = b.hostView(s.att);
      const probs = this.policy!.wantsProbs ? this.probs : undefined;
      attendRow(q, 0, kv, s.heads, len, out, 0, this.sel, probs, this.sel.stride);
      if (probs) this.policy!.observe?.(s.layer, s.pos0, this.sel, probs);
      if (this.policy!.evicts) this.resident[s.layer] = this.unionRows(s.heads, len);
      this.usage.selectedSteps++;
      for (let h = 0; h < s.heads; h++) this.usage.attended += this.sel.counts[h]!;
    } else {
      this.attendDense(s, q, kv);
      if (decode) this.usage.attended += s.heads * len;
    }
    if (decode) this.usage.visible += s.heads * len;
    if (s.rows > 1 && this.policy?.prefill) this.policy.prefill(s.layer, s.pos0, s.rows, q, kv);
    if (s.layer === this.layers - 1) this.written = len;
  }

  private attendDense(s: KvStep, q: Float32Array, kv: LayerKv): void {
    const b = this.ctx.backend;
    if (this.backendCache) {
      b.attention(s.att, s.q, this.backendCache, s.layer, s.pos0, s.heads);
      return;
    }
    const out = b.hostView!(s.att);
    const cols = s.heads * this.headDim;
    for (let r = 0; r < s.rows; r++) attendRow(q, r * cols, kv, s.heads, s.pos0 + r + 1, out, r * cols);
  }

  /** K/V of `layer` for positions [0, len): the backend's rows, or the codes dequantized into scratch. */
  private layerKv(layer: number, len: number): LayerKv {
    const width = this.kvHeads * this.headDim;
    if (this.backendCache) {
      const { k, v } = this.ctx.backend.kvView!(this.backendCache, layer);
      return { k, v, width, headDim: this.headDim };
    }
    if (!this.scratchK || this.scratchK.length < this.capacity * width) {
      this.scratchK = new Float32Array(this.capacity * width);
      this.scratchV = new Float32Array(this.capacity * width);
    }
    const K = this.scratchK, V = this.scratchV!;
    const ck = this.codecK[layer]!, cv = this.codecV[layer]!;
    const d = this.headDim, H = this.kvHeads, kb = ck.headBytes(d), vb = cv.headBytes(d);
    for (let t = 0; t < len; t++) {
      const base = this.rowOffset(layer, t);
      for (let g = 0; g < H; g++) {
        ck.decode(this.codes!, base + g * kb, d, K, t * width + g * d);
        cv.decode(this.codes!, base + H * kb + g * vb, d, V, t * width + g * d);
      }
    }
    return { k: K, v: V, width, headDim: d };
  }

  private rowOffset(layer: number, pos: number): number {
    return this.layerBase[layer]! + pos * this.rowBytes[layer]!;
  }

  private writeCodes(layer: number, pos0: number, rows: number, k: Float32Array, v: Float32Array): void {
    if (pos0 + rows > this.capacity) throw new Error(`KV cache full: ${pos0 + rows} positions > capacity ${this.capacity}`);
    const d = this.headDim, H = this.kvHeads, width = H * d;
    const ck = this.codecK[layer]!, cv = this.codecV[layer]!, kb = ck.headBytes(d), vb = cv.headBytes(d);
    for (let r = 0; r < rows; r++) {
      const base = this.rowOffset(layer, pos0 + r);
      for (let g = 0; g < H; g++) {
        ck.encode(k, r * width + g * d, d, this.codes!, base + g * kb);
        cv.encode(v, r * width + g * d, d, this.codes!, base + H * kb + g * vb);
      }
    }
  }

  /** Rows the selection touches: per kv head the union of its query heads' lists. */
  private unionRows(heads: number, len: number): number {
    const group = heads / this.kvHeads;
    const mark = new Uint8Array(len);
    let rows = 0;
    for (let g = 0; g < this.kvHeads; g++) {
      mark.fill(0);
      for (let h = g * group; h < (g + 1) * group; h++) {
        const lo = h * this.sel.stride;
        for (let j = 0; j < this.sel.counts[h]!; j++) mark[this.sel.positions[lo + j]!] = 1;
      }
      for (let t = 0; t < len; t++) rows += mark[t]!;
    }
    return rows;
  }

  /** Resident K/V bytes: per layer the (position, kv head) rows kept (all, or what an evicting policy keeps) times their K and V bytes. */
  bytes(): number {
    let total = 0;
    for (let l = 0; l < this.layers; l++) {
      const kept = this.resident[l]!;
      total += ((kept >= 0 ? kept : this.written * this.kvHeads) * this.rowBytes[l]!) / this.kvHeads;
    }
    return total + (this.policy?.metadataBytes?.() ?? 0);
  }
}
