/**
 * Sparse-bitmap weights on WebGPU: the tensor's bytes uploaded as they are (the layout is already what
 * the WGSL kernel reads: u32 masks, u32 row pointers, values two halves a word) in one binding.
 */
import type { Weight } from "../backend.js";
import type { RawTensor } from "../../tensor/raw.js";
import type { SparseDType } from "../../tensor/dtype.js";
import { sparseLayout, sparseView, valueTypeOf, type SparseValueType } from "../../sparse/bitmap.js";
import type { Buf, BufferPool } from "./buffers.js";
import type { Recorder } from "./recorder.js";
import { sparseGemvKernel, SPARSE_ROWS_PER_GROUP } from "./kernels/sparse-gemv.js";

export interface SparsePart {
  readonly rowStart: number;
  readonly rows: number;
  readonly nnz: number;
  readonly data: Buf;
}

export class GpuSparseWeight implements Weight {
  constructor(
    readonly name: string,
    readonly dtype: SparseDType,
    readonly shape: readonly number[],
    readonly parts: readonly SparsePart[],
  ) {}
  get outFeatures(): number {
    return this.shape.length === 1 ? 1 : this.shape[0]!;
  }
  get inFeatures(): number {
    return this.shape[this.shape.length - 1]!;
  }
  get values(): SparseValueType {
    return valueTypeOf(this.dtype);
  }
}

export function uploadSparse(raw: RawTensor, pool: BufferPool, maxBinding: number): GpuSparseWeight {
  const s = sparseView(raw.dtype as SparseDType, raw.shape, raw.data, raw.name);
  if (raw.data.byteLength > maxBinding) {
    throw new Error(`weight ${raw.name}: ${raw.data.byteLength} sparse bytes exceed this GPU's binding limit ${maxBinding} (split sparse weights are not supported yet)`);
  }
  const parts: SparsePart[] = [{ rowStart: 0, rows: s.rows, nnz: s.nnz, data: pool.upload(raw.data, raw.name) }];
  return new GpuSparseWeight(raw.name, raw.dtype as SparseDType, raw.shape, parts);
}

/** Records out[r, o] = Σ_k x[r, k]·W[o, k] for r < rows. */
export function recordSparseMatmul(
  rec: Recorder, w: GpuSparseWeight, x: Buf, out: Buf, rows: number, outCols: number, subgroups: boolean,
): void {
  if (outCols !== w.outFeatures) throw new Error(`matmul ${w.name}: output width ${outCols} is not ${w.outFeatures}`);
  const part = w.parts[0]!;
  const l = sparseLayout(w.values, part.rows, w.inFeatures, part.nnz);
  if (rows > 65535) throw new Error(`matmul ${w.name}: ${rows} rows exceed one dispatch`);
  const groups = Math.ceil(part.rows / SPARSE_ROWS_PER_GROUP);
  if (groups > 65535) throw new Error(`matmul ${w.name}: ${part.rows} rows exceed one dispatch`);
  rec.dispatch(
    sparseGemvKernel(w.values, subgroups),
    [part.rows, w.inFeatures, l.nChunks, l.masks / 4, l.rowPtr / 4, l.values / 4],
    [x, part.data, out],
    [groups, rows],
  );
}
