/**
 * q8_0/q4_0 GEMV on int8 activations, as llama.cpp (and the CPU backend's default, architecture.md
 * decision 10) does it: x is quantized once to int8 per 32-element block with an f32 scale, and each
 * block's products are integer dot products (`dot4I8Packed`), times weight scale x activation scale.
 *
 * Why: on the f32 path a 16-byte q4_0 load (32 weights) needs 128 bytes of f32 x and 32 FMAs plus nibble
 * decoding; here it needs 32 bytes of int8 x (+ 32 bytes of x scales that 8 lanes share) and 8 dot4s.
 *
 * Layout of the quantized x (quantXKernel): quants in x's own order, 4 a u32 word (element i at byte
 * i % 4 of word i / 4; in q4_0's whole tiles bytes 1 and 2 of every word swap places, see `pair`), so lane
 * l of a weight tile (weights.ts: its 16 bytes hold elements 4l + 128v + 0..3) reads word l + 32v of the
 * tile: coalesced, like the f32 path's x. Scales are permuted like the weight
 * scales of the tile ([g][v], lane group g = l / 8), so a lane's x scales are one or two aligned vec4 loads
 * next to its weight scales; blocks past the last whole tile keep their order.
 *
 * Quantization (the CPU's quant_i8 in kernels.wat): amax = max |x|, scale = amax / 127,
 * q = nearest-even(x * (127 / amax)) clamped to [-127, 127] (q = 0 when amax = 0). WGSL's f32 division
 * may differ from the CPU's by an ulp on some drivers, so a rare q can differ by one where x * inv sits on
 * a tie; the tests check the quantized x against that rule and the GEMV exactly against the read-back x.
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";
import { gemvSplit, gemvTeam, type GemvHooks } from "./matmul.js";

export type BlockFormat = "q8_0" | "q4_0";

/** Blocks of one weight tile (weights.ts TILE_ELEMS / 32). */
export const TILE_BLOCKS: Record<BlockFormat, number> = { q8_0: 16, q4_0: 32 };

/** Rows per team for the int8-activation GEMV (q8_0: the f32 path's default, not tuned on a GPU). */
export const GEMV_I8_ROWS: Record<BlockFormat, number> = { q8_0: 4, q4_0: 2 };
/**
 * Tile slots a lane loads before it computes (1: one at a time). q4_0: 2, from bench/gpu-gemv-anatomy.ts
 * on an H200 (R2 S2, µs U1 / U2: 8192² 19.0 / 16.5, 14336x4096 16.3 / 15.1, 4096x14336 16.8 / 14.6,
 * 8192x2048 7.6 / 7.2, 2048x8192 10.0 / 8.2; docs/results/session5/). q8_0: 1, not tuned.
 */
export const GEMV_I8_UNROLL: Record<BlockFormat, number> = { q8_0: 1, q4_0: 2 };

const GEMV_THREADS = 256;
export const QUANT_X_GROUP = 64;
/** Blocks one quantXKernel workgroup quantizes (a thread a block). */
export const QUANT_X_BLOCKS = QUANT_X_GROUP;

/** Bytes of the int8 quants and of the f32 scales for K elements (scales padded to whole vec4 pairs). */
export function quantXBytes(K: number): { quants: number; scales: number } {
  const blocks = K / 32;
  return { quants: blocks * 32, scales: Math.ceil(blocks / 8) * 8 * 4 };
}

/**
 * Quantizes x [1, K] (K a multiple of 32) to int8 blocks for `format`'s tile order. Params: blocks, tiles
 * (whole weight tiles a row). Bindings: x (vec4 f32), quants (8 u32 a block), scales (f32); a thread a
 * block. Grid: ceil(blocks / QUANT_X_BLOCKS). (Eight threads a block with a workgroup-memory amax timed
 * no faster on an H200, 7.1 vs 7.7 µs at K = 8192, and decode with it was slower in that run; kept simple.)
 */
export function quantXKernel(format: BlockFormat): Kernel {
  const TB = TILE_BLOCKS[format];
  return memoKernel(`quantx.${format}`, () => ({
    name: "matmul.quantx",
    code: /* wgsl */ `
struct P { blocks: u32, tiles: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> xq: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> xs: array<f32>;

fn pack(v: vec4<f32>, inv: f32, swap: bool) -> u32 {
  let q = vec4<i32>(clamp(round(v * inv), vec4<f32>(-127.0), vec4<f32>(127.0)));
  let b = bitcast<vec4<u32>>(q) & vec4<u32>(0xffu);
  let mid = select((b.y << 8u) | (b.z << 16u), (b.z << 8u) | (b.y << 16u), swap);
  return b.x | mid | (b.w << 24u);
}

@compute @workgroup_size(${QUANT_X_GROUP})
fn main(${ENTRY_ARGS}) {
  let b = ${GROUP_INDEX} * ${QUANT_X_GROUP}u + lid;
  if (b >= p.blocks) { return; }
  var v: array<vec4<f32>, 8>;
  var m = vec4<f32>(0.0);
  for (var i = 0u; i < 8u; i++) {
    v[i] = x[b * 8u + i];
    m = max(m, abs(v[i]));
  }
  let amax = max(max(m.x, m.y), max(m.z, m.w));
  let inv = select(0.0, 127.0 / amax, amax > 0.0);
  let t = b / ${TB}u;
  let sw = ${format === "q4_0" ? "t < p.tiles" : "false"};
  xq[2u * b] = vec4<u32>(pack(v[0], inv, sw), pack(v[1], inv, sw), pack(v[2], inv, sw), pack(v[3], inv, sw));
  xq[2u * b + 1u] = vec4<u32>(pack(v[4], inv, sw), pack(v[5], inv, sw), pack(v[6], inv, sw), pack(v[7], inv, sw));
  var at = b;
  if (t < p.tiles) {
    let bt = b % ${TB}u;
    at = t * ${TB}u + ${TB / 4}u * (bt & 3u) + (bt >> 2u);
  }
  xs[at] = amax / 127.0;
}`,
    bindings: ["read", "write", "write"],
  }));
}

/**
 * An integer dot product as f32 without an int-to-float conversion: 1.5 * 2^23 + i read as f32, minus
 * 1.5 * 2^23, is i exactly for |i| < 2^22 (every sum here is below 2^20). On an H200 a conversion costs
 * ~3.7 f32 FMAs of issue (bench/gpu-op-cost.ts), an integer add and an f32 add ~2.
 */
const I2F = /* wgsl */ `fn i2f(i: i32) -> f32 { return bitcast<f32>(i + 0x4B400000) - 12582912.0; }`;

/** Per format: x words per tile slot (v), the tile-slot dot and the rest-slot dot, in WGSL. */
function formatFns(format: BlockFormat): { xv: number; slots: string; tileSlots: string; scaleType: string; scaleRow: string; fns: string } {
  if (format === "q8_0") {
    return {
      xv: 4, slots: "(2u * p.blocks)", tileSlots: "((p.blocks >> 4u) * 32u)", scaleType: "vec2<u32>", scaleRow: "(((p.blocks + 7u) >> 3u) * 2u)",
      fns: `
fn idot(a: u32, b: u32) -> f32 { return i2f(dot4I8Packed(a, b)); }
// lane word v is block g + 4v: its weight scale c[v], its x scale xs0[v]
fn tdot(q: vec4<u32>, c: vec2<u32>, s: vec4<f32>, x: array<u32, 4>) -> f32 {
  let d = vec4<f32>(unpack2x16float(c.x), unpack2x16float(c.y)) * s;
  return dot(d, vec4<f32>(idot(q.x, x[0]), idot(q.y, x[1]), idot(q.z, x[2]), idot(q.w, x[3])));
}
fn rdot(q: vec4<u32>, d: f32, x: array<u32, 4>) -> f32 {
  return d * i2f(dot4I8Packed(q.x, x[0]) + dot4I8Packed(q.y, x[1]) + dot4I8Packed(q.z, x[2]) + dot4I8Packed(q.w, x[3]));
}
fn rscale(e: u32) -> f32 { return unpack2x16float(sc[e >> 2u][(e >> 1u) & 1u])[e & 1u]; }`,
    };
  }
  return {
    xv: 8, slots: "p.blocks", tileSlots: "((p.blocks >> 5u) * 32u)", scaleType: "vec4<u32>", scaleRow: "((p.blocks + 7u) >> 3u)",
    fns: `
// nibbles (0..15, one a byte) to int8 nibble - 8: +120 cannot carry out of a byte, ^128 then subtracts 128
fn sgn(n: u32) -> u32 { return (n + 0x78787878u) ^ 0x80808080u; }
// Tile word w holds block v (bits 0-15) and block v + 1 (bits 16-31), the lane's elements e0..e3 of each at
// nibbles 0..3 (4..7). a = nibbles 0,2,4,6 and b = 1,3,5,7, a byte each; one insertBits puts a block's four
// in one word, in the order e0 e2 e1 e3 in which quantXKernel stores tile x words: 6 integer operations and
// two dot4s per 8 weights (spreading each nibble to its own byte took ~12 operations per 4 weights).
fn pair(w: u32, x0: u32, x1: u32) -> vec2<f32> {
  let a = w & 0x0f0f0f0fu;
  let b = (w >> 4u) & 0x0f0f0f0fu;
  let lo = sgn(insertBits(a, b, 16u, 16u));
  let hi = sgn(insertBits(b, a >> 16u, 0u, 16u));
  return vec2<f32>(i2f(dot4I8Packed(lo, x0)), i2f(dot4I8Packed(hi, x1)));
}
// word j holds v = 2j (bits 0-15) and 2j + 1 (bits 16-31), block g + 4v: weight scale c[v], x scale s[v]
fn tdot(q: vec4<u32>, c: vec4<u32>, s0: vec4<f32>, s1: vec4<f32>, x: array<u32, 8>) -> f32 {
  let d0 = vec4<f32>(unpack2x16float(c.x), unpack2x16float(c.y)) * s0;
  let d1 = vec4<f32>(unpack2x16float(c.z), unpack2x16float(c.w)) * s1;
  return dot(d0, vec4<f32>(pair(q.x, x[0], x[1]), pair(q.y, x[2], x[3])))
       + dot(d1, vec4<f32>(pair(q.z, x[4], x[5]), pair(q.w, x[6], x[7])));
}
// the file's order: byte i of the block holds element i (low nibble) and i + 16 (high nibble)
fn rdot(q: vec4<u32>, d: f32, x: array<u32, 8>) -> f32 {
  let m = 0x0f0f0f0fu;
  var s = 0;
  for (var j = 0u; j < 4u; j++) {
    s += dot4I8Packed(sgn(q[j] & m), x[j]) + dot4I8Packed(sgn((q[j] >> 4u) & m), x[j + 4u]);
  }
  return d * i2f(s);
}
fn rscale(e: u32) -> f32 { return unpack2x16float(sc[e >> 3u][(e >> 1u) & 3u])[e & 1u]; }`,
  };
}

/**
 * WGSL summing each team's R row sums acc0..acc(R-1) across its lanes, then across the S teams that split
 * a row group (lane 0 of team kp = 0 ends with the totals): subgroup shuffles, or a workgroup-memory tree
 * without subgroups. Expects `lid`, `team`, `lane`, `kp` and the constants TEAM, R, S in scope.
 */
export function teamReduce(team: number, viaSubgroup: boolean, R: number, S: number): { reduce: string; wgMemory: string } {
  const teams = GEMV_THREADS / team;
  const rows = Array.from({ length: R }, (_, j) => j);
  const each = (fn: (j: number) => string, sep: string) => rows.map(fn).join(sep);
  if (!viaSubgroup) {
    return {
      wgMemory: `var<workgroup> red: array<f32, ${GEMV_THREADS * R}>;`,
      reduce: `${each((j) => `red[lid * R + ${j}u] = acc${j};`, "\n  ")}
  workgroupBarrier();
  let q = lid % (TEAM * S);
  for (var h = TEAM * S / 2u; h > 0u; h >>= 1u) {
    if (q < h) {
      ${each((j) => `red[lid * R + ${j}u] += red[(lid + h) * R + ${j}u];`, "\n      ")}
    }
    workgroupBarrier();
  }
  ${each((j) => `acc${j} = red[lid * R + ${j}u];`, "\n  ")}`,
    };
  }
  const shuffles: string[] = [];
  for (let o = team / 2; o >= 1; o /= 2) for (const j of rows) shuffles.push(`acc${j} += subgroupShuffleXor(acc${j}, ${o}u);`);
  if (S === 1) return { reduce: shuffles.join("\n  "), wgMemory: "" };
  return {
    wgMemory: `var<workgroup> red: array<f32, ${teams * R}>;`,
    reduce: `${shuffles.join("\n  ")}
  if (lane == 0u) {
    ${each((j) => `red[team * R + ${j}u] = acc${j};`, "\n    ")}
  }
  workgroupBarrier();
  if (lane == 0u && kp == 0u) {
    for (var i = 1u; i < S; i++) {
      ${each((j) => `acc${j} += red[(team + i) * R + ${j}u];`, "\n      ")}
    }
  }`,
  };
}

/**
 * The int8-activation GEMV for q8_0/q4_0, with the f32 path's teams, rows per team R and split S
 * (kernels/matmul.ts), one load in flight per lane and row. Params: n, k, o0, blocks (then the hooks').
 * Bindings: x quants (u32), x scales (vec4 f32), weight quants, weight scales, out (then the hooks').
 * Grid: ceil(n / gemvRows(sg, R, S)). `hooks` are the fused GEMVs' row mapping and store (gemv-fused.ts);
 * they may use p.n, p.o0 and their own parameters.
 */
export function gemvI8Kernel(format: BlockFormat, sg: number, rowsPerTeam = GEMV_I8_ROWS[format], split = gemvSplit(sg, rowsPerTeam), unroll = GEMV_I8_UNROLL[format], hooks?: GemvHooks): Kernel {
  const team = gemvTeam(sg);
  const teams = GEMV_THREADS / team;
  const viaSubgroup = sg > 1;
  const [R, S, U] = [rowsPerTeam, split, unroll];
  if (!(S >= 1 && (S & (S - 1)) === 0 && teams % S === 0)) throw new Error(`GEMV split ${S} must be a power of two dividing ${teams} teams`);
  if (!(R >= 1 && U >= 1)) throw new Error(`GEMV rows per team ${R} and unroll ${U} must be at least 1`);
  return memoKernel(`gemvi8.${format}.${team}.${+viaSubgroup}.${R}.${S}.${U}${hooks ? `.${hooks.key}` : ""}`, () => {
    const f = formatFns(format);
    const rows = Array.from({ length: R }, (_, j) => j);
    const each = (fn: (j: number) => string, sep = "\n    ") => rows.map(fn).join(sep);
    const XV = f.xv;
    // x words of tile slot s: word l + 32v of the tile; of rest slot s: XV consecutive words
    const xTile = `var xw: array<u32, ${XV}>;
      let xb = (s & ~31u) * ${XV}u + (s & 31u);
      for (var v = 0u; v < ${XV}u; v++) { xw[v] = xq[xb + 32u * v]; }`;
    const xRest = `var xw: array<u32, ${XV}>;
      for (var v = 0u; v < ${XV}u; v++) { xw[v] = xq[s * ${XV}u + v]; }`;
    const tileScales = format === "q4_0" ? "let s0 = xs[2u * (s >> 3u)]; let s1 = xs[2u * (s >> 3u) + 1u];" : "let s0 = xs[s >> 3u];";
    const tileArgs = format === "q4_0" ? "s0, s1" : "s0";
    const restBlock = format === "q4_0" ? "s" : "(s >> 1u)";
    const { reduce, wgMemory } = teamReduce(team, viaSubgroup, R, S);
    const code = /* wgsl */ `${viaSubgroup ? "enable subgroups;" : ""}
struct P { n: u32, k: u32, o0: u32, blocks: u32${hooks?.params ?? ""} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> xq: array<u32>;
@group(0) @binding(2) var<storage, read> xs: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> sc: array<${f.scaleType}>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
${hooks?.decls?.(6) ?? ""}
${I2F}
${f.fns}
fn xscale(i: u32) -> f32 { return xs[i >> 2u][i & 3u]; }
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
    ${each((j) => `let o${j} = ${hooks?.row ? hooks.row(`min(row0 + ${j}u, last)`) : `min(row0 + ${j}u, last)`};`)}
    ${each((j) => `let w${j} = o${j} * ${format === "q4_0" ? "p.blocks" : "(2u * p.blocks)"};`)}
    ${each((j) => `let c${j} = o${j} * ${f.scaleRow};`)}
    let slots = ${f.slots};
    let tileSlots = ${f.tileSlots};
    ${U > 1 ? `var s = kp * TEAM + lane;
    // U slots a lane at once: every weight load of the step issued before any is used
    while (s + ${(U - 1)}u * TEAM * S < tileSlots) {
      ${Array.from({ length: U }, (_, u) => each((j) => `let q${j}_${u} = w[w${j} + s + ${u}u * TEAM * S]; let sc${j}_${u} = sc[c${j} + ((s + ${u}u * TEAM * S) >> 3u)];`, "\n      ")).join("\n      ")}
      ${Array.from({ length: U }, (_, u) => `{
        let s = s + ${u}u * TEAM * S;
        ${xTile}
        ${tileScales}
        ${each((j) => `acc${j} += tdot(q${j}_${u}, sc${j}_${u}, ${tileArgs}, xw);`, "\n        ")}
      }`).join("\n      ")}
      s += ${U}u * TEAM * S;
    }
    for (; s < tileSlots; s += TEAM * S) {` : "for (var s = kp * TEAM + lane; s < tileSlots; s += TEAM * S) {"}
      ${each((j) => `let q${j} = w[w${j} + s]; let sc${j} = sc[c${j} + (s >> 3u)];`, "\n      ")}
      ${xTile}
      ${tileScales}
      ${each((j) => `acc${j} += tdot(q${j}, sc${j}, ${tileArgs}, xw);`, "\n      ")}
    }
    for (var s = tileSlots + kp * TEAM + lane; s < slots; s += TEAM * S) {
      ${xRest}
      let sx = xscale(${restBlock});
      ${each((j) => `acc${j} += rdot(w[w${j} + s], rscale(o${j} * ((p.blocks + 7u) & ~7u) + ${restBlock}) * sx, xw);`, "\n      ")}
    }
  }
  ${reduce}
  if (lane == 0u && kp == 0u) {
    ${hooks?.store
      ? hooks.store(rows.map((j) => `acc${j}`), rows.map((j) => `(row0 + ${j}u)`))
      : each((j) => `if (row0 + ${j}u < p.n) { out[p.o0 + row0 + ${j}u] = acc${j}; }`)}
  }
}`;
    return { name: `matmul.gemv.${format}${hooks ? `.${hooks.key}` : ""}`, code, bindings: ["read", "read", "read", "read", "write", ...(hooks?.bindings ?? [])] };
  });
}

