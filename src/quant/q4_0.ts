/**
 * GGUF's Q4_0 block format: 32 weights as 4-bit values plus one f16 scale, 18 bytes a block (scale
 * first). Byte j holds element j in its low nibble and element j + 16 in its high nibble;
 * value = (nibble - 8) * scale. The packer reproduces llama.cpp's quantize_row_q4_0_ref bit for bit.
 */
import { f16Table, f32ToF16 } from "../tensor/half.js";

export const Q4_0_BLOCK_ELEMS = 32;
export const Q4_0_BLOCK_BYTES = 18;

const fround = Math.fround;

/**
 * Packs `x` (a whole number of 32-element blocks) into Q4_0 blocks as llama.cpp's reference quantizer
 * does: the scale is the value of largest magnitude (sign kept) divided by -8, so that value maps to
 * nibble 0 exactly and the other end of the range gets the extra step.
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  if (x.length % Q4_0_BLOCK_ELEMS !== 0) throw new Error(`q4_0: ${x.length} values do not fill whole blocks of ${Q4_0_BLOCK_ELEMS}`);
  const blocks = x.length / Q4_0_BLOCK_ELEMS;
  const out = new Uint8Array(blocks * Q4_0_BLOCK_BYTES);
  const dv = new DataView(out.buffer);
  const half = Q4_0_BLOCK_ELEMS / 2;
  for (let b = 0; b < blocks; b++) {
    const base = b * Q4_0_BLOCK_ELEMS;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < Q4_0_BLOCK_ELEMS; j++) {
      const v = x[base + j]!;
      // strict comparison: the first of equal magnitudes wins, as in the C loop
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fround(max / -8);
    const id = d ? fround(1 / d) : 0;
    const p = b * Q4_0_BLOCK_BYTES;
    dv.setUint16(p, f32ToF16(d), true);
    for (let j = 0; j < half; j++) {
      const lo = nibble(fround(x[base + j]! * id));
      const hi = nibble(fround(x[base + half + j]! * id));
      out[p + 2 + j] = lo | (hi << 4);
    }
  }
  return out;
}

/** MIN(15, (int8_t)(v + 8.5f)): the cast truncates toward zero. */
function nibble(v: number): number {
  return Math.min(15, Math.trunc(fround(v + 8.5)));
}

/** Decodes `count` values from Q4_0 blocks (the reference the kernels are tested against). */
export function dequantizeQ4_0(blocks: Uint8Array, count: number): Float32Array {
  if (count % Q4_0_BLOCK_ELEMS !== 0) throw new Error(`q4_0: ${count} values do not fill whole blocks of ${Q4_0_BLOCK_ELEMS}`);
  const need = (count / Q4_0_BLOCK_ELEMS) * Q4_0_BLOCK_BYTES;
  if (blocks.byteLength < need) throw new Error(`q4_0: ${count} values need ${need} bytes, got ${blocks.byteLength}`);
  const t = f16Table();
  const out = new Float32Array(count);
  for (let b = 0; b < count / Q4_0_BLOCK_ELEMS; b++) {
    const p = b * Q4_0_BLOCK_BYTES;
    const d = t[blocks[p]! | (blocks[p + 1]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const byte = blocks[p + 2 + j]!;
      out[b * 32 + j] = ((byte & 15) - 8) * d;
      out[b * 32 + j + 16] = ((byte >> 4) - 8) * d;
    }
  }
  return out;
}
