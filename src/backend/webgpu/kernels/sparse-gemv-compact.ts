/**
 * Sparse-bitmap GEMV/GEMM on WebGPU, variant "compact": lanes own non-zeros, not mask words.
 *
 * Why: in the "walk" kernel (sparse-gemv.ts) lane l walks the set bits of its own mask word, so one load
 * instruction of a 32-lane team gathers x from 32 different 128-byte lines (each lane's word covers its own
 * 32 columns) and values from as many runs; the loads of a word are a serial chain, and a row's 448 words
 * (K = 14336) are 14 serial iterations of one team. On an H200 that ran at 86-740 GB/s (docs/sparsity.md).
 *
 * Here a team of 32 lanes processes one block of 32 mask words (1024 columns) at a time:
 *  1. lane l holds mask word l of the block (one coalesced load, issued a block ahead: the next block's
 *     word is loaded before this block is processed);
 *  2. one exclusive prefix sum of the popcounts gives each lane the position of its first non-zero in the
 *     block's run of values, and the block's count;
 *  3. the block is done in `sub` sub-steps of 32/sub words each: the lanes holding those words write the
 *     columns of their set bits to workgroup memory at those positions (a compaction: integer work, no
 *     global loads), then lane l takes the sub-step's non-zeros l, l + 32, ...: value loads are contiguous
 *     across lanes (one or two lines per instruction), x loads hit neighbouring columns of the row, four
 *     non-zeros a lane in flight; the first value of every sub-step is loaded right after the prefix sum,
 *     before any compaction, so its latency overlaps the integer work.
 * Sub-steps keep workgroup memory small (1024/sub columns a team: 16 KiB for 8 teams at sub = 2), which
 * leaves the SM's L1 to the x gathers: the whole x (56 KiB at K = 14336) is every workgroup's working set.
 * A row is split over `split` teams of one workgroup (1, 2, 4 or 8), each starting at a block boundary
 * through the block pointers computed at upload (src/sparse/bitmap.ts, blockPointers), so a row's blocks
 * are worked on in parallel; the teams' sums are added in workgroup memory. Several activation rows
 * (prefill) are the grid's second dimension, as in "walk".
 *
 * Summation: each lane adds its non-zeros in order (fma), at most 32 a block, then the 32 lanes in a tree,
 * then the split teams' sums in order, so the f32 error stays within (K/32 + 8)·2^-24·Σ|w x| like "walk".
 */
import { ENTRY_ARGS, memoKernel, type Kernel } from "../kernel.js";
import type { SparseValueType } from "../../../sparse/bitmap.js";
import { teamScanWgsl, valueFn } from "./sparse-gemv.js";

const TEAM = 32;
/** Columns a block of 32 mask words covers. */
export const COMPACT_BLOCK_COLS = 1024;
/** Sub-steps a block may be done in. */
export const COMPACT_SUBS = [1, 2, 4] as const;

/** Bytes of workgroup memory the compact kernel needs for `teams` teams and `sub` sub-steps a block. */
export function compactWorkgroupBytes(teams: number, subgroups: boolean, sub: number): number {
  // the team sums reuse `cols` after the last block; the workgroup-memory scan needs its own array
  return teams * (COMPACT_BLOCK_COLS / sub) * 4 + (subgroups ? 0 : teams * TEAM * 4);
}

/**
 * Bindings: x (f32 [rows][k]), w (the sparse tensor's words, then its block pointers), out (f32 [rows][n]).
 * Params: n, k, nChunks, masks, vals, blockPtr (word offsets into w), nBlocks (blocks a row), split (teams a
 * row, dividing `teams`), segBlocks (blocks a team). Grid: ceil(n·split / teams) x activation rows.
 */
export function sparseCompactKernel(values: SparseValueType, subgroups: boolean, teams: number, sub: number): Kernel {
  if (![1, 2, 4, 8].includes(teams)) throw new Error(`sparse compact GEMV: ${teams} teams a workgroup (1, 2, 4 or 8)`);
  if (!(COMPACT_SUBS as readonly number[]).includes(sub)) throw new Error(`sparse compact GEMV: ${sub} sub-steps a block (${COMPACT_SUBS.join(", ")})`);
  const sg = subgroups;
  const threads = teams * TEAM;
  const cap = COMPACT_BLOCK_COLS / sub;
  const lanes = TEAM / sub;
  // the packed prefix sum at the first lane of each sub-step (a constant lane for subgroupBroadcast)
  const at = (h: number) => (h === 0 ? "0u" : h === sub ? "total" : sg ? `subgroupBroadcast(off, ${h * lanes}u)` : `(scan[team * ${TEAM}u + ${h * lanes - 1}u])`);
  const starts = Array.from({ length: sub + 1 }, (_, h) => `  let s${h} = ${at(h)};`).join("\n");
  const firsts = Array.from({ length: sub }, (_, h) => `    var v${h} = 0.0;
    if (lane < s${h + 1} - s${h}) { v${h} = val(base + s${h} + lane); }`).join("\n");
  const steps = Array.from({ length: sub }, (_, h) => `    // sub-step ${h}: words ${h * lanes}..${(h + 1) * lanes - 1} of the block
    if (${[h > 0 ? `lane >= ${h * lanes}u` : "", h < sub - 1 ? `lane < ${(h + 1) * lanes}u` : ""].filter((c) => c).join(" && ") || "true"}) {
      var e = tb + off - s${h};
      var mm = m;
      while (mm != 0u) {
        cols[e] = bit0 + firstTrailingBit(mm);
        e = e + 1u;
        mm = mm & (mm - 1u);
      }
    }
    workgroupBarrier();
    acc = consume(acc, tb, s${h + 1} - s${h}, base + s${h}, xc, v${h}, lane);
    // cols is rewritten next
    workgroupBarrier();`).join("\n");
  return memoKernel(`sparse-compact.${values}.${sg ? "sg" : "wg"}.t${teams}.h${sub}`, () => ({
    name: `matmul.sparse-compact.${values}`,
    bindings: ["read", "read", "write"],
    code: /* wgsl */ `${sg ? "enable subgroups;\n" : ""}
struct P { n: u32, k: u32, nChunks: u32, masks: u32, vals: u32, blockPtr: u32, nBlocks: u32, split: u32, segBlocks: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
var<workgroup> cols: array<u32, ${teams * cap}>;
${sg ? "" : `var<workgroup> scan: array<u32, ${threads}>;`}
${valueFn(values)}

/** Adds the sub-step's \`count\` non-zeros lane, lane + 32, ... (values from \`vbase\`, columns in cols[tb..]); v0 is the first's value. */
fn consume(acc0: f32, tb: u32, count: u32, vbase: u32, xc: u32, v0: f32, lane: u32) -> f32 {
  var acc = acc0;
  if (lane < count) { acc = fma(v0, x[xc + cols[tb + lane]], acc); }
  var t = lane + 32u;
  for (; t + 96u < count; t = t + 128u) {
    let c0 = cols[tb + t];
    let c1 = cols[tb + t + 32u];
    let c2 = cols[tb + t + 64u];
    let c3 = cols[tb + t + 96u];
    let w0 = val(vbase + t);
    let w1 = val(vbase + t + 32u);
    let w2 = val(vbase + t + 64u);
    let w3 = val(vbase + t + 96u);
    let x0 = x[xc + c0];
    let x1 = x[xc + c1];
    let x2 = x[xc + c2];
    let x3 = x[xc + c3];
    acc = fma(w0, x0, acc);
    acc = fma(w1, x1, acc);
    acc = fma(w2, x2, acc);
    acc = fma(w3, x3, acc);
  }
  for (; t < count; t = t + 32u) { acc = fma(val(vbase + t), x[xc + cols[tb + t]], acc); }
  return acc;
}

@compute @workgroup_size(${threads})
fn main(${ENTRY_ARGS}) {
  let team = lid / ${TEAM}u;
  let lane = lid % ${TEAM}u;
  let g = wid.x * ${teams}u + team;
  let row = g / p.split;
  let seg = g % p.split;
  let r = wid.y;
  let b0 = seg * p.segBlocks;
  // blocks this team owns (0 past the last row or the row's last block)
  var nb = 0u;
  if (row < p.n && b0 < p.nBlocks) { nb = min(p.segBlocks, p.nBlocks - b0); }
  let c0 = b0 * 32u + lane;
  let mrow = p.masks + row * p.nChunks + c0;
  let xb = r * p.k + b0 * ${COMPACT_BLOCK_COLS}u;
  let tb = team * ${cap}u;
  let bit0 = lane * 32u;
  var base = 0u;
  var m = 0u;
  if (nb > 0u) {
    base = w[p.blockPtr + row * p.nBlocks + b0];
    if (c0 < p.nChunks) { m = w[mrow]; }
  }
  var acc = 0.0;
  for (var i = 0u; i < p.segBlocks; i++) {
    // the next block's mask word, in flight while this block is processed
    var next = 0u;
    if (i + 1u < nb && c0 + (i + 1u) * 32u < p.nChunks) { next = w[mrow + (i + 1u) * 32u]; }
    let pc = countOneBits(m);
${teamScanWgsl(sg)}
${starts.replace(/^ {2}/gm, "    ")}
    // every sub-step's first value, loaded before any compaction
${firsts}
    let xc = xb + i * ${COMPACT_BLOCK_COLS}u;
${steps}
${sg ? "" : `    // scan is rewritten by the next block only after the barriers above
`}    base = base + total;
    m = next;
  }
${sg ? `  let sum = subgroupAdd(acc);
  // team sums in cols (free after the last block's barrier), as bits
  if (lane == 0u) { cols[team] = bitcast<u32>(sum); }
  workgroupBarrier();
  if (lane == 0u && seg == 0u && row < p.n) {
    var s = bitcast<f32>(cols[team]);
    for (var j = 1u; j < p.split; j++) { s = s + bitcast<f32>(cols[team + j]); }
    out[r * p.n + row] = s;
  }` : `  // the lanes' sums in cols (free after the last block's barrier), as bits, added in a tree
  cols[lid] = bitcast<u32>(acc);
  workgroupBarrier();
  for (var d = ${TEAM / 2}u; d > 0u; d = d >> 1u) {
    if (lane < d) { cols[lid] = bitcast<u32>(bitcast<f32>(cols[lid]) + bitcast<f32>(cols[lid + d])); }
    workgroupBarrier();
  }
  if (lane == 0u && seg == 0u && row < p.n) {
    var s = bitcast<f32>(cols[lid]);
    for (var j = 1u; j < p.split; j++) { s = s + bitcast<f32>(cols[lid + j * ${TEAM}u]); }
    out[r * p.n + row] = s;
  }`}
}`,
  }));
}
