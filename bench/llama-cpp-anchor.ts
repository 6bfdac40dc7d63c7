/**
 * llama.cpp through node-llama-cpp (installed on demand in bench/: `npm --prefix bench ci`) on one GGUF
 * file, measured as bench/gpu-decode.ts measures Frugal: prefill tokens/s at two prompt lengths, and
 * greedy decode tokens/s after a prompt, warm-up steps excluded, as the median of repeats. Runs as its
 * own process so that a crash in the native addon or the GPU driver cannot take the caller down, and
 * prints one JSON line (AnchorResult).
 *
 *   node dist/bench/llama-cpp-anchor.js --model FILE --vocab V --ctx C [--gpu vulkan|cuda|false]
 *        [--prompt 512] [--long-prompt 4096] [--decode 64] [--warmup 4] [--repeats 3] [--flash-attn]
 */
import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";

/** Median, min and max of repeated measurements. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** The spread of `xs` (at least one value). */
export function spread(xs: readonly number[]): Spread {
  if (xs.length === 0) throw new Error("no measurements");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, min: s[0]!, max: s[s.length - 1]! };
}

/** The prompt both engines see: BOS, then ids spread over the vocabulary past the special tokens. */
export function promptIds(vocab: number, length: number): number[] {
  return [1, ...Array.from({ length: length - 1 }, (_, i) => 3 + ((i * 7919) % (vocab - 3)))];
}

export interface AnchorResult {
  engine: "llama.cpp";
  gpu: string;
  devices: string[];
  gpuLayers: number;
  contextSize: number;
  flashAttention: boolean;
  loadS: number;
  /** Tokens/s over the first prompt-1 tokens (the last one starts decoding). */
  prefill: Spread;
  prefillLong?: Spread;
  decode: Spread;
}

interface AnchorSequence {
  evaluateWithoutGeneratingNewTokens(t: number[]): Promise<void>;
  evaluate(t: number[], o: object): AsyncGenerator<number>;
  dispose(): void;
}
// typed loosely on purpose: the anchor is installed on demand, so the main build must not need its types
interface AnchorLlama {
  readonly gpu: string | false;
  getGpuDeviceNames(): Promise<string[]>;
  loadModel(o: object): Promise<{
    readonly gpuLayers: number;
    createContext(o: object): Promise<{ readonly contextSize: number; getSequence(): AnchorSequence; dispose(): Promise<void> }>;
    dispose(): Promise<void>;
  }>;
  dispose(): Promise<void>;
}

export interface AnchorOptions {
  model: string;
  vocab: number;
  contextSize: number;
  gpu: "vulkan" | "cuda" | false;
  prompt: number;
  longPrompt?: number;
  decode: number;
  warmup: number;
  repeats: number;
  flashAttention: boolean;
}

/** Measures llama.cpp on `o.model` (see the file comment). */
export async function measureLlamaCpp(o: AnchorOptions): Promise<AnchorResult> {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const entry = join(root, "bench/node_modules/node-llama-cpp/dist/index.js");
  if (!existsSync(entry)) throw new Error("node-llama-cpp is not installed: run `npm --prefix bench ci` first");
  const { getLlama } = (await import(pathToFileURL(entry).href)) as { getLlama: (o: object) => Promise<AnchorLlama> };
  const llama = await getLlama({ gpu: o.gpu, build: "never", skipDownload: true, logLevel: "error", progressLogs: false });
  if (o.gpu && llama.gpu !== o.gpu) throw new Error(`node-llama-cpp loaded the ${llama.gpu || "CPU"} build, not ${o.gpu}`);
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: o.model, gpuLayers: o.gpu ? "max" : 0 });
  const context = await model.createContext({ contextSize: o.contextSize, batchSize: 512, sequences: 1, flashAttention: o.flashAttention });
  const loadS = (performance.now() - t0) / 1000;
  try {
    const devices = await llama.getGpuDeviceNames().catch(() => []);
    // a build that finds no usable device runs on the CPU: that must not pass for a GPU figure
    if (o.gpu && (devices.length === 0 || model.gpuLayers === 0)) {
      throw new Error(`the ${o.gpu} build found no usable GPU (devices: ${devices.join(", ") || "none"}; ${model.gpuLayers} layers offloaded)`);
    }
    const ids = promptIds(o.vocab, o.prompt);
    const longIds = o.longPrompt ? promptIds(o.vocab, o.longPrompt) : undefined;
    /** One prefill of ids[0..-1) then warm-up and timed greedy steps: [prefill t/s, decode t/s]. */
    const decodeRun = async (): Promise<[number, number]> => {
      const seq = context.getSequence();
      try {
        const t0 = performance.now();
        await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, -1));
        const t1 = performance.now();
        let n = 0;
        let tStart = 0;
        // the first token ends the prompt; then `warmup` untimed steps, then `decode` timed ones
        for await (const _ of seq.evaluate([ids[ids.length - 1]!], { temperature: 0 })) {
          n++;
          if (n === 1 + o.warmup) tStart = performance.now();
          if (n === 1 + o.warmup + o.decode) break;
        }
        const t2 = performance.now();
        return [((ids.length - 1) / (t1 - t0)) * 1000, (o.decode / (t2 - tStart)) * 1000];
      } finally {
        seq.dispose();
      }
    };
    const prefillRun = async (tokens: number[]): Promise<number> => {
      const seq = context.getSequence();
      try {
        const t0 = performance.now();
        await seq.evaluateWithoutGeneratingNewTokens(tokens);
        return (tokens.length / (performance.now() - t0)) * 1000;
      } finally {
        seq.dispose();
      }
    };
    await decodeRun(); // warm-up: shaders, allocations
    const prefill: number[] = [];
    const decode: number[] = [];
    for (let r = 0; r < o.repeats; r++) {
      const [p, d] = await decodeRun();
      prefill.push(p);
      decode.push(d);
    }
    const long: number[] = [];
    if (longIds) for (let r = 0; r < o.repeats; r++) long.push(await prefillRun(longIds));
    return {
      engine: "llama.cpp",
      gpu: String(llama.gpu),
      devices,
      gpuLayers: model.gpuLayers,
      contextSize: context.contextSize,
      flashAttention: o.flashAttention,
      loadS,
      prefill: spread(prefill),
      ...(longIds ? { prefillLong: spread(long) } : {}),
      decode: spread(decode),
    };
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      model: { type: "string" }, vocab: { type: "string" }, ctx: { type: "string" },
      gpu: { type: "string", default: "vulkan" },
      prompt: { type: "string", default: "512" }, "long-prompt": { type: "string", default: "4096" },
      decode: { type: "string", default: "64" }, warmup: { type: "string", default: "4" },
      repeats: { type: "string", default: "3" }, "flash-attn": { type: "boolean", default: false },
    },
  });
  const int = (name: string, v: string | undefined, min = 1): number => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < min) throw new Error(`--${name} must be an integer >= ${min}, got ${v ?? "nothing"}`);
    return x;
  };
  if (!a.model) throw new Error("--model FILE is required");
  const gpu = a.gpu === "false" ? false : a.gpu;
  if (gpu !== false && gpu !== "vulkan" && gpu !== "cuda") throw new Error(`--gpu must be vulkan, cuda or false, got ${a.gpu}`);
  const long = int("long-prompt", a["long-prompt"], 0);
  const r = await measureLlamaCpp({
    model: a.model, vocab: int("vocab", a.vocab, 4), contextSize: int("ctx", a.ctx), gpu,
    prompt: int("prompt", a.prompt, 2), longPrompt: long || undefined, decode: int("decode", a.decode),
    warmup: int("warmup", a.warmup, 0), repeats: int("repeats", a.repeats), flashAttention: a["flash-attn"]!,
  });
  console.log(JSON.stringify(r));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((e: Error) => {
    console.error(`llama.cpp anchor failed: ${e.stack ?? e.message}`);
    process.exit(1);
  });
}
