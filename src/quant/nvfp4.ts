/**
 * NVFP4 (spec §4.1): FP4 E2M1 codes in blocks of 16 with an E4M3 block scale and an f32 tensor scale.
 * g = max|W|/(6·448); per block x = w/g, s_b = E4M3_RNE(clamp(max|x|/6, 2^-9, 448)), codes = nearest E2M1 of
 * x/s_b with exact midpoints away from zero (the reference mantissa rounding); zero is stored as +0.
 * The scale is rounded before the codes are chosen (spec §5 quirk 9 avoided).
 *
 * Layout: codes as in Nibbles (rows padded to whole blocks with code 0x0); scales one E4M3 byte per
 * (row, block); tensorScale = g. 4 + 8/16 = 4.5 bits a weight (plus 32 bits a tensor). Decoded
 * w = g·s_b·v(c), the f64 product (exact) rounded once to f32.
 */
import type { Codebook } from "./codebook.js";
import { FP4_CODEBOOK } from "./fp4.js";
import { CLIP_RATIOS, Nibbles, nibbleBytes, absMax, checkPacked, checkShape, groupsPerRow, type PackOptions, type PackedTensor, type QuantFormat } from "./format.js";
import { e2m1Value, e4m3Round, e4m3Value } from "./minifloat.js";

const NAME = "nvfp4";
const G = 16;

/**
 * Index of the level nearest to t with exact midpoints away from zero: for t ≥ 0 a midpoint goes up, for
 * t < 0 down (count of midpoints ≤ t, or < t).
 */
export function nearestAway(cb: Codebook, t: number): number {
  let k = 0;
  const mids = cb.mids;
  if (t >= 0) while (k < mids.length && mids[k]! <= t) k++;
  else while (k < mids.length && mids[k]! < t) k++;
  return k;
}

/** The NVFP4 format. */
export const nvfp4Format: QuantFormat = {
  name: NAME,
  description: "FP4 E2M1 codes, an E4M3 scale per 16 weights and an f32 scale per tensor",
  groupSize: G,
  bitsPerWeight: (cols) => (groupsPerRow(cols, G) * (4 * G + 8)) / cols,
  layout: (rows, cols) => ({ codeBytes: nibbleBytes(rows, cols, G), scaleBytes: rows * groupsPerRow(cols, G) }),
  pack: packNvfp4,
  unpack: unpackNvfp4,
};


function packNvfp4(w: Float32Array, rows: number, cols: number, options: PackOptions = {}): PackedTensor {
  checkShape(NAME, w, rows, cols);
  const ng = groupsPerRow(cols, G);
  const maxAbs = absMax(w, 0, w.length);
  const g = maxAbs > 0 ? Math.fround(maxAbs / (6 * 448)) : 1;
  const codes = new Nibbles(rows, cols, G, 0);
  const scales = new Uint8Array(rows * ng);
  const cb = FP4_CODEBOOK;
  const idx = new Uint8Array(G), bestIdx = new Uint8Array(G);
  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < ng; gi++) {
      const start = r * cols + gi * G, end = Math.min(start + G, (r + 1) * cols);
      const amaxX = absMax(w, start, end) / g;
      let bestErr = Infinity, bestScale = 0;
      for (const ratio of options.clip ? CLIP_RATIOS : [1]) {
        const bound = ratio * amaxX;
        const sb = e4m3Round(Math.min(448, Math.max(2 ** -9, bound / 6)));
        const s = e4m3Value(sb);
        let err = 0;
        for (let i = start; i < end; i++) {
          const x = w[i]! / g;
          const k = nearestAway(cb, Math.min(bound, Math.max(-bound, x)) / s);
          idx[i - start] = k;
          const d = Math.fround(g * s * cb.levels[k]!) - w[i]!;
          err += d * d;
        }
        if (err < bestErr) {
          bestErr = err;
          bestScale = sb;
          bestIdx.set(idx);
        }
      }
      scales[r * ng + gi] = bestScale;
      for (let i = 0; i < end - start; i++) codes.set(r, gi * G + i, cb.codes[bestIdx[i]!]!);
    }
  }
  return { format: NAME, rows, cols, groupSize: G, codes: codes.bytes, scales, tensorScale: g };
}

function unpackNvfp4(p: PackedTensor): Float32Array {
  const ng = groupsPerRow(p.cols, G);
  const codes = new Nibbles(p.rows, p.cols, G, 0, p.codes);
  checkPacked(NAME, p, p.rows * codes.bytesPerRow, p.rows * ng);
  const out = new Float32Array(p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) {
    for (let k = 0; k < p.cols; k++) out[r * p.cols + k] = p.tensorScale * e4m3Value(p.scales[r * ng + Math.floor(k / G)]!) * e2m1Value(codes.get(r, k));
  }
  return out;
}
