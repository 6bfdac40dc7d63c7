/**
 * GGUF's Q8_0 block format: 32 weights as int8 plus one f16 scale, 34 bytes a block (scale first),
 * value = q * scale. The packer reproduces llama.cpp's quantize_row_q8_0_ref bit for bit: every step is
 * single-precision arithmetic as in the C source, and the scale is stored rounded to nearest f16.
 */
import { f16Table, f32ToF16 } from "../tensor/half.js";

export const Q8_0_BLOCK_ELEMS = 32;
export const Q8_0_BLOCK_BYTES = 34;

const fround = Math.fround;

/** C's roundf: halfway cases away from zero (Math.round rounds them up). */
function roundAwayFromZero(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** Packs `x` (a whole number of 32-element blocks) into Q8_0 blocks as llama.cpp's reference quantizer does. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % Q8_0_BLOCK_ELEMS !== 0) throw new Error(`q8_0: ${x.length} values do not fill whole blocks of ${Q8_0_BLOCK_ELEMS}`);
  const blocks = x.length / Q8_0_BLOCK_ELEMS;
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const base = b * Q8_0_BLOCK_ELEMS;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK_ELEMS; j++) amax = Math.max(amax, Math.abs(x[base + j]!));
    const d = fround(amax / 127);
    const id = d ? fround(1 / d) : 0;
    const p = b * Q8_0_BLOCK_BYTES;
    dv.setUint16(p, f32ToF16(d), true);
    // the quantized values use the f32 scale, not the f16 one that is stored (as llama.cpp does)
    for (let j = 0; j < Q8_0_BLOCK_ELEMS; j++) dv.setInt8(p + 2 + j, roundAwayFromZero(fround(x[base + j]! * id)));
  }
  return out;
}

/** Decodes `count` values from Q8_0 blocks (the reference the kernels are tested against). */
export function dequantizeQ8_0(blocks: Uint8Array, count: number): Float32Array {
  if (count % Q8_0_BLOCK_ELEMS !== 0) throw new Error(`q8_0: ${count} values do not fill whole blocks of ${Q8_0_BLOCK_ELEMS}`);
  const need = (count / Q8_0_BLOCK_ELEMS) * Q8_0_BLOCK_BYTES;
  if (blocks.byteLength < need) throw new Error(`q8_0: ${count} values need ${need} bytes, got ${blocks.byteLength}`);
  const t = f16Table();
  const dv = new DataView(blocks.buffer, blocks.byteOffset, blocks.byteLength);
  const out = new Float32Array(count);
  for (let b = 0; b < count / Q8_0_BLOCK_ELEMS; b++) {
    const p = b * Q8_0_BLOCK_BYTES;
    const d = t[dv.getUint16(p, true)]!;
    for (let j = 0; j < Q8_0_BLOCK_ELEMS; j++) out[b * Q8_0_BLOCK_ELEMS + j] = dv.getInt8(p + 2 + j) * d;
  }
  return out;
}
