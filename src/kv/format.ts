/**
 * KV-cache number formats (`--kv-format`): each position's K row and V row are quantized per (token, kv head)
 * along head_dim with a src/quant codec, so the groups never straddle heads or tokens and a new token is
 * quantized once, when written. Bytes per (token, head): the codec's codes ++ scales ++ an f32 per-head
 * tensor scale (RaZeR/NVFP4's g; 1 and still stored for the others, so every format has one layout).
 */
import type { QuantFormat } from "../quant/format.js";
import { int8Format } from "../quant/int8.js";
import { int4AsymFormat } from "../quant/int4-asym.js";
import { nvfp4RazerFormat } from "../quant/nvfp4-razer.js";
import { nvfp4Format } from "../quant/nvfp4.js";

export interface KvFormat {
  readonly name: string;
  readonly description: string;
  /** Bytes one head's row of `headDim` values takes. */
  headBytes(headDim: number): number;
  /** Quantizes row[off .. off + headDim) into dst[dOff .. dOff + headBytes). */
  encode(row: Float32Array, off: number, headDim: number, dst: Uint8Array, dOff: number): void;
  /** Decodes src[sOff ..] into out[oOff .. oOff + headDim). */
  decode(src: Uint8Array, sOff: number, headDim: number, out: Float32Array, oOff: number): void;
}

function fromQuant(name: string, description: string, q: QuantFormat): KvFormat {
  return {
    name,
    description,
    headBytes(d) {
      const l = q.layout(1, d);
      return l.codeBytes + l.scaleBytes + 4;
    },
    encode(row, off, d, dst, dOff) {
      const p = q.pack(row.slice(off, off + d), 1, d);
      dst.set(p.codes, dOff);
      dst.set(p.scales, dOff + p.codes.byteLength);
      new DataView(dst.buffer, dst.byteOffset).setFloat32(dOff + p.codes.byteLength + p.scales.byteLength, p.tensorScale, true);
    },
    decode(src, sOff, d, out, oOff) {
      const { codeBytes, scaleBytes } = q.layout(1, d);
      const tensorScale = new DataView(src.buffer, src.byteOffset).getFloat32(sOff + codeBytes + scaleBytes, true);
      const codes = src.subarray(sOff, sOff + codeBytes);
      const scales = src.subarray(sOff + codeBytes, sOff + codeBytes + scaleBytes);
      out.set(q.unpack({ format: q.name, rows: 1, cols: d, groupSize: q.groupSize, codes, scales, tensorScale }), oOff);
    },
  };
}

/** Every KV format; "f32" is the unquantized cache (the backend's own). */
export const KV_FORMATS: readonly string[] = ["f32", "int8", "int4", "razer", "nvfp4"];

const CODECS: Record<string, () => KvFormat> = {
  int8: () => fromQuant("int8", "int8 symmetric, one f32 scale per (token, head)", int8Format),
  int4: () => fromQuant("int4", "int4 asymmetric, groups of 32 along head_dim (f16 scale and zero)", int4AsymFormat(32)),
  razer: () => fromQuant("razer", "NVFP4-RaZeR (E2M1, ±5/±8 special value, blocks of 16), g per (token, head)", nvfp4RazerFormat(8)),
  nvfp4: () => fromQuant("nvfp4", "NVFP4 (E2M1, E4M3 scale per 16), g per (token, head)", nvfp4Format),
};

/** The codec of a quantized KV format; throws for unknown names (and for "f32", which has none). */
export function kvFormat(name: string): KvFormat {
  const make = CODECS[name];
  if (!make) throw new Error(`unknown KV format "${name}" (known: ${KV_FORMATS.join(", ")})`);
  return make();
}

/** Throws unless `name` is a KV format. */
export function checkKvFormat(name: string): string {
  if (!KV_FORMATS.includes(name)) throw new Error(`--kv-format: unknown KV format "${name}" (known: ${KV_FORMATS.join(", ")})`);
  return name;
}
