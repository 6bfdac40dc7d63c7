/**
 * Plain TypeScript kernels: the readable oracle the WebAssembly kernels are tested against, and the
 * fallback where WebAssembly SIMD is missing. `w` is the weight's bytes; rows of w are output features.
 */
import { isPackedDType, isSparseDType, type DType, type PackedDType } from "../../tensor/dtype.js";
import { decodeSparseRow, sparseViewOf } from "../../sparse/bitmap.js";
import { f16Table, bf16ToF32 } from "../../tensor/half.js";
import { quantFormat } from "../../quant/formats.js";
import { rawToPacked } from "../../quant/packed-raw.js";

/**
 * Packed formats (src/quant) decode through the format's own unpack(): the whole tensor once, kept while
 * its bytes live, since the formats decode tensors, not rows.
 */
const unpacked = new WeakMap<Uint8Array, Float32Array>();

function decodePackedRow(dtype: PackedDType, w: Uint8Array, o: number, inF: number, dst: Float32Array): void {
  let all = unpacked.get(w);
  if (!all) {
    const f = quantFormat(dtype);
    const one = f.layout(1, inF);
    const rows = (w.byteLength - 4) / (one.codeBytes + one.scaleBytes);
    if (!Number.isInteger(rows)) throw new Error(`${dtype}: ${w.byteLength} bytes do not hold whole rows of ${inF}`);
    all = f.unpack(rawToPacked({ name: dtype, dtype, shape: [rows, inF], data: w }));
    unpacked.set(w, all);
  }
  dst.set(all.subarray(o * inF, (o + 1) * inF));
}

/** Decodes row `o` of a [outF, inF] weight into `dst` (length inF). */
export function decodeRow(dtype: DType, w: Uint8Array, o: number, inF: number, dst: Float32Array): void {
  if (isPackedDType(dtype)) return decodePackedRow(dtype, w, o, inF, dst);
  if (isSparseDType(dtype)) return decodeSparseRow(sparseViewOf(dtype, w), o, dst);
  const dv = new DataView(w.buffer, w.byteOffset, w.byteLength);
  switch (dtype) {
    case "f32": {
      const base = o * inF * 4;
      for (let i = 0; i < inF; i++) dst[i] = dv.getFloat32(base + i * 4, true);
      return;
    }
    case "f16": {
      const t = f16Table();
      const base = o * inF * 2;
      for (let i = 0; i < inF; i++) dst[i] = t[dv.getUint16(base + i * 2, true)]!;
      return;
    }
    case "bf16": {
      const base = o * inF * 2;
      for (let i = 0; i < inF; i++) dst[i] = bf16ToF32(dv.getUint16(base + i * 2, true));
      return;
    }
    case "q8_0": {
      const t = f16Table();
      const blocks = inF / 32;
      let p = o * blocks * 34;
      for (let b = 0; b < blocks; b++, p += 34) {
        const d = t[dv.getUint16(p, true)]!;
        for (let j = 0; j < 32; j++) dst[b * 32 + j] = dv.getInt8(p + 2 + j) * d;
      }
      return;
    }
    case "q4_0": {
      const t = f16Table();
      const blocks = inF / 32;
      let p = o * blocks * 18;
      for (let b = 0; b < blocks; b++, p += 18) {
        const d = t[dv.getUint16(p, true)]!;
        for (let j = 0; j < 16; j++) {
          const byte = w[p + 2 + j]!;
          dst[b * 32 + j] = ((byte & 15) - 8) * d;
          dst[b * 32 + j + 16] = ((byte >> 4) - 8) * d;
        }
      }
      return;
    }
  }
}

/** out[r, o] = sum_i x[r, i] * W[o, i] for rows [0, rows) and output features [o0, o1). */
export function matmulRef(
  dtype: DType, w: Uint8Array, inF: number, outF: number,
  x: Float32Array, out: Float32Array, rows: number, o0 = 0, o1 = outF,
): void {
  const row = new Float32Array(inF);
  for (let o = o0; o < o1; o++) {
    decodeRow(dtype, w, o, inF, row);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      const xb = r * inF;
      for (let i = 0; i < inF; i++) s += x[xb + i]! * row[i]!;
      out[r * outF + o] = s;
    }
  }
}
