/**
 * End-to-end CPU decode speed: a model's greedy decode through the reference matmul engine and the
 * WebAssembly engine (threads, activation paths), tokens/s over the same token sequence. Also prefill speed.
 *
 *   node dist/bench/cpu-engines.js [--model FILE] [--tokens 64] [--prompt 32] [--threads 1,2]
 *     [--activations f32,int8] [--no-reference] [--context 512]
 *
 * The default model is stories260K (llama2.c). Any source loadModel reads works (e.g. a random GGUF from
 * bench/make-random-gguf.ts). Prints one line per engine, then one JSON line.
 */
import { parseArgs } from "node:util";
import { CpuBackend, createCpuBackend } from "../src/backend/cpu/cpu-backend.js";
import type { CpuTensor } from "../src/backend/cpu/cpu-backend.js";
import { DEFAULT_MODEL, readSource } from "../src/load.js";
import { LlamaModel } from "../src/model/llama.js";
import type { ActivationPath } from "../src/backend/cpu/wasm-matmul.js";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: DEFAULT_MODEL },
    tokens: { type: "string", default: "64" },
    prompt: { type: "string", default: "32" },
    threads: { type: "string", default: "1,2" },
    activations: { type: "string", default: "f32,int8" },
    "no-reference": { type: "boolean", default: false },
    context: { type: "string", default: "512" },
  },
});
const decodeTokens = Number(values.tokens);
const promptTokens = Number(values.prompt);
const context = Number(values.context);

interface Result { engine: string; threads: number; activations: string; prefillTps: number; decodeTps: number; msPerToken: number; tokens: number[] }

async function measure(label: string, threads: number, activations: string, backend: CpuBackend): Promise<Result> {
  const loaded = await readSource(values.model!);
  const net = LlamaModel.create(loaded.config, loaded.tensors, backend, loaded.source, Math.min(context, loaded.config.maxPositions));
  loaded.tensors.clear();
  const cache = net.newCache();
  const vocab = loaded.config.vocabSize;
  // a fixed prompt of ordinary ids, so every engine sees the same tokens
  const prompt = Int32Array.from({ length: promptTokens }, (_, i) => 3 + ((i * 7919) % (vocab - 3)));
  const argmax = (l: Float32Array): number => {
    let best = 0;
    for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
    return best;
  };
  // warm-up: one forward to compile and tier up the kernels
  net.forward(prompt.subarray(0, 1), 0, cache);
  const t0 = performance.now();
  const pre = net.forward(prompt, 0, cache) as CpuTensor;
  let id = argmax(await backend.read(pre));
  const t1 = performance.now();
  const tokens: number[] = [];
  for (let i = 0; i < decodeTokens; i++) {
    tokens.push(id);
    const out = net.forward(Int32Array.of(id), promptTokens + i, cache);
    id = argmax(await backend.read(out));
  }
  const t2 = performance.now();
  backend.dispose();
  const r = {
    engine: label, threads, activations,
    prefillTps: promptTokens / ((t1 - t0) / 1000),
    decodeTps: decodeTokens / ((t2 - t1) / 1000),
    msPerToken: (t2 - t1) / decodeTokens,
    tokens,
  };
  console.log(`${label.padEnd(16)} prefill ${r.prefillTps.toFixed(1).padStart(8)} tok/s   decode ${r.decodeTps.toFixed(2).padStart(8)} tok/s (${r.msPerToken.toFixed(2)} ms/token)`);
  return r;
}

console.log(`${values.model}: prompt ${promptTokens} tokens, decode ${decodeTokens}`);
const results: Result[] = [];
if (!values["no-reference"]) results.push(await measure("reference", 1, "f32", new CpuBackend()));
for (const t of values.threads!.split(",").map(Number)) {
  for (const a of values.activations!.split(",") as ActivationPath[]) {
    results.push(await measure(`wasm ${t}t ${a}`, t, a, await createCpuBackend({ threads: t, activations: a })));
  }
}
const same = results.every((r) => r.tokens.join() === results[0]!.tokens.join());
console.log(`greedy tokens identical across engines: ${same}`);
console.log(JSON.stringify({ bench: "cpu-engines", model: values.model, promptTokens, decodeTokens, same, results: results.map(({ tokens: _t, ...r }) => r) }));
