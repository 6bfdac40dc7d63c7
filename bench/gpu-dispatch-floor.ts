/**
 * What one dispatch costs apart from its work, on the GPU and on the host: the floor under every decode
 * step, which records 148-421 dispatches (docs/performance.md). Four kernels, each `--calls` times back to
 * back in one timestamped compute pass (the decode situation), GPU time per call:
 * - `empty, chained`: one workgroup writes one word of the same buffer every call (each call depends on
 *   the previous one, so the driver puts a barrier between them, as between a decode step's kernels);
 * - `empty, independent`: the same, each call writing its own buffer (no hazard between calls);
 * - `wide, chained`: 1024 workgroups of 256 threads, one thread of which writes (a GEMV's grid, no traffic);
 * - `copy 1 MiB, chained`: a streaming copy small enough that its bytes cost ~0.5 µs at 4 TB/s.
 * Host: µs per dispatch spent recording (setPipeline + setBindGroup with a dynamic offset + dispatch, as
 * src/backend/webgpu/recorder.ts does), and the split of that time among the three calls.
 *
 *   node dist/bench/gpu-dispatch-floor.js [--calls 500] [--rounds 5] [--json FILE]
 */
import { parseArgs } from "node:util";
import { writeFileSync } from "node:fs";
import { createWebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import { BufferUsage, COMPUTE_STAGE } from "../src/backend/webgpu/device.js";
import { copyKernel } from "../src/backend/webgpu/kernels/copy.js";
import { timedPass } from "./gpu-timing.js";

const { values: a } = parseArgs({ options: { calls: { type: "string", default: "500" }, rounds: { type: "string", default: "5" }, json: { type: "string" } } });
const CALLS = Number(a.calls);
const ROUNDS = Number(a.rounds);
if (!(CALLS >= 1 && CALLS <= 4000 && ROUNDS >= 1)) throw new Error("--calls 1..4000, --rounds >= 1");

const b = await createWebGpuBackend({ profile: true });
const device = b.gpu.device;
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

const WRITE = /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < p.n) { out[gid.x] = out[gid.x] + 1u; }
}`;

function pipeline(code: string, bindings: ("storage" | "read-only-storage")[]): { pipe: GPUComputePipeline; layout: GPUBindGroupLayout } {
  const layout = device.createBindGroupLayout({
    entries: [
      { binding: 0, visibility: COMPUTE_STAGE, buffer: { type: "uniform", hasDynamicOffset: true } },
      ...bindings.map((type, i) => ({ binding: i + 1, visibility: COMPUTE_STAGE, buffer: { type } })),
    ],
  });
  const pipe = device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: device.createShaderModule({ code }), entryPoint: "main" } });
  return { pipe, layout };
}

const params = device.createBuffer({ size: 256 * 2, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
const words = new Uint32Array(128);
words[0] = 1;
words[64] = 1 << 30;
device.queue.writeBuffer(params, 0, words);
const storage = (bytes: number) => device.createBuffer({ size: bytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
const one = pipeline(WRITE.replace("WG", "64"), ["storage"]);
const wide = pipeline(WRITE.replace("WG", "256"), ["storage"]);
const copy = pipeline(copyKernel().code, ["storage", "read-only-storage"]);
const group = (p: { layout: GPUBindGroupLayout }, bufs: GPUBuffer[]) =>
  device.createBindGroup({ layout: p.layout, entries: [{ binding: 0, resource: { buffer: params, size: 16 } }, ...bufs.map((buffer, i) => ({ binding: i + 1, resource: { buffer } }))] });
const shared = storage(1 << 20);
const own = Array.from({ length: 64 }, () => storage(256));
const src = storage(1 << 20);
const dst = storage(1 << 20);

interface Case { name: string; record: (pass: GPUComputePassEncoder, i: number) => void }
const oneShared = group(one, [shared]);
// the same kernel bound without a dynamic offset (its own layout), for the host split
const staticLayout = device.createBindGroupLayout({
  entries: [
    { binding: 0, visibility: COMPUTE_STAGE, buffer: { type: "uniform" } },
    { binding: 1, visibility: COMPUTE_STAGE, buffer: { type: "storage" } },
  ],
});
const oneStatic = device.createBindGroup({ layout: staticLayout, entries: [{ binding: 0, resource: { buffer: params, size: 16 } }, { binding: 1, resource: { buffer: shared } }] });
const oneOwn = own.map((buf) => group(one, [buf]));
const wideShared = group(wide, [shared]);
const copyGroup = group(copy, [dst, src]);
const cases: Case[] = [
  { name: "empty, chained", record: (pass) => { pass.setPipeline(one.pipe); pass.setBindGroup(0, oneShared, [0]); pass.dispatchWorkgroups(1); } },
  { name: "empty, independent", record: (pass, i) => { pass.setPipeline(one.pipe); pass.setBindGroup(0, oneOwn[i % 64]!, [0]); pass.dispatchWorkgroups(1); } },
  { name: "wide, chained", record: (pass) => { pass.setPipeline(wide.pipe); pass.setBindGroup(0, wideShared, [0]); pass.dispatchWorkgroups(1024); } },
  { name: "copy 1 MiB, chained", record: (pass) => { pass.setPipeline(copy.pipe); pass.setBindGroup(0, copyGroup, [256]); pass.dispatchWorkgroups((1 << 20) / 16 / 256); } },
];
words[64] = (1 << 20) / 16;
device.queue.writeBuffer(params, 0, words);

/** GPU ns per call over `CALLS` calls in one timestamped pass, and host ns per call to record them. */
async function time(c: Case): Promise<{ gpuUs: number; hostUs: number }> {
  const { gpuNs, hostMs } = await timedPass(device, (pass) => { for (let i = 0; i < CALLS; i++) c.record(pass, i); });
  return { gpuUs: gpuNs / 1e3 / CALLS, hostUs: (hostMs * 1e3) / CALLS };
}

/** Host µs per call of each recording call alone (the split of `hostUs`). */
function hostSplit(): { setPipeline: number; setBindGroup: number; setBindGroupTyped: number; setBindGroupStatic: number; dispatch: number } {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  const us = (f: () => void) => {
    const t0 = performance.now();
    for (let i = 0; i < CALLS; i++) f();
    return ((performance.now() - t0) * 1e3) / CALLS;
  };
  const offsets = new Uint32Array([0]);
  const r = {
    setPipeline: us(() => pass.setPipeline(one.pipe)),
    setBindGroup: us(() => pass.setBindGroup(0, oneShared, [0])),
    setBindGroupTyped: us(() => pass.setBindGroup(0, oneShared, offsets, 0, 1)),
    setBindGroupStatic: us(() => pass.setBindGroup(0, oneStatic)),
    dispatch: 0,
  };
  // the static group's layout is not the pipeline's: bind a matching group again before dispatching
  pass.setBindGroup(0, oneShared, [0]);
  r.dispatch = us(() => pass.dispatchWorkgroups(1));
  pass.end();
  device.queue.submit([enc.finish()]);
  return r;
}

console.log(`${b.description}: ${CALLS} calls a pass, median of ${ROUNDS} rounds`);
const rows: { name: string; gpuUs: number; hostUs: number }[] = [];
for (const c of cases) await time(c); // warm-up: pipelines compiled, memory touched
for (const c of cases) {
  const runs: { gpuUs: number; hostUs: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) runs.push(await time(c));
  const row = { name: c.name, gpuUs: median(runs.map((x) => x.gpuUs)), hostUs: median(runs.map((x) => x.hostUs)) };
  rows.push(row);
  console.log(`${row.name.padEnd(22)} GPU ${row.gpuUs.toFixed(2).padStart(7)} µs a call   host ${row.hostUs.toFixed(2).padStart(6)} µs a call`);
}
const splits = Array.from({ length: ROUNDS }, hostSplit);
const split = {
  setPipeline: median(splits.map((s) => s.setPipeline)), setBindGroup: median(splits.map((s) => s.setBindGroup)),
  setBindGroupTyped: median(splits.map((s) => s.setBindGroupTyped)), setBindGroupStatic: median(splits.map((s) => s.setBindGroupStatic)),
  dispatch: median(splits.map((s) => s.dispatch)),
};
console.log(`host split: setPipeline ${split.setPipeline.toFixed(2)} µs, setBindGroup (dynamic offset) ${split.setBindGroup.toFixed(2)} µs, dispatchWorkgroups ${split.dispatch.toFixed(2)} µs`);
console.log(`setBindGroup variants: offsets as a Uint32Array ${split.setBindGroupTyped.toFixed(2)} µs, no dynamic offset ${split.setBindGroupStatic.toFixed(2)} µs`);
await b.finish();
const report = { bench: "gpu-dispatch-floor", device: b.description, calls: CALLS, rounds: ROUNDS, rows, hostSplit: split };
console.log(JSON.stringify(report));
if (a.json) writeFileSync(a.json, JSON.stringify(report, null, 2));
b.dispose();
