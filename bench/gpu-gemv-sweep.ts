/**
 * GEMV variant sweep: every (format, shape, variant) timed in its own Node process, so that nothing one
 * configuration leaves behind (allocations, the GPU's clock state after a long host pause, caches) can
 * change another's time: on an H200 the same f16 kernel took 35 us alone and up to 96 us inside long
 * benches (docs/performance.md). This file is both the driver and the child it spawns.
 *
 * Each child: opens the device, makes the weight once (bench/random-weights.ts) and GPU-copies it until
 * the copies cycle through >= 192 MiB (each call reads DRAM, not L2), keeps the GPU busy for --warmup-ms
 * (copies and GEMVs: clocks up), then records one submission in which every GEMV call (all parts of one
 * weight copy) and every 8th a 512 MiB copy sit in their own timestamped compute pass. It reports the
 * median GEMV time of --iters calls (and p10/p90), the copy bandwidth (median, read + write) from the same
 * submission, "stream" (--iters calls back to back in one pass, the decode situation, time per call), and
 * checks the output on 16 sampled rows against the f64 product of the CPU's decoded weights.
 * Bytes = the weight as the GPU holds it (quants, scales, tile padding) + x + out.
 *
 *   node dist/bench/gpu-gemv-sweep.js [--formats f16,q4_0,razer] [--shapes 4096x4096,...]
 *        [--variants "q4_0=R2 S2 U1,R4 S4 U1 shared-f16;f16=R1 S1 U2"] [--iters 200] [--warmup-ms 250]
 *        [--budget-s 420] [--json FILE] [--quick]
 *   node dist/bench/gpu-gemv-sweep.js --from-json FILE      (the table again, from a saved --json)
 *
 * --quick: small shapes and few iterations, to check the whole path on SwiftShader. --budget-s: no child
 * is started after that many seconds (the rest is listed as not run). Progress goes to stderr; the table
 * (and with --json the rows) to stdout / FILE. Variant names: R rows per team, S teams splitting K, U
 * loads in flight per lane and row, "pipe", and where x is read (kernels/matmul.ts, README "Kernels").
 */
import { spawn, execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createWebGpuBackend, type GpuTensor, type WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import { GpuWeight, type GpuFormat, type WeightPart } from "../src/backend/webgpu/weights.js";
import {
  chunkElems, gemvKernel, gemvRows, gemvVariant, gemvVariantName, gemvWorkgroupBytes, parseGemvVariant, xMode, type GemvVariant,
} from "../src/backend/webgpu/kernels/matmul.js";
import { copyKernel, COPY_GROUP } from "../src/backend/webgpu/kernels/copy.js";
import { f32bits, grid, type Kernel } from "../src/backend/webgpu/kernel.js";
import { BufferUsage, MAP_READ_MODE } from "../src/backend/webgpu/device.js";
import type { Buf } from "../src/backend/webgpu/buffers.js";
import { decodeRow } from "../src/backend/cpu/reference.js";
import { quantFormat } from "../src/quant/formats.js";
import { rawToPacked } from "../src/quant/packed-raw.js";
import { isDType, isPackedDType, isSparseDType } from "../src/tensor/dtype.js";
import type { RawTensor } from "../src/tensor/raw.js";
import { randomWeight } from "./random-weights.js";

/** Llama-3.1-8B (q/o, k/v, up/gate, down), Llama-3.2-1B (q/o, up/gate, down, lm_head), 8192². */
const SHAPES = "4096x4096,1024x4096,14336x4096,4096x14336,2048x2048,8192x2048,2048x8192,128256x2048,8192x8192";
const QUICK_SHAPES = "96x1024,64x2048";

/** Variants timed per format by default (the first is the current default; see kernels/matmul.ts's tables). */
const VARIANTS: Partial<Record<GpuFormat, string[]>> = {
  f16: ["R2 S2 U2", "R1 S1 U2", "R4 S4 U2", "R2 S2 U2 shared-f16", "R4 S4 U1 shared"],
  q4_0: [
    "R2 S2 U1", "R4 S4 U1", "R8 S8 U1", "R4 S4 U2", "R2 S2 U2 pipe",
    "R1 S1 U1 shared", "R4 S2 U1 shared", "R4 S4 U1 shared-f16", "R8 S4 U1 shared-f16", "R8 S8 U1 shared-f16",
  ],
  q8_0: ["R4 S4 U1", "R2 S2 U2", "R8 S8 U1", "R4 S4 U1 shared-f16"],
  razer: ["R2 S2 U1", "R4 S4 U1", "R8 S8 U1", "R4 S4 U1 shared-f16"],
};

const { values: a } = parseArgs({
  options: {
    child: { type: "string" },
    formats: { type: "string", default: "f16,q4_0,razer" },
    shapes: { type: "string" },
    variants: { type: "string" },
    iters: { type: "string" },
    "warmup-ms": { type: "string" },
    "budget-s": { type: "string", default: "420" },
    "child-timeout-s": { type: "string" },
    json: { type: "string" },
    "from-json": { type: "string" },
    quick: { type: "boolean", default: false },
  },
});

/** What a child is asked to time. */
interface Config {
  format: GpuFormat;
  out: number;
  in: number;
  variant: string;
  iters: number;
  warmupMs: number;
  coldBytes: number;
  copyBytes: number;
}

/** What a child reports (one JSON line on stdout). */
interface Result {
  format: GpuFormat;
  shape: string;
  variant: string;
  status: "ok" | "skipped" | "failed" | "wrong" | "not run";
  reason?: string;
  device?: string;
  sg?: number;
  wgBytes?: number;
  mib?: number;
  us?: number;
  p10?: number;
  p90?: number;
  streamUs?: number;
  gbs?: number;
  copyGBs?: number;
  ofCopy?: number;
  check?: string;
  seconds?: number;
}

const log = (s: string) => process.stderr.write(`${s}\n`);
const median = (v: number[]) => quantile(v, 0.5);
function quantile(v: number[], q: number): number {
  const s = [...v].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))]!;
}
function positive(flag: string, v: string): number {
  const n = Number(v);
  if (!(Number.isInteger(n) && n > 0)) throw new Error(`--${flag}: "${v}" is not a positive integer`);
  return n;
}

if (a.child !== undefined) await child(JSON.parse(a.child) as Config);
else if (a["from-json"] !== undefined) {
  const saved = JSON.parse(readFileSync(a["from-json"], "utf8")) as { device: string; results: Result[] };
  console.log(table(saved.results, saved.device));
} else await driver();

// ---------------------------------------------------------------------------------------------------------
// driver

async function driver(): Promise<void> {
  const quick = a.quick!;
  const formats = a.formats!.split(",").filter((f) => f).map((f) => {
    if (!isDType(f) || isSparseDType(f)) throw new Error(`--formats: "${f}" is not a dense weight format`);
    return f as GpuFormat;
  });
  const shapes = (a.shapes ?? (quick ? QUICK_SHAPES : SHAPES)).split(",").filter((s) => s).map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s);
    if (!m) throw new Error(`--shapes: "${s}" is not OUTxIN`);
    return [Number(m[1]), Number(m[2])] as [number, number];
  });
  const variants: Partial<Record<GpuFormat, string[]>> = { ...VARIANTS };
  for (const part of (a.variants ?? "").split(";").filter((s) => s.trim())) {
    const [f, list] = part.split("=");
    if (!f || list === undefined || !isDType(f.trim())) throw new Error(`--variants: "${part}" is not FORMAT=VARIANT,VARIANT`);
    const names = list.split(",").map((v) => v.trim()).filter((v) => v);
    for (const v of names) parseGemvVariant(v, 32); // a typo fails here, not in every child
    variants[f.trim() as GpuFormat] = names;
  }
  const iters = a.iters ? positive("iters", a.iters) : quick ? 8 : 200;
  const warmupMs = a["warmup-ms"] !== undefined ? Number(a["warmup-ms"]) : quick ? 0 : 250;
  const budgetS = Number(a["budget-s"]);
  const timeoutS = a["child-timeout-s"] ? positive("child-timeout-s", a["child-timeout-s"]) : quick ? 900 : 60;
  const configs: Config[] = [];
  for (const [out, inF] of shapes) {
    for (const format of formats) {
      for (const variant of variants[format] ?? [gemvVariantName(gemvVariant(format, 32))]) {
        configs.push({ format, out, in: inF, variant, iters, warmupMs, coldBytes: quick ? 1 << 20 : 192 << 20, copyBytes: quick ? 4 << 20 : 512 << 20 });
      }
    }
  }
  try {
    log(execFileSync("nvidia-smi", ["--query-gpu=name,pstate,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,persistence_mode", "--format=csv"], { encoding: "utf8" }).trim());
  } catch {
    // not an NVIDIA machine: nothing to log
  }
  log(`gpu-gemv-sweep: ${configs.length} configurations, each in its own process; budget ${budgetS} s`);
  const t0 = performance.now();
  const results: Result[] = [];
  for (const [i, c] of configs.entries()) {
    const shape = `${c.out}x${c.in}`;
    const elapsed = (performance.now() - t0) / 1e3;
    if (elapsed > budgetS) {
      results.push({ format: c.format, shape, variant: c.variant, status: "not run", reason: `budget of ${budgetS} s spent` });
      continue;
    }
    const r = await runChild(c, timeoutS);
    results.push(r);
    const what = r.status === "ok" || r.status === "wrong"
      ? `${r.us!.toFixed(1)} us (p10 ${r.p10!.toFixed(1)}, p90 ${r.p90!.toFixed(1)}, stream ${r.streamUs!.toFixed(1)}), ${(r.ofCopy! * 100).toFixed(0)}% of copy ${r.copyGBs!.toPrecision(4)} GB/s, check ${r.check}`
      : `${r.status}: ${r.reason}`;
    log(`[${i + 1}/${configs.length} ${elapsed.toFixed(0)} s] ${c.format} ${shape} ${c.variant}: ${what}`);
  }
  const device = results.find((r) => r.device)?.device ?? "no device";
  const text = table(results, device, (performance.now() - t0) / 1e3);
  console.log(text);
  if (a.json) writeFileSync(a.json, `${JSON.stringify({ bench: "gpu-gemv-sweep", device, date: new Date().toISOString(), iters, warmupMs, results }, null, 1)}\n`);
}

/** Runs one configuration in a fresh Node process; its stderr passes through. */
function runChild(c: Config, timeoutS: number): Promise<Result> {
  const base = { format: c.format, shape: `${c.out}x${c.in}`, variant: c.variant };
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), "--child", JSON.stringify(c)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => p.kill("SIGKILL"), timeoutS * 1e3);
    p.on("close", (code, signal) => {
      clearTimeout(timer);
      const line = out.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(line) as Result);
      } catch {
        resolve({ ...base, status: "failed", reason: signal ? `killed (${signal}) after ${timeoutS} s` : `exit ${code}, no result line` });
      }
    });
  });
}

function table(results: Result[], device: string, seconds?: number): string {
  const f16Best = new Map<string, number>();
  const f16BestStream = new Map<string, number>();
  for (const r of results) {
    if (r.format !== "f16" || r.status !== "ok") continue;
    f16Best.set(r.shape, Math.min(f16Best.get(r.shape) ?? Infinity, r.us!));
    f16BestStream.set(r.shape, Math.min(f16BestStream.get(r.shape) ?? Infinity, r.streamUs!));
  }
  const lines = [
    `GEMV sweep on ${device}, ${results.filter((r) => r.status !== "not run").length} processes${seconds === undefined ? "" : ` in ${seconds.toFixed(0)} s`}`,
    "us = median GPU time of one call in its own timestamped pass; stream = time per call, calls back to back in one",
    "pass (as in a decode step: no per-pass cost); of copy = (weight + x + out bytes) / us over the copy bandwidth",
    "measured in the same process; vs f16 = best f16 us / us, and the same for stream",
    "",
    "shape          format       variant                    us   p10-p90 us     stream     GB/s  of copy  copy GB/s  vs f16  stream vs f16  check",
  ];
  for (const r of results) {
    const head = `${r.shape.padEnd(14)} ${r.format.padEnd(12)} ${r.variant.padEnd(22)}`;
    if (r.status !== "ok" && r.status !== "wrong") {
      lines.push(`${head} ${r.status}: ${r.reason}`);
      continue;
    }
    const ratio = (best: number | undefined, us: number, width: number) => (best ? `${(best / us).toFixed(2)}x` : "-").padStart(width);
    lines.push(
      `${head} ${r.us!.toFixed(1).padStart(8)} ${`${r.p10!.toFixed(1)}-${r.p90!.toFixed(1)}`.padStart(13)} ${r.streamUs!.toFixed(1).padStart(10)} ${r.gbs!.toPrecision(4).padStart(8)} ${`${(r.ofCopy! * 100).toFixed(0)}%`.padStart(8)} ${r.copyGBs!.toPrecision(4).padStart(10)} ${ratio(f16Best.get(r.shape), r.us!, 7)} ${ratio(f16BestStream.get(r.shape), r.streamUs!, 14)}  ${r.status === "wrong" ? `WRONG ${r.check}` : r.check}`,
    );
  }
  // per format: each variant's total over the shapes every variant of the format ran (what a default is chosen by)
  lines.push("", "Per format, variants by total us over the shapes all its variants ran (ok rows only), and by total stream us; * = lowest us:");
  const formats = [...new Set(results.map((r) => r.format))];
  for (const f of formats) {
    const rows = results.filter((r) => r.format === f);
    const variants = [...new Set(rows.map((r) => r.variant))];
    const shapes = [...new Set(rows.map((r) => r.shape))].filter((s) => variants.every((v) => rows.some((r) => r.shape === s && r.variant === v && r.status === "ok")));
    if (shapes.length === 0) continue;
    const sum = (v: string, key: "us" | "streamUs") => shapes.reduce((s, sh) => s + rows.find((r) => r.shape === sh && r.variant === v)![key]!, 0);
    const totals = variants.map((v) => ({ v, us: sum(v, "us"), stream: sum(v, "streamUs") })).sort((x, y) => x.us - y.us);
    const streamRank = [...totals].sort((x, y) => x.stream - y.stream).map((t) => t.v);
    lines.push(`${f} over ${shapes.length} shapes:`);
    for (const [i, t] of totals.entries()) lines.push(`  ${i === 0 ? "*" : " "} ${t.v.padEnd(22)} ${t.us.toFixed(1).padStart(9)} us   stream ${t.stream.toFixed(1).padStart(9)} us (#${streamRank.indexOf(t.v) + 1})`);
    const bestPer = shapes.map((sh) => rows.filter((r) => r.shape === sh && r.status === "ok").sort((x, y) => x.us! - y.us!)[0]!);
    lines.push(`  fastest per shape: ${bestPer.map((r) => `${r.shape} ${r.variant} ${r.us!.toFixed(1)} us`).join("; ")}`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------------------
// child

async function child(c: Config): Promise<void> {
  const started = performance.now();
  const shape = `${c.out}x${c.in}`;
  const base = { format: c.format, shape, variant: c.variant };
  const emit = (r: Result) => process.stdout.write(`${JSON.stringify({ ...r, seconds: (performance.now() - started) / 1e3 })}\n`);
  let b: WebGpuBackend | undefined;
  try {
    b = await createWebGpuBackend({});
    const device = b.description;
    const sg = b.gpu.subgroupMinSize;
    const v = parseGemvVariant(c.variant, sg);
    const wgBytes = gemvWorkgroupBytes(c.format, sg, v);
    const wgLimit = b.gpu.device.limits.maxComputeWorkgroupStorageSize;
    if (wgBytes > wgLimit) {
      emit({ ...base, status: "skipped", reason: `needs ${wgBytes} bytes of workgroup memory, the device offers ${wgLimit}`, device, sg, wgBytes });
      return;
    }
    emit(await timeVariant(b, c, v, wgBytes));
  } catch (e) {
    emit({ ...base, status: "failed", reason: (e as Error).message.split("\n")[0] });
  } finally {
    b?.dispose();
  }
}

/** A GPU copy of weight `w` (same layout, new buffers): copies read as much DRAM as the original. */
function copyWeight(b: WebGpuBackend, enc: GPUCommandEncoder, w: GpuWeight, name: string): GpuWeight {
  const dup = (s: Buf) => {
    const d = b.pool.storage(s.size, name);
    enc.copyBufferToBuffer(s.buffer, 0, d.buffer, 0, s.size);
    return d;
  };
  const parts: WeightPart[] = w.parts.map((p) => ({ rowStart: p.rowStart, rows: p.rows, data: dup(p.data), ...(p.scales ? { scales: dup(p.scales) } : {}) }));
  return new GpuWeight(name, w.dtype, w.shape, w.format, w.stride, w.blocks, parts, w.mul);
}

/** A compute pipeline with its bind groups, recorded without the backend's recorder (for per-pass timestamps). */
function pipelineOf(device: GPUDevice, k: Kernel): Promise<GPUComputePipeline> {
  // async: a kernel that does not compile rejects here, with the compiler's message
  return device.createComputePipelineAsync({ label: k.name, layout: "auto", compute: { module: device.createShaderModule({ code: k.code, label: k.key }), entryPoint: "main" } });
}

function uniform(b: WebGpuBackend, words: number[]): GPUBuffer {
  const buf = b.pool.raw(64, BufferUsage.UNIFORM | BufferUsage.COPY_DST, "params").buffer;
  b.gpu.device.queue.writeBuffer(buf, 0, new Uint32Array([...words, ...new Array<number>(16 - words.length).fill(0)]));
  return buf;
}

async function timeVariant(b: WebGpuBackend, c: Config, v: GemvVariant, wgBytes: number): Promise<Result> {
  const device = b.gpu.device;
  const sg = b.gpu.subgroupMinSize;
  const [N, K] = [c.out, c.in];
  const raw = randomWeight("w", c.format, [N, K], 1);
  const w0 = b.upload(raw);
  const weightBytes = w0.parts.reduce((s, p) => s + p.data.size + (p.scales?.size ?? 0), 0);
  const copies = Math.max(1, Math.ceil(c.coldBytes / weightBytes));
  const enc0 = device.createCommandEncoder();
  const ws = [w0, ...Array.from({ length: copies - 1 }, (_, i) => copyWeight(b, enc0, w0, `w${i + 1}`))];
  device.queue.submit([enc0.finish()]);
  const xs = Float32Array.from({ length: K }, (_, i) => Math.sin(i * 12.9898) * 0.5);
  const x = b.activation(1, K) as GpuTensor;
  device.queue.writeBuffer(x.buf.buffer, 0, xs);
  const out = b.activation(1, N) as GpuTensor;

  const kernel = gemvKernel(c.format, xMode(c.format, K), sg, v.rowsPerTeam, v.split, v.unroll, v.pipeline, v.x);
  const gemv = await pipelineOf(device, kernel);
  const chunks = Math.ceil(K / chunkElems(c.format));
  const params = w0.parts.map((p) => uniform(b, [p.rows, K, chunks, p.rowStart, w0.stride / 4, w0.blocks, f32bits(w0.mul)]));
  const calls = ws.map((w) =>
    w.parts.map((p, i) => ({
      group: device.createBindGroup({
        layout: gemv.getBindGroupLayout(0),
        entries: [params[i]!, x.buf.buffer, p.data.buffer, ...(p.scales ? [p.scales.buffer] : []), out.buf.buffer].map((buffer, j) => ({ binding: j, resource: { buffer } })),
      }),
      grid: grid(Math.ceil(p.rows / gemvRows(sg, v.rowsPerTeam, v.split))),
    })),
  );
  const gemvCall = (pass: GPUComputePassEncoder, i: number) => {
    pass.setPipeline(gemv);
    for (const p of calls[i % copies]!) {
      pass.setBindGroup(0, p.group);
      pass.dispatchWorkgroups(p.grid[0], p.grid[1]);
    }
  };
  const n4 = c.copyBytes / 16;
  const src = b.pool.storage(c.copyBytes, "copy src");
  const dst = b.pool.storage(c.copyBytes, "copy dst");
  const copy = await pipelineOf(device, copyKernel());
  const copyGroup = device.createBindGroup({
    layout: copy.getBindGroupLayout(0),
    entries: [uniform(b, [n4]), dst.buffer, src.buffer].map((buffer, j) => ({ binding: j, resource: { buffer } })),
  });
  const copyGrid = grid(Math.ceil(n4 / COPY_GROUP));
  const copyCall = (pass: GPUComputePassEncoder) => {
    pass.setPipeline(copy);
    pass.setBindGroup(0, copyGroup);
    pass.dispatchWorkgroups(copyGrid[0], copyGrid[1]);
  };

  // warm-up: the pipelines' first runs, then the GPU kept busy long enough to leave its idle clocks
  const warmStart = performance.now();
  do {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let i = 0; i < 4; i++) copyCall(pass);
    for (let i = 0; i < Math.max(copies, 16); i++) gemvCall(pass, i);
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  } while (performance.now() - warmStart < c.warmupMs);

  // timed: one submission; every GEMV call and every 8th a copy in its own timestamped pass, then the
  // stream passes (--iters calls each); at most 4096 timestamps a query set
  const copyEvery = 8;
  const streams = 5;
  const passes: ("gemv" | "copy" | "stream")[] = [];
  for (let i = 0; i < c.iters; i++) {
    if (i % copyEvery === 0) passes.push("copy");
    passes.push("gemv");
  }
  for (let s = 0; s < streams; s++) passes.push("stream");
  if (2 * passes.length > 4096) throw new Error(`--iters ${c.iters}: more than 4096 timestamps in one query set`);
  const querySet = device.createQuerySet({ type: "timestamp", count: 2 * passes.length });
  const resolve = b.pool.raw(16 * passes.length, BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC, "timestamps").buffer;
  const readback = b.pool.raw(16 * passes.length, BufferUsage.MAP_READ | BufferUsage.COPY_DST, "timestamps readback").buffer;
  const enc = device.createCommandEncoder();
  let g = 0;
  for (const [i, kind] of passes.entries()) {
    const pass = enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
    if (kind === "copy") copyCall(pass);
    else if (kind === "gemv") gemvCall(pass, g++);
    else for (let j = 0; j < c.iters; j++) gemvCall(pass, g++);
    pass.end();
  }
  enc.resolveQuerySet(querySet, 0, 2 * passes.length, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, readback, 0, 16 * passes.length);
  device.queue.submit([enc.finish()]);
  await readback.mapAsync(MAP_READ_MODE);
  const t = new BigUint64Array(readback.getMappedRange().slice(0));
  readback.unmap();
  const ns = (i: number) => Number(t[2 * i + 1]! - t[2 * i]!);
  const of = (kind: string) => passes.flatMap((k, i) => (k === kind ? [ns(i)] : []));
  const gemvNs = of("gemv");
  const copyNs = median(of("copy"));
  const streamNs = median(of("stream")) / c.iters;
  if (!(median(gemvNs) > 0 && copyNs > 0)) throw new Error("the timestamps read back as zero (the adapter may not support them)");

  const got = new Float32Array(await b.read(out));
  const check = checkRows(raw, got, xs, v.x === "shared-f16");
  const bytes = weightBytes + (K + N) * 4;
  const us = median(gemvNs) / 1e3;
  const gbs = bytes / us / 1e3;
  const copyGBs = (2 * c.copyBytes) / copyNs;
  b.pool.destroy(src);
  b.pool.destroy(dst);
  querySet.destroy();
  return {
    format: c.format, shape: `${N}x${K}`, variant: c.variant, status: check.startsWith("FAILED") ? "wrong" : "ok",
    device: b.description, sg, wgBytes, mib: bytes / 2 ** 20,
    us, p10: quantile(gemvNs, 0.1) / 1e3, p90: quantile(gemvNs, 0.9) / 1e3, streamUs: streamNs / 1e3,
    gbs, copyGBs, ofCopy: gbs / copyGBs, check,
  };
}

/**
 * 16 sampled rows of the output against the f64 product of the CPU's decoded weights, within the f32
 * summation bound (K + 16) 2^-24 sum |w x| (plus x's f16 rounding, 2^-10 |x| + 2^-14 a value, when staged
 * as f16). Packed formats are decoded whole (slow in JS), so only up to 2^24 weights.
 */
function checkRows(raw: RawTensor, got: Float32Array, xs: Float32Array, xHalf: boolean): string {
  const [N, K] = raw.shape as [number, number];
  let rowOf: (o: number) => Float32Array;
  if (isPackedDType(raw.dtype)) {
    if (N * K > 2 ** 24) return "not checked (packed, > 2^24 weights)";
    const all = quantFormat(raw.dtype).unpack(rawToPacked(raw));
    rowOf = (o) => all.subarray(o * K, (o + 1) * K);
  } else {
    rowOf = (o) => {
      const row = new Float32Array(K);
      decodeRow(raw.dtype, raw.data, o, K, row);
      return row;
    };
  }
  const gamma = (K + 16) * 2 ** -24;
  let worst = 0;
  for (let s = 0; s < 16; s++) {
    const o = s === 15 ? N - 1 : Math.floor((s * N) / 15);
    const w = rowOf(o);
    let exact = 0, mag = 0, xErr = 0;
    for (let i = 0; i < K; i++) {
      exact += w[i]! * xs[i]!;
      mag += Math.abs(w[i]! * xs[i]!);
      if (xHalf) xErr += Math.abs(w[i]!) * (2 ** -10 * Math.abs(xs[i]!) + 2 ** -14);
    }
    const bound = gamma * mag + (1 + gamma) * xErr;
    const err = Math.abs(got[o]! - exact);
    if (!(err <= bound)) return `FAILED row ${o}: ${got[o]} vs ${exact} (bound ${bound.toExponential(2)})`;
    worst = Math.max(worst, bound > 0 ? err / bound : 0);
  }
  return `ok (${(worst * 100).toFixed(0)}% of bound)`;
}
