/**
 * GEMVs on int8 x in which a lane owns whole 32-weight blocks of the weight file's order (llama.cpp's
 * mmvq scheme): a skeleton, and RaZeR g128 in its "runs" layout (docs/quantization.md, "RaZeR GEMV
 * prototypes"). bench/lane-blocks.ts adds q4_0 to the same skeleton; bench/gpu-razer-gemv.ts times them;
 * the backend runs the `swar` decoder when RaZeR's GEMV decode variant is "runs-i8" (kernels/packed.ts).
 *
 * Skeleton: 256 threads, teams of 32 lanes; R rows a team, S teams splitting a row group's blocks, U
 * blocks a lane in flight (loaded before any is used). Block b of a row is read by lane b mod 32 of a
 * step, so lanes read consecutive 16-byte slots. Team sums: XOR shuffles within 32 lanes (subgroups of at
 * least 32; subgroupAdd would merge two teams in a 64-wide subgroup) or a workgroup-memory tree; the S teams of a row group meet in workgroup memory.
 *
 * x: quantized to int8 per 32-element block in its natural order (quantXPlanesKernel), as two planes so
 * lanes reading consecutive blocks read consecutive vec4s: xq[b] holds elements 32b + 0..15, xq[blocks +
 * b] elements 32b + 16..31 (element i at byte i % 4 of word i / 4); xs[b] = (scale, Σ quants).
 *
 * RaZeR g128 "runs": 32-weight runs of one group, 16 bytes a run with q4_0's nibble order (byte i:
 * element i low, i + 16 high), and the file's scale words (u16, two a u32, group g in half g & 1; rows
 * padded to an even count). A lane owns one run, so it decodes one scale and one special value per 32
 * weights (the tile order decodes eight per 16-byte slot). 2·(any RaZeR level) is an integer in
 * [−16, 16] (spec §2.1), so the doubled levels are int8 and go through dot4I8Packed; the run's integer
 * sum is scaled once by |s|/2 and x's block scale. Decoders (four codes a u32, a code a byte):
 * - `swar` (the spec's codes: 0x0 the special value, 0x8 zero, E2M1 otherwise): magnitude m = c & 7,
 *   2·|E2M1| = m + r + 2·[r = 3] with r = relu(m − 4) = m & 3 where m ≥ 4 (9 integer ops a word); the sign
 *   as one's complement (mag ^ 0xFF = −mag − 1) and a second dot product with 1 where negative and
 *   2·sv where the code is the sentinel (the carry (c + 15) & 16 finds nonzero codes).
 * - `swar-sum`: the same, with the sentinels' x summed apart (a third dot product) and 2·sv applied
 *   once per run: no per-word multiply.
 * - `2c` (codes re-encoded at upload): a group whose special value is negative is stored negated (its
 *   codes' signs flipped, the scale's bit 15 then meaning "negate"), so every sentinel is +10 or +16;
 *   zero becomes 0x0 and the sentinel 0x8 (the "−0" slot). A byte is then two's complement,
 *   ((mag + 2·sv·[sentinel]) ^ mask) + [negative], one dot product a word and no correction.
 * - `lut` (the spec's codes, bytes re-paired at upload): a table in workgroup memory, filled by every
 *   workgroup first, maps a code byte (two codes) and the group's special value (4 × 256 u32, 4 KiB) to
 *   the two doubled levels in bytes 0 and 2, so two lookups ORed (one shifted by 8) give a dot4I8Packed
 *   word. A run's byte i holds elements e and e + 2 (e = 16·[i & 2] + 4·(i / 4) + (i & 1)), so word i / 4
 *   of the run meets x words i / 4 and 4 + i / 4 unchanged. ~2.4 integer ops and half a table load a
 *   weight, against ~5.5 ops for `2c`; the lanes' lookups may conflict in workgroup memory banks.
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

const GEMV_THREADS = 256;

/** A format's pieces of the skeleton. */
export interface LaneFormat {
  /** Fields of the uniform struct P (must include n, o0, blocks: 32-weight blocks a row). */
  params: string;
  /** Bindings 1.. and helper functions. */
  decls: string;
  /** WGSL lets for row j (its weight row index is `r`). */
  rowLets: (j: number, r: string) => string;
  /** WGSL loads of block `b` (suffix `t`): x shared by the rows, then row j's. */
  loadX: (b: string, t: string) => string;
  loadW: (j: number, b: string, t: string) => string;
  /** WGSL statement adding block `b`'s (suffix t) contribution into acc{j}. */
  step: (j: number, t: string) => string;
  /** WGSL of row j's output from acc{j}. */
  post: (j: number) => string;
  /** WGSL statements every invocation runs first, in uniform control flow (e.g. filling a table in workgroup memory; end with a barrier). */
  prologue?: string;
}

/** The WGSL of format f's lane-blocks GEMV with R rows a team, S teams splitting K and U blocks in flight. */
export function laneBlocksKernel(f: LaneFormat, R: number, S: number, U: number, subgroup: boolean): string {
  if (!(R >= 1 && U >= 1 && S >= 1 && 8 % S === 0)) throw new Error(`lane blocks: R${R} S${S} U${U}: S must divide 8 teams, R and U >= 1`);
  const rows = Array.from({ length: R }, (_, j) => j);
  const us = Array.from({ length: U }, (_, u) => u);
  const each = (g: (j: number) => string, sep = " ") => rows.map(g).join(sep);
  const loads = (b: string, t: string) => `${f.loadX(b, t)}\n    ${each((j) => f.loadW(j, b, t))}`;
  const steps = (t: string) => each((j) => f.step(j, t));
  const reduce = subgroup
    ? [16, 8, 4, 2, 1].map((o) => each((j) => `acc${j} += subgroupShuffleXor(acc${j}, ${o}u);`)).join("\n  ") + (S > 1 ? `
  if (lane == 0u) { ${each((j) => `red[team * ${R}u + ${j}u] = acc${j};`)} }
  workgroupBarrier();
  if (lane == 0u && kp == 0u) { for (var i = 1u; i < ${S}u; i++) { ${each((j) => `acc${j} += red[(team + i) * ${R}u + ${j}u];`)} } }` : "")
    : `${each((j) => `red[lid * ${R}u + ${j}u] = acc${j};`)}
  workgroupBarrier();
  let qq = lid % ${32 * S}u;
  for (var h = ${16 * S}u; h > 0u; h >>= 1u) {
    if (qq < h) { ${each((j) => `red[lid * ${R}u + ${j}u] += red[(lid + h) * ${R}u + ${j}u];`)} }
    workgroupBarrier();
  }
  ${each((j) => `acc${j} = red[lid * ${R}u + ${j}u];`)}`;
  return /* wgsl */ `${subgroup ? "enable subgroups;" : ""}
struct P { ${f.params} }
@group(0) @binding(0) var<uniform> p: P;
${f.decls}
var<workgroup> red: array<f32, ${GEMV_THREADS * R}>;
// i32 to f32 for |i| < 2^22 by an exact f32 subtraction (kernels/gemv-i8.ts)
fn i2f(i: i32) -> f32 { return bitcast<f32>(i + 0x4B400000) - 12582912.0; }
@compute @workgroup_size(${GEMV_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${f.prologue ?? ""}
  let team = lid / 32u;
  let lane = lid % 32u;
  let kp = team % ${S}u;
  let row0 = (wid.y * nwg.x + wid.x) * ${(8 / S) * R}u + (team / ${S}u) * ${R}u;
  let last = p.n - 1u;
  ${each((j) => `var acc${j} = 0.0; ${f.rowLets(j, `min(row0 + ${j}u, last)`)}`, "\n  ")}
  let steps = p.blocks / ${32 * U}u;
  for (var st = kp; st < steps; st += ${S}u) {
    let b = st * ${32 * U}u + lane;
    ${us.map((u) => loads(u === 0 ? "b" : `(b + ${32 * u}u)`, `_${u}`)).join("\n    ")}
    ${us.map((u) => steps(`_${u}`)).join("\n    ")}
  }
  for (var b = steps * ${32 * U}u + kp * 32u + lane; b < p.blocks; b += ${32 * S}u) {
    ${loads("b", "_t")}
    ${steps("_t")}
  }
  ${reduce}
  if (lane == 0u && kp == 0u) { ${each((j) => `if (row0 + ${j}u < p.n) { out[p.o0 + row0 + ${j}u] = ${f.post(j)}; }`)} }
}`;
}

/** Output rows of one workgroup of a lane-blocks kernel. */
export const laneBlocksRows = (R: number, S: number): number => (8 / S) * R;

export const X_BINDINGS = `@group(0) @binding(1) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> xs: array<vec2<f32>>;`;
export const X_LOADS = (b: string, t: string) => `let xa${t} = xq[${b}]; let xb${t} = xq[p.blocks + ${b}]; let xs${t} = xs[${b}];`;

/** RaZeR run decoders (see the header). */
export const RAZER_LANE_VARIANTS = ["swar", "swar-sum", "2c", "lut"] as const;
export type RazerLaneVariant = (typeof RAZER_LANE_VARIANTS)[number];

// 2·|E2M1| of the magnitudes m (bytes 0..7): r = relu(m − 4) = m & 3 where bit 2 is set, then
// m + r + 2·[r = 3] (0, 1, 2, 3, 4, 6, 8, 12); (r >> 1) carries a neighbour's bit 0 into bit 7, & r drops it
const MAG = /* wgsl */ `
fn rz_mag(m: u32) -> u32 {
  let r = m & (((m >> 2u) & 0x01010101u) * 3u);
  return m + r + (((r >> 1u) & r) << 1u);
}`;

/** Each decoder's WGSL: rz_run(q, a, b, sv), a run's integer sum, and its helpers. */
export const RAZER_WORD: Record<RazerLaneVariant, string> = {
  // sv: the byte of 2·sv (two's complement); one's complement sign, corrected with the sentinel term
  swar: /* wgsl */ `${MAG}
fn rz_word(c: u32, x: u32, sv: u32) -> i32 {
  let mag = rz_mag(c & 0x07070707u);
  let neg = (c >> 3u) & 0x01010101u;
  let sent = (((c + 0x0F0F0F0Fu) & 0x10101010u) ^ 0x10101010u) >> 4u;
  return dot4I8Packed(mag ^ (neg * 0xFFu), x) + dot4I8Packed(neg | (sent * sv), x);
}
fn rz_run(q: vec4<u32>, a: vec4<u32>, b: vec4<u32>, sv: u32) -> i32 {
  let m = 0x0F0F0F0Fu;
  return rz_word(q.x & m, a.x, sv) + rz_word(q.y & m, a.y, sv) + rz_word(q.z & m, a.z, sv) + rz_word(q.w & m, a.w, sv)
       + rz_word((q.x >> 4u) & m, b.x, sv) + rz_word((q.y >> 4u) & m, b.y, sv) + rz_word((q.z >> 4u) & m, b.z, sv) + rz_word((q.w >> 4u) & m, b.w, sv);
}`,
  // sv: 2·sv as an i32; the sentinels' x is summed in the high half of a vec2 and scaled once a run
  "swar-sum": /* wgsl */ `${MAG}
fn rz_word(c: u32, x: u32) -> vec2<i32> {
  let mag = rz_mag(c & 0x07070707u);
  let neg = (c >> 3u) & 0x01010101u;
  let sent = (((c + 0x0F0F0F0Fu) & 0x10101010u) ^ 0x10101010u) >> 4u;
  return vec2<i32>(dot4I8Packed(mag ^ (neg * 0xFFu), x) + dot4I8Packed(neg, x), dot4I8Packed(sent, x));
}
fn rz_run(q: vec4<u32>, a: vec4<u32>, b: vec4<u32>, sv: u32) -> i32 {
  let m = 0x0F0F0F0Fu;
  let s = rz_word(q.x & m, a.x) + rz_word(q.y & m, a.y) + rz_word(q.z & m, a.z) + rz_word(q.w & m, a.w)
        + rz_word((q.x >> 4u) & m, b.x) + rz_word((q.y >> 4u) & m, b.y) + rz_word((q.z >> 4u) & m, b.z) + rz_word((q.w >> 4u) & m, b.w);
  return s.x + bitcast<i32>(sv) * s.y;
}`,
  // sv: 2·|sv| (10 or 16); codes re-encoded (header), so every byte is its doubled level
  "2c": /* wgsl */ `${MAG}
fn rz_word(c: u32, x: u32, sv: u32) -> i32 {
  let m = c & 0x07070707u;
  let s = (c >> 3u) & 0x01010101u;
  let neg = s & (((m + 0x07070707u) & 0x08080808u) >> 3u);
  let v = rz_mag(m) + (s ^ neg) * sv;
  return dot4I8Packed((v ^ (neg * 0xFFu)) + neg, x);
}
fn rz_run(q: vec4<u32>, a: vec4<u32>, b: vec4<u32>, sv: u32) -> i32 {
  let m = 0x0F0F0F0Fu;
  return rz_word(q.x & m, a.x, sv) + rz_word(q.y & m, a.y, sv) + rz_word(q.z & m, a.z, sv) + rz_word(q.w & m, a.w, sv)
       + rz_word((q.x >> 4u) & m, b.x, sv) + rz_word((q.y >> 4u) & m, b.y, sv) + rz_word((q.z >> 4u) & m, b.z, sv) + rz_word((q.w >> 4u) & m, b.w, sv);
}`,
  // sv: the table's base (256 · the scale word's bits 15..14); codes re-paired at upload (header)
  lut: /* wgsl */ `
var<workgroup> lut: array<u32, 1024>;
// 2·level of the spec's code c (0x0 the sentinel, 0x8 zero) in a group whose special value is t (bit 0: 8
// rather than 5, bit 1: negative), as an int8 byte
fn rz_level(c: u32, t: u32) -> u32 {
  let doubled = array<i32, 8>(0, 1, 2, 3, 4, 6, 8, 12);
  var v = select(doubled[c & 7u], 10 + 6 * i32(t & 1u), c == 0u);
  if ((c & 8u) != 0u || (c == 0u && (t & 2u) != 0u)) { v = -v; }
  return bitcast<u32>(v) & 0xFFu;
}
// four code bytes to two words of doubled levels: bytes 0 and 1 give elements 0..3 of one x word, 2 and 3 of the other
fn rz_pair(q: u32, t: u32) -> vec2<u32> {
  let b = unpack4xU8(q) + vec4<u32>(t);
  return vec2<u32>(lut[b.x] | (lut[b.y] << 8u), lut[b.z] | (lut[b.w] << 8u));
}
fn rz_run(q: vec4<u32>, a: vec4<u32>, b: vec4<u32>, t: u32) -> i32 {
  let x = rz_pair(q.x, t); let y = rz_pair(q.y, t); let z = rz_pair(q.z, t); let w = rz_pair(q.w, t);
  return dot4I8Packed(x.x, a.x) + dot4I8Packed(x.y, b.x) + dot4I8Packed(y.x, a.y) + dot4I8Packed(y.y, b.y)
       + dot4I8Packed(z.x, a.z) + dot4I8Packed(z.y, b.z) + dot4I8Packed(w.x, a.w) + dot4I8Packed(w.y, b.w);
}`,
};

/** The lut decoder's table: entry 256·t + B holds 2·level of B's low code in byte 0 and of its high code in byte 2. */
const RAZER_LUT_FILL = /* wgsl */ `for (var e = lid; e < 1024u; e += 256u) {
    let t = e >> 8u;
    lut[e] = rz_level(e & 15u, t) | (rz_level((e >> 4u) & 15u, t) << 16u);
  }
  workgroupBarrier();`;

// the special value argument of rz_run from a scale word (bits 15 sign, 14 magnitude 8 rather than 5)
const RAZER_SV: Record<RazerLaneVariant, string> = {
  swar: "fn rz_sv(s: u32) -> u32 { let m = 10u + 6u * ((s >> 14u) & 1u); return select(m, 256u - m, (s & 0x8000u) != 0u); }",
  "swar-sum": "fn rz_sv(s: u32) -> u32 { let m = 10u + 6u * ((s >> 14u) & 1u); return select(m, bitcast<u32>(-i32(m)), (s & 0x8000u) != 0u); }",
  "2c": "fn rz_sv(s: u32) -> u32 { return 10u + 6u * ((s >> 14u) & 1u); }",
  lut: "fn rz_sv(s: u32) -> u32 { return ((s >> 14u) & 3u) << 8u; }",
};
// |s| / 2 (levels are doubled); 2c: negated where bit 15 marks a stored-negated group
const RAZER_SCALE: Record<RazerLaneVariant, string> = {
  swar: "fn rz_scale(s: u32) -> f32 { return unpack2x16float(s & 0x3FFFu).x * 0.5; }",
  "swar-sum": "fn rz_scale(s: u32) -> f32 { return unpack2x16float(s & 0x3FFFu).x * 0.5; }",
  "2c": "fn rz_scale(s: u32) -> f32 { return unpack2x16float(s & 0x3FFFu).x * select(0.5, -0.5, (s & 0x8000u) != 0u); }",
  lut: "fn rz_scale(s: u32) -> f32 { return unpack2x16float(s & 0x3FFFu).x * 0.5; }",
};

/**
 * RaZeR g128 runs on int8 x. Bindings: P { n, k, o0, blocks (runs a row), srow (scale u32s a row), mul
 * (the tensor scale) }, xq, xs, w (vec4<u32> a run, row r's run b at r · blocks + b), sc (the scale
 * words, u32 pairs, row r's at r · srow), out.
 */
export function razerLaneKernel(variant: RazerLaneVariant, R: number, S: number, U: number, subgroup: boolean): string {
  return laneBlocksKernel({
    params: "n: u32, k: u32, o0: u32, blocks: u32, srow: u32, mul: f32",
    decls: `${X_BINDINGS}
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> sc: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
${RAZER_WORD[variant]}
${RAZER_SV[variant]}
${RAZER_SCALE[variant]}`,
    rowLets: (j, r) => `let w${j} = ${r} * p.blocks; let c${j} = ${r} * p.srow;`,
    loadX: X_LOADS,
    // run b is in group b / 4, whose word is half (b / 4) & 1 of u32 b / 8
    loadW: (j, b, t) => `let q${j}${t} = w[w${j} + ${b}]; let s${j}${t} = sc[c${j} + (${b} >> 3u)] >> ((${b} & 4u) << 2u);`,
    step: (j, t) => `acc${j} += rz_scale(s${j}${t}) * xs${t}.x * i2f(rz_run(q${j}${t}, xa${t}, xb${t}, rz_sv(s${j}${t})));`,
    post: (j) => `acc${j} * p.mul`,
    prologue: variant === "lut" ? RAZER_LUT_FILL : undefined,
  }, R, S, U, subgroup);
}

/** A RaZeR g128 tensor in the "runs" layout of `variant` (header): u32 words of the runs and of the scales. */
export function razerRunsLayout(variant: RazerLaneVariant, rows: number, cols: number, codes: Uint8Array, scales: Uint8Array): { w: Uint32Array; sc: Uint32Array; srow: number } {
  if (cols % 128 !== 0) throw new Error(`razer runs: ${cols} columns are not whole groups of 128`);
  const groups = cols / 128;
  const wpr = groups + (groups & 1); // u16 scale words a row (spec §3.2)
  if (codes.length !== (rows * cols) / 2 || scales.length !== rows * wpr * 2) throw new Error(`razer runs: ${codes.length} code and ${scales.length} scale bytes do not make ${rows}x${cols}`);
  const runs = cols / 32;
  const out = new Uint8Array(rows * cols / 2);
  const words = new Uint16Array(scales.buffer.slice(scales.byteOffset, scales.byteOffset + scales.byteLength));
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < runs; b++) {
      const negate = variant === "2c" && (words[r * wpr + (b >> 2)]! & 0x8000) !== 0;
      const code = (k: number) => {
        const byte = codes[(r * cols + k) >> 1]!;
        const c = k & 1 ? byte >> 4 : byte & 15;
        if (variant !== "2c") return c;
        if (c === 0x0) return 0x8; // the sentinel takes the "−0" slot
        if (c === 0x8) return 0x0; // zero
        return negate ? c ^ 8 : c;
      };
      for (let i = 0; i < 16; i++) {
        // lut: byte i of the run pairs elements e and e + 2 of the x word it meets (rz_pair)
        const [lo, hi] = variant === "lut" ? lutPair(i) : [i, 16 + i];
        out[(r * runs + b) * 16 + i] = code(32 * b + lo) | (code(32 * b + hi) << 4);
      }
    }
  }
  return { w: new Uint32Array(out.buffer), sc: new Uint32Array(words.buffer), srow: wpr / 2 };
}

/** The lut layout's element pair of byte i of a run: word i / 4 meets x words i / 4 (bytes 0, 1) and 4 + i / 4 (bytes 2, 3). */
function lutPair(i: number): [number, number] {
  const e = ((i & 2) << 3) + 4 * (i >> 2) + (i & 1);
  return [e, e + 2];
}

/** x quantized (int8 `q`, f32 scale `d` a 32-block) into the planes and (scale, sum) pairs of the header. */
export function xPlanes(q: Int8Array, d: Float32Array): { planes: Int8Array; xs: Float32Array } {
  const blocks = q.length / 32;
  const planes = new Int8Array(q.length);
  const xs = new Float32Array(2 * blocks);
  for (let b = 0; b < blocks; b++) {
    let sum = 0;
    for (let i = 0; i < 32; i++) {
      planes[(i < 16 ? 0 : blocks * 16) + b * 16 + (i % 16)] = q[32 * b + i]!;
      sum += q[32 * b + i]!;
    }
    xs[2 * b] = d[b]!;
    xs[2 * b + 1] = sum;
  }
  return { planes, xs };
}

// The planes of the header are kernels/gemv-blocks.ts's (q4_0's blocks layout): its quantXBlocksKernel
// (kernels/gemv-i8.ts's rule, QUANT_X_BLOCKS blocks a workgroup) quantizes x for both.

/**
 * Rows a team, teams splitting K and runs in flight of the backend's RaZeR runs GEMV. Not measured yet:
 * blocks-i8's best on an H200 (R1 S1 U2, docs/performance.md "Session 5"); bench/gpu-razer-gemv.ts times
 * the alternatives.
 */
export const RAZER_RUNS_GEMV = { R: 1, S: 1, U: 2 } as const;

/**
 * The backend's RaZeR runs GEMV (decoder `swar`, the spec's codes): R rows a team, S teams splitting K,
 * U runs a lane in flight, `subgroup` for shuffle sums (subgroups of at least 32). Params: n, k, o0, blocks
 * (runs a row), srow (scale u32s a row), mul (f32 bits of the tensor scale). Bindings: xq, xs
 * (quantXPlanesKernel), w, sc, out. Grid: ceil(n / laneBlocksRows(R, S)).
 */
export function razerRunsGemvKernel(R: number, S: number, U: number, subgroup: boolean): Kernel {
  return memoKernel(`gemv.razer.runs.${R}.${S}.${U}.${+subgroup}`, () => ({
    name: "matmul.gemv.razer",
    code: razerLaneKernel("swar", R, S, U, subgroup),
    bindings: ["read", "read", "read", "read", "write"],
  }));
}
