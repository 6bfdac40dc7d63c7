/**
 * KV-cache number formats (`--kv-format`): each position's K row and V row are quantized per (token, kv head)
 * along head_dim with a src/quant codec, so the groups never straddle heads or tokens and a new token is
 * quantized once, when written. Bytes per (token, head): the codec's codes ++ scales (++ an f32 per-head
 * tensor scale g for RaZeR/NVFP4, whose block scales are relative to it).
 */
import type { PackOptions, QuantFormat } from "../quant/format.js";
import { int8Format } from "../quant/int8.js";
import { int4AsymFormat } from "../quant/int4-asym.js";
import { int3AsymFormat } from "../quant/int3-asym.js";
import { fp3RazerFormat, fp3CodeValue } from "../quant/fp3-razer.js";
import { getTribit } from "../quant/tribits.js";
import { nvfp4RazerFormat } from "../quant/nvfp4-razer.js";
import { nvfp4Format } from "../quant/nvfp4.js";
import { f16Table } from "../tensor/half.js";
import { checkHadamardSize, hadamard } from "./hadamard.js";

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

/**
 * A KV format from a weight codec packing one head row as a [1, headDim] tensor. `tensorScale`: the codec
 * has a per-tensor scale worth storing (4 bytes a head row). `fast`: a decoder of the same bytes that skips
 * the generic unpack's allocations (tested equal to it in test/kv/format.test.ts).
 */
function fromQuant(name: string, description: string, q: QuantFormat, tensorScale: boolean, fast?: FastDecode, options?: PackOptions): KvFormat {
  const layoutOf = (d: number) => q.layout(1, d);
  return {
    name,
    description,
    headBytes(d) {
      const l = layoutOf(d);
      return l.codeBytes + l.scaleBytes + (tensorScale ? 4 : 0);
    },
    encode(row, off, d, dst, dOff) {
      const p = q.pack(row.slice(off, off + d), 1, d, options);
      dst.set(p.codes, dOff);
      dst.set(p.scales, dOff + p.codes.byteLength);
      if (tensorScale) new DataView(dst.buffer, dst.byteOffset).setFloat32(dOff + p.codes.byteLength + p.scales.byteLength, p.tensorScale, true);
    },
    decode(src, sOff, d, out, oOff) {
      const { codeBytes, scaleBytes } = layoutOf(d);
      if (fast) return fast(src, sOff, codeBytes, d, out, oOff);
      const ts = tensorScale ? new DataView(src.buffer, src.byteOffset).getFloat32(sOff + codeBytes + scaleBytes, true) : 1;
      const codes = src.subarray(sOff, sOff + codeBytes);
      const scales = src.subarray(sOff + codeBytes, sOff + codeBytes + scaleBytes);
      out.set(q.unpack({ format: q.name, rows: 1, cols: d, groupSize: q.groupSize, codes, scales, tensorScale: ts }), oOff);
    },
  };
}

type FastDecode = (src: Uint8Array, sOff: number, codeBytes: number, d: number, out: Float32Array, oOff: number) => void;

/** int8: code × f32 scale, as src/quant/int8.ts unpacks. */
const int8Decode: FastDecode = (src, sOff, codeBytes, d, out, oOff) => {
  const scale = new DataView(src.buffer, src.byteOffset).getFloat32(sOff + codeBytes, true);
  for (let k = 0; k < d; k++) out[oOff + k] = ((src[sOff + k]! << 24) >> 24) * scale;
};

/** int4-asym with groups of g: (nibble − f16 zero) × f16 scale, as src/quant/int4-asym.ts unpacks. */
function int4Decode(g: number): FastDecode {
  const f16 = f16Table();
  return (src, sOff, codeBytes, d, out, oOff) => {
    const view = new DataView(src.buffer, src.byteOffset);
    for (let k = 0; k < d; k++) {
      const b = src[sOff + (k >> 1)]!;
      const c = k & 1 ? b >> 4 : b & 15;
      const so = sOff + codeBytes + 4 * Math.floor(k / g);
      out[oOff + k] = (c - f16[view.getUint16(so + 2, true)]!) * f16[view.getUint16(so, true)]!;
    }
  };
}

/** int3-asym with groups of g: (3-bit code − f16 zero) × f16 scale, as src/quant/int3-asym.ts unpacks. */
function int3Decode(g: number): FastDecode {
  const f16 = f16Table();
  return (src, sOff, codeBytes, d, out, oOff) => {
    const view = new DataView(src.buffer, src.byteOffset);
    for (let k = 0; k < d; k++) {
      const so = sOff + codeBytes + 4 * Math.floor(k / g);
      out[oOff + k] = (getTribit(src, sOff, k) - f16[view.getUint16(so + 2, true)]!) * f16[view.getUint16(so, true)]!;
    }
  };
}

/** fp3-razer with groups of g: f16(word & 0x7ffe) × the code's value, as src/quant/fp3-razer.ts unpacks. */
function fp3Decode(g: number): FastDecode {
  const f16 = f16Table();
  return (src, sOff, codeBytes, d, out, oOff) => {
    const view = new DataView(src.buffer, src.byteOffset);
    for (let k = 0; k < d; k++) {
      const word = view.getUint16(sOff + codeBytes + 2 * Math.floor(k / g), true);
      out[oOff + k] = f16[word & 0x7ffe]! * fp3CodeValue(word, getTribit(src, sOff, k));
    }
  };
}

/**
 * `inner` applied to the Hadamard-rotated head row (src/kv/hadamard.ts): encode quantizes H·x/√d, decode
 * returns H·x̂/√d rounded to f32. No extra bytes; the rotation is per (token, head), so it fits the write path.
 */
function rotated(name: string, description: string, inner: KvFormat): KvFormat {
  let t = new Float64Array(64), r = new Float32Array(64);
  const scratch = (d: number) => {
    if (t.length < d) (t = new Float64Array(d)), (r = new Float32Array(d));
  };
  return {
    name,
    description,
    headBytes: (d) => inner.headBytes(d),
    encode(row, off, d, dst, dOff) {
      checkHadamardSize(name, d);
      scratch(d);
      for (let k = 0; k < d; k++) t[k] = row[off + k]!;
      hadamard(t, d);
      for (let k = 0; k < d; k++) r[k] = t[k]!;
      inner.encode(r, 0, d, dst, dOff);
    },
    decode(src, sOff, d, out, oOff) {
      scratch(d);
      inner.decode(src, sOff, d, r, 0);
      for (let k = 0; k < d; k++) t[k] = r[k]!;
      hadamard(t, d);
      for (let k = 0; k < d; k++) out[oOff + k] = t[k]!;
    },
  };
}

/** Every KV format; "f32" is the unquantized cache (the backend's own). */
export const KV_FORMATS: readonly string[] = ["f32", "int8", "int4", "int4g64", "int4g64-rot", "int3g64", "fp3-razer", "fp3-razer-g32", "fp3-razer-g32-clip", "int3g64-rot", "fp3-razer-g32-rot", "fp3-razer-rot", "razer", "nvfp4"];

const CODECS: Record<string, () => KvFormat> = {
  int8: () => fromQuant("int8", "int8 symmetric, one f32 scale per (token, head)", int8Format, false, int8Decode),
  int4: () => fromQuant("int4", "int4 asymmetric, groups of 32 along head_dim (f16 scale and zero)", int4AsymFormat(32), false, int4Decode(32)),
  // one group per head row of 64: half int4's scale overhead (36 bytes a row of 64, 4.5 bits a value); CPU only
  int4g64: () => fromQuant("int4g64", "int4 asymmetric, groups of 64 along head_dim (f16 scale and zero)", int4AsymFormat(64), false, int4Decode(64)),
  // 3-bit, one group per head row of 64, for 8x of a 16-bit cache with selection (docs/kv-cache.md); CPU only
  int3g64: () => fromQuant("int3g64", "int3 asymmetric, groups of 64 along head_dim (f16 scale and zero)", int3AsymFormat(64), false, int3Decode(64)),
  "fp3-razer": () => fromQuant("fp3-razer", "FP3-RaZeR ({0, ±1, ±2, ±4}, ±3/±6 special value), groups of 64 along head_dim (one 16-bit scale+SV word)", fp3RazerFormat(64), false, fp3Decode(64)),
  // two groups of 32: int3g64's 28 bytes, spent on a second scale word instead of a zero point
  "fp3-razer-g32": () => fromQuant("fp3-razer-g32", "FP3-RaZeR ({0, ±1, ±2, ±4}, ±3/±6 special value), groups of 32 along head_dim (a 16-bit scale+SV word each)", fp3RazerFormat(32), false, fp3Decode(32)),
  // the same with the per-group clipping search (PackOptions.clip: each group also tried clamped to ±max|w|·(1 − 0.05i))
  "fp3-razer-g32-clip": () => fromQuant("fp3-razer-g32-clip", "fp3-razer-g32 with the per-group clipping search (lowest MSE over 11 clip ratios)", fp3RazerFormat(32), false, fp3Decode(32), { clip: true }),
  // the same codecs on Hadamard-rotated head rows (head_dim a power of two); CPU only
  "int3g64-rot": () => rotated("int3g64-rot", "int3g64 of the Hadamard-rotated head row (H·x/√d), rotated back on decode", CODECS.int3g64!()),
  "fp3-razer-g32-rot": () => rotated("fp3-razer-g32-rot", "fp3-razer-g32 of the Hadamard-rotated head row (H·x/√d), rotated back on decode", CODECS["fp3-razer-g32"]!()),
  // 4-bit on the rotated row: one group of 64 (36 B), QuaRot's rotation for keys with outlier channels
  "int4g64-rot": () => rotated("int4g64-rot", "int4g64 of the Hadamard-rotated head row (H·x/√d), rotated back on decode", CODECS.int4g64!()),
  "fp3-razer-rot": () => rotated("fp3-razer-rot", "fp3-razer of the Hadamard-rotated head row (H·x/√d), rotated back on decode", CODECS["fp3-razer"]!()),
  razer: () => fromQuant("razer", "NVFP4-RaZeR (E2M1, ±5/±8 special value, blocks of 16), f32 g per (token, head)", nvfp4RazerFormat(8), true),
  nvfp4: () => fromQuant("nvfp4", "NVFP4 (E2M1, E4M3 scale per 16), f32 g per (token, head)", nvfp4Format, true),
};

/** The codec of a quantized KV format; throws for unknown names (and for "f32", which has none). */
export function kvFormat(name: string): KvFormat {
  const make = CODECS[name];
  if (!make) throw new Error(`unknown KV format "${name}" (known: ${KV_FORMATS.join(", ")})`);
  return make();
}

/**
 * f32 rows kept on the host: only inside a mixed format (`k=f32,v=int3g64`), where the other part already puts
 * the cache on the host; a plain `--kv-format f32` is the backend's own cache.
 */
const hostF32: KvFormat = {
  name: "f32",
  description: "f32, 4 bytes a value (host copy)",
  headBytes: (d) => 4 * d,
  encode(row, off, d, dst, dOff) {
    const view = new DataView(dst.buffer, dst.byteOffset);
    for (let k = 0; k < d; k++) view.setFloat32(dOff + 4 * k, row[off + k]!, true);
  },
  decode(src, sOff, d, out, oOff) {
    const view = new DataView(src.buffer, src.byteOffset);
    for (let k = 0; k < d; k++) out[oOff + k] = view.getFloat32(sOff + 4 * k, true);
  },
};

/**
 * The formats of one cache: keys and values may differ, and layer 0 (which the selection rules keep whole,
 * docs/kv-cache.md) may have its own. A plain name is every part in that format.
 */
export interface KvFormatParts {
  /** Keys and values of layers >= 1. */
  readonly k: string;
  readonly v: string;
  /** Keys and values of layer 0. */
  readonly k0: string;
  readonly v0: string;
}

const PART_KEYS = ["k", "v", "k0", "v0"] as const;

/**
 * Parses `--kv-format`: a format name, or `k=F,v=F[,k0=F][,v0=F]` (keys, values; k0/v0 layer 0's keys and
 * values, default k and v). Every error names the spec and the part.
 */
export function parseKvFormat(spec: string): KvFormatParts {
  if (!spec.includes("=")) {
    checkName(spec, spec);
    return { k: spec, v: spec, k0: spec, v0: spec };
  }
  const given: Record<string, string> = {};
  for (const part of spec.split(",")) {
    const eq = part.indexOf("=");
    const key = part.slice(0, eq).trim(), value = part.slice(eq + 1).trim();
    if (eq <= 0 || value === "") throw new Error(`--kv-format ${spec}: malformed part "${part}" (expected k=F,v=F[,k0=F][,v0=F])`);
    if (!(PART_KEYS as readonly string[]).includes(key)) throw new Error(`--kv-format ${spec}: unknown part "${key}" (allowed: ${PART_KEYS.join(", ")})`);
    if (key in given) throw new Error(`--kv-format ${spec}: part ${key} given twice`);
    checkName(spec, value, key);
    given[key] = value;
  }
  if (given.k === undefined || given.v === undefined) throw new Error(`--kv-format ${spec}: a mixed format needs both k=F and v=F`);
  return { k: given.k, v: given.v, k0: given.k0 ?? given.k, v0: given.v0 ?? given.v };
}

function checkName(spec: string, name: string, part?: string): void {
  if (!KV_FORMATS.includes(name)) throw new Error(`--kv-format ${spec}: unknown KV format "${name}"${part ? ` for ${part}` : ""} (known: ${KV_FORMATS.join(", ")})`);
}

/** Whether `spec` names one format for everything (the backend may store it natively) rather than parts. */
export function isMixedKvFormat(spec: string): boolean {
  return spec.includes("=");
}

/** The host codecs of a format spec: per part, the codec ("f32" parts get a host f32 copy). */
export function kvCodecs(spec: string): { k: KvFormat; v: KvFormat; k0: KvFormat; v0: KvFormat } {
  const p = parseKvFormat(spec);
  const codec = (name: string) => (name === "f32" ? hostF32 : kvFormat(name));
  return { k: codec(p.k), v: codec(p.v), k0: codec(p.k0), v0: codec(p.v0) };
}

/** Throws unless `name` is a KV format or a mixed format spec; returns it. */
export function checkKvFormat(name: string): string {
  parseKvFormat(name);
  return name;
}
