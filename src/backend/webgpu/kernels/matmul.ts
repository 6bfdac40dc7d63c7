/**
 * out[r, o] = sum_i x[r, i] * w[o, i] for every weight format.
 *
 * GEMV (one row, the decode step) is memory-bound, so it is written to stream the weight once at full
 * bandwidth: a team of threads shares R adjacent weight rows and each thread loads 16 bytes of a row at a
 * time (one vec4<u32>: 4 f32, 8 f16/bf16, 16 q8_0 or 32 q4_0 weights), so a 32-thread team reads 512
 * contiguous bytes of each row per step. The x values a chunk needs are loaded once for the R rows: for
 * q4_0 a 16-byte weight load needs 128 bytes of x, and without that reuse the L1 traffic for x, not DRAM,
 * would bound the kernel. With subgroups the team is min(32, smallest subgroup) threads and the partial
 * sums are added with subgroup shuffles, no barrier; without, the team is 32 threads and the sums go
 * through workgroup memory.
 *
 * GEMM (prefill) tiles 64 rows x 64 output features per workgroup, steps K by 32 through workgroup
 * memory, and each of 256 threads accumulates a 4 x 4 block. Weights are decoded to f32 in groups of 8
 * while the tile is loaded, so quantized weights cost no extra passes.
 */
import type { DType } from "../../../tensor/dtype.js";
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";
import { DECODE_HELPERS, SCALE_FN, type GpuWeight } from "../weights.js";

const GEMV_THREADS = 256;

/** Threads sharing weight rows in the GEMV for subgroup width `sg` (1: no subgroups). */
export function gemvTeam(sg: number): number {
  return sg > 1 ? Math.min(sg, 32) : 32;
}

/** Rows each GEMV team computes by default, per format (the bench measures the alternatives). */
export const GEMV_ROWS_PER_TEAM: Record<DType, number> = { f32: 1, f16: 2, bf16: 2, q8_0: 2, q4_0: 4 };

/** Output rows of one GEMV workgroup. */
export function gemvRows(sg: number, rowsPerTeam: number): number {
  return (GEMV_THREADS / gemvTeam(sg)) * rowsPerTeam;
}

/** Weights one 16-byte load covers. */
export function chunkElems(format: DType): number {
  return { f32: 4, f16: 8, bf16: 8, q8_0: 16, q4_0: 32 }[format];
}

/** How x is read: whole vec4s, vec4s with a bound, or guarded scalars (K not a multiple of 4). */
export type XMode = "exact" | "vec4" | "scalar";

export function xMode(format: DType, K: number): XMode {
  if (K % chunkElems(format) === 0) return "exact";
  return K % 4 === 0 ? "vec4" : "scalar";
}

function xLoader(mode: XMode): string {
  if (mode === "exact") return "fn xload(j: u32) -> vec4<f32> { return x[j]; }";
  if (mode === "vec4") return "fn xload(j: u32) -> vec4<f32> { if (j < p.k / 4u) { return x[j]; } return vec4<f32>(0.0); }";
  return `fn xs(i: u32) -> f32 { return select(0.0, x[min(i, p.k - 1u)], i < p.k); }
fn xload(j: u32) -> vec4<f32> { let i = 4u * j; return vec4<f32>(xs(i), xs(i + 1u), xs(i + 2u), xs(i + 3u)); }`;
}

/** vec4s of x one chunk of weights needs. */
const xVecs = (format: DType) => chunkElems(format) / 4;

/**
 * WGSL `fn xChunk(c) -> XC` (the x values of chunk c) and `fn dotChunk(o, c, xv) -> f32` (chunk c of row
 * o, 16 bytes of weights, dotted with them).
 */
function chunkDot(format: DType): string {
  const n = xVecs(format);
  const loads = Array.from({ length: n }, (_, i) => `xload(${n}u * c + ${i}u)`).join(", ");
  const head = `alias XC = array<vec4<f32>, ${n}>;
fn xChunk(c: u32) -> XC { return XC(${loads}); }
`;
  switch (format) {
    case "f32":
      return head + `fn dotChunk(o: u32, c: u32, xv: XC) -> f32 { return dot(bitcast<vec4<f32>>(w[o * p.stride4 + c]), xv[0]); }`;
    case "f16":
    case "bf16": {
      const d = format === "f16" ? "unpack2x16float" : "bf2";
      return head + `fn dotChunk(o: u32, c: u32, xv: XC) -> f32 {
  let q = w[o * p.stride4 + c];
  return dot(vec4<f32>(${d}(q.x), ${d}(q.y)), xv[0]) + dot(vec4<f32>(${d}(q.z), ${d}(q.w)), xv[1]);
}`;
    }
    case "q8_0":
      return head + `fn dotChunk(o: u32, c: u32, xv: XC) -> f32 {
  let q = w[o * p.blocks * 2u + c];
  let s = dot(i8x4(q.x), xv[0]) + dot(i8x4(q.y), xv[1]) + dot(i8x4(q.z), xv[2]) + dot(i8x4(q.w), xv[3]);
  return s * scale(o * p.blocks + (c >> 1u));
}`;
    case "q4_0":
      return head + `fn dotChunk(o: u32, c: u32, xv: XC) -> f32 {
  let q = w[o * p.blocks + c];
  let lo = dot(lo4(q.x), xv[0]) + dot(lo4(q.y), xv[1]) + dot(lo4(q.z), xv[2]) + dot(lo4(q.w), xv[3]);
  let hi = dot(hi4(q.x), xv[4]) + dot(hi4(q.y), xv[5]) + dot(hi4(q.z), xv[6]) + dot(hi4(q.w), xv[7]);
  return (lo + hi) * scale(o * p.blocks + c);
}`;
  }
}

const isBlock = (f: DType) => f === "q8_0" || f === "q4_0";

function weightBindings(format: DType, first: number): string {
  let s = `@group(0) @binding(${first}) var<storage, read> w: array<vec4<u32>>;\n`;
  if (isBlock(format)) s += `@group(0) @binding(${first + 1}) var<storage, read> sc: array<u32>;\n${SCALE_FN}`;
  return s;
}

/**
 * The GEMV kernel for a weight format, x access mode, subgroup width `sg` (1: no subgroups) and rows per
 * team. Params: n (rows of this part), k, chunks (16-byte loads a row), o0 (first output), stride4, blocks.
 */
export function gemvKernel(format: DType, mode: XMode, sg: number, rowsPerTeam = GEMV_ROWS_PER_TEAM[format]): Kernel {
  const team = gemvTeam(sg);
  const viaSubgroup = sg > 1;
  const R = rowsPerTeam;
  return memoKernel(`gemv.${format}.${mode}.${team}.${+viaSubgroup}.${R}`, () => {
    const rows = Array.from({ length: R }, (_, j) => j);
    const reduce = viaSubgroup
      ? rows.flatMap((j) => {
          const lines = [];
          for (let o = team / 2; o >= 1; o /= 2) lines.push(`acc[${j}] += subgroupShuffleXor(acc[${j}], ${o}u);`);
          return lines;
        }).join("\n  ")
      : `for (var j = 0u; j < R; j++) { partial[lid * R + j] = acc[j]; }
  workgroupBarrier();
  if (lane == 0u) {
    for (var i = 1u; i < TEAM; i++) {
      for (var j = 0u; j < R; j++) { acc[j] += partial[(lid + i) * R + j]; }
    }
  }`;
    const code = /* wgsl */ `${viaSubgroup ? "enable subgroups;" : ""}
struct P { n: u32, k: u32, chunks: u32, o0: u32, stride4: u32, blocks: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<${mode === "scalar" ? "f32" : "vec4<f32>"}>;
${weightBindings(format, 2)}
@group(0) @binding(${isBlock(format) ? 4 : 3}) var<storage, read_write> out: array<f32>;
${DECODE_HELPERS}
${xLoader(mode)}
${chunkDot(format)}
const TEAM = ${team}u;
const R = ${R}u;
const ROWS = ${GEMV_THREADS / team}u * R;
${viaSubgroup ? "" : `var<workgroup> partial: array<f32, ${GEMV_THREADS * R}>;`}

@compute @workgroup_size(${GEMV_THREADS})
fn main(${ENTRY_ARGS}) {
  let row0 = ${GROUP_INDEX} * ROWS + (lid / TEAM) * R;
  let lane = lid % TEAM;
  var acc: array<f32, ${R}>;
  if (row0 < p.n) {
    // rows past n (the last team of the last workgroup) read clamped in-bounds words; their sums are dropped
    let last = p.n - 1u;
    for (var c = lane; c < p.chunks; c += TEAM) {
      let xv = xChunk(c);
      ${rows.map((j) => `acc[${j}] += dotChunk(min(row0 + ${j}u, last), c, xv);`).join("\n      ")}
    }
  }
  ${reduce}
  if (lane == 0u) {
    for (var j = 0u; j < R; j++) {
      if (row0 + j < p.n) { out[p.o0 + row0 + j] = acc[j]; }
    }
  }
}`;
    return {
      name: `matmul.gemv.${format}`,
      code,
      bindings: isBlock(format) ? ["read", "read", "read", "write"] : ["read", "read", "write"],
    };
  });
}

/** WGSL `fn load8(o, g) -> array<vec4<f32>, 2>`: weights 8g..8g+7 of row o, decoded. */
function groupLoader(format: DType): string {
  switch (format) {
    case "f32":
      return `fn load8(o: u32, g: u32) -> array<vec4<f32>, 2> {
  let b = o * p.stride4 + 2u * g;
  return array<vec4<f32>, 2>(bitcast<vec4<f32>>(w[b]), bitcast<vec4<f32>>(w[b + 1u]));
}`;
    case "f16":
    case "bf16": {
      const d = format === "f16" ? "unpack2x16float" : "bf2";
      return `fn load8(o: u32, g: u32) -> array<vec4<f32>, 2> {
  let q = w[o * p.stride4 + g];
  return array<vec4<f32>, 2>(vec4<f32>(${d}(q.x), ${d}(q.y)), vec4<f32>(${d}(q.z), ${d}(q.w)));
}`;
    }
    case "q8_0":
      return `fn load8(o: u32, g: u32) -> array<vec4<f32>, 2> {
  let b = o * p.blocks + g / 4u;
  let part = g % 4u;
  let q = w[b * 2u + part / 2u];
  let u = select(q.xy, q.zw, (part & 1u) == 1u);
  let s = scale(b);
  return array<vec4<f32>, 2>(i8x4(u.x) * s, i8x4(u.y) * s);
}`;
    case "q4_0":
      return `fn load8(o: u32, g: u32) -> array<vec4<f32>, 2> {
  let b = o * p.blocks + g / 4u;
  let part = g % 4u;
  let q = w[b];
  let u = select(q.xy, q.zw, (part & 1u) == 1u);
  let high = part >= 2u;
  let s = scale(b);
  return array<vec4<f32>, 2>(select(lo4(u.x), hi4(u.x), high) * s, select(lo4(u.y), hi4(u.y), high) * s);
}`;
  }
}

/** GEMM tile sizes: rows of x and output features per workgroup. */
export const GEMM_TILE = 64;

/**
 * The tiled GEMM kernel for a weight format. Params: rows, n (features of this part), k, groups (8-weight
 * groups a row), o0, outCols, stride4, blocks. Grid: x over feature tiles, y over row tiles.
 */
export function gemmKernel(format: DType): Kernel {
  return memoKernel(`gemm.${format}`, () => {
    const code = /* wgsl */ `
struct P { rows: u32, n: u32, k: u32, groups: u32, o0: u32, outCols: u32, stride4: u32, blocks: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
${weightBindings(format, 2)}
@group(0) @binding(${isBlock(format) ? 4 : 3}) var<storage, read_write> out: array<f32>;
${DECODE_HELPERS}
${groupLoader(format)}
// [k][row / 4] and [k][feature / 4]: the inner loop reads one vec4 of each
var<workgroup> xt: array<vec4<f32>, 512>;
var<workgroup> wt: array<vec4<f32>, 512>;

@compute @workgroup_size(256)
fn main(${ENTRY_ARGS}) {
  let o0 = wid.x * 64u;
  let r0 = wid.y * 64u;
  let tx = lid % 16u;
  let ty = lid / 16u;
  let lr = lid / 4u;
  let lk = (lid % 4u) * 8u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < p.k; k0 += 32u) {
    let r = r0 + lr;
    for (var e = 0u; e < 8u; e++) {
      let k = k0 + lk + e;
      var v = 0.0;
      if (r < p.rows && k < p.k) { v = x[r * p.k + k]; }
      xt[(lk + e) * 16u + lr / 4u][lr % 4u] = v;
    }
    let o = o0 + lr;
    let g = (k0 + lk) / 8u;
    var wv = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
    if (o < p.n && g < p.groups) { wv = load8(o, g); }
    for (var e = 0u; e < 4u; e++) {
      wt[(lk + e) * 16u + lr / 4u][lr % 4u] = wv[0][e];
      wt[(lk + 4u + e) * 16u + lr / 4u][lr % 4u] = wv[1][e];
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 32u; kk++) {
      let a = xt[kk * 16u + ty];
      let b = wt[kk * 16u + tx];
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let r = r0 + ty * 4u + i;
    if (r >= p.rows) { break; }
    for (var j = 0u; j < 4u; j++) {
      let o = o0 + tx * 4u + j;
      if (o < p.n) { out[r * p.outCols + p.o0 + o] = acc[i][j]; }
    }
  }
}`;
    return {
      name: `matmul.gemm.${format}`,
      code,
      bindings: isBlock(format) ? ["read", "read", "read", "write"] : ["read", "read", "write"],
    };
  });
}

/** Parameter words shared by both paths, for one part of weight w. */
export function weightParams(w: GpuWeight): { stride4: number; blocks: number } {
  return { stride4: w.stride / 4, blocks: w.blocks };
}
