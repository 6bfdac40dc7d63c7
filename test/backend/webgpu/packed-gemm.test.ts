/**
 * Packed formats (src/quant) on WebGPU, the layout and the GEMM (prefill): for every format, embed reads
 * every element of the GPU layout and must give the reference codec's unpacked weights exactly (the
 * decoded code times the decoded scale is exact and the row factor rounds once, as the reference's f64
 * product does; −0 and +0 count as equal, the GPU keeps E2M1's −0 code's sign), and a 5-row matmul must
 * equal the f64 product with those weights within the summation bound of packed-helpers.ts.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { PACKED_DTYPES } from "../../../src/tensor/dtype.js";
import { Rng, openOrSkip, randoms, tensorOf } from "./helpers.js";
import { SHAPES, assertProduct, packedWeight } from "./packed-helpers.js";

const { gpu, reason } = await openOrSkip();
after(() => gpu?.dispose());

test("every packed format's GPU layout decodes to the reference's unpacked weights (embed)", { skip: !gpu && reason }, async () => {
  const rng = new Rng(31);
  for (const format of PACKED_DTYPES) {
    for (const [N, K] of SHAPES) {
      const { raw, w } = packedWeight(format, N, K, rng);
      const tokens = Int32Array.from({ length: N }, (_, i) => N - 1 - i);
      const out = gpu!.activation(N, K);
      gpu!.embed(out, gpu!.upload(raw), tokens);
      const got = await gpu!.read(out);
      for (let r = 0; r < N; r++) {
        for (let i = 0; i < K; i++) {
          const want = w[tokens[r]! * K + i]!;
          if (got[r * K + i] !== want) assert.fail(`${format} [${N}, ${K}] row ${tokens[r]} element ${i}: ${got[r * K + i]}, reference ${want}`);
        }
      }
    }
  }
});

test("every packed format: GEMM (5 rows) equals the dense product of the unpacked weights", { skip: !gpu && reason }, async () => {
  const rng = new Rng(34);
  const rows = 5;
  for (const format of PACKED_DTYPES) {
    for (const [N, K] of SHAPES) {
      const { raw, w } = packedWeight(format, N, K, rng);
      const xs = randoms(rows * K, rng);
      const out = gpu!.activation(rows, N);
      gpu!.matmul(out, tensorOf(gpu!, rows, K, xs), gpu!.upload(raw));
      assertProduct(await gpu!.read(out), w, xs, rows, N, K, `${format} [${N}, ${K}] rows=${rows}`);
    }
  }
});
