/**
 * CPU prefill and decode speed: Frugal against llama.cpp (node-llama-cpp, CPU build) on the same GGUF
 * files, same thread count, in one run. Random Llama-shaped weights (bench/make-random-gguf.ts) in F16,
 * Q8_0 and Q4_0. Greedy decoding, EOS ignored, fixed lengths.
 *
 *   npm --prefix bench install          # once: the llama.cpp anchor
 *   node dist/bench/cpu-decode.js [--dim 1024 --layers 12 --hidden 2816 --heads 16 --kv-heads 4 --vocab 32000]
 *        [--types f16,q8_0,q4_0] [--threads 2] [--prompt 128] [--decode 64] [--profile] [--svg FILE]
 *
 * Prints a table and ends with one JSON line holding the ratios (Frugal / llama.cpp).
 */
import { parseArgs } from "node:util";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { pathToFileURL, fileURLToPath } from "node:url";
import { loadModel } from "../src/load.js";
import { createCpuBackend } from "../src/backend/cpu/cpu-backend.js";
import { timeOps } from "../src/backend/op-timer.js";
import { argmax } from "../src/generate/sampler.js";
import { barChartSvg } from "../src/eval/plot.js";
import { writeFileSync } from "node:fs";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const { values: a } = parseArgs({
  options: {
    dim: { type: "string", default: "1024" },
    layers: { type: "string", default: "12" },
    hidden: { type: "string", default: "2816" },
    heads: { type: "string", default: "16" },
    "kv-heads": { type: "string", default: "4" },
    vocab: { type: "string", default: "32000" },
    types: { type: "string", default: "f16,q8_0,q4_0" },
    threads: { type: "string", default: "2" },
    prompt: { type: "string", default: "128" },
    decode: { type: "string", default: "64" },
    dir: { type: "string", default: join(ROOT, "bench/.models") },
    profile: { type: "boolean", default: false },
    "skip-anchor": { type: "boolean", default: false },
    svg: { type: "string" },
  },
});
const threads = Number(a.threads);
const promptLen = Number(a.prompt);
const decodeLen = Number(a.decode);

interface Speed {
  prefill: number; // tokens/s
  decode: number; // tokens/s
}

function modelFile(type: string): string {
  const name = `llama-d${a.dim}-l${a.layers}-h${a.hidden}-v${a.vocab}-${type}.gguf`;
  const file = join(a.dir!, name);
  if (!existsSync(file)) {
    mkdirSync(a.dir!, { recursive: true });
    process.stderr.write(`writing ${file}\n`);
    execFileSync(process.execPath, [
      join(ROOT, "dist/bench/make-random-gguf.js"), "--out", file, "--type", type, "--dim", a.dim!, "--layers", a.layers!,
      "--hidden", a.hidden!, "--heads", a.heads!, "--kv-heads", a["kv-heads"]!, "--vocab", a.vocab!, "--ctx", "2048",
    ], { stdio: ["ignore", "inherit", "inherit"] });
  }
  return file;
}

/** The same prompt for both engines: token ids drawn from a fixed range, BOS first. */
function promptIds(vocab: number): number[] {
  return [1, ...Array.from({ length: promptLen - 1 }, (_, i) => 300 + ((i * 7919) % (vocab - 400)))];
}

async function frugal(file: string): Promise<Speed & { profile?: string }> {
  const cpu = await createCpuBackend({ threads });
  const { backend, times } = timeOps(cpu);
  const model = await loadModel(file, { backend: a.profile ? backend : cpu, contextLength: 2048 });
  try {
    const ids = promptIds(model.config.vocabSize);
    const run = async () => {
      const cache = model.network.newCache(promptLen + decodeLen + 1);
      const t0 = performance.now();
      let logits = await model.backend.read(model.prefill(ids, cache));
      const t1 = performance.now();
      let token = argmax(logits);
      for (let i = 0; i < decodeLen; i++) {
        logits = await model.backend.read(model.network.forward(Int32Array.of(token), promptLen + i, cache));
        token = argmax(logits);
      }
      const t2 = performance.now();
      return { prefill: (promptLen / (t1 - t0)) * 1000, decode: (decodeLen / (t2 - t1)) * 1000 };
    };
    await run(); // warm-up: page in weights, start workers
    times.reset();
    const r = await run();
    return { ...r, profile: a.profile ? times.report() : undefined };
  } finally {
    model.dispose();
  }
}

async function llamaCpp(file: string): Promise<Speed> {
  const entry = join(ROOT, "bench/node_modules/node-llama-cpp/dist/index.js");
  if (!existsSync(entry)) throw new Error("node-llama-cpp is not installed: run `npm --prefix bench install` first");
  // typed loosely on purpose: the anchor is installed on demand, so the main build must not need its types
  const { getLlama } = (await import(pathToFileURL(entry).href)) as { getLlama: (o: object) => Promise<AnchorLlama> };
  const llama = await getLlama({ gpu: false, build: "never", maxThreads: threads, logLevel: "error" });
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: 1024, threads, batchSize: 512 });
  try {
    const ids = promptIds(Number(a.vocab));
    const run = async () => {
      const seq = context.getSequence();
      const t0 = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, -1));
      const t1 = performance.now();
      let n = 0;
      let tFirst = 0;
      for await (const _ of seq.evaluate([ids[ids.length - 1]!], { temperature: 0 })) {
        if (n === 0) tFirst = performance.now();
        if (++n > decodeLen) break;
      }
      const t2 = performance.now();
      seq.dispose();
      return { prefill: ((promptLen - 1) / (t1 - t0)) * 1000, decode: (decodeLen / (t2 - tFirst)) * 1000 };
    };
    await run();
    return await run();
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
}

interface AnchorLlama {
  loadModel(o: object): Promise<{
    createContext(o: object): Promise<{
      getSequence(): {
        evaluateWithoutGeneratingNewTokens(t: number[]): Promise<void>;
        evaluate(t: number[], o: object): AsyncIterable<number>;
        dispose(): void;
      };
      dispose(): Promise<void>;
    }>;
    dispose(): Promise<void>;
  }>;
  dispose(): Promise<void>;
}

const rows: Record<string, { frugal: Speed; llamaCpp?: Speed }> = {};
for (const type of a.types!.split(",")) {
  const file = modelFile(type);
  const f = await frugal(file);
  if (f.profile) process.stderr.write(`\nFrugal ${type} op profile (one prefill + decode run):\n${f.profile}\n`);
  const l = a["skip-anchor"] ? undefined : await llamaCpp(file);
  rows[type] = { frugal: { prefill: f.prefill, decode: f.decode }, llamaCpp: l };
}

const fmt = (x?: number) => (x === undefined ? "-" : x.toFixed(1).padStart(8));
console.log(`\nmodel: Llama dim ${a.dim}, ${a.layers} layers, ffn ${a.hidden}, ${a.heads}/${a["kv-heads"]} heads, vocab ${a.vocab}; threads ${threads}; prompt ${promptLen}, decode ${decodeLen}`);
console.log("type   | Frugal prefill | llama.cpp prefill | ratio | Frugal decode | llama.cpp decode | ratio");
const ratios: Record<string, { prefill?: number; decode?: number }> = {};
for (const [type, r] of Object.entries(rows)) {
  const rp = r.llamaCpp ? r.frugal.prefill / r.llamaCpp.prefill : undefined;
  const rd = r.llamaCpp ? r.frugal.decode / r.llamaCpp.decode : undefined;
  ratios[type] = { prefill: rp, decode: rd };
  console.log(`${type.padEnd(6)} | ${fmt(r.frugal.prefill)} t/s | ${fmt(r.llamaCpp?.prefill)} t/s | ${rp?.toFixed(2) ?? "-"} | ${fmt(r.frugal.decode)} t/s | ${fmt(r.llamaCpp?.decode)} t/s | ${rd?.toFixed(2) ?? "-"}`);
}
console.log(JSON.stringify({ bench: "cpu-decode", threads, prompt: promptLen, decode: decodeLen, results: rows, ratios }));

if (a.svg) {
  const types = Object.keys(rows);
  writeFileSync(a.svg, barChartSvg({
    title: "CPU decode tokens/s, Frugal vs llama.cpp",
    subtitle: `Llama dim ${a.dim}, ${a.layers} layers, vocab ${a.vocab}; ${threads} threads; prompt ${promptLen}, decode ${decodeLen}`,
    yLabel: "tokens/s",
    groups: types,
    series: [
      { name: "Frugal (WebAssembly SIMD)", values: types.map((t) => rows[t]!.frugal.decode) },
      { name: "llama.cpp (node-llama-cpp, native build)", values: types.map((t) => rows[t]!.llamaCpp?.decode) },
    ],
  }));
}
