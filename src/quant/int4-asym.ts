/**
 * INT4 asymmetric (AWQ/GPTQ style) with an f16 scale and an f16 zero point per group (default 128 weights;
 * spec §6): s = (max − min)/15 rounded to f16, z = clamp(round(−min/s), 0, 15), q = clamp(round(w/s) + z, 0, 15),
 * ŵ = (q − z)·s. round is half to even (torch.round). A group with max = min ≠ 0 gets s = |max| so that
 * the single value is stored exactly when it is an f16.
 *
 * Layout: codes as in Nibbles (rows padded to whole groups with code 0); scales two u16 LE per (row, group):
 * the f16 scale, then the f16 zero point. 4 + 32/G bits a weight (4.25 at G = 128).
 */
import { f16Table } from "../tensor/half.js";
import { f16Bits } from "./fp4.js";
import { CLIP_RATIOS, Nibbles, nibbleBytes, absMax, checkPacked, checkShape, groupsPerRow, type PackOptions, type PackedTensor, type QuantFormat } from "./format.js";

/** Round half to even. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** An INT4-asym format with groups of `g` weights. */
export function int4AsymFormat(g = 128): QuantFormat {
  const name = g === 128 ? "int4-asym" : `int4-asym-g${g}`;
  return {
    name,
    description: `4-bit unsigned codes, f16 scale and f16 zero point per ${g} weights`,
    groupSize: g,
    bitsPerWeight: (cols) => (groupsPerRow(cols, g) * (4 * g + 32)) / cols,
    layout: (rows, cols) => ({ codeBytes: nibbleBytes(rows, cols, g), scaleBytes: rows * groupsPerRow(cols, g) * 4 }),
    pack: (w, rows, cols, options) => packInt4(name, g, w, rows, cols, options),
    unpack: (p) => unpackInt4(name, g, p),
  };
}

function packInt4(name: string, g: number, w: Float32Array, rows: number, cols: number, options: PackOptions = {}): PackedTensor {
  checkShape(name, w, rows, cols);
  const ng = groupsPerRow(cols, g);
  const codes = new Nibbles(rows, cols, g, 0);
  const scales = new Uint16Array(rows * ng * 2);
  const f16 = f16Table();
  const q = new Uint8Array(g), bestQ = new Uint8Array(g);
  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < ng; gi++) {
      const start = r * cols + gi * g, end = Math.min(start + g, (r + 1) * cols);
      const amax = absMax(w, start, end);
      let bestErr = Infinity, bestS = 0, bestZ = 0;
      for (const ratio of options.clip ? CLIP_RATIOS : [1]) {
        const bound = ratio * amax;
        let min = Infinity, max = -Infinity;
        for (let i = start; i < end; i++) {
          const c = Math.min(bound, Math.max(-bound, w[i]!));
          min = Math.min(min, c);
          max = Math.max(max, c);
        }
        const sBits = f16Bits(name, max > min ? (max - min) / 15 : Math.abs(max));
        const s = f16[sBits]!;
        const z = s > 0 ? Math.min(15, Math.max(0, roundHalfEven(-min / s))) : 0;
        let err = 0;
        for (let i = start; i < end; i++) {
          const x = w[i]!;
          const c = Math.min(bound, Math.max(-bound, x));
          const qi = s > 0 ? Math.min(15, Math.max(0, roundHalfEven(c / s) + z)) : 0;
          q[i - start] = qi;
          const d = (qi - z) * s - x;
          err += d * d;
        }
        if (err < bestErr) {
          bestErr = err;
          bestS = sBits;
          bestZ = z;
          bestQ.set(q);
        }
      }
      scales[2 * (r * ng + gi)] = bestS;
      scales[2 * (r * ng + gi) + 1] = f16Bits(name, bestZ);
      for (let i = 0; i < end - start; i++) codes.set(r, gi * g + i, bestQ[i]!);
    }
  }
  return { format: name, rows, cols, groupSize: g, codes: codes.bytes, scales: new Uint8Array(scales.buffer), tensorScale: 1 };
}

function unpackInt4(name: string, g: number, p: PackedTensor): Float32Array {
  const ng = groupsPerRow(p.cols, g);
  const codes = new Nibbles(p.rows, p.cols, g, 0, p.codes);
  checkPacked(name, p, p.rows * codes.bytesPerRow, p.rows * ng * 4);
  const scales = new Uint16Array(p.scales.buffer.slice(p.scales.byteOffset, p.scales.byteOffset + p.scales.byteLength));
  const f16 = f16Table();
  const out = new Float32Array(p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) {
    for (let k = 0; k < p.cols; k++) {
      const gi = r * ng + Math.floor(k / g);
      out[r * p.cols + k] = (codes.get(r, k) - f16[scales[2 * gi + 1]!]!) * f16[scales[2 * gi]!]!;
    }
  }
  return out;
}
