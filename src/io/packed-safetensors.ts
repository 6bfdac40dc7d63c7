/**
 * Quantized tensors in safetensors files. safetensors has no dtype for Frugal's packed formats, so a packed
 * tensor is stored as a 1-D "U8" tensor of its RawTensor bytes (codes, then scales, then the f32 tensor
 * scale; src/quant/packed-raw.ts) and the header's __metadata__ (a string-to-string map) names its format
 * and logical shape under the key "frugal.quant.<tensor name>", as JSON: {"format":"razer","shape":[512,512]}.
 * "frugal.quantization" records how the file was made (informational). Other tools see plain U8 arrays.
 */
import { writeFile } from "node:fs/promises";
import { isPackedDType, type DType } from "../tensor/dtype.js";
import type { RawTensor } from "../tensor/raw.js";
import { tensorBytes } from "../quant/packed-raw.js";
import { FormatError } from "./errors.js";

export const QUANT_KEY_PREFIX = "frugal.quant.";

/**
 * The dtype and logical shape of the U8 tensor `name` (`bytes` long) from the file's metadata; FormatError
 * naming the tensor and the field when the metadata is missing or wrong.
 */
export function packedEntry(name: string, bytes: number, metadata: Readonly<Record<string, unknown>>, source: string): { dtype: DType; shape: number[] } {
  const key = QUANT_KEY_PREFIX + name;
  const text = metadata[key];
  if (text === undefined) throw new FormatError(source, `tensor ${name} is U8 but __metadata__ has no "${key}" naming its quantization format`);
  if (typeof text !== "string") throw new FormatError(source, `tensor ${name}: __metadata__["${key}"] is not a string`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FormatError(source, `tensor ${name}: __metadata__["${key}"] is not JSON (${(e as Error).message})`);
  }
  const { format, shape } = (typeof v === "object" && v !== null ? v : {}) as { format?: unknown; shape?: unknown };
  if (typeof format !== "string" || !isPackedDType(format)) {
    throw new FormatError(source, `tensor ${name}: quantization field "format" is ${JSON.stringify(format)}, not a known packed format`);
  }
  if (!Array.isArray(shape) || shape.length < 1 || shape.length > 2 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new FormatError(source, `tensor ${name}: quantization field "shape" is ${JSON.stringify(shape)}, not a list of 1 or 2 positive integers`);
  }
  const need = tensorBytes(format, shape as number[]);
  if (need !== bytes) throw new FormatError(source, `tensor ${name}: ${format} [${shape.join(", ")}] needs ${need} bytes, the file holds ${bytes}`);
  return { dtype: format, shape: shape as number[] };
}

const WRITE_DTYPES: Partial<Record<DType, string>> = { f32: "F32", f16: "F16", bf16: "BF16" };

/** Writes `tensors` (plain f32/f16/bf16 or packed) to a safetensors file with `metadata` (strings). */
export async function writeSafetensors(path: string, tensors: readonly RawTensor[], metadata: Record<string, string> = {}): Promise<void> {
  const header: Record<string, unknown> = {};
  const meta: Record<string, string> = { ...metadata };
  let at = 0;
  for (const t of tensors) {
    const end = at + t.data.byteLength;
    if (isPackedDType(t.dtype)) {
      header[t.name] = { dtype: "U8", shape: [t.data.byteLength], data_offsets: [at, end] };
      meta[QUANT_KEY_PREFIX + t.name] = JSON.stringify({ format: t.dtype, shape: t.shape });
    } else {
      const dtype = WRITE_DTYPES[t.dtype];
      if (!dtype) throw new Error(`tensor ${t.name}: ${t.dtype} cannot be written to safetensors`);
      header[t.name] = { dtype, shape: t.shape, data_offsets: [at, end] };
    }
    at = end;
  }
  header["__metadata__"] = meta;
  let json = JSON.stringify(header);
  // the data region starts 8-byte aligned, as the reference writer pads it
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.from(json, "utf8");
  const out = Buffer.allocUnsafe(8 + head.byteLength + at);
  out.writeBigUInt64LE(BigInt(head.byteLength), 0);
  head.copy(out, 8);
  let p = 8 + head.byteLength;
  for (const t of tensors) {
    out.set(t.data, p);
    p += t.data.byteLength;
  }
  await writeFile(path, out);
}
