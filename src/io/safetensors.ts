/**
 * Reader for Hugging Face safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 * ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}), then the data region that
 * the offsets index. Sharded checkpoints add model.safetensors.index.json whose weight_map names the
 * shard holding each tensor. Everything the header claims is checked before any byte is trusted.
 */
import { open, readFile, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { DType } from "../tensor/dtype.js";
import { type RawTensor, type TensorMap, elementCount } from "../tensor/raw.js";
import { FormatError } from "./errors.js";
import { packedEntry } from "./packed-safetensors.js";

/** The safetensors dtype names we read, and what they become. */
const DTYPE_MAP: Readonly<Record<string, { dtype: DType; bytes: number }>> = {
  F32: { dtype: "f32", bytes: 4 },
  F16: { dtype: "f16", bytes: 2 },
  BF16: { dtype: "bf16", bytes: 2 },
  // bytes of a quantized tensor; the header's metadata names its format (packed-safetensors.ts)
  U8: { dtype: "f32", bytes: 1 },
};

/** The reference implementation refuses headers above 100 MB; a larger one is corrupt, not a model. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One tensor as the header describes it; `begin`/`end` are relative to the data region. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsHeader {
  /** Bytes before the data region (8 + header length). */
  readonly dataStart: number;
  /** Tensors in file order (sorted by begin offset). */
  readonly entries: readonly SafetensorsEntry[];
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * Parses and validates the JSON header `json` of a file of `fileSize` bytes whose header is `headerLength`
 * bytes long. Throws FormatError naming `source` and the offending tensor.
 */
export function parseSafetensorsHeader(json: Uint8Array, headerLength: number, fileSize: number, source: string): SafetensorsHeader {
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (e) {
    throw new FormatError(source, `safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new FormatError(source, "safetensors header is not a JSON object");
  }
  const entries: SafetensorsEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof value === "object" && value !== null) metadata = value as Record<string, string>;
      continue;
    }
    entries.push(parseEntry(name, value, source));
  }
  for (const [i, e] of entries.entries()) {
    if ((parsed as Record<string, { dtype?: unknown }>)[e.name]?.dtype === "U8") entries[i] = { ...e, ...packedEntry(e.name, e.end - e.begin, metadata, source) };
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  // the reference writer tiles the data region exactly, so any gap, overlap or surplus means the offsets lie
  let at = 0;
  let previous: SafetensorsEntry | undefined;
  for (const e of entries) {
    if (e.end > dataLength) {
      throw new FormatError(
        source,
        `tensor ${e.name} lies at bytes [${e.begin}, ${e.end}) of the data region, which has only ${Math.max(0, dataLength)} bytes (file truncated?)`,
      );
    }
    if (e.begin < at) {
      throw new FormatError(source, `tensors ${previous!.name} [${previous!.begin}, ${previous!.end}) and ${e.name} [${e.begin}, ${e.end}) overlap`);
    }
    if (e.begin > at) throw new FormatError(source, `data_offsets leave bytes [${at}, ${e.begin}) before tensor ${e.name} unused`);
    at = e.end;
    previous = e;
  }
  if (at !== dataLength) {
    throw new FormatError(source, `the data region has ${dataLength} bytes but its tensors end at byte ${at}`);
  }
  return { dataStart, entries, metadata };
}

function parseEntry(name: string, value: unknown, source: string): SafetensorsEntry {
  const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
  if (typeof v !== "object" || v === null) throw new FormatError(source, `tensor ${name}: header entry is not an object`);
  const kind = typeof v.dtype === "string" ? DTYPE_MAP[v.dtype] : undefined;
  if (!kind) {
    throw new FormatError(source, `tensor ${name} has dtype ${String(v.dtype)}; supported: ${Object.keys(DTYPE_MAP).join(", ")}`);
  }
  const shape = v.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new FormatError(source, `tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  const offsets = v.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new FormatError(source, `tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw new FormatError(source, `tensor ${name}: data_offsets [${begin}, ${end}] end before they begin`);
  const need = elementCount(shape as number[]) * kind.bytes;
  if (end - begin !== need) {
    throw new FormatError(
      source,
      `tensor ${name}: ${v.dtype} [${shape.join(", ")}] needs ${need} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
    );
  }
  return { name, dtype: kind.dtype, shape: shape as number[], begin, end };
}

/** Reads and validates the header of the safetensors file at `path`. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await open(path, "r");
  try {
    return await headerOf(fh, path);
  } finally {
    await fh.close();
  }
}

type FileHandle = Awaited<ReturnType<typeof open>>;

async function headerOf(fh: FileHandle, path: string): Promise<SafetensorsHeader> {
  const size = (await fh.stat()).size;
  if (size < 8) throw new FormatError(path, `${size} bytes is too short for a safetensors file (truncated?)`);
  const prefix = await readExactly(fh, 0, 8, path);
  const headerLength = Number(new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES) throw new FormatError(path, `safetensors header length ${headerLength} is implausibly large (not a safetensors file?)`);
  if (8 + headerLength > size) {
    throw new FormatError(path, `safetensors header of ${headerLength} bytes runs past the end of the ${size}-byte file (truncated?)`);
  }
  const json = await readExactly(fh, 8, headerLength, path);
  return parseSafetensorsHeader(json, headerLength, size, path);
}

/** Reads `length` bytes at `position`, looping over short reads; large tensors exceed one read's 2 GiB limit. */
async function readExactly(fh: FileHandle, position: number, length: number, path: string): Promise<Uint8Array> {
  // unpooled and not zero-filled: every byte is overwritten by the read, and zeroing gigabytes costs time
  const raw = Buffer.allocUnsafeSlow(length);
  const out = new Uint8Array(raw.buffer, raw.byteOffset, length);
  let done = 0;
  while (done < length) {
    const chunk = Math.min(length - done, 1 << 30);
    const { bytesRead } = await fh.read(out, done, chunk, position + done);
    if (bytesRead === 0) throw new FormatError(path, `unexpected end of file at byte ${position + done} (truncated?)`);
    done += bytesRead;
  }
  return out;
}

/**
 * Every tensor of the safetensors file at `path`, under its name in the file. Each tensor gets its own
 * buffer, read straight from the file, so no second copy of the whole file is ever held.
 */
export async function readSafetensors(path: string): Promise<TensorMap> {
  const fh = await open(path, "r");
  try {
    const header = await headerOf(fh, path);
    const tensors: TensorMap = new Map();
    for (const e of header.entries) {
      const data = await readExactly(fh, header.dataStart + e.begin, e.end - e.begin, path);
      tensors.set(e.name, { name: e.name, dtype: e.dtype, shape: e.shape, data } satisfies RawTensor);
    }
    return tensors;
  } finally {
    await fh.close();
  }
}

/**
 * Every tensor of a sharded checkpoint described by the index file at `indexPath`
 * (model.safetensors.index.json): each shard named in weight_map must exist and hold the tensors the
 * map assigns to it.
 */
export async function readSafetensorsIndex(indexPath: string): Promise<TensorMap> {
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, "utf8"));
  } catch (e) {
    throw new FormatError(indexPath, `cannot read the shard index: ${(e as Error).message}`);
  }
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new FormatError(indexPath, "has no weight_map object");
  }
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== "string" || shard.length === 0 || shard !== basename(shard)) {
      throw new FormatError(indexPath, `weight_map entry for ${name} is ${JSON.stringify(shard)}, not a file name`);
    }
    byShard.set(shard, [...(byShard.get(shard) ?? []), name]);
  }
  const dir = dirname(indexPath);
  for (const shard of byShard.keys()) {
    const exists = await stat(join(dir, shard)).then((s) => s.isFile(), () => false);
    if (!exists) throw new FormatError(indexPath, `names shard ${shard}, which is missing from ${dir}`);
  }
  const tensors: TensorMap = new Map();
  for (const [shard, names] of byShard) {
    const path = join(dir, shard);
    const shardTensors = await readSafetensors(path);
    for (const name of names) {
      if (!shardTensors.has(name)) throw new FormatError(path, `tensor ${name}, which ${basename(indexPath)} places here, is not in this shard`);
    }
    for (const [name, t] of shardTensors) {
      if (tensors.has(name)) throw new FormatError(path, `tensor ${name} also appears in another shard`);
      tensors.set(name, t);
    }
  }
  return tensors;
}

/** The weights of a Hugging Face model folder: the shard index if present, else model.safetensors. */
export async function readSafetensorsFolder(dir: string): Promise<TensorMap> {
  const isFile = (p: string) => stat(p).then((s) => s.isFile(), () => false);
  const index = join(dir, "model.safetensors.index.json");
  if (await isFile(index)) return readSafetensorsIndex(index);
  const single = join(dir, "model.safetensors");
  if (await isFile(single)) return readSafetensors(single);
  throw new FormatError(dir, "has neither model.safetensors nor model.safetensors.index.json");
}
