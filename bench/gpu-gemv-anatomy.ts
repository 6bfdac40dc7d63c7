/**
 * Where a q4_0 GEMV's time goes: the production kernel next to probes that keep its grid and weight reads
 * and drop the rest, all back to back in one timestamped pass per case (the decode situation), weights
 * cycled through >= 256 MiB of copies so every call reads DRAM.
 *
 * - `copy`: a streaming copy of the weight's bytes (read + write), the yardstick;
 * - `loads R U`: each 32-lane team reads R weight rows, U 16-byte loads per lane and row in flight, and
 *   XORs the words (no x, no scales, no decode): what this access pattern alone costs;
 * - `loads+x R U`: the same plus the f32 x a q4_0 slot needs (8 vec4s, shared by the R rows);
 * - `gemv q4_0 ...`: kernels/matmul.ts's GEMV (R rows per team, S teams splitting K, U loads in flight);
 *   `l2` reads one copy every call (L2-resident on an H200: the kernel's compute ceiling);
 * - `gemv-i8 q4_0 ...`: kernels/gemv-i8.ts's GEMV on an x already quantized to int8 (the quantization
 *   itself, one more dispatch, is not in it); `noconv`: its weight scales read as f32 without conversion
 *   (wrong values, same loads), which prices the f16 scale unpacking;
 * - `blocks-i8 q4_0 ...`: kernels/gemv-blocks.ts's GEMV for q4_0's "blocks" layout (a lane owns whole
 *   blocks), checked first against the f64 sum of its formula on 64 rows; `blocks-q`: the same GEMV
 *   quantizing f32 x itself into workgroup memory (the engine's default on that layout: no quantX dispatch);
 *   `cN`: on at most N workgroups, each quantizing x once and taking several row groups (x of one window);
 *   `wN`: x in one window of N blocks (quantWindow: all of x where workgroup memory allows);
 * - `gemv f16`: the engine's f16 GEMV (default variant) over f16 weights of the same shape, cycled the same
 *   way: issue #5's "speedup over f16" anchor, timed as the q4_0 kernels are (`--calls 1`: one call a pass,
 *   as gpu-quant times it).
 *
 *   node dist/bench/gpu-gemv-anatomy.js [--rows 8192] [--k 8192] [--calls 100] [--rounds 5] [--json FILE]
 *        [--dawn-flags enable-dawn-features=disable_robustness]
 */
import { parseArgs } from "node:util";
import { writeFileSync } from "node:fs";
import { openGpu, BufferUsage, COMPUTE_STAGE, MAP_READ_MODE } from "../src/backend/webgpu/device.js";
import { chunkElems, gemvKernel, gemvRows, gemvVariant, gemvVariantName } from "../src/backend/webgpu/kernels/matmul.js";
import { gemvI8Kernel, quantXBytes } from "../src/backend/webgpu/kernels/gemv-i8.js";
import { QUANT_WINDOW, gemvBlocksI8Kernel, gemvBlocksQuantKernel, quantWindow, selfQuantGrid } from "../src/backend/webgpu/kernels/gemv-blocks.js";
import { copyKernel, COPY_GROUP } from "../src/backend/webgpu/kernels/copy.js";
import { timedPass } from "./gpu-timing.js";

const { values: a } = parseArgs({
  options: {
    rows: { type: "string", default: "8192" }, k: { type: "string", default: "8192" },
    calls: { type: "string", default: "100" }, rounds: { type: "string", default: "5" },
    json: { type: "string" }, "dawn-flags": { type: "string", default: "" }, only: { type: "string" },
  },
});
const N = Number(a.rows);
const K = Number(a.k);
const CALLS = Number(a.calls);
const ROUNDS = Number(a.rounds);
if (!(N % 64 === 0 && K % 1024 === 0 && CALLS >= 1 && ROUNDS >= 1)) throw new Error("--rows a multiple of 64, --k of 1024, --calls and --rounds >= 1");

const gpu = await openGpu({ dawnFlags: a["dawn-flags"] ? a["dawn-flags"].split(",") : [] });
const device = gpu.device;
const sg = gpu.subgroups ? Math.max(gpu.subgroupMinSize, 32) : 1;
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

// q4_0 as the GPU holds it: a row is K/32 16-byte slots, its scales K/256 vec4s of eight f16
const SLOTS = K / 32;
const wBytes = N * SLOTS * 16;
const scBytes = N * (SLOTS / 8) * 16;
const copies = Math.max(1, Math.ceil((256 << 20) / (wBytes + scBytes)));
const storage = (bytes: number) => device.createBuffer({ size: bytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
function filled(bytes: number, seed: number): GPUBuffer {
  const buf = storage(bytes);
  const words = new Uint32Array(Math.min(bytes, 1 << 22) / 4);
  let s = seed >>> 0;
  // scales: small f16s (0x2000..0x23ff pairs), codes: any nibbles
  for (let i = 0; i < words.length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; words[i] = (s & 0x03ff03ff) | 0x20002000; }
  for (let o = 0; o < bytes; o += words.byteLength) device.queue.writeBuffer(buf, o, words, 0, Math.min(words.length, (bytes - o) / 4));
  return buf;
}
const weights = Array.from({ length: copies }, (_, i) => ({ w: filled(wBytes, 2 * i + 1), sc: filled(scBytes, 2 * i + 2) }));
const x = filled(K * 4, 99);
const out = storage(N * 4);
const copyDst = storage(wBytes);
const params = device.createBuffer({ size: 256, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
{
  const p = new Uint32Array(8);
  p.set([N, K, SLOTS, 0, SLOTS, SLOTS]);
  new Float32Array(p.buffer)[6] = 1;
  device.queue.writeBuffer(params, 0, p);
}

/** A probe: teams of 32 lanes, R rows each, U slots per lane and row per step, all of K (no split). */
function probe(R: number, U: number, withX: boolean): string {
  const rows = Array.from({ length: R }, (_, j) => j);
  const us = Array.from({ length: U }, (_, u) => u);
  const body = us.map((u) => {
    const loads = rows.map((j) => `let q${j}_${u} = w[w${j} + s + ${u * 32}u];`).join(" ");
    if (!withX) return `${loads}\n      ${rows.map((j) => `h ^= q${j}_${u}.x ^ q${j}_${u}.y ^ q${j}_${u}.z ^ q${j}_${u}.w;`).join(" ")}`;
    const xs = Array.from({ length: 8 }, (_, v) => `let x${v} = x[(s + ${u * 32}u) * 8u + ${v}u];`).join(" ");
    return `{ ${loads}\n      ${xs}\n      ${rows.map((j) => `f += dot(bitcast<vec4<f32>>(q${j}_${u}), x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7);`).join(" ")} }`;
  }).join("\n      ");
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
  var f = 0.0;
  for (var s = lane; s < p.blocks; s += ${32 * U}u) {
      ${body}
  }
  if (h == 0x12345678u || f == 1.2345) { out[row0] = f + f32(h); }
}`;
}

interface Case { name: string; bytes: number; record: (pass: GPUComputePassEncoder, i: number) => void }
const layoutOf = (kinds: ("uniform" | "read-only-storage" | "storage")[]) =>
  device.createBindGroupLayout({ entries: kinds.map((type, binding) => ({ binding, visibility: COMPUTE_STAGE, buffer: { type } })) });
const gemvLayout = layoutOf(["uniform", "read-only-storage", "read-only-storage", "read-only-storage", "storage"]);
const copyLayout = layoutOf(["uniform", "storage", "read-only-storage"]);
const pipe = (code: string, layout: GPUBindGroupLayout) =>
  device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: device.createShaderModule({ code }), entryPoint: "main" } });
const gemvGroups = weights.map((c) => device.createBindGroup({
  layout: gemvLayout,
  entries: [params, x, c.w, c.sc, out].map((buffer, binding) => ({ binding, resource: { buffer } })),
}));
const gemvCase = (name: string, code: string, rowsPerGroup: number, l2 = false): Case => {
  const p = pipe(code, gemvLayout);
  const groups = N / rowsPerGroup;
  return {
    name, bytes: wBytes + scBytes,
    record: (pass, i) => { pass.setPipeline(p); pass.setBindGroup(0, gemvGroups[l2 ? 0 : i % copies]!); pass.dispatchWorkgroups(Math.min(groups, 65535), Math.ceil(groups / 65535)); },
  };
};
// the engine's streaming copy (kernels/copy.ts), over the weight's bytes
const copyParams = device.createBuffer({ size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
device.queue.writeBuffer(copyParams, 0, new Uint32Array([wBytes / 16]));
const copyPipe = pipe(copyKernel().code, copyLayout);
const copyGroups = weights.map((c) => device.createBindGroup({ layout: copyLayout, entries: [copyParams, copyDst, c.w].map((buffer, binding) => ({ binding, resource: { buffer } })) }));
const copyWgs = wBytes / 16 / COPY_GROUP;

// the int8-activation GEMV (kernels/gemv-i8.ts) on an already quantized x
const i8Layout = layoutOf(["uniform", "read-only-storage", "read-only-storage", "read-only-storage", "read-only-storage", "storage"]);
const i8Params = device.createBuffer({ size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
device.queue.writeBuffer(i8Params, 0, new Uint32Array([N, K, 0, SLOTS]));
const xq = filled(quantXBytes(K).quants, 7);
const xsc = filled(quantXBytes(K).scales, 8);
const i8Groups = weights.map((c) => device.createBindGroup({ layout: i8Layout, entries: [i8Params, xq, xsc, c.w, c.sc, out].map((buffer, binding) => ({ binding, resource: { buffer } })) }));
// `noconv`: a probe whose weight scales skip the f16 conversion (the scale words read as f32, wrong
// values, same loads): what the eight unpack2x16float a tile slot cost
const NOCONV: [string, string][] = [
  ["let d0 = vec4<f32>(unpack2x16float(c.x), unpack2x16float(c.y)) * s0;", "let d0 = bitcast<vec4<f32>>(c) * s0;"],
  ["let d1 = vec4<f32>(unpack2x16float(c.z), unpack2x16float(c.w)) * s1;", "let d1 = bitcast<vec4<f32>>(c.wzyx) * s1;"],
];
const gemvI8 = (R: number, S: number, U: number, noconv = false): Case => {
  let code = gemvI8Kernel("q4_0", sg, R, S, U).code;
  for (const [from, to] of noconv ? NOCONV : []) {
    if (!code.includes(from)) throw new Error(`anatomy: the int8 GEMV no longer has "${from}"`);
    code = code.replace(from, to);
  }
  const p = pipe(code, i8Layout);
  const groups = N / ((8 / S) * R);
  return { name: `gemv-i8 q4_0 R${R} S${S} U${U}${noconv ? " noconv" : ""}`, bytes: wBytes + scBytes, record: (pass, i) => { pass.setPipeline(p); pass.setBindGroup(0, i8Groups[i % copies]!); pass.dispatchWorkgroups(groups); } };
};
// blocks-i8: the engine's q4_0 GEMV on int8 x for the "blocks" layout (kernels/gemv-blocks.ts; a lane owns
// whole 32-weight blocks, llama.cpp's mmvq scheme), first priced here as a prototype in session 5
const xsBlocks = filled(SLOTS * 8, 11);
// 32-lane teams reduce through subgroups only where every subgroup has 32 lanes (SwiftShader's are smaller)
const blockSg = gpu.subgroups && gpu.subgroupMinSize >= 32 ? 32 : 1;
const blockGroups = weights.map((c) => device.createBindGroup({ layout: i8Layout, entries: [i8Params, xq, xsBlocks, c.w, c.sc, out].map((buffer, binding) => ({ binding, resource: { buffer } })) }));
const gemvBlocks = (R: number, S: number, U: number): Case => {
  const p = pipe(gemvBlocksI8Kernel(blockSg, R, S, U).code, i8Layout);
  const groups = N / ((8 / S) * R);
  return { name: `blocks-i8 q4_0 R${R} S${S} U${U}`, bytes: wBytes + scBytes, record: (pass, i) => { pass.setPipeline(p); pass.setBindGroup(0, blockGroups[i % copies]!); pass.dispatchWorkgroups(groups); } };
};

/** The block kernel against the f64 sum of its formula on 64 rows of random data (exits on a mismatch). */
async function checkBlocks(): Promise<void> {
  const n = 64;
  const blocks = K / 32;
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const wq = new Uint8Array(n * blocks * 16).map(() => Math.floor(rnd() * 256));
  const f16 = (v: number) => { const e = Math.floor(Math.log2(v)); return ((e + 15) << 10) | Math.round((v / 2 ** e - 1) * 1024); };
  const wd = Float64Array.from({ length: n * blocks }, () => 2 ** -Math.floor(1 + rnd() * 6) * 1.5);
  const scWords = new Uint16Array(n * blocks).map((_, i) => f16(wd[i]!));
  const xqBytes = new Int8Array(K).map(() => Math.floor(rnd() * 255) - 127);
  const xd = Float32Array.from({ length: blocks }, () => 2 ** -Math.floor(2 + rnd() * 4));
  const planes = new Int8Array(K);
  const xsData = new Float32Array(2 * blocks);
  for (let b = 0; b < blocks; b++) {
    let sum = 0;
    for (let i = 0; i < 32; i++) {
      planes[(i < 16 ? 0 : blocks * 16) + b * 16 + (i % 16)] = xqBytes[32 * b + i]!;
      sum += xqBytes[32 * b + i]!;
    }
    xsData[2 * b] = xd[b]!;
    xsData[2 * b + 1] = sum;
  }
  const upload = (data: ArrayBufferView) => { const buf = storage(Math.ceil(data.byteLength / 16) * 16); device.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, data.byteLength); return buf; };
  const pBuf = device.createBuffer({ size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
  device.queue.writeBuffer(pBuf, 0, new Uint32Array([n, K, 0, blocks]));
  const o = storage(n * 4);
  const bufs = [pBuf, upload(planes), upload(xsData), upload(wq), upload(scWords), o];
  const read = device.createBuffer({ size: n * 4, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  for (const [R, S, U] of [[2, 2, 2], [1, 1, 4], [4, 4, 1]] as const) {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe(gemvBlocksI8Kernel(blockSg, R, S, U).code, i8Layout));
    pass.setBindGroup(0, device.createBindGroup({ layout: i8Layout, entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })) }));
    pass.dispatchWorkgroups(n / ((8 / S) * R));
    pass.end();
    enc.copyBufferToBuffer(o, 0, read, 0, n * 4);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(MAP_READ_MODE);
    const got = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    for (let r = 0; r < n; r++) {
      let want = 0;
      let bound = 0;
      for (let b = 0; b < blocks; b++) {
        let dot = 0;
        for (let i = 0; i < 32; i++) {
          const byte = wq[(r * blocks + b) * 16 + (i % 16)]!;
          dot += ((i < 16 ? byte & 15 : byte >> 4) - 8) * xqBytes[32 * b + i]!;
        }
        want += wd[r * blocks + b]! * xd[b]! * dot;
        bound += Math.abs(wd[r * blocks + b]! * xd[b]! * dot);
      }
      if (Math.abs(got[r]! - want) > 1e-5 * bound + 1e-30) throw new Error(`blocks-i8 R${R} S${S} U${U}: row ${r} gave ${got[r]}, want ${want}`);
    }
  }
  console.log(`blocks-i8: 64 rows x ${K} match the f64 sum of their formula (R2 S2 U2, R1 S1 U4, R4 S4 U1)`);
}
await checkBlocks();

// blocks-q: the same GEMV quantizing f32 x itself (no quantX dispatch; every workgroup re-reads x)
const blockQGroups = weights.map((c) => device.createBindGroup({ layout: gemvLayout, entries: [i8Params, x, c.w, c.sc, out].map((buffer, binding) => ({ binding, resource: { buffer } })) }));
// `cap`: at most that many workgroups, each quantizing x once (selfQuantGrid; x of one window only)
// `w`: all of a longer x in one window where the device allows (quantWindow)
const gemvBlocksQuant = (R: number, U: number, cap = 0, whole = false): Case => {
  const window = whole ? quantWindow(K / 32, device.limits.maxComputeWorkgroupStorageSize) : QUANT_WINDOW;
  const p = pipe(gemvBlocksQuantKernel(blockSg, R, U, undefined, false, window).code, gemvLayout);
  const groups = selfQuantGrid(N, 8 * R, K / 32, window, cap)[0];
  return { name: `blocks-q q4_0 R${R} U${U}${cap ? ` c${cap}` : ""}${whole ? ` w${window}` : ""}`, bytes: wBytes + scBytes, record: (pass, i) => { pass.setPipeline(p); pass.setBindGroup(0, blockQGroups[i % copies]!); pass.dispatchWorkgroups(groups); } };
};

// f16 weights (the engine's half-row tiles, kernels/matmul.ts; small positive halves), their own copies
const f16Bytes = N * K * 2;
const f16Copies = Math.max(1, Math.ceil((256 << 20) / f16Bytes));
const f16Layout = layoutOf(["uniform", "read-only-storage", "read-only-storage", "storage"]);
const f16Params = device.createBuffer({ size: 32, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
{
  const p = new Uint32Array(8);
  p.set([N, K, K / chunkElems("f16"), 0, f16Bytes / N / 16, 0]); // the stride word counts vec4s
  new Float32Array(p.buffer)[6] = 1;
  device.queue.writeBuffer(f16Params, 0, p);
}
const gemvF16 = (): Case => {
  const v = gemvVariant("f16", sg);
  const p = pipe(gemvKernel("f16", "exact", sg, v.rowsPerTeam, v.split, v.unroll, v.pipeline, v.x).code, f16Layout);
  const groups = N / gemvRows(sg, v.rowsPerTeam, v.split);
  const bind = Array.from({ length: f16Copies }, (_, i) => device.createBindGroup({ layout: f16Layout, entries: [f16Params, x, filled(f16Bytes, 40 + i), out].map((buffer, binding) => ({ binding, resource: { buffer } })) }));
  return { name: `gemv f16 ${gemvVariantName(v)}`, bytes: f16Bytes, record: (pass, i) => { pass.setPipeline(p); pass.setBindGroup(0, bind[i % f16Copies]!); pass.dispatchWorkgroups(Math.min(groups, 65535), Math.ceil(groups / 65535)); } };
};

const gemv = (R: number, S: number, U: number, l2 = false) =>
  gemvCase(`gemv q4_0 R${R} S${S} U${U}${l2 ? " l2" : ""}`, gemvKernel("q4_0", "exact", sg, R, S, U, false, "global").code, (8 / S) * R, l2);
const cases: Case[] = [
  { name: "copy (read + write)", bytes: 2 * wBytes, record: (pass, i) => { pass.setPipeline(copyPipe); pass.setBindGroup(0, copyGroups[i % copies]!); pass.dispatchWorkgroups(Math.min(copyWgs, 65535), Math.ceil(copyWgs / 65535)); } },
  ...[[2, 1], [2, 2], [2, 4], [1, 4], [4, 2], [1, 8]].map(([R, U]) => gemvCase(`loads R${R} U${U}`, probe(R!, U!, false), 8 * R!)),
  ...[[2, 1], [2, 4], [4, 2]].map(([R, U]) => gemvCase(`loads+x R${R} U${U}`, probe(R!, U!, true), 8 * R!)),
  gemv(2, 2, 1), gemv(2, 1, 1), gemv(2, 1, 2), gemv(1, 1, 4), gemv(4, 1, 2), gemv(4, 2, 2), gemv(2, 2, 1, true),
  ...[[2, 2, 1], [2, 1, 1], [2, 1, 2], [2, 1, 4], [1, 1, 4], [4, 1, 2], [4, 2, 1], [4, 4, 1], [2, 2, 2], [4, 2, 2]].map(([R, S, U]) => gemvI8(R!, S!, U!)),
  gemvI8(2, 2, 2, true), gemvI8(4, 2, 2, true), gemvI8(4, 4, 2, true), gemvI8(2, 2, 4, true),
  ...[[1, 1, 1], [1, 1, 2], [1, 1, 4], [2, 1, 2], [2, 2, 2], [2, 2, 1], [4, 2, 1], [4, 4, 1], [2, 1, 4], [4, 2, 2]].map(([R, S, U]) => gemvBlocks(R!, S!, U!)),
  ...[[1, 2], [2, 2], [4, 2], [4, 1], [8, 1]].map(([R, U]) => gemvBlocksQuant(R!, U!)),
  ...[132, 264, 528, 1056].flatMap((cap) => [gemvBlocksQuant(2, 2, cap), gemvBlocksQuant(1, 2, cap)]),
  ...(K / 32 > QUANT_WINDOW ? [0, 264, 512].flatMap((cap) => [gemvBlocksQuant(2, 2, cap, true), gemvBlocksQuant(1, 2, cap, true)]) : []),
  gemvF16(),
];
// the copy always runs: it is what "of copy" divides by
const chosen = a.only ? cases.filter((c, i) => i === 0 || a.only!.split(",").some((o) => c.name.includes(o))) : cases;

async function time(c: Case): Promise<number> {
  const { gpuNs } = await timedPass(device, (pass) => { for (let i = 0; i < CALLS; i++) c.record(pass, i); });
  return gpuNs / 1e3 / CALLS;
}

console.log(`${gpu.description}: q4_0 ${N}x${K} (${((wBytes + scBytes) / 2 ** 20).toFixed(1)} MiB), ${copies} copies cycled, ${CALLS} calls a pass, median of ${ROUNDS} interleaved rounds${a["dawn-flags"] ? `, dawn flags ${a["dawn-flags"]}` : ""}`);
for (const c of chosen) await time(c);
const runs = new Map<string, number[]>(chosen.map((c) => [c.name, []]));
for (let r = 0; r < ROUNDS; r++) for (const c of chosen) runs.get(c.name)!.push(await time(c));
const copyUs = median(runs.get(cases[0]!.name) ?? [NaN]);
const copyGBs = (2 * wBytes) / copyUs / 1e3;
const rows = chosen.map((c) => {
  const us = median(runs.get(c.name)!);
  return { name: c.name, us, gbs: c.bytes / us / 1e3, ofCopy: c.bytes / us / 1e3 / copyGBs };
});
for (const r of rows) console.log(`${r.name.padEnd(26)} ${r.us.toFixed(2).padStart(8)} µs  ${r.gbs.toFixed(0).padStart(6)} GB/s  ${(100 * r.ofCopy).toFixed(0).padStart(4)}% of copy`);
const report = { bench: "gpu-gemv-anatomy", device: gpu.description, n: N, k: K, calls: CALLS, rounds: ROUNDS, dawnFlags: a["dawn-flags"], copyGBs, rows };
if (a.json) writeFileSync(a.json, JSON.stringify(report, null, 2));
device.destroy();
