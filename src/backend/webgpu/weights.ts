/**
 * Weights on the GPU. WGSL reads storage buffers in 4-byte words, and the GGUF blocks (34 bytes for
 * q8_0, 18 for q4_0) are not word-aligned, so upload repacks every block format into two arrays: the
 * quants of each row contiguous (32 or 16 bytes a block, so a 16-byte vector load covers half a q8_0
 * block or a whole q4_0 block) and the f16 scales packed two per word in a second buffer. This keeps
 * the bytes read per weight exactly those of the file (8.5 and 4.5 bits), where padding blocks to 36
 * or 20 bytes would read 6% or 11% more in a memory-bound GEMV. Plain formats keep their bytes, with
 * rows padded to a multiple of 8 elements only when they are not already (odd test shapes).
 *
 * A weight larger than the device's largest storage binding is split by rows into parts; every kernel
 * that reads weights runs once per part.
 */
import type { Weight } from "../backend.js";
import type { DType } from "../../tensor/dtype.js";
import type { RawTensor } from "../../tensor/raw.js";
import { decodeRow } from "../cpu/reference.js";
import type { Buf, BufferPool } from "./buffers.js";

export interface WeightPart {
  readonly rowStart: number;
  readonly rows: number;
  /** Plain: rows of `stride` words. Blocks: quants, `blocks` blocks a row. */
  readonly data: Buf;
  /** Block formats: f16 scales, one a block, two a word. */
  readonly scales?: Buf;
}

export class GpuWeight implements Weight {
  constructor(
    readonly name: string,
    readonly dtype: DType,
    readonly shape: readonly number[],
    /** The layout on the GPU: 1-D weights (norms, biases) are widened to f32. */
    readonly format: DType,
    /** Words per row (plain formats). */
    readonly stride: number,
    /** Blocks per row (block formats). */
    readonly blocks: number,
    readonly parts: readonly WeightPart[],
  ) {}
  get outFeatures(): number {
    return this.shape.length === 1 ? 1 : this.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  }
  get inFeatures(): number {
    return this.shape[this.shape.length - 1]!;
  }
  get isBlock(): boolean {
    return this.format === "q8_0" || this.format === "q4_0";
  }
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** Repacks `raw` into the GPU layout and uploads it, split so that no part exceeds `maxBinding` bytes. */
export function uploadWeight(raw: RawTensor, pool: BufferPool, maxBinding: number): GpuWeight {
  const K = raw.shape[raw.shape.length - 1]!;
  const N = raw.shape.length === 1 ? 1 : raw.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  let format = raw.dtype;
  let bytes = raw.data;
  if (raw.shape.length === 1 && format !== "f32") {
    // norms and biases: tiny, and every kernel that reads them then needs only an f32 path
    const f = new Float32Array(K);
    decodeRow(format, raw.data, 0, K, f);
    bytes = new Uint8Array(f.buffer);
    format = "f32";
  }
  if (format === "q8_0" || format === "q4_0") return uploadBlocks(raw, format, N, K, pool, maxBinding);

  const elemBytes = format === "f32" ? 4 : 2;
  const rowBytes = K * elemBytes;
  const strideBytes = roundUp(K, 8) * elemBytes;
  const rowsPerPart = Math.floor(maxBinding / strideBytes);
  if (rowsPerPart < 1) throw new Error(`weight ${raw.name}: one row of ${strideBytes} bytes exceeds the largest GPU binding (${maxBinding})`);
  const parts: WeightPart[] = [];
  for (let r0 = 0; r0 < N; r0 += rowsPerPart) {
    const rows = Math.min(rowsPerPart, N - r0);
    let data: Uint8Array;
    if (strideBytes === rowBytes) {
      data = bytes.subarray(r0 * rowBytes, (r0 + rows) * rowBytes);
    } else {
      data = new Uint8Array(rows * strideBytes);
      for (let r = 0; r < rows; r++) data.set(bytes.subarray((r0 + r) * rowBytes, (r0 + r + 1) * rowBytes), r * strideBytes);
    }
    parts.push({ rowStart: r0, rows, data: pool.upload(data, raw.name) });
  }
  return new GpuWeight(raw.name, raw.dtype, raw.shape, format, strideBytes / 4, 0, parts);
}

function uploadBlocks(raw: RawTensor, format: "q8_0" | "q4_0", N: number, K: number, pool: BufferPool, maxBinding: number): GpuWeight {
  if (K % 32 !== 0) throw new Error(`weight ${raw.name}: ${format} rows of ${K} elements do not fill whole 32-element blocks`);
  const blocks = K / 32;
  const blockBytes = format === "q8_0" ? 34 : 18;
  const quantBytes = blockBytes - 2;
  const rowsPerPart = Math.floor(maxBinding / (blocks * quantBytes));
  if (rowsPerPart < 1) throw new Error(`weight ${raw.name}: one row exceeds the largest GPU binding (${maxBinding})`);
  const src = raw.data;
  const parts: WeightPart[] = [];
  for (let r0 = 0; r0 < N; r0 += rowsPerPart) {
    const rows = Math.min(rowsPerPart, N - r0);
    const count = rows * blocks;
    const quants = new Uint8Array(count * quantBytes);
    const scales = new Uint8Array(roundUp(count * 2, 4));
    let p = r0 * blocks * blockBytes;
    for (let b = 0; b < count; b++, p += blockBytes) {
      scales[2 * b] = src[p]!;
      scales[2 * b + 1] = src[p + 1]!;
      quants.set(src.subarray(p + 2, p + blockBytes), b * quantBytes);
    }
    parts.push({ rowStart: r0, rows, data: pool.upload(quants, raw.name), scales: pool.upload(scales, `${raw.name} scales`) });
  }
  return new GpuWeight(raw.name, raw.dtype, raw.shape, format, 0, blocks, parts);
}

/** WGSL decoders shared by the kernels that read weights. */
export const DECODE_HELPERS = /* wgsl */ `
fn i8x4(u: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(u << 24u, u << 16u, u << 8u, u)) >> vec4<u32>(24u));
}
fn lo4(u: u32) -> vec4<f32> {
  return vec4<f32>(vec4<u32>(u, u >> 8u, u >> 16u, u >> 24u) & vec4<u32>(15u)) - 8.0;
}
fn hi4(u: u32) -> vec4<f32> {
  return vec4<f32>(vec4<u32>(u >> 4u, u >> 12u, u >> 20u, u >> 28u) & vec4<u32>(15u)) - 8.0;
}
fn bf2(u: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
}
`;

/** WGSL reading the f16 scale of block `i` from binding `sc`. */
export const SCALE_FN = /* wgsl */ `
fn scale(i: u32) -> f32 { return unpack2x16float(sc[i >> 1u])[i & 1u]; }
`;

/**
 * WGSL `fn wget(o: u32, i: u32) -> f32`: element i of row o, with `w: array<u32>`, `sc: array<u32>` and
 * uniform fields `p.stride` (words a row) and `p.blocks` (blocks a row).
 */
export function elementDecoder(format: DType): string {
  switch (format) {
    case "f32":
      return "fn wget(o: u32, i: u32) -> f32 { return bitcast<f32>(w[o * p.stride + i]); }";
    case "f16":
      return "fn wget(o: u32, i: u32) -> f32 { return unpack2x16float(w[o * p.stride + (i >> 1u)])[i & 1u]; }";
    case "bf16":
      return "fn wget(o: u32, i: u32) -> f32 { return bf2(w[o * p.stride + (i >> 1u)])[i & 1u]; }";
    case "q8_0":
      return `fn wget(o: u32, i: u32) -> f32 {
  let b = o * p.blocks + i / 32u;
  let j = i % 32u;
  let u = w[b * 8u + j / 4u];
  return f32(bitcast<i32>(u << (24u - 8u * (j % 4u))) >> 24u) * scale(b);
}`;
    case "q4_0":
      return `fn wget(o: u32, i: u32) -> f32 {
  let b = o * p.blocks + i / 32u;
  let j = i % 32u;
  let byte = j % 16u;
  let u = w[b * 4u + byte / 4u];
  return (f32((u >> (8u * (byte % 4u) + 4u * (j / 16u))) & 15u) - 8.0) * scale(b);
}`;
  }
}
