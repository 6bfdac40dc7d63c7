/**
 * Decode attention straight from xKV's factors (spec xkv.md §3.4, storage mode): per kv head, prompt keys
 * are rebuilt a tile at a time (pre-RoPE k_t = A_K[t,:]·B_K^(l,h), then rotated at position t), values are
 * never rebuilt (z = Σ p_t·A_V[t,:] is accumulated in the rank-r_v latent, o = z·B_V^(l,h)), and the exact
 * recent tokens join the same softmax. Transient memory: one tile of keys of one head.
 */
import type { XkvPrompt } from "./xkv-factors.js";

/** RoPE cos/sin per [position][pair], as the CPU backend's table holds them. */
export interface HostRope {
  readonly cos: Float32Array;
  readonly sin: Float32Array;
  readonly half: number;
}

const TILE = 64;

export interface CompressedLayer {
  readonly prompt: XkvPrompt;
  readonly layer: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly rope: HostRope;
  /** Exact post-RoPE keys and values of positions T, T+1, ... as [τ][kvHeads * headDim]. */
  readonly recentK: Float32Array;
  readonly recentV: Float32Array;
}

let scoreBuf = new Float64Array(0);
let tileBuf = new Float64Array(0);
let latentBuf = new Float64Array(0);

/**
 * out[r] = attention of query row r (post-RoPE, at position pos0 + r) over the compressed prompt and the
 * recent rows up to and including its own position. q and out are [rows][heads * headDim].
 */
export function attendCompressed(c: CompressedLayer, q: Float32Array, rows: number, pos0: number, heads: number, out: Float32Array): void {
  const { prompt, headDim: d, kvHeads, rope } = c;
  const T = prompt.tokens;
  const group = prompt.groups[prompt.groupOf[c.layer]!]!;
  const j = c.layer - group.firstLayer;
  const rk = group.k.rank, rv = group.v.rank;
  const aK = group.k.a, aV = group.v.a;
  const qPerKv = heads / kvHeads;
  const width = kvHeads * d;
  const cols = heads * d;
  const half = d / 2;
  const scale = 1 / Math.sqrt(d);
  const stride = pos0 + rows;
  const lanes = rows * qPerKv;
  if (scoreBuf.length < lanes * stride) scoreBuf = new Float64Array(lanes * stride);
  if (tileBuf.length < TILE * d) tileBuf = new Float64Array(TILE * d);
  if (latentBuf.length < rv) latentBuf = new Float64Array(rv);
  const scores = scoreBuf, tile = tileBuf, z = latentBuf;
  for (let g = 0; g < kvHeads; g++) {
    const bK = group.k.b[j]![g]!, bV = group.v.b[j]![g]!;
    // prompt scores, one tile of rebuilt keys at a time
    for (let t0 = 0; t0 < T; t0 += TILE) {
      const t1 = Math.min(T, t0 + TILE);
      for (let t = t0; t < t1; t++) {
        const kt = (t - t0) * d;
        for (let i = 0; i < d; i++) tile[kt + i] = 0;
        for (let m = 0; m < rk; m++) {
          const a = aK[t * rk + m]!;
          if (a === 0) continue;
          const bo = m * d;
          for (let i = 0; i < d; i++) tile[kt + i] += a * bK[bo + i]!;
        }
        const ro = t * rope.half;
        for (let i = 0; i < half; i++) {
          const cs = rope.cos[ro + i]!, sn = rope.sin[ro + i]!;
          const x = tile[kt + i]!, y = tile[kt + i + half]!;
          tile[kt + i] = x * cs - y * sn;
          tile[kt + i + half] = y * cs + x * sn;
        }
      }
      for (let r = 0; r < rows; r++) {
        for (let u = 0; u < qPerKv; u++) {
          const qo = r * cols + (g * qPerKv + u) * d;
          const so = (r * qPerKv + u) * stride;
          for (let t = t0; t < t1; t++) {
            const kt = (t - t0) * d;
            let s = 0;
            for (let i = 0; i < d; i++) s += q[qo + i]! * tile[kt + i]!;
            scores[so + t] = s * scale;
          }
        }
      }
    }
    for (let r = 0; r < rows; r++) {
      const len = pos0 + r + 1;
      for (let u = 0; u < qPerKv; u++) {
        const h = g * qPerKv + u;
        const qo = r * cols + h * d;
        const so = (r * qPerKv + u) * stride;
        for (let t = T; t < len; t++) {
          const ko = (t - T) * width + g * d;
          let s = 0;
          for (let i = 0; i < d; i++) s += q[qo + i]! * c.recentK[ko + i]!;
          scores[so + t] = s * scale;
        }
        let max = -Infinity;
        for (let t = 0; t < len; t++) if (scores[so + t]! > max) max = scores[so + t]!;
        let sum = 0;
        for (let t = 0; t < len; t++) {
          const e = Math.exp(scores[so + t]! - max);
          scores[so + t] = e;
          sum += e;
        }
        // values: the prompt's through the rank-r_v latent, the recent ones exactly
        for (let m = 0; m < rv; m++) z[m] = 0;
        for (let t = 0; t < T; t++) {
          const p = scores[so + t]! / sum;
          const ao = t * rv;
          for (let m = 0; m < rv; m++) z[m] += p * aV[ao + m]!;
        }
        const oo = r * cols + h * d;
        for (let i = 0; i < d; i++) {
          let o = 0;
          for (let m = 0; m < rv; m++) o += z[m]! * bV[m * d + i]!;
          out[oo + i] = o;
        }
        for (let t = T; t < len; t++) {
          const p = scores[so + t]! / sum;
          const vo = (t - T) * width + g * d;
          for (let i = 0; i < d; i++) out[oo + i] += p * c.recentV[vo + i]!;
        }
      }
    }
  }
}
