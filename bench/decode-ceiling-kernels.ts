/**
 * The kernels of bench/gpu-decode-ceiling.ts: dispatches that only read their bytes.
 * - loadsGemv: a q4_0 GEMV's grid and weight loads (kernels/gemv-blocks.ts's self-quantizing GEMV, the
 *   engine's decode GEMV: teams of gemvTeam(sg) lanes, R rows a team, a lane owning whole blocks, U
 *   blocks a lane in flight, one f16-pair scale word a block), without x, its quantization or the
 *   dot products (bench/gpu-gemv-anatomy.ts's "loads only" probe on the blocks layout);
 * - stream: bindings read flat, 16 KiB a workgroup (four vec4 loads a thread in flight);
 * - tiny: one workgroup that bumps one word, a dispatch's fixed cost;
 * - fill: the words the others read (a hash of their index, so nothing is all zeros).
 * Each reading kernel folds what it loads into a sum, which must reach memory or the compiler drops the
 * loads: timed, it stores the sum only if it equals a value it never does (`magic`); `check` adds it
 * atomically to the dispatch's slot instead, so a step can be checked word for word against the sum of
 * the bytes the plan says it reads (checkSum). Every dispatch writes the same `sink` buffer, so Dawn puts
 * a barrier between consecutive ones, as between the engine's dependent kernels.
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../src/backend/webgpu/kernel.js";

const THREADS = 256;
/** vec4s a stream workgroup reads: four a thread. */
export const STREAM_VEC4S = 4 * THREADS;

const HASH = /* wgsl */ `
fn hash(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u; x *= 0x7feb352du; x ^= x >> 15u; x *= 0x846ca68bu; x ^= x >> 16u;
  return x;
}`;

/** Word i of a buffer filled with `seed` (the fill kernel's value, computed on the host). */
export function fillWord(seed: number, i: number): number {
  let x = (i ^ seed) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Σ mod 2^32 of words [from, to) of a buffer filled with `seed`: what a check expects a region to add. */
export function checkSum(seed: number, from: number, to: number): number {
  let s = 0;
  // fillWord in int32 arithmetic throughout (V8 keeps it out of doubles)
  for (let i = from; i < to; i++) {
    let x = i ^ seed;
    x ^= x >>> 16;
    x = Math.imul(x, 0x7feb352d);
    x ^= x >>> 15;
    x = Math.imul(x, 0x846ca68b);
    x ^= x >>> 16;
    s = (s + x) | 0;
  }
  return s >>> 0;
}

const sinkDecl = (binding: number, check: boolean) =>
  `@group(0) @binding(${binding}) var<storage, read_write> sink: array<${check ? "atomic<u32>" : "u32"}>;`;
const fold = (check: boolean) => (check ? "atomicAdd(&sink[p.slot], h);" : "if (h == p.magic) { sink[p.slot] = h; }");

/** Fills a buffer: word i = fillWord(seed, i). Params: n4 (vec4s), seed. Bindings: the buffer. Grid: ceil(n4 / 256). */
export function fillKernel(): Kernel {
  return memoKernel("ceiling.fill", () => ({
    name: "ceiling.fill",
    bindings: ["write"],
    code: /* wgsl */ `
struct P { n4: u32, seed: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
${HASH}
@compute @workgroup_size(${THREADS})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${THREADS}u + lid;
  if (i < p.n4) {
    let w = 4u * i;
    dst[i] = vec4<u32>(hash(w ^ p.seed), hash((w + 1u) ^ p.seed), hash((w + 2u) ^ p.seed), hash((w + 3u) ^ p.seed));
  }
}`,
  }));
}

/** Rows one workgroup of loadsGemvKernel covers. */
export const loadsGemvRows = (team: number, rowsPerTeam: number) => (THREADS / team) * rowsPerTeam;

/**
 * A GEMV's weight loads over a q4_0 matrix in the blocks layout. Params: n (rows), blocks (a row; a
 * multiple of 8), slot, magic. Bindings: quants (vec4 a block), scales (an f16 pair a word), sink.
 * Grid: ceil(n / loadsGemvRows(team, R)).
 */
export function loadsGemvKernel(team: number, rowsPerTeam: number, unroll: number, check: boolean): Kernel {
  const [R, U] = [rowsPerTeam, unroll];
  if (!(THREADS % team === 0 && R >= 1 && U >= 1)) throw new Error(`loads GEMV: team ${team}, rows ${R}, unroll ${U}`);
  return memoKernel(`ceiling.gemv.${team}.${R}.${U}.${+check}`, () => {
    const rows = Array.from({ length: R }, (_, j) => j);
    const us = Array.from({ length: U }, (_, u) => u);
    const at = (u: number) => (u === 0 ? "b" : `(b + ${u * team}u)`);
    // like the GEMV, every load of a step is issued before any is used
    const loads = (b: string, u: number) => rows.map((j) => `let q${j}_${u} = w[w${j} + ${b}]; let s${j}_${u} = sc[(w${j} + ${b}) >> 1u];`).join(" ");
    // a scale word holds blocks 2m and 2m + 1: counted at the even one, so a check sees every word once
    const use = (b: string, u: number) => rows.map((j) => `h += select(0u, (q${j}_${u}.x + q${j}_${u}.y) + (q${j}_${u}.z + q${j}_${u}.w) + select(0u, s${j}_${u}, (${b} & 1u) == 0u), v${j});`).join("\n        ");
    return {
      name: "ceiling.gemv",
      bindings: ["read", "read", "write"],
      code: /* wgsl */ `
struct P { n: u32, blocks: u32, slot: u32, magic: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> sc: array<u32>;
${sinkDecl(3, check)}
const TEAM = ${team}u;
@compute @workgroup_size(${THREADS})
fn main(${ENTRY_ARGS}) {
  let team = lid / TEAM;
  let lane = lid % TEAM;
  let row0 = ${GROUP_INDEX} * ${THREADS / team}u * ${R}u + team * ${R}u;
  var h = 0u;
  if (row0 < p.n) {
    // rows past n read the last row, as the GEMV does, and add nothing
    let last = p.n - 1u;
    ${rows.map((j) => `let w${j} = min(row0 + ${j}u, last) * p.blocks; let v${j} = row0 + ${j}u < p.n;`).join("\n    ")}
    let steps = p.blocks / (TEAM * ${U}u);
    for (var st = 0u; st < steps; st++) {
      let b = st * (TEAM * ${U}u) + lane;
      ${us.map((u) => loads(at(u), u)).join("\n      ")}
      ${us.map((u) => use(at(u), u)).join("\n      ")}
    }
    for (var b = steps * (TEAM * ${U}u) + lane; b < p.blocks; b += TEAM) {
      ${loads("b", 0)}
      ${use("b", 0)}
    }
  }
  ${fold(check)}
}`,
    };
  });
}

/** Stream parameter words: slot, magic, then (vec4s, first workgroup, end workgroup) per binding. */
export function streamParams(slot: number, magic: number, vec4s: readonly number[]): { words: number[]; groups: number } {
  const words = [slot, magic, 0, 0];
  let g = 0;
  for (const n of vec4s) {
    const end = g + Math.ceil(n / STREAM_VEC4S);
    words.push(n, g, end, 0);
    g = end;
  }
  return { words, groups: g };
}

/**
 * Reads `bindings` buffers flat, one after another over the grid: workgroup g belongs to the binding
 * whose [first, end) workgroups hold it. Params: streamParams's words. Bindings: the buffers, sink.
 * Grid: streamParams's groups (a 2-D grid's surplus workgroups read nothing).
 */
export function streamKernel(bindings: number, check: boolean): Kernel {
  if (!(Number.isInteger(bindings) && bindings >= 1)) throw new Error(`stream kernel: ${bindings} bindings`);
  return memoKernel(`ceiling.stream.${bindings}.${+check}`, () => {
    const ids = Array.from({ length: bindings }, (_, a) => a);
    const branch = (a: number) => `if (g < p.b[${a}].z) {
    let base = (g - p.b[${a}].y) * ${STREAM_VEC4S}u + lid;
    let n = p.b[${a}].x;
    ${[0, 1, 2, 3].map((u) => `let v${u} = s${a}[min(base + ${u * THREADS}u, n - 1u)];`).join(" ")}
    ${[0, 1, 2, 3].map((u) => `h += select(0u, (v${u}.x + v${u}.y) + (v${u}.z + v${u}.w), base + ${u * THREADS}u < n);`).join("\n    ")}
  }`;
    return {
      name: "ceiling.stream",
      bindings: [...ids.map(() => "read" as const), "write"],
      paramBytes: 16 * (1 + bindings),
      code: /* wgsl */ `
struct P { slot: u32, magic: u32, pad0: u32, pad1: u32, b: array<vec4<u32>, ${bindings}> }
@group(0) @binding(0) var<uniform> p: P;
${ids.map((a) => `@group(0) @binding(${a + 1}) var<storage, read> s${a}: array<vec4<u32>>;`).join("\n")}
${sinkDecl(bindings + 1, check)}
@compute @workgroup_size(${THREADS})
fn main(${ENTRY_ARGS}) {
  let g = ${GROUP_INDEX};
  var h = 0u;
  ${ids.map(branch).join(" else ")}
  ${fold(check)}
}`,
    };
  });
}

/** One workgroup; its first thread adds 1 to sink[slot]. Params: slot. Bindings: sink. Grid: 1. */
export function tinyKernel(): Kernel {
  return memoKernel("ceiling.tiny", () => ({
    name: "ceiling.tiny",
    bindings: ["write"],
    code: /* wgsl */ `
struct P { slot: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) { sink[p.slot] = sink[p.slot] + 1u; }
}`,
  }));
}
