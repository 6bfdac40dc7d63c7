/**
 * What one WGSL operation costs on this GPU, relative to an f32 FMA: the numbers a GEMV's decode is
 * budgeted with (docs/performance.md). Every kernel runs ITERS iterations of four independent chains per
 * thread over a grid that fills the GPU, so the time is throughput, not latency; each iteration also XORs
 * the loop counter in (one integer op, in every case) so the compiler can hoist nothing.
 *
 *   node dist/bench/gpu-op-cost.js [--iters 4096] [--rounds 5] [--json FILE]
 */
import { parseArgs } from "node:util";
import { writeFileSync } from "node:fs";
import { openGpu, BufferUsage, COMPUTE_STAGE } from "../src/backend/webgpu/device.js";
import { timedPass } from "./gpu-timing.js";

const { values: a } = parseArgs({ options: { iters: { type: "string", default: "4096" }, rounds: { type: "string", default: "5" }, json: { type: "string" } } });
const ITERS = Number(a.iters);
const ROUNDS = Number(a.rounds);
const gpu = await openGpu();
const device = gpu.device;
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const WGS = 132 * 32;

/** `step` updates chain c (u32 `u${c}`, f32 `f${c}`, i32 `i${c}`) with the iteration's word `$t`. */
const OPS: Record<string, string> = {
  "loop only (xor)": "u${c} ^= $t;",
  "f32 fma": "f${c} = fma(f${c}, 1.0001, bitcast<f32>($t));",
  "int and|or (lop3)": "u${c} = (u${c} & $t) | 0x4b000000u;",
  "int add": "u${c} += $t;",
  "int shift by a variable (& 7)": "u${c} = u${c} >> ($t & 7u);",
  "int mul": "u${c} *= $t;",
  "i32 to f32": "f${c} += f32(i32($t));",
  "u32 to f32": "f${c} += f32($t);",
  "unpack2x16float": "f${c} += unpack2x16float($t).x;",
  "unpack2x16float (both)": "let h${c} = unpack2x16float($t); f${c} += h${c}.x + h${c}.y;",
  "dot4I8Packed": "i${c} += dot4I8Packed($t, 0x01020304u);",
  "dot4I8Packed to f32": "f${c} += f32(dot4I8Packed($t, 0x01020304u));",
  "insertBits": "u${c} = insertBits($t, u${c}, 16u, 16u);",
  "extractBits": "u${c} += extractBits($t, 8u, 4u);",
};

function kernel(step: string): string {
  const chains = [0, 1, 2, 3];
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  ${chains.map((c) => `var u${c} = gid.x + ${c}u; var f${c} = f32(gid.x) * ${c + 1}.0; var i${c} = i32(gid.x) - ${c};`).join("\n  ")}
  for (var k = 0u; k < ${ITERS}u; k++) {
    let t = (k * 0x9e3779b9u) ^ gid.x;
    ${chains.map((c) => step.replaceAll("${c}", String(c)).replaceAll("$t", `(t + ${c}u)`)).join("\n    ")}
  }
  let r = ${chains.map((c) => `u${c} ^ bitcast<u32>(f${c}) ^ bitcast<u32>(i${c})`).join(" ^ ")};
  if (r == 0x12345678u) { out[gid.x] = r; }
}`;
}

const out = device.createBuffer({ size: WGS * 256 * 4, usage: BufferUsage.STORAGE });
const layout = device.createBindGroupLayout({ entries: [{ binding: 0, visibility: COMPUTE_STAGE, buffer: { type: "storage" } }] });
const group = device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer: out } }] });
const cases = Object.entries(OPS).map(([name, step]) => ({
  name,
  pipe: device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: device.createShaderModule({ code: kernel(step) }), entryPoint: "main" } }),
}));

async function time(pipe: GPUComputePipeline): Promise<number> {
  const { gpuNs } = await timedPass(device, (pass) => { pass.setPipeline(pipe); pass.setBindGroup(0, group); pass.dispatchWorkgroups(WGS); });
  return gpuNs;
}

for (const c of cases) await time(c.pipe);
const runs = new Map(cases.map((c) => [c.name, [] as number[]]));
for (let r = 0; r < ROUNDS; r++) for (const c of cases) runs.get(c.name)!.push(await time(c.pipe));
const opsPerCase = WGS * 256 * ITERS * 4;
const base = median(runs.get("loop only (xor)")!);
const fma = median(runs.get("f32 fma")!) - base;
console.log(`${gpu.description}: ${WGS} workgroups x 256 threads x ${ITERS} iterations x 4 chains, median of ${ROUNDS}`);
console.log("op                          ms     G ops/s (net of the loop)   cost vs f32 fma");
const rows = cases.map((c) => {
  const ns = median(runs.get(c.name)!);
  const net = ns - base;
  const row = { op: c.name, ms: ns / 1e6, gops: opsPerCase / Math.max(net, 1), vsFma: net / fma };
  console.log(`${c.name.padEnd(26)} ${row.ms.toFixed(3).padStart(7)} ${c.name === "loop only (xor)" ? "".padStart(12) : row.gops.toFixed(0).padStart(12)} ${c.name === "loop only (xor)" ? "" : row.vsFma.toFixed(2).padStart(22)}`);
  return row;
});
if (a.json) writeFileSync(a.json, JSON.stringify({ bench: "gpu-op-cost", device: gpu.description, iters: ITERS, rounds: ROUNDS, rows }, null, 2));
device.destroy();
