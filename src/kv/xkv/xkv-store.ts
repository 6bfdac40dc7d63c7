/**
 * The xKV and per-layer SVD KV methods (spec xkv.md). Prefill runs exact attention over a staging copy of
 * the prompt's K/V (post-RoPE for attention, pre-RoPE keys for the SVD). The prompt is compressed ONCE, at
 * the first one-row (decode) step of a sequence, i.e. every position before it is "the prompt" (so a
 * one-token prompt is compressible too, and no later multi-row chunk is ever re-compressed: the reference's
 * `q_len > 1` quirk). After that the staging arrays are dropped; positions from then on are appended exactly
 * to a per-layer recent buffer, and attention reads the factors (storage mode, src/kv/xkv/xkv-attention.ts)
 * or, with reference=1, a dense reconstruction (the reference mode: exact ground truth, saves nothing).
 */
import type { KvContext, KvMethod, KvStep, KvStore } from "../store.js";
import { attendRow } from "../host-attention.js";
import { compressPrompt, promptBytes, type XkvPrompt, type XkvRanks } from "./xkv-factors.js";
import { attendCompressed, type HostRope } from "./xkv-attention.js";
import { XkvDeviceStore } from "./xkv-device-store.js";

export class XkvStore implements KvStore {
  readonly batchable = false;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  private readonly width: number;
  private readonly rope: HostRope;
  /** Staging of the exact prompt per layer [position][width] until compression. */
  private stageKPre: Float32Array[] = [];
  private stageK: Float32Array[] = [];
  private stageV: Float32Array[] = [];
  private prompt?: XkvPrompt;
  /** Positions [T, ...) exactly, per layer (post-RoPE keys). */
  private recentK: Float32Array[] = [];
  private recentV: Float32Array[] = [];
  /** Reference mode: the dense reconstruction followed by the exact recent rows, per layer. */
  private denseK: Float32Array[] = [];
  private denseV: Float32Array[] = [];
  private written = 0;
  /** Milliseconds the last compression took (SVD included), for benchmarks. */
  compressMs = 0;

  constructor(private readonly ctx: KvContext, readonly spec: string, private readonly ranks: XkvRanks, private readonly reference: boolean) {
    this.layers = ctx.layers;
    this.kvHeads = ctx.kvHeads;
    this.headDim = ctx.headDim;
    this.capacity = ctx.capacity;
    this.width = ctx.kvHeads * ctx.headDim;
    const r = ctx.rope as Partial<HostRope>;
    if (!(r.cos instanceof Float32Array) || !(r.sin instanceof Float32Array) || typeof r.half !== "number") {
      throw new Error(`--kv ${spec}: needs a host RoPE table (the CPU backend); the ${ctx.backend.kind} backend keeps it on the device`);
    }
    this.rope = r as HostRope;
  }

  get length(): number {
    return this.written;
  }

  /** The compressed prompt (after the first decode step), for tests and tools. */
  get compressed(): XkvPrompt | undefined {
    return this.prompt;
  }

  step(s: KvStep): void {
    const b = this.ctx.backend;
    if (!b.hostView) throw new Error(`--kv ${this.spec}: computes on the host; the ${b.kind} backend keeps tensors on the device (use the CPU backend)`);
    if (s.pos0 === 0 && s.layer === 0) this.reset();
    if (s.layer === 0 && s.pos0 !== this.written) throw new Error(`--kv ${this.spec}: write at position ${s.pos0} but ${this.written} are cached (positions must follow on)`);
    if (s.pos0 + s.rows > this.capacity) throw new Error(`KV cache full: ${s.pos0 + s.rows} positions > capacity ${this.capacity}`);
    if (!this.prompt && s.rows === 1 && s.pos0 > 0 && s.layer === 0) this.compress(s.pos0);
    const w = this.width;
    const cols = s.heads * this.headDim;
    const q = b.hostView(s.q), out = b.hostView(s.att);
    if (!this.prompt) {
      const l = s.layer;
      this.ensureStage(s.pos0 + s.rows);
      this.stageKPre[l]!.set(b.hostView(s.k).subarray(0, s.rows * w), s.pos0 * w);
      s.rope(s.k);
      this.stageK[l]!.set(b.hostView(s.k).subarray(0, s.rows * w), s.pos0 * w);
      this.stageV[l]!.set(b.hostView(s.v).subarray(0, s.rows * w), s.pos0 * w);
      const kv = { k: this.stageK[l]!, v: this.stageV[l]!, width: w, headDim: this.headDim };
      for (let r = 0; r < s.rows; r++) attendRow(q, r * cols, kv, s.heads, s.pos0 + r + 1, out, r * cols);
    } else {
      const T = this.prompt.tokens;
      s.rope(s.k);
      const k = b.hostView(s.k).subarray(0, s.rows * w), v = b.hostView(s.v).subarray(0, s.rows * w);
      if (this.reference) {
        this.denseK[s.layer]!.set(k, s.pos0 * w);
        this.denseV[s.layer]!.set(v, s.pos0 * w);
        const kv = { k: this.denseK[s.layer]!, v: this.denseV[s.layer]!, width: w, headDim: this.headDim };
        for (let r = 0; r < s.rows; r++) attendRow(q, r * cols, kv, s.heads, s.pos0 + r + 1, out, r * cols);
      } else {
        this.recentK[s.layer]!.set(k, (s.pos0 - T) * w);
        this.recentV[s.layer]!.set(v, (s.pos0 - T) * w);
        attendCompressed(
          { prompt: this.prompt, layer: s.layer, kvHeads: this.kvHeads, headDim: this.headDim, rope: this.rope, recentK: this.recentK[s.layer]!, recentV: this.recentV[s.layer]! },
          q, s.rows, s.pos0, s.heads, out,
        );
      }
    }
    if (s.layer === this.layers - 1) this.written = s.pos0 + s.rows;
  }

  private reset(): void {
    this.prompt = undefined;
    this.stageKPre = [];
    this.stageK = [];
    this.stageV = [];
    this.recentK = [];
    this.recentV = [];
    this.denseK = [];
    this.denseV = [];
    this.written = 0;
  }

  /** Grows the staging arrays (prompt lengths are unknown in advance; prefill may come in chunks). */
  private ensureStage(positions: number): void {
    const have = this.stageK[0] ? this.stageK[0].length / this.width : 0;
    if (have >= positions) return;
    const n = Math.min(this.capacity, Math.max(positions, 2 * have, 64)) * this.width;
    const grow = (xs: Float32Array[]) => Array.from({ length: this.layers }, (_, l) => {
      const a = new Float32Array(n);
      if (xs[l]) a.set(xs[l]!);
      return a;
    });
    this.stageKPre = grow(this.stageKPre);
    this.stageK = grow(this.stageK);
    this.stageV = grow(this.stageV);
  }

  private compress(T: number): void {
    const t0 = performance.now();
    const w = this.width;
    const shape = { layers: this.layers, kvHeads: this.kvHeads, headDim: this.headDim };
    const kPre = this.stageKPre.map((a) => a.subarray(0, T * w));
    const v = this.stageV.map((a) => a.subarray(0, T * w));
    this.prompt = compressPrompt(shape, this.ranks, T, kPre, v);
    const rest = (this.capacity - T) * w;
    if (this.reference) {
      const rec = reconstruct(this.prompt, shape, this.rope);
      for (let l = 0; l < this.layers; l++) {
        const k = new Float32Array(this.capacity * w), vv = new Float32Array(this.capacity * w);
        k.set(rec.k[l]!);
        vv.set(rec.v[l]!);
        this.denseK.push(k);
        this.denseV.push(vv);
      }
    } else {
      for (let l = 0; l < this.layers; l++) {
        this.recentK.push(new Float32Array(rest));
        this.recentV.push(new Float32Array(rest));
      }
    }
    this.stageKPre = [];
    this.stageK = [];
    this.stageV = [];
    this.compressMs = performance.now() - t0;
  }

  /**
   * Resident K/V bytes: the factors and the recent rows written so far (storage mode); before compression
   * the exact staging rows; in reference mode the dense reconstruction (it saves nothing).
   */
  bytes(): number {
    const rowBytes = 2 * this.width * 4 * this.layers;
    if (!this.prompt) return this.written * rowBytes;
    if (this.reference) return this.written * rowBytes;
    return promptBytes(this.prompt, this) + (this.written - this.prompt.tokens) * rowBytes;
  }
}

/** The dense reconstruction K̂_l = RoPE(A_K·B_K^(l)) and V̂_l = A_V·B_V^(l), [position][width] per layer. */
export function reconstruct(p: XkvPrompt, shape: { layers: number; kvHeads: number; headDim: number }, rope: HostRope): { k: Float32Array[]; v: Float32Array[] } {
  const d = shape.headDim, w = shape.kvHeads * d, T = p.tokens, half = d / 2;
  const k: Float32Array[] = [], v: Float32Array[] = [];
  for (let l = 0; l < shape.layers; l++) {
    const g = p.groups[p.groupOf[l]!]!;
    const j = l - g.firstLayer;
    const K = new Float32Array(T * w), V = new Float32Array(T * w);
    const tmp = new Float64Array(d);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < shape.kvHeads; h++) {
        for (const [pair, out, rotate] of [[g.k, K, true], [g.v, V, false]] as const) {
          tmp.fill(0);
          const blk = pair.b[j]![h]!;
          for (let m = 0; m < pair.rank; m++) {
            const a = pair.a[t * pair.rank + m]!;
            for (let i = 0; i < d; i++) tmp[i] += a * blk[m * d + i]!;
          }
          const o = t * w + h * d;
          if (rotate) {
            for (let i = 0; i < half; i++) {
              const cs = rope.cos[t * rope.half + i]!, sn = rope.sin[t * rope.half + i]!;
              out[o + i] = tmp[i]! * cs - tmp[i + half]! * sn;
              out[o + i + half] = tmp[i + half]! * cs + tmp[i]! * sn;
            }
          } else {
            for (let i = 0; i < d; i++) out[o + i] = tmp[i]!;
          }
        }
      }
    }
    k.push(K);
    v.push(V);
  }
  return { k, v };
}

const RANK_K = { name: "rankK", summary: "key rank per group (clamped to min(T, D))", kind: "int" } as const;
const RANK_V = { name: "rankV", summary: "value rank per group (clamped to min(T, D))", kind: "int" } as const;
const REFERENCE = { name: "reference", summary: "1: store the dense reconstruction (accuracy reference, saves nothing)", kind: "int", default: 0, min: 0 } as const;

function checkReference(p: Readonly<Record<string, number>>, spec: string): boolean {
  if (p.reference! > 1) throw new Error(`--kv ${spec}: reference must be 0 or 1`);
  return p.reference === 1;
}

/** The host store where tensors are host memory (CPU), the device store where the backend has device xKV (WebGPU). */
function makeStore(ctx: KvContext, spec: string, ranks: XkvRanks, reference: boolean): KvStore {
  if (ctx.backend.hostView || !ctx.backend.xkvOps) return new XkvStore(ctx, spec, ranks, reference);
  if (reference) throw new Error(`--kv ${spec}: reference=1 (the dense reconstruction) runs on the CPU backend only`);
  return new XkvDeviceStore(ctx, spec, ranks);
}

export const xkvMethod: KvMethod = {
  name: "xkv",
  summary: "cross-layer SVD: pre-RoPE keys and values of G layers share one token basis per group (decode tokens exact)",
  params: [{ name: "group", summary: "layers per group G", kind: "int", default: 4 }, RANK_K, RANK_V, REFERENCE],
  create: (p, spec) => {
    const reference = checkReference(p, spec);
    return (ctx) => makeStore(ctx, spec, { group: p.group!, rankK: p.rankK!, rankV: p.rankV! }, reference);
  },
};

export const svdMethod: KvMethod = {
  name: "svd",
  summary: "per-layer SVD of pre-RoPE keys and values (xKV with G = 1; decode tokens exact)",
  params: [RANK_K, RANK_V, REFERENCE],
  create: (p, spec) => {
    const reference = checkReference(p, spec);
    return (ctx) => makeStore(ctx, spec, { group: 1, rankK: p.rankK!, rankV: p.rankV! }, reference);
  },
};
