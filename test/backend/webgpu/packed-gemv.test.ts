/**
 * Packed formats (src/quant) on WebGPU, GEMV (one row, the decode step): for every format, the output
 * equals the f64 product of x with the reference's unpacked weights within the f32 summation bound of
 * packed-helpers.ts, with subgroups (backend defaults) and without them (workgroup-memory reductions,
 * weights split into parts), on partial groups and tiles, K not a multiple of 4, and whole tiles under
 * other tuning variants (rows per team, split, unroll, pipelined).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { GpuTensor, WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import type { GpuWeight } from "../../../src/backend/webgpu/weights.js";
import { chunkElems, gemvKernel, gemvRows, xMode, type GemvX } from "../../../src/backend/webgpu/kernels/matmul.js";
import { f16ToF32, f32ToF16 } from "../../../src/tensor/half.js";
import { f32bits, grid } from "../../../src/backend/webgpu/kernel.js";
import { PACKED_DTYPES, type PackedDType } from "../../../src/tensor/dtype.js";
import { Rng, openOrSkip, randoms, tensorOf } from "./helpers.js";
import { SHAPES, assertProduct, packedWeight } from "./packed-helpers.js";

const { gpu, reason } = await openOrSkip();
// no subgroups, and weights split by rows into parts of 3 rows
const plain = gpu ? await openOrSkip({ subgroups: false, maxBindingBytes: 3 * 1024 }) : { gpu: undefined, reason };
after(() => {
  gpu?.dispose();
  plain.gpu?.dispose();
});

test("every packed format: GEMV equals the dense product of the unpacked weights", { skip: !gpu && reason }, async () => {
  const rng = new Rng(32);
  for (const format of PACKED_DTYPES) {
    // one shape a backend, and the plain backend (its reduction and part splitting do not depend on the
    // format) for one format of each scale layout: each pipeline takes SwiftShader about a second to compile
    const runs: [WebGpuBackend, [number, number]][] = [[gpu!, SHAPES[0]!]];
    if (["fp4", "nvfp4-razer", "int8"].includes(format)) runs.push([plain.gpu!, SHAPES[1]!]);
    for (const [g, [N, K]] of runs) {
      const { raw, w } = packedWeight(format, N, K, rng);
      const xs = randoms(K, rng);
      const wt = g.upload(raw);
      if (g === plain.gpu) assert.ok(wt.parts.length > 1, "weights split into parts");
      const out = g.activation(1, N);
      g.matmul(out, tensorOf(g, 1, K, xs), wt);
      assertProduct(await g.read(out), w, xs, 1, N, K, `${format} [${N}, ${K}] sg=${g.gpu.subgroupMinSize}`);
    }
  }
});

/** One GEMV variant run directly (the backend runs its defaults). */
async function gemvVariant(g: WebGpuBackend, w: GpuWeight, x: GpuTensor, R: number, S: number, U: number, pipeline: boolean, xAt: GemvX = "global"): Promise<Float32Array> {
  const K = w.inFeatures;
  const sg = g.gpu.subgroupMinSize;
  const out = g.activation(1, w.outFeatures);
  const k = gemvKernel(w.format, xMode(w.format, K), sg, R, S, U, pipeline, xAt);
  for (const part of w.parts) {
    const params = [part.rows, K, Math.ceil(K / chunkElems(w.format)), part.rowStart, w.stride / 4, w.blocks, f32bits(w.mul)];
    g.recorder.dispatch(k, params, [x.buf, part.data, part.scales!, out.buf], grid(Math.ceil(part.rows / gemvRows(sg, R, S))));
  }
  return g.read(out);
}

test("packed GEMV variants on whole tiles (rows per team, split, unroll, pipelined) equal the dense product", { skip: !gpu && reason }, async () => {
  const rng = new Rng(33);
  // a row of 5 whole tiles: every team's unrolled steps plus single-slot tails
  const [N, K] = [11, 5 * 1024];
  const cases: [WebGpuBackend, PackedDType, [number, number, number, boolean]][] = [
    [gpu!, "razer", [3, 1, 2, true]],
    [gpu!, "int8", [2, 2, 2, false]],
    [plain.gpu!, "nvfp4-razer", [4, 4, 1, false]],
  ];
  for (const [g, format, [R, S, U, pipe]] of cases) {
    const { raw, w } = packedWeight(format, N, K, rng);
    const xs = randoms(K, rng);
    const x = tensorOf(g, 1, K, xs) as GpuTensor;
    assertProduct(await gemvVariant(g, g.upload(raw), x, R, S, U, pipe), w, xs, 1, N, K, `${format} R=${R} S=${S} U=${U} pipeline=${pipe}`);
  }
});

test("packed GEMV with x staged in workgroup memory (f32; f16 on f16-representable x) equals the dense product", { skip: !gpu && reason }, async () => {
  const rng = new Rng(34);
  // whole tiles, and a K that leaves a partial tile (x past K staged as 0)
  const cases: [WebGpuBackend, PackedDType, [number, number], [number, number, number, GemvX]][] = [
    [gpu!, "razer", [11, 5 * 1024], [2, 2, 1, "shared-f16"]],
    [gpu!, "int8", [11, 5 * 1024], [4, 4, 1, "shared"]],
    [plain.gpu!, "nvfp4-razer", [7, 3 * 1024 + 200], [2, 1, 2, "shared"]],
  ];
  for (const [g, format, [N, K], [R, S, U, xAt]] of cases) {
    const { raw, w } = packedWeight(format, N, K, rng);
    const xs = Float32Array.from(randoms(K, rng), (v) => (Math.abs(v) < 2 ** -14 ? 0 : f16ToF32(f32ToF16(v))));
    const x = tensorOf(g, 1, K, xs) as GpuTensor;
    assertProduct(await gemvVariant(g, g.upload(raw), x, R, S, U, false, xAt), w, xs, 1, N, K, `${format} [${N}, ${K}] R=${R} S=${S} U=${U} x=${xAt}`);
  }
});

test("the backend lists every packed format", { skip: !gpu && reason }, () => {
  for (const f of PACKED_DTYPES) assert.ok(gpu!.formats.includes(f), f);
});
