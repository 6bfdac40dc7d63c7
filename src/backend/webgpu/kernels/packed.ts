/**
 * The packed formats' pieces of the matmul and embed kernels: the GEMV's per-load dot product (plugged into
 * kernels/matmul.ts's skeleton: teams, unrolled loads, split K, subgroup or workgroup reduction), the GEMM's
 * 8-weight loader and embed's element reader, all over the layout of packed-weights.ts and the decoders of
 * src/quant/wgsl/decode.ts.
 */
import { GEMV_DECODE_VARIANTS, PACKED_WGSL } from "../../../quant/wgsl/decode.js";
import { isPackedDType, type DType, type PackedDType } from "../../../tensor/dtype.js";

/**
 * The GEMV decode variant each format uses (src/quant/wgsl/decode.ts GEMV_DECODE_VARIANTS; spec §3.3 and
 * §8.4 ask for both RaZeR evaluations). Switch a default by changing its line; bench/gpu-quant.ts times
 * every variant (`--formats razer:sentinel-sum,nf4:workgroup,..`).
 */
export const GEMV_DECODE_DEFAULTS: Readonly<Partial<Record<PackedDType, string>>> = {
  razer: "per-element",
  "nvfp4-razer": "per-element",
  nf4: "workgroup",
};

const gemvDecode: Partial<Record<PackedDType, string>> = { ...GEMV_DECODE_DEFAULTS };

/** Makes later GEMV kernels of `format` use decode `variant` (benchmarks and tests; kernels are keyed by it). */
export function setGemvDecode(format: PackedDType, variant: string): void {
  const vs = GEMV_DECODE_VARIANTS[format];
  if (!vs?.[variant]) throw new Error(`GEMV decode variant "${variant}" of ${format}: known ${vs ? Object.keys(vs).join(", ") : "none (one decoder only)"}`);
  gemvDecode[format] = variant;
}

/** The decode variant GEMV kernels of `format` use now (undefined: the format has one decoder). */
export function gemvDecodeOf(format: DType): string | undefined {
  return isPackedDType(format) ? gemvDecode[format] : undefined;
}

/** The GEMV's view of a packed format (the fields of matmul.ts's GemvFormat). */
export interface PackedGemv {
  xv: number;
  slots: string;
  tileSlots: string;
  rowVec4s: string;
  /** Element type of the scale binding. */
  scaleType: string;
  /** Scale binding elements a row. */
  scaleRow: string;
  /** WGSL loading the scales of slot `slot` of the row whose scales start at `c`; undefined: one scale a row. */
  scaleAt?: (c: string, slot: string) => string;
  /** WGSL of the output value from the row sum `acc` of part row `row`. */
  post: (acc: string, row: string) => string;
  fns: string;
  /** WGSL run first in the GEMV's entry point, in uniform control flow (NF4's workgroup table). */
  prologue?: string;
}

const xc = (n: number) => Array.from({ length: n }, (_, v) => `x${v}: vec4<f32>`).join(", ");

/** Scale (and meta) pair word j of a slot's scales `c`, per format, for the GEMV's typed scale loads. */
function slotPairs(f: PackedDType): { type: string; param: string; at: (c: string, s: string) => string; row: string; pair: (j: number) => string; meta: (j: number) => string } {
  switch (f) {
    case "fp4":
    case "razer":
      return { type: "vec4<u32>", param: "vec4<u32>", at: (c, s) => `sc[${c} + ((${s}) >> 5u)]`, row: "p.blocks", pair: (j) => `c[${j}]`, meta: (j) => `pk_meta(c[${j}], 0u)` };
    case "nf4":
      return { type: "vec4<u32>", param: "vec4<u32>", at: (c, s) => `sc[${c} + ((${s}) >> 4u)]`, row: "(2u * p.blocks)", pair: (j) => `c[${j}]`, meta: () => "0u" };
    case "nvfp4":
    case "nvfp4-razer": {
      const pair = (j: number) => `(c[${j >> 1}]${j & 1 ? " >> 16u" : ""})`;
      return { type: "vec2<u32>", param: "vec2<u32>", at: (c, s) => `sc[${c} + ((${s}) >> 2u)]`, row: "(8u * p.blocks)", pair, meta: (j) => `pk_meta(${pair(j)}, 0u)` };
    }
    case "int4-asym":
      return {
        type: "vec4<u32>", param: "array<vec4<u32>, 2>", row: "(2u * p.blocks)",
        at: (c, s) => `array<vec4<u32>, 2>(sc[${c} + 2u * ((${s}) >> 5u)], sc[${c} + 2u * ((${s}) >> 5u) + 1u])`,
        pair: (j) => `c[0][${j}]`, meta: (j) => `c[1][${j}]`,
      };
    case "int8":
      throw new Error("int8 has no per-load scales");
  }
}

export function packedGemv(f: PackedDType): PackedGemv {
  const d = PACKED_WGSL[f];
  const slots = "(p.blocks * 32u)";
  if (d.codeBits === 8) {
    return {
      xv: 4, slots, tileSlots: slots, rowVec4s: slots, scaleType: "u32", scaleRow: "1u",
      post: (acc, row) => `(${acc} * bitcast<f32>(sc[${row}]))`,
      fns: `${d.code}
fn tdot(q: vec4<u32>, ${xc(4)}) -> f32 {
  return dot(pk_codes8(q.x), x0) + dot(pk_codes8(q.y), x1) + dot(pk_codes8(q.z), x2) + dot(pk_codes8(q.w), x3);
}`,
    };
  }
  const sp = slotPairs(f);
  const name = gemvDecode[f];
  const variant = name === undefined ? { code: d.code } : GEMV_DECODE_VARIANTS[f]![name]!;
  let terms: string[], sum: string;
  if (variant.sentinelSum) {
    // sentinel-sum (spec §3.3): s · (Σ x·e2m1(c) + SV · Σ_{c = 0x0} x) per half; pk_sentinels is 2.0 a
    // sentinel, so the SV (f16 bits from pk_meta, in the codes' unit 2^-14) is halved
    terms = [0, 1, 2, 3].map((j) => `  let d${j} = pk_plain(q[${j}]);
  let z${j} = pk_sentinels(q[${j}]);
  let v${j} = unpack2x16float(${sp.meta(j)}) * 0.5;
  let s${j} = pk_scales(${sp.pair(j)});`);
    const half = (j: number, h: number) => `s${j}.${"xy"[h]} * (dot(d${j}[${h}], x${2 * j + h}) + v${j}.${"xy"[h]} * dot(z${j}[${h}], x${2 * j + h}))`;
    sum = [0, 1, 2, 3].map((j) => `${half(j, 0)} + ${half(j, 1)}`).join("\n       + ");
  } else {
    terms = [0, 1, 2, 3].map((j) => `  let d${j} = pk_codes(q[${j}], ${sp.meta(j)});
  let s${j} = pk_scales(${sp.pair(j)});`);
    sum = [0, 1, 2, 3].map((j) => `s${j}.x * dot(d${j}[0], x${2 * j}) + s${j}.y * dot(d${j}[1], x${2 * j + 1})`).join("\n       + ");
  }
  return {
    xv: 8, slots, tileSlots: slots, rowVec4s: slots, scaleType: sp.type, scaleRow: sp.row, scaleAt: sp.at,
    post: (acc) => `(${acc} * p.mul)`,
    prologue: variant.prologue,
    fns: `${variant.code}
fn tdot(q: vec4<u32>, c: ${sp.param}, ${xc(8)}) -> f32 {
${terms.join("\n")}
  return ${sum};
}`,
  };
}

/**
 * WGSL over `sc: array<u32>` (GEMM, embed): `sword(o, slot, j)` and `mword(o, slot, j)`, the scale and meta
 * pair words j of lane slot `slot` (tile · 32 + lane) of row o; `T` is the WGSL of tiles a row.
 */
function wordReaders(f: PackedDType, T: string): string {
  const d = PACKED_WGSL[f];
  const per = ((1024 / d.group) * d.scaleBits) / 32;
  const row = `o * ${per}u * ${T}`;
  switch (f) {
    case "fp4":
    case "razer":
      return `fn sword(o: u32, slot: u32, j: u32) -> u32 { return sc[${row} + 4u * (slot >> 5u) + j]; }
fn mword(o: u32, slot: u32, j: u32) -> u32 { return pk_meta(sword(o, slot, j), 0u); }`;
    case "nf4":
      return `fn sword(o: u32, slot: u32, j: u32) -> u32 { return sc[${row} + 4u * (slot >> 4u) + j]; }
fn mword(o: u32, slot: u32, j: u32) -> u32 { return 0u; }`;
    case "nvfp4":
    case "nvfp4-razer":
      return `fn sword(o: u32, slot: u32, j: u32) -> u32 { return sc[${row} + 2u * (slot >> 2u) + (j >> 1u)] >> (16u * (j & 1u)); }
fn mword(o: u32, slot: u32, j: u32) -> u32 { return pk_meta(sword(o, slot, j), 0u); }`;
    case "int4-asym":
      return `fn sword(o: u32, slot: u32, j: u32) -> u32 { return sc[${row} + 8u * (slot >> 5u) + j]; }
fn mword(o: u32, slot: u32, j: u32) -> u32 { return sc[${row} + 8u * (slot >> 5u) + 4u + j]; }`;
    case "int8":
      return "";
  }
}

/**
 * WGSL `fn load8(o, g) -> array<vec4<f32>, 2>` for the GEMM: weights 8g..8g+7 of row o, decoded and scaled
 * (with `w: array<vec4<u32>>`, `sc: array<u32>`, uniform `p.blocks` = tiles a row, `p.mul`).
 */
export function packedGroupLoader(f: PackedDType): string {
  const d = PACKED_WGSL[f];
  if (d.codeBits === 8) {
    return `${d.code}
fn load8(o: u32, g: u32) -> array<vec4<f32>, 2> {
  let t = g >> 6u;
  let v = (g >> 4u) & 3u;
  let b = o * p.blocks * 32u + t * 32u + (g & 15u) * 2u;
  let s = bitcast<f32>(sc[o]);
  return array<vec4<f32>, 2>(pk_codes8(w[b][v]) * s, pk_codes8(w[b + 1u][v]) * s);
}`;
  }
  return `${d.code}
${wordReaders(f, "p.blocks")}
fn load8(o: u32, g: u32) -> array<vec4<f32>, 2> {
  let slot = (g >> 7u) * 32u + (g & 15u) * 2u;
  let v = (g >> 4u) & 7u;
  let j = v >> 1u;
  let h = v & 1u;
  let b = o * p.blocks * 32u + slot;
  let m = mword(o, slot, j);
  let s = pk_scales(sword(o, slot, j))[h] * p.mul;
  return array<vec4<f32>, 2>(pk_codes(w[b][j], m)[h] * s, pk_codes(w[b + 1u][j], m)[h] * s);
}`;
}

/**
 * WGSL `fn wget(o, i) -> f32` for embed: element i of row o (with `w: array<u32>`, `sc: array<u32>`,
 * uniform `p.stride` = words a row, `p.blocks` = tiles a row, `p.mul` = the f32 bits of the row factor).
 * The decoded code times the decoded scale is exact, so with one rounding at `mul` this equals the CPU
 * reference's unpack bit for bit.
 */
export function packedElementDecoder(f: PackedDType): string {
  const d = PACKED_WGSL[f];
  if (d.codeBits === 8) {
    return `${d.code}
fn wget(o: u32, i: u32) -> f32 {
  let u = w[o * p.stride + (i >> 9u) * 128u + 4u * ((i >> 2u) & 31u) + ((i >> 7u) & 3u)];
  return pk_codes8(u)[i & 3u] * bitcast<f32>(sc[o]);
}`;
  }
  return `${d.code}
${wordReaders(f, "p.blocks")}
fn wget(o: u32, i: u32) -> f32 {
  let v = (i >> 7u) & 7u;
  let slot = (i >> 10u) * 32u + ((i >> 2u) & 31u);
  let j = v >> 1u;
  let h = v & 1u;
  let q = w[o * p.stride + slot * 4u + j];
  return pk_codes(q, mword(o, slot, j))[h][i & 3u] * pk_scales(sword(o, slot, j))[h] * bitcast<f32>(p.mul);
}`;
}
