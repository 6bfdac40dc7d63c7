/**
 * Storage formats a weight can have when it reaches a backend. Activations are always f32.
 * The block formats are GGUF's: q8_0 = 32 int8 + one f16 scale (34 bytes); q4_0 = 32 4-bit values in
 * 16 bytes + one f16 scale (18 bytes), value = (nibble - 8) * scale.
 * The packed formats are Frugal's own (src/quant): their size depends on the row length (groups run along
 * a row and the last may be partial), so they are measured with `tensorBytes` in src/quant/packed-raw.ts.
 */
export const BLOCK_DTYPES = ["f32", "f16", "bf16", "q8_0", "q4_0"] as const;
export type BlockDType = (typeof BLOCK_DTYPES)[number];

/** Names of src/quant's registered formats; a RawTensor of one holds codes, then scales, then an f32 tensor scale. */
export const PACKED_DTYPES = ["int8", "int4-asym", "fp4", "nf4", "razer", "nvfp4", "nvfp4-razer"] as const;
export type PackedDType = (typeof PACKED_DTYPES)[number];

/**
 * Unstructured-sparse weights (src/sparse/bitmap.ts): a bitmap plus packed non-zeros of the named value
 * type. Their size depends on the non-zero count in the tensor's header (`tensorBytes` reads it).
 */
export const SPARSE_DTYPES = ["sparse-f32", "sparse-f16", "sparse-bf16"] as const;
export type SparseDType = (typeof SPARSE_DTYPES)[number];

export const DTYPES = [...BLOCK_DTYPES, ...PACKED_DTYPES, ...SPARSE_DTYPES] as const;
export type DType = BlockDType | PackedDType | SparseDType;

/** Elements per block and bytes per block; plain formats are blocks of one element. */
export const BLOCK: Record<BlockDType, { elems: number; bytes: number }> = {
  f32: { elems: 1, bytes: 4 },
  f16: { elems: 1, bytes: 2 },
  bf16: { elems: 1, bytes: 2 },
  q8_0: { elems: 32, bytes: 34 },
  q4_0: { elems: 32, bytes: 18 },
};

export function isDType(s: string): s is DType {
  return (DTYPES as readonly string[]).includes(s);
}

export function isBlockDType(s: string): s is BlockDType {
  return (BLOCK_DTYPES as readonly string[]).includes(s);
}

export function isSparseDType(s: string): s is SparseDType {
  return (SPARSE_DTYPES as readonly string[]).includes(s);
}

export function isPackedDType(s: string): s is PackedDType {
  return (PACKED_DTYPES as readonly string[]).includes(s);
}

/** Bytes needed to store `count` elements, which must fill whole blocks. */
export function byteSize(dtype: BlockDType, count: number): number {
  const b = BLOCK[dtype];
  if (count % b.elems !== 0) throw new Error(`${count} elements do not fill whole ${dtype} blocks of ${b.elems}`);
  return (count / b.elems) * b.bytes;
}
