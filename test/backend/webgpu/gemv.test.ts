/**
 * The GEMV's tile layout (weights.ts) and its tuning variants (kernels/matmul.ts), on rows long enough
 * to hold whole tiles, the unrolled steps of every variant and a rest in the file's order:
 * - embed reads every element through the layout's decoder: it must give the CPU's decoded weights
 *   bit for bit;
 * - GEMV (every rows-per-team / split / unroll / x-staging variant, with and without subgroups) and GEMM
 *   must equal the exact (f64) product of the decoded weights within the f32 summation bound
 *   (K + 8) * 2^-24 * sum |w x|, which a misplaced element or scale exceeds by orders of magnitude; x
 *   staged as f16 adds its rounding (assertProduct), and on f16-representable x meets the f32 bound.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { decodeRow } from "../../../src/backend/cpu/reference.js";
import type { WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import type { GpuWeight } from "../../../src/backend/webgpu/weights.js";
import { TILE_ELEMS } from "../../../src/backend/webgpu/weights.js";
import { chunkElems, gemvKernel, gemvRows, gemvVariantName, parseGemvVariant, xMode, type GemvX } from "../../../src/backend/webgpu/kernels/matmul.js";
import { f16ToF32, f32ToF16 } from "../../../src/tensor/half.js";
import { grid } from "../../../src/backend/webgpu/kernel.js";
import type { BlockDType as DType } from "../../../src/tensor/dtype.js";
import type { RawTensor } from "../../../src/tensor/raw.js";
import { Rng, openOrSkip, randomWeight, randoms, tensorOf } from "./helpers.js";
import type { GpuTensor } from "../../../src/backend/webgpu/webgpu-backend.js";

// f32 activations: these tests check the layout and the f32 kernels against the exact product (the int8
// path, the q8_0/q4_0 default, is checked in gemv-i8.test.ts)
const { gpu, reason } = await openOrSkip({ activations: "f32" });
// no subgroups (the workgroup-memory reductions), and weights split by rows into several parts
const plain = gpu ? await openOrSkip({ activations: "f32", subgroups: false, maxBindingBytes: 4 * 5216 }) : { gpu: undefined, reason };
after(() => {
  gpu?.dispose();
  plain.gpu?.dispose();
});

/** [N, K] per format: whole tiles (enough for 32-lane teams' unrolled steps) plus a rest, and odd K. */
const SHAPES: Record<DType, [number, number][]> = {
  f32: [[13, 1030], [9, 1024]],
  f16: [[13, 5 * 256 + 44], [9, 5 * 256 + 8]],
  bf16: [[13, 5 * 256 + 12]],
  q8_0: [[13, 5 * 512 + 64], [9, 4 * 512]],
  q4_0: [[13, 5 * 1024 + 96], [9, 4 * 1024]],
};
const FORMATS = Object.keys(SHAPES) as DType[];

/** Rows of the weight decoded on the CPU (the oracle's reading of the file format). */
function decoded(raw: RawTensor): Float32Array[] {
  const [N, K] = raw.shape as [number, number];
  return Array.from({ length: N }, (_, o) => {
    const row = new Float32Array(K);
    decodeRow(raw.dtype, raw.data, o, K, row);
    return row;
  });
}

/**
 * Checks out[r][o] against the f64 product with the summation bound; with `xHalf`, x was rounded to f16
 * first (either neighbour, or flushed to zero below f16's smallest normal 2^-14), so each x_i may be off
 * by e_i = 2^-10 |x_i| + 2^-14 and the bound grows by (1 + gamma) sum |w_i| e_i.
 */
function assertProduct(got: Float32Array, w: Float32Array[], x: Float32Array, rows: number, what: string, xHalf = false): void {
  const N = w.length;
  const K = w[0]!.length;
  const gamma = (K + 8) * 2 ** -24;
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < N; o++) {
      let exact = 0;
      let mag = 0;
      let xErr = 0;
      for (let i = 0; i < K; i++) {
        const t = w[o]![i]! * x[r * K + i]!;
        exact += t;
        mag += Math.abs(t);
        if (xHalf) xErr += Math.abs(w[o]![i]!) * (2 ** -10 * Math.abs(x[r * K + i]!) + 2 ** -14);
      }
      const bound = gamma * mag + (1 + gamma) * xErr;
      const g = got[r * N + o]!;
      if (!(Math.abs(g - exact) <= bound)) assert.fail(`${what}: out[${r}][${o}] = ${g}, exact ${exact}, bound ${bound}`);
    }
  }
}

test("the tile layout decodes to the file's values bit for bit (embed reads every element)", { skip: !gpu && reason }, async () => {
  const rng = new Rng(21);
  for (const format of FORMATS) {
    for (const [N, K] of SHAPES[format]) {
      const raw = randomWeight(format, [N, K], rng);
      const want = decoded(raw);
      for (const g of [gpu!, plain.gpu!]) {
        const tokens = Int32Array.from({ length: N }, (_, i) => N - 1 - i);
        const out = g.activation(N, K);
        g.embed(out, g.upload(raw), tokens);
        const got = await g.read(out);
        for (let r = 0; r < N; r++) {
          const row = want[tokens[r]!]!;
          for (let i = 0; i < K; i++) {
            if (!Object.is(got[r * K + i], row[i])) assert.fail(`${format} [${N}, ${K}] row ${tokens[r]} element ${i}: ${got[r * K + i]}, file ${row[i]}`);
          }
        }
      }
    }
  }
});

test("tiles are 512 bytes of each format", () => {
  for (const f of FORMATS) assert.equal((TILE_ELEMS[f] / chunkElems(f)) * 16, 512, f);
});

/** Runs one GEMV variant directly (the backend runs its defaults) and returns the output row. */
async function gemvVariant(g: WebGpuBackend, w: GpuWeight, x: GpuTensor, R: number, S: number, U: number, pipeline: boolean, xAt: GemvX = "global"): Promise<Float32Array> {
  const K = w.inFeatures;
  const sg = g.gpu.subgroupMinSize;
  const out = g.activation(1, w.outFeatures);
  const k = gemvKernel(w.format, xMode(w.format, K), sg, R, S, U, pipeline, xAt);
  for (const part of w.parts) {
    const bufs = part.scales ? [x.buf, part.data, part.scales, out.buf] : [x.buf, part.data, out.buf];
    const params = [part.rows, K, Math.ceil(K / chunkElems(w.format)), part.rowStart, w.stride / 4, w.blocks];
    g.recorder.dispatch(k, params, bufs, grid(Math.ceil(part.rows / gemvRows(sg, R, S))));
  }
  return g.read(out);
}

test("GEMV: every variant (rows per team, split, unroll, pipelined or not), with and without subgroups, equals the exact product", { skip: !gpu && reason }, async () => {
  const rng = new Rng(22);
  // (R, S, U, pipeline) per backend; SwiftShader takes about a second to compile each, so each path is covered once
  const variants = new Map<WebGpuBackend, [number, number, number, boolean][]>([
    [gpu!, [[2, 2, 2, true], [3, 1, 2, false]]],
    [plain.gpu!, [[1, 1, 1, false], [4, 4, 1, true]]],
  ]);
  for (const format of ["f32", "f16", "q8_0", "q4_0"] as DType[]) {
    for (const [N, K] of SHAPES[format].slice(0, 1)) {
      const raw = randomWeight(format, [N, K], rng);
      const w = decoded(raw);
      const xs = randoms(K, rng);
      for (const [g, list] of variants) {
        const wt = g.upload(raw);
        const x = tensorOf(g, 1, K, xs) as GpuTensor;
        for (const [R, S, U, pipe] of list) {
          assertProduct(await gemvVariant(g, wt, x, R, S, U, pipe), w, xs, 1, `${format} [${N}, ${K}] R=${R} S=${S} U=${U} pipeline=${pipe} sg=${g.gpu.subgroupMinSize}`);
        }
      }
    }
  }
});

test("GEMV with x staged in workgroup memory (f32, f16) equals the exact product; f16 within its rounding bound, exactly on f16 x", { skip: !gpu && reason }, async () => {
  const rng = new Rng(24);
  // (R, S, U, x) per backend: windows of one and of several teams' slots, rows past n, split weights
  const variants = new Map<WebGpuBackend, [number, number, number, GemvX][]>([
    [gpu!, [[2, 2, 2, "shared"], [4, 4, 1, "shared-f16"]]],
    [plain.gpu!, [[3, 1, 1, "shared"], [1, 2, 2, "shared-f16"]]],
  ]);
  for (const format of ["f32", "f16", "q8_0", "q4_0"] as DType[]) {
    const [N, K] = SHAPES[format][0]!;
    const raw = randomWeight(format, [N, K], rng);
    const w = decoded(raw);
    const xs = randoms(K, rng);
    // f16-representable x (normal or zero): the f16 window then holds x exactly
    const x16 = Float32Array.from(randoms(K, rng), (v) => (Math.abs(v) < 2 ** -14 ? 0 : f16ToF32(f32ToF16(v))));
    for (const [g, list] of variants) {
      const wt = g.upload(raw);
      for (const [R, S, U, xAt] of list) {
        const what = `${format} [${N}, ${K}] R=${R} S=${S} U=${U} x=${xAt} sg=${g.gpu.subgroupMinSize}`;
        assertProduct(await gemvVariant(g, wt, tensorOf(g, 1, K, xs) as GpuTensor, R, S, U, false, xAt), w, xs, 1, what, xAt === "shared-f16");
        if (xAt === "shared-f16") assertProduct(await gemvVariant(g, wt, tensorOf(g, 1, K, x16) as GpuTensor, R, S, U, false, xAt), w, x16, 1, `${what}, f16 x`);
      }
    }
  }
});

test("GEMV variant names round-trip, and a staged variant is never pipelined", () => {
  for (const text of ["R2 S2 U1", "R4 S4 U2 shared-f16", "R2 S1 U2 pipe", "R8 S8 U1 shared"]) assert.equal(gemvVariantName(parseGemvVariant(text, 32)), text);
  assert.deepEqual(parseGemvVariant("R4", 32), { rowsPerTeam: 4, split: 4, unroll: 1, pipeline: false, x: "global" });
  assert.throws(() => parseGemvVariant("R2 T3", 32), /"T3" is not/);
  assert.throws(() => gemvKernel("q4_0", "exact", 32, 2, 2, 1, true, "shared"), /pipelined/);
});

test("matmul (backend defaults): GEMV and GEMM on tiled rows, weights split into parts", { skip: !gpu && reason }, async () => {
  const rng = new Rng(23);
  for (const format of FORMATS) {
    for (const [N, K] of SHAPES[format]) {
      const raw = randomWeight(format, [N, K], rng);
      const w = decoded(raw);
      for (const rows of [1, 5]) {
        const xs = randoms(rows * K, rng);
        for (const g of [gpu!, plain.gpu!]) {
          const wt = g.upload(raw);
          const out = g.activation(rows, N);
          g.matmul(out, tensorOf(g, rows, K, xs), wt);
          assertProduct(await g.read(out), w, xs, rows, `${format} [${N}, ${K}] x ${rows} rows (${wt.parts.length} parts)`);
        }
      }
    }
  }
});
