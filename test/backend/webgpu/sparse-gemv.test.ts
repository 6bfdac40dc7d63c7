/**
 * The WebGPU sparse-bitmap GEMV/GEMM, every variant (sparse-weight.ts: "walk", kernels/sparse-gemv.ts;
 * "compact" with the split it picks and with 1, 2, 4 and 8 teams a row, with 1, 2 and 4 sub-steps a block,
 * kernels/sparse-gemv-compact.ts)
 * against the dense product of the same pruned weights decoded on the CPU, f32/f16/bf16 values, with
 * subgroups and with the workgroup-memory scan; ragged K (not a multiple of 32, nor of a 1024-column block),
 * K of several blocks split unevenly over teams, all-zero and all-dense rows, an all-zero tensor, rows not
 * a multiple of a workgroup's. Bound: the f32 summation bound (K/32 + 8)·2^-24·Σ|w x| of the kernels'
 * orders (each lane sums at most K/32 products, then a 32-lane tree, then at most 8 team sums), which one
 * misplaced value exceeds by orders of magnitude.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { openOrSkip, Rng, randoms, tensorOf } from "./helpers.js";
import { packSparse, sparseDTypeOf, sparseView, decodeSparseRow, type SparseValueType } from "../../../src/sparse/bitmap.js";
import { f32ToBf16, f32ToF16 } from "../../../src/tensor/half.js";
import { rawTensor } from "../../../src/tensor/raw.js";
import type { SparseDType } from "../../../src/tensor/dtype.js";
import { compactSplit, compactTeams, parseSparseGemvVariant, SPARSE_GEMV_VARIANTS } from "../../../src/backend/webgpu/sparse-weight.js";
import { compactWorkgroupBytes } from "../../../src/backend/webgpu/kernels/sparse-gemv-compact.js";

const { gpu, reason } = await openOrSkip();
const plain = gpu ? await openOrSkip({ subgroups: false }) : { gpu: undefined, reason };
after(() => {
  gpu?.dispose();
  plain.gpu?.dispose();
});

function sparseWeight(v: SparseValueType, N: number, K: number, s: number, rng: Rng) {
  const bits = v === "f32" ? new Uint32Array(N * K) : new Uint16Array(N * K);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const zero = s === 1 || n === 1 || (n !== 2 && rng.next() < s);
      f[0] = zero ? 0 : rng.next() * 2 - 1 || 0.5;
      bits[n * K + k] = v === "f32" ? u[0]! : v === "f16" ? f32ToF16(f[0]!) : f32ToBf16(f[0]!);
    }
  }
  return rawTensor(`w.${v}`, sparseDTypeOf(v), [N, K], packSparse(v, N, K, bits));
}

/** [N, K, activation rows]: ragged K, K of 1, 2, 3 and 5 blocks of 1024 (split unevenly), N not a workgroup multiple. */
const SHAPES = [[13, 1030, 1], [19, 2048 + 32, 1], [11, 100, 3], [37, 4096 + 900 + 5, 1], [9, 3072, 2]] as const;

for (const [label, which] of [["subgroups when offered", gpu], ["workgroup-memory scan", plain.gpu]] as const) {
  test(`sparse GEMV/GEMM equals the dense product of the pruned weights, every variant (${label})`, { skip: which ? false : reason }, async () => {
    const b = which!;
    const rng = new Rng(7);
    for (const v of ["f32", "f16", "bf16"] as SparseValueType[]) {
      for (const s of [0, 0.5, 0.9, 0.99, 1]) {
        for (const [N, K, rows] of SHAPES) {
          const raw = sparseWeight(v, N, K, s, rng);
          const w = b.upload(raw as typeof raw & { dtype: SparseDType });
          const xs = randoms(rows * K, rng);
          const x = tensorOf(b, rows, K, xs);
          const view = sparseView(raw.dtype as SparseDType, raw.shape, raw.data);
          const exact = new Float64Array(rows * N), bound = new Float64Array(rows * N);
          const row = new Float32Array(K);
          for (let o = 0; o < N; o++) {
            decodeSparseRow(view, o, row);
            for (let r = 0; r < rows; r++) {
              let e = 0, mag = 0;
              for (let k = 0; k < K; k++) {
                e += row[k]! * xs[r * K + k]!;
                mag += Math.abs(row[k]! * xs[r * K + k]!);
              }
              exact[r * N + o] = e;
              bound[r * N + o] = (K / 32 + 8) * 2 ** -24 * mag + 1e-30;
            }
          }
          for (const variant of SPARSE_GEMV_VARIANTS) {
            b.sparseGemv = variant;
            const out = b.activation(rows, N);
            b.matmul(out, x, w);
            const got = await b.read(out);
            for (let i = 0; i < rows * N; i++) {
              assert.ok(Math.abs(got[i]! - exact[i]!) <= bound[i]!, `${variant} ${v} s=${s} [${N},${K}] rows=${rows} out[${Math.floor(i / N)},${i % N}] = ${got[i]} vs ${exact[i]}`);
            }
          }
        }
      }
    }
  });
}

test("sparse GEMV variant names parse, typos are refused", () => {
  assert.deepEqual(parseSparseGemvVariant("walk"), { kind: "walk" });
  assert.deepEqual(parseSparseGemvVariant("compact"), { kind: "compact", sub: 2 });
  assert.deepEqual(parseSparseGemvVariant("compact-s4-h1"), { kind: "compact", split: 4, sub: 1 });
  for (const bad of ["compact-s3", "compact-h2-s4", "Walk", "compact-"]) assert.throws(() => parseSparseGemvVariant(bad), /expected "walk" or "compact"/);
});

test("compact GEMV: teams a workgroup fit the device's workgroup memory; the split covers enough rows and no more than a row's blocks", () => {
  assert.equal(compactTeams(49152, true, 1), 8);
  assert.equal(compactTeams(32768, true, 1), 8);
  assert.equal(compactTeams(32768, false, 1), 4);
  assert.equal(compactTeams(16384, true, 1), 4);
  assert.equal(compactTeams(16384, false, 1), 2);
  assert.equal(compactTeams(16384, true, 2), 8);
  assert.equal(compactTeams(16384, false, 2), 4);
  for (const sg of [false, true]) for (const h of [1, 2, 4]) for (const lim of [16384, 32768, 49152]) assert.ok(compactWorkgroupBytes(compactTeams(lim, sg, h), sg, h) <= lim);
  assert.throws(() => compactTeams(1024, true, 1), /workgroup memory/);
  assert.equal(compactSplit(4096, 14336, 8), 4);
  assert.equal(compactSplit(8192, 8192, 8), 2);
  assert.equal(compactSplit(100, 14336, 8), 8);
  assert.equal(compactSplit(100, 14336, 4), 4);
  assert.equal(compactSplit(100, 1500, 8), 2);
  assert.equal(compactSplit(100, 1024, 8), 1);
});
