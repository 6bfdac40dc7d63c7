/**
 * The GEMMs' 8 x 8 micro-tile (128 x 128 tiles, matmul.ts GemmMicro) against the 4 x 4 one (64 x 64): each
 * output sums the same products in the same order, so every bit must agree, for the f32 GEMM over every
 * weight format and layout and for q4_0's int8-activation GEMM. The 4 x 4 GEMMs are checked against f64
 * products elsewhere (packed-gemm, gemm-i8, matmul tests). Shapes leave partial tiles of both sizes in both
 * directions, and the small-binding backend splits weights into parts.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { PACKED_DTYPES, type DType } from "../../../src/tensor/dtype.js";
import type { WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import type { RawTensor } from "../../../src/tensor/raw.js";
import { Rng, openOrSkip, randomWeight, tensorOf } from "./helpers.js";
import { packedWeight } from "./packed-helpers.js";

const { gpu, reason } = await openOrSkip();
const blocks = gpu ? await openOrSkip({ q4Layout: "blocks" }) : { gpu: undefined, reason };
const int8 = gpu ? await openOrSkip({ q4Layout: "blocks", activations: "int8" }) : { gpu: undefined, reason };
const split = gpu ? await openOrSkip({ q4Layout: "blocks", activations: "int8", subgroups: false, maxBindingBytes: 20 * 1072 }) : { gpu: undefined, reason };
after(() => {
  for (const b of [gpu, blocks.gpu, int8.gpu, split.gpu]) b?.dispose();
});

/** The product of M rows of x with raw on g, under micro-tile 4 and then 8. */
async function bothTiles(g: WebGpuBackend, raw: RawTensor, M: number, xs: Float32Array): Promise<[Float32Array, Float32Array]> {
  const [N, K] = raw.shape as [number, number];
  const w = g.upload(raw);
  const x = tensorOf(g, M, K, xs);
  const runs: Float32Array[] = [];
  for (const micro of [4, 8] as const) {
    g.gemmMicro = micro;
    const out = g.activation(M, N);
    g.matmul(out, x, w);
    runs.push(await g.read(out));
  }
  g.gemmMicro = 4;
  return [runs[0]!, runs[1]!];
}

function assertSameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length);
  const [ua, ub] = [new Uint32Array(a.buffer, a.byteOffset, a.length), new Uint32Array(b.buffer, b.byteOffset, b.length)];
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i}: 4x4 gave ${a[i]}, 8x8 gave ${b[i]}`);
}

const xOf = (rng: Rng, n: number) => Float32Array.from({ length: n }, (_, i) => (rng.next() * 2 - 1) * 2 ** ((i % 5) - 2));

test("the f32 GEMM's 8x8 micro-tile gives the 4x4 one's bits for every format and layout", { skip: !gpu && reason }, async () => {
  const rng = new Rng(7);
  const [M, N, K] = [133, 150, 9 * 32];
  for (const format of ["f32", "f16", "bf16", "q8_0", "q4_0"] as DType[]) {
    const raw = randomWeight(format as "f32", [N, K], rng);
    const xs = xOf(rng, M * K);
    for (const [name, g] of [["tiles", gpu!], ["blocks", blocks.gpu!]] as const) {
      if (name === "blocks" && format !== "q4_0") continue;
      const [a, b] = await bothTiles(g, raw, M, xs);
      assertSameBits(a, b, `${format} (${name})`);
    }
  }
  for (const format of PACKED_DTYPES) {
    const { raw } = packedWeight(format, 70, 2 * 1024 + 136, rng);
    const [a, b] = await bothTiles(gpu!, raw, 131, xOf(rng, 131 * (2 * 1024 + 136)));
    assertSameBits(a, b, format);
  }
});

test("q4_0's int8-activation GEMM: the 8x8 micro-tile gives the 4x4 one's bits, weights whole and in parts", { skip: !gpu && reason }, async () => {
  const rng = new Rng(9);
  const [M, N, K] = [140, 131, 67 * 32];
  const raw = randomWeight("q4_0", [N, K], rng);
  const xs = xOf(rng, M * K);
  for (const g of [int8.gpu!, split.gpu!]) {
    const [a, b] = await bothTiles(g, raw, M, xs);
    assertSameBits(a, b, `parts=${g.upload(raw).parts.length}`);
    assert.ok(a.some((v) => v !== 0));
  }
});
