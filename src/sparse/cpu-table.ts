/**
 * The swizzle patterns the WebAssembly sparse kernels (kernels.wat, kinds 8..10) expand non-zeros with:
 * for 16-bit values, pattern b (256 of 16 bytes) sends half #rank(i) to lane i when bit i of b is set;
 * for f32 values, pattern n (16 of 16 bytes, after the first 4096 bytes) does the same for 4 lanes of 4
 * bytes. Index 0x80 (≥ 16) makes i8x16.swizzle write a zero byte.
 */
export const SPARSE_TABLE_BYTES = 4096 + 256;

export function sparseSwizzleTable(): Uint8Array {
  const t = new Uint8Array(SPARSE_TABLE_BYTES).fill(0x80);
  for (let b = 0; b < 256; b++) {
    let rank = 0;
    for (let i = 0; i < 8; i++) {
      if (!((b >> i) & 1)) continue;
      t[b * 16 + 2 * i] = 2 * rank;
      t[b * 16 + 2 * i + 1] = 2 * rank + 1;
      rank++;
    }
  }
  for (let n = 0; n < 16; n++) {
    let rank = 0;
    for (let i = 0; i < 4; i++) {
      if (!((n >> i) & 1)) continue;
      for (let j = 0; j < 4; j++) t[4096 + n * 16 + 4 * i + j] = 4 * rank + j;
      rank++;
    }
  }
  return t;
}
