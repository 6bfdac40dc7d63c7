/**
 * NF4 (QLoRA's 4-bit NormalFloat) with one f16 absmax scale per group (default 64 weights, the bitsandbytes
 * block size): s = max|w| rounded to f16, code = index of the nearest of the 16 NF4 levels of w/s (exact
 * midpoints go to the lower level).
 *
 * Layout: codes as in Nibbles (rows padded to whole groups with code 7, the zero level); scales one f16
 * (u16 LE) per (row, group). 4 + 16/G bits a weight (4.25 at G = 64).
 */
import { f16Table } from "../tensor/half.js";
import { makeCodebook, quantizeGroup } from "./codebook.js";
import { f16Bits } from "./fp4.js";
import { CLIP_RATIOS, Nibbles, nibbleBytes, absMax, checkPacked, checkShape, groupsPerRow, type PackOptions, type PackedTensor, type QuantFormat } from "./format.js";

/** The standard NF4 levels by code (bitsandbytes / QLoRA, as listed in the spec §6), in f32. */
export const NF4_LEVELS: Float32Array = Float32Array.from([
  -1, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1,
]);

const NF4_CODEBOOK = makeCodebook(Array.from(NF4_LEVELS, (v, c) => [v, c] as const));

/** An NF4 format with groups of `g` weights. */
export function nf4Format(g = 64): QuantFormat {
  const name = g === 64 ? "nf4" : `nf4-g${g}`;
  return {
    name,
    description: `NF4 codes (16 normal-quantile levels), one f16 absmax scale per ${g} weights`,
    groupSize: g,
    bitsPerWeight: (cols) => (groupsPerRow(cols, g) * (4 * g + 16)) / cols,
    layout: (rows, cols) => ({ codeBytes: nibbleBytes(rows, cols, g), scaleBytes: rows * groupsPerRow(cols, g) * 2 }),
    pack: (w, rows, cols, options) => packNf4(name, g, w, rows, cols, options),
    unpack: (p) => unpackNf4(name, g, p),
  };
}

function packNf4(name: string, g: number, w: Float32Array, rows: number, cols: number, options: PackOptions = {}): PackedTensor {
  checkShape(name, w, rows, cols);
  const ng = groupsPerRow(cols, g);
  const codes = new Nibbles(rows, cols, g, 7);
  const scales = new Uint16Array(rows * ng);
  const f16 = f16Table();
  const idx = new Uint8Array(g), bestIdx = new Uint8Array(g);
  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < ng; gi++) {
      const start = r * cols + gi * g, end = Math.min(start + g, (r + 1) * cols);
      const amax = absMax(w, start, end);
      let bestErr = Infinity, bestScale = 0;
      for (const ratio of options.clip ? CLIP_RATIOS : [1]) {
        const bits = f16Bits(name, ratio * amax);
        const err = quantizeGroup(NF4_CODEBOOK, w, start, end, f16[bits]!, ratio * amax, idx);
        if (err < bestErr) {
          bestErr = err;
          bestScale = bits;
          bestIdx.set(idx);
        }
      }
      scales[r * ng + gi] = bestScale;
      for (let i = 0; i < end - start; i++) codes.set(r, gi * g + i, NF4_CODEBOOK.codes[bestIdx[i]!]!);
    }
  }
  return { format: name, rows, cols, groupSize: g, codes: codes.bytes, scales: new Uint8Array(scales.buffer), tensorScale: 1 };
}

function unpackNf4(name: string, g: number, p: PackedTensor): Float32Array {
  const ng = groupsPerRow(p.cols, g);
  const codes = new Nibbles(p.rows, p.cols, g, 7, p.codes);
  checkPacked(name, p, p.rows * codes.bytesPerRow, p.rows * ng * 2);
  const scales = new Uint16Array(p.scales.buffer.slice(p.scales.byteOffset, p.scales.byteOffset + p.scales.byteLength));
  const f16 = f16Table();
  const out = new Float32Array(p.rows * p.cols);
  // f32 product of the f32 level and the f16 scale, rounded once
  for (let r = 0; r < p.rows; r++) {
    for (let k = 0; k < p.cols; k++) out[r * p.cols + k] = NF4_LEVELS[codes.get(r, k)]! * f16[scales[r * ng + Math.floor(k / g)]!]!;
  }
  return out;
}
