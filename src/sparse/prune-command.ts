/**
 * `frugal prune`: prune a model's linear weights and write a pruned folder (src/sparse/source.ts), and the
 * load-time sparsity options every command shares (`--sparsity F [--prune-method M] [--calib FILE]
 * [--dense-kernels]`).
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { readSource, DEFAULT_MODEL } from "../load.js";
import { ProgressBar } from "../cli/progress.js";
import { linearSparsity, prunedTensors, writePrunedFolder } from "./source.js";
import { PRUNE_METHODS, type PruneMethod } from "./prune.js";
import type { SparseLoadOptions } from "./load-sparse.js";

export const PRUNE_USAGE = `  prune      prune linear weights        frugal prune --model SRC --method magnitude|wanda --sparsity F --out DIR
                                            [--calib FILE] [--calib-seqs N] [--calib-len N]
                                            (load DIR like any model; --sparsity F on any command prunes at load)`;

export const sparseCliOptions = {
  sparsity: { type: "string" },
  "prune-method": { type: "string" },
  calib: { type: "string" },
  "dense-kernels": { type: "boolean" },
} as const satisfies ParseArgsConfig["options"];

function fraction(name: string, v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < 0 || n > 1) throw new Error(`--${name} needs a fraction in [0, 1], got "${v}"`);
  return n;
}

function method(v: string | undefined): PruneMethod {
  if (v === undefined) return "magnitude";
  if (!PRUNE_METHODS.includes(v as PruneMethod)) throw new Error(`--method must be one of ${PRUNE_METHODS.join(", ")}, got "${v}"`);
  return v as PruneMethod;
}

/** LoadOptions.sparse from the shared flags (undefined when none is given). */
export function sparseLoadOptions(v: { sparsity?: string; "prune-method"?: string; calib?: string; "dense-kernels"?: boolean }): SparseLoadOptions | undefined {
  if (v.sparsity === undefined && v["dense-kernels"] === undefined) return undefined;
  return {
    sparsity: v.sparsity === undefined ? undefined : fraction("sparsity", v.sparsity),
    method: method(v["prune-method"]),
    calibText: v.calib === undefined ? undefined : readFileSync(v.calib, "utf8"),
    kernels: v["dense-kernels"] ? false : undefined,
  };
}

export async function pruneCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" }, tokenizer: { type: "string" }, method: { type: "string" }, sparsity: { type: "string" },
      out: { type: "string" }, calib: { type: "string" }, "calib-seqs": { type: "string" }, "calib-len": { type: "string" },
      threads: { type: "string" }, help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(PRUNE_USAGE + "\n");
    return 0;
  }
  if (values.sparsity === undefined) throw new Error("prune needs --sparsity F (e.g. 0.5)");
  if (!values.out) throw new Error("prune needs --out DIR");
  const m = method(values.method);
  const sparsity = fraction("sparsity", values.sparsity);
  if (m === "wanda" && !values.calib) throw new Error("--method wanda needs --calib FILE (calibration text, disjoint from the evaluation text)");
  const int = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} needs a positive integer, got "${v}"`);
    return n;
  };
  const source = values.model ?? DEFAULT_MODEL;
  const loaded = await readSource(source, { tokenizer: values.tokenizer });
  const bar = new ProgressBar();
  const pruned = await prunedTensors(loaded, {
    method: m,
    sparsity,
    calibText: values.calib ? await readFile(values.calib, "utf8") : undefined,
    sequences: int("calib-seqs", values["calib-seqs"]),
    seqLen: int("calib-len", values["calib-len"]),
    threads: int("threads", values.threads),
    onProgress: (done, total) => bar.update("wanda blocks", done, total),
  });
  const realised = linearSparsity(pruned);
  const absolute = existsSync(source) ? resolve(source) : source;
  await writePrunedFolder(values.out, { source: absolute, method: m, sparsity, calib: values.calib, realised }, pruned);
  process.stderr.write(`pruned ${pruned.size} linear weights of ${source} to ${(realised * 100).toFixed(2)}% zeros (${m}); wrote ${values.out}\n`);
  return 0;
}
