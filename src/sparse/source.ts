/**
 * Sparsity applied to a model read into memory: prune its linear weights (magnitude or Wanda), pack
 * them into the sparse-bitmap layout, and the pruned folder `frugal prune` writes.
 *
 * A pruned folder holds `sparse.json` (the source it was pruned from, the method, the sparsity) and
 * `pruned.safetensors` (the pruned linear weights in the source's own dtype, Hugging Face names). Loading
 * it reads the source and swaps those tensors in, so the folder stays small and works for every source
 * format (llama2.c, GGUF, Hugging Face).
 */
import { readFile, writeFile, mkdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { LoadedSource } from "../io/source.js";
import type { RawTensor, TensorMap } from "../tensor/raw.js";
import { readSafetensors } from "../io/safetensors.js";
import { isPrunableLinear, pruneTensor, checkSparsity, type PruneMethod, PRUNE_METHODS, realisedSparsity } from "./prune.js";
import { wandaPrune, type CalibrationOptions } from "./wanda.js";
import { packSparse, sparseDTypeOf, type SparseValueType } from "./bitmap.js";

export interface PruneOptions extends CalibrationOptions {
  method: PruneMethod;
  sparsity: number;
  /** Calibration text (Wanda only). */
  calibText?: string;
}

/** The pruned linear weights of `loaded` (only those; the other tensors are unchanged). */
export async function prunedTensors(loaded: LoadedSource, options: PruneOptions): Promise<TensorMap> {
  checkSparsity(options.sparsity, "--sparsity");
  if (!PRUNE_METHODS.includes(options.method)) throw new Error(`unknown pruning method "${options.method}"; available: ${PRUNE_METHODS.join(", ")}`);
  if (options.method === "wanda") {
    if (options.calibText === undefined) throw new Error("Wanda pruning needs calibration text (--calib FILE)");
    return wandaPrune(loaded, options.sparsity, options.calibText, options);
  }
  const out: TensorMap = new Map();
  for (const [name, t] of loaded.tensors) if (isPrunableLinear(name)) out.set(name, pruneTensor(t, options.sparsity));
  return out;
}

/** `loaded` with `replace`'s tensors swapped in. */
export function withTensors(loaded: LoadedSource, replace: TensorMap): LoadedSource {
  const tensors: TensorMap = new Map(loaded.tensors);
  for (const [name, t] of replace) {
    const old = tensors.get(name);
    if (!old) throw new Error(`${loaded.source}: pruned tensor ${name} is not in the model`);
    if (old.shape.join(",") !== t.shape.join(",")) throw new Error(`${loaded.source}: pruned tensor ${name} is [${t.shape.join(", ")}], the model's is [${old.shape.join(", ")}]`);
    tensors.set(name, t);
  }
  return { ...loaded, tensors };
}

/** A linear weight in f32/f16/bf16 as a sparse-bitmap tensor of the same value type (others unchanged). */
export function toSparse(t: RawTensor): RawTensor {
  if (t.dtype !== "f32" && t.dtype !== "f16" && t.dtype !== "bf16") return t;
  const v = t.dtype as SparseValueType;
  const [rows, cols] = [t.shape[0]!, t.shape[t.shape.length - 1]!];
  const aligned = t.data.byteOffset % 4 === 0 ? t.data : t.data.slice();
  const bits = v === "f32"
    ? new Uint32Array(aligned.buffer, aligned.byteOffset, rows * cols)
    : new Uint16Array(aligned.buffer, aligned.byteOffset, rows * cols);
  return { name: t.name, dtype: sparseDTypeOf(v), shape: t.shape, data: packSparse(v, rows, cols, bits) };
}

/** `loaded` with every prunable linear weight in the sparse-bitmap layout. */
export function sparsify(loaded: LoadedSource): LoadedSource {
  const tensors: TensorMap = new Map();
  for (const [name, t] of loaded.tensors) tensors.set(name, isPrunableLinear(name) ? toSparse(t) : t);
  return { ...loaded, tensors };
}

/** Mean realised sparsity over the prunable linear weights. */
export function linearSparsity(tensors: TensorMap): number {
  let zeros = 0, total = 0;
  for (const [name, t] of tensors) {
    if (!isPrunableLinear(name)) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    zeros += realisedSparsity(t) * n;
    total += n;
  }
  return total === 0 ? 0 : zeros / total;
}

// ---------------------------------------------------------------------------------------------
// The pruned folder

export interface SparseManifest {
  /** Absolute path (or hub id) of the model this was pruned from. */
  source: string;
  method: PruneMethod;
  sparsity: number;
  calib?: string;
  /** Realised mean sparsity of the pruned linears. */
  realised: number;
}

const SAFETENSORS_DTYPE: Record<string, string> = { f32: "F32", f16: "F16", bf16: "BF16" };

function encodeSafetensors(tensors: TensorMap, metadata: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const list = [...tensors.values()];
  for (const t of list) {
    const dtype = SAFETENSORS_DTYPE[t.dtype];
    if (!dtype) throw new Error(`tensor ${t.name}: a pruned folder holds f32, f16 or bf16 weights, not ${t.dtype}`);
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.byteLength), true);
  out.set(head, 8);
  let p = 8 + head.byteLength;
  for (const t of list) {
    out.set(t.data, p);
    p += t.data.byteLength;
  }
  return out;
}

export async function writePrunedFolder(dir: string, manifest: SparseManifest, pruned: TensorMap): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "pruned.safetensors"), encodeSafetensors(pruned, { format: "pt", method: manifest.method, sparsity: String(manifest.sparsity) }));
  await writeFile(join(dir, "sparse.json"), JSON.stringify(manifest, null, 2) + "\n");
}

/** The manifest of a pruned folder, or undefined if `dir` is not one. */
export async function readManifest(dir: string): Promise<SparseManifest | undefined> {
  const path = join(dir, "sparse.json");
  if (!(await stat(path).catch(() => undefined))?.isFile()) return undefined;
  let m: Partial<SparseManifest>;
  try {
    m = JSON.parse(await readFile(path, "utf8")) as Partial<SparseManifest>;
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof m.source !== "string") throw new Error(`${path}: field "source" must be a string`);
  if (!PRUNE_METHODS.includes(m.method as PruneMethod)) throw new Error(`${path}: field "method" must be one of ${PRUNE_METHODS.join(", ")}`);
  if (typeof m.sparsity !== "number") throw new Error(`${path}: field "sparsity" must be a number`);
  return m as SparseManifest;
}

/** A pruned folder's tensors laid over its source (read by `readSource`). */
export async function loadPrunedFolder(dir: string, manifest: SparseManifest, readSource: (source: string) => Promise<LoadedSource>): Promise<LoadedSource> {
  const base = await readSource(manifest.source);
  const pruned = await readSafetensors(join(dir, "pruned.safetensors"));
  return { ...withTensors(base, pruned), source: resolve(dir) };
}
