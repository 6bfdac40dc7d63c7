/**
 * RaZeR g128 (spec §3, format A): FP4 E2M1 whose redundant zero code is remapped to a per-group special value
 * (SV). Code 0x8 (−0) is the zero, code 0x0 (+0) is the sentinel that decodes to the group's SV, chosen per
 * group from +5, +8, −5, −8 (index 0..3) by the smallest group weight MSE (spec §2.2, §3.1).
 *
 * Quantizer, per row and group of G consecutive weights (§3.1): an all-zero group stores scale word 0 and codes
 * 0x8. Otherwise, for each SV in the fixed order (ties keep the earlier), the level set is
 * L(sv) = {0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6} ∪ {sv}; the scale is max(max(w)/max L, min(w)/min L)
 * ("range-aware", default) or max|w|/max|L| ("absmax"), rounded to the stored f16 before the codes are chosen;
 * each code is the nearest level of w/s (exact midpoints to the lower level); err = Σ(q·s − w)² in f64.
 * The optional clipping search (PackOptions.clip) repeats this on the group clamped to ±max|w|·(1 − 0.05i).
 *
 * Layout (§3.2, 4.125 bits a weight at G = 128, plus a 32-bit tensor header): codes as in Nibbles (rows padded to whole
 * groups with code 0x8); scales one u16 LE word per (row, group), rows padded to an even number of groups (two
 * words per u32, even group in the low half): bit 15 = SV sign, bit 14 = SV magnitude (0 → 5, 1 → 8), bits
 * 0..13 = the f16 bits of |s| (so |s| < 2). tensorScale = scaleMul, a power of two chosen so that every |s|
 * fits (and small tensors keep f16 precision): decoded w = scaleMul·|s|·v(c), exact in f32.
 *
 * Reference-code quirks avoided (spec §5): standard E2M1 codes with the v2 sentinel, not the v1 kernel's
 * (magnitude<<1 | sign) order (1); the SV sign lives only in the scale word, codes are not flipped for negative
 * SVs (3); all-zero groups get a zero scale word, no 0/0 (7); group errors in f64 with a +inf start, so no f16
 * underflow or spurious ties (8); codes are chosen with the rounded, stored scale (9); both scale rules (10).
 */
import { f16Table } from "../tensor/half.js";
import { makeCodebook, quantizeGroup, type Codebook } from "./codebook.js";
import { f16Bits } from "./fp4.js";
import { CLIP_RATIOS, Nibbles, nibbleBytes, absMax, checkPacked, checkShape, groupsPerRow, type PackOptions, type PackedTensor, type QuantFormat } from "./format.js";
import { e2m1Value } from "./minifloat.js";

/** The special-value candidates in index order: flags = index (bit 1 = sign, bit 0 = magnitude 8). */
export const RAZER_SPECIAL_VALUES: readonly number[] = [5, 8, -5, -8];

export const RAZER_SENTINEL = 0x0;
export const RAZER_ZERO = 0x8;

/** The RaZeR level set L(sv) with codes: E2M1 values of codes 0x1..0x7, 0x9..0xF, zero as 0x8, sv as 0x0. */
export function razerCodebook(sv: number): Codebook {
  const pairs: [number, number][] = [[0, RAZER_ZERO], [sv, RAZER_SENTINEL]];
  for (let c = 1; c < 16; c++) if (c !== 8) pairs.push([e2m1Value(c), c]);
  return makeCodebook(pairs);
}

const CODEBOOKS = new Map(RAZER_SPECIAL_VALUES.map((sv) => [sv, razerCodebook(sv)]));

/** The SV that the flag bits (15, 14) of a scale word select. */
export function razerSpecialValue(word: number): number {
  const mag = word & 0x4000 ? 8 : 5;
  return word & 0x8000 ? -mag : mag;
}

/** Value of a code under a scale word (before scaling): the E2M1 value, 0x8 → 0, 0x0 → the SV. */
export function razerCodeValue(word: number, code: number): number {
  if (code === RAZER_SENTINEL) return razerSpecialValue(word);
  if (code === RAZER_ZERO) return 0;
  return e2m1Value(code);
}

/** A RaZeR format with groups of `g` weights (32, 64 or 128; 128 is the papers' and the default). */
export function razerFormat(g = 128): QuantFormat {
  if (g % 8 !== 0) throw new Error(`razer: group size ${g} is not a multiple of 8`);
  const name = g === 128 ? "razer" : `razer-g${g}`;
  return {
    name,
    description: `FP4 E2M1 with the −0 code remapped to a per-group special value (±5, ±8); f16 scale with 2 SV bits per ${g} weights`,
    groupSize: g,
    bitsPerWeight: (cols) => (groupsPerRow(cols, g) * (4 * g + 16)) / cols,
    layout: (rows, cols) => ({ codeBytes: nibbleBytes(rows, cols, g), scaleBytes: rows * wordsPerRow(cols, g) * 2 }),
    pack: (w, rows, cols, options) => packRazer(name, g, w, rows, cols, options),
    unpack: (p) => unpackRazer(name, g, p),
  };
}

/** Scale words per row: the groups, rounded up to an even count (two words a u32). */
function wordsPerRow(cols: number, g: number): number {
  const ng = groupsPerRow(cols, g);
  return ng + (ng & 1);
}

/**
 * scaleMul: 1 for ordinary weights; a power of two putting the largest possible scale (max|w|/6) in (0.5, 1]
 * when it would reach 1 (|s| must stay < 2 after f16 rounding) or fall below 2^-10 (f16 loses precision).
 */
export function razerScaleMul(maxAbs: number): number {
  const top = maxAbs / 6;
  if (top === 0 || (top < 1 && top >= 2 ** -10)) return 1;
  return 2 ** Math.ceil(Math.log2(top));
}

function packRazer(name: string, g: number, w: Float32Array, rows: number, cols: number, options: PackOptions = {}): PackedTensor {
  checkShape(name, w, rows, cols);
  const rule = options.scaleRule ?? "range-aware";
  const svs = options.specialValues ?? RAZER_SPECIAL_VALUES;
  for (const sv of svs) if (!CODEBOOKS.has(sv)) throw new Error(`razer: special value ${sv} is not one of ${RAZER_SPECIAL_VALUES.join(", ")}`);
  const ng = groupsPerRow(cols, g);
  const wpr = wordsPerRow(cols, g);
  const scaleMul = razerScaleMul(absMax(w, 0, w.length));
  const codes = new Nibbles(rows, cols, g, RAZER_ZERO);
  const words = new Uint16Array(rows * wpr);
  const f16 = f16Table();
  const idx = new Uint8Array(g), bestIdx = new Uint8Array(g);
  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < ng; gi++) {
      const start = r * cols + gi * g, end = Math.min(start + g, (r + 1) * cols);
      const amax = absMax(w, start, end);
      if (amax === 0) continue; // scale word 0, codes 0x8
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
          const bits = f16Bits(name, s / scaleMul);
          if (bits & 0xc000) throw new Error(`razer: scale ${s} / scaleMul ${scaleMul} is not below 2`);
          const err = quantizeGroup(cb, w, start, end, scaleMul * f16[bits]!, bound, idx);
          if (err < bestErr) {
            bestErr = err;
            bestWord = bits | (sv < 0 ? 0x8000 : 0) | (Math.abs(sv) === 8 ? 0x4000 : 0);
            bestCb = cb;
            bestIdx.set(idx);
          }
        }
      }
      words[r * wpr + gi] = bestWord;
      for (let i = 0; i < end - start; i++) codes.set(r, gi * g + i, bestCb.codes[bestIdx[i]!]!);
    }
  }
  return { format: name, rows, cols, groupSize: g, codes: codes.bytes, scales: new Uint8Array(words.buffer), tensorScale: scaleMul };
}

function unpackRazer(name: string, g: number, p: PackedTensor): Float32Array {
  const wpr = wordsPerRow(p.cols, g);
  const codes = new Nibbles(p.rows, p.cols, g, RAZER_ZERO, p.codes);
  checkPacked(name, p, p.rows * codes.bytesPerRow, p.rows * wpr * 2);
  const words = new Uint16Array(p.scales.buffer.slice(p.scales.byteOffset, p.scales.byteOffset + p.scales.byteLength));
  const f16 = f16Table();
  const out = new Float32Array(p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) {
    for (let k = 0; k < p.cols; k++) {
      const word = words[r * wpr + Math.floor(k / g)]!;
      // scaleMul is a power of two and |s|·v has at most 14 significant bits: the f64 product is the exact f32
      out[r * p.cols + k] = p.tensorScale * f16[word & 0x3fff]! * razerCodeValue(word, codes.get(r, k));
    }
  }
  return out;
}
