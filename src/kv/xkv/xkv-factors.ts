/**
 * xKV's compressed prompt (spec xkv.md §3.1–3.3): the pre-RoPE keys and the values of G consecutive layers
 * stacked side by side (layer-major, then head, then dim), one truncated SVD per group, a shared token basis
 * A = U_r Σ_r [T][r] per group and per layer/head blocks of B = V_rᵀ.
 */
import { truncatedSvd } from "./svd.js";

export interface XkvShape {
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

export interface XkvRanks {
  /** Layers per group (1 = per-layer SVD). */
  readonly group: number;
  /** Ranks of a full group; a short last group gets them scaled by |g|/G (rounded, at least 1). */
  readonly rankK: number;
  readonly rankV: number;
}

/** One factor pair of a group: A [T][rank] and, per layer of the group and kv head, B's block [rank][headDim]. */
export interface FactorPair {
  readonly rank: number;
  readonly a: Float32Array;
  /** [layer in group][kv head] -> [rank][headDim] */
  readonly b: Float32Array[][];
}

export interface XkvGroup {
  readonly firstLayer: number;
  readonly size: number;
  readonly k: FactorPair;
  readonly v: FactorPair;
}

export interface XkvPrompt {
  /** Prompt positions compressed. */
  readonly tokens: number;
  readonly groups: readonly XkvGroup[];
  /** groupOf[layer] = index into groups. */
  readonly groupOf: Int32Array;
}

/** Ranks of group g (size |g|) before clamping to min(T, D). */
export function groupRanks(r: XkvRanks, size: number): { k: number; v: number } {
  if (size === r.group) return { k: r.rankK, v: r.rankV };
  return { k: Math.max(1, Math.round((r.rankK * size) / r.group)), v: Math.max(1, Math.round((r.rankV * size) / r.group)) };
}

/**
 * Compresses the prompt: kPre[l] and v[l] hold positions [0, T) of layer l as [position][kvHeads * headDim]
 * (keys BEFORE RoPE). Deterministic (the SVD has no random start and a sign convention).
 */
export function compressPrompt(shape: XkvShape, ranks: XkvRanks, T: number, kPre: readonly Float32Array[], v: readonly Float32Array[]): XkvPrompt {
  const groups: XkvGroup[] = [];
  const groupOf = new Int32Array(shape.layers);
  for (let l0 = 0; l0 < shape.layers; l0 += ranks.group) {
    const size = Math.min(ranks.group, shape.layers - l0);
    const r = groupRanks(ranks, size);
    for (let j = 0; j < size; j++) groupOf[l0 + j] = groups.length;
    groups.push({
      firstLayer: l0, size,
      k: factor(shape, T, kPre.slice(l0, l0 + size), r.k),
      v: factor(shape, T, v.slice(l0, l0 + size), r.v),
    });
  }
  return { tokens: T, groups, groupOf };
}

function factor(shape: XkvShape, T: number, layers: readonly Float32Array[], rank: number): FactorPair {
  const width = shape.kvHeads * shape.headDim;
  const D = layers.length * width;
  const x = new Float32Array(T * D);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < layers.length; j++) x.set(layers[j]!.subarray(t * width, (t + 1) * width), t * D + j * width);
  }
  const svd = truncatedSvd(x, T, D, rank);
  const r = svd.rank;
  const d = shape.headDim;
  const b: Float32Array[][] = [];
  for (let j = 0; j < layers.length; j++) {
    const heads: Float32Array[] = [];
    for (let h = 0; h < shape.kvHeads; h++) {
      const blk = new Float32Array(r * d);
      const col0 = j * width + h * d;
      for (let m = 0; m < r; m++) for (let i = 0; i < d; i++) blk[m * d + i] = svd.b[m * D + col0 + i]!;
      heads.push(blk);
    }
    b.push(heads);
  }
  return { rank: r, a: Float32Array.from(svd.a), b };
}

/** Bytes the factors occupy (A per group, B per layer; f32). */
export function promptBytes(p: XkvPrompt, shape: XkvShape): number {
  let elements = 0;
  for (const g of p.groups) {
    elements += p.tokens * (g.k.rank + g.v.rank);
    elements += g.size * shape.kvHeads * shape.headDim * (g.k.rank + g.v.rank);
  }
  return elements * 4;
}

/**
 * The authors' element count (spec §3.3), generalised to a short last group: Σ_g T·(r_k + r_v) +
 * Σ_l H_kv·d·(r_k + r_v of l's group), ranks clamped to min(T, D_g).
 */
export function formulaElements(shape: XkvShape, ranks: XkvRanks, T: number): number {
  let e = 0;
  for (let l0 = 0; l0 < shape.layers; l0 += ranks.group) {
    const size = Math.min(ranks.group, shape.layers - l0);
    const D = size * shape.kvHeads * shape.headDim;
    const r = groupRanks(ranks, size);
    const rk = Math.min(r.k, T, D), rv = Math.min(r.v, T, D);
    e += T * (rk + rv) + size * shape.kvHeads * shape.headDim * (rk + rv);
  }
  return e;
}
