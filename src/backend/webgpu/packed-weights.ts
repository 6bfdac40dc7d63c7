/**
 * GPU layout of the packed formats (src/quant), built for the GEMV as the q4_0 tiles of weights.ts are: a
 * 32-lane team loads 16 bytes a lane, 512 contiguous bytes a load, and x in the same tile order.
 *
 * 4-bit formats (tile = 1024 weights = 512 bytes a row): lane l's 16 bytes hold weights 4l + 128v + e
 * (v = 0..7, e = 0..3); word j of the lane holds v = 2j in bits 0..15 and v = 2j + 1 in bits 16..31, weight e
 * at bits 4e of its half. The formats' own order (8 weights a u32, low nibble first) moves in 16-bit halves:
 * weights 8i..8i+3 (low half) go to lane 2(i mod 16), 8i+4..8i+7 (high half) to lane 2(i mod 16) + 1.
 * Rows are padded to whole tiles; padding codes are 0 and the kernels read x there as 0.
 *
 * Scales: every lane of a load needs the scales of its 8 weights-quads (v = 0..7), as pairs (v = 2j, 2j + 1)
 * in one u32 (the pair words of src/quant/wgsl/decode.ts), so the scales of a tile are grouped by the lanes
 * that share them ("classes"), one aligned load each:
 * - fp4, razer (g128, 16 bits): a tile's 8 groups in order, 4 words (one vec4, shared by all lanes).
 * - nf4 (g64, 16 bits): group 2v + h of the tile for lane half h = l >> 4; order [h][v], 8 words.
 * - nvfp4, nvfp4-razer (g16, 8 bits): group 8v + c for lane class c = l >> 2; order [c][v], 16 words
 *   (one vec2 a class).
 * - int4-asym (g128, f16 scale + f16 zero point): 4 words of scale pairs, then 4 words of zero pairs.
 * The scale bits per weight stay those of the format (no widening), except that rows pad to whole tiles.
 *
 * int8 (tile = 512 weights): lane l's word v holds weights 4l + 128v + (0..3), as q8_0's tiles; the f32 row
 * scale is one word a row, applied once to the row's sum.
 *
 * The per-tensor factors (RaZeR's scaleMul, NVFP4's g) and the powers of two of the decoders are one f32,
 * `mul`, applied to each sum.
 */
import { quantFormat } from "../../quant/formats.js";
import { groupsPerRow } from "../../quant/format.js";
import { rawToPacked } from "../../quant/packed-raw.js";
import { PACKED_WGSL } from "../../quant/wgsl/decode.js";
import type { PackedDType } from "../../tensor/dtype.js";
import type { RawTensor } from "../../tensor/raw.js";
import type { BufferPool } from "./buffers.js";
import { GpuWeight, type RazerRuns, type WeightPart } from "./weights.js";
import { GEMV_DECODE_VARIANTS } from "../../quant/wgsl/decode.js";
import { gemvDecodeOf } from "./kernels/packed.js";
import { razerRunsLayout } from "./kernels/lane-blocks.js";

/** Weights a GPU tile holds per row. */
export const packedTile = (f: PackedDType): number => (PACKED_WGSL[f].codeBits === 4 ? 1024 : 512);

/** Scale words a tile holds per row (int8: the row's one word). */
export function packedScaleWords(f: PackedDType): number {
  const d = PACKED_WGSL[f];
  if (d.group === 0) return 1;
  return ((1024 / d.group) * d.scaleBits) / 32;
}

/** The 4-byte-aligned words of `b` (copied when misaligned or not a multiple of 4 bytes). */
function words(b: Uint8Array): Uint32Array {
  const a = b.byteOffset % 4 === 0 && b.byteLength % 4 === 0 ? b : Uint8Array.from(b);
  if (a.byteLength % 4 !== 0) {
    const c = new Uint8Array(Math.ceil(a.byteLength / 4) * 4);
    c.set(a);
    return new Uint32Array(c.buffer);
  }
  return new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4);
}

/** The 16-bit halves of `b` (copied when misaligned). */
function halves(b: Uint8Array): Uint16Array {
  const a = b.byteOffset % 2 === 0 ? b : Uint8Array.from(b);
  return new Uint16Array(a.buffer, a.byteOffset, a.byteLength >> 1);
}

/** Repacks a packed-dtype tensor into the layout above and uploads it, in parts of at most `maxBinding` bytes. */
export function uploadPacked(raw: RawTensor, pool: BufferPool, maxBinding: number): GpuWeight {
  const format = raw.dtype as PackedDType;
  const d = PACKED_WGSL[format];
  const p = rawToPacked(raw);
  const N = p.rows;
  const K = p.cols;
  const tile = packedTile(format);
  const T = Math.ceil(K / tile);
  const codeWords = (T * tile * d.codeBits) / 32;
  const scaleWords = d.group === 0 ? 1 : T * packedScaleWords(format);
  const rowsPerPart = Math.floor(maxBinding / (4 * Math.max(codeWords, scaleWords)));
  if (rowsPerPart < 1) throw new Error(`weight ${raw.name}: one row exceeds the largest GPU binding (${maxBinding})`);
  const mul = d.group === 0 ? 1 : p.tensorScale / (d.unit * d.scaleUnit);
  if (!Number.isFinite(mul)) throw new Error(`weight ${raw.name}: tensor scale ${p.tensorScale} is not finite`);
  const srcScales = words(p.scales);
  const codes = d.codeBits === 4 ? halves(p.codes) : undefined;
  const parts: WeightPart[] = [];
  for (let r0 = 0; r0 < N; r0 += rowsPerPart) {
    const rows = Math.min(rowsPerPart, N - r0);
    const q = new Uint32Array(rows * codeWords);
    const s = new Uint32Array(rows * scaleWords);
    for (let r = 0; r < rows; r++) {
      if (codes) tileNibbleRow(codes, r0 + r, K, d.group, new Uint16Array(q.buffer, r * codeWords * 4, codeWords * 2));
      else tileByteRow(p.codes.subarray((r0 + r) * K, (r0 + r + 1) * K), q.subarray(r * codeWords, (r + 1) * codeWords));
      if (d.group === 0) s[r] = srcScales[r0 + r]!;
      else tileScaleRow(format, p.scales, r0 + r, K, s.subarray(r * scaleWords, (r + 1) * scaleWords));
    }
    parts.push({
      rowStart: r0,
      rows,
      data: pool.upload(new Uint8Array(q.buffer), raw.name),
      scales: pool.upload(new Uint8Array(s.buffer), `${raw.name} scales`),
    });
  }
  return new GpuWeight(raw.name, format, raw.shape, format, codeWords, T, parts, mul, true, runsCopy(raw.name, format, p.codes, p.scales, p.tensorScale, N, K, parts, pool));
}

/**
 * RaZeR's runs copy (kernels/lane-blocks.ts) when the selected GEMV decode variant asks for it and rows
 * are whole groups (K a multiple of 128), with the tile parts' row ranges; undefined otherwise.
 */
function runsCopy(name: string, format: PackedDType, codes: Uint8Array, scales: Uint8Array, tensorScale: number, N: number, K: number, tiles: readonly WeightPart[], pool: BufferPool): RazerRuns | undefined {
  const v = gemvDecodeOf(format);
  if (format !== "razer" || v === undefined || !GEMV_DECODE_VARIANTS.razer?.[v]?.runs || K % 128 !== 0) return undefined;
  const rowBytes = K / 2;
  const scaleRowBytes = scales.length / N;
  let srow = 0;
  const parts = tiles.map((t) => {
    const r = razerRunsLayout("swar", t.rows, K, codes.subarray(t.rowStart * rowBytes, (t.rowStart + t.rows) * rowBytes), scales.subarray(t.rowStart * scaleRowBytes, (t.rowStart + t.rows) * scaleRowBytes));
    srow = r.srow;
    return {
      rowStart: t.rowStart,
      rows: t.rows,
      data: pool.upload(new Uint8Array(r.w.buffer), `${name} runs`),
      scales: pool.upload(new Uint8Array(r.sc.buffer), `${name} runs scales`),
    };
  });
  return { parts, srow, mul: tensorScale };
}

/**
 * Where each 16-bit half of a tile's 128 source words goes: source half 2i (weights 8i..8i+3) to lane
 * 2(i mod 16), half 2i + 1 to lane 2(i mod 16) + 1, in word v >> 1, half v & 1 (v = i >> 4). Halves, not
 * nibbles, move: a permutation of u16s (little-endian, as WebGPU buffers are).
 */
const NIBBLE_TILE_PERM = Uint16Array.from({ length: 256 }, (_, h) => {
  const i = h >> 1;
  const v = (i >> 4) & 7;
  const lane = 2 * (i & 15) + (h & 1);
  return 2 * (4 * lane + (v >> 1)) + (v & 1);
});

/** One row of 4-bit codes (the formats' rows are padded to whole groups) into tile order. */
function tileNibbleRow(src: Uint16Array, row: number, K: number, g: number, dst: Uint16Array): void {
  const n = (groupsPerRow(K, g) * g) / 4; // source halves a row
  const base = row * n;
  const whole = n - (n % 256);
  for (let t = 0; t < whole; t += 256) {
    const s = base + t;
    for (let h = 0; h < 256; h++) dst[t + NIBBLE_TILE_PERM[h]!] = src[s + h]!;
  }
  for (let h = whole; h < n; h++) dst[whole + NIBBLE_TILE_PERM[h - whole]!] = src[base + h]!;
}

/** Where each source word (4 weights) of a 512-weight int8 tile goes: lane l's word v = weights 4l + 128v + 0..3. */
const BYTE_TILE_PERM = Uint8Array.from({ length: 128 }, (_, i) => 4 * (i & 31) + (i >> 5));

/** One row of int8 codes into tile order. */
function tileByteRow(src: Uint8Array, dst: Uint32Array): void {
  let w: Uint32Array;
  if (src.byteOffset % 4 === 0 && src.byteLength % 4 === 0) w = new Uint32Array(src.buffer, src.byteOffset, src.byteLength / 4);
  else {
    const padded = new Uint8Array(Math.ceil(src.byteLength / 4) * 4);
    padded.set(src);
    w = new Uint32Array(padded.buffer);
  }
  for (let i = 0; i < w.length; i++) dst[(i & ~127) + BYTE_TILE_PERM[i & 127]!] = w[i]!;
}

/** One row of scales into the tile-class order of the header. */
function tileScaleRow(format: PackedDType, src: Uint8Array, row: number, K: number, dst: Uint32Array): void {
  const f = quantFormat(format);
  const g = f.groupSize;
  const ng = groupsPerRow(K, g);
  const { scaleBytes } = f.layout(1, K);
  const at = row * scaleBytes;
  if (format === "nvfp4" || format === "nvfp4-razer") {
    const out = new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength);
    for (let gi = 0; gi < ng; gi++) out[64 * (gi >> 6) + 8 * (gi & 7) + ((gi >> 3) & 7)] = src[at + gi]!;
    return;
  }
  const out = new Uint16Array(dst.buffer, dst.byteOffset, dst.byteLength / 2);
  const u16 = (i: number) => src[at + 2 * i]! | (src[at + 2 * i + 1]! << 8);
  for (let gi = 0; gi < ng; gi++) {
    if (format === "nf4") out[16 * (gi >> 4) + 8 * (gi & 1) + ((gi >> 1) & 7)] = u16(gi);
    else if (format === "int4-asym") {
      out[16 * (gi >> 3) + (gi & 7)] = u16(2 * gi);
      out[16 * (gi >> 3) + 8 + (gi & 7)] = u16(2 * gi + 1);
    } else out[gi] = u16(gi); // fp4, razer: group order (razer rows are padded to an even count of words)
  }
}
