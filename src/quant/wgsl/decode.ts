/**
 * WGSL decoders of the packed weight formats (src/quant), for GPUs without `shader-f16`: codes and scales
 * are read from u32 words and decoded with integer ops and `unpack2x16float`, never through f16 arithmetic.
 *
 * Every 4-bit format exposes the same three functions, so one GEMV/GEMM/embed skeleton serves them all:
 * - `pk_codes(q: u32, m: u32) -> array<vec4<f32>, 2>`: the 8 codes of `q`, read as two halves A (bits 0..15)
 *   and B (bits 16..31) of four codes each, code e of a half at bits 4e. Result [0] is half A, [1] half B, as
 *   code values times the format's `unit` (a power of two, undone with the tensor scale after the sum).
 *   `m` is the format's per-pair metadata (see `pk_meta`).
 * - `pk_scales(s: u32) -> vec2<f32>`: the scales of halves A and B from their scale pair word `s` (layout
 *   per format below), times the format's `scaleUnit` (a power of two, undone after the sum as well).
 * - `pk_meta(s: u32, z: u32) -> u32`: what `pk_codes` needs besides the codes: RaZeR's special values as
 *   an f16 pair, INT4-asym's zero points (`z`, the pair word of f16 zero points), 0 for the others.
 *
 * Scale pair words (the halves A, B of one word; the backend's layout puts each format's pair in one u32):
 * - fp4, nf4: two f16 scales (A low). int4-asym: two f16 scales, and a second word of two f16 zero points.
 * - razer: two scale words (A low): bit 15 = SV sign, bit 14 = SV magnitude (0 → 5, 1 → 8), bits 0..13
 *   the f16 of |s| (spec §3.2), so `unpack2x16float(s & 0x3FFF3FFF)` gives both |s|.
 * - nvfp4: two E4M3 bytes in bits 0..7 (A) and 8..15 (B). nvfp4-razer: two scale bytes likewise, bit 7 =
 *   SV sign, bit 6 = (|SV| = O), bits 0..5 the E3M3 payload (spec §4.2).
 *
 * E2M1 through f16: code c = s e e m becomes the f16 bits (s << 15) | (e e m << 9). For e > 0 that is the
 * normal 2^(e−15)(1 + m/2) = E2M1(c)·2^-14, for e = 0 the subnormal m/2·2^-14 = E2M1(c)·2^-14: one formula
 * for all 16 codes (±0 included), exact, and two codes per u32 decode with one `unpack2x16float`
 * (f16 subnormals are normal f32s, so no f32 denormal is involved). unit = 2^-14.
 * E4M3 (and E3M3) through f16: byte b (sign cleared) becomes f16 bits b << 7: exponent e (bias 7 → bias
 * 15) and mantissa m in the top 3 mantissa bits, normal or subnormal alike = E4M3(b)·2^-8. E3M3 payload p
 * decodes as E4M3(p)·16 (spec §4.2), so its scaleUnit is 2^-12.
 * RaZeR special values: the sentinel code 0x0 decodes to +0 above; a per-code fix-up ORs in the SV's f16
 * bits (±5·2^-14 = 0x0D00 | sign, ±8·2^-14 = 0x1000 | sign) where a nibble is zero, found for all 8
 * codes of a word at once (a nibble is zero iff none of its 4 bits is set).
 *
 * GEMV_DECODE_VARIANTS (end of file) holds other decoders of some formats for the GEMV only (RaZeR's
 * sentinel-sum, NF4 without a per-invocation table); kernels/packed.ts picks one per format.
 */
import type { PackedDType } from "../../tensor/dtype.js";

export interface PackedWgsl {
  /** Bits per code (4, or 8 for int8). */
  readonly codeBits: 4 | 8;
  /** Weights per scale group (0: one scale per row). */
  readonly group: number;
  /** Power of two the decoded codes carry (undone after the sum). */
  readonly unit: number;
  /** Power of two the decoded scales carry (undone after the sum). */
  readonly scaleUnit: number;
  /** Scale bits per group as stored (16, 32 for int4-asym's scale + zero, 8 for the NVFP4 bytes, 32 for int8's f32 row scale). */
  readonly scaleBits: number;
  /** The WGSL functions described in the header (`pk_codes`, `pk_scales`, `pk_meta`; int8: `pk_codes8`). */
  readonly code: string;
}

/** The f16-pair bits of codes e and 4 + e of q (halves A and B), through the E2M1 → f16 mapping. */
const E2M1_PAIRS = /* wgsl */ `
fn e2m1_pair(q: u32, e: u32) -> u32 {
  let t = q >> (4u * e);
  return ((t << 9u) & 0x0E000E00u) | ((t << 12u) & 0x80008000u);
}
fn e2m1_unpack(b0: u32, b1: u32, b2: u32, b3: u32) -> array<vec4<f32>, 2> {
  let p0 = unpack2x16float(b0);
  let p1 = unpack2x16float(b1);
  let p2 = unpack2x16float(b2);
  let p3 = unpack2x16float(b3);
  return array<vec4<f32>, 2>(vec4<f32>(p0.x, p1.x, p2.x, p3.x), vec4<f32>(p0.y, p1.y, p2.y, p3.y));
}
`;

/** E2M1 codes with the zero-nibble fix-up: `sv` holds the SV f16 bits of half A (low) and B (high). */
const RAZER_CODES = /* wgsl */ `${E2M1_PAIRS}
fn pk_codes(q: u32, sv: u32) -> array<vec4<f32>, 2> {
  // bit 4e of z (and 16 + 4e) is set where code e of half A (B) is the sentinel 0x0
  let z = ~(q | (q >> 1u) | (q >> 2u) | (q >> 3u)) & 0x11111111u;
  let f0 = (z & 0x00010001u) * 0xFFFFu;
  let f1 = ((z >> 4u) & 0x00010001u) * 0xFFFFu;
  let f2 = ((z >> 8u) & 0x00010001u) * 0xFFFFu;
  let f3 = ((z >> 12u) & 0x00010001u) * 0xFFFFu;
  return e2m1_unpack(e2m1_pair(q, 0u) | (f0 & sv), e2m1_pair(q, 1u) | (f1 & sv), e2m1_pair(q, 2u) | (f2 & sv), e2m1_pair(q, 3u) | (f3 & sv));
}
`;

/**
 * RaZeR's sentinel-sum GEMV pieces (spec §3.3): `pk_plain` decodes every code as plain E2M1 (the sentinel
 * 0x0 as +0, so it adds nothing to the dot product) and `pk_sentinels` is 2.0 where a code is 0x0, else 0,
 * so that dot(pk_sentinels(q)[h], x) = 2·sA of half h. The zero-nibble test is a carry: (c & 7) + 7 sets
 * bit 3 unless the low three bits are 0, and c's own bit 3 is ORed in; that bit moved to bit 30 alone is
 * the f32 2.0, so no int-to-float conversion is needed.
 */
const RAZER_SENTINEL_SUM = /* wgsl */ `
fn pk_plain(q: u32) -> array<vec4<f32>, 2> {
  return e2m1_unpack(e2m1_pair(q, 0u), e2m1_pair(q, 1u), e2m1_pair(q, 2u), e2m1_pair(q, 3u));
}
fn pk_sentinels(q: u32) -> array<vec4<f32>, 2> {
  let z = ~(((q & 0x77777777u) + 0x77777777u) | q) & 0x88888888u;
  let sh = vec4<u32>(27u, 23u, 19u, 15u);
  let a = (vec4<u32>(z) << sh) & vec4<u32>(0x40000000u);
  let b = (vec4<u32>(z >> 16u) << sh) & vec4<u32>(0x40000000u);
  return array<vec4<f32>, 2>(bitcast<vec4<f32>>(a), bitcast<vec4<f32>>(b));
}
`;

const PLAIN_E2M1_CODES = /* wgsl */ `${E2M1_PAIRS}
fn pk_codes(q: u32, m: u32) -> array<vec4<f32>, 2> {
  return e2m1_unpack(e2m1_pair(q, 0u), e2m1_pair(q, 1u), e2m1_pair(q, 2u), e2m1_pair(q, 3u));
}
`;

/** Nibbles minus 8 without int-to-float conversions (as weights.ts's nib4). */
const NIBBLES = /* wgsl */ `
fn pk_nib4(h: u32) -> vec4<f32> {
  let m = (vec4<u32>(h) & vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u)) | vec4<u32>(0x4b000000u);
  return fma(bitcast<vec4<f32>>(m), vec4<f32>(1.0, 0.0625, 0.00390625, 0.000244140625), vec4<f32>(-8388616.0, -524296.0, -32776.0, -2056.0));
}
`;

/** NF4 levels in f32 (src/quant/nf4.ts NF4_LEVELS), as WGSL literals that round to the same f32. */
function nf4Literals(): string[] {
  const levels = [
    -1, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
    -0.09105003625154495, 0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1,
  ];
  return levels.map((v) => (Number.isInteger(v) ? `${v}.0` : String(v)));
}
const nf4Levels = () => nf4Literals().join(", ");
const NF4_CODES = /* wgsl */ `
fn pk_codes(q: u32, m: u32) -> array<vec4<f32>, 2> { return array<vec4<f32>, 2>(pk_nf4(q), pk_nf4(q >> 16u)); }
`;

/**
 * NF4 decoders without a per-invocation array (GEMV variants, spec-free; bench/gpu-quant.ts times them):
 * - `workgroup`: the 16 levels in workgroup memory, written by one thread before the GEMV's loop
 *   (`NF4_WORKGROUP_PROLOGUE`, needs `lid` and uniform control flow); 16 words in 16 banks, so the four
 *   lookups of a vec4 never conflict.
 * - `select`: a branch-free tree of `select`s over the code bits, four codes at once (15 vec4 selects for
 *   4 weights), from splatted constants: no memory at all.
 * Both return the same f32 levels as the table, so the GEMV stays exact to f32 rounding.
 */
const NF4_WORKGROUP = /* wgsl */ `
var<workgroup> pk_nf4_levels: array<f32, 16>;
fn pk_nf4(h: u32) -> vec4<f32> {
  let c = (vec4<u32>(h) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
  return vec4<f32>(pk_nf4_levels[c.x], pk_nf4_levels[c.y], pk_nf4_levels[c.z], pk_nf4_levels[c.w]);
}
${NF4_CODES}`;
const NF4_WORKGROUP_PROLOGUE = `if (lid == 0u) {
    ${nf4Literals().map((v, i) => `pk_nf4_levels[${i}] = ${v};`).join(" ")}
  }
  workgroupBarrier();`;
const NF4_SELECT = /* wgsl */ `
fn pk_nf4(h: u32) -> vec4<f32> {
  let c = (vec4<u32>(h) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
  let b0 = (c & vec4<u32>(1u)) != vec4<u32>(0u);
  let b1 = (c & vec4<u32>(2u)) != vec4<u32>(0u);
  let b2 = (c & vec4<u32>(4u)) != vec4<u32>(0u);
  let b3 = (c & vec4<u32>(8u)) != vec4<u32>(0u);
  ${Array.from({ length: 8 }, (_, i) => `let l${i} = select(vec4<f32>(${nf4Literals()[2 * i]}), vec4<f32>(${nf4Literals()[2 * i + 1]}), b0);`).join("\n  ")}
  let m0 = select(l0, l1, b1);
  let m1 = select(l2, l3, b1);
  let m2 = select(l4, l5, b1);
  let m3 = select(l6, l7, b1);
  return select(select(m0, m1, b2), select(m2, m3, b2), b3);
}
${NF4_CODES}`;

const F16_SCALES = /* wgsl */ `
fn pk_scales(s: u32) -> vec2<f32> { return unpack2x16float(s); }
`;
const NO_META = /* wgsl */ `
fn pk_meta(s: u32, z: u32) -> u32 { return 0u; }
`;

/** Per-format WGSL, keyed by the packed dtype. */
export const PACKED_WGSL: Record<PackedDType, PackedWgsl> = {
  fp4: { codeBits: 4, group: 128, unit: 2 ** -14, scaleUnit: 1, scaleBits: 16, code: PLAIN_E2M1_CODES + F16_SCALES + NO_META },
  nvfp4: {
    codeBits: 4, group: 16, unit: 2 ** -14, scaleUnit: 2 ** -8, scaleBits: 8,
    code: `${PLAIN_E2M1_CODES}
fn pk_scales(s: u32) -> vec2<f32> { return unpack2x16float(((s & 0x7Fu) << 7u) | ((s & 0x7F00u) << 15u)); }
${NO_META}`,
  },
  razer: {
    codeBits: 4, group: 128, unit: 2 ** -14, scaleUnit: 1, scaleBits: 16,
    code: `${RAZER_CODES}
fn pk_scales(s: u32) -> vec2<f32> { return unpack2x16float(s & 0x3FFF3FFFu); }
// SV f16 bits per half: sign from bit 15 (31), 8·2^-14 = 0x1000 if bit 14 (30) is set, else 5·2^-14 = 0x0D00
fn pk_meta(s: u32, z: u32) -> u32 { return (s & 0x80008000u) | (0x0D000D00u + ((s >> 14u) & 0x00010001u) * 0x300u); }`,
  },
  "nvfp4-razer": {
    codeBits: 4, group: 16, unit: 2 ** -14, scaleUnit: 2 ** -12, scaleBits: 8,
    code: `${RAZER_CODES}
fn pk_spread(s: u32) -> u32 { return (s & 0xFFu) | ((s & 0xFF00u) << 8u); }
fn pk_scales(s: u32) -> vec2<f32> { return unpack2x16float((pk_spread(s) & 0x003F003Fu) << 7u); }
// bit 7 = SV sign, bit 6 = outlier O = 8 (0x1000 at 2^-14) rather than 5 (0x0D00)
fn pk_meta(s: u32, z: u32) -> u32 {
  let t = pk_spread(s);
  return ((t & 0x00800080u) << 8u) | (0x0D000D00u + ((t >> 6u) & 0x00010001u) * 0x300u);
}`,
  },
  nf4: {
    codeBits: 4, group: 64, unit: 1, scaleUnit: 1, scaleBits: 16,
    code: `
const PK_NF4 = array<f32, 16>(${nf4Levels()});
fn pk_nf4(h: u32) -> vec4<f32> {
  let c = (vec4<u32>(h) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
  var t = PK_NF4;
  return vec4<f32>(t[c.x], t[c.y], t[c.z], t[c.w]);
}
${NF4_CODES}${F16_SCALES}${NO_META}`,
  },
  "int4-asym": {
    codeBits: 4, group: 128, unit: 1, scaleUnit: 1, scaleBits: 32,
    code: `${NIBBLES}
// (q − z) exactly: pk_nib4 gives q − 8, the zero points are small integers
fn pk_codes(q: u32, z: u32) -> array<vec4<f32>, 2> {
  let zz = unpack2x16float(z) - 8.0;
  return array<vec4<f32>, 2>(pk_nib4(q) - zz.x, pk_nib4(q >> 16u) - zz.y);
}
${F16_SCALES}
fn pk_meta(s: u32, z: u32) -> u32 { return z; }`,
  },
  int8: {
    codeBits: 8, group: 0, unit: 1, scaleUnit: 1, scaleBits: 32,
    code: /* wgsl */ `
// the four int8 of u, without int-to-float conversions (as weights.ts's i8f)
fn pk_codes8(u: u32) -> vec4<f32> {
  let b = u ^ 0x80808080u;
  let m = (vec4<u32>(b, b, b >> 16u, b >> 16u) & vec4<u32>(0xffu, 0xff00u, 0xffu, 0xff00u)) | vec4<u32>(0x4b000000u);
  return fma(bitcast<vec4<f32>>(m), vec4<f32>(1.0, 0.00390625, 1.0, 0.00390625), vec4<f32>(-8388736.0, -32896.0, -8388736.0, -32896.0));
}`,
  },
};

/**
 * A GEMV decode variant: WGSL that replaces the format's `code` in the GEMV (GEMM and embed keep `code`),
 * and a prologue for the GEMV's entry point. `sentinelSum`: the GEMV sums RaZeR's special values apart
 * (`pk_plain`, `pk_sentinels`, and the SVs from `pk_meta`) instead of decoding them per element.
 */
export interface GemvDecodeVariant {
  readonly code: string;
  readonly prologue?: string;
  readonly sentinelSum?: boolean;
  /**
   * RaZeR only: weights uploaded while this variant is selected also get the "runs" layout, and the
   * backend's batch-1 GEMV reads that copy on int8 x (kernels/lane-blocks.ts); `code` serves the other
   * GEMVs (batched rows), which keep the tile layout.
   */
  readonly runs?: boolean;
}

/** Every format's GEMV decode variants; the first of each is what PACKED_WGSL decodes. */
export const GEMV_DECODE_VARIANTS: Partial<Record<PackedDType, Record<string, GemvDecodeVariant>>> = {
  razer: {
    "per-element": { code: PACKED_WGSL.razer.code },
    "sentinel-sum": { code: PACKED_WGSL.razer.code + RAZER_SENTINEL_SUM, sentinelSum: true },
    "runs-i8": { code: PACKED_WGSL.razer.code, runs: true },
  },
  "nvfp4-razer": {
    "per-element": { code: PACKED_WGSL["nvfp4-razer"].code },
    "sentinel-sum": { code: PACKED_WGSL["nvfp4-razer"].code + RAZER_SENTINEL_SUM, sentinelSum: true },
  },
  nf4: {
    private: { code: PACKED_WGSL.nf4.code },
    workgroup: { code: NF4_WORKGROUP + F16_SCALES + NO_META, prologue: NF4_WORKGROUP_PROLOGUE },
    select: { code: NF4_SELECT + F16_SCALES + NO_META },
  },
};
