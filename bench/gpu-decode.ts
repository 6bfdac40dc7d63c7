/**
 * WebGPU batch-1 decode and prefill on Llama 3.x-shaped models with random weights (bench/make-random-gguf.ts
 * --fast): Frugal against llama.cpp (node-llama-cpp's prebuilt Vulkan build, in a child process) on the
 * same GGUF files, and both against a roofline from the device's copy bandwidth measured in the same run.
 *
 *   npm --prefix bench ci                          # once: the llama.cpp anchor
 *   node dist/bench/gpu-decode.js [--shapes llama-3.2-1b,llama-3.1-8b] [--formats f16,q4_0]
 *        [--shape-custom dim,layers,ffn,heads,kvheads,vocab[,tied]] [--prompt 512] [--long-prompt 4096]
 *        [--decode 64] [--warmup 4] [--repeats 3] [--dir bench/.models] [--skip-anchor] [--flash-attn]
 *        [--anchor-gpu vulkan|cuda|false] [--anchor-timeout 600] [--profile] [--copy-mib 512] [--out FILE.json] [--md FILE.md] [--svg FILE.svg]
 *        [--activations f32|int8] [--q4-layout tiles|blocks] [--quant-once-groups N] [--quant-whole-x 0|1] [--int8-gemm 0|1] [--prefill-attention 0|1] [--qkv-rope 0|1] [--dawn-flags enable-dawn-features=skip_validation]
 *   node dist/bench/gpu-decode.js --from-json A.json[,B.json] [--md FILE.md] [--svg FILE.svg]   # render saved runs
 *
 * Decode: after a prefill of --prompt tokens, --warmup untimed greedy steps, then --decode timed ones
 * (KV depth prompt+warmup .. +decode); each step is one submission that brings back only the token id,
 * pipelined as generate() runs it (backend.pickAhead: step t + 1 is recorded while the GPU runs step t);
 * the same steps with one wait per token (backend.argmax) are reported beside it, and the pipelined steps
 * again without the fused ops (backend.fuse = false: separate q/k/v, gate/up/SwiGLU, RoPE/KV write and add
 * dispatches), interleaved with the fused runs, with the dispatches one decode step records either way;
 * for q8_0/q4_0 also on the other activation path (--activations picks the main one: f32 x, or x quantized
 * to int8 blocks for integer dot products), interleaved too; q4_0 weights are uploaded in --q4-layout (the
 * backend's default: blocks with int8 activations, tiles with f32; the other path then reads a layout made
 * for the main one). Prefill: tokens/s of the whole prompt, at --prompt and --long-prompt tokens. Every
 * figure is the median of --repeats runs (min and max kept), after one untimed warm-up run.
 * Roofline: a decode step must read every weight once (decodeWeightBytes) and the KV cache up to its
 * depth (Frugal keeps K/V in f32, llama.cpp in f16); at the copy kernel's bandwidth that takes
 * bytes / bandwidth, and "of roofline" is that time over the measured time per token.
 * llama.cpp runs with every layer on the GPU, the same context size and batch 512, and flash attention
 * off unless --flash-attn (its default would be "auto").
 *
 * Prints a table and ends with one JSON line; --out also writes that JSON (after every model, so a run
 * cut short keeps what it measured).
 */
import { parseArgs } from "node:util";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawn, execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadModel } from "../src/load.js";
import type { LlamaModel } from "../src/model/llama.js";
import type { KVCache } from "../src/backend/backend.js";
import { createWebGpuBackend, type WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import { Q4_LAYOUTS, type Q4Layout } from "../src/backend/webgpu/weights.js";
import type { KernelTime } from "../src/backend/webgpu/profiler.js";
import { isBlockDType as isDType, type BlockDType as DType } from "../src/tensor/dtype.js";
import { copyBandwidth, type CopyBandwidth } from "./gpu-timing.js";
import { decodeWeightBytes, kvReadBytes, rooflineTokensPerSecond } from "./roofline.js";
import { type AnchorResult, type Spread, promptIds, spread } from "./llama-cpp-anchor.js";
import { barChartSvg, markdownTable } from "../src/eval/plot.js";
import { randomLlamaConfig } from "./make-random-gguf.js";
import { SHAPES, type Shape } from "./llama-shapes.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface FrugalResult {
  loadS: number;
  prefill: Spread;
  prefillLong?: Spread;
  decode: Spread;
  /** Decode with one submission and one wait per token (no pipelining), for comparison. */
  decodeSync?: Spread;
  /** Pipelined decode with the fused ops off (backend.fuse = false), interleaved with the fused runs. */
  decodeUnfused?: Spread;
  /** q8_0/q4_0: pipelined decode on the other activation path (int8 x when the run's is f32, and back), interleaved. */
  decodeOtherX?: Spread;
  /** Host ms per pipelined decode step spent recording and submitting it (forward + pickAhead): when it is
   * close to the time per token, the host, not the GPU, sets the pace. */
  recordMs?: Spread;
  /** Dispatches one decode step records (forward and the device-side pick), fused and unfused. */
  dispatches?: { fused: number; unfused: number };
  kvBytes: number;
  rooflineTokS: number;
  /** Median decode tokens/s over the roofline's. */
  ofRoofline: number;
  /** GPU ms per kernel of one decode step (--profile), and their sum. */
  profile?: { kernels: KernelTime[]; totalMs: number };
}

type AnchorRow = (AnchorResult & { kvBytes: number; rooflineTokS: number; ofRoofline: number }) | { error: string };

interface Row {
  shape: string;
  format: DType;
  config: Shape;
  fileMiB: number;
  contextSize: number;
  /** Weight bytes one decode step reads. */
  weightBytes: number;
  /** Mean KV depth over the timed decode steps. */
  kvDepth: number;
  frugal?: FrugalResult | { error: string };
  llamaCpp?: AnchorRow;
}

interface Report {
  bench: "gpu-decode";
  device: string;
  copy?: CopyBandwidth;
  settings: { prompt: number; longPrompt: number; decode: number; warmup: number; repeats: number; flashAttention: boolean; anchorGpu?: string; activations?: "f32" | "int8"; q4Layout?: Q4Layout };
  results: Row[];
  complete: boolean;
}

const { values: a } = parseArgs({
  options: {
    shapes: { type: "string" },
    "shape-custom": { type: "string" },
    formats: { type: "string", default: "f16,q4_0" },
    prompt: { type: "string", default: "512" },
    "long-prompt": { type: "string", default: "4096" },
    decode: { type: "string", default: "64" },
    warmup: { type: "string", default: "4" },
    repeats: { type: "string", default: "3" },
    dir: { type: "string", default: join(ROOT, "bench/.models") },
    "skip-anchor": { type: "boolean", default: false },
    "dawn-flags": { type: "string", default: "" },
    "flash-attn": { type: "boolean", default: false },
    "anchor-gpu": { type: "string", default: "vulkan" },
    "anchor-timeout": { type: "string", default: "600" },
    profile: { type: "boolean", default: false },
    activations: { type: "string", default: "f32" },
    "q4-layout": { type: "string" },
    "quant-once-groups": { type: "string" },
    "quant-whole-x": { type: "string" },
    "int8-gemm": { type: "string" }, "prefill-attention": { type: "string" },
    "qkv-rope": { type: "string" },
    "copy-mib": { type: "string", default: "512" },
    out: { type: "string" },
    md: { type: "string" },
    svg: { type: "string" },
    "from-json": { type: "string" },
  },
});

function int(name: string, min = 1): number {
  const v = a[name as keyof typeof a];
  const x = Number(v);
  if (typeof v !== "string" || !Number.isInteger(x) || x < min) throw new Error(`--${name} must be an integer >= ${min}, got ${v ?? "nothing"}`);
  return x;
}

/** The shapes to run: --shapes by name, plus --shape-custom (which alone replaces the default list). */
function chosenShapes(): [string, Shape][] {
  const out: [string, Shape][] = [];
  const custom = a["shape-custom"];
  const names = a.shapes ?? (custom ? "" : Object.keys(SHAPES).join(","));
  for (const name of names.split(",").filter(Boolean)) {
    const s = SHAPES[name];
    if (!s) throw new Error(`--shapes: unknown shape ${name} (known: ${Object.keys(SHAPES).join(", ")}; or --shape-custom)`);
    out.push([name, s]);
  }
  if (custom) {
    const parts = custom.split(",");
    const nums = parts.slice(0, 6).map(Number);
    if (nums.length !== 6 || nums.some((x) => !Number.isInteger(x) || x <= 0) || (parts[6] !== undefined && parts[6] !== "tied")) {
      throw new Error(`--shape-custom must be dim,layers,ffn,heads,kvheads,vocab[,tied] (positive integers), got ${custom}`);
    }
    const [dim, layers, ffn, heads, kvHeads, vocab] = nums as [number, number, number, number, number, number];
    out.push([`custom-d${dim}-l${layers}-f${ffn}-h${heads}-k${kvHeads}-v${vocab}${parts[6] ? "-tied" : ""}`, { dim, layers, ffn, heads, kvHeads, vocab, tied: parts[6] === "tied" }]);
  }
  return out;
}

function q4LayoutOf(v: string | undefined): Q4Layout | undefined {
  if (v !== undefined && !(Q4_LAYOUTS as readonly string[]).includes(v)) throw new Error(`--q4-layout: "${v}" is not one of ${Q4_LAYOUTS.join(", ")}`);
  return v as Q4Layout | undefined;
}

function activationsOf(v: string): "f32" | "int8" {
  if (v !== "f32" && v !== "int8") throw new Error(`--activations: "${v}" is not f32 or int8`);
  return v;
}

/** The GGUF file of a shape and format, written (to a temporary name, then renamed) when missing. */
function modelFile(name: string, s: Shape, format: DType): string {
  const file = join(a.dir!, `${name}-${format}-fast.gguf`);
  if (existsSync(file)) return file;
  mkdirSync(a.dir!, { recursive: true });
  const tmp = `${file}.partial`;
  execFileSync(process.execPath, [
    join(ROOT, "dist/bench/make-random-gguf.js"), "--fast", "--out", tmp, "--type", format,
    "--dim", String(s.dim), "--layers", String(s.layers), "--hidden", String(s.ffn), "--heads", String(s.heads),
    "--kv-heads", String(s.kvHeads), "--vocab", String(s.vocab), "--ctx", "131072", ...(s.tied ? ["--tied"] : []),
  ], { stdio: ["ignore", "inherit", "inherit"] });
  renameSync(tmp, file);
  return file;
}

const ms = () => performance.now();

/** Frugal on WebGPU: load, warm up, then decode and prefill runs (see the file comment). */
/** Dispatches one pipelined decode step records (forward + pickAhead) at position `pos`, with the fused ops on or off. */
function stepDispatches(backend: WebGpuBackend, net: LlamaModel, cache: KVCache, pos: number, fuse: boolean): number {
  const was = backend.fuse;
  backend.fuse = fuse;
  const d0 = backend.recorder.dispatches;
  backend.pickAhead(net.forward(Int32Array.of(1), pos, cache));
  backend.fuse = was;
  return backend.recorder.dispatches - d0;
}

async function frugal(file: string, format: DType, contextSize: number, o: Settings): Promise<Omit<FrugalResult, "kvBytes" | "rooflineTokS" | "ofRoofline">> {
  const backend = await createWebGpuBackend({ activations: activationsOf(a.activations!), q4Layout: q4LayoutOf(a["q4-layout"]) });
  if (a["quant-once-groups"] !== undefined) backend.quantOnceGroups = Number(a["quant-once-groups"]);
  if (a["quant-whole-x"] !== undefined) backend.quantWholeX = a["quant-whole-x"] !== "0";
  if (a["int8-gemm"] !== undefined) backend.int8Gemm = a["int8-gemm"] !== "0";
  if (a["prefill-attention"] !== undefined) backend.prefillAttention = a["prefill-attention"] !== "0";
  if (a["qkv-rope"] !== undefined) backend.fuseQkvRope = a["qkv-rope"] !== "0";
  const t0 = ms();
  const model = await loadModel(file, { backend, contextLength: contextSize }).catch((e: Error) => {
    backend.dispose();
    throw e;
  });
  const loadS = (ms() - t0) / 1000;
  try {
    const net = model.network;
    const ids = promptIds(model.config.vocabSize, o.prompt);
    const cache = net.newCache(contextSize);
    const step = (token: number, pos: number) => backend.argmax(net.forward(Int32Array.of(token), pos, cache));
    // what generate() does: step t + 1 is recorded and submitted before step t's token id is read back
    // returns prefill t/s, decode t/s and the host's ms per step spent recording and submitting (forward + pickAhead)
    const decodeRun = async (steps: number): Promise<[number, number, number]> => {
      const t0 = ms();
      let pending = backend.pickAhead(model.prefill(ids, cache));
      await pending.id;
      const t1 = ms();
      let pos = ids.length;
      let t2 = t1;
      let recording = 0;
      for (let i = 0; i < o.warmup + steps; i++) {
        if (i === o.warmup) t2 = ms();
        const r0 = ms();
        const next = backend.pickAhead(net.forward(pending, pos++, cache));
        if (i >= o.warmup) recording += ms() - r0;
        await pending.id;
        pending = next;
      }
      await pending.id;
      return [(ids.length / (t1 - t0)) * 1000, (steps / (ms() - t2)) * 1000, recording / steps];
    };
    // one submission and one wait per token, as before pipelining
    const syncRun = async (steps: number): Promise<number> => {
      let token = await backend.argmax(model.prefill(ids, cache));
      let pos = ids.length;
      for (let i = 0; i < o.warmup; i++) token = await step(token, pos++);
      const t2 = ms();
      for (let i = 0; i < steps; i++) token = await step(token, pos++);
      return (steps / (ms() - t2)) * 1000;
    };
    const blockFormat = format === "q4_0" || format === "q8_0";
    const otherX = backend.activations === "f32" ? "int8" : "f32";
    const otherXRun = async (steps: number): Promise<number> => {
      const was = backend.activations;
      backend.activations = otherX;
      try {
        return (await decodeRun(steps))[1];
      } finally {
        backend.activations = was;
      }
    };
    const unfusedRun = async (steps: number): Promise<number> => {
      backend.fuse = false;
      try {
        return (await decodeRun(steps))[1];
      } finally {
        backend.fuse = true;
      }
    };
    await decodeRun(Math.min(8, o.decode)); // warm-up: pipelines compile, buffers settle
    await unfusedRun(Math.min(8, o.decode));
    if (blockFormat) await otherXRun(Math.min(8, o.decode));
    const dispatches = { fused: stepDispatches(backend, net, cache, ids.length, true), unfused: stepDispatches(backend, net, cache, ids.length, false) };
    await backend.finish();
    const prefill: number[] = [];
    const decode: number[] = [];
    const decodeSync: number[] = [];
    const decodeUnfused: number[] = [];
    const decodeOtherX: number[] = [];
    const recordMs: number[] = [];
    for (let r = 0; r < o.repeats; r++) {
      const [p, d, rec] = await decodeRun(o.decode);
      prefill.push(p);
      decode.push(d);
      recordMs.push(rec);
      decodeUnfused.push(await unfusedRun(o.decode));
      if (blockFormat) decodeOtherX.push(await otherXRun(o.decode));
      decodeSync.push(await syncRun(o.decode));
    }
    let prefillLong: Spread | undefined;
    if (o.longPrompt) {
      const longIds = promptIds(model.config.vocabSize, o.longPrompt);
      const runs: number[] = [];
      for (let r = 0; r < o.repeats; r++) {
        const t0 = ms();
        await backend.argmax(model.prefill(longIds, cache));
        runs.push((longIds.length / (ms() - t0)) * 1000);
      }
      prefillLong = spread(runs);
    }
    return {
      loadS, prefill: spread(prefill), decode: spread(decode), decodeSync: spread(decodeSync), decodeUnfused: spread(decodeUnfused), ...(blockFormat ? { decodeOtherX: spread(decodeOtherX) } : {}), dispatches,
      recordMs: spread(recordMs), ...(prefillLong ? { prefillLong } : {}),
    };
  } finally {
    model.dispose();
  }
}

/** GPU time per kernel of one decode step at depth prompt+1, on a profiling backend (every dispatch timed). */
async function frugalProfile(file: string, contextSize: number, o: Settings): Promise<{ kernels: KernelTime[]; totalMs: number }> {
  const backend = await createWebGpuBackend({ profile: true, activations: activationsOf(a.activations!), q4Layout: q4LayoutOf(a["q4-layout"]), dawnFlags: a["dawn-flags"] ? a["dawn-flags"].split(",") : [] });
  const model = await loadModel(file, { backend, contextLength: contextSize }).catch((e: Error) => {
    backend.dispose();
    throw e;
  });
  try {
    const net = model.network;
    const ids = promptIds(model.config.vocabSize, o.prompt);
    const cache = net.newCache(contextSize);
    let token = await backend.argmax(model.prefill(ids, cache));
    token = await backend.argmax(net.forward(Int32Array.of(token), ids.length, cache)); // compiles the decode kernels
    backend.resetProfile();
    await backend.argmax(net.forward(Int32Array.of(token), ids.length + 1, cache));
    const kernels = await backend.profile();
    return { kernels, totalMs: kernels.reduce((s, k) => s + k.totalMs, 0) };
  } finally {
    model.dispose();
  }
}

/** Runs bench/llama-cpp-anchor.js in a child process and parses its JSON line. */
function llamaCpp(file: string, vocab: number, contextSize: number, o: Settings): Promise<AnchorResult> {
  const args = [
    join(ROOT, "dist/bench/llama-cpp-anchor.js"), "--model", file, "--vocab", String(vocab), "--ctx", String(contextSize),
    "--prompt", String(o.prompt), "--long-prompt", String(o.longPrompt), "--decode", String(o.decode),
    "--warmup", String(o.warmup), "--repeats", String(o.repeats), "--gpu", o.anchorGpu, ...(o.flashAttention ? ["--flash-attn"] : []),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    // shown as it comes, and its tail kept for the report
    child.stderr.on("data", (d: Buffer) => {
      process.stderr.write(d);
      stderr = (stderr + d.toString()).slice(-2000);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), o.anchorTimeoutS * 1000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        const how = signal ? `signal ${signal}${signal === "SIGKILL" ? ` (timeout ${o.anchorTimeoutS} s?)` : ""}` : `exit code ${code}`;
        const tail = stderr.trim().split("\n").slice(-3).join(" / ");
        return reject(new Error(`the anchor process ended with ${how}${tail ? `: ${tail}` : ""}`));
      }
      const last = stdout.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(last) as AnchorResult);
      } catch {
        reject(new Error(`the anchor printed no JSON result: ${last.slice(0, 200)}`));
      }
    });
  });
}

interface Settings {
  prompt: number;
  longPrompt: number;
  decode: number;
  warmup: number;
  repeats: number;
  flashAttention: boolean;
  anchorTimeoutS: number;
  /** node-llama-cpp build: vulkan (default), cuda, or "false" for its CPU build (local checks). */
  anchorGpu: string;
  /** Frugal's main activation path for q8_0/q4_0 (absent in runs before it was an option: f32). */
  activations?: "f32" | "int8";
}

// ---- rendering (also for --from-json) ----

const f1 = (x?: number) => (x === undefined || !Number.isFinite(x) ? "-" : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const pct = (x?: number) => (x === undefined || !Number.isFinite(x) ? "-" : `${(x * 100).toFixed(0)}%`);
const ok = <T extends object>(r: T | { error: string } | undefined): T | undefined => (r && !("error" in r) ? (r as T) : undefined);

/** The summary table's header and rows. */
function tableRows(rep: Report): { headers: string[]; rows: string[][] } {
  const P = rep.settings.prompt;
  const L = rep.settings.longPrompt;
  const headers = [
    "model", "format", "weights MiB", "Frugal decode t/s (min-max)", "unfused t/s", `${rep.settings.activations === "int8" ? "f32" : "int8"} x t/s`, "dispatches/step fused / unfused", "of roofline", "llama.cpp decode t/s", "of roofline",
    "decode ratio", `prefill ${P} Frugal / llama.cpp`, ...(L ? [`prefill ${L} Frugal / llama.cpp`] : []),
  ];
  const rows = rep.results.map((r) => {
    const f = ok<FrugalResult>(r.frugal);
    const l = ok<AnchorResult & { ofRoofline: number }>(r.llamaCpp);
    const ratio = f && l ? (f.decode.median / l.decode.median).toFixed(2) : "-";
    const lcell = (s?: Spread) => (l ? f1(s?.median) : r.llamaCpp && "error" in r.llamaCpp ? "failed" : "-");
    return [
      r.shape, r.format, f1(r.weightBytes / 2 ** 20),
      f ? `${f1(f.decode.median)} (${f1(f.decode.min)}-${f1(f.decode.max)})` : "failed", f1(f?.decodeUnfused?.median), f1(f?.decodeOtherX?.median),
      f?.dispatches ? `${f.dispatches.fused} / ${f.dispatches.unfused}` : "-", pct(f?.ofRoofline),
      l ? `${f1(l.decode.median)} (${f1(l.decode.min)}-${f1(l.decode.max)})` : lcell(), pct(l?.ofRoofline),
      ratio, `${f1(f?.prefill.median)} / ${lcell(l?.prefill)}`,
      ...(L ? [`${f1(f?.prefillLong?.median)} / ${lcell(l?.prefillLong)}`] : []),
    ];
  });
  return { headers, rows };
}

function printTable(rep: Report): void {
  const { headers, rows } = tableRows(rep);
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const s = rep.settings;
  const anchor = s.anchorGpu ? `; llama.cpp ${anchorBuild(rep)}, flash attention ${s.flashAttention ? "on" : "off"}` : "";
  console.log(`\n${rep.device}; copy ${f1(rep.copy?.gbs)} GB/s (read + write); prompt ${s.prompt}, decode ${s.decode} after ${s.warmup} warm-up steps, median of ${s.repeats}${anchor}`);
  console.log(line(headers));
  for (const r of rows) console.log(line(r));
}

function markdown(rep: Report): string {
  const { headers, rows } = tableRows(rep);
  const s = rep.settings;
  return (
    `Batch-1 decode on ${rep.device}: copy bandwidth ${f1(rep.copy?.gbs)} GB/s (read + write). Decode at KV depth ${s.prompt + s.warmup}-${s.prompt + s.warmup + s.decode} ` +
    `(${s.decode} timed greedy steps after ${s.warmup} warm-up steps); prefill tokens/s of the whole prompt (llama.cpp: all but the last token, which starts decoding); medians of ${s.repeats} runs. ` +
    `"Of roofline": (weight bytes + KV bytes read per token) / copy bandwidth over the measured time per token (KV in f32 for Frugal, f16 for llama.cpp). ` +
    (s.anchorGpu ? `llama.cpp: node-llama-cpp's ${anchorBuild(rep)} build, all layers on the GPU, flash attention ${s.flashAttention ? "on" : "off"}.` : "") +
    "\n\n" +
    markdownTable(headers, rows, headers.map((_, i) => i >= 2))
  );
}

/** The anchor's build as a reader would name it. */
function anchorBuild(rep: Report): string {
  const g = rep.settings.anchorGpu ?? "";
  return ({ vulkan: "Vulkan", cuda: "CUDA", false: "CPU" } as Record<string, string>)[g] ?? g;
}

function svg(rep: Report): string {
  const groups = rep.results.map((r) => `${r.shape} ${r.format}`);
  const f = rep.results.map((r) => ok<FrugalResult>(r.frugal));
  const l = rep.results.map((r) => ok<AnchorResult>(r.llamaCpp));
  const series = [{ name: "Frugal (WebGPU)", values: f.map((x) => x?.decode.median) }];
  if (l.some(Boolean)) series.push({ name: `llama.cpp (${anchorBuild(rep)})`, values: l.map((x) => x?.decode.median) });
  series.push({ name: "roofline (copy bandwidth)", values: f.map((x) => x?.rooflineTokS) });
  const st = rep.settings;
  return barChartSvg({
    title: `Batch-1 decode tokens/s at KV depth ~${st.prompt} (median of ${st.repeats})`,
    subtitle: `${rep.device}; copy ${f1(rep.copy?.gbs)} GB/s${st.anchorGpu ? `; llama.cpp flash attention ${st.flashAttention ? "on" : "off"}` : ""}`,
    yLabel: "tokens/s", groups, series,
  });
}

function writeOutputs(rep: Report): void {
  if (a.out) writeFileSync(a.out, JSON.stringify(rep) + "\n");
  if (a.md) writeFileSync(a.md, markdown(rep));
  if (a.svg) writeFileSync(a.svg, svg(rep));
}

/**
 * Saved runs as one report (say one per shape, run as separate commands): their rows in order, the
 * first run's settings and copy bandwidth (each row's roofline was computed with its own run's).
 */
function mergeReports(files: string[]): Report {
  const reps = files.map((file) => {
    const rep = JSON.parse(readFileSync(file, "utf8").trim().split("\n").pop()!) as Report;
    if (rep.bench !== "gpu-decode") throw new Error(`${file}: not a gpu-decode result`);
    return rep;
  });
  const first = reps[0]!;
  const devices = [...new Set(reps.map((r) => r.device))];
  if (devices.length > 1) console.warn(`warning: these runs come from different devices: ${devices.join(" | ")}`);
  for (const r of reps) {
    if (JSON.stringify(r.settings) !== JSON.stringify(first.settings)) console.warn("warning: these runs used different settings; the report shows the first run's");
  }
  return { ...first, device: devices.join(" | "), results: reps.flatMap((r) => r.results), complete: reps.every((r) => r.complete) };
}

// ---- main ----

async function main(): Promise<void> {
  if (a["from-json"]) {
    const rep = mergeReports(a["from-json"].split(","));
    printTable(rep);
    writeOutputs(rep);
    return;
  }
  const formats = a.formats!.split(",");
  for (const f of formats) if (!isDType(f) || f === "bf16") throw new Error(`--formats: ${f} is not one of f32, f16, q8_0, q4_0`);
  const o: Settings = {
    prompt: int("prompt", 2), longPrompt: int("long-prompt", 0), decode: int("decode"), warmup: int("warmup", 0),
    repeats: int("repeats"), flashAttention: a["flash-attn"]!, anchorTimeoutS: int("anchor-timeout"), anchorGpu: a["anchor-gpu"]!,
  };
  const shapes = chosenShapes();
  const contextSize = Math.ceil((Math.max(o.prompt + o.warmup + o.decode, o.longPrompt) + 1) / 256) * 256;

  // the yardstick: a streaming copy, timed with timestamps when the adapter has them
  let probe: WebGpuBackend;
  try {
    probe = await createWebGpuBackend({ profile: true });
  } catch {
    probe = await createWebGpuBackend();
  }
  const device = probe.description;
  const copy = await copyBandwidth(probe, int("copy-mib") << 20, 50);
  probe.dispose();
  console.log(`${device}: copy ${(copy.bytes / 2 ** 20).toFixed(0)} MiB in ${(copy.ms * 1e3).toFixed(1)} us (${copy.timed}), ${copy.gbs.toPrecision(4)} GB/s read + write`);

  const settings = {
    prompt: o.prompt, longPrompt: o.longPrompt, decode: o.decode, warmup: o.warmup, repeats: o.repeats, flashAttention: o.flashAttention,
    activations: activationsOf(a.activations!),
    ...(a["q4-layout"] ? { q4Layout: q4LayoutOf(a["q4-layout"]) } : {}),
    ...(a["skip-anchor"] ? {} : { anchorGpu: o.anchorGpu }),
  };
  const rep: Report = { bench: "gpu-decode", device, copy, settings, results: [], complete: false };
  for (const [name, shape] of shapes) {
    for (const format of formats as DType[]) {
      const t0 = ms();
      const file = modelFile(name, shape, format);
      console.log(`\n${name} ${format}: ${file} (${(statSync(file).size / 2 ** 30).toFixed(2)} GiB, ready in ${((ms() - t0) / 1000).toFixed(1)} s)`);
      const config = randomLlamaConfig({ ...shape, hidden: shape.ffn, ctx: 131072 });
      // step i attends positions 0..pos_i; the mean over the timed steps
      const kvDepth = o.prompt + o.warmup + (o.decode + 1) / 2;
      const row: Row = { shape: name, format, config: shape, fileMiB: statSync(file).size / 2 ** 20, contextSize, weightBytes: decodeWeightBytes(config, format), kvDepth };
      rep.results.push(row);
      try {
        const f = await frugal(file, format, contextSize, o);
        const kvBytes = kvReadBytes(config, row.kvDepth, 4);
        const rooflineTokS = rooflineTokensPerSecond(row.weightBytes + kvBytes, copy.gbs);
        row.frugal = { ...f, kvBytes, rooflineTokS, ofRoofline: f.decode.median / rooflineTokS };
        console.log(
          `  Frugal: load ${f.loadS.toFixed(1)} s; decode ${f1(f.decode.median)} t/s (${f1(f.decode.min)}-${f1(f.decode.max)}; one wait per token: ${f1(f.decodeSync?.median)}; unfused: ${f1(f.decodeUnfused?.median)}${f.decodeOtherX ? `; ${a.activations === "int8" ? "f32" : "int8"} activations: ${f1(f.decodeOtherX.median)}` : ""}), ` +
          `${f.dispatches?.fused} dispatches a step (unfused ${f.dispatches?.unfused}), host records a step in ${f.recordMs?.median.toFixed(3)} ms of ${(1000 / f.decode.median).toFixed(3)} ms, ${pct(row.frugal.ofRoofline)} of roofline ${f1(rooflineTokS)}; ` +
          `prefill ${o.prompt}: ${f1(f.prefill.median)} t/s${f.prefillLong ? `, ${o.longPrompt}: ${f1(f.prefillLong.median)} t/s` : ""}`,
        );
        if (a.profile) {
          const p = await frugalProfile(file, contextSize, o);
          row.frugal.profile = p;
          console.log(`  Frugal one decode step, GPU time per kernel (sum ${p.totalMs.toFixed(3)} ms; measured ${(1000 / f.decode.median).toFixed(3)} ms per token):`);
          for (const k of p.kernels) console.log(`    ${k.kernel.padEnd(32)} ${String(k.calls).padStart(5)} calls ${k.totalMs.toFixed(3).padStart(9)} ms ${pct(k.totalMs / p.totalMs).padStart(5)}`);
        }
      } catch (e) {
        row.frugal = { error: (e as Error).message };
        console.log(`  Frugal failed: ${(e as Error).stack ?? e}`);
      }
      if (!a["skip-anchor"]) {
        try {
          const l = await llamaCpp(file, shape.vocab, contextSize, o);
          const kvBytes = kvReadBytes(config, row.kvDepth, 2);
          const rooflineTokS = rooflineTokensPerSecond(row.weightBytes + kvBytes, copy.gbs);
          row.llamaCpp = { ...l, kvBytes, rooflineTokS, ofRoofline: l.decode.median / rooflineTokS };
          console.log(
            `  llama.cpp (${l.gpu === "false" ? "CPU" : l.gpu}${l.devices.length ? `: ${l.devices.join(", ")}` : ""}; ${l.gpuLayers} layers on the GPU, context ${l.contextSize}, load ${l.loadS.toFixed(1)} s): decode ${f1(l.decode.median)} t/s (${f1(l.decode.min)}-${f1(l.decode.max)}), ` +
            `${pct(row.llamaCpp.ofRoofline)} of roofline; prefill ${o.prompt - 1}: ${f1(l.prefill.median)} t/s${l.prefillLong ? `, ${o.longPrompt}: ${f1(l.prefillLong.median)} t/s` : ""}`,
          );
        } catch (e) {
          row.llamaCpp = { error: (e as Error).message };
          console.log(`  llama.cpp failed: ${(e as Error).message}`);
        }
      }
      writeOutputs(rep);
    }
  }
  rep.complete = true;
  printTable(rep);
  writeOutputs(rep);
  console.log(JSON.stringify(rep));
}

main().catch((e: Error) => {
  console.error(e.stack ?? e.message);
  process.exit(1);
});
