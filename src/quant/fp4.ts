/**
 * FP4 E2M1 with one f16 scale per group (default 128 weights; spec §6): s = max|w|/6 rounded to f16, codes are
 * the nearest E2M1 value of w/s (exact midpoints go to the lower level), zero is stored as +0 (code 0x0).
 *
 * Layout: codes as in Nibbles (4 bits a weight, rows padded to whole groups with code 0x0); scales one f16
 * (u16 LE) per (row, group), row-major. 4 + 16/G bits a weight (4.125 at G = 128).
 */
import { f16Table, f32ToF16 } from "../tensor/half.js";
import { makeCodebook, quantizeGroup } from "./codebook.js";
import { CLIP_RATIOS, Nibbles, nibbleBytes, absMax, checkPacked, checkShape, groupsPerRow, type PackOptions, type PackedTensor, type QuantFormat } from "./format.js";
import { e2m1Value } from "./minifloat.js";

/** The 15 distinct E2M1 values with their codes (+0 stands for zero; −0 is never produced). */
export const FP4_CODEBOOK = makeCodebook(Array.from({ length: 16 }, (_, c) => [e2m1Value(c), c] as const).filter(([, c]) => c !== 8));

/** An FP4 format with groups of `g` weights. */
export function fp4Format(g = 128): QuantFormat {
  const name = g === 128 ? "fp4" : `fp4-g${g}`;
  return {
    name,
    description: `FP4 E2M1 codes, one f16 absmax scale per ${g} weights`,
    groupSize: g,
    bitsPerWeight: (cols) => (groupsPerRow(cols, g) * (4 * g + 16)) / cols,
    layout: (rows, cols) => ({ codeBytes: nibbleBytes(rows, cols, g), scaleBytes: rows * groupsPerRow(cols, g) * 2 }),
    pack: (w, rows, cols, options) => packFp4(name, g, w, rows, cols, options),
    unpack: (p) => unpackFp4(name, g, p),
  };
}

function packFp4(name: string, g: number, w: Float32Array, rows: number, cols: number, options: PackOptions = {}): PackedTensor {
  checkShape(name, w, rows, cols);
  const ng = groupsPerRow(cols, g);
  const codes = new Nibbles(rows, cols, g, 0);
  const scales = new Uint16Array(rows * ng);
  const f16 = f16Table();
  const idx = new Uint8Array(g), bestIdx = new Uint8Array(g);
  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < ng; gi++) {
      const start = r * cols + gi * g, end = Math.min(start + g, (r + 1) * cols);
      const amax = absMax(w, start, end);
      let bestErr = Infinity, bestScale = 0;
      for (const ratio of options.clip ? CLIP_RATIOS : [1]) {
        const bits = f16Bits(name, (ratio * amax) / 6);
        const err = quantizeGroup(FP4_CODEBOOK, w, start, end, f16[bits]!, ratio * amax, idx);
        if (err < bestErr) {
          bestErr = err;
          bestScale = bits;
          bestIdx.set(idx);
        }
      }
      scales[r * ng + gi] = bestScale;
      for (let i = 0; i < end - start; i++) codes.set(r, gi * g + i, FP4_CODEBOOK.codes[bestIdx[i]!]!);
    }
  }
  return { format: name, rows, cols, groupSize: g, codes: codes.bytes, scales: new Uint8Array(scales.buffer), tensorScale: 1 };
}

function unpackFp4(name: string, g: number, p: PackedTensor): Float32Array {
  const ng = groupsPerRow(p.cols, g);
  const codes = new Nibbles(p.rows, p.cols, g, 0, p.codes);
  checkPacked(name, p, p.rows * codes.bytesPerRow, p.rows * ng * 2);
  const scales = new Uint16Array(p.scales.buffer.slice(p.scales.byteOffset, p.scales.byteOffset + p.scales.byteLength));
  const f16 = f16Table();
  const out = new Float32Array(p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) {
    for (let k = 0; k < p.cols; k++) out[r * p.cols + k] = e2m1Value(codes.get(r, k)) * f16[scales[r * ng + Math.floor(k / g)]!]!;
  }
  return out;
}

/** The f16 bits of a non-negative scale; throws if it overflows f16. */
export function f16Bits(name: string, s: number): number {
  const bits = f32ToF16(s);
  if (bits >= 0x7c00) throw new Error(`${name}: group scale ${s} does not fit in f16`);
  return bits;
}
