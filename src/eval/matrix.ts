/**
 * The evaluation matrix: one model and one task, evaluated under several named sets of load options,
 * written as results.json, a Markdown table (results.md) and a bar chart (plot.svg).
 *
 * A config file (JSON):
 *
 *   {
 *     "model": "models/frugal-ar-small",
 *     "task": { "kind": "ppl", "data": "models/corpus-val.txt", "ctx": 512, "chunks": 8 },
 *     "options": { "device": "cpu" },
 *     "optionSets": [
 *       { "name": "1 thread", "options": { "threads": 1 } },
 *       { "name": "2 threads", "options": { "threads": 2 } }
 *     ]
 *   }
 *
 * `task` is { "kind": "ppl", "data", "ctx"?, "chunks"? } (as `frugal eval ppl`) or
 * { "kind": "lambada", "data"?, "limit"? } (as `frugal eval lambada`). Each set's options are the
 * top-level `options` overlaid with its own, and go to loadModel as they are: the fields the runner knows
 * (LoadOptions: device, threads, contextLength, tokenizer, offline, profile, kv, kvFormat) are checked, any other field
 * (a weight format, a KV strategy, ... that a later loadModel understands) is passed through unchecked and
 * marked as such in the outputs. Relative paths (model, data, tokenizer) are relative to the config file's
 * folder; a model that is not a path there and looks like org/name is a hub id. The first set is the
 * baseline that deltas are measured against.
 */
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { loadModel, type LoadOptions } from "../load.js";
import { isHubId } from "../io/hub.js";
import { FormatError } from "../io/errors.js";
import { evaluatePerplexity } from "./perplexity.js";
import { parseKvSpec } from "../kv/spec.js";
import { checkKvFormat } from "../kv/format.js";
import { DEFAULT_LAMBADA, evaluateLambada, readLambada, type LambadaExample } from "./lambada.js";
import { barChartSvg, markdownTable } from "./plot.js";

export type MatrixTask =
  | { readonly kind: "ppl"; readonly data: string; readonly ctx?: number; readonly chunks?: number }
  | { readonly kind: "lambada"; readonly data: string; readonly limit?: number };

export interface OptionSet {
  readonly name: string;
  /** What goes to loadModel (the top-level options overlaid with the set's own). */
  readonly options: Readonly<Record<string, unknown>>;
  /** Fields of `options` the runner does not know and passed through unchecked. */
  readonly unchecked: readonly string[];
}

export interface MatrixConfig {
  readonly model: string;
  readonly task: MatrixTask;
  readonly optionSets: readonly OptionSet[];
}

export interface MatrixRow {
  name: string;
  options: Record<string, unknown>;
  unchecked: string[];
  /** The task's numbers (ppl: tokens, nll, ppl; lambada: examples, correct, accuracy, nll, ppl). */
  metrics?: Record<string, number>;
  /** Main metric and nll minus the baseline's (absent for the baseline and when either failed). */
  delta?: Record<string, number>;
  error?: string;
  loadSeconds?: number;
  evalSeconds?: number;
}

export interface MatrixResults {
  model: string;
  task: MatrixTask;
  /** The metric plotted and compared: ppl for ppl (lower is better), accuracy for lambada (higher is better). */
  mainMetric: "ppl" | "accuracy";
  createdAt: string;
  host: { node: string; platform: string; cpus: number };
  rows: MatrixRow[];
}

/** LoadOptions fields a JSON config may set, with their checks; anything else passes through. */
const KNOWN_OPTIONS: Record<string, (v: unknown) => string | undefined> = {
  device: (v) => (v === "cpu" || v === "webgpu" ? undefined : `must be "cpu" or "webgpu"`),
  threads: (v) => (Number.isInteger(v) && (v as number) >= 1 ? undefined : "must be a positive integer"),
  contextLength: (v) => (Number.isInteger(v) && (v as number) >= 1 ? undefined : "must be a positive integer"),
  tokenizer: (v) => (typeof v === "string" && v !== "" ? undefined : "must be a file path"),
  offline: (v) => (typeof v === "boolean" ? undefined : "must be true or false"),
  profile: (v) => (typeof v === "boolean" ? undefined : "must be true or false"),
  kv: (v) => checkWith(v, parseKvSpec),
  kvFormat: (v) => checkWith(v, checkKvFormat),
  backend: () => "cannot be given in a config file (it is a live object)",
  onProgress: () => "cannot be given in a config file (it is a function)",
};

/** The message of what `check` throws for v (a string), or of v not being a string. */
function checkWith(v: unknown, check: (s: string) => unknown): string | undefined {
  if (typeof v !== "string") return "must be a string";
  try {
    check(v);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Checks a parsed config (see the top of this file) and resolves its paths against `baseDir`; errors name
 * `file` and the field.
 */
export async function parseMatrixConfig(json: unknown, file: string, baseDir = dirname(file)): Promise<MatrixConfig> {
  const fail = (problem: string): never => {
    throw new FormatError(file, problem);
  };
  if (!isObject(json)) return fail("expected a JSON object with model, task and optionSets");
  for (const key of Object.keys(json)) {
    if (!["model", "task", "options", "optionSets"].includes(key)) fail(`unknown field "${key}" (expected model, task, options, optionSets)`);
  }
  if (typeof json["model"] !== "string" || json["model"] === "") fail(`field "model" is missing; name a model folder, file or hub id`);
  const model = await resolveModel(json["model"] as string, baseDir);
  const task = parseTask(json["task"], baseDir, fail);
  const common = json["options"] === undefined ? {} : json["options"];
  if (!isObject(common)) return fail(`field "options" must be an object of load options`);
  checkOptions(common, "options", fail);
  const sets = json["optionSets"];
  if (!Array.isArray(sets) || sets.length === 0) return fail(`field "optionSets" must be a non-empty array of { "name", "options" }`);
  const names = new Set<string>();
  const optionSets = sets.map((s: unknown, i): OptionSet => {
    const where = `optionSets[${i}]`;
    if (!isObject(s)) return fail(`${where} must be an object { "name", "options" }`);
    for (const key of Object.keys(s)) if (key !== "name" && key !== "options") fail(`${where}: unknown field "${key}" (load options go inside "options")`);
    const name = s["name"];
    if (typeof name !== "string" || name === "") return fail(`${where}.name must be a non-empty string`);
    if (names.has(name)) fail(`${where}.name "${name}" is used twice`);
    names.add(name);
    const own = s["options"] ?? {};
    if (!isObject(own)) return fail(`${where}.options must be an object`);
    checkOptions(own, `${where}.options`, fail);
    const options: Record<string, unknown> = { ...common, ...own };
    if (typeof options["tokenizer"] === "string") options["tokenizer"] = resolve(baseDir, options["tokenizer"]);
    return { name, options, unchecked: Object.keys(options).filter((k) => !(k in KNOWN_OPTIONS)) };
  });
  return { model, task, optionSets };
}

function checkOptions(options: Record<string, unknown>, where: string, fail: (problem: string) => never): void {
  for (const [key, value] of Object.entries(options)) {
    const problem = KNOWN_OPTIONS[key]?.(value);
    if (problem) fail(`${where}.${key} ${problem}, got ${JSON.stringify(value)}`);
  }
}

async function resolveModel(model: string, baseDir: string): Promise<string> {
  const path = isAbsolute(model) ? model : resolve(baseDir, model);
  if (await stat(path).catch(() => undefined)) return path;
  if (isHubId(model)) return model;
  throw new Error(`model ${path}: no such file or folder (and "${model}" is not a hub id org/name)`);
}

function parseTask(task: unknown, baseDir: string, fail: (problem: string) => never): MatrixTask {
  if (!isObject(task)) return fail(`field "task" is missing; give { "kind": "ppl", "data": FILE } or { "kind": "lambada" }`);
  const integer = (key: string, min: number): number | undefined => {
    const v = task[key];
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || (v as number) < min) fail(`task.${key} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const only = (keys: string[]) => {
    for (const key of Object.keys(task)) if (!keys.includes(key)) fail(`task.${key} is not a field of a ${String(task["kind"])} task (fields: ${keys.join(", ")})`);
  };
  const data = task["data"];
  if (data !== undefined && (typeof data !== "string" || data === "")) fail(`task.data must be a file path`);
  switch (task["kind"]) {
    case "ppl":
      only(["kind", "data", "ctx", "chunks"]);
      if (data === undefined) return fail(`task.data is missing: a ppl task needs a text file`);
      return { kind: "ppl", data: resolve(baseDir, data as string), ctx: integer("ctx", 2), chunks: integer("chunks", 1) };
    case "lambada":
      only(["kind", "data", "limit"]);
      return { kind: "lambada", data: data === undefined ? DEFAULT_LAMBADA : resolve(baseDir, data as string), limit: integer("limit", 1) };
    default:
      return fail(`task.kind ${JSON.stringify(task["kind"])} is not a task; available: "ppl", "lambada"`);
  }
}

/** Reads and checks a config file. */
export async function readMatrixConfig(file: string): Promise<MatrixConfig> {
  const text = await readFile(file, "utf8");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
  }
  return parseMatrixConfig(json, file);
}

export interface MatrixRunOptions {
  /** Progress lines (and carriage-return updates) for a terminal: the CLI sends them to stderr. */
  onProgress?: (text: string) => void;
}

/**
 * Evaluates the config's model under each option set in order, writing results.json, results.md and
 * plot.svg into `outDir` after every set (so an interrupted run leaves what it finished). A set whose load
 * or evaluation throws is recorded with its error and the others still run.
 */
export async function runMatrix(config: MatrixConfig, outDir: string, options: MatrixRunOptions = {}): Promise<MatrixResults> {
  const say = options.onProgress ?? (() => {});
  const task = config.task;
  // read the data once; a missing or malformed file stops the run before any model loads
  const text = task.kind === "ppl" ? await readFile(task.data, "utf8") : undefined;
  const examples: LambadaExample[] | undefined = task.kind === "lambada" ? await readLambada(task.data) : undefined;
  await mkdir(outDir, { recursive: true });
  const results: MatrixResults = {
    model: config.model,
    task,
    mainMetric: task.kind === "ppl" ? "ppl" : "accuracy",
    createdAt: new Date().toISOString(),
    host: { node: process.version, platform: `${process.platform} ${process.arch}`, cpus: cpus().length },
    rows: [],
  };
  const total = config.optionSets.length;
  for (const [i, set] of config.optionSets.entries()) {
    const tag = `[${i + 1}/${total}] ${set.name}`;
    if (set.unchecked.length) say(`${tag}: passing ${set.unchecked.join(", ")} to loadModel unchecked\n`);
    say(`${tag}: loading ${config.model}\n`);
    const row: MatrixRow = { name: set.name, options: { ...set.options }, unchecked: [...set.unchecked] };
    const t0 = performance.now();
    try {
      const model = await loadModel(config.model, set.options as LoadOptions);
      const t1 = performance.now();
      row.loadSeconds = (t1 - t0) / 1000;
      try {
        if (task.kind === "ppl") {
          const r = await evaluatePerplexity(model, text!, {
            ctx: task.ctx,
            chunks: task.chunks,
            onProgress: (done, all) => say(`\r${tag}: window ${done}/${all}`),
          });
          row.metrics = { tokens: r.tokens, nll: r.nll, ppl: r.ppl };
        } else {
          const r = await evaluateLambada(model, examples!, {
            limit: task.limit,
            onProgress: (done, all, correct) => say(`\r${tag}: example ${done}/${all}, accuracy ${((100 * correct) / done).toFixed(2)}%`),
          });
          row.metrics = { examples: r.examples, correct: r.correct, accuracy: r.accuracy, nll: r.nll, ppl: r.ppl };
        }
      } finally {
        model.dispose();
      }
      row.evalSeconds = (performance.now() - t1) / 1000;
      const main = row.metrics[results.mainMetric]!;
      say(`\n${tag}: ${results.mainMetric} ${formatMetric(results.mainMetric, main)}, nll ${row.metrics["nll"]!.toFixed(6)} in ${row.evalSeconds.toFixed(1)} s\n`);
    } catch (e) {
      row.error = (e as Error).message;
      say(`\n${tag}: failed: ${row.error}\n`);
    }
    results.rows.push(row);
    addDeltas(results);
    await writeOutputs(results, outDir);
  }
  return results;
}

function addDeltas(results: MatrixResults): void {
  const base = results.rows[0]?.metrics;
  for (const row of results.rows.slice(1)) {
    if (!base || !row.metrics) continue;
    row.delta = {};
    for (const key of [results.mainMetric, "nll"]) row.delta[key] = row.metrics[key]! - base[key]!;
  }
}

async function writeOutputs(results: MatrixResults, outDir: string): Promise<void> {
  await writeFile(join(outDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
  await writeFile(join(outDir, "results.md"), matrixMarkdown(results));
  await writeFile(join(outDir, "plot.svg"), matrixPlot(results));
}

function formatMetric(metric: string, v: number): string {
  if (metric === "accuracy") return `${(100 * v).toFixed(2)}%`;
  if (metric === "ppl") return v.toFixed(4);
  if (metric === "nll") return v.toFixed(6);
  return String(v);
}

function formatDelta(metric: string, d: number): string {
  const sign = d >= 0 ? "+" : "-";
  const a = Math.abs(d);
  if (metric === "accuracy") return `${sign}${(100 * a).toFixed(2)} pp`;
  return `${sign}${metric === "ppl" ? a.toFixed(4) : a.toFixed(6)}`;
}

/** The task in words; `plain` gives the data file's name only, unquoted (for the chart). */
function describeTask(task: MatrixTask, plain = false): string {
  const data = plain ? basename(task.data) : `\`${task.data}\``;
  if (task.kind === "ppl") return `ppl on ${data}` + (task.ctx ? `, ctx ${task.ctx}` : "") + (task.chunks ? `, ${task.chunks} windows` : "");
  return `lambada on ${data}` + (task.limit ? `, first ${task.limit} examples` : "");
}

/** The results as a Markdown document: a header naming model, task and host, then one row per option set. */
export function matrixMarkdown(results: MatrixResults): string {
  const main = results.mainMetric;
  const metrics = main === "ppl" ? ["ppl", "nll", "tokens"] : ["accuracy", "nll", "ppl", "examples"];
  const headers = ["option set", "options", ...metrics, `Δ ${main}`, "Δ nll", "load s", "eval s"];
  const rows = results.rows.map((r, i) => {
    const opts = Object.entries(r.options).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}${r.unchecked.includes(k) ? "†" : ""}`);
    const cells = metrics.map((m, j) => (r.metrics ? formatMetric(m, r.metrics[m]!) : j === 0 && r.error ? `failed: ${r.error}` : ""));
    const delta = (m: string) => (i === 0 ? "baseline" : r.delta ? formatDelta(m, r.delta[m]!) : "—");
    return [r.name, opts.join(" ") || "(defaults)", ...cells, delta(main), delta("nll"), r.loadSeconds?.toFixed(2) ?? "—", r.evalSeconds?.toFixed(2) ?? "—"];
  });
  const numeric = headers.map((_, i) => i >= 2);
  const better = main === "ppl" ? "lower perplexity is better" : "higher accuracy is better";
  const notes = results.rows.some((r) => r.unchecked.length) ? "\n† passed to loadModel unchecked: a field this runner does not know.\n" : "";
  return (
    `# ${results.task.kind} under ${results.rows.length} option set${results.rows.length === 1 ? "" : "s"}\n\n` +
    `Model \`${results.model}\`; ${describeTask(results.task)}; ${better}; deltas against the first row. ` +
    `${results.createdAt}, Node ${results.host.node} on ${results.host.platform}, ${results.host.cpus} CPUs.\n\n` +
    markdownTable(headers, rows, numeric) +
    notes
  );
}

/** A bar chart of the main metric, one bar per option set (failed sets draw no bar). */
export function matrixPlot(results: MatrixResults): string {
  const main = results.mainMetric;
  const scale = main === "accuracy" ? 100 : 1;
  return barChartSvg({
    title: `${results.task.kind}: ${results.model.split(/[\\/]/).filter(Boolean).pop() ?? results.model}`,
    subtitle: `${describeTask(results.task, true)}; ${results.host.platform}, ${results.host.cpus} CPUs`,
    yLabel: main === "accuracy" ? "accuracy (%)" : "perplexity (lower is better)",
    groups: results.rows.map((r) => r.name),
    series: [{ name: main === "accuracy" ? "accuracy (%)" : "perplexity", values: results.rows.map((r) => (r.metrics ? r.metrics[main]! * scale : undefined)) }],
  });
}
