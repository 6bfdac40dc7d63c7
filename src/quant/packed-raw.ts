/**
 * How a packed weight (src/quant) travels as one RawTensor between loaders, writers and backends: the
 * bytes are the format's codes, then its scales, then the f32 tensor scale (little-endian), so a single
 * buffer and a dtype naming the format describe it completely. Shapes are [rows, cols] (a 1-D tensor is
 * one row).
 */
import { BLOCK, type DType, type PackedDType, byteSize, isPackedDType, isSparseDType } from "../tensor/dtype.js";
import { sparseBytes } from "../sparse/bitmap.js";
import type { RawTensor } from "../tensor/raw.js";
import type { PackedTensor } from "./format.js";
import { quantFormat } from "./formats.js";

function rowsCols(shape: readonly number[]): [number, number] {
  const cols = shape.length === 0 ? 1 : shape[shape.length - 1]!;
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return [rows, cols];
}

/** Bytes a tensor of `dtype` and `shape` occupies in a RawTensor (sparse ones read their header in `data`). */
export function tensorBytes(dtype: DType, shape: readonly number[], data?: Uint8Array): number {
  if (isSparseDType(dtype)) return sparseBytes(dtype, shape, data);
  if (!isPackedDType(dtype)) return byteSize(dtype, shape.reduce((a, b) => a * b, 1));
  const [rows, cols] = rowsCols(shape);
  const { codeBytes, scaleBytes } = quantFormat(dtype).layout(rows, cols);
  return codeBytes + scaleBytes + 4;
}

/** Elements per block for block formats; packed formats have no fixed block (they group along rows). */
export function blockElems(dtype: DType): number {
  if (isSparseDType(dtype)) return 1;
  return isPackedDType(dtype) ? quantFormat(dtype).groupSize || 1 : BLOCK[dtype].elems;
}

/** The RawTensor holding `p` (a registered format) under `name`. */
export function packedToRaw(name: string, p: PackedTensor, shape: readonly number[] = [p.rows, p.cols]): RawTensor {
  if (!isPackedDType(p.format)) throw new Error(`tensor ${name}: ${p.format} is not a registered packed format`);
  const [rows, cols] = rowsCols(shape);
  if (rows !== p.rows || cols !== p.cols) throw new Error(`tensor ${name}: shape [${shape.join(", ")}] does not hold a packed [${p.rows}, ${p.cols}]`);
  const data = new Uint8Array(p.codes.byteLength + p.scales.byteLength + 4);
  data.set(p.codes, 0);
  data.set(p.scales, p.codes.byteLength);
  new DataView(data.buffer).setFloat32(data.byteLength - 4, p.tensorScale, true);
  return { name, dtype: p.format as PackedDType, shape: [...shape], data };
}

/** The PackedTensor view of a RawTensor of a packed dtype (codes and scales share its bytes). */
export function rawToPacked(t: RawTensor): PackedTensor {
  if (!isPackedDType(t.dtype)) throw new Error(`tensor ${t.name}: ${t.dtype} is not a packed format`);
  const format = quantFormat(t.dtype);
  const [rows, cols] = rowsCols(t.shape);
  const { codeBytes, scaleBytes } = format.layout(rows, cols);
  if (t.data.byteLength !== codeBytes + scaleBytes + 4) {
    throw new Error(`tensor ${t.name}: ${t.dtype} [${t.shape.join(", ")}] needs ${codeBytes + scaleBytes + 4} bytes, got ${t.data.byteLength}`);
  }
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return {
    format: t.dtype,
    rows,
    cols,
    groupSize: format.groupSize,
    codes: t.data.subarray(0, codeBytes),
    scales: t.data.subarray(codeBytes, codeBytes + scaleBytes),
    tensorScale: dv.getFloat32(codeBytes + scaleBytes, true),
  };
}
