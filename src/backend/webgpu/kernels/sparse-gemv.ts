/**
 * Sparse-bitmap GEMV/GEMM on WebGPU, variant "walk" (spec sparamx §4.2; layout in src/sparse/bitmap.ts,
 * bound as one array<u32>; the faster "compact" variant is kernels/sparse-gemv-compact.ts, the choice
 * sparse-weight.ts). A team of 32 lanes computes one output row: in iteration i, lane l owns mask chunk
 * c = 32i + l, so the team reads 32 consecutive mask words and, after an exclusive prefix sum of their
 * popcounts, one contiguous run of packed values; each lane walks its set bits (firstTrailingBit) and
 * multiplies value and x[32c + j]. The prefix sum and the final reduction use subgroup operations when the
 * subgroup is exactly a team (32 lanes), else workgroup memory. Accumulation is f32.
 *
 * Several activation rows (prefill) are the grid's second dimension: each workgroup row r reads x row r
 * and writes out row r (no reuse of the expanded weights across rows; prefill is not what this targets).
 */
import { ENTRY_ARGS, memoKernel, type Kernel } from "../kernel.js";
import type { SparseValueType } from "../../../sparse/bitmap.js";

const THREADS = 256;
const TEAM = 32;
/** Output rows one workgroup computes. */
export const SPARSE_ROWS_PER_GROUP = THREADS / TEAM;

/** WGSL `val(i)`: non-zero i of the tensor as f32 (needs `w` and `p.vals`, the values' word offset). */
export function valueFn(v: SparseValueType): string {
  if (v === "f32") return "fn val(i: u32) -> f32 { return bitcast<f32>(w[p.vals + i]); }";
  if (v === "f16") return "fn val(i: u32) -> f32 { return unpack2x16float(w[p.vals + (i >> 1u)])[i & 1u]; }";
  // bf16: the half is the top of an f32
  return "fn val(i: u32) -> f32 { let q = w[p.vals + (i >> 1u)]; return bitcast<f32>(select(q << 16u, q & 0xffff0000u, (i & 1u) == 1u)); }";
}

/**
 * WGSL statements (4-space indent): `off`, the exclusive prefix sum of the team's `pc` (a u32 a lane) up to
 * this lane, and `total`, the team's sum. Subgroup operations when the subgroup is the team, else a
 * Hillis-Steele scan through workgroup array `scan` (every lane of the workgroup must reach it; a caller
 * that writes `scan` again later needs a barrier first).
 */
export function teamScanWgsl(subgroups: boolean): string {
  if (subgroups) return `    let off = subgroupExclusiveAdd(pc);
    let total = subgroupAdd(pc);`;
  return `    scan[lid] = pc;
    workgroupBarrier();
    for (var d = 1u; d < ${TEAM}u; d = d << 1u) {
      var add = 0u;
      if (lane >= d) { add = scan[lid - d]; }
      workgroupBarrier();
      scan[lid] = scan[lid] + add;
      workgroupBarrier();
    }
    let off = scan[lid] - pc;
    let total = scan[team * ${TEAM}u + ${TEAM - 1}u];`;
}

/**
 * Bindings: x (f32 [rows][k]), w (the sparse tensor's words), out (f32 [rows][n]).
 * Params: n (weight rows), k, nChunks, masks, rowPtr, vals (word offsets into w).
 */
export function sparseGemvKernel(values: SparseValueType, subgroups: boolean): Kernel {
  const sg = subgroups;
  return memoKernel(`sparse-gemv.${values}.${sg ? "sg" : "wg"}`, () => ({
    name: `matmul.sparse.${values}`,
    bindings: ["read", "read", "write"],
    code: /* wgsl */ `${sg ? "enable subgroups;\n" : ""}
struct P { n: u32, k: u32, nChunks: u32, masks: u32, rowPtr: u32, vals: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${sg ? "" : `var<workgroup> scan: array<u32, ${THREADS}>;`}
var<workgroup> red: array<f32, ${THREADS}>;
${valueFn(values)}

@compute @workgroup_size(${THREADS})
fn main(${ENTRY_ARGS}) {
  let team = lid / ${TEAM}u;
  let lane = lid % ${TEAM}u;
  let row = wid.x * ${SPARSE_ROWS_PER_GROUP}u + team;
  let r = wid.y;
  let valid = row < p.n;
  let xb = r * p.k;
  var base = 0u;
  if (valid) { base = w[p.rowPtr + row]; }
  var acc = 0.0;
  let iters = (p.nChunks + ${TEAM - 1}u) / ${TEAM}u;
  for (var it = 0u; it < iters; it++) {
    let c = it * ${TEAM}u + lane;
    var m = 0u;
    if (valid && c < p.nChunks) { m = w[p.masks + row * p.nChunks + c]; }
    let pc = countOneBits(m);
${teamScanWgsl(sg)}${sg ? "" : "\n    workgroupBarrier();"}
    var q = base + off;
    let xc = xb + c * 32u;
    while (m != 0u) {
      let j = firstTrailingBit(m);
      acc = acc + val(q) * x[xc + j];
      q = q + 1u;
      m = m & (m - 1u);
    }
    base = base + total;
  }
${sg ? `  let sum = subgroupAdd(acc);
  if (lane == 0u && valid) { out[r * p.n + row] = sum; }` : `  red[lid] = acc;
  workgroupBarrier();
  for (var d = ${TEAM / 2}u; d > 0u; d = d >> 1u) {
    if (lane < d) { red[lid] = red[lid] + red[lid + d]; }
    workgroupBarrier();
  }
  if (lane == 0u && valid) { out[r * p.n + row] = red[lid]; }`}
}`,
  }));
}
