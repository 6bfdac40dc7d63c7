/**
 * The decode ceiling the WebGPU dispatch model allows: synthetic batch-1 q4_0 decode steps on Llama
 * shapes in which every dispatch only reads its bytes (bench/decode-ceiling-kernels.ts), recorded through
 * the engine's own Recorder (src/backend/webgpu/recorder.ts: one command buffer a step, parameter ring,
 * cached bind groups) and pipelined as generate() runs decode (step t + 1 is recorded and submitted before
 * step t's 4-byte result is read back, as backend.pickAhead does; bench/gpu-decode.ts times it the same
 * way). Three configurations of the same bytes (bench/decode-ceiling-plan.ts):
 * - engine: the engine's dispatches of a q4_0 step (197 at 8B; 229 before RoPE and the KV write joined the q/k/v GEMV), weight groups and attention reading
 *   their bytes, every other kernel a tiny dispatch;
 * - minimal: five dispatches a layer + lm_head + argmax, the fewest without a grid-wide barrier;
 * - one-pass: every byte in one dispatch.
 * For each: tokens/s and ms a step pipelined, host ms a step spent recording (forward + pick in the
 * engine), GPU ms a step with the host out of the way (`steps` steps recorded first, then submitted at
 * once), the GPU time above the bytes' DRAM time per dispatch, and both rates as a share of the roofline:
 * decode weight bytes (bench/roofline.ts) + an f32 KV cache at --kv-depth, over the streaming copy's
 * bandwidth measured in the same run. Before timing, each configuration's step runs once with every
 * dispatch adding the words it read into its own slot, checked against the host's sum of the bytes the
 * plan says it reads (--skip-check skips it; a few seconds of host time at 8B).
 *
 *   node dist/bench/gpu-decode-ceiling.js [--shapes llama-3.1-8b,llama-3.2-1b] [--kv-depth 548] [--steps 64]
 *        [--warmup 8] [--repeats 5] [--copy-mib 512] [--arena-mib 2048] [--skip-check] [--json FILE]
 *   node dist/bench/gpu-decode-ceiling.js --smoke [--json FILE]     # a tiny shape, few steps (SwiftShader)
 *
 * --kv-depth 548 is gpu-decode's mean depth over its timed steps (512 prompt + 4 warm-up + 65 / 2).
 * Weights and KV live in "arenas" of at most --arena-mib (and the device's binding and buffer limits),
 * so one-pass can bind them all (an 8B step takes 3 arenas of 2 GiB; the run says if the device's
 * storage bindings a shader are too few). Configurations are interleaved, one repeat of each in turn; figures are medians.
 * Prints a table and ends with one JSON line; --json also writes it.
 */
import { parseArgs } from "node:util";
import { writeFileSync } from "node:fs";
import { createWebGpuBackend, type WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import { BufferUsage, COMPUTE_STAGE } from "../src/backend/webgpu/device.js";
import { PARAM_BYTES, type Kernel } from "../src/backend/webgpu/kernel.js";
import { gemvTeam } from "../src/backend/webgpu/kernels/matmul.js";
import { GEMV_BLOCKS_QUANT } from "../src/backend/webgpu/kernels/gemv-blocks.js";
import { copyBandwidth, type CopyBandwidth } from "./gpu-timing.js";
import { decodeWeightBytes, kvReadBytes, rooflineTokensPerSecond } from "./roofline.js";
import { type Spread, spread } from "./llama-cpp-anchor.js";
import { randomLlamaConfig } from "./make-random-gguf.js";
import { SHAPES, type Shape } from "./llama-shapes.js";
import { CEILING_CONFIGS, type CeilingConfig, planBytes, stepMemory, stepPlan } from "./decode-ceiling-plan.js";
import { Step } from "./decode-ceiling-step.js";

/** The --smoke shape: every matrix a multiple of 16 rows of 8 blocks, so no region needs padding. */
const SMOKE: Record<string, Shape> = { smoke: { dim: 256, layers: 2, ffn: 512, heads: 4, kvHeads: 2, vocab: 2048, tied: false } };

const { values: a } = parseArgs({
  options: {
    shapes: { type: "string" }, smoke: { type: "boolean", default: false },
    "kv-depth": { type: "string" }, steps: { type: "string" }, warmup: { type: "string" }, repeats: { type: "string" },
    "copy-mib": { type: "string" }, "arena-mib": { type: "string" }, "skip-check": { type: "boolean", default: false },
    json: { type: "string" },
  },
});
const smoke = a.smoke!;
function num(name: "kv-depth" | "steps" | "warmup" | "repeats" | "copy-mib" | "arena-mib", fallback: number, smokeValue: number, min: number, integer = true): number {
  const v = a[name];
  const x = v === undefined ? (smoke ? smokeValue : fallback) : Number(v);
  if (!(Number.isFinite(x) && x >= min && (!integer || Number.isInteger(x)))) throw new Error(`--${name} must be ${integer ? "an integer" : "a number"} >= ${min}, got ${v}`);
  return x;
}
const S = {
  kvDepth: num("kv-depth", 548, 16, 0), steps: num("steps", 64, 4, 1), warmup: num("warmup", 8, 1, 0), repeats: num("repeats", 5, 2, 1),
  copyMiB: num("copy-mib", 512, 4, 1), arenaMiB: num("arena-mib", 2048, 0.25, 1 / 64, false), check: !a["skip-check"],
};
const known = smoke ? SMOKE : SHAPES;
const shapeNames = (a.shapes ?? Object.keys(known).join(",")).split(",").filter(Boolean);
for (const n of shapeNames) if (!known[n]) throw new Error(`--shapes: unknown shape ${n} (known: ${Object.keys(known).join(", ")})`);

const ms = () => performance.now();
const f = (x: number, d = 2) => x.toFixed(d);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

interface ConfigResult {
  config: CeilingConfig;
  dispatches: number;
  /** Bytes one step reads (one-pass: its arenas whole, so with any padding between regions). */
  bytes: number;
  tokS: Spread;
  /** Median ms a pipelined step. */
  msPerStep: number;
  /** Host ms a step spent recording and submitting it. */
  hostMs: Spread;
  /** ms a step with every step recorded before any is submitted. */
  gpuMs: Spread;
  /** The pipelined and the host-free rate over the roofline's. */
  ofRoofline: number;
  ofRooflineGpu: number;
  /** (GPU ms a step - the step's bytes at the copy bandwidth) / dispatches, in µs. */
  usPerDispatchAboveDram: number;
}

interface ShapeResult {
  shape: string;
  config: Shape;
  kvDepth: number;
  /** Weight bytes of a decode step (roofline.ts) + the f32 KV cache at kvDepth: the roofline's bytes. */
  rooflineBytes: number;
  rooflineTokS: number;
  /** What the plan streams: every matrix and the KV (the roofline's bytes less the norm vectors and one embedding row). */
  planBytes: number;
  arenas: number;
  check: "passed" | "skipped";
  results: ConfigResult[];
}

interface Report {
  bench: "gpu-decode-ceiling";
  device: string;
  copy: CopyBandwidth;
  settings: typeof S & { smoke: boolean; team: number; rowsPerTeam: number; unroll: number };
  shapes: ShapeResult[];
  complete: boolean;
}

/** Tokens/s and host ms a step of `steps` pipelined steps after `warmup` (gpu-decode's decodeRun). */
async function pipelined(step: Step, config: CeilingConfig, steps: number, warmup: number): Promise<{ tokS: number; hostMs: number }> {
  let pending = step.record(config);
  await pending;
  let t0 = ms();
  let host = 0;
  for (let i = 0; i < warmup + steps; i++) {
    if (i === warmup) t0 = ms();
    const r0 = ms();
    const next = step.record(config);
    if (i >= warmup) host += ms() - r0;
    await pending;
    pending = next;
  }
  await pending;
  return { tokS: (steps / (ms() - t0)) * 1000, hostMs: host / steps };
}

/**
 * ms a step with the host out of the way: `steps` command buffers (one a step, every dispatch in one
 * compute pass, as the recorder makes them) recorded first, then submitted together. Pipelines and bind
 * groups are made here, over a parameter buffer written once, so nothing is recorded through the ring.
 */
class Prerecorded {
  private readonly pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  private readonly plans = new Map<CeilingConfig, { pipeline: GPUComputePipeline; group: GPUBindGroup; groups: [number, number] }[]>();
  private readonly params: GPUBuffer[] = [];

  constructor(private readonly device: GPUDevice, step: Step) {
    for (const [config, ops] of step.ops) {
      const stride = 256;
      const params = device.createBuffer({ size: ops.length * stride, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
      this.params.push(params);
      const words = new Uint32Array((ops.length * stride) / 4);
      ops.forEach((o, i) => words.set(o.params, (i * stride) / 4));
      device.queue.writeBuffer(params, 0, words);
      this.plans.set(config, ops.map((o, i) => {
        const { pipeline, layout } = this.compiled(o.kernel);
        const group = device.createBindGroup({
          layout,
          entries: [
            { binding: 0, resource: { buffer: params, offset: i * stride, size: o.kernel.paramBytes ?? PARAM_BYTES } },
            ...o.bufs.map((x, j) => ({ binding: j + 1, resource: x.offset === undefined ? { buffer: x.buffer } : { buffer: x.buffer, offset: x.offset, size: x.size } })),
          ],
        });
        return { pipeline, group, groups: o.groups };
      }));
    }
  }

  private compiled(k: Kernel) {
    let c = this.pipelines.get(k.key);
    if (!c) {
      const layout = this.device.createBindGroupLayout({
        entries: [
          { binding: 0, visibility: COMPUTE_STAGE, buffer: { type: "uniform" } },
          ...k.bindings.map((kind, i) => ({ binding: i + 1, visibility: COMPUTE_STAGE, buffer: { type: kind === "read" ? ("read-only-storage" as const) : ("storage" as const) } })),
        ],
      });
      const pipeline = this.device.createComputePipeline({ layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: this.device.createShaderModule({ code: k.code }), entryPoint: "main" } });
      c = { pipeline, layout };
      this.pipelines.set(k.key, c);
    }
    return c;
  }

  async time(config: CeilingConfig, steps: number): Promise<number> {
    const plan = this.plans.get(config)!;
    const buffers = Array.from({ length: steps }, () => {
      const enc = this.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (const d of plan) {
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.group);
        pass.dispatchWorkgroups(d.groups[0], d.groups[1]);
      }
      pass.end();
      return enc.finish();
    });
    const t0 = ms();
    this.device.queue.submit(buffers);
    await this.device.queue.onSubmittedWorkDone();
    return (ms() - t0) / steps;
  }

  destroy(): void {
    for (const p of this.params) p.destroy();
  }
}

async function runShape(b: WebGpuBackend, name: string, shape: Shape, copy: CopyBandwidth, team: number): Promise<ShapeResult> {
  const config = randomLlamaConfig({ ...shape, hidden: shape.ffn, ctx: 131072 });
  const mem = stepMemory(config, S.kvDepth);
  const rooflineBytes = decodeWeightBytes(config, "q4_0") + kvReadBytes(config, S.kvDepth, 4);
  const rooflineTokS = rooflineTokensPerSecond(rooflineBytes, copy.gbs);
  const cap = Math.floor(Math.min(b.gpu.maxBindingBytes, b.gpu.maxBufferBytes, S.arenaMiB * 2 ** 20) / 256) * 256;
  const t0 = ms();
  const step = await Step.create(b, mem, { cap, team, check: S.check });
  const prerec = new Prerecorded(b.gpu.device, step);
  try {
    await b.finish();
    const streamed = planBytes(stepPlan("engine", mem), mem);
    console.log(`\n${name}: ${f(streamed / 2 ** 20, 1)} MiB a step in ${step.arenas.length} arena(s) (weights ${f((streamed - 2 * config.numLayers * S.kvDepth * config.numKvHeads * config.headDim * 4) / 2 ** 20, 1)} MiB, KV at depth ${S.kvDepth}), ` +
      `roofline ${f(rooflineBytes / 2 ** 20, 1)} MiB: ${f(rooflineTokS, 1)} t/s at ${copy.gbs.toPrecision(4)} GB/s; set up in ${f((ms() - t0) / 1000, 1)} s`);
    if (S.check) {
      const c0 = ms();
      for (const c of CEILING_CONFIGS) await step.check(c);
      console.log(`  check: every dispatch of every configuration read exactly its bytes (${f((ms() - c0) / 1000, 1)} s with the host's sums)`);
    }
    // warm-up: pipelines compile, bind groups settle
    for (const c of CEILING_CONFIGS) {
      await pipelined(step, c, Math.min(8, S.steps), 1);
      await prerec.time(c, Math.min(8, S.steps));
    }
    const runs = new Map(CEILING_CONFIGS.map((c) => [c, { tokS: [] as number[], hostMs: [] as number[], gpuMs: [] as number[] }]));
    for (let r = 0; r < S.repeats; r++) {
      for (const c of CEILING_CONFIGS) {
        const p = await pipelined(step, c, S.steps, S.warmup);
        const g = await prerec.time(c, S.steps);
        const x = runs.get(c)!;
        x.tokS.push(p.tokS);
        x.hostMs.push(p.hostMs);
        x.gpuMs.push(g);
      }
    }
    const results = CEILING_CONFIGS.map((c): ConfigResult => {
      const x = runs.get(c)!;
      const tokS = spread(x.tokS);
      const gpuMs = spread(x.gpuMs);
      const bytes = step.bytes.get(c)!;
      const dispatches = step.ops.get(c)!.length;
      const dramMs = (bytes / (copy.gbs * 1e9)) * 1000;
      return {
        config: c, dispatches, bytes, tokS, msPerStep: 1000 / tokS.median, hostMs: spread(x.hostMs), gpuMs,
        ofRoofline: tokS.median / rooflineTokS, ofRooflineGpu: 1000 / gpuMs.median / rooflineTokS,
        usPerDispatchAboveDram: ((gpuMs.median - dramMs) * 1000) / dispatches,
      };
    });
    return { shape: name, config: shape, kvDepth: S.kvDepth, rooflineBytes, rooflineTokS, planBytes: streamed, arenas: step.arenas.length, check: S.check ? "passed" : "skipped", results };
  } finally {
    await b.finish().catch(() => {});
    prerec.destroy();
    step.destroy();
  }
}

function printTable(rep: Report): void {
  console.log(`\n${rep.device}; copy ${rep.copy.gbs.toPrecision(4)} GB/s (${rep.copy.timed}); KV depth ${S.kvDepth}; ${S.steps} steps, median of ${S.repeats}`);
  const head = ["shape", "config", "dispatches", "MiB a step", "t/s (min-max)", "ms a step", "host ms a step", "GPU ms a step (no host)", "of roofline", "of roofline (no host)", "µs a dispatch above DRAM"];
  console.log(`| ${head.join(" | ")} |\n|${head.map(() => " --- ").join("|")}|`);
  for (const s of rep.shapes) {
    for (const r of s.results) {
      console.log(`| ${s.shape} | ${r.config} | ${r.dispatches} | ${f(r.bytes / 2 ** 20, 1)} | ${f(r.tokS.median, 1)} (${f(r.tokS.min, 1)}-${f(r.tokS.max, 1)}) | ${f(r.msPerStep, 3)} | ${f(r.hostMs.median, 3)} | ${f(r.gpuMs.median, 3)} | ${pct(r.ofRoofline)} | ${pct(r.ofRooflineGpu)} | ${f(r.usPerDispatchAboveDram, 2)} |`);
    }
  }
}

async function main(): Promise<void> {
  // the yardstick, timed with timestamps where the adapter has them (gpu-decode does the same)
  let probe: WebGpuBackend;
  try {
    probe = await createWebGpuBackend({ profile: true });
  } catch {
    probe = await createWebGpuBackend();
  }
  const copy = await copyBandwidth(probe, S.copyMiB << 20, smoke ? 5 : 50);
  probe.dispose();
  const b = await createWebGpuBackend();
  const team = gemvTeam(b.gpu.subgroupMinSize);
  const lim = b.gpu.device.limits;
  console.log(`${b.description}: copy ${S.copyMiB} MiB ${copy.gbs.toPrecision(4)} GB/s read + write (${copy.timed}); GEMV teams of ${team} lanes, ${GEMV_BLOCKS_QUANT.rowsPerTeam} rows, ${GEMV_BLOCKS_QUANT.unroll} blocks in flight; ` +
    `limits: binding ${f(lim.maxStorageBufferBindingSize / 2 ** 20, 0)} MiB, buffer ${f(lim.maxBufferSize / 2 ** 20, 0)} MiB, ${lim.maxStorageBuffersPerShaderStage} storage buffers a shader`);
  const rep: Report = {
    bench: "gpu-decode-ceiling", device: b.description, copy,
    settings: { ...S, smoke, team, rowsPerTeam: GEMV_BLOCKS_QUANT.rowsPerTeam, unroll: GEMV_BLOCKS_QUANT.unroll },
    shapes: [], complete: false,
  };
  const write = () => { if (a.json) writeFileSync(a.json, JSON.stringify(rep, null, 2)); };
  try {
    for (const n of shapeNames) {
      const s = await runShape(b, n, known[n]!, copy, team);
      rep.shapes.push(s);
      for (const r of s.results) {
        console.log(`  ${r.config.padEnd(8)} ${String(r.dispatches).padStart(4)} dispatches: ${f(r.tokS.median, 1)} t/s, ${f(r.msPerStep, 3)} ms a step (host ${f(r.hostMs.median, 3)}; no host ${f(r.gpuMs.median, 3)}), ` +
          `${pct(r.ofRoofline)} of roofline (no host ${pct(r.ofRooflineGpu)}), ${f(r.usPerDispatchAboveDram, 2)} µs a dispatch above DRAM`);
      }
      write();
    }
    rep.complete = true;
    printTable(rep);
    write();
    console.log(JSON.stringify(rep));
  } finally {
    b.dispose();
  }
}

main().catch((e: Error) => {
  console.error(e.stack ?? e.message);
  process.exit(1);
});
