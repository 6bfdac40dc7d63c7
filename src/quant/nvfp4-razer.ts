/**
 * NVFP4-RaZeR weights (spec §4.2, format B): blocks of 16 E2M1 codes whose +0 code (0x0) is the block's special
 * value, chosen from +5, −5, +O, −O (O = 8 default, 7 the paper's Qwen3-8B setting), with an 8-bit block scale
 * that gives 2 of its bits to the SV: bit 7 = SV sign, bit 6 = (|sv| == O), bits 0..5 = an E3M3 payload p,
 * S(p) = e == 0 ? m/32 : 2^(e−3)(1 + m/8) (e = p>>3, m = p&7; range [1/32, 30]).
 *
 * Quantizer: g = max|W|/(6·28) per tensor; per block x = w/g (the tensor's max as exactly ±168), for each SV in order: qmax = 6 for ±5, O for ±O,
 * s = E3M3(clamp(max|x|/qmax, 2^-5, 28)) (nearest payload; ties keep the smaller), codes = nearest level of x/s
 * in L(sv) (exact midpoints to the lower level), err = mean((q·s − x)²); the smallest err wins (strict <).
 *
 * Quirks avoided (spec §5): the per-tensor g is always carried (5); scales are rounded on the 6-bit payload
 * grid, not the finer E4M3 grid (6); the scale is rounded before codes are chosen (9).
 *
 * Layout: codes as in Nibbles (rows padded to whole blocks with 0x8, the zero); scales one byte per
 * (row, block); tensorScale = g. 4.5 bits a weight. Decoded w = g·S(p)·v(c), v(0x0) = ±5 or ±O, v(0x8) = 0,
 * the exact f64 product rounded once to f32.
 */
import { makeCodebook, quantizeGroup, type Codebook } from "./codebook.js";
import { CLIP_RATIOS, Nibbles, nibbleBytes, absMax, checkPacked, checkShape, groupsPerRow, type PackOptions, type PackedTensor, type QuantFormat } from "./format.js";
import { e2m1Value, e3m3Round, e3m3Value } from "./minifloat.js";
import { RAZER_SENTINEL, RAZER_ZERO } from "./razer.js";

const G = 16;

function levelSet(sv: number): Codebook {
  const pairs: [number, number][] = [[0, RAZER_ZERO], [sv, RAZER_SENTINEL]];
  for (let c = 1; c < 16; c++) if (c !== 8) pairs.push([e2m1Value(c), c]);
  return makeCodebook(pairs);
}

/** The SV that the flag bits of a scale byte select, for outlier value `outlier`. */
export function nvfp4RazerSpecialValue(byte: number, outlier: number): number {
  const mag = byte & 0x40 ? outlier : 5;
  return byte & 0x80 ? -mag : mag;
}

/** The NVFP4-RaZeR weight format with outlier special value ±O (7 or 8). */
export function nvfp4RazerFormat(outlier = 8): QuantFormat {
  if (outlier !== 7 && outlier !== 8) throw new Error(`nvfp4-razer: outlier value ${outlier} must be 7 or 8`);
  const name = outlier === 8 ? "nvfp4-razer" : `nvfp4-razer-o${outlier}`;
  const candidates = [5, -5, outlier, -outlier].map((sv) => ({ sv, qmax: Math.abs(sv) === 5 ? 6 : outlier, cb: levelSet(sv) }));
  return {
    name,
    description: `FP4 E2M1 with the +0 code remapped to ±5 or ±${outlier} per 16 weights; 8-bit scale (2 SV bits + 6-bit E3M3) and an f32 tensor scale`,
    groupSize: G,
    bitsPerWeight: (cols) => (groupsPerRow(cols, G) * (4 * G + 8)) / cols,
    layout: (rows, cols) => ({ codeBytes: nibbleBytes(rows, cols, G), scaleBytes: rows * groupsPerRow(cols, G) }),
    pack(w: Float32Array, rows: number, cols: number, options: PackOptions = {}): PackedTensor {
      checkShape(name, w, rows, cols);
      const ng = groupsPerRow(cols, G);
      const maxAbs = absMax(w, 0, w.length);
      const g = maxAbs > 0 ? Math.fround(maxAbs / (6 * 28)) : 1;
      const x = new Float64Array(G);
      const codes = new Nibbles(rows, cols, G, RAZER_ZERO);
      const scales = new Uint8Array(rows * ng);
      const idx = new Uint8Array(G), bestIdx = new Uint8Array(G);
      for (let r = 0; r < rows; r++) {
        for (let gi = 0; gi < ng; gi++) {
          const start = r * cols + gi * G, n = Math.min(G, cols - gi * G);
          // the largest |w| is ±168 exactly, as in exact arithmetic: w/g would carry g's rounding, and its last
          // bit would decide the tie of 168/8 between the payloads 20 and 22 (so an ulp of input noise could
          // change a block; the WebGPU KV quantizer, kernels/kv.ts, follows the same rule)
          for (let i = 0; i < n; i++) {
            const v = w[start + i]!;
            x[i] = Math.abs(v) === maxAbs ? Math.sign(v) * 6 * 28 : v / g;
          }
          const amax = absMax(x, 0, n);
          let bestErr = Infinity, bestByte = 0, bestCb = candidates[0]!.cb;
          for (const ratio of options.clip ? CLIP_RATIOS : [1]) {
            const bound = ratio * amax;
            for (const { sv, qmax, cb } of candidates) {
              const p = e3m3Round(Math.min(28, Math.max(2 ** -5, bound / qmax)));
              const err = quantizeGroup(cb, x, 0, n, e3m3Value(p), bound, idx) / n;
              if (err < bestErr) {
                bestErr = err;
                bestByte = p | (sv < 0 ? 0x80 : 0) | (Math.abs(sv) === outlier ? 0x40 : 0);
                bestCb = cb;
                bestIdx.set(idx);
              }
            }
          }
          scales[r * ng + gi] = bestByte;
          for (let i = 0; i < n; i++) codes.set(r, gi * G + i, bestCb.codes[bestIdx[i]!]!);
        }
      }
      return { format: name, rows, cols, groupSize: G, codes: codes.bytes, scales, tensorScale: g };
    },
    unpack(p: PackedTensor): Float32Array {
      const ng = groupsPerRow(p.cols, G);
      const codes = new Nibbles(p.rows, p.cols, G, RAZER_ZERO, p.codes);
      checkPacked(name, p, p.rows * codes.bytesPerRow, p.rows * ng);
      const out = new Float32Array(p.rows * p.cols);
      for (let r = 0; r < p.rows; r++) {
        for (let k = 0; k < p.cols; k++) {
          const byte = p.scales[r * ng + Math.floor(k / G)]!;
          const c = codes.get(r, k);
          const v = c === RAZER_SENTINEL ? nvfp4RazerSpecialValue(byte, outlier) : c === RAZER_ZERO ? 0 : e2m1Value(c);
          out[r * p.cols + k] = p.tensorScale * e3m3Value(byte & 0x3f) * v;
        }
      }
      return out;
    },
  };
}
