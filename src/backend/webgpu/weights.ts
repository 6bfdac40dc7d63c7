/**
 * Weights on the GPU, laid out for the GEMV (batch-1 matmul, the decode hot path), which streams every
 * weight once: a 32-lane team loads 16 bytes a lane (one vec4<u32>), 512 contiguous bytes a load. The
 * x values those bytes multiply must be coalesced too, or L1 traffic for x, not DRAM, bounds the kernel
 * (16 bytes of q4_0 need 128 bytes of x). So rows are cut into tiles of 512 bytes, and inside a tile the
 * elements are permuted so that lane l's 16 bytes hold elements 4l + 128v + (0..3), v = 0, 1, ...: lane l
 * then reads x as vec4 number l + 32v of the tile, and a team's x loads are 512 contiguous bytes as well.
 *
 * - f32: a 16-byte load is 4 elements; that is already the tile order, nothing moves.
 * - f16, bf16 (tile = 256 elements): lane l's words 0,1 are elements 4l..4l+3, words 2,3 are 128+4l..+3.
 * - q8_0 (tile = 16 blocks = 512 elements): lane l = 8g + h, word v is quant word h (bytes 4h..4h+3) of
 *   block g + 4v; its 4 scales (blocks g, g+4, g+8, g+12) sit together, tile scales ordered [g][v].
 * - q4_0 (tile = 32 blocks = 1024 elements): lane l = 8g + h, word j holds v = 2j in bits 0-15 and
 *   v = 2j+1 in bits 16-31, four nibbles each (element e at bits 4e): block g + 4v, in-block elements
 *   4h..4h+3 (h < 4: the low nibbles of bytes 4h..; h >= 4: the high nibbles of bytes 4(h-4)..). Scales of
 *   lane group g (blocks g, g+4, ..., g+28) are 16 contiguous bytes, tile scales ordered [g][v].
 *
 * The part of a row past its last whole tile keeps the file's order. q4_0 has a second layout, "blocks":
 * no tiles, every row in the file's order (block b of row r at r * blocks + b), for the int8-activation
 * GEMV in which a lane owns whole blocks (kernels/gemv-i8.ts; architecture.md decision 25). Every kernel
 * that reads q4_0 takes the weight's layout (`tiled`) as a compile-time flag.
 *
 * Block formats split the GGUF blocks
 * (34 / 18 bytes, not word-aligned) into quants (32 / 16 bytes a block, rows contiguous) and f16 scales
 * with a row stride of a multiple of 8 (so a lane group's 8 scales are one aligned 16-byte load). Bytes
 * read per weight stay those of the file (8.5 / 4.5 bits; padding blocks to 36 / 20 bytes would read 6% /
 * 11% more). Plain formats pad rows to a multiple of 8 elements only when they are not (odd test shapes).
 *
 * A weight larger than the device's largest storage binding is split by rows into parts; every kernel
 * that reads weights runs once per part.
 */
import type { Weight } from "../backend.js";
import { type BlockDType as DType, type PackedDType, isBlockDType, isPackedDType } from "../../tensor/dtype.js";
import type { RawTensor } from "../../tensor/raw.js";
import { decodeRow } from "../cpu/reference.js";
import type { Buf, BufferPool } from "./buffers.js";
import { quantFormat } from "../../quant/formats.js";
import { rawToPacked } from "../../quant/packed-raw.js";
import { uploadPacked } from "./packed-weights.js";

/** A weight's layout on the GPU: a block format (this file) or a packed format (packed-weights.ts). */
export type GpuFormat = DType | PackedDType;

/** q4_0's layout on the GPU: "tiles" (the f32-x GEMV's coalesced order) or "blocks" (the file's order). */
export type Q4Layout = "tiles" | "blocks";
export const Q4_LAYOUTS: readonly Q4Layout[] = ["tiles", "blocks"];

export interface WeightPart {
  readonly rowStart: number;
  readonly rows: number;
  /** Plain: rows of `stride` words. Blocks: quants, `blocks` blocks a row. */
  readonly data: Buf;
  /** Block formats: f16 scales, one a block, two a word. */
  readonly scales?: Buf;
}

/**
 * A second copy of a RaZeR weight in kernels/lane-blocks.ts's "runs" layout, parted like the weight:
 * parts[i].data the runs, parts[i].scales the file's scale words (`srow` u32s a row); `mul` the tensor scale.
 */
export interface RazerRuns {
  readonly parts: readonly WeightPart[];
  readonly srow: number;
  readonly mul: number;
}

export class GpuWeight implements Weight {
  constructor(
    readonly name: string,
    readonly dtype: GpuFormat,
    readonly shape: readonly number[],
    /** The layout on the GPU: 1-D weights (norms, biases) are widened to f32. */
    readonly format: GpuFormat,
    /** Words per row (plain and packed formats). */
    readonly stride: number,
    /** Blocks per row (block formats); tiles per row (packed formats). */
    readonly blocks: number,
    readonly parts: readonly WeightPart[],
    /** Packed formats: the f32 factor every row sum is multiplied by (packed-weights.ts). */
    readonly mul = 1,
    /** Whether whole tiles are in tile order (false: a q4_0 weight in the "blocks" layout). */
    readonly tiled = true,
    /** RaZeR uploaded under the "runs-i8" GEMV variant: the same weights in the runs layout (packed-weights.ts). */
    readonly runs?: RazerRuns,
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
  get isPacked(): boolean {
    return isPackedDType(this.format);
  }
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** Elements of one 512-byte tile (32 lanes x 16 bytes); f32 is stored as is. */
export const TILE_ELEMS: Record<DType, number> = { f32: 128, f16: 256, bf16: 256, q8_0: 512, q4_0: 1024 };

/** f16 scales a row of `blocks` blocks occupies in the scales array (a multiple of 8: 16 bytes). */
export const scaleStride = (blocks: number) => roundUp(blocks, 8);

/**
 * Repacks `raw` into the GPU layout and uploads it, split so that no part exceeds `maxBinding` bytes;
 * q4_0 in `q4Layout`.
 */
export function uploadWeight(raw: RawTensor, pool: BufferPool, maxBinding: number, q4Layout: Q4Layout = "tiles"): GpuWeight {
  const K = raw.shape[raw.shape.length - 1]!;
  const N = raw.shape.length === 1 ? 1 : raw.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  if (isPackedDType(raw.dtype)) {
    if (raw.shape.length > 1) return uploadPacked(raw, pool, maxBinding);
    // a packed 1-D weight (a norm) is decoded to f32 like the block formats' ones below
    const f = quantFormat(raw.dtype).unpack(rawToPacked(raw));
    return uploadWeight({ name: raw.name, dtype: "f32", shape: raw.shape, data: new Uint8Array(f.buffer) }, pool, maxBinding);
  }
  if (!isBlockDType(raw.dtype)) throw new Error(`weight ${raw.name}: the WebGPU backend has no ${raw.dtype} kernels`);
  let format: DType = raw.dtype;
  let bytes = raw.data;
  if (raw.shape.length === 1 && format !== "f32") {
    // norms and biases: tiny, and every kernel that reads them then needs only an f32 path
    const f = new Float32Array(K);
    decodeRow(format, raw.data, 0, K, f);
    bytes = new Uint8Array(f.buffer);
    format = "f32";
  }
  if (format === "q8_0" || format === "q4_0") return uploadBlocks(raw, format, N, K, pool, maxBinding, format === "q4_0" && q4Layout === "blocks");

  const elemBytes = format === "f32" ? 4 : 2;
  const rowBytes = K * elemBytes;
  const strideBytes = roundUp(K, 8) * elemBytes;
  const rowsPerPart = Math.floor(maxBinding / strideBytes);
  if (rowsPerPart < 1) throw new Error(`weight ${raw.name}: one row of ${strideBytes} bytes exceeds the largest GPU binding (${maxBinding})`);
  const tiles = format === "f32" ? 0 : Math.floor(K / TILE_ELEMS[format]);
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
    if (tiles > 0) data = tileHalfRows(data, rows, strideBytes / 4, tiles);
    parts.push({ rowStart: r0, rows, data: pool.upload(data, raw.name) });
  }
  return new GpuWeight(raw.name, raw.dtype, raw.shape, format, strideBytes / 4, 0, parts);
}

/** A 4-byte-aligned Uint32Array over `b` (copied when it is not aligned). */
function words(b: Uint8Array): Uint32Array {
  const a = b.byteOffset % 4 === 0 ? b : b.slice();
  return new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4);
}

/** f16/bf16 rows of `stride` words into tile order: lane l gets words 2l, 2l+1 and 64+2l, 65+2l of each tile. */
function tileHalfRows(data: Uint8Array, rows: number, stride: number, tiles: number): Uint8Array {
  const src = words(data);
  const dst = new Uint32Array(src.length);
  for (let r = 0; r < rows; r++) {
    const row = r * stride;
    for (let t = 0; t < tiles; t++) {
      const tb = row + t * 128;
      for (let l = 0; l < 32; l++) {
        const d = tb + 4 * l;
        const s = tb + 2 * l;
        dst[d] = src[s]!;
        dst[d + 1] = src[s + 1]!;
        dst[d + 2] = src[s + 64]!;
        dst[d + 3] = src[s + 65]!;
      }
    }
    const rest = row + tiles * 128;
    dst.set(src.subarray(rest, row + stride), rest);
  }
  return new Uint8Array(dst.buffer);
}

/** The four nibbles at bits 0, 8, 16, 24 of `n` packed into bits 0..15. */
const squeeze = (n: number) => (n & 0xf) | ((n >>> 4) & 0xf0) | ((n >>> 8) & 0xf00) | ((n >>> 12) & 0xf000);

function uploadBlocks(raw: RawTensor, format: "q8_0" | "q4_0", N: number, K: number, pool: BufferPool, maxBinding: number, untiled: boolean): GpuWeight {
  if (K % 32 !== 0) throw new Error(`weight ${raw.name}: ${format} rows of ${K} elements do not fill whole 32-element blocks`);
  const blocks = K / 32;
  const q8 = format === "q8_0";
  const qWords = q8 ? 8 : 4;
  const blockBytes = 4 * qWords + 2;
  const ss = scaleStride(blocks);
  const rowsPerPart = Math.floor(maxBinding / Math.max(blocks * qWords * 4, ss * 2));
  if (rowsPerPart < 1) throw new Error(`weight ${raw.name}: one row exceeds the largest GPU binding (${maxBinding})`);
  const tileBlocks = TILE_ELEMS[format] / 32;
  const tiles = untiled ? 0 : Math.floor(blocks / tileBlocks);
  const src = raw.data;
  const word = (p: number) => (src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24)) >>> 0;
  const parts: WeightPart[] = [];
  for (let r0 = 0; r0 < N; r0 += rowsPerPart) {
    const rows = Math.min(rowsPerPart, N - r0);
    const quants = new Uint32Array(rows * blocks * qWords);
    const scales = new Uint16Array(rows * ss);
    for (let r = 0; r < rows; r++) {
      const qRow = r * blocks * qWords;
      const sRow = r * ss;
      let p = (r0 + r) * blocks * blockBytes;
      for (let b = 0; b < blocks; b++, p += blockBytes) {
        const scale = src[p]! | (src[p + 1]! << 8);
        const t = Math.floor(b / tileBlocks);
        if (t >= tiles) {
          scales[sRow + b] = scale;
          for (let k = 0; k < qWords; k++) quants[qRow + b * qWords + k] = word(p + 2 + 4 * k);
          continue;
        }
        const bt = b - t * tileBlocks;
        const g = bt & 3;
        const v = bt >> 2;
        const tq = qRow + t * 128;
        if (q8) {
          scales[sRow + t * 16 + 4 * g + v] = scale;
          for (let h = 0; h < 8; h++) quants[tq + 32 * g + 4 * h + v] = word(p + 2 + 4 * h);
        } else {
          scales[sRow + t * 32 + 8 * g + v] = scale;
          const shift = 16 * (v & 1);
          for (let h = 0; h < 4; h++) {
            const w = word(p + 2 + 4 * h);
            quants[tq + 4 * (8 * g + h) + (v >> 1)]! |= squeeze(w & 0x0f0f0f0f) << shift;
            quants[tq + 4 * (8 * g + h + 4) + (v >> 1)]! |= squeeze((w >>> 4) & 0x0f0f0f0f) << shift;
          }
        }
      }
    }
    parts.push({ rowStart: r0, rows, data: pool.upload(new Uint8Array(quants.buffer), raw.name), scales: pool.upload(new Uint8Array(scales.buffer), `${raw.name} scales`) });
  }
  return new GpuWeight(raw.name, format, raw.shape, format, 0, blocks, parts, 1, !untiled);
}

/**
 * WGSL decoders shared by the kernels that read weights. `nib4(h)` gives the nibbles at bits 0, 4, 8, 12
 * of h minus 8 and `i8f(u)` the four int8 of u, both without int-to-float conversions (a quarter-rate
 * instruction on NVIDIA, which bounded the old kernels): a value v placed in the mantissa of 2^23
 * (bits | 0x4B000000) is the float 2^23 + v scaled by a power of two, and one fma scales and subtracts the
 * offset exactly.
 */
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
fn nib4(h: u32) -> vec4<f32> {
  let m = (vec4<u32>(h) & vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u)) | vec4<u32>(0x4b000000u);
  return fma(bitcast<vec4<f32>>(m), vec4<f32>(1.0, 0.0625, 0.00390625, 0.000244140625), vec4<f32>(-8388616.0, -524296.0, -32776.0, -2056.0));
}
fn i8f(u: u32) -> vec4<f32> {
  let b = u ^ 0x80808080u;
  let m = (vec4<u32>(b, b, b >> 16u, b >> 16u) & vec4<u32>(0xffu, 0xff00u, 0xffu, 0xff00u)) | vec4<u32>(0x4b000000u);
  return fma(bitcast<vec4<f32>>(m), vec4<f32>(1.0, 0.00390625, 1.0, 0.00390625), vec4<f32>(-8388736.0, -32896.0, -8388736.0, -32896.0));
}
`;

/** WGSL reading the f16 scale number `i` (row offsets included) from binding `sc: array<u32>`. */
export const SCALE_FN = /* wgsl */ `
fn scale(i: u32) -> f32 { return unpack2x16float(sc[i >> 1u])[i & 1u]; }
`;

/**
 * WGSL `fn wget(o: u32, i: u32) -> f32`: element i of row o, with `w: array<u32>`, `sc: array<u32>` and
 * uniform fields `p.stride` (words a row) and `p.blocks` (blocks a row).
 */
export function elementDecoder(format: DType, tiled = true): string {
  switch (format) {
    case "f32":
      return "fn wget(o: u32, i: u32) -> f32 { return bitcast<f32>(w[o * p.stride + i]); }";
    case "f16":
    case "bf16": {
      const d = format === "f16" ? "unpack2x16float" : "bf2";
      return `fn wget(o: u32, i: u32) -> f32 {
  var word = i >> 1u;
  if ((i >> 8u) < (p.stride >> 7u)) {
    let r = i & 255u;
    word = (i >> 8u) * 128u + ((r >> 2u) & 31u) * 4u + (r >> 7u) * 2u + ((r >> 1u) & 1u);
  }
  return ${d}(w[o * p.stride + word])[i & 1u];
}`;
    }
    case "q8_0":
      return `fn wget(o: u32, i: u32) -> f32 {
  var word = i >> 2u;
  var si = i >> 5u;
  if ((i >> 9u) < (p.blocks >> 4u)) {
    let t = i >> 9u;
    let r = i & 511u;
    let l = (r >> 2u) & 31u;
    word = t * 128u + l * 4u + (r >> 7u);
    si = t * 16u + (l >> 3u) * 4u + (r >> 7u);
  }
  let u = w[o * p.blocks * 8u + word];
  return f32(bitcast<i32>(u << (24u - 8u * (i & 3u))) >> 24u) * scale(o * ((p.blocks + 7u) & ~7u) + si);
}`;
    case "q4_0":
      return `fn wget(o: u32, i: u32) -> f32 {
  let j = i & 31u;
  var word = (i >> 5u) * 4u + (j & 15u) / 4u;
  var shift = 8u * (j & 3u) + 4u * (j / 16u);
  var si = i >> 5u;
  if (${tiled ? "(i >> 10u) < (p.blocks >> 5u)" : "false"}) {
    let t = i >> 10u;
    let r = i & 1023u;
    let v = r >> 7u;
    let l = (r >> 2u) & 31u;
    word = t * 128u + l * 4u + (v >> 1u);
    shift = 16u * (v & 1u) + 4u * (r & 3u);
    si = t * 32u + (l >> 3u) * 8u + v;
  }
  let u = w[o * p.blocks * 4u + word];
  return (f32((u >> shift) & 15u) - 8.0) * scale(o * ((p.blocks + 7u) & ~7u) + si);
}`;
  }
}
