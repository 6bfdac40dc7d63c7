/**
 * The int8-activation GEMM (prefill) over q4_0 in the "blocks" layout: x's rows quantized per 32-block by
 * the GEMV's rule (gemv-blocks.ts quantXBlocksKernel over all rows' blocks at once), the weight nibbles
 * used as they are, and dot4I8Packed doing four multiply-adds an instruction where the f32 GEMM
 * (matmul.ts gemmKernel) does one. A block's integer sum is exact; it is scaled once, Σ (n − 8) q =
 * Σ n q − 8 Σ q as in the GEMV, so prefill computes the same quantized products as batch-1 decode and the
 * CPU backend's int8 path (decision 10), summed in another order.
 *
 * Tiles: 16·M x rows by 16·M weight rows a workgroup of 256 threads, each thread M x M outputs; K
 * advances gemmI8Step(M) blocks at a time. x and weight words sit in workgroup memory as [word][group of four
 * rows], so one vec4 load gives a word of four rows.
 */
import { ENTRY_ARGS, memoKernel, type Kernel } from "../kernel.js";
import { GEMM_MICROS, accIndex, gemmAccumulators, gemmStore, type GemmMicro } from "./matmul.js";

/** Blocks of K one tile step loads, for micro-tile M (16 KiB of workgroup memory or less either way). */
export const gemmI8Step = (M: GemmMicro): number => (M === 4 ? 2 : 1);

/**
 * Params: rows (of x), n (weight rows of this part), blocks (a row), o0 (output column of the part's row
 * 0), outCols, total (blocks of all x rows: where the high plane starts). Bindings: x planes (vec4 u32),
 * x (scale, sum) pairs, weight quants (u32), weight scales (f16 pairs, rows padded to 8 blocks), out.
 * Tiles of 16·M x rows by 16·M weight rows (matmul.ts gemmStore); grid: [ceil(n / 16M), ceil(rows / 16M)].
 */
export function gemmBlocksI8Kernel(M: GemmMicro = 4): Kernel {
  if (!GEMM_MICROS.includes(M)) throw new Error(`GEMM micro-tile ${String(M)} is not one of ${GEMM_MICROS.join(", ")}`);
  return memoKernel(`gemm.q4_0.blocks.i8${M === 4 ? "" : `.m${M}`}`, () => {
    const S = gemmI8Step(M);
    const T = 16 * M;
    const H = M / 4;
    // words of a block's four a thread loads (x: both planes; weight: the nibbles)
    const P = T / 64;
    const loads = Array.from({ length: P }, (_, q) => /* wgsl */ `{
        let part = part0 + ${q}u;
        var xa = 0u;
        var xb = 0u;
        if (r < p.rows && b < p.blocks) {
          let g = r * p.blocks + b;
          xa = xq[g][part];
          xb = xq[p.total + g][part];
        }
        xt[(j * 8u + part) * ${T / 4}u + lr / 4u][lr % 4u] = xa;
        xt[(j * 8u + part + 4u) * ${T / 4}u + lr / 4u][lr % 4u] = xb;
        var q = 0u;
        if (o < p.n && b < p.blocks) { q = w[(o * p.blocks + b) * 4u + part]; }
        // byte i of a q4_0 block: element i low, i + 16 high; word part holds elements 4 part.. (low) and 16 + 4 part.. (high)
        wt[(j * 8u + part) * ${T / 4}u + lr / 4u][lr % 4u] = q & 0x0f0f0f0fu;
        wt[(j * 8u + part + 4u) * ${T / 4}u + lr / 4u][lr % 4u] = (q >> 4u) & 0x0f0f0f0fu;
      }`).join("\n      ");
    const rowsAt = Array.from({ length: H }, (_, m) => `let a${m} = xt[(j * 8u + k) * ${T / 4}u + ${16 * m}u + ty];`).join(" ");
    const featuresAt = Array.from({ length: H }, (_, h) => `let c${h} = wt[(j * 8u + k) * ${T / 4}u + ${16 * h}u + tx];`).join(" ");
    const each = (f: (m: number, i: number, h: number) => string) => Array.from({ length: H }, (_, m) => Array.from({ length: 4 }, (_, i) => Array.from({ length: H }, (_, h) => f(m, i, h)))).flat(2);
    const dots = each((m, i, h) => `s${accIndex(M, m, i, h)} += vec4<i32>(dot4I8Packed(a${m}[${i}], c${h}.x), dot4I8Packed(a${m}[${i}], c${h}.y), dot4I8Packed(a${m}[${i}], c${h}.z), dot4I8Packed(a${m}[${i}], c${h}.w));`).join("\n        ");
    const scales = [
      ...Array.from({ length: H }, (_, h) => `let f${h} = j * ${T}u + ${64 * h}u + tx * 4u; let ws${h} = vec4<f32>(wst[f${h}], wst[f${h} + 1u], wst[f${h} + 2u], wst[f${h} + 3u]);`),
      ...Array.from({ length: H }, (_, m) => Array.from({ length: 4 }, (_, i) => `let x${m}_${i} = xst[j * ${T}u + ${64 * m + i}u + ty * 4u];`)).flat(),
      ...each((m, i, h) => `acc${accIndex(M, m, i, h)} += x${m}_${i}.x * ws${h} * i2f(s${accIndex(M, m, i, h)} - vec4<i32>(8 * i32(x${m}_${i}.y)));`),
    ].join("\n      ");
    const code = /* wgsl */ `
struct P { rows: u32, n: u32, blocks: u32, o0: u32, outCols: u32, total: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> xs: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read> sc: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// an integer sum as f32 without a conversion (gemv-i8.ts): exact below 2^22
fn i2f(i: vec4<i32>) -> vec4<f32> { return bitcast<vec4<f32>>(i + vec4<i32>(0x4B400000)) - vec4<f32>(12582912.0); }
fn wscale(i: u32) -> f32 { return unpack2x16float(sc[i >> 1u])[i & 1u]; }
// [step block][word 0..7][group of four rows]: word k holds elements 4k..4k+3 of the block
var<workgroup> xt: array<vec4<u32>, ${S * 8 * (T / 4)}>;
var<workgroup> wt: array<vec4<u32>, ${S * 8 * (T / 4)}>;
var<workgroup> xst: array<vec2<f32>, ${S * T}>;
var<workgroup> wst: array<f32, ${S * T}>;

@compute @workgroup_size(256)
fn main(${ENTRY_ARGS}) {
  let o0 = wid.x * ${T}u;
  let r0 = wid.y * ${T}u;
  let tx = lid % 16u;
  let ty = lid / 16u;
  // loading: thread lid brings ${P} of a block's 4 words of both planes (x) or of the nibbles (weight) for row lid / ${4 / P}
  let lr = lid / ${4 / P}u;
  let part0 = (lid % ${4 / P}u) * ${P}u;
  let r = r0 + lr;
  let o = o0 + lr;
  let srow = (p.blocks + 7u) & ~7u;
  ${gemmAccumulators(M)}
  for (var kb = 0u; kb < p.blocks; kb += ${S}u) {
    for (var j = 0u; j < ${S}u; j++) {
      let b = kb + j;
      ${loads}
      if (part0 == 0u) {
        var xsv = vec2<f32>(0.0);
        if (r < p.rows && b < p.blocks) { xsv = xs[r * p.blocks + b]; }
        var d = 0.0;
        if (o < p.n && b < p.blocks) { d = wscale(o * srow + b); }
        xst[j * ${T}u + lr] = xsv;
        wst[j * ${T}u + lr] = d;
      }
    }
    workgroupBarrier();
    for (var j = 0u; j < ${S}u; j++) {
      // explicit initializers: a declaration alone was not zeroed again each iteration on SwiftShader
      ${gemmAccumulators(M, "vec4<i32>", "s")}
      for (var k = 0u; k < 8u; k++) {
        ${rowsAt} ${featuresAt}
        ${dots}
      }
      ${scales}
    }
    workgroupBarrier();
  }
  ${gemmStore(M)}
}`;
    return { name: `matmul.gemm.q4_0.blocks.i8${M === 4 ? "" : `.m${M}`}`, code, bindings: ["read", "read", "read", "read", "write"] };
  });
}
