/**
 * The plug-in shape of a weight number format: a descriptor plus a CPU reference packer (f32 -> packed
 * codes and scales) and unpacker (packed -> f32). Weights are row-major [rows][cols]; groups run along a
 * row (the input channels), and a row whose length is not a multiple of the group size ends in a partial
 * group. The byte layouts are described in each format's file.
 */

/** Options of a packer. Each format ignores the ones it has no use for. */
export interface PackOptions {
  /**
   * Per-group clipping search: try clamping the group to ±max|w|·(1 − 0.05i), i = 0..10, quantize the clamped
   * values, and keep the choice with the lowest weight MSE against the unclamped weights (spec §8.2).
   */
  readonly clip?: boolean;
  /** RaZeR g128 scale rule: "range-aware" (default, spec §3.1) or "absmax". */
  readonly scaleRule?: "range-aware" | "absmax";
  /** RaZeR g128: the special values tried, a subset of [+5, +8, −5, −8] in that order (default all four). */
  readonly specialValues?: readonly number[];
}

/** A packed tensor. `codes` and `scales` are the format's own byte layouts (little-endian). */
export interface PackedTensor {
  readonly format: string;
  readonly rows: number;
  readonly cols: number;
  readonly groupSize: number;
  readonly codes: Uint8Array;
  readonly scales: Uint8Array;
  /** The per-tensor f32 multiplier (RaZeR's scaleMul, NVFP4's g); 1 where the format has none. */
  readonly tensorScale: number;
}

/** A number format: its descriptor and its reference codec. */
export interface QuantFormat {
  readonly name: string;
  /** One line: the layout in words. */
  readonly description: string;
  /** Weights per scale group along a row; 0 means one group per row (per-channel). */
  readonly groupSize: number;
  /** Storage bits per weight for a row of `cols` weights, group scales included (per-tensor f32 headers left out). */
  bitsPerWeight(cols: number): number;
  /** Byte counts of `codes` and `scales` for a [rows, cols] tensor. */
  layout(rows: number, cols: number): { codeBytes: number; scaleBytes: number };
  /** Quantizes `w` ([rows][cols], row-major) into the format. */
  pack(w: Float32Array, rows: number, cols: number, options?: PackOptions): PackedTensor;
  /** Decodes a packed tensor into f32 (the reference the kernels are checked against). */
  unpack(p: PackedTensor): Float32Array;
}

/** Clipping ratios of the per-group search, unclipped first (so ties keep the unclipped result). */
export const CLIP_RATIOS: readonly number[] = Array.from({ length: 11 }, (_, i) => 1 - 0.05 * i);

/** Throws unless `w` holds rows × cols values. */
export function checkShape(format: string, w: Float32Array, rows: number, cols: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols <= 0) throw new Error(`${format}: bad shape [${rows}, ${cols}]`);
  if (w.length !== rows * cols) throw new Error(`${format}: ${w.length} values for shape [${rows}, ${cols}]`);
  for (let i = 0; i < w.length; i++) if (!Number.isFinite(w[i]!)) throw new Error(`${format}: weight ${i} is ${w[i]}; weights must be finite`);
}

/** Throws unless the packed tensor is of `format` and its buffers hold the expected byte counts. */
export function checkPacked(format: string, p: PackedTensor, codeBytes: number, scaleBytes: number): void {
  if (p.format !== format) throw new Error(`${format}: cannot unpack a ${p.format} tensor`);
  if (p.codes.byteLength !== codeBytes) throw new Error(`${format}: codes hold ${p.codes.byteLength} bytes, shape [${p.rows}, ${p.cols}] needs ${codeBytes}`);
  if (p.scales.byteLength !== scaleBytes) throw new Error(`${format}: scales hold ${p.scales.byteLength} bytes, shape [${p.rows}, ${p.cols}] needs ${scaleBytes}`);
}

/** Number of groups of `g` along a row of `cols` (the last may be partial). */
export function groupsPerRow(cols: number, g: number): number {
  return Math.ceil(cols / g);
}

/** Largest |w| of w[start, end). */
export function absMax(w: Float32Array | Float64Array, start: number, end: number): number {
  let m = 0;
  for (let i = start; i < end; i++) m = Math.max(m, Math.abs(w[i]!));
  return m;
}

/**
 * 4-bit code storage: a row holds ceil(cols/g)·g nibbles (padded to whole groups), two per byte, element k
 * in the low nibble of byte k/2 when k is even. Byte for byte this is the spec's u32 layout (nibble k mod 8 of
 * word k/8, low nibble first) read little-endian.
 */
/** Bytes of 4-bit codes for [rows, cols] with groups of g (each row padded to whole groups). */
export function nibbleBytes(rows: number, cols: number, g: number): number {
  return (rows * groupsPerRow(cols, g) * g) / 2;
}

export class Nibbles {
  readonly bytesPerRow: number;
  readonly bytes: Uint8Array;
  constructor(rows: number, cols: number, g: number, pad: number, bytes?: Uint8Array) {
    this.bytesPerRow = (groupsPerRow(cols, g) * g) / 2;
    if (bytes) this.bytes = bytes;
    else this.bytes = new Uint8Array(rows * this.bytesPerRow).fill(pad | (pad << 4));
  }
  get(row: number, k: number): number {
    const b = this.bytes[row * this.bytesPerRow + (k >> 1)]!;
    return k & 1 ? b >> 4 : b & 15;
  }
  set(row: number, k: number, c: number): void {
    const i = row * this.bytesPerRow + (k >> 1);
    const b = this.bytes[i]!;
    this.bytes[i] = k & 1 ? (b & 0x0f) | (c << 4) : (b & 0xf0) | c;
  }
}
