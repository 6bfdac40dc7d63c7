/**
 * INT3 asymmetric: the int4-asym rule (src/quant/int4-asym.ts) with 8 levels. Per group of g values:
 * s = (max − min)/7 rounded to f16, z = clamp(round(−min/s), 0, 7), q = clamp(round(w/s) + z, 0, 7),
 * ŵ = (q − z)·s, round half to even; a group with max = min ≠ 0 gets s = |max|. Made for the KV cache
 * (src/kv/format.ts `int3g64`: one group per head row of 64); it has no GEMV kernels, so it is not a weight
 * format of src/quant/formats.ts.
 *
 * Layout: codes as in Tribits (rows padded to whole groups with code 0); scales two u16 LE per (row, group):
 * the f16 scale, then the f16 zero point. 3 + 32/g bits a value (3.5 at g = 64: 24 + 4 bytes a group).
 */
import { f16Table } from "../tensor/half.js";
import { f16Bits } from "./fp4.js";
import { CLIP_RATIOS, absMax, checkPacked, checkShape, groupsPerRow, type PackOptions, type PackedTensor, type QuantFormat } from "./format.js";
import { roundHalfEven } from "./int4-asym.js";
import { Tribits, checkTribitGroup, tribitBytes } from "./tribits.js";

const QMAX = 7;

/** An INT3-asym format with groups of `g` values (a multiple of 8). */
export function int3AsymFormat(g = 64): QuantFormat {
  const name = `int3-asym-g${g}`;
  checkTribitGroup(name, g);
  return {
    name,
    description: `3-bit unsigned codes, f16 scale and f16 zero point per ${g} values`,
    groupSize: g,
    bitsPerWeight: (cols) => (groupsPerRow(cols, g) * (3 * g + 32)) / cols,
    layout: (rows, cols) => ({ codeBytes: tribitBytes(rows, cols, g), scaleBytes: rows * groupsPerRow(cols, g) * 4 }),
    pack: (w, rows, cols, options) => packInt3(name, g, w, rows, cols, options),
    unpack: (p) => unpackInt3(name, g, p),
  };
}

function packInt3(name: string, g: number, w: Float32Array, rows: number, cols: number, options: PackOptions = {}): PackedTensor {
  checkShape(name, w, rows, cols);
  const ng = groupsPerRow(cols, g);
  const codes = new Tribits(rows, cols, g, 0);
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
        const sBits = f16Bits(name, max > min ? (max - min) / QMAX : Math.abs(max));
        const s = f16[sBits]!;
        const z = s > 0 ? Math.min(QMAX, Math.max(0, roundHalfEven(-min / s))) : 0;
        let err = 0;
        for (let i = start; i < end; i++) {
          const x = w[i]!;
          const c = Math.min(bound, Math.max(-bound, x));
          const qi = s > 0 ? Math.min(QMAX, Math.max(0, roundHalfEven(c / s) + z)) : 0;
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

function unpackInt3(name: string, g: number, p: PackedTensor): Float32Array {
  const ng = groupsPerRow(p.cols, g);
  const codes = new Tribits(p.rows, p.cols, g, 0, p.codes);
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
