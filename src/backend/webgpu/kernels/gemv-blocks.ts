/**
 * The int8-activation GEMV over q4_0 in the "blocks" layout (weights.ts: every row in the file's order,
 * block b of row o at o * blocks + b): a lane owns whole 32-weight blocks, as llama.cpp's mmvq does, so it
 * decodes one f16 scale per 32 weights where the tile-order kernel (gemv-i8.ts) decodes eight per 32
 * weights of eight blocks, and its x is one block's. Measured on an H200 (bench/gpu-gemv-anatomy.ts,
 * docs/results/session5/gemv-anatomy-blocks-*.json): 11.3 µs at 14336x4096 against 15.1 for the
 * tile-order int8 GEMV and 19.2 for the f32-x GEMV, ~80% of the time the weight reads alone take.
 *
 * x is quantized per 32-block (the rule of gemv-i8.ts's quantXKernel) into two planes, bytes 0-15 of every
 * block and then bytes 16-31, so that the lanes of a team, reading consecutive blocks, read consecutive
 * vec4s of each plane; next to each block's scale sits the sum of its quants, which folds q4_0's −8 out of
 * the per-nibble work: Σ (n − 8) q = Σ n q − 8 Σ q, and nibbles 0..15 go into dot4I8Packed unchanged.
 * A GGUF q4_0 block's byte i holds element i (low nibble) and i + 16 (high nibble), which is why the
 * planes split there.
 */
import { ENTRY_ARGS, GROUP_INDEX, grid, memoKernel, type Kernel } from "../kernel.js";
import { gemvSplit, gemvTeam, type GemvHooks } from "./matmul.js";
import { QUANT_X_GROUP, teamReduce } from "./gemv-i8.js";

/**
 * Rows per team, split and blocks a lane loads before it computes, for the plain GEMV: R1 S1 U2 had the
 * least time over five Llama shapes on an H200 (the json files above). Fused GEMVs whose team must hold
 * pairs of rows (swiglu) take R2 S1 U2: the same split and unroll give each row's sum the same order, so
 * the fused results equal the separate GEMVs bit for bit, and R2 S1 U2 was the fastest variant on the
 * gate/up shapes (14336x4096 11.2 µs, 8192x2048 5.9).
 */
export const GEMV_BLOCKS = { rowsPerTeam: 1, split: 1, unroll: 2 } as const;
export const GEMV_BLOCKS_PAIRS = { rowsPerTeam: 2, split: 1, unroll: 2 } as const;

const GEMV_THREADS = 256;

/**
 * WGSL `fn quantize(b, i, scale)`: x's block b (its values `value(e)` for vec4s e of the block, times
 * `scale` where the caller normalizes) quantized into slot i of the planes `q` (the high plane `hi` slots
 * on) and of the (scale, sum) pairs `s`, by gemv-i8.ts's rule.
 */
function quantizeFn(value: (e: string) => string, q: string, hi: string, s: string): string {
  return /* wgsl */ `
fn quant(v: vec4<f32>, inv: f32) -> vec4<i32> {
  return vec4<i32>(clamp(round(v * inv), vec4<f32>(-127.0), vec4<f32>(127.0)));
}
fn pack(q: vec4<i32>) -> u32 {
  let b = bitcast<vec4<u32>>(q) & vec4<u32>(0xffu);
  return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}
fn quantize(b: u32, i: u32, scale: f32) {
  var v: array<vec4<f32>, 8>;
  var m = vec4<f32>(0.0);
  for (var e = 0u; e < 8u; e++) {
    v[e] = ${value("b * 8u + e")};
    m = max(m, abs(v[e]));
  }
  let amax = max(max(m.x, m.y), max(m.z, m.w));
  let inv = select(0.0, 127.0 / amax, amax > 0.0);
  var q: array<vec4<i32>, 8>;
  var sum = vec4<i32>(0);
  for (var e = 0u; e < 8u; e++) {
    q[e] = quant(v[e], inv);
    sum += q[e];
  }
  ${q}[i] = vec4<u32>(pack(q[0]), pack(q[1]), pack(q[2]), pack(q[3]));
  ${q}[${hi} + i] = vec4<u32>(pack(q[4]), pack(q[5]), pack(q[6]), pack(q[7]));
  ${s}[i] = vec2<f32>(amax / 127.0, f32(sum.x + sum.y + sum.z + sum.w));
}`;
}

/** WGSL shared by the GEMVs: i2f, the weight scale and a block's Σ nibble · quant (`bdot`). */
const BLOCK_DOT = /* wgsl */ `
// an integer sum as f32 without a conversion (gemv-i8.ts): exact below 2^22
fn i2f(i: i32) -> f32 { return bitcast<f32>(i + 0x4B400000) - 12582912.0; }
fn wscale(i: u32) -> f32 { return unpack2x16float(sc[i >> 1u])[i & 1u]; }
// Σ n q over a block: low nibbles against plane 0 (elements 0-15), high nibbles against plane 1 (16-31)
fn bdot(q: vec4<u32>, a: vec4<u32>, b: vec4<u32>) -> i32 {
  let m = 0x0f0f0f0fu;
  return dot4I8Packed(q.x & m, a.x) + dot4I8Packed(q.y & m, a.y) + dot4I8Packed(q.z & m, a.z) + dot4I8Packed(q.w & m, a.w)
       + dot4I8Packed((q.x >> 4u) & m, b.x) + dot4I8Packed((q.y >> 4u) & m, b.y) + dot4I8Packed((q.z >> 4u) & m, b.z) + dot4I8Packed((q.w >> 4u) & m, b.w);
}`;

/** Bytes of the x planes and of the (scale, sum) pairs for K elements. */
export function quantXBlocksBytes(K: number): { quants: number; scales: number } {
  return { quants: K, scales: (K / 32) * 8 };
}

/**
 * Quantizes x [1, K] (K a multiple of 32) into the planes described above. Params: blocks. Bindings: x
 * (vec4 f32), planes (vec4 u32: block b's bytes 0-15 at b, bytes 16-31 at blocks + b), (scale, sum) pairs
 * (vec2 f32). A thread a block. Grid: ceil(blocks / QUANT_X_GROUP).
 */
export function quantXBlocksKernel(): Kernel {
  return memoKernel("quantx.q4_0.blocks", () => ({
    name: "matmul.quantx",
    code: /* wgsl */ `
struct P { blocks: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> xq: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> xs: array<vec2<f32>>;

${quantizeFn((e) => `x[${e}]`, "xq", "p.blocks", "xs")}

@compute @workgroup_size(${QUANT_X_GROUP})
fn main(${ENTRY_ARGS}) {
  let b = ${GROUP_INDEX} * ${QUANT_X_GROUP}u + lid;
  if (b < p.blocks) { quantize(b, b, 1.0); }
}`,
    bindings: ["read", "write", "write"],
  }));
}

/**
 * The GEMV: R rows a team, S teams splitting a row group's blocks, U blocks a lane loads before it
 * computes. Params: n, k, o0, blocks (then the hooks'). Bindings: x planes, (scale, sum) pairs, weight
 * quants, weight scales (f16 pairs, rows of gemv-i8's padded stride), out (then the hooks'). Grid:
 * ceil(n / gemvRows(sg, R, S)). `hooks` as gemv-i8.ts's.
 */
export function gemvBlocksI8Kernel(sg: number, rowsPerTeam: number = GEMV_BLOCKS.rowsPerTeam, split = rowsPerTeam === GEMV_BLOCKS.rowsPerTeam ? GEMV_BLOCKS.split : gemvSplit(sg, rowsPerTeam), unroll: number = GEMV_BLOCKS.unroll, hooks?: GemvHooks): Kernel {
  const team = gemvTeam(sg);
  const teams = GEMV_THREADS / team;
  const viaSubgroup = sg > 1;
  const [R, S, U] = [rowsPerTeam, split, unroll];
  if (!(S >= 1 && (S & (S - 1)) === 0 && teams % S === 0)) throw new Error(`GEMV split ${S} must be a power of two dividing ${teams} teams`);
  if (!(R >= 1 && U >= 1)) throw new Error(`GEMV rows per team ${R} and unroll ${U} must be at least 1`);
  return memoKernel(`gemvi8.q4_0.blocks.${team}.${+viaSubgroup}.${R}.${S}.${U}${hooks ? `.${hooks.key}` : ""}`, () => {
    const rows = Array.from({ length: R }, (_, j) => j);
    const each = (fn: (j: number) => string, sep = "\n      ") => rows.map(fn).join(sep);
    const { reduce, wgMemory } = teamReduce(team, viaSubgroup, R, S);
    // block `b` of every row of the team: its x and weights loaded, then R sums; weight loads of all U
    // blocks of a step are issued before any is used
    const loads = (b: string, u: number) => each((j) => `let q${j}_${u} = w[w${j} + ${b}]; let d${j}_${u} = wscale(c${j} + ${b});`);
    const use = (b: string, u: number) => `{
        let xa = xq[${b}]; let xb = xq[p.blocks + ${b}]; let xs = xsum[${b}];
        let off = 8 * i32(xs.y);
        ${each((j) => `acc${j} += d${j}_${u} * xs.x * i2f(bdot(q${j}_${u}, xa, xb) - off);`, "\n        ")}
      }`;
    const us = Array.from({ length: U }, (_, u) => u);
    const at = (u: number) => (u === 0 ? "b" : `(b + ${u * team}u)`);
    const code = /* wgsl */ `${viaSubgroup ? "enable subgroups;" : ""}
struct P { n: u32, k: u32, o0: u32, blocks: u32${hooks?.params ?? ""} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> xsum: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> sc: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
${hooks?.decls?.(6) ?? ""}
${BLOCK_DOT}
const TEAM = ${team}u;
const R = ${R}u;
const S = ${S}u;
const ROWS = ${teams / S}u * R;
${wgMemory}

@compute @workgroup_size(${GEMV_THREADS})
fn main(${ENTRY_ARGS}) {
  let team = lid / TEAM;
  let lane = lid % TEAM;
  let kp = team % S;
  let row0 = ${GROUP_INDEX} * ROWS + (team / S) * R;
  ${each((j) => `var acc${j} = 0.0;`, "\n  ")}
  if (row0 < p.n) {
    // rows past n (the last team of the last workgroup) read clamped in-bounds rows; their sums are dropped
    let last = p.n - 1u;
    ${each((j) => `let o${j} = ${hooks?.row ? hooks.row(`min(row0 + ${j}u, last)`) : `min(row0 + ${j}u, last)`};`, "\n    ")}
    ${each((j) => `let w${j} = o${j} * p.blocks;`, "\n    ")}
    ${each((j) => `let c${j} = o${j} * ((p.blocks + 7u) & ~7u);`, "\n    ")}
    let steps = p.blocks / (TEAM * ${U}u);
    for (var st = kp; st < steps; st += S) {
      let b = st * (TEAM * ${U}u) + lane;
      ${us.map((u) => loads(at(u), u)).join("\n      ")}
      ${us.map((u) => use(at(u), u)).join("\n      ")}
    }
    for (var b = steps * (TEAM * ${U}u) + kp * TEAM + lane; b < p.blocks; b += TEAM * S) {
      ${loads("b", 0)}
      ${use("b", 0)}
    }
  }
  ${reduce}
  if (lane == 0u && kp == 0u) {
    ${hooks?.store
      ? hooks.store(rows.map((j) => `acc${j}`), rows.map((j) => `(row0 + ${j}u)`))
      : each((j) => `if (row0 + ${j}u < p.n) { out[p.o0 + row0 + ${j}u] = acc${j}; }`, "\n    ")}
  }
}`;
    return { name: `matmul.gemv.q4_0.blocks${hooks ? `.${hooks.key}` : ""}`, code, bindings: ["read", "read", "read", "read", "write", ...(hooks?.bindings ?? [])] };
  });
}

/**
 * Workgroups the self-quantizing GEMV is launched with over `rows` output rows (`rowsPerGroup` a
 * workgroup): when x fits one window, at most `cap`, each quantizing x once and then taking several row
 * groups (QUANT_X_ONCE_GROUPS); otherwise one a row group.
 */
export function selfQuantGrid(rows: number, rowsPerGroup: number, blocks: number, window: number, cap: number = QUANT_X_ONCE_GROUPS): [number, number] {
  const groups = Math.ceil(rows / rowsPerGroup);
  return grid(blocks <= window && cap > 0 ? Math.min(groups, cap) : groups);
}

/**
 * The window for an x of `blocks` blocks: QUANT_WINDOW, or all of x (rounded up to whole steps of 64
 * blocks) where that fits `maxWorkgroupBytes` next to the kernel's other workgroup arrays, so that x is
 * quantized once per workgroup (Llama 3.1 8B's down projection: 448 blocks, 17.5 KiB).
 */
export function quantWindow(blocks: number, maxWorkgroupBytes: number): number {
  if (blocks <= QUANT_WINDOW) return QUANT_WINDOW;
  const whole = Math.ceil(blocks / 64) * 64;
  return whole * 40 + 5120 <= maxWorkgroupBytes ? whole : QUANT_WINDOW;
}

/** Blocks of x one workgroup of the self-quantizing GEMV stages at a time, at least (8 KiB of quants, 2 KiB of pairs). */
export const QUANT_WINDOW = 256;

/**
 * Workgroups of a self-quantizing GEMV whose x fits one window (selfQuantGrid; 0: one a row group). On an
 * H200 (132 SMs), 8B q4_0 decode went from 267/280 to 298/304 tokens/s with 512 (fewer x quantizations in
 * gate/up's 1,792 row groups); 264–1,056 time alike at 6144x4096 and 4096x4096, 132 is slower
 * (docs/performance.md, "Session 7").
 */
export const QUANT_X_ONCE_GROUPS = 512;

/**
 * Rows per team and unroll of the self-quantizing GEMV: R2 U2 had the least time over 14336x4096,
 * 4096x14336 and 2048x8192 on an H200 (16.0, 16.8, 8.3 µs; R1 U2 20.3, 19.3, 8.9: more rows a workgroup
 * re-read x fewer times; docs/results/session6/anat-*.json).
 */
export const GEMV_BLOCKS_QUANT = { rowsPerTeam: 2, unroll: 2 } as const;

/**
 * The same GEMV taking f32 x and quantizing it itself, so int8 activations cost no dispatch of their own
 * (the host's time per dispatch bounds decode: docs/performance.md). Each workgroup quantizes windows of
 * `window` blocks of x (quantWindow) into workgroup memory, by quantXBlocksKernel's rule, and
 * its teams then run the loop of gemvBlocksI8Kernel over the window: every row's sum takes the same
 * blocks in the same order as gemvBlocksI8Kernel with split 1 and the same unroll, so the two agree bit
 * for bit. Re-reading x costs each workgroup 4K bytes from L2 against its rows' ~0.56K bytes of weights
 * each. Params: n, k, o0, blocks (then the hooks'). Bindings: x (vec4 f32), weight quants, weight scales,
 * out (then the hooks'). Grid: selfQuantGrid (an x of one window is quantized once, and a workgroup may take
 * several row groups).
 *
 * `norm`: x is first RMS-normalized (x · scale · weight, the RMSNorm of kernels/norm.ts with 256 threads
 * over vec4s, its sums in the same order, so the values are that kernel's bit for bit), which saves the
 * norm's dispatch too; workgroup 0 also stores the normalized row, for ops that read it later. Params
 * add eps after blocks; bindings add the norm weight (vec4 f32) and the normalized row's output after x.
 */
export function gemvBlocksQuantKernel(sg: number, rowsPerTeam: number = GEMV_BLOCKS_QUANT.rowsPerTeam, unroll: number = GEMV_BLOCKS_QUANT.unroll, hooks?: GemvHooks, norm = false, window = QUANT_WINDOW): Kernel {
  const team = gemvTeam(sg);
  const teams = GEMV_THREADS / team;
  const viaSubgroup = sg > 1;
  const [R, U] = [rowsPerTeam, unroll];
  if (!(R >= 1 && U >= 1)) throw new Error(`GEMV rows per team ${R} and unroll ${U} must be at least 1`);
  if (window % (team * U) !== 0) throw new Error(`GEMV unroll ${U}: a window of ${window} blocks is not whole steps of ${team * U}`);
  return memoKernel(`gemvq.q4_0.blocks.${team}.${+viaSubgroup}.${R}.${U}.${window}${norm ? ".norm" : ""}${hooks ? `.${hooks.key}` : ""}`, () => {
    const rows = Array.from({ length: R }, (_, j) => j);
    const each = (fn: (j: number) => string, sep = "\n        ") => rows.map(fn).join(sep);
    const { reduce, wgMemory } = teamReduce(team, viaSubgroup, R, 1);
    const us = Array.from({ length: U }, (_, u) => u);
    const at = (u: number) => (u === 0 ? "b" : `(b + ${u * team}u)`);
    // the weight bindings' first number
    const B0 = norm ? 4 : 2;
    // window block `b` (global block win + b) of every row of the team
    const loads = (b: string, u: number) => each((j) => `let q${j}_${u} = w[w${j} + win + ${b}]; let d${j}_${u} = wscale(c${j} + win + ${b});`);
    const use = (b: string, u: number) => `{
          let xa = xq[${b}]; let xb = xq[${window}u + ${b}]; let xs = xsum[${b}];
          let off = 8 * i32(xs.y);
          ${each((j) => `acc${j} += d${j}_${u} * xs.x * i2f(bdot(q${j}_${u}, xa, xb) - off);`, "\n          ")}
        }`;
    const code = /* wgsl */ `${viaSubgroup ? "enable subgroups;" : ""}
struct P { n: u32, k: u32, o0: u32, blocks: u32${norm ? ", eps: f32" : ""}${hooks?.params ?? ""} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
${norm ? `@group(0) @binding(2) var<storage, read> nw: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> normed: array<vec4<f32>>;
var<workgroup> nred: array<f32, ${GEMV_THREADS}>;` : ""}
@group(0) @binding(${B0}) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(${B0 + 1}) var<storage, read> sc: array<u32>;
@group(0) @binding(${B0 + 2}) var<storage, read_write> out: array<f32>;
${hooks?.decls?.(B0 + 3) ?? ""}
var<workgroup> xq: array<vec4<u32>, ${2 * window}>;
var<workgroup> xsum: array<vec2<f32>, ${window}>;
${BLOCK_DOT}
// block b of x (with norm: times scale and the norm weight) into window slot i
${quantizeFn((e) => (norm ? `nw[${e}] * (x[${e}] * scale)` : `x[${e}]`), "xq", `${window}u`, "xsum")}
const TEAM = ${team}u;
const R = ${R}u;
const S = 1u;
const ROWS = ${teams}u * R;
${wgMemory}

@compute @workgroup_size(${GEMV_THREADS})
fn main(${ENTRY_ARGS}) {
  let team = lid / TEAM;
  let lane = lid % TEAM;
  let kp = 0u;
  let last = p.n - 1u;
  ${norm ? `// RMSNorm's scale: kernels/norm.ts's loop and tree over 256 threads
  var ss = 0.0;
  for (var i = lid; i < p.k / 4u; i += ${GEMV_THREADS}u) {
    let v = x[i];
    ss += dot(v, v);
  }
  nred[lid] = ss;
  workgroupBarrier();
  for (var h = ${GEMV_THREADS / 2}u; h > 0u; h = h / 2u) {
    if (lid < h) { nred[lid] += nred[lid + h]; }
    workgroupBarrier();
  }
  let scale = 1.0 / sqrt(nred[0] / f32(p.k) + p.eps);
  if (${GROUP_INDEX} == 0u) {
    for (var i = lid; i < p.k / 4u; i += ${GEMV_THREADS}u) { normed[i] = nw[i] * (x[i] * scale); }
  }` : "let scale = 1.0;"}
  // an x of one window is quantized once, and the workgroup then takes row groups GROUP_INDEX, + workgroups,
  // ... (selfQuantGrid launches fewer workgroups than row groups then); a longer x is quantized window by
  // window for every row group
  let once = p.blocks <= ${window}u;
  if (once) {
    for (var i = lid; i < p.blocks; i += ${GEMV_THREADS}u) { quantize(i, i, scale); }
    workgroupBarrier();
  }
  for (var rg = ${GROUP_INDEX}; rg * ROWS < p.n; rg += nwg.x * nwg.y) {
    let row0 = rg * ROWS + team * R;
    ${each((j) => `var acc${j} = 0.0;`, "\n    ")}
    // rows past n (the last team of the last row group) read clamped in-bounds rows; their sums are dropped
    ${each((j) => `let o${j} = ${hooks?.row ? hooks.row(`min(row0 + ${j}u, last)`) : `min(row0 + ${j}u, last)`};`, "\n    ")}
    ${each((j) => `let w${j} = o${j} * p.blocks;`, "\n    ")}
    ${each((j) => `let c${j} = o${j} * ((p.blocks + 7u) & ~7u);`, "\n    ")}
    for (var win = 0u; win < p.blocks; win += ${window}u) {
      let nb = min(${window}u, p.blocks - win);
      if (!once) {
        for (var i = lid; i < nb; i += ${GEMV_THREADS}u) { quantize(win + i, i, scale); }
        workgroupBarrier();
      }
      if (row0 < p.n) {
        let steps = nb / (TEAM * ${U}u);
        for (var st = 0u; st < steps; st++) {
          let b = st * (TEAM * ${U}u) + lane;
          ${us.map((u) => loads(at(u), u)).join("\n          ")}
          ${us.map((u) => use(at(u), u)).join("\n          ")}
        }
        for (var b = steps * (TEAM * ${U}u) + lane; b < nb; b += TEAM) {
          ${loads("b", 0)}
          ${use("b", 0)}
        }
      }
      if (!once) { workgroupBarrier(); }
    }
    ${reduce}
    if (lane == 0u) {
      ${hooks?.store
        ? hooks.store(rows.map((j) => `acc${j}`), rows.map((j) => `(row0 + ${j}u)`))
        : each((j) => `if (row0 + ${j}u < p.n) { out[p.o0 + row0 + ${j}u] = acc${j}; }`, "\n      ")}
    }
  }
}`;
    return {
      name: `matmul.gemvq.q4_0.blocks${norm ? ".norm" : ""}${hooks ? `.${hooks.key}` : ""}`,
      code,
      bindings: ["read", ...(norm ? ["read", "write"] as const : []), "read", "read", "write", ...(hooks?.bindings ?? [])],
    };
  });
}
