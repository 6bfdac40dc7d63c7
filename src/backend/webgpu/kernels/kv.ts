/** Appending keys and values to a layer's cache: a copy of n rows to positions pos0.. (one thread per value). */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

export const KV_GROUP = 256;

/** Bindings: kCache, vCache, k, v. Params: n (values), dstBase (first value in the cache). */
export function kvWriteKernel(): Kernel {
  return memoKernel("kvWrite", () => ({
    name: "kvWrite",
    bindings: ["write", "write", "read", "read"],
    code: /* wgsl */ `
struct P { n: u32, dstBase: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> kc: array<f32>;
@group(0) @binding(2) var<storage, read_write> vc: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@compute @workgroup_size(${KV_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${KV_GROUP}u + lid;
  if (i >= p.n) { return; }
  kc[p.dstBase + i] = k[i];
  vc[p.dstBase + i] = v[i];
}`,
  }));
}

/**
 * Quantizes n rows of `heads` heads of D values into an int8 KV cache at positions pos0..: per (row, head)
 * s = max|x|/127, codes clamp(round-half-away(x/s), ±127) packed four to a u32 (lowest byte first), the
 * same rule as src/quant/int8.ts on one head row. One workgroup per (row, head); run once for K, once for V.
 * Bindings: codes, scales, src. Params: heads, pos0, items (rows * heads).
 */
export function kvWriteInt8Kernel(headDim: number): Kernel {
  if (headDim % 4 !== 0 || headDim > 256) throw new Error(`int8 KV cache: head dim ${headDim} must be a multiple of 4 and at most 256`);
  return memoKernel(`kvWrite.int8.${headDim}`, () => ({
    name: "kvWrite.int8",
    bindings: ["write", "write", "read"],
    code: /* wgsl */ `
struct P { heads: u32, pos0: u32, items: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> codes: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<f32>;
@group(0) @binding(3) var<storage, read> src: array<f32>;
const D = ${headDim}u;
const Q = ${headDim / 4}u;
var<workgroup> red: array<f32, 64>;
fn code(x: f32, s: f32) -> u32 {
  if (s <= 0.0) { return 0u; }
  let r = clamp(sign(x) * floor(abs(x / s) + 0.5), -127.0, 127.0);
  return u32(i32(r)) & 0xffu;
}
@compute @workgroup_size(64)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  if (id >= p.items) { return; }
  let r = id / p.heads;
  let h = id % p.heads;
  let base = id * D;
  var m = 0.0;
  var x = vec4<f32>(0.0);
  if (lid < Q) {
    x = vec4<f32>(src[base + 4u * lid], src[base + 4u * lid + 1u], src[base + 4u * lid + 2u], src[base + 4u * lid + 3u]);
    m = max(max(abs(x.x), abs(x.y)), max(abs(x.z), abs(x.w)));
  }
  red[lid] = m;
  workgroupBarrier();
  var amax = 0.0;
  for (var u = 0u; u < Q; u++) { amax = max(amax, red[u]); }
  let s = amax / 127.0;
  let dst = (p.pos0 + r) * p.heads + h;
  if (lid == 0u) { scales[dst] = s; }
  if (lid < Q) {
    codes[dst * Q + lid] = code(x.x, s) | (code(x.y, s) << 8u) | (code(x.z, s) << 16u) | (code(x.w, s) << 24u);
  }
}`,
  }));
}

/** KV-cache formats the WebGPU backend stores natively (src/kv/format.ts has the CPU codecs of the same names). */
export type GpuKvFormat = "f32" | "int8" | "int4" | "razer" | "nvfp4";
export const GPU_KV_FORMATS: readonly GpuKvFormat[] = ["f32", "int8", "int4", "razer", "nvfp4"];
/** The 4-bit KV formats (kvWriteQuant4Kernel, kvDecode4). */
export type Kv4Format = "int4" | "razer" | "nvfp4";
export const isKv4 = (f: string): f is Kv4Format => f === "int4" || f === "razer" || f === "nvfp4";

/**
 * u32 words one (position, kv head) takes in a layer's code and scale buffers:
 * - int8: four codes a word; one f32 scale.
 * - int4 (src/kv/format.ts "int4": int4-asym, groups of 32): eight nibbles a word, element k at bits
 *   4(k mod 8) of word k/8 (the CPU codec's bytes read as little-endian words); a word per group holding
 *   the f16 scale (low half) and the f16 zero point (high half), as the codec's scale bytes.
 * - razer ("razer": NVFP4-RaZeR, blocks of 16): nibbles as int4; the block scale bytes four to a word
 *   (block b at bits 8(b mod 4) of word b/4), then one word: the f32 bits of g, the per-(token, head) scale.
 * - nvfp4 ("nvfp4": E2M1 codes, an E4M3 scale byte per block of 16): razer's layout.
 */
export function kvWords(format: GpuKvFormat, headDim: number): { codes: number; scales: number } {
  switch (format) {
    case "f32":
      return { codes: headDim, scales: 0 };
    case "int8":
      return { codes: headDim / 4, scales: 1 };
    case "int4":
      return { codes: headDim / 8, scales: Math.ceil(headDim / 32) };
    case "razer":
    case "nvfp4":
      return { codes: headDim / 8, scales: Math.ceil(headDim / 64) + 1 };
  }
}

/** Throws unless the 4-bit KV formats can store heads of `headDim` (whole code words, a workgroup a head). */
export function checkKv4HeadDim(format: string, headDim: number): void {
  if (headDim % 8 !== 0 || headDim > 256) throw new Error(`${format} KV cache on WebGPU: head dim ${headDim} must be a multiple of 8 and at most 256`);
}

/** f16 bits of x >= 0 (finite, < 65520), rounded to nearest even, as src/tensor/half.ts f32ToF16. */
const F16_RNE = /* wgsl */ `
fn f16_rne(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let e = i32(b >> 23u) - 127;
  if (e < -25) { return 0u; }
  let m = (b & 0x7FFFFFu) | 0x800000u;
  // normal f16: keep 11 significant bits (the implicit one lands in the exponent field's lowest bit,
  // counted by biasing the exponent one less); subnormal: shift the significand further right
  let sh = select(13u, u32(-14 - e) + 13u, e < -14);
  let r = m >> sh;
  let rem = m & ((1u << sh) - 1u);
  let half = 1u << (sh - 1u);
  let up = select(0u, 1u, rem > half || (rem == half && (r & 1u) == 1u));
  if (e < -14) { return r + up; }
  return (u32(e + 14) << 10u) + r + up;
}`;

/** E2M1 value of code c (bit 3 = sign), and the E3M3 payload value S(p) of spec §4.2, exact in f32. */
const MINIFLOATS = /* wgsl */ `
fn e2m1v(c: u32) -> f32 {
  let k = c & 7u;
  let e = k >> 1u;
  let m = f32(k & 1u);
  let a = select(ldexp(1.0 + 0.5 * m, i32(e) - 1), 0.5 * m, e == 0u);
  return select(a, -a, (c & 8u) != 0u);
}
fn e3m3v(p: u32) -> f32 {
  let e = (p >> 3u) & 7u;
  let m = f32(p & 7u);
  return select(ldexp(1.0 + m / 8.0, i32(e) - 3), m * 0.03125, e == 0u);
}`;

/**
 * The per-(token, head) scale g = max|x| / (21 · 2^k) rounded to nearest f32 as the CPU rounds it (WGSL's
 * f32 division may be off by ulps): RaZeR divides by 168 (k = 3), NVFP4 by 6 · 448 = 2688 (k = 7).
 * Corrected in integers: 2 · mantissa(max) << (exponent difference − k, 4 or 5) against 42 · mantissa(g),
 * both below 2^30, until they are at most 21 (half a unit of g) apart.
 */
const G_OF = /* wgsl */ `
fn g_of(amax: f32, k: i32) -> f32 {
  var gb = bitcast<u32>(amax / (21.0 * ldexp(1.0, k)));
  let ab = bitcast<u32>(amax);
  let ma = (ab & 0x7FFFFFu) | 0x800000u;
  for (var it = 0u; it < 4u; it++) {
    let d = i32(ab >> 23u) - i32(gb >> 23u) - k;
    if (d < 4 || d > 5 || (gb >> 23u) == 0u) { break; }
    let a = 2u * (ma << u32(d));
    let b = 42u * ((gb & 0x7FFFFFu) | 0x800000u);
    if (a > b + 21u) { gb += 1u; continue; }
    if (b > a + 21u) { gb -= 1u; continue; }
    break;
  }
  return bitcast<f32>(gb);
}`;

/**
 * E4M3 byte and value of v in [2^-9, 448], rounded to nearest even (src/quant/minifloat.ts e4m3Round):
 * the quantum is 2^(e − 3) for v's exponent e (2^-9 below the normals), so v / quantum rounds exactly.
 */
const E4M3_RNE = /* wgsl */ `
fn e4m3_rne(v: f32) -> vec2<f32> {
  let e = max(i32(bitcast<u32>(v) >> 23u) - 127, -6);
  let q = ldexp(1.0, e - 3);
  let r = round(v / q) * q;
  let er = i32(bitcast<u32>(r) >> 23u) - 127;
  var code = u32(round(r * 512.0));
  if (er >= -6) { code = (u32(er + 7) << 3u) | u32(round((ldexp(r, -er) - 1.0) * 8.0)); }
  return vec2<f32>(f32(code), r);
}`;

/**
 * The razer/nvfp4 write kernels' shared start: the head's max |x| (a thread a block, then all threads),
 * g = max / (21·2^k), and in thread `lid < NG` its block's x/g in `x` and their max |x/g| in `bm`. The
 * head's largest value becomes ±top exactly (168 for RaZeR, 6·448 for NVFP4), not w/g with g's rounding,
 * as the CPU codecs do. Leaves the `if (lid < NG)` block open and `byte` for the block's scale byte.
 */
const blockHead = (k: number, top: string) => /* wgsl */ `  var am = 0.0;
  if (lid < NG) {
    for (var i = lid * G; i < min(lid * G + G, D); i++) { am = max(am, abs(src[base + i])); }
  }
  red[lid] = am;
  workgroupBarrier();
  var amax = 0.0;
  for (var u = 0u; u < NG; u++) { amax = max(amax, red[u]); }
  let g = select(1.0, g_of(amax, ${k}), amax > 0.0);
  var byte = 0u;
  if (lid < NG) {
    let start = lid * G;
    let n = min(G, D - start);
    var x: array<f32, 16>;
    var bm = 0.0;
    for (var i = 0u; i < n; i++) {
      let w = src[base + start + i];
      x[i] = select(w / g, sign(w) * ${top}, abs(w) == amax);
      bm = max(bm, abs(x[i]));
    }
`;

/** The razer/nvfp4 write kernels' end: the blocks' scale bytes four to a word, then g (layout in kvWords). */
const SCALE_WORDS = /* wgsl */ `  sbytes[lid] = byte;
  workgroupBarrier();
  if (lid < SW - 1u) {
    var word = 0u;
    for (var b = 0u; b < 4u; b++) { if (4u * lid + b < NG) { word |= sbytes[4u * lid + b] << (8u * b); } }
    scales[dst * SW + lid] = word;
  }
  if (lid == 0u) { scales[dst * SW + SW - 1u] = bitcast<u32>(g); }`;

/**
 * Quantizes n rows of `heads` heads of D values into a 4-bit KV cache at positions pos0.. (layout in
 * kvWords), with the CPU codec's rules (src/kv/format.ts), computed in f32 where the CPU uses f64:
 * - int4: per group of 32, s = f16((max − min)/15) (|max| if max = min), z = clamp(round(−min/s), 0, 15),
 *   q = clamp(round(x/s) + z, 0, 15), rounding half to even (src/quant/int4-asym.ts).
 * - razer: g = max|x|/168 per (row, head); per block of 16 of x/g, for SV in +5, −5, +8, −8: p = the E3M3
 *   payload nearest clamp(max|x/g|/qmax, 2^-5, 28) (qmax 6 for ±5, 8 for ±8; ties keep the smaller
 *   payload), codes the nearest level of L(SV) (exact midpoints to the lower level); the least squared
 *   error wins, earlier SV on ties (src/quant/nvfp4-razer.ts without clipping).
 * - nvfp4: g = max|x|/2688 per (row, head); per block of 16, s_b = E4M3_RNE(clamp(max|x/g|/6, 2^-9, 448)),
 *   codes the nearest E2M1 of x/(g·s_b), exact midpoints away from zero, zero as +0 (src/quant/nvfp4.ts).
 * One workgroup per (row, head), one thread per group; run once for K, once for V.
 * Bindings: codes, scales, src. Params: heads, pos0, items (rows * heads).
 */
export function kvWriteQuant4Kernel(format: Kv4Format, headDim: number): Kernel {
  checkKv4HeadDim(format, headDim);
  const G = format === "int4" ? 32 : 16;
  const NG = Math.ceil(headDim / G);
  const { codes: CW, scales: SW } = kvWords(format, headDim);
  const int4 = /* wgsl */ `
  if (lid < NG) {
    let start = lid * G;
    let n = min(G, D - start);
    var mn = src[base + start];
    var mx = mn;
    for (var i = 1u; i < n; i++) { let v = src[base + start + i]; mn = min(mn, v); mx = max(mx, v); }
    let sb = f16_rne(select(abs(mx), (mx - mn) / 15.0, mx > mn));
    let s = unpack2x16float(sb).x;
    var z = 0.0;
    if (s > 0.0) { z = clamp(round(-mn / s), 0.0, 15.0); }
    scales[dst * SW + lid] = sb | (pack2x16float(vec2<f32>(z, 0.0)) << 16u);
    for (var w = 0u; w < n / 8u; w++) {
      var word = 0u;
      for (var e = 0u; e < 8u; e++) {
        var q = 0.0;
        if (s > 0.0) { q = clamp(round(src[base + start + 8u * w + e] / s) + z, 0.0, 15.0); }
        word |= u32(q) << (4u * e);
      }
      codes[dst * CW + start / 8u + w] = word;
    }
  }`;
  const razer = /* wgsl */ `
${blockHead(3, "168.0")}    var bestErr = 3.0e38;
    var bestCodes = vec2<u32>(0u);
    for (var cand = 0u; cand < 4u; cand++) {
      let big = cand >= 2u;
      let sv = select(5.0, 8.0, big) * select(1.0, -1.0, (cand & 1u) == 1u);
      let v = clamp(bm / select(6.0, 8.0, big), 0.03125, 28.0);
      var pb = 0u;
      // ties keep the smaller payload (168/8 = 21 lies between 20 and 22)
      for (var pp = 1u; pp < 64u; pp++) { if (abs(e3m3v(pp) - v) < abs(e3m3v(pb) - v)) { pb = pp; } }
      let s = e3m3v(pb);
      var err = 0.0;
      var cw = vec2<u32>(0u);
      for (var i = 0u; i < n; i++) {
        let t = x[i] / s;
        var bc = 8u;
        var bl = 0.0;
        var bd = abs(t);
        for (var c = 0u; c < 16u; c++) {
          let l = select(e2m1v(c), sv, c == 0u);
          let d = abs(l - t);
          if (d < bd || (d == bd && l < bl)) { bc = c; bl = l; bd = d; }
        }
        let r = bl * s - x[i];
        err += r * r;
        cw[i / 8u] |= bc << (4u * (i % 8u));
      }
      if (err < bestErr) {
        bestErr = err;
        bestCodes = cw;
        byte = pb | select(0u, 0x80u, sv < 0.0) | select(0u, 0x40u, big);
      }
    }
    for (var w = 0u; w < n / 8u; w++) { codes[dst * CW + start / 8u + w] = bestCodes[w]; }
  }
${SCALE_WORDS}`;
  const nvfp4 = /* wgsl */ `
${blockHead(7, "2688.0")}    let sb = e4m3_rne(clamp(bm / 6.0, 0.001953125, 448.0));
    byte = u32(sb.x);
    var cw = vec2<u32>(0u);
    for (var i = 0u; i < n; i++) {
      let t = x[i] / sb.y;
      // the E2M1 magnitude code: midpoints at or below |t| (exact midpoints away from zero); zero as +0
      let a = abs(t);
      let k = u32(a >= 0.25) + u32(a >= 0.75) + u32(a >= 1.25) + u32(a >= 1.75) + u32(a >= 2.5) + u32(a >= 3.5) + u32(a >= 5.0);
      let c = select(k, k | 8u, t < 0.0 && k > 0u);
      cw[i / 8u] |= c << (4u * (i % 8u));
    }
    for (var w = 0u; w < n / 8u; w++) { codes[dst * CW + start / 8u + w] = cw[w]; }
  }
${SCALE_WORDS}`;
  return memoKernel(`kvWrite.${format}.${headDim}`, () => ({
    name: `kvWrite.${format}`,
    bindings: ["write", "write", "read"],
    code: /* wgsl */ `
struct P { heads: u32, pos0: u32, items: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> codes: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<u32>;
@group(0) @binding(3) var<storage, read> src: array<f32>;
const D = ${headDim}u;
const G = ${G}u;
const NG = ${NG}u;
const CW = ${CW}u;
const SW = ${SW}u;
${format === "int4" ? F16_RNE : `${MINIFLOATS}
${G_OF}
${format === "nvfp4" ? E4M3_RNE : ""}
var<workgroup> red: array<f32, 64>;
var<workgroup> sbytes: array<u32, 64>;`}
@compute @workgroup_size(64)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  if (id >= p.items) { return; }
  let r = id / p.heads;
  let h = id % p.heads;
  let base = id * D;
  let dst = (p.pos0 + r) * p.heads + h;
  ${format === "int4" ? int4 : format === "razer" ? razer : nvfp4}
}`,
  }));
}

/**
 * WGSL reading a 4-bit KV cache in attention: `kv4_k(ph, j)`, elements 4j..4j+3 of the K head row `ph`
 * (= position · kv heads + kv head), and `kv_v(ph, i)`, element i of the V row, decoded exactly as the CPU
 * codec decodes (int4: (q − z)·s; razer: g·(S(p)·v(c)), v(0x0) = the SV; nvfp4: g·(s_b·v(c)); one
 * rounding), over the bindings
 * kq, ks, vq, vs.
 */
export function kvDecode4(format: Kv4Format, headDim: number): string {
  const { codes: CW, scales: SW } = kvWords(format, headDim);
  const one =
    format === "int4"
      ? (q: string, s: string) => `fn ${q}_at(ph: u32, i: u32) -> f32 {
  let c = (${q}[ph * ${CW}u + i / 8u] >> (4u * (i % 8u))) & 15u;
  let sz = unpack2x16float(${s}[ph * ${SW}u + i / 32u]);
  return (f32(c) - sz.y) * sz.x;
}`
      : (q: string, s: string) => `fn ${q}_at(ph: u32, i: u32) -> f32 {
  let c = (${q}[ph * ${CW}u + i / 8u] >> (4u * (i % 8u))) & 15u;
  let b = (${s}[ph * ${SW}u + i / 64u] >> (8u * ((i / 16u) % 4u))) & 0xFFu;
  let sv = select(5.0, 8.0, (b & 0x40u) != 0u) * select(1.0, -1.0, (b & 0x80u) != 0u);
  let v = select(e2m1v(c), sv, c == 0u);
  return bitcast<f32>(${s}[ph * ${SW}u + ${SW - 1}u]) * (e3m3v(b & 0x3Fu) * v);
}`;
  const nv = (q: string, s: string) => `fn ${q}_at(ph: u32, i: u32) -> f32 {
  let c = (${q}[ph * ${CW}u + i / 8u] >> (4u * (i % 8u))) & 15u;
  let b = (${s}[ph * ${SW}u + i / 64u] >> (8u * ((i / 16u) % 4u))) & 0x7Fu;
  let e = (b >> 3u) & 15u;
  let sb = select(ldexp(1.0 + f32(b & 7u) / 8.0, i32(e) - 7), f32(b & 7u) * 0.001953125, e == 0u);
  return bitcast<f32>(${s}[ph * ${SW}u + ${SW - 1}u]) * (sb * e2m1v(c));
}`;
  const fn = format === "nvfp4" ? nv : one;
  return `${format === "int4" ? "" : MINIFLOATS}
${fn("kq", "ks")}
${fn("vq", "vs")}
fn kv4_k(ph: u32, j: u32) -> vec4<f32> { return vec4<f32>(kq_at(ph, 4u * j), kq_at(ph, 4u * j + 1u), kq_at(ph, 4u * j + 2u), kq_at(ph, 4u * j + 3u)); }
fn kv_v(ph: u32, i: u32) -> f32 { return vq_at(ph, i); }`;
}
