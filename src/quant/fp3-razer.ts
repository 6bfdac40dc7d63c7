/**
 * FP3-RaZeR (spec razer.md §2.2, the optional 3-bit variant): a 3-bit sign-magnitude float with levels
 * {0, ±1, ±2, ±4} whose redundant zero is remapped to a per-group special value (SV) from +3, +6, −3, −6, with
 * format A's quantizer (§3.1) and one f16 scale per group. Made for the KV cache (src/kv/format.ts `fp3-razer`:
 * one group per head row of 64); no GEMV kernels, so not a weight format of src/quant/formats.ts.
 *
 * Codes: bit 2 = sign, bits 0..1 = magnitude index m → 0, 1, 2, 4. As in RaZeR's v2 convention, +0 (code 0)
 * is the sentinel that decodes to the group's SV and −0 (code 4) is the zero; the SV's sign lives only in the
 * scale word (codes are never flipped).
 *
 * Quantizer, per group (§3.1 adapted): an all-zero group stores scale word 0 and codes 4. Otherwise, for each
 * SV in the order +3, +6, −3, −6 (format A's order, +5 +8 −5 −8, with 3 for 5 and 6 for 8; ties keep the
 * earlier), the level set is L(sv) = {0, ±1, ±2, ±4} ∪ {sv}; the scale is max(max(w)/max L, min(w)/min L)
 * ("range-aware", default) or max|w|/max|L| ("absmax"), rounded to the stored scale grid before the codes are
 * chosen; each code is the nearest level of w/s (exact midpoints to the lower level); err = Σ(q·s − w)² in f64;
 * the smallest err wins (strict <). PackOptions.clip repeats this on the group clamped to ±max|w|·(1 − 0.05i).
 *
 * Scale word (one u16 LE per (row, group), 16 bits for scale and SV together, so a group of 64 is 24 + 2 = 26
 * bytes, 3.25 bits a value): bit 15 = SV sign (1 → negative), bit 0 = SV magnitude (0 → 3, 1 → 6), bits 1..14
 * = bits 1..14 of the f16 of |s|, whose last mantissa bit is 0: the scale is an f16 with 9 mantissa bits
 * (nearest, ties to an even 9-bit mantissa), so it needs no per-tensor scaleMul (format A hides its SV bits in
 * the exponent's top bits and pays a per-tensor multiplier, 4 bytes a row in a per-token KV cache). Decoded
 * w = f16(word & 0x7ffe)·v(c), exact in f32 (10 + 2 significant bits).
 */
import { f16Table } from "../tensor/half.js";
import { makeCodebook, quantizeGroup, type Codebook } from "./codebook.js";
import { f16Bits } from "./fp4.js";
import { CLIP_RATIOS, absMax, checkPacked, checkShape, groupsPerRow, type PackOptions, type PackedTensor, type QuantFormat } from "./format.js";
import { Tribits, checkTribitGroup, tribitBytes } from "./tribits.js";

/** The special-value candidates in the quantizer's order. */
export const FP3_SPECIAL_VALUES: readonly number[] = [3, 6, -3, -6];

export const FP3_SENTINEL = 0;
export const FP3_ZERO = 4;

/** Value of a non-sentinel code: magnitude index → 0, 1, 2, 4, sign in bit 2. */
export function fp3Value(code: number): number {
  const m = code & 3;
  const mag = m === 3 ? 4 : m;
  return code & 4 && mag ? -mag : mag; // the zero decodes to +0
}

/** The level set L(sv) with codes: codes 1..3, 5..7 their values, zero as code 4, sv as code 0. */
export function fp3Codebook(sv: number): Codebook {
  const pairs: [number, number][] = [[0, FP3_ZERO], [sv, FP3_SENTINEL]];
  for (const c of [1, 2, 3, 5, 6, 7]) pairs.push([fp3Value(c), c]);
  return makeCodebook(pairs);
}

const CODEBOOKS = new Map(FP3_SPECIAL_VALUES.map((sv) => [sv, fp3Codebook(sv)]));

/** The SV that the flag bits (15, 0) of a scale word select. */
export function fp3SpecialValue(word: number): number {
  const mag = word & 1 ? 6 : 3;
  return word & 0x8000 ? -mag : mag;
}

/** Value of a code under a scale word (before scaling). */
export function fp3CodeValue(word: number, code: number): number {
  return code === FP3_SENTINEL ? fp3SpecialValue(word) : fp3Value(code);
}

/**
 * f16 bits of the nearest positive value with an even f16 mantissa (9 stored mantissa bits) to s ≥ 0; ties go to
 * the one whose 9-bit mantissa is even. Throws when it does not fit.
 */
export function fp3ScaleBits(name: string, s: number): number {
  const f16 = f16Table();
  const b = f16Bits(name, s);
  if ((b & 1) === 0) return b;
  // s lies within half an f16 step of b, so the 9-bit grid points around it are b − 1 and b + 1
  const lo = b - 1, hi = b + 1;
  if (hi >= 0x7c00) throw new Error(`${name}: group scale ${s} does not fit in the 9-bit-mantissa f16 grid`);
  const dlo = s - f16[lo]!, dhi = f16[hi]! - s;
  if (dlo !== dhi) return dlo < dhi ? lo : hi;
  return lo & 2 ? hi : lo;
}

/** An FP3-RaZeR format with groups of `g` values (a multiple of 8). */
export function fp3RazerFormat(g = 64): QuantFormat {
  const name = `fp3-razer-g${g}`;
  checkTribitGroup(name, g);
  return {
    name,
    description: `3-bit {0, ±1, ±2, ±4} with the redundant +0 code remapped to a per-group special value (±3, ±6); a 16-bit word (f16 scale with 9 mantissa bits, 2 SV bits) per ${g} values`,
    groupSize: g,
    bitsPerWeight: (cols) => (groupsPerRow(cols, g) * (3 * g + 16)) / cols,
    layout: (rows, cols) => ({ codeBytes: tribitBytes(rows, cols, g), scaleBytes: rows * groupsPerRow(cols, g) * 2 }),
    pack: (w, rows, cols, options) => packFp3(name, g, w, rows, cols, options),
    unpack: (p) => unpackFp3(name, g, p),
  };
}

function packFp3(name: string, g: number, w: Float32Array, rows: number, cols: number, options: PackOptions = {}): PackedTensor {
  checkShape(name, w, rows, cols);
  const rule = options.scaleRule ?? "range-aware";
  const svs = options.specialValues ?? FP3_SPECIAL_VALUES;
  for (const sv of svs) if (!CODEBOOKS.has(sv)) throw new Error(`${name}: special value ${sv} is not one of ${FP3_SPECIAL_VALUES.join(", ")}`);
  const ng = groupsPerRow(cols, g);
  const codes = new Tribits(rows, cols, g, FP3_ZERO);
  const words = new Uint16Array(rows * ng);
  const f16 = f16Table();
  const idx = new Uint8Array(g), bestIdx = new Uint8Array(g);
  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < ng; gi++) {
      const start = r * cols + gi * g, end = Math.min(start + g, (r + 1) * cols);
      const amax = absMax(w, start, end);
      if (amax === 0) continue; // scale word 0, codes 4
      let bestErr = Infinity, bestWord = 0;
      let bestCb = CODEBOOKS.get(svs[0]!)!;
      for (const ratio of options.clip ? CLIP_RATIOS : [1]) {
        const bound = ratio * amax;
        let max = -Infinity, min = Infinity;
        for (let i = start; i < end; i++) {
          const c = Math.min(bound, Math.max(-bound, w[i]!));
          max = Math.max(max, c);
          min = Math.min(min, c);
        }
        for (const sv of svs) {
          const cb = CODEBOOKS.get(sv)!;
          const lmax = cb.levels[cb.levels.length - 1]!, lmin = cb.levels[0]!;
          const s = rule === "absmax" ? bound / Math.max(lmax, -lmin) : Math.max(max / lmax, min / lmin);
          const bits = fp3ScaleBits(name, s);
          const err = quantizeGroup(cb, w, start, end, f16[bits]!, bound, idx);
          if (err < bestErr) {
            bestErr = err;
            bestWord = bits | (sv < 0 ? 0x8000 : 0) | (Math.abs(sv) === 6 ? 1 : 0);
            bestCb = cb;
            bestIdx.set(idx);
          }
        }
      }
      words[r * ng + gi] = bestWord;
      for (let i = 0; i < end - start; i++) codes.set(r, gi * g + i, bestCb.codes[bestIdx[i]!]!);
    }
  }
  return { format: name, rows, cols, groupSize: g, codes: codes.bytes, scales: new Uint8Array(words.buffer), tensorScale: 1 };
}

function unpackFp3(name: string, g: number, p: PackedTensor): Float32Array {
  const ng = groupsPerRow(p.cols, g);
  const codes = new Tribits(p.rows, p.cols, g, FP3_ZERO, p.codes);
  checkPacked(name, p, p.rows * codes.bytesPerRow, p.rows * ng * 2);
  const words = new Uint16Array(p.scales.buffer.slice(p.scales.byteOffset, p.scales.byteOffset + p.scales.byteLength));
  const f16 = f16Table();
  const out = new Float32Array(p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) {
    for (let k = 0; k < p.cols; k++) {
      const word = words[r * ng + Math.floor(k / g)]!;
      out[r * p.cols + k] = f16[word & 0x7ffe]! * fp3CodeValue(word, codes.get(r, k));
    }
  }
  return out;
}
