/**
 * The `sparse-bitmap` weight layout (spec sparamx §3.1): a [rows, cols] weight stored as one bit per
 * weight (1 = non-zero) plus the non-zeros packed row after row, so a GEMV reads ~1/8 + (1 − s)·sizeof(V)
 * bytes per weight instead of sizeof(V). One RawTensor holds it, little-endian:
 *
 *   header  u32[4]               nnz, rows, cols, 0
 *   masks   u32[rows][nChunks]   bit j of masks[n][c] = (W[n][32c + j] != 0); nChunks = ceil(cols / 32); no bits at k ≥ cols
 *   rowPtr  u32[rows + 1]        non-zeros before row n
 *   values  V[nnz + 8]           non-zeros in row-major order, then 8 zero pads (a SIMD load of 8 halves
 *                                at the last non-zero stays inside the tensor); padded to a 4-byte multiple
 *
 * V is f32, f16 or bf16 (the source weight's own bits, never re-rounded: −0 counts as zero and becomes +0).
 * f16/bf16 values sit two per u32, low half first, which is how WGSL reads them (unpack2x16float).
 *
 * Derived, never stored in the tensor: the block pointers (`blockPointers`: the spec's optional segPtr with
 * B = 32, plus rowPtr[n]), u32[rows][nBlocks] with nBlocks = ceil(nChunks / 32): the index of the first non-zero of
 * each block of 32 mask words (1024 weights) of each row, = rowPtr[n] + the popcounts of the row's earlier
 * words. The WebGPU backend computes them at upload, so a GEMV can start several thread teams inside one
 * row without first summing the popcounts of everything before them.
 */
import { f16Table, bf16ToF32 } from "../tensor/half.js";
import { isSparseDType, SPARSE_DTYPES, type SparseDType } from "../tensor/dtype.js";

export { isSparseDType, SPARSE_DTYPES, type SparseDType };
export type SparseValueType = "f32" | "f16" | "bf16";

export const SPARSE_PAD = 8;
export const HEADER_BYTES = 16;

export function sparseDTypeOf(values: SparseValueType): SparseDType {
  return `sparse-${values}`;
}

export function valueTypeOf(dtype: SparseDType): SparseValueType {
  return dtype.slice("sparse-".length) as SparseValueType;
}

export function valueBytes(v: SparseValueType): number {
  return v === "f32" ? 4 : 2;
}

/** Where each part of a sparse tensor of `rows` x `cols` with `nnz` non-zeros starts, and its total size. */
export function sparseLayout(values: SparseValueType, rows: number, cols: number, nnz: number) {
  const nChunks = Math.ceil(cols / 32);
  const masks = HEADER_BYTES;
  const rowPtr = masks + rows * nChunks * 4;
  const vals = rowPtr + (rows + 1) * 4;
  const bytes = vals + Math.ceil(((nnz + SPARSE_PAD) * valueBytes(values)) / 4) * 4;
  return { nChunks, masks, rowPtr, values: vals, bytes };
}

/** Mask words per block of the block-pointer table (1024 weights). */
export const BLOCK_WORDS = 32;

/** Blocks of BLOCK_WORDS mask words in a row of `cols` weights. */
export function blocksPerRow(cols: number): number {
  return Math.ceil(Math.ceil(cols / 32) / BLOCK_WORDS);
}

/** The block pointers of a sparse tensor (see the layout above): u32[rows][blocksPerRow(cols)]. */
export function blockPointers(s: SparseView): Uint32Array {
  const nBlocks = blocksPerRow(s.cols);
  const out = new Uint32Array(s.rows * nBlocks);
  for (let n = 0; n < s.rows; n++) {
    let p = s.rowPtr[n]!;
    const m0 = n * s.nChunks;
    for (let c = 0; c < s.nChunks; c++) {
      if (c % BLOCK_WORDS === 0) out[n * nBlocks + c / BLOCK_WORDS] = p;
      p += popcount(s.masks[m0 + c]!);
    }
    if (p !== s.rowPtr[n + 1]) throw new Error(`sparse tensor: row ${n}'s masks hold ${p - s.rowPtr[n]!} non-zeros, its row pointers ${s.rowPtr[n + 1]! - s.rowPtr[n]!}`);
  }
  return out;
}

function popcount(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

/** A sparse tensor's parts as typed views over its bytes (which must be 4-byte aligned). */
export interface SparseView {
  readonly values: SparseValueType;
  readonly rows: number;
  readonly cols: number;
  readonly nnz: number;
  readonly nChunks: number;
  readonly masks: Uint32Array;
  readonly rowPtr: Uint32Array;
  /** The raw value bits: f32 bits, or 16-bit halves. */
  readonly bits: Uint32Array | Uint16Array;
}

/** Reads and checks a sparse tensor's header and row pointers; `name` labels errors. */
export function sparseView(dtype: SparseDType, shape: readonly number[], data: Uint8Array, name = "tensor"): SparseView {
  const values = valueTypeOf(dtype);
  const rows = shape.length === 1 ? 1 : shape[0]!;
  const cols = shape[shape.length - 1]!;
  if (shape.length < 1 || shape.length > 2) throw new Error(`tensor ${name}: ${dtype} needs a 1-D or 2-D shape, got [${shape.join(", ")}]`);
  if (data.byteLength < HEADER_BYTES) throw new Error(`tensor ${name}: ${dtype} needs a ${HEADER_BYTES}-byte header, got ${data.byteLength} bytes`);
  const aligned = data.byteOffset % 4 === 0 ? data : data.slice();
  const head = new Uint32Array(aligned.buffer, aligned.byteOffset, 4);
  const [nnz, hRows, hCols] = [head[0]!, head[1]!, head[2]!];
  if (hRows !== rows || hCols !== cols) throw new Error(`tensor ${name}: ${dtype} header says [${hRows}, ${hCols}], shape is [${shape.join(", ")}]`);
  if (nnz > rows * cols) throw new Error(`tensor ${name}: ${dtype} header has ${nnz} non-zeros in a [${rows}, ${cols}] tensor`);
  const l = sparseLayout(values, rows, cols, nnz);
  if (aligned.byteLength !== l.bytes) throw new Error(`tensor ${name}: ${dtype} [${rows}, ${cols}] with ${nnz} non-zeros needs ${l.bytes} bytes, got ${aligned.byteLength}`);
  const masks = new Uint32Array(aligned.buffer, aligned.byteOffset + l.masks, rows * l.nChunks);
  const rowPtr = new Uint32Array(aligned.buffer, aligned.byteOffset + l.rowPtr, rows + 1);
  if (rowPtr[0] !== 0 || rowPtr[rows] !== nnz) throw new Error(`tensor ${name}: ${dtype} row pointers do not run from 0 to nnz ${nnz}`);
  const vb = valueBytes(values);
  const count = Math.floor((l.bytes - l.values) / vb);
  const bits = vb === 4
    ? new Uint32Array(aligned.buffer, aligned.byteOffset + l.values, count)
    : new Uint16Array(aligned.buffer, aligned.byteOffset + l.values, count);
  return { values, rows, cols, nnz, nChunks: l.nChunks, masks, rowPtr, bits };
}

/** Bytes of a sparse tensor whose header is at the start of `data`. */
export function sparseBytes(dtype: SparseDType, shape: readonly number[], data: Uint8Array | undefined): number {
  if (!data || data.byteLength < HEADER_BYTES) throw new Error(`${dtype} [${shape.join(", ")}]: the size depends on the non-zero count in the tensor's header`);
  const dv = new DataView(data.buffer, data.byteOffset, HEADER_BYTES);
  const nnz = dv.getUint32(0, true);
  const rows = shape.length === 1 ? 1 : shape[0]!;
  const cols = shape[shape.length - 1]!;
  if (dv.getUint32(4, true) !== rows || dv.getUint32(8, true) !== cols || nnz > rows * cols) {
    throw new Error(`${dtype} [${shape.join(", ")}]: header says [${dv.getUint32(4, true)}, ${dv.getUint32(8, true)}] with ${nnz} non-zeros`);
  }
  return sparseLayout(valueTypeOf(dtype), rows, cols, nnz).bytes;
}

/** True when these value bits are a zero (either sign). */
function isZero(v: SparseValueType, b: number): boolean {
  return v === "f32" ? (b & 0x7fffffff) === 0 : (b & 0x7fff) === 0;
}

/**
 * Packs dense value bits (f32 bits as Uint32Array, f16/bf16 as Uint16Array; [rows][cols]) into the
 * sparse layout.
 */
export function packSparse(values: SparseValueType, rows: number, cols: number, dense: Uint32Array | Uint16Array): Uint8Array {
  if (dense.length !== rows * cols) throw new Error(`packSparse: ${dense.length} values for [${rows}, ${cols}]`);
  if ((values === "f32") !== dense instanceof Uint32Array) throw new Error(`packSparse: ${values} values need ${values === "f32" ? "Uint32Array" : "Uint16Array"} bits`);
  let nnz = 0;
  for (let i = 0; i < dense.length; i++) if (!isZero(values, dense[i]!)) nnz++;
  const l = sparseLayout(values, rows, cols, nnz);
  const out = new Uint8Array(l.bytes);
  const u32 = new Uint32Array(out.buffer);
  u32[0] = nnz;
  u32[1] = rows;
  u32[2] = cols;
  const masks = new Uint32Array(out.buffer, l.masks, rows * l.nChunks);
  const rowPtr = new Uint32Array(out.buffer, l.rowPtr, rows + 1);
  const vals = values === "f32" ? new Uint32Array(out.buffer, l.values, nnz) : new Uint16Array(out.buffer, l.values, nnz);
  let p = 0;
  for (let n = 0; n < rows; n++) {
    rowPtr[n] = p;
    for (let k = 0; k < cols; k++) {
      const b = dense[n * cols + k]!;
      if (isZero(values, b)) continue;
      masks[n * l.nChunks + (k >> 5)]! |= 1 << (k & 31);
      vals[p++] = b;
    }
  }
  rowPtr[rows] = p;
  return out;
}

/** Decodes one value's bits to f32. */
export function valueDecoder(v: SparseValueType): (bits: number) => number {
  if (v === "f16") {
    const t = f16Table();
    return (b) => t[b]!;
  }
  if (v === "bf16") return bf16ToF32;
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  return (b) => ((u[0] = b), f[0]!);
}

/** Row `n` of a sparse tensor as f32 (zeros where the mask is clear). */
export function decodeSparseRow(s: SparseView, n: number, dst: Float32Array): void {
  const decode = valueDecoder(s.values);
  dst.fill(0, 0, s.cols);
  let p = s.rowPtr[n]!;
  for (let c = 0; c < s.nChunks; c++) {
    let m = s.masks[n * s.nChunks + c]!;
    while (m !== 0) {
      const j = 31 - Math.clz32(m & -m);
      dst[c * 32 + j] = decode(s.bits[p++]!);
      m &= m - 1;
    }
  }
}

/** The dense value bits back from a sparse tensor (pruned entries +0). */
export function unpackSparse(s: SparseView): Uint32Array | Uint16Array {
  const out = s.values === "f32" ? new Uint32Array(s.rows * s.cols) : new Uint16Array(s.rows * s.cols);
  for (let n = 0; n < s.rows; n++) {
    let p = s.rowPtr[n]!;
    for (let c = 0; c < s.nChunks; c++) {
      let m = s.masks[n * s.nChunks + c]!;
      while (m !== 0) {
        const j = 31 - Math.clz32(m & -m);
        out[n * s.cols + c * 32 + j] = s.bits[p++]!;
        m &= m - 1;
      }
    }
  }
  return out;
}

/**
 * The scalar reference GEMV of spec §4.1: iterate set bits in ascending k, y[n] = Σ values[p]·x[k]
 * (f32 accumulation in that order, which is also the order of a dense loop that skips zeros).
 */
export function sparseGemvRef(s: SparseView, x: Float32Array, y: Float32Array): void {
  const decode = valueDecoder(s.values);
  for (let n = 0; n < s.rows; n++) {
    let p = s.rowPtr[n]!;
    let acc = 0;
    for (let c = 0; c < s.nChunks; c++) {
      let m = s.masks[n * s.nChunks + c]!;
      while (m !== 0) {
        const j = 31 - Math.clz32(m & -m);
        acc = Math.fround(acc + Math.fround(decode(s.bits[p++]!) * x[c * 32 + j]!));
        m &= m - 1;
      }
    }
    y[n] = acc;
  }
}

/** The view of a sparse tensor whose shape comes from its own header (backends that lost the shape). */
export function sparseViewOf(dtype: SparseDType, data: Uint8Array, name = "tensor"): SparseView {
  if (data.byteLength < HEADER_BYTES) throw new Error(`tensor ${name}: ${dtype} needs a ${HEADER_BYTES}-byte header`);
  const dv = new DataView(data.buffer, data.byteOffset, HEADER_BYTES);
  return sparseView(dtype, [dv.getUint32(4, true), dv.getUint32(8, true)], data, name);
}

