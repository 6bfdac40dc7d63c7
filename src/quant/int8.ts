/**
 * INT8 symmetric per output channel: one f32 scale per row, s = max|w|/127, q = clamp(round(w/s), −127, 127)
 * with halves rounded away from zero, ŵ = q·s (rounded to f32).
 *
 * Layout: codes one int8 per weight, row-major; scales one f32 (LE) per row. 8 + 32/cols bits a weight.
 */
import { CLIP_RATIOS, absMax, checkPacked, checkShape, type PackOptions, type PackedTensor, type QuantFormat } from "./format.js";

const NAME = "int8";

/** The per-channel INT8 format. */
export const int8Format: QuantFormat = {
  name: NAME,
  description: "int8 codes, one f32 absmax scale per output channel (row)",
  groupSize: 0,
  bitsPerWeight: (cols) => 8 + 32 / cols,
  layout: (rows, cols) => ({ codeBytes: rows * cols, scaleBytes: rows * 4 }),
  pack: packInt8,
  unpack: unpackInt8,
};

function roundAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

function packInt8(w: Float32Array, rows: number, cols: number, options: PackOptions = {}): PackedTensor {
  checkShape(NAME, w, rows, cols);
  const codes = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  const q = new Int8Array(cols);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    const amax = absMax(w, start, start + cols);
    let bestErr = Infinity;
    for (const ratio of options.clip ? CLIP_RATIOS : [1]) {
      const s = Math.fround((ratio * amax) / 127);
      let err = 0;
      for (let k = 0; k < cols; k++) {
        const x = w[start + k]!;
        const qk = s > 0 ? Math.max(-127, Math.min(127, roundAway(x / s))) : 0;
        q[k] = qk;
        const d = Math.fround(qk * s) - x;
        err += d * d;
      }
      if (err < bestErr) {
        bestErr = err;
        scales[r] = s;
        codes.set(q, start);
      }
    }
  }
  return { format: NAME, rows, cols, groupSize: cols, codes: new Uint8Array(codes.buffer), scales: new Uint8Array(scales.buffer), tensorScale: 1 };
}

function unpackInt8(p: PackedTensor): Float32Array {
  checkPacked(NAME, p, p.rows * p.cols, p.rows * 4);
  const codes = new Int8Array(p.codes.buffer, p.codes.byteOffset, p.codes.byteLength);
  const scales = new Float32Array(p.scales.buffer.slice(p.scales.byteOffset, p.scales.byteOffset + p.scales.byteLength));
  const out = new Float32Array(p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) for (let k = 0; k < p.cols; k++) out[r * p.cols + k] = codes[r * p.cols + k]! * scales[r]!;
  return out;
}
