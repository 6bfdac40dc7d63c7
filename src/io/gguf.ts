/**
 * GGUF (llama.cpp's model format), versions 2 and 3, little-endian: a strict reader of the header
 * (metadata and tensor infos) and of tensor data.
 *
 * Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count; metadata as (string key, u32 value
 * type, value); tensor infos as (string name, u32 n_dims, u64 dims innermost first, u32 ggml type,
 * u64 offset relative to the data section); padding to the alignment (general.alignment, default 32);
 * the data section. Strings are u64 length + UTF-8 bytes.
 *
 * We parse the header ourselves rather than with @huggingface/gguf: its reader pads short reads with
 * zeros (a truncated file parses as garbage instead of failing) and reports problems without naming the
 * field. We use its table of ggml type names so error messages name types this engine cannot read.
 */
import type { FileHandle } from "node:fs/promises";
import { GGMLQuantizationType } from "@huggingface/gguf";
import { type BlockDType as DType, byteSize } from "../tensor/dtype.js";
import { FormatError } from "./errors.js";

export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;

/** Metadata value types (gguf_type). */
export const GgufType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;
export type GgufTypeCode = (typeof GgufType)[keyof typeof GgufType];

/** 64-bit integers are numbers when they are safe integers, bigints otherwise. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** A metadata entry with its declared type (for arrays, the element type too). */
export interface GgufEntry {
  readonly type: GgufTypeCode;
  readonly itemType?: GgufTypeCode;
  readonly value: GgufValue;
}

/** The ggml tensor types this engine reads, and their storage formats. */
const GGML_TO_DTYPE: ReadonlyMap<number, DType> = new Map([
  [0, "f32"], [1, "f16"], [2, "q4_0"], [8, "q8_0"], [30, "bf16"],
]);

/** ggml's type number of a storage format. */
export function ggmlTypeOf(dtype: DType): number {
  for (const [t, d] of GGML_TO_DTYPE) if (d === dtype) return t;
  throw new Error(`no ggml type for ${dtype}`);
}

/** The storage format of a ggml type number, or undefined when this engine cannot read it. */
export function dtypeOfGgmlType(type: number): DType | undefined {
  return GGML_TO_DTYPE.get(type);
}

/** ggml's name of a type number ("Q5_K"), or "unknown". */
export function ggmlTypeName(type: number): string {
  return (GGMLQuantizationType as unknown as Record<number, string | undefined>)[type] ?? "unknown";
}

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml order: dims[0] is the innermost (row length), the reverse of RawTensor's shape. */
  readonly dims: readonly number[];
  readonly ggmlType: number;
  /** Absolute byte offset of the tensor's data in the file. */
  readonly offset: number;
  /** Bytes of data; undefined for ggml types this engine cannot read. */
  readonly byteLength?: number;
}

export interface GgufHeader {
  readonly source: string;
  readonly version: 2 | 3;
  readonly metadata: ReadonlyMap<string, GgufEntry>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
  readonly fileSize: number;
}

/** Thrown inside the parser when the bytes read so far end before the header does. */
class OutOfBytes extends Error {}

/** A cursor over the header bytes; every read checks its bounds. */
class Cursor {
  pos = 0;
  private readonly dv: DataView;
  private readonly utf8 = new TextDecoder("utf-8");

  constructor(
    private readonly bytes: Uint8Array,
    /** Size of the whole file: a read past `bytes` but inside the file asks for more bytes. */
    private readonly fileSize: number,
    private readonly source: string,
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(n: number, what: string): void {
    const end = this.pos + n;
    if (end > this.fileSize) {
      throw new FormatError(this.source, `truncated: ${what} needs bytes ${this.pos}..${end}, the file has ${this.fileSize}`);
    }
    if (end > this.bytes.byteLength) throw new OutOfBytes();
  }
  u8(what: string): number { this.need(1, what); return this.dv.getUint8(this.pos++); }
  i8(what: string): number { this.need(1, what); return this.dv.getInt8(this.pos++); }
  u16(what: string): number { this.need(2, what); const v = this.dv.getUint16(this.pos, true); this.pos += 2; return v; }
  i16(what: string): number { this.need(2, what); const v = this.dv.getInt16(this.pos, true); this.pos += 2; return v; }
  u32(what: string): number { this.need(4, what); const v = this.dv.getUint32(this.pos, true); this.pos += 4; return v; }
  i32(what: string): number { this.need(4, what); const v = this.dv.getInt32(this.pos, true); this.pos += 4; return v; }
  f32(what: string): number { this.need(4, what); const v = this.dv.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64(what: string): number { this.need(8, what); const v = this.dv.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64(what: string): bigint { this.need(8, what); const v = this.dv.getBigUint64(this.pos, true); this.pos += 8; return v; }
  i64(what: string): bigint { this.need(8, what); const v = this.dv.getBigInt64(this.pos, true); this.pos += 8; return v; }

  /** A u64 that must be a count or size that fits the file (so it is a safe integer too). */
  size(what: string): number {
    const v = this.u64(what);
    if (v > BigInt(this.fileSize)) throw new FormatError(this.source, `${what} is ${v}, more than the file's ${this.fileSize} bytes`);
    return Number(v);
  }

  string(what: string): string {
    const len = this.size(`length of ${what}`);
    this.need(len, what);
    const s = this.utf8.decode(this.bytes.subarray(this.pos, this.pos + len));
    this.pos += len;
    return s;
  }
}

function safe(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Smallest encoded size of one value of a type, to bound array lengths before reading them. */
function minBytes(type: number): number {
  switch (type) {
    case GgufType.UINT8: case GgufType.INT8: case GgufType.BOOL: return 1;
    case GgufType.UINT16: case GgufType.INT16: return 2;
    case GgufType.UINT32: case GgufType.INT32: case GgufType.FLOAT32: return 4;
    case GgufType.ARRAY: return 12;
    default: return 8;
  }
}

function isTypeCode(t: number): t is GgufTypeCode {
  return Number.isInteger(t) && t >= 0 && t <= 12;
}

function readValue(c: Cursor, type: GgufTypeCode, what: string, source: string, depth = 0): GgufValue {
  switch (type) {
    case GgufType.UINT8: return c.u8(what);
    case GgufType.INT8: return c.i8(what);
    case GgufType.UINT16: return c.u16(what);
    case GgufType.INT16: return c.i16(what);
    case GgufType.UINT32: return c.u32(what);
    case GgufType.INT32: return c.i32(what);
    case GgufType.FLOAT32: return c.f32(what);
    case GgufType.FLOAT64: return c.f64(what);
    case GgufType.UINT64: return safe(c.u64(what));
    case GgufType.INT64: return safe(c.i64(what));
    case GgufType.BOOL: {
      const b = c.u8(what);
      if (b > 1) throw new FormatError(source, `${what}: boolean byte is ${b}, not 0 or 1`);
      return b === 1;
    }
    case GgufType.STRING: return c.string(what);
    case GgufType.ARRAY: {
      if (depth > 2) throw new FormatError(source, `${what}: arrays nested more than 3 deep`);
      const itemType = c.u32(`element type of ${what}`);
      if (!isTypeCode(itemType)) throw new FormatError(source, `${what}: unknown array element type ${itemType}`);
      const n = c.size(`length of ${what}`);
      c.need(n * minBytes(itemType), what);
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(c, itemType, `${what}[${i}]`, source, depth + 1);
      return out;
    }
  }
}

/**
 * Parses a GGUF header from the first bytes of a file of `fileSize` bytes. Throws OutOfBytes (internal)
 * when `bytes` ends before the header does but the file goes on; FormatError for anything malformed.
 */
function parseHeader(bytes: Uint8Array, fileSize: number, source: string): GgufHeader {
  const c = new Cursor(bytes, fileSize, source);
  if (fileSize < 4) throw new FormatError(source, `${fileSize} bytes is too short for a GGUF file`);
  c.need(4, "magic");
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== "GGUF") {
    const hex = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new FormatError(source, `not a GGUF file: it starts with bytes ${hex}, not "GGUF"`);
  }
  c.pos = 4;
  const version = c.u32("version");
  if (version !== 2 && version !== 3) {
    if ((version & 0xffff) === 0 && version !== 0) throw new FormatError(source, "big-endian GGUF files are not supported");
    throw new FormatError(source, `GGUF version ${version} is not supported (only 2 and 3)`);
  }
  // every tensor info and metadata entry takes at least 8 bytes for its name and 4 more
  const tensorCount = c.size("tensor count");
  const kvCount = c.size("metadata count");
  if ((tensorCount + kvCount) * 12 > fileSize) {
    throw new FormatError(source, `${tensorCount} tensors and ${kvCount} metadata entries cannot fit in ${fileSize} bytes`);
  }

  const metadata = new Map<string, GgufEntry>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`key of metadata entry ${i}`);
    const type = c.u32(`type of metadata ${key}`);
    if (!isTypeCode(type)) throw new FormatError(source, `metadata ${key}: unknown value type ${type}`);
    if (metadata.has(key)) throw new FormatError(source, `metadata ${key} appears twice`);
    const at = c.pos;
    let itemType: GgufTypeCode | undefined;
    if (type === GgufType.ARRAY) {
      c.need(4, `metadata ${key}`);
      itemType = new DataView(bytes.buffer, bytes.byteOffset + at, 4).getUint32(0, true) as GgufTypeCode;
    }
    const value = readValue(c, type, `metadata ${key}`, source);
    metadata.set(key, itemType === undefined ? { type, value } : { type, itemType, value });
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const align = metadata.get("general.alignment");
  if (align) {
    const a = align.value;
    if (align.type !== GgufType.UINT32 || typeof a !== "number" || a === 0 || (a & (a - 1)) !== 0) {
      throw new FormatError(source, `metadata general.alignment must be a power-of-two uint32, got ${String(a)}`);
    }
    alignment = a;
  }

  const raw: { name: string; dims: number[]; ggmlType: number; rel: bigint }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`name of tensor ${i}`);
    if (names.has(name)) throw new FormatError(source, `tensor ${name} appears twice`);
    names.add(name);
    const nDims = c.u32(`tensor ${name} dimension count`);
    if (nDims < 1 || nDims > MAX_DIMS) throw new FormatError(source, `tensor ${name} has ${nDims} dimensions (1..${MAX_DIMS} allowed)`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const v = c.u64(`tensor ${name} dimension ${d}`);
      if (v === 0n || v > BigInt(fileSize) * 8n) throw new FormatError(source, `tensor ${name} dimension ${d} is ${v}, not a plausible size`);
      dims.push(Number(v));
    }
    const ggmlType = c.u32(`tensor ${name} type`);
    const rel = c.u64(`tensor ${name} offset`);
    raw.push({ name, dims, ggmlType, rel });
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;

  const tensors: GgufTensorInfo[] = raw.map(({ name, dims, ggmlType, rel }) => {
    if (rel % BigInt(alignment) !== 0n) {
      throw new FormatError(source, `tensor ${name}: data offset ${rel} is not a multiple of the alignment ${alignment}`);
    }
    const offset = dataOffset + Number(rel);
    const dtype = dtypeOfGgmlType(ggmlType);
    let byteLength: number | undefined;
    if (dtype) {
      const count = dims.reduce((a, b) => a * b, 1);
      if (dims[0]! % (dtype === "q8_0" || dtype === "q4_0" ? 32 : 1) !== 0) {
        throw new FormatError(source, `tensor ${name}: ${ggmlTypeName(ggmlType)} rows of ${dims[0]} elements do not fill whole blocks of 32`);
      }
      byteLength = byteSize(dtype, count);
      if (rel > BigInt(fileSize) || offset + byteLength > fileSize) {
        throw new FormatError(source, `tensor ${name}: its data (bytes ${offset}..${offset + byteLength}) lies outside the file of ${fileSize} bytes; the file is truncated or its offsets are wrong`);
      }
    }
    return byteLength === undefined ? { name, dims, ggmlType, offset } : { name, dims, ggmlType, offset, byteLength };
  });
  return { source, version, metadata, tensors, alignment, dataOffset, fileSize };
}

/** Parses the header of a GGUF file held in memory. */
export function parseGgufHeader(bytes: Uint8Array, source = "<memory>"): GgufHeader {
  return parseHeader(bytes, bytes.byteLength, source);
}

/** Reads and parses the header of a GGUF file, reading only as much of the file as the header takes. */
export async function readGgufHeader(path: string): Promise<GgufHeader> {
  const fh = await openFile(path);
  try {
    const fileSize = (await fh.stat()).size;
    let want = Math.min(fileSize, 1 << 20);
    for (;;) {
      const bytes = new Uint8Array(want);
      await readFully(fh, bytes, 0, path);
      try {
        return parseHeader(bytes, fileSize, path);
      } catch (e) {
        if (!(e instanceof OutOfBytes)) throw e;
        want = Math.min(fileSize, want * 4);
      }
    }
  } finally {
    await fh.close();
  }
}

/** node:fs is loaded on first use, so that the byte-level parser above also runs in browsers. */
async function openFile(path: string): Promise<FileHandle> {
  const { open } = await import("node:fs/promises");
  return open(path, "r");
}

async function readFully(fh: FileHandle, into: Uint8Array, position: number, source: string): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await fh.read(into, done, into.byteLength - done, position + done);
    if (bytesRead === 0) throw new FormatError(source, `truncated: wanted bytes ${position}..${position + into.byteLength}, the file ended at ${position + done}`);
    done += bytesRead;
  }
}

/**
 * Reads the data of tensors from a GGUF file, each into its own buffer (so typed views of it are
 * aligned). Every tensor must be of a type this engine reads.
 */
export async function readGgufTensors(
  header: GgufHeader,
  infos: readonly GgufTensorInfo[],
  onTensor: (info: GgufTensorInfo, data: Uint8Array) => void,
): Promise<void> {
  const fh = await openFile(header.source);
  try {
    for (const info of infos) {
      if (info.byteLength === undefined) {
        throw new FormatError(header.source, `tensor ${info.name} has type ${ggmlTypeName(info.ggmlType)} (${info.ggmlType}), which this engine cannot read`);
      }
      const data = new Uint8Array(info.byteLength);
      await readFully(fh, data, info.offset, header.source);
      onTensor(info, data);
    }
  } finally {
    await fh.close();
  }
}

/** Typed access to metadata, with errors that name the key. */
export class GgufMetadata {
  constructor(
    readonly entries: ReadonlyMap<string, GgufEntry>,
    readonly source: string,
  ) {}

  has(key: string): boolean {
    return this.entries.has(key);
  }
  private missing(key: string): never {
    throw new FormatError(this.source, `missing metadata key ${key}`);
  }
  private wrong(key: string, want: string, v: GgufValue): never {
    throw new FormatError(this.source, `metadata ${key} should be ${want}, got ${JSON.stringify(v, (_, x) => (typeof x === "bigint" ? String(x) : x))?.slice(0, 80)}`);
  }
  optNumber(key: string): number | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (typeof e.value !== "number" || !Number.isFinite(e.value)) this.wrong(key, "a number", e.value);
    return e.value;
  }
  number(key: string): number {
    return this.optNumber(key) ?? this.missing(key);
  }
  /** A positive integer; per-layer arrays are accepted when all their entries agree. */
  optCount(key: string): number | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const v = Array.isArray(e.value) ? [...new Set(e.value)] : [e.value];
    if (v.length !== 1) throw new FormatError(this.source, `metadata ${key} differs between layers (${v.slice(0, 4).join(", ")}...); per-layer sizes are not supported`);
    const n = v[0];
    if (typeof n !== "number" || !Number.isInteger(n) || n <= 0) this.wrong(key, "a positive integer", e.value);
    return n;
  }
  count(key: string): number {
    return this.optCount(key) ?? this.missing(key);
  }
  optString(key: string): string | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (typeof e.value !== "string") this.wrong(key, "a string", e.value);
    return e.value;
  }
  string(key: string): string {
    return this.optString(key) ?? this.missing(key);
  }
  optBool(key: string): boolean | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (typeof e.value !== "boolean") this.wrong(key, "a boolean", e.value);
    return e.value;
  }
  optId(key: string, vocab: number): number | undefined {
    const id = this.optNumber(key);
    if (id === undefined) return undefined;
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new FormatError(this.source, `metadata ${key} = ${id} is outside the vocabulary [0, ${vocab})`);
    }
    return id;
  }
  optStrings(key: string): string[] | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (!Array.isArray(e.value) || e.value.some((x) => typeof x !== "string")) this.wrong(key, "an array of strings", e.value);
    return e.value as string[];
  }
  optNumbers(key: string): number[] | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (!Array.isArray(e.value) || e.value.some((x) => typeof x !== "number")) this.wrong(key, "an array of numbers", e.value);
    return e.value as number[];
  }
}
