/**
 * The int8-activation GEMM (prefill) over q4_0 in the "blocks" layout: x's rows quantized per 32-block by
 * the GEMV's rule (gemv-blocks.ts quantXBlocksKernel over all rows' blocks at once), the weight nibbles
 * used as they are, and dot4I8Packed doing four multiply-adds an instruction where the f32 GEMM
 * (matmul.ts gemmKernel) does one. A block's integer sum is exact; it is scaled once, Σ (n − 8) q =
 * Σ n q − 8 Σ q as in the GEMV, so prefill computes the same quantized products as batch-1 decode and the
 * CPU backend's int8 path (decision 10), summed in another order.
 *
 * Tiles: 64 x rows by 64 weight rows a workgroup of 256 threads, each thread 4 x 4 outputs; K advances
 * GEMM_I8_STEP blocks at a time. x and weight words sit in workgroup memory as [word][group of four
 * rows], so one vec4 load gives a word of four rows.
 */
import { ENTRY_ARGS, memoKernel, type Kernel } from "../kernel.js";
import { GEMM_STORE } from "./matmul.js";

/** Blocks of K one tile step loads (64 rows x this many blocks of x and of the weight). */
export const GEMM_I8_STEP = 2;

/** Output tile: x rows and weight rows a workgroup. */
export const GEMM_I8_TILE = 64;

/**
 * Params: rows (of x), n (weight rows of this part), blocks (a row), o0 (output column of the part's row
 * 0), outCols, total (blocks of all x rows: where the high plane starts). Bindings: x planes (vec4 u32),
 * x (scale, sum) pairs, weight quants (u32), weight scales (f16 pairs, rows padded to 8 blocks), out.
 * Grid: [ceil(n / 64), ceil(rows / 64)].
 */
export function gemmBlocksI8Kernel(): Kernel {
  return memoKernel("gemm.q4_0.blocks.i8", () => {
    const S = GEMM_I8_STEP;
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
var<workgroup> xt: array<vec4<u32>, ${S * 8 * 16}>;
var<workgroup> wt: array<vec4<u32>, ${S * 8 * 16}>;
var<workgroup> xst: array<vec2<f32>, ${S * 64}>;
var<workgroup> wst: array<f32, ${S * 64}>;

@compute @workgroup_size(256)
fn main(${ENTRY_ARGS}) {
  let o0 = wid.x * 64u;
  let r0 = wid.y * 64u;
  let tx = lid % 16u;
  let ty = lid / 16u;
  // loading: thread lid brings word lid % 4 of both planes (x) or of the nibbles (weight) for row lid / 4
  let lr = lid / 4u;
  let part = lid % 4u;
  let r = r0 + lr;
  let o = o0 + lr;
  let srow = (p.blocks + 7u) & ~7u;
  var acc: array<vec4<f32>, 4>;
  for (var kb = 0u; kb < p.blocks; kb += ${S}u) {
    for (var j = 0u; j < ${S}u; j++) {
      let b = kb + j;
      var xa = 0u;
      var xb = 0u;
      var xsv = vec2<f32>(0.0);
      if (r < p.rows && b < p.blocks) {
        let g = r * p.blocks + b;
        xa = xq[g][part];
        xb = xq[p.total + g][part];
        xsv = xs[g];
      }
      xt[(j * 8u + part) * 16u + lr / 4u][lr % 4u] = xa;
      xt[(j * 8u + part + 4u) * 16u + lr / 4u][lr % 4u] = xb;
      var q = 0u;
      var d = 0.0;
      if (o < p.n && b < p.blocks) {
        q = w[(o * p.blocks + b) * 4u + part];
        d = wscale(o * srow + b);
      }
      // byte i of a q4_0 block: element i low, i + 16 high; word part holds elements 4 part.. (low) and 16 + 4 part.. (high)
      wt[(j * 8u + part) * 16u + lr / 4u][lr % 4u] = q & 0x0f0f0f0fu;
      wt[(j * 8u + part + 4u) * 16u + lr / 4u][lr % 4u] = (q >> 4u) & 0x0f0f0f0fu;
      if (part == 0u) {
        xst[j * 64u + lr] = xsv;
        wst[j * 64u + lr] = d;
      }
    }
    workgroupBarrier();
    for (var j = 0u; j < ${S}u; j++) {
      // an explicit initializer: a declaration alone was not zeroed again each iteration on SwiftShader
      var s = array<vec4<i32>, 4>();
      for (var k = 0u; k < 8u; k++) {
        let a = xt[(j * 8u + k) * 16u + ty];
        let c = wt[(j * 8u + k) * 16u + tx];
        for (var i = 0u; i < 4u; i++) {
          s[i] += vec4<i32>(dot4I8Packed(a[i], c.x), dot4I8Packed(a[i], c.y), dot4I8Packed(a[i], c.z), dot4I8Packed(a[i], c.w));
        }
      }
      let ws = vec4<f32>(wst[j * 64u + tx * 4u], wst[j * 64u + tx * 4u + 1u], wst[j * 64u + tx * 4u + 2u], wst[j * 64u + tx * 4u + 3u]);
      for (var i = 0u; i < 4u; i++) {
        let x = xst[j * 64u + ty * 4u + i];
        acc[i] += x.x * ws * i2f(s[i] - vec4<i32>(8 * i32(x.y)));
      }
    }
    workgroupBarrier();
  }
  ${GEMM_STORE}
}`;
    return { name: "matmul.gemm.q4_0.blocks.i8", code, bindings: ["read", "read", "read", "read", "write"] };
  });
}
