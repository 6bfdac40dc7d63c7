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
// weights split by rows into parts of 2 rows (the part-local row and scale indexing)
const split = gpu ? await openOrSkip({ maxBindingBytes: 2 * 1536 }) : { gpu: undefined, reason };
after(() => {
  gpu?.dispose();
  split.gpu?.dispose();
});

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

test("weights split into parts: embed and GEMM (RaZeR, NVFP4-RaZeR)", { skip: !gpu && reason }, async () => {
  const rng = new Rng(35);
  const g = split.gpu!;
  const [N, K] = SHAPES[0]!;
  for (const format of ["razer", "nvfp4-razer"] as const) {
    const { raw, w } = packedWeight(format, N, K, rng);
    const wt = g.upload(raw);
    assert.ok(wt.parts.length > 2, `${format}: ${wt.parts.length} parts`);
    const tokens = Int32Array.from({ length: N }, (_, i) => (5 * i) % N);
    const emb = g.activation(N, K);
    g.embed(emb, wt, tokens);
    const got = await g.read(emb);
    for (let r = 0; r < N; r++) for (let i = 0; i < K; i++) if (got[r * K + i] !== w[tokens[r]! * K + i]) assert.fail(`${format} row ${tokens[r]} element ${i}`);
    const xs = randoms(3 * K, rng);
    const out = g.activation(3, N);
    g.matmul(out, tensorOf(g, 3, K, xs), wt);
    assertProduct(await g.read(out), w, xs, 3, N, K, `${format} GEMM in parts`);
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
