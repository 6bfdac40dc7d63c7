/**
 * RaZeR g128 GEMV prototypes against the production GEMVs (issue #5: RaZeR decode within 5% of q4_0's
 * tokens/s), all in one process, calls back to back in one timestamped pass per case (the decode
 * situation), weights cycled through >= 256 MiB of copies so every call reads DRAM:
 *
 * - `loads R U`: each 32-lane team reads R rows of 16-byte slots, U in flight, and XORs them: the pure
 *   weight-read time of 4 bits a weight (the q4_0 GEMV's grid, no x, no scales, no decode);
 * - `q4_0 f32-x`: kernels/matmul.ts's GEMV (tile order, the engine's default for q4_0);
 * - `q4_0 int8-x`: kernels/gemv-i8.ts's GEMV on an already quantized x (its quantization dispatch not in it);
 * - `q4_0 blocks-i8 R S U`: bench/lane-blocks.ts's prototype (a lane owns whole q4_0 blocks, int8 x);
 * - `razer f32-x`: the production RaZeR GEMV (tile order, the default decode of kernels/packed.ts);
 * - `razer <decoder> R S U`: kernels/lane-blocks.ts's RaZeR prototypes (a lane owns a 32-weight run of one
 *   group, int8 x; decoders swar, swar-sum, 2c, lut), on an already quantized x and Gaussian weights the
 *   engine quantized (16 rows repeated: the lut decoder's speed depends on which codes occur); `razer swar R1 S1 U2` is the
 *   kernel the backend runs under RaZeR's opt-in "runs-i8" GEMV decode variant;
 * - probes (wrong results, not checked; what a piece of the RaZeR kernel costs): `razer 2c mask-probe`
 *   is the 2c kernel with its decoder replaced by q4_0's (one mask a word, no special value), so it keeps
 *   RaZeR's layout, group scales and special-value words; `q4_0 blocks-i8 2c-probe` is q4_0's kernel with
 *   its mask replaced by the 2c decoder (special value fixed at 5), so it keeps q4_0's layout and scales;
 * - `x quant ...`: the dispatch that quantizes x for the int8-x kernels (once per x, shared by the
 *   matmuls that read the same x): q4_0's tile order (kernels/gemv-i8.ts), and the planes of the
 *   lane kernels (kernels/lane-blocks.ts). No weights: their "read %", GB/s and ratio are not printed.
 *
 * Before any timing every prototype is checked on random data against the f64 sum of its formula
 * (bench/lane-blocks-check.ts; RaZeR against the engine's CPU unpack); a mismatch exits with status 1.
 * `--check-only` stops there (test/bench/lane-blocks.test.ts runs the same checks on SwiftShader).
 *
 * Table per shape: µs a call (median of --repeats interleaved rounds), "read %" = the time the loads
 * probe (fastest R/U) would take for the kernel's bytes (weights + scales) over the kernel's time, GB/s of
 * those bytes, and "vs q4_0" = q4_0 f32-x µs / the kernel's µs (above 1: faster than q4_0's production GEMV).
 *
 *   node dist/bench/gpu-razer-gemv.js [--shapes 8192x8192,14336x4096,4096x14336] [--repeats 5]
 *        [--calls 100] [--json FILE] [--check-only] [--only NAME,NAME] [--dawn-flags ...]
 *   (--only: the cases whose names contain one of the strings, plus the loads probes and q4_0 f32-x,
 *   which the ratios need)
 */
import { parseArgs } from "node:util";
import { writeFileSync } from "node:fs";
import { openGpu, BufferUsage, COMPUTE_STAGE } from "../src/backend/webgpu/device.js";
import { gemvKernel, gemvRows, gemvVariant } from "../src/backend/webgpu/kernels/matmul.js";
import { gemvI8Kernel, quantXBytes, quantXKernel, GEMV_I8_ROWS, GEMV_I8_UNROLL, QUANT_X_BLOCKS, TILE_BLOCKS } from "../src/backend/webgpu/kernels/gemv-i8.js";
import { quantXBlocksKernel } from "../src/backend/webgpu/kernels/gemv-blocks.js";
import { gemvDecodeOf } from "../src/backend/webgpu/kernels/packed.js";
import { timedPass } from "./gpu-timing.js";
import { blockI8Kernel, laneBlocksRows, razerLaneKernel, razerRunsLayout, RAZER_LANE_VARIANTS, type RazerLaneVariant } from "./lane-blocks.js";
import { quantFormat } from "../src/quant/formats.js";
import { checkBlocksQ4, checkRazerLanes } from "./lane-blocks-check.js";
import { RAZER_WORD } from "../src/backend/webgpu/kernels/lane-blocks.js";

// the probes' decoders: q4_0's mask in RaZeR's rz_run signature, and the 2c decoder (special value 5,
// doubled: 10) in q4_0's bdot signature
const Q4_RUN = /* wgsl */ `fn rz_run(q: vec4<u32>, a: vec4<u32>, b: vec4<u32>, sv: u32) -> i32 {
  let m = 0x0F0F0F0Fu;
  return dot4I8Packed(q.x & m, a.x) + dot4I8Packed(q.y & m, a.y) + dot4I8Packed(q.z & m, a.z) + dot4I8Packed(q.w & m, a.w)
       + dot4I8Packed((q.x >> 4u) & m, b.x) + dot4I8Packed((q.y >> 4u) & m, b.y) + dot4I8Packed((q.z >> 4u) & m, b.z) + dot4I8Packed((q.w >> 4u) & m, b.w);
}`;
const RAZER_2C_AS_BDOT = `${RAZER_WORD["2c"]}
fn bdot(q: vec4<u32>, a: vec4<u32>, b: vec4<u32>) -> i32 { return rz_run(q, a, b, 10u); }`;
/** `code` with the function that starts at `head` (up to its closing line "}") replaced by `fn`. */
function withDecoder(code: string, head: string, fn: string): string {
  const at = code.indexOf(head);
  const end = code.indexOf("\n}", at);
  if (at < 0 || end < 0) throw new Error(`probe: no "${head}" in the kernel`);
  return code.slice(0, at) + fn + code.slice(end + 2);
}

const { values: a } = parseArgs({
  options: {
    shapes: { type: "string", default: "8192x8192,14336x4096,4096x14336" },
    repeats: { type: "string", default: "5" }, calls: { type: "string", default: "100" },
    json: { type: "string" }, "check-only": { type: "boolean", default: false }, only: { type: "string" }, "dawn-flags": { type: "string", default: "" },
  },
});
const SHAPES = a.shapes.split(",").map((s) => {
  const m = /^(\d+)x(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`--shapes: "${s}" is not ROWSxCOLS`);
  const [N, K] = [Number(m[1]), Number(m[2])];
  if (!(N % 64 === 0 && K % 1024 === 0)) throw new Error(`--shapes: ${s}: rows must be a multiple of 64 and columns of 1024`);
  return { N, K };
});
const ROUNDS = Number(a.repeats);
const CALLS = Number(a.calls);
if (!(ROUNDS >= 1 && CALLS >= 1)) throw new Error("--repeats and --calls must be at least 1");

const gpu = await openGpu({ dawnFlags: a["dawn-flags"] ? a["dawn-flags"].split(",") : [] });
const device = gpu.device;
const sg = gpu.subgroups ? Math.max(gpu.subgroupMinSize, 32) : 1;
// shuffle sums over a 32-lane team need subgroups of at least 32 (SwiftShader's are smaller)
const subgroups = gpu.subgroups && gpu.subgroupMinSize >= 32;
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

// the checks: 64 rows (fewer if a shape is smaller) of the first shape's K, at most 4096 (CPU packing time)
{
  const n = Math.min(64, SHAPES[0]!.N);
  const K = Math.min(4096, SHAPES[0]!.K);
  try {
    console.log(await checkBlocksQ4(device, subgroups, n, K));
    console.log(await checkRazerLanes(device, subgroups, n, K));
  } catch (e) {
    console.error(`CHECK FAILED: ${(e as Error).message}`);
    process.exit(1);
  }
}
if (a["check-only"]) {
  device.destroy();
  process.exit(0);
}

const storage = (bytes: number) => device.createBuffer({ size: bytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
/** A buffer of pseudo-random words (small f16 pairs, so scales decode to finite values; codes: any nibbles). */
function filled(bytes: number, seed: number): GPUBuffer {
  const buf = storage(bytes);
  const words = new Uint32Array(Math.min(bytes, 1 << 22) / 4);
  let s = seed >>> 0;
  for (let i = 0; i < words.length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; words[i] = (s & 0x03ff03ff) | 0x20002000; }
  for (let o = 0; o < bytes; o += words.byteLength) device.queue.writeBuffer(buf, o, words, 0, Math.min(words.length, (bytes - o) / 4));
  return buf;
}
/** A buffer of `bytes` holding `chunk` repeated. */
function tiled(bytes: number, chunk: Uint32Array): GPUBuffer {
  const buf = storage(bytes);
  if (bytes % chunk.byteLength !== 0) throw new Error(`${bytes} bytes are not whole chunks of ${chunk.byteLength}`);
  for (let o = 0; o < bytes; o += chunk.byteLength) device.queue.writeBuffer(buf, o, chunk.buffer as ArrayBuffer, chunk.byteOffset, chunk.byteLength);
  return buf;
}
/** 16 rows of N(0, 0.02) weights, RaZeR-packed by the engine and laid out as `variant`'s runs. */
function gaussianRuns(variant: RazerLaneVariant, K: number): { w: Uint32Array; sc: Uint32Array } {
  const rows = 16;
  let s = 31337;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const f = Float32Array.from({ length: rows * K }, () => 0.02 * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
  const p = quantFormat("razer").pack(f, rows, K);
  return razerRunsLayout(variant, rows, K, p.codes, p.scales);
}
type Kind = "uniform" | "read-only-storage" | "storage";
const layoutOf = (kinds: Kind[]) => device.createBindGroupLayout({ entries: kinds.map((type, binding) => ({ binding, visibility: COMPUTE_STAGE, buffer: { type } })) });
const gemvLayout = layoutOf(["uniform", "read-only-storage", "read-only-storage", "read-only-storage", "storage"]);
const i8Layout = layoutOf(["uniform", "read-only-storage", "read-only-storage", "read-only-storage", "read-only-storage", "storage"]);
const quantLayout = layoutOf(["uniform", "read-only-storage", "storage", "storage"]);
const pipe = (code: string, layout: GPUBindGroupLayout) =>
  device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: device.createShaderModule({ code }), entryPoint: "main" } });
const uniform = (data: ArrayBuffer) => {
  const b = device.createBuffer({ size: Math.ceil(data.byteLength / 16) * 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
  device.queue.writeBuffer(b, 0, data);
  return b;
};

interface Case { name: string; bytes: number; record: (pass: GPUComputePassEncoder, i: number) => void }
interface Row { shape: string; name: string; us: number; readPct: number; gbs: number; vsQ4: number }

/** The loads probe (as bench/gpu-gemv-anatomy.ts's): teams of 32 lanes, R rows, U slots a lane in flight. */
function loadsProbe(R: number, U: number): string {
  const rows = Array.from({ length: R }, (_, j) => j);
  const body = Array.from({ length: U }, (_, u) => `${rows.map((j) => `let q${j}_${u} = w[w${j} + s + ${u * 32}u];`).join(" ")}
      ${rows.map((j) => `h ^= q${j}_${u}.x ^ q${j}_${u}.y ^ q${j}_${u}.z ^ q${j}_${u}.w;`).join(" ")}`).join("\n      ");
  return /* wgsl */ `
struct P { n: u32, k: u32, chunks: u32, o0: u32, stride4: u32, blocks: u32, mul: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> sc: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let lane = lid % 32u;
  let row0 = (wid.x * 8u + lid / 32u) * ${R}u;
  ${rows.map((j) => `let w${j} = (row0 + ${j}u) * p.stride4;`).join(" ")}
  var h = 0u;
  for (var s = lane; s < p.blocks; s += ${32 * U}u) {
      ${body}
  }
  if (h == 0x12345678u) { out[row0] = f32(h); }
}`;
}

async function timeShape(N: number, K: number): Promise<Row[]> {
  const codeBytes = (N * K) / 2;
  const q4Sc = (N * K) / 16; // one f16 a 32-weight block
  const rzSc = (N * K) / 64; // one u16 a 128-weight group
  const copies = Math.max(1, Math.ceil((256 << 20) / (codeBytes + rzSc)));
  const q4 = Array.from({ length: copies }, (_, i) => ({ w: filled(codeBytes, 2 * i + 1), sc: filled(q4Sc, 2 * i + 2) }));
  const rz = Array.from({ length: copies }, (_, i) => ({ w: filled(codeBytes, 2 * i + 101), sc: filled(rzSc, 2 * i + 102) }));
  // the run decoders read Gaussian weights quantized by the engine, each in its own layout: `lut`'s table
  // lookups conflict in memory banks depending on which codes occur
  const runWeights = new Map(RAZER_LANE_VARIANTS.map((v) => {
    const chunk = gaussianRuns(v, K);
    return [v, Array.from({ length: copies }, () => ({ w: tiled(codeBytes, chunk.w), sc: tiled(rzSc, chunk.sc) }))] as const;
  }));
  const x = filled(K * 4, 99);
  const xq = filled(Math.max(K, quantXBytes(K).quants), 7);
  const xsc = filled(quantXBytes(K).scales, 8);
  const xsBlocks = filled((K / 32) * 8, 11);
  const out = storage(N * 4);
  const bufs: GPUBuffer[] = [x, xq, xsc, xsBlocks, out, ...q4.flatMap((c) => [c.w, c.sc]), ...rz.flatMap((c) => [c.w, c.sc]), ...[...runWeights.values()].flat().flatMap((c) => [c.w, c.sc])];
  const gemvParams = (blocks: number) => {
    const d = new ArrayBuffer(32);
    new Uint32Array(d).set([N, K, K / 32, 0, K / 32, blocks]);
    new Float32Array(d)[6] = 1;
    return uniform(d);
  };
  const q4Params = gemvParams(K / 32);
  const rzTileParams = gemvParams(K / 1024);
  const i8Params = uniform(new Uint32Array([N, K, 0, K / 32]).buffer);
  const laneParams = (() => {
    const d = new ArrayBuffer(32);
    new Uint32Array(d).set([N, K, 0, K / 32, K / 256]);
    new Float32Array(d)[5] = 1;
    return uniform(d);
  })();
  bufs.push(q4Params, rzTileParams, i8Params, laneParams);
  const groupsOf = (layout: GPUBindGroupLayout, set: typeof q4, entries: (c: (typeof q4)[number]) => GPUBuffer[]) =>
    set.map((c) => device.createBindGroup({ layout, entries: entries(c).map((buffer, binding) => ({ binding, resource: { buffer } })) }));
  const q4Gemv = groupsOf(gemvLayout, q4, (c) => [q4Params, x, c.w, c.sc, out]);
  const rzGemv = groupsOf(gemvLayout, rz, (c) => [rzTileParams, x, c.w, c.sc, out]);
  const q4I8 = groupsOf(i8Layout, q4, (c) => [i8Params, xq, xsc, c.w, c.sc, out]);
  const q4Blocks = groupsOf(i8Layout, q4, (c) => [i8Params, xq, xsBlocks, c.w, c.sc, out]);
  const rzLanes = new Map(RAZER_LANE_VARIANTS.map((v) => [v, groupsOf(i8Layout, runWeights.get(v)!, (c) => [laneParams, xq, xsBlocks, c.w, c.sc, out])]));
  const dispatch = (pass: GPUComputePassEncoder, groups: number) => pass.dispatchWorkgroups(Math.min(groups, 65535), Math.ceil(groups / 65535));
  const mk = (name: string, bytes: number, code: string, layout: GPUBindGroupLayout, groups: GPUBindGroup[], rowsPerGroup: number): Case => {
    const p = pipe(code, layout);
    const wgs = Math.ceil(N / rowsPerGroup);
    return { name, bytes, record: (pass, i) => { pass.setPipeline(p); pass.setBindGroup(0, groups[i % copies]!); dispatch(pass, wgs); } };
  };
  const blocks = K / 32;
  const qOut = [storage(K), storage(Math.max(quantXBytes(K).scales, blocks * 8))];
  bufs.push(...qOut);
  const quantCase = (name: string, code: string, params: number[], wgs: number): Case => {
    const p = pipe(code, quantLayout);
    const u = uniform(new Uint32Array(params).buffer);
    bufs.push(u);
    const g = device.createBindGroup({ layout: quantLayout, entries: [u, x, ...qOut].map((buffer, binding) => ({ binding, resource: { buffer } })) });
    return { name, bytes: 0, record: (pass) => { pass.setPipeline(p); pass.setBindGroup(0, g); dispatch(pass, wgs); } };
  };
  const q4Bytes = codeBytes + q4Sc;
  const rzBytes = codeBytes + rzSc;
  const q4v = gemvVariant("q4_0", sg);
  const rzv = gemvVariant("razer", sg);
  const [iR, iU] = [GEMV_I8_ROWS.q4_0, GEMV_I8_UNROLL.q4_0];
  const PRODUCTION_Q4 = "q4_0 f32-x (production)";
  const loads: [number, number][] = [[2, 1], [2, 2], [1, 4]];
  const cases: Case[] = [
    ...loads.map(([R, U]) => mk(`loads R${R} U${U}`, codeBytes, loadsProbe(R, U), gemvLayout, q4Gemv, 8 * R)),
    mk(PRODUCTION_Q4, q4Bytes, gemvKernel("q4_0", "exact", sg).code, gemvLayout, q4Gemv, gemvRows(sg, q4v.rowsPerTeam, q4v.split)),
    mk(`q4_0 int8-x R${iR} U${iU} (production)`, q4Bytes, gemvI8Kernel("q4_0", sg).code, i8Layout, q4I8, gemvRows(sg, iR)),
    ...[[1, 1, 2], [2, 2, 2], [2, 1, 4]].map(([R, S, U]) => mk(`q4_0 blocks-i8 R${R} S${S} U${U}`, q4Bytes, blockI8Kernel(R!, S!, U!, subgroups), i8Layout, q4Blocks, laneBlocksRows(R!, S!))),
    mk(`razer f32-x ${gemvDecodeOf("razer")} (production)`, rzBytes, gemvKernel("razer", "exact", sg).code, gemvLayout, rzGemv, gemvRows(sg, rzv.rowsPerTeam, rzv.split)),
    ...RAZER_LANE_VARIANTS.flatMap((v) => [[1, 1, 2], [2, 2, 2], [2, 1, 4], [4, 2, 1]].map(([R, S, U]) =>
      mk(`razer ${v} R${R} S${S} U${U}`, rzBytes, razerLaneKernel(v, R!, S!, U!, subgroups), i8Layout, rzLanes.get(v)!, laneBlocksRows(R!, S!)))),
    ...[[2, 2, 2], [4, 2, 1]].map(([R, S, U]) => mk(`razer 2c mask-probe R${R} S${S} U${U}`, rzBytes, withDecoder(razerLaneKernel("2c", R!, S!, U!, subgroups), "fn rz_run(", Q4_RUN), i8Layout, rzLanes.get("2c")!, laneBlocksRows(R!, S!))),
    ...[[2, 2, 2], [2, 1, 4]].map(([R, S, U]) => mk(`q4_0 blocks-i8 2c-probe R${R} S${S} U${U}`, q4Bytes, withDecoder(blockI8Kernel(R!, S!, U!, subgroups), "fn bdot(", RAZER_2C_AS_BDOT), i8Layout, q4Blocks, laneBlocksRows(R!, S!))),
    quantCase("x quant q4_0 tiles (per x)", quantXKernel("q4_0").code, [blocks, Math.floor(blocks / TILE_BLOCKS.q4_0)], Math.ceil(blocks / QUANT_X_BLOCKS)),
    quantCase("x quant planes (per x)", quantXBlocksKernel().code, [blocks], Math.ceil(blocks / QUANT_X_BLOCKS)),
  ].filter((c) => !a.only || c.name.startsWith("loads ") || c.name === PRODUCTION_Q4 || a.only.split(",").some((o) => c.name.includes(o)));
  const time = async (c: Case) => (await timedPass(device, (pass) => { for (let i = 0; i < CALLS; i++) c.record(pass, i); })).gpuNs / 1e3 / CALLS;
  // warm-up: every case twice (pipelines, clocks), then interleaved rounds
  for (let w = 0; w < 2; w++) for (const c of cases) await time(c);
  const runs = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  for (let r = 0; r < ROUNDS; r++) for (const c of cases) runs.get(c.name)!.push(await time(c));
  const us = (name: string) => median(runs.get(name)!);
  const readUs = Math.min(...loads.map(([R, U]) => us(`loads R${R} U${U}`)));
  const q4Us = us(PRODUCTION_Q4);
  for (const b of bufs) b.destroy();
  return cases.map((c) => {
    const t = us(c.name);
    return { shape: `${N}x${K}`, name: c.name, us: t, readPct: (100 * readUs * (c.bytes / codeBytes)) / t, gbs: c.bytes / t / 1e3, vsQ4: q4Us / t };
  });
}

console.log(`${gpu.description}: ${CALLS} calls a pass, median of ${ROUNDS} interleaved rounds, weights cycled through >= 256 MiB${a["dawn-flags"] ? `, dawn flags ${a["dawn-flags"]}` : ""}`);
const all: Row[] = [];
for (const { N, K } of SHAPES) {
  const rows = await timeShape(N, K);
  all.push(...rows);
  console.log(`\n${N}x${K} (out x in)`);
  console.log(`${"kernel".padEnd(40)} ${"µs".padStart(8)} ${"read %".padStart(7)} ${"GB/s".padStart(6)} ${"vs q4_0".padStart(8)}`);
  for (const r of rows) {
    const weighted = r.gbs > 0;
    console.log(`${r.name.padEnd(40)} ${r.us.toFixed(2).padStart(8)} ${weighted ? `${r.readPct.toFixed(0).padStart(6)}%` : "      -"} ${weighted ? r.gbs.toFixed(0).padStart(6) : "     -"} ${weighted ? `${r.vsQ4.toFixed(2).padStart(7)}x` : "       -"}`);
  }
}
// totals over the shapes: what a decode step's GEMVs would add up to
if (SHAPES.length > 1) {
  console.log(`\ntotal over ${SHAPES.map((s) => `${s.N}x${s.K}`).join(", ")}`);
  const names = [...new Set(all.map((r) => r.name))];
  const q4Total = all.filter((r) => r.name.startsWith("q4_0 f32-x")).reduce((s, r) => s + r.us, 0);
  for (const n of names) {
    const t = all.filter((r) => r.name === n).reduce((s, r) => s + r.us, 0);
    console.log(`${n.padEnd(40)} ${t.toFixed(2).padStart(8)} µs ${(q4Total / t).toFixed(2).padStart(7)}x`);
  }
}
if (a.json) writeFileSync(a.json, JSON.stringify({ bench: "gpu-razer-gemv", device: gpu.description, calls: CALLS, rounds: ROUNDS, rows: all }, null, 2));
device.destroy();
