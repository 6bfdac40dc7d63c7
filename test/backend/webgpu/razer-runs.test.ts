/**
 * RaZeR's "runs-i8" GEMV decode variant (kernels/lane-blocks.ts; SwiftShader in CI), with and without
 * subgroups:
 * - weights uploaded under it carry a runs copy, and the batch-1 matmul reads it on int8 x: with an x
 *   that int8 represents exactly (integers with a ±127 in every 32-block, times a power of two), the output
 *   equals the f64 dense product over the engine's unpacked weights within the f32 bound; with a random x,
 *   the same against x rounded by the int8 rule (which the f32-x tile path would not match);
 * - several x rows (batched GEMV) and prefill rows (GEMM) still read the tile copy and agree with the
 *   dense product;
 * - uploadStack does not stack such weights, so the fused GEMVs decline and each matmul takes its runs copy;
 * - K not a whole number of groups keeps the tile layout only;
 * - a small random RaZeR Llama decodes to nearly the default variant's logits (cosine > 0.999 each step),
 *   and not bit for bit (so the runs GEMV ran).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import { GEMV_DECODE_DEFAULTS, setGemvDecode } from "../../../src/backend/webgpu/kernels/packed.js";
import type { PackedDType } from "../../../src/tensor/dtype.js";
import { Rng, openOrSkip, randoms, tensorOf } from "./helpers.js";
import { assertProduct, packedWeight } from "./packed-helpers.js";
import { LlamaModel, expectedShape, expectedTensorNames } from "../../../src/model/llama.js";
import type { RawTensor } from "../../../src/tensor/raw.js";
import { randomWeight } from "../../../bench/random-weights.js";
import { randomLlamaConfig } from "../../../bench/make-random-gguf.js";

const { gpu, reason } = await openOrSkip();
const plain = gpu ? await openOrSkip({ subgroups: false }) : { gpu: undefined, reason };
after(() => {
  for (const [f, v] of Object.entries(GEMV_DECODE_DEFAULTS)) setGemvDecode(f as PackedDType, v);
  gpu?.dispose();
  plain.gpu?.dispose();
});
const backends: [string, WebGpuBackend | undefined][] = [["subgroups", gpu], ["no subgroups", plain.gpu]];

/** x whose int8 quantization is exact: integers in [−127, 127], one ±127 a 32-block, times 2^-e. */
function exactX(K: number, rng: Rng): Float32Array {
  const x = new Float32Array(K);
  for (let b = 0; b < K / 32; b++) {
    const scale = 2 ** -Math.floor(rng.next() * 6);
    for (let i = 0; i < 32; i++) x[32 * b + i] = (Math.floor(rng.next() * 255) - 127) * scale;
    x[32 * b + Math.floor(rng.next() * 32)] = (rng.next() < 0.5 ? -127 : 127) * scale;
  }
  return x;
}

/** x as the int8 path sees it: per 32-block q = round-half-even(x · f32(127 / amax)) times f32(amax / 127). */
function int8Rounded(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  const even = (v: number) => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[32 * b + i]!));
    const inv = Math.fround(127 / amax);
    const d = Math.fround(amax / 127);
    for (let i = 0; i < 32; i++) out[32 * b + i] = Math.max(-127, Math.min(127, even(Math.fround(x[32 * b + i]! * inv)))) * d;
  }
  return out;
}

async function gemv(g: WebGpuBackend, wt: ReturnType<WebGpuBackend["upload"]>, x: Float32Array, rows: number, N: number, K: number): Promise<Float32Array> {
  const out = g.activation(rows, N);
  g.matmul(out, tensorOf(g, rows, K, x), wt);
  return g.read(out);
}

for (const [label, g] of backends) {
  test(`razer runs-i8 GEMV equals the dense product (${label})`, { skip: !g && reason }, async () => {
    setGemvDecode("razer", "runs-i8");
    const rng = new Rng(31);
    // 13 rows: a partial workgroup; 5 and 18 groups: runs in the tail loop and in whole steps
    for (const [N, K] of [[13, 640], [70, 2304]] as const) {
      const { raw, w } = packedWeight("razer", N, K, rng);
      const wt = g!.upload(raw);
      assert.ok(wt.runs, "a razer weight uploaded under runs-i8 has a runs copy");
      const x = exactX(K, rng);
      assertProduct(await gemv(g!, wt, x, 1, N, K), w, x, 1, N, K, `runs-i8 ${N}x${K} exact x`);
      // a random x: the product over its int8 rounding (kernels/gemv-i8.ts's rule in f32), which the
      // tile path (f32 x) would miss
      const xr = randoms(K, rng);
      assertProduct(await gemv(g!, wt, xr, 1, N, K), w, int8Rounded(xr), 1, N, K, `runs-i8 ${N}x${K} random x`);
      // 3 rows (batched GEMV) and 20 rows (GEMM) read the tile copy
      for (const rows of [3, 20]) {
        const xs = randoms(rows * K, rng);
        assertProduct(await gemv(g!, wt, xs, rows, N, K), w, xs, rows, N, K, `runs-i8 weights, ${rows} x rows`);
      }
    }
  });

  test(`razer runs-i8 weights are not stacked, and K off whole groups keeps tiles only (${label})`, { skip: !g && reason }, async () => {
    setGemvDecode("razer", "runs-i8");
    const rng = new Rng(32);
    const K = 512;
    const a = packedWeight("razer", 16, K, rng);
    const b = packedWeight("razer", 24, K, rng);
    const ws = g!.uploadStack([a.raw, b.raw]);
    assert.ok(ws.every((w) => w.runs), "each member keeps its runs copy");
    const x = exactX(K, rng);
    const xt = tensorOf(g!, 1, K, x);
    assert.equal(g!.matmulStacked([g!.activation(1, 16), g!.activation(1, 24)], xt, ws), false);
    assert.equal(g!.matmulAdd(g!.activation(1, 16), xt, ws[0]!), false);
    assertProduct(await gemv(g!, ws[1]!, x, 1, 24, K), b.w, x, 1, 24, K, "runs-i8 unstacked member");
    const odd = packedWeight("razer", 7, 2 * 1024 + 136, rng);
    const wo = g!.upload(odd.raw);
    assert.equal(wo.runs, undefined);
    const xo = randoms(2 * 1024 + 136, rng);
    assertProduct(await gemv(g!, wo, xo, 1, 7, 2 * 1024 + 136), odd.w, xo, 1, 7, 2 * 1024 + 136, "runs-i8, K off whole groups");
    setGemvDecode("razer", GEMV_DECODE_DEFAULTS.razer!);
    assert.equal(g!.upload(a.raw).runs, undefined, "the default variant uploads no runs copy");
  });
}

test("a RaZeR model decodes under runs-i8 as under the default variant, up to x's int8 rounding", { skip: !gpu && reason }, async () => {
  // every projection K a whole number of groups (128, 256), so each batch-1 matmul takes a runs copy
  const config = randomLlamaConfig({ dim: 128, layers: 2, hidden: 256, heads: 4, kvHeads: 2, vocab: 384, ctx: 64, tied: false });
  const tensors = new Map<string, RawTensor>(expectedTensorNames(config).map((n, i) => [n, randomWeight(n, "razer", expectedShape(config, n), 11 * i + 1)]));
  const logits = async (variant: string): Promise<Float32Array[]> => {
    setGemvDecode("razer", variant);
    const net = LlamaModel.create(config, tensors, gpu!, `random razer ${variant}`, 64);
    const cache = net.newCache(64);
    const out = [await gpu!.read(net.forward(Int32Array.from([5, 17, 300, 42]), 0, cache))];
    for (let t = 0; t < 3; t++) out.push(await gpu!.read(net.forward(Int32Array.from([7 + t]), 4 + t, cache)));
    return out;
  };
  const base = await logits(GEMV_DECODE_DEFAULTS.razer!);
  const runs = await logits("runs-i8");
  setGemvDecode("razer", GEMV_DECODE_DEFAULTS.razer!);
  let differ = false;
  for (let s = 0; s < base.length; s++) {
    const a = runs[s]!, b = base[s]!;
    let dot = 0, na = 0, nb = 0;
    for (let i = 0; i < b.length; i++) {
      dot += a[i]! * b[i]!;
      na += a[i]! * a[i]!;
      nb += b[i]! * b[i]!;
      if (a[i] !== b[i]) differ = true;
    }
    const cos = dot / Math.sqrt(na * nb);
    assert.ok(cos > 0.999, `step ${s}: cosine ${cos} between the runs-i8 and default logits`);
  }
  // the prompt (GEMM) reads the tile copy in both; the decode steps must not (int8 x rounds)
  assert.ok(differ, "runs-i8 gave the default variant's logits bit for bit: its runs GEMV did not run");
});
