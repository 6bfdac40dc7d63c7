import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Backend } from "./backend/backend.js";
import { createCpuBackend } from "./backend/cpu/cpu-backend.js";
import type { Model } from "./model/model.js";
import { assembleModel, DEFAULT_CONTEXT_CAP } from "./model/assemble.js";
import type { LoadedSource } from "./io/source.js";
import { loadLlama2c } from "./io/load-llama2c.js";
import { loadGguf } from "./io/load-gguf.js";
import { loadHfFolder } from "./io/load-hf.js";
import { isHubId, resolveHub } from "./io/hub.js";
import { ProgressBar } from "./cli/progress.js";
import { loadPrunedFolder, readManifest } from "./sparse/source.js";
import { applySparse, type SparseLoadOptions } from "./sparse/load-sparse.js";
import { parseKvSpec } from "./kv/spec.js";
import { checkKvFormat } from "./kv/format.js";
import { quantizeTensors } from "./quant/quantize-model.js";
import { quantFormat } from "./quant/formats.js";

export { DEFAULT_CONTEXT_CAP };

export interface LoadOptions {
  /** Where the forward pass runs. Defaults to "cpu". */
  device?: "cpu" | "webgpu";
  /** Worker threads for the CPU backend; defaults to the number of cores. */
  threads?: number;
  /** A tokenizer file for sources that do not carry one (llama2.c checkpoints). */
  tokenizer?: string;
  /**
   * Longest context (prompt + generated tokens) to serve. Defaults to the model's own, capped at
   * DEFAULT_CONTEXT_CAP so that a 128K-context model does not build tables for positions nobody uses.
   */
  contextLength?: number;
  /** Hub downloads: never touch the network, use the local cache only. */
  offline?: boolean;
  /** WebGPU: time every kernel with timestamp queries (read them with the backend's `profile()`). */
  profile?: boolean;
  /** A backend to run on instead of creating one from `device` (benchmarks wrap one in an op timer). */
  backend?: Backend;
  /** Pruning at load and sparse kernels (src/sparse); a pruned folder turns the kernels on by itself. */
  sparse?: SparseLoadOptions;
  /**
   * KV-cache method, `--kv SPEC` (src/kv/spec.ts: dense, h2o:keep=F, ...). Per model: every cache the model
   * makes uses it; `Model.setKv` changes it between generations. Default dense.
   */
  kv?: string;
  /**
   * KV-cache number format, `--kv-format` (src/kv/format.ts: f32, int8, int4, int4g64, int3g64, fp3-razer, razer,
   * nvfp4, ...), or keys and values apart, `k=F,v=F[,k0=F][,v0=F]` (k0/v0: layer 0's; CPU only). Default f32.
   */
  kvFormat?: string;
  /**
   * Quantize the linear projections at load into this src/quant format (int8, int4-asym, fp4, nf4, razer,
   * nvfp4, nvfp4-razer; see src/quant/quantize-model.ts for which tensors). Unknown names are an error.
   */
  weights?: string;
  /** Reports download/load progress (bytes done of total). */
  onProgress?: (what: string, done: number, total: number) => void;
}

/** The model used when none is named: stories260K, shipped in the repository. */
export const DEFAULT_MODEL = fileURLToPath(new URL("../../models/stories260K/stories260K.bin", import.meta.url));

/** Reads a model source into memory without choosing a backend. */
export async function readSource(source: string, options: LoadOptions = {}): Promise<LoadedSource> {
  const info = await stat(source).catch(() => undefined);
  if (info?.isFile()) {
    if (source.endsWith(".bin")) return loadLlama2c(source, options.tokenizer);
    if (source.endsWith(".gguf")) return loadGguf(source);
  }
  const manifest = info?.isDirectory() ? await readManifest(source) : undefined;
  if (manifest) return loadPrunedFolder(source, manifest, (s) => readSource(s, options));
  if (info?.isDirectory() && (await stat(`${source}/config.json`).catch(() => undefined))) return loadHfFolder(source);
  if (!info && isHubId(source)) {
    const onProgress = options.onProgress ?? new ProgressBar().update;
    return loadHfFolder(await resolveHub(source, { offline: options.offline, onProgress }), { name: source });
  }
  if (!info) throw new Error(`${source}: no such file or folder, and not a hub id (org/name)`);
  throw new Error(`${source}: not a model this build can read (llama2.c .bin, .gguf, a Hugging Face folder with config.json, or a hub id org/name)`);
}

export async function createBackend(options: LoadOptions): Promise<Backend> {
  const device = options.device ?? "cpu";
  if (device === "cpu") return createCpuBackend({ threads: options.threads });
  if (device === "webgpu") {
    // loaded on demand: CPU-only users never load Dawn
    const { createWebGpuBackend } = await import("./backend/webgpu/webgpu-backend.js");
    return createWebGpuBackend({ profile: options.profile });
  }
  throw new Error(`device "${device}" is not available in this build`);
}

/** Loads a model from a path or hub id onto the chosen device. */
export async function loadModel(source: string = DEFAULT_MODEL, options: LoadOptions = {}): Promise<Model> {
  // bad --kv / --kv-format / --weights fail before any loading
  if (options.kv !== undefined) parseKvSpec(options.kv);
  if (options.kvFormat !== undefined) checkKvFormat(options.kvFormat);
  if (options.weights !== undefined) quantFormat(options.weights);
  if (options.weights !== undefined && options.sparse?.sparsity !== undefined) {
    throw new Error("--weights and --sparsity cannot be combined yet: the sparse-bitmap layout holds f32/f16/bf16 values");
  }
  const read = await readSource(source, options);
  const loaded = await applySparse(read, options.sparse, (await readManifest(source).catch(() => undefined)) !== undefined);
  const backend = options.backend ?? (await createBackend(options));
  if (options.weights !== undefined) {
    try {
      const name = quantFormat(options.weights).name;
      if (!backend.formats.includes(name as never)) throw new Error(`the ${backend.kind} backend cannot compute with ${name} weights (it has ${backend.formats.join(", ")})`);
      quantizeTensors(loaded.tensors, name, { onProgress: options.onProgress ?? new ProgressBar().update });
    } catch (e) {
      backend.dispose();
      throw e;
    }
  }
  const model = assembleModel(loaded, backend, options.contextLength);
  if (options.kv !== undefined || options.kvFormat !== undefined) model.setKv(options.kv, options.kvFormat);
  return model;
}
