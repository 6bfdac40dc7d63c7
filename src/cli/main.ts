/**
 * The `frugal` command. Generated text goes to stdout and nothing else does; logs, progress and
 * statistics go to stderr, so output can be piped.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline/promises";
import { loadModel, readSource, DEFAULT_MODEL, type LoadOptions } from "../load.js";
import type { GenerateOptions } from "../model/model.js";
import type { ChatMessage } from "../generate/chat-template.js";
import { evaluatePerplexity } from "../eval/perplexity.js";
import { DEFAULT_LAMBADA, evaluateLambada, readLambada } from "../eval/lambada.js";
import { matrixMarkdown, readMatrixConfig, runMatrix } from "../eval/matrix.js";
import { describeModel } from "./info.js";
import { profiledBackend } from "./profile.js";
import { serve, SERVE_USAGE } from "../server/serve-command.js";
import { pruneCommand, PRUNE_USAGE, sparseCliOptions, sparseLoadOptions } from "../sparse/prune-command.js";
import { kvMethodsHelp } from "../kv/spec.js";
import { KV_FORMATS } from "../kv/format.js";
import { GPU_KV_FORMATS } from "../backend/webgpu/kernels/kv.js";
import { quantizeCommand, QUANTIZE_USAGE } from "./quantize.js";

const USAGE = `usage: frugal <command> [options]

commands:
  generate   continue a prompt            frugal generate [--model SRC] [--prompt TEXT] [--max-tokens N]
                                            [--temperature T] [--top-k K] [--top-p P] [--min-p P]
                                            [--repetition-penalty R] [--seed S] [--stop STR]...
                                            [--device cpu|webgpu] [--threads N] [--stats] [--profile]
                                            [--weights FORMAT]  (generate, chat, eval, serve: quantize the
                                            linear layers at load: int8 int4-asym fp4 nf4 razer nvfp4 nvfp4-razer)
  chat       interactive chat, streaming  frugal chat [--model SRC] [--system TEXT] [sampling options]
${SERVE_USAGE}
${QUANTIZE_USAGE}
  info       what a model is              frugal info SRC
  eval ppl   perplexity of a text file    frugal eval ppl --model SRC --data FILE [--ctx N] [--chunks K] [--json]
  eval lambada  last-word accuracy        frugal eval lambada [--model SRC] [--data FILE] [--limit N] [--device D] [--json]
${PRUNE_USAGE}
  eval matrix   one task, many options    frugal eval matrix --config FILE.json --out DIR
                                            (writes DIR/results.json, results.md, plot.svg; see src/eval/matrix.ts)

KV cache (generate, chat, eval, serve): --kv SPEC (default dense) and --kv-format F (default f32), one of
${KV_FORMATS.join(", ")} (on WebGPU: ${GPU_KV_FORMATS.join(", ")}),
or keys and values apart: k=F,v=F[,k0=F][,v0=F] (k0, v0: layer 0's keys and values; CPU only);
eval ppl --decode-from N scores tokens after the first N of each window one decode step at a time (selection
methods act on decode steps only; default ctx/8 when --kv is not dense). Methods:
${kvMethodsHelp().join("\n")}

SRC is a llama2.c .bin file, a .gguf file, a Hugging Face folder, a pruned folder, or a hub id (org/name).
Sparsity on any command: --sparsity F [--prune-method magnitude|wanda] [--calib FILE] prunes at load;
pruned weights run on the sparse kernels unless --dense-kernels.
Without --model the embedded default model (stories260K) is used.`;

const common = {
  model: { type: "string" },
  tokenizer: { type: "string" },
  device: { type: "string" },
  threads: { type: "string" },
  offline: { type: "boolean" },
  profile: { type: "boolean" },
  kv: { type: "string" },
  "kv-format": { type: "string" },
  weights: { type: "string" },
  help: { type: "boolean", short: "h" },
  ...sparseCliOptions,
} as const satisfies ParseArgsConfig["options"];

const sampling = {
  "max-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  "min-p": { type: "string" },
  "repetition-penalty": { type: "string" },
  seed: { type: "string" },
  stop: { type: "string", multiple: true },
  stats: { type: "boolean" },
} as const satisfies ParseArgsConfig["options"];

function number(name: string, v: string | undefined, integer = false): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new Error(`--${name} needs ${integer ? "an integer" : "a number"}, got "${v}"`);
  }
  return n;
}

function loadOptions(v: { device?: string; threads?: string; tokenizer?: string; offline?: boolean; kv?: string; "kv-format"?: string; weights?: string } & Parameters<typeof sparseLoadOptions>[0]): LoadOptions {
  if (v.device !== undefined && v.device !== "cpu" && v.device !== "webgpu") {
    throw new Error(`--device must be cpu or webgpu, got "${v.device}"`);
  }
  return {
    device: v.device as LoadOptions["device"],
    threads: number("threads", v.threads, true),
    tokenizer: v.tokenizer,
    offline: v.offline,
    kv: v.kv,
    kvFormat: v["kv-format"],
    sparse: sparseLoadOptions(v),
    weights: v.weights,
  };
}

function generateOptions(v: Record<string, unknown>, defaults: GenerateOptions): GenerateOptions {
  const s = v as Record<string, string | undefined>;
  const pick = <T>(x: T | undefined, d: T | undefined) => (x === undefined ? d : x);
  return {
    maxTokens: pick(number("max-tokens", s["max-tokens"], true), defaults.maxTokens),
    temperature: pick(number("temperature", s["temperature"]), defaults.temperature),
    topK: pick(number("top-k", s["top-k"], true), defaults.topK),
    topP: pick(number("top-p", s["top-p"]), defaults.topP),
    minP: number("min-p", s["min-p"]),
    repetitionPenalty: number("repetition-penalty", s["repetition-penalty"]),
    seed: number("seed", s["seed"], true),
    stop: v["stop"] as string[] | undefined,
  };
}

function printStats(stats: { promptTokens: number; generatedTokens: number; prefillMs: number; decodeMs: number } | undefined): void {
  if (!stats) return;
  const decodeRate = stats.generatedTokens > 1 ? ((stats.generatedTokens - 1) / stats.decodeMs) * 1000 : 0;
  process.stderr.write(
    `\n[prompt ${stats.promptTokens} tokens in ${stats.prefillMs.toFixed(1)} ms, ` +
      `generated ${stats.generatedTokens} tokens, decode ${decodeRate.toFixed(1)} tokens/s]\n`,
  );
}

async function generate(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { ...common, ...sampling, prompt: { type: "string" } }, strict: true });
  if (values.help) return usage();
  const load = loadOptions(values);
  const profiler = values.profile ? await profiledBackend(load) : undefined;
  const model = await loadModel(values.model ?? DEFAULT_MODEL, { ...load, backend: profiler?.backend });
  try {
    const options = generateOptions(values, {
      maxTokens: 256,
      temperature: model.source.generation?.temperature ?? 0.8,
      topK: model.source.generation?.topK,
      topP: model.source.generation?.topP ?? 0.95,
    });
    for await (const piece of model.generate(values.prompt ?? "", options)) process.stdout.write(piece.text);
    process.stdout.write("\n");
    if (values.stats) printStats(model.lastStats);
    if (profiler) process.stderr.write(`\nper-op time (${load.device ?? "cpu"}):\n${await profiler.report()}\n`);
  } finally {
    model.dispose();
  }
  return 0;
}

async function chat(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { ...common, ...sampling, system: { type: "string" } }, strict: true });
  if (values.help) return usage();
  const model = await loadModel(values.model ?? DEFAULT_MODEL, loadOptions(values));
  const options = generateOptions(values, { maxTokens: 512, temperature: model.source.generation?.temperature ?? 0.7, topP: 0.95 });
  const messages: ChatMessage[] = values.system ? [{ role: "system", content: values.system }] : [];
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: process.stdin.isTTY });
  process.stderr.write(`chatting with ${model.source.source} (empty line or Ctrl-D to quit)\n`);
  try {
    for (;;) {
      const line = await rl.question("> ").catch(() => undefined);
      if (line === undefined || line.trim() === "") break;
      messages.push({ role: "user", content: line });
      let reply = "";
      for await (const piece of model.chat(messages, options)) {
        process.stdout.write(piece.text);
        reply += piece.text;
      }
      process.stdout.write("\n");
      if (values.stats) printStats(model.lastStats);
      messages.push({ role: "assistant", content: reply });
    }
  } finally {
    rl.close();
    model.dispose();
  }
  return 0;
}

async function info(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: common, allowPositionals: true, strict: true });
  if (values.help) return usage();
  const source = positionals[0] ?? values.model ?? DEFAULT_MODEL;
  const loaded = await readSource(source, loadOptions(values));
  process.stdout.write(describeModel(loaded) + "\n");
  return 0;
}

async function evaluate(args: string[]): Promise<number> {
  const [task, ...rest] = args;
  if (task === "lambada") return evaluateLambadaCommand(rest);
  if (task === "matrix") return evaluateMatrixCommand(rest);
  if (task !== "ppl") throw new Error(`unknown eval task "${task ?? ""}"; available: ppl, lambada, matrix`);
  const { values } = parseArgs({
    args: rest,
    options: { ...common, data: { type: "string" }, ctx: { type: "string" }, chunks: { type: "string" }, "decode-from": { type: "string" }, json: { type: "boolean" } },
    strict: true,
  });
  if (values.help) return usage();
  if (!values.data) throw new Error("eval ppl needs --data FILE");
  const text = await readFile(values.data, "utf8");
  const model = await loadModel(values.model ?? DEFAULT_MODEL, loadOptions(values));
  try {
    const ctx = number("ctx", values.ctx, true);
    const selecting = values.kv !== undefined && values.kv.trim() !== "dense";
    const result = await evaluatePerplexity(model, text, {
      ctx,
      decodeFrom: number("decode-from", values["decode-from"], true) ?? (selecting ? Math.floor((ctx ?? Math.min(512, model.network.contextLength)) / 8) : undefined),
      chunks: number("chunks", values.chunks, true),
      onProgress: (done, total) => process.stderr.write(`\rwindow ${done}/${total}${done === total ? "\n" : ""}`),
    });
    if (values.json) process.stdout.write(JSON.stringify(result) + "\n");
    else process.stdout.write(`tokens ${result.tokens}  nll ${result.nll.toFixed(6)}  ppl ${result.ppl.toFixed(4)}\n`);
  } finally {
    model.dispose();
  }
  return 0;
}

async function evaluateLambadaCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { ...common, data: { type: "string" }, limit: { type: "string" }, json: { type: "boolean" } },
    strict: true,
  });
  if (values.help) return usage();
  const limit = number("limit", values.limit, true);
  if (limit !== undefined && limit < 1) throw new Error(`--limit needs a positive integer, got "${values.limit}"`);
  const examples = await readLambada(values.data ?? DEFAULT_LAMBADA);
  const model = await loadModel(values.model ?? DEFAULT_MODEL, loadOptions(values));
  try {
    const r = await evaluateLambada(model, examples, {
      limit,
      onProgress: (done, total, correct) =>
        process.stderr.write(`\rexample ${done}/${total}  accuracy ${((100 * correct) / done).toFixed(2)}%${done === total ? "\n" : ""}`),
    });
    if (values.json) process.stdout.write(JSON.stringify({ examples: r.examples, accuracy: r.accuracy, nll: r.nll, ppl: r.ppl }) + "\n");
    else {
      process.stdout.write(
        `examples ${r.examples}  correct ${r.correct}  accuracy ${(100 * r.accuracy).toFixed(2)}%  ` +
          `target nll ${r.nll.toFixed(4)} nats/word  ppl ${r.ppl.toFixed(2)}\n`,
      );
    }
  } finally {
    model.dispose();
  }
  return 0;
}

async function evaluateMatrixCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" } }, strict: true });
  if (values.help) return usage();
  if (!values.config) throw new Error("eval matrix needs --config FILE.json");
  if (!values.out) throw new Error("eval matrix needs --out DIR");
  const config = await readMatrixConfig(values.config);
  const results = await runMatrix(config, values.out, { onProgress: (text) => process.stderr.write(text) });
  process.stderr.write(`wrote ${values.out}/results.json, results.md, plot.svg\n`);
  process.stdout.write(matrixMarkdown(results));
  return results.rows.some((r) => r.error !== undefined) ? 1 : 0;
}

function usage(): number {
  process.stdout.write(USAGE + "\n");
  return 0;
}

/** Runs the command line `args` (without node and script); resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case "generate":
      return generate(rest);
    case "chat":
      return chat(rest);
    case "info":
      return info(rest);
    case "eval":
      return evaluate(rest);
    case "serve":
      return serve(rest);
    case "prune":
      return pruneCommand(rest);
    case "quantize":
      return quantizeCommand(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      return usage();
    default:
      process.stderr.write(`frugal: unknown command "${command}"\n${USAGE}\n`);
      return 2;
  }
}
