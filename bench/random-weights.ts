/**
 * Random but valid weights of every dense format, made fast enough for GB-sized tensors: a random block
 * of 1 MiB (scales fixed to sensible finite values) repeated, since GEMV and decode speed do not depend on
 * the values. Shared by bench/gpu-quant.ts and bench/gpu-gemv-sweep.ts.
 */
import { quantFormat } from "../src/quant/formats.js";
import { tensorBytes } from "../src/quant/packed-raw.js";
import { isPackedDType, type DType } from "../src/tensor/dtype.js";
import type { RawTensor } from "../src/tensor/raw.js";
import { f32ToF16 } from "../src/tensor/half.js";

/** xorshift32 bytes. */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  const u = new Uint32Array(out.buffer, 0, n >> 2);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < u.length; i++) {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    u[i] = s >>> 0;
  }
  return out;
}

/** `n` bytes repeating a random block of `block` bytes (speed does not depend on values; making GBs does). */
function tiled(n: number, block: number, seed: number, fix?: (b: Uint8Array) => void): Uint8Array {
  const b = randomBytes(Math.min(n, block), seed);
  fix?.(b);
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += b.length) out.set(b.subarray(0, Math.min(b.length, n - o)), o);
  return out;
}

const F16_ZEROS = Array.from({ length: 16 }, (_, z) => f32ToF16(z));

/** Valid random scales of a packed format (finite, in a sensible range), written in place over random bytes. */
function fixScales(format: string, s: Uint8Array): void {
  const h = new Uint16Array(s.buffer, s.byteOffset, s.byteLength >> 1);
  switch (format) {
    case "fp4": case "nf4": case "razer":
      // f16 scales in [2^-8, 2^-6); razer keeps its two random SV flag bits
      for (let i = 0; i < h.length; i++) h[i] = (h[i]! & (format === "razer" ? 0xc000 : 0)) | 0x1c00 | (h[i]! & 0x07ff);
      return;
    case "int4-asym":
      for (let i = 0; i < h.length; i += 2) { h[i] = 0x1c00 | (h[i]! & 0x07ff); h[i + 1] = F16_ZEROS[h[i + 1]! & 15]!; }
      return;
    case "int8": {
      const f = new Float32Array(s.buffer, s.byteOffset, s.byteLength >> 2);
      f.fill(1 / 4096);
      return;
    }
    case "nvfp4":
      for (let i = 0; i < s.length; i++) s[i] = 0x28 + (s[i]! & 0x1f); // E4M3 in [2^-2, 2^2)
      return;
    case "nvfp4-razer":
      for (let i = 0; i < s.length; i++) s[i] = (s[i]! & 0xc0) | (0x10 + (s[i]! & 0x1f)); // flags + payload in [1/4, 4)
      return;
  }
}

/** A random [rows, cols] (or 1-D) weight in `dtype`, values of roughly unit-or-smaller scale. */
export function randomWeight(name: string, dtype: DType, shape: readonly number[], seed: number): RawTensor {
  if (shape.length === 1) return { name, dtype: "f32", shape, data: new Uint8Array(Float32Array.from({ length: shape[0]! }, () => 1).buffer) };
  const [rows, cols] = shape as [number, number];
  const BLOCK = 1 << 20;
  if (isPackedDType(dtype)) {
    const { codeBytes, scaleBytes } = quantFormat(dtype).layout(rows, cols);
    const data = new Uint8Array(tensorBytes(dtype, shape));
    data.set(tiled(codeBytes, BLOCK, seed), 0);
    // scale rows of odd lengths: whole 4-byte multiples tile safely (every format's scale unit divides 4)
    data.set(tiled(scaleBytes, BLOCK, seed + 1, (b) => fixScales(dtype, b)), codeBytes);
    new DataView(data.buffer).setFloat32(data.length - 4, dtype === "nvfp4" || dtype === "nvfp4-razer" ? 1 / 256 : 1, true);
    return { name, dtype, shape, data };
  }
  if (dtype === "f16") return { name, dtype, shape, data: tiled(rows * cols * 2, BLOCK, seed, (b) => { const u = new Uint32Array(b.buffer); for (let i = 0; i < u.length; i++) u[i] = u[i]! & 0x83ff83ff | 0x1c001c00; }) };
  const bb = dtype === "q8_0" ? 34 : 18;
  const n = (rows * cols) / 32;
  return { name, dtype, shape, data: tiled(n * bb, bb * 32768, seed, (b) => { for (let p = 0; p + 1 < b.length; p += bb) { b[p] = 0x00; b[p + 1] = 0x1c; } }) };
}

