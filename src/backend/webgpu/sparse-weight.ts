/**
 * Sparse-bitmap weights on WebGPU: the tensor's bytes uploaded as they are (the layout is already what
 * the WGSL kernels read: u32 masks, u32 row pointers, values two halves a word), followed in the same
 * buffer by the block pointers (src/sparse/bitmap.ts, blockPointers) that the "compact" kernel starts its
 * teams from, in one binding.
 *
 * GEMV variants (`SparseGemvVariant`, the backend's `sparseGemv`): "walk" (kernels/sparse-gemv.ts: a team
 * per row, each lane walks its own mask word's bits) and "compact" (kernels/sparse-gemv-compact.ts: lanes
 * take a block's non-zeros in order after a compaction of their columns; a row split over several teams).
 * "compact-s1" ... "compact-s8" fix the teams a row, which "compact" otherwise picks from the shape
 * (`compactSplit`); "-h1", "-h2" (default), "-h4" set the sub-steps a block (less workgroup memory).
 */
import type { Weight } from "../backend.js";
import type { RawTensor } from "../../tensor/raw.js";
import type { SparseDType } from "../../tensor/dtype.js";
import { blockPointers, blocksPerRow, sparseLayout, sparseView, valueTypeOf, type SparseValueType } from "../../sparse/bitmap.js";
import type { Buf, BufferPool } from "./buffers.js";
import type { Kernel } from "./kernel.js";
import type { Recorder } from "./recorder.js";
import { sparseGemvKernel, SPARSE_ROWS_PER_GROUP } from "./kernels/sparse-gemv.js";
import { compactWorkgroupBytes, sparseCompactKernel } from "./kernels/sparse-gemv-compact.js";

/**
 * A sparse GEMV variant's name: "walk", or "compact" with optional "-s<teams a row: 1, 2, 4, 8>" (else
 * `compactSplit` picks) and "-h<sub-steps a block: 1, 2, 4>" (default 2), e.g. "compact-s4-h1".
 */
export type SparseGemvVariant = string;
export type SparseGemvPlan = { kind: "walk" } | { kind: "compact"; split?: number; sub: number };
/** The variant a backend runs unless told otherwise. */
export const SPARSE_GEMV_DEFAULT: SparseGemvVariant = "walk";
/** Variants the tests check and the benchmark can time side by side. */
export const SPARSE_GEMV_VARIANTS: readonly SparseGemvVariant[] = [
  "walk", "compact", "compact-s1", "compact-s2", "compact-s4", "compact-s8", "compact-h1", "compact-h4", "compact-s8-h1",
];
export const COMPACT_DEFAULT_SUB = 2;

const plans = new Map<string, SparseGemvPlan>();
export function parseSparseGemvVariant(text: SparseGemvVariant): SparseGemvPlan {
  let plan = plans.get(text);
  if (plan) return plan;
  const m = /^compact(?:-s([1248]))?(?:-h([124]))?$/.exec(text);
  if (text === "walk") plan = { kind: "walk" };
  else if (m) plan = { kind: "compact", ...(m[1] ? { split: Number(m[1]) } : {}), sub: m[2] ? Number(m[2]) : COMPACT_DEFAULT_SUB };
  else throw new Error(`sparse GEMV variant "${text}": expected "walk" or "compact" with optional -s1/-s2/-s4/-s8 (teams a row) and -h1/-h2/-h4 (sub-steps a block), e.g. compact-s4-h2`);
  plans.set(text, plan);
  return plan;
}

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
  const blocks = blockPointers(s);
  const bytes = raw.data.byteLength + blocks.byteLength;
  if (bytes > maxBinding) {
    throw new Error(`weight ${raw.name}: ${bytes} sparse bytes (with block pointers) exceed this GPU's binding limit ${maxBinding} (split sparse weights are not supported yet)`);
  }
  const all = new Uint8Array(bytes);
  all.set(raw.data);
  all.set(new Uint8Array(blocks.buffer), raw.data.byteLength);
  const parts: SparsePart[] = [{ rowStart: 0, rows: s.rows, nnz: s.nnz, data: pool.upload(all, raw.name) }];
  return new GpuSparseWeight(raw.name, raw.dtype as SparseDType, raw.shape, parts);
}

/** The most teams a workgroup of the compact kernel may have on a device with this much workgroup memory. */
export function compactTeams(workgroupBytes: number, subgroups: boolean, sub: number): number {
  for (const t of [8, 4, 2, 1]) if (compactWorkgroupBytes(t, subgroups, sub) <= workgroupBytes) return t;
  throw new Error(`sparse compact GEMV: ${compactWorkgroupBytes(1, subgroups, sub)} bytes of workgroup memory needed, the device offers ${workgroupBytes}`);
}

/**
 * Teams a row for "compact": enough teams in all (rows x split >= 16384, about two of an H200's worth of
 * resident warps) to keep many blocks in flight, never more than the row has blocks or the workgroup teams.
 */
export function compactSplit(rows: number, cols: number, teams: number): number {
  const nBlocks = blocksPerRow(cols);
  let s = 1;
  while (s < teams && s < nBlocks && rows * s < 16384) s *= 2;
  return s;
}

/** One dispatch of a sparse GEMV/GEMM: the kernel, its parameters and its grid. */
export interface SparseDispatch {
  kernel: Kernel;
  params: number[];
  groups: [number, number];
}

/**
 * The dispatch computing out[r, o] = Σ_k x[r, k]·W[o, k] for r < rows with `variant`; `subgroups` means
 * 32-lane subgroups (the scans then use subgroup operations), `workgroupBytes` the device's limit.
 */
export function sparseDispatch(w: GpuSparseWeight, variant: SparseGemvVariant, rows: number, subgroups: boolean, workgroupBytes: number): SparseDispatch {
  const part = w.parts[0]!;
  const K = w.inFeatures;
  const l = sparseLayout(w.values, part.rows, K, part.nnz);
  if (rows > 65535) throw new Error(`matmul ${w.name}: ${rows} rows exceed one dispatch`);
  const plan = parseSparseGemvVariant(variant);
  if (plan.kind === "walk") {
    const groups = Math.ceil(part.rows / SPARSE_ROWS_PER_GROUP);
    if (groups > 65535) throw new Error(`matmul ${w.name}: ${part.rows} rows exceed one dispatch`);
    return { kernel: sparseGemvKernel(w.values, subgroups), params: [part.rows, K, l.nChunks, l.masks / 4, l.rowPtr / 4, l.values / 4], groups: [groups, rows] };
  }
  const teams = compactTeams(workgroupBytes, subgroups, plan.sub);
  // a fixed split is capped where teams would have no block at all (the smallest power of two >= nBlocks)
  let split = plan.split === undefined ? compactSplit(part.rows, K, teams) : Math.min(plan.split, teams, 2 ** Math.ceil(Math.log2(blocksPerRow(K))));
  // a dispatch has at most 65535 workgroups a dimension: fewer teams a row for very tall weights
  while (split > 1 && Math.ceil((part.rows * split) / teams) > 65535) split /= 2;
  const groups = Math.ceil((part.rows * split) / teams);
  if (groups > 65535) throw new Error(`matmul ${w.name}: ${part.rows} rows exceed one dispatch`);
  const nBlocks = blocksPerRow(K);
  const segBlocks = Math.ceil(nBlocks / split);
  return {
    kernel: sparseCompactKernel(w.values, subgroups, teams, plan.sub),
    params: [part.rows, K, l.nChunks, l.masks / 4, l.values / 4, l.bytes / 4, nBlocks, split, segBlocks],
    groups: [groups, rows],
  };
}

/** Records out[r, o] = Σ_k x[r, k]·W[o, k] for r < rows. */
export function recordSparseMatmul(
  rec: Recorder, w: GpuSparseWeight, x: Buf, out: Buf, rows: number, outCols: number, subgroups: boolean,
  variant: SparseGemvVariant = SPARSE_GEMV_DEFAULT, workgroupBytes = 16384,
): void {
  if (outCols !== w.outFeatures) throw new Error(`matmul ${w.name}: output width ${outCols} is not ${w.outFeatures}`);
  const d = sparseDispatch(w, variant, rows, subgroups, workgroupBytes);
  rec.dispatch(d.kernel, d.params, [x, w.parts[0]!.data, out], d.groups);
}
