/**
 * Decode tokens/s of each KV method on WebGPU against dense, on a Llama-3.2-1B-shaped model with random
 * weights (bench/make-random-gguf.ts --fast) at a long context: each method runs in its own process
 * (timings of one method must not depend on what ran before it), and each process measures dense and
 * the method interleaved on the same model and GPU, so every ratio is against an anchor of the same run.
 *
 *   node dist/bench/gpu-kv.js [--format q4_0] [--context 4096] [--prompt 3584] [--decode 64] [--warmup 8]
 *        [--repeats 3] [--methods SPEC;SPEC...] [--dir bench/.models] [--out FILE.json]
 *   node dist/bench/gpu-kv.js --small        # a tiny shape and context, for a SwiftShader check
 *
 * Per method: prefill --prompt tokens into a dense cache and into the method's cache (then settleKv: xKV and
 * SVD read the prompt back once, factorize it on the host and upload the factors; that time is reported,
 * not timed as decode), then --repeats rounds of (--warmup + --decode greedy steps on dense, the same on
 * the method), pipelined as generate() runs them (backend.pickAhead); tokens/s of the timed steps, median
 * over rounds. Selection methods run at the spec's 8x (keep 0.125) and 50% (keep 0.5) settings; xKV/SVD at
 * 8x prompt compression by the spec's formula at the default shape (T = 3584, H_kv·d = 512: r_k + r_v =
 * 112 per layer for SVD, 199 per group of 2 for xKV-2; xKV-4's 2048-column groups make the host's f64 SVD
 * take minutes, so it is not a default row). KV bytes are the store's `bytes()` after the last step.
 * TokenButler reads a random-weight predictor for the shape (bench/random-predictor.ts, written next to
 * the model): its speed is the predictor's forward and scoring, whatever the weights.
 * Methods without a WebGPU path print why. Prints a table and one JSON line.
 */
import { parseArgs } from "node:util";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadModel } from "../src/load.js";
import { createWebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import { kvStoreFactory } from "../src/kv/spec.js";
import { isKvStore, settleKv } from "../src/kv/store.js";
import type { KVCache } from "../src/backend/backend.js";
import { markdownTable } from "../src/eval/plot.js";
import { promptIds, spread, type Spread } from "./llama-cpp-anchor.js";
import { writeRandomPredictor } from "./random-predictor.js";
import type { PredictorConfig } from "../src/kv/tokenbutler/predictor.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

const { values: a } = parseArgs({
  options: {
    small: { type: "boolean", default: false },
    format: { type: "string", default: "q4_0" },
    context: { type: "string" },
    prompt: { type: "string" },
    decode: { type: "string" },
    warmup: { type: "string", default: "8" },
    repeats: { type: "string", default: "3" },
    methods: { type: "string" },
    dir: { type: "string", default: join(ROOT, "bench/.models") },
    out: { type: "string" },
    child: { type: "string" },
    file: { type: "string" },
  },
});

interface Shape { dim: number; layers: number; ffn: number; heads: number; kvHeads: number; vocab: number; tied: boolean }
const SHAPE: Shape = a.small
  ? { dim: 256, layers: 4, ffn: 512, heads: 8, kvHeads: 2, vocab: 512, tied: true }
  : { dim: 2048, layers: 16, ffn: 8192, heads: 32, kvHeads: 8, vocab: 128256, tied: true }; // Llama 3.2 1B
const SHAPE_NAME = a.small ? "small-d256-l4" : "llama-3.2-1b";
/**
 * TokenButler's predictor for the shape, random weights (speed only): the spec's Llama-3.2-1B "1PC"
 * config (ρ 8, d′ 16, I 512; tokenbutler.md §2.2); the small shape takes ρ 4 so mini-attention heads stay 8 wide.
 */
const PREDICTOR: PredictorConfig = a.small
  ? { hidden: SHAPE.dim, layers: SHAPE.layers, heads: SHAPE.heads, reduce: 4, dPrime: 16, intDim: 128, ropeTheta: 500000 }
  : { hidden: SHAPE.dim, layers: SHAPE.layers, heads: SHAPE.heads, reduce: 8, dPrime: 16, intDim: 512, ropeTheta: 500000 };

function int(v: string | undefined, fallback: number, name: string): number {
  const x = Number(v ?? fallback);
  if (!Number.isInteger(x) || x < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return x;
}
const CONTEXT = int(a.context, a.small ? 512 : 4096, "context");
const PROMPT = int(a.prompt, a.small ? 384 : 3584, "prompt");
const DECODE = int(a.decode, a.small ? 8 : 64, "decode");
const WARMUP = int(a.warmup, 8, "warmup");
const REPEATS = int(a.repeats, 3, "repeats");
if (PROMPT + REPEATS * (WARMUP + DECODE) > CONTEXT) throw new Error(`--prompt ${PROMPT} + ${REPEATS} x (${WARMUP} + ${DECODE}) decode steps exceed --context ${CONTEXT}`);

/** "SPEC" or "SPEC@FORMAT" (a --kv-format). */
const METHODS = (a.methods ?? [
  "dense@int8",
  "streaming:keep=0.125", "streaming:keep=0.5",
  "oracle:keep=0.125", "oracle:keep=0.5",
  "h2o:keep=0.125", "h2o:keep=0.5",
  "snapkv:keep=0.125", "snapkv:keep=0.5",
  "quest:keep=0.125", "quest:keep=0.5",
  "tokenbutler:keep=0.125", "tokenbutler:keep=0.5",
  "svd:rankK=45,rankV=67",
  "xkv:group=2,rankK=80,rankV=119",
].join(";")).split(";").filter(Boolean);

interface Result {
  method: string; device?: string; dense?: Spread; tokS?: Spread; ratio?: Spread; dispatchesDense?: number; dispatches?: number; error?: string;
  /** Store bytes() and the dense cache's bytes at the end; xKV/SVD: prompt compression ms (readback + SVD + upload) and the SVD's share. */
  kvBytes?: number; denseKvBytes?: number; compressMs?: number; svdMs?: number;
}

/** Child: dense and one method, interleaved, on one model. */
async function child(method: string, file: string): Promise<Result> {
  const [spec, format = "f32"] = method.split("@") as [string, string?];
  const backend = await createWebGpuBackend();
  const model = await loadModel(file, { backend, contextLength: CONTEXT });
  try {
    const net = model.network;
    const ids = promptIds(model.config.vocabSize, PROMPT);
    const dense = net.newCache(CONTEXT);
    let store: KVCache;
    try {
      store = kvStoreFactory(spec)(net.kvContext(CONTEXT, format));
      await backend.argmax(model.prefill(ids, store));
      await settleKv(store);
    } catch (e) {
      return { method, device: backend.description, error: (e as Error).message.split("\n")[0]! };
    }
    await backend.argmax(model.prefill(ids, dense));
    const pos = new Map<KVCache, number>([[dense, PROMPT], [store, PROMPT]]);
    const token = new Map<KVCache, number>([[dense, 1], [store, 1]]);
    const dispatches = new Map<KVCache, number>();
    const run = async (cache: KVCache): Promise<number> => {
      let p = pos.get(cache)!;
      let pending = backend.pickAhead(net.forward(Int32Array.of(token.get(cache)!), p++, cache));
      let t0 = performance.now();
      for (let i = 1; i < WARMUP + DECODE; i++) {
        if (i === WARMUP) t0 = performance.now();
        const d0 = backend.recorder.dispatches;
        const next = backend.pickAhead(net.forward(pending, p++, cache));
        dispatches.set(cache, backend.recorder.dispatches - d0);
        await pending.id;
        pending = next;
      }
      token.set(cache, await pending.id);
      pos.set(cache, p);
      return (DECODE / (performance.now() - t0)) * 1000;
    };
    const d: number[] = [], m: number[] = [], r: number[] = [];
    for (let i = 0; i < REPEATS; i++) {
      d.push(await run(dense));
      m.push(await run(store));
      r.push(m[i]! / d[i]!);
    }
    const c = model.config;
    const compress = store as Partial<{ compressMs: number; svdMs: number }>;
    return {
      method, device: backend.description, dense: spread(d), tokS: spread(m), ratio: spread(r), dispatchesDense: dispatches.get(dense), dispatches: dispatches.get(store),
      kvBytes: isKvStore(store) ? store.bytes() : undefined, denseKvBytes: pos.get(dense)! * c.numLayers * 2 * c.numKvHeads * c.headDim * 4,
      compressMs: compress.compressMs, svdMs: compress.svdMs,
    };
  } finally {
    model.dispose();
  }
}

/** The random predictor `--kv tokenbutler` reads in the children (through FRUGAL_TOKENBUTLER). */
function predictorFile(): string {
  const file = join(a.dir!, `${SHAPE_NAME}-tokenbutler-random.safetensors`);
  if (!existsSync(file)) {
    mkdirSync(a.dir!, { recursive: true });
    writeRandomPredictor(`${file}.partial`, PREDICTOR);
    renameSync(`${file}.partial`, file);
  }
  return file;
}

function modelFile(): string {
  const file = join(a.dir!, `${SHAPE_NAME}-${a.format}-fast.gguf`);
  if (existsSync(file)) return file;
  mkdirSync(a.dir!, { recursive: true });
  const tmp = `${file}.partial`;
  const s = SHAPE;
  execFileSync(process.execPath, [
    join(ROOT, "dist/bench/make-random-gguf.js"), "--fast", "--out", tmp, "--type", a.format!,
    "--dim", String(s.dim), "--layers", String(s.layers), "--hidden", String(s.ffn), "--heads", String(s.heads),
    "--kv-heads", String(s.kvHeads), "--vocab", String(s.vocab), "--ctx", "131072", ...(s.tied ? ["--tied"] : []),
  ], { stdio: ["ignore", "inherit", "inherit"] });
  renameSync(tmp, file);
  return file;
}

if (a.child) {
  const r = await child(a.child, a.file!);
  console.log(`RESULT ${JSON.stringify(r)}`);
} else {
  const file = modelFile();
  const results: Result[] = [];
  const env = METHODS.some((m) => m.startsWith("tokenbutler")) ? { ...process.env, FRUGAL_TOKENBUTLER: predictorFile() } : process.env;
  const passOn = ["--context", String(CONTEXT), "--prompt", String(PROMPT), "--decode", String(DECODE), "--warmup", String(WARMUP), "--repeats", String(REPEATS), ...(a.small ? ["--small"] : [])];
  for (const method of METHODS) {
    const t0 = performance.now();
    const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--child", method, "--file", file, ...passOn], { encoding: "utf8", maxBuffer: 1 << 26, env });
    const line = p.stdout.split("\n").find((l) => l.startsWith("RESULT "));
    const r: Result = line ? JSON.parse(line.slice(7)) : { method, error: `child failed (status ${p.status}): ${p.stderr.trim().split("\n").slice(-3).join(" | ")}` };
    results.push(r);
    process.stderr.write(`${method}: ${r.error ? `not run: ${r.error}` : `${r.tokS!.median.toFixed(1)} tok/s vs dense ${r.dense!.median.toFixed(1)}`} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  }
  const device = results.find((r) => r.device)?.device ?? "unknown";
  const f = (s?: Spread, d = 1) => (s ? `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})` : "—");
  console.log(`\nWebGPU decode with KV methods: ${SHAPE_NAME} ${a.format} (random weights), context ${CONTEXT}, prompt ${PROMPT}, ${DECODE} timed steps x ${REPEATS} rounds interleaved with dense; ${device}\n`);
  console.log(markdownTable(
    ["method", "--kv-format", "tok/s", "dense tok/s (same process)", "vs dense", "dispatches/step (dense)", "KV MB (dense)", "prompt compression s (SVD)", "note"],
    results.map((r) => {
      const [spec, format = "f32"] = r.method.split("@") as [string, string?];
      const mb = (b: number) => (b / 2 ** 20).toFixed(1);
      const kv = r.kvBytes !== undefined && r.denseKvBytes !== undefined ? `${mb(r.kvBytes)} (${mb(r.denseKvBytes)})` : "—";
      const prep = r.compressMs !== undefined && r.compressMs > 0 ? `${(r.compressMs / 1000).toFixed(1)} (${(r.svdMs! / 1000).toFixed(1)})` : "—";
      return [spec, format, f(r.tokS), f(r.dense), r.ratio ? `${r.ratio.median.toFixed(3)}×` : "—", r.dispatches !== undefined ? `${r.dispatches} (${r.dispatchesDense})` : "—", kv, prep, r.error ? `not on WebGPU: ${r.error}` : ""];
    }),
  ));
  const report = { bench: "gpu-kv", device, shape: SHAPE_NAME, format: a.format, settings: { context: CONTEXT, prompt: PROMPT, decode: DECODE, warmup: WARMUP, repeats: REPEATS }, results };
  if (a.out) writeFileSync(a.out, JSON.stringify(report, null, 2));
  console.log(JSON.stringify(report));
}
