/**
 * The GEMV decode variants of kernels/packed.ts (SwiftShader in CI):
 * - RaZeR and NVFP4-RaZeR, per-element and sentinel-sum (spec §3.3): each agrees with the f64 dot product
 *   over the dequantized weights, and with the other, within 1e-5 · Σ|ŵ·x| (spec §8.1.4), for K in
 *   {128, 384, 896, 4864} (never a whole number of 1024-weight K steps but 128 < one step), N = 13 rows
 *   (not a multiple of any rows-per-workgroup), with and without subgroups.
 * - NF4's private-table, workgroup-table and select-tree decoders decode the same f32 levels in the same
 *   order, so their outputs are bit-identical, and equal the dense product within the f32 bound.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import { GEMV_DECODE_DEFAULTS, gemvDecodeOf, setGemvDecode } from "../../../src/backend/webgpu/kernels/packed.js";
import { GEMV_DECODE_VARIANTS } from "../../../src/quant/wgsl/decode.js";
import type { PackedDType } from "../../../src/tensor/dtype.js";
import { Rng, openOrSkip, randoms, tensorOf } from "./helpers.js";
import { assertProduct, packedWeight } from "./packed-helpers.js";

const { gpu, reason } = await openOrSkip();
const plain = gpu ? await openOrSkip({ subgroups: false }) : { gpu: undefined, reason };
after(() => {
  for (const [f, v] of Object.entries(GEMV_DECODE_DEFAULTS)) setGemvDecode(f as PackedDType, v);
  gpu?.dispose();
  plain.gpu?.dispose();
});

/** The GEMV output of every decode variant of `format`, through the backend's matmul. */
async function outputs(g: WebGpuBackend, format: PackedDType, N: number, K: number, rng: Rng): Promise<{ w: Float32Array; x: Float32Array; got: Record<string, Float32Array> }> {
  const { raw, w } = packedWeight(format, N, K, rng);
  const x = randoms(K, rng);
  const wt = g.upload(raw);
  const xt = tensorOf(g, 1, K, x);
  const got: Record<string, Float32Array> = {};
  try {
    for (const v of Object.keys(GEMV_DECODE_VARIANTS[format]!)) {
      setGemvDecode(format, v);
      assert.equal(gemvDecodeOf(format), v);
      const out = g.activation(1, N);
      g.matmul(out, xt, wt);
      got[v] = await g.read(out);
    }
  } finally {
    setGemvDecode(format, GEMV_DECODE_DEFAULTS[format]!);
  }
  return { w, x, got };
}

test("RaZeR GEMV: per-element and sentinel-sum agree with each other and the f64 dot within 1e-5·Σ|ŵx| (spec §8.1.4)", { skip: !gpu && reason }, async () => {
  const rng = new Rng(51);
  const N = 13;
  for (const format of ["razer", "nvfp4-razer"] as const) {
    for (const K of [128, 384, 896, 4864]) {
      for (const g of K === 896 ? [gpu!, plain.gpu!] : [gpu!]) {
        const { w, x, got } = await outputs(g, format, N, K, rng);
        const pe = got["per-element"]!, ss = got["sentinel-sum"]!;
        for (let o = 0; o < N; o++) {
          let exact = 0, mag = 0;
          for (let k = 0; k < K; k++) {
            const t = w[o * K + k]! * x[k]!;
            exact += t;
            mag += Math.abs(t);
          }
          const bound = 1e-5 * mag;
          const what = `${format} K=${K} sg=${g.gpu.subgroupMinSize} row ${o}`;
          assert.ok(Math.abs(pe[o]! - exact) <= bound, `${what}: per-element ${pe[o]} vs f64 ${exact} (bound ${bound})`);
          assert.ok(Math.abs(ss[o]! - exact) <= bound, `${what}: sentinel-sum ${ss[o]} vs f64 ${exact} (bound ${bound})`);
          assert.ok(Math.abs(pe[o]! - ss[o]!) <= bound, `${what}: per-element ${pe[o]} vs sentinel-sum ${ss[o]}`);
        }
      }
    }
  }
});

test("NF4 GEMV: private, workgroup and select decoders give bit-identical outputs equal to the dense product", { skip: !gpu && reason }, async () => {
  const rng = new Rng(52);
  for (const [g, N, K] of [[gpu!, 13, 2 * 1024 + 136], [plain.gpu!, 7, 1024 + 64]] as const) {
    const { w, x, got } = await outputs(g, "nf4", N, K, rng);
    assert.deepEqual(Object.keys(got), ["private", "workgroup", "select"]);
    assertProduct(got.private!, w, x, 1, N, K, `nf4 private sg=${g.gpu.subgroupMinSize}`);
    assert.deepEqual(got.workgroup, got.private, `nf4 workgroup sg=${g.gpu.subgroupMinSize}`);
    assert.deepEqual(got.select, got.private, `nf4 select sg=${g.gpu.subgroupMinSize}`);
  }
});

test("an unknown GEMV decode variant is refused by name", () => {
  assert.throws(() => setGemvDecode("razer", "lut"), /"lut" of razer: known per-element, sentinel-sum/);
  assert.throws(() => setGemvDecode("fp4", "x"), /one decoder only/);
});
