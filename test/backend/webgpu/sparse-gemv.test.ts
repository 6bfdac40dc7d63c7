/**
 * The WebGPU sparse-bitmap GEMV/GEMM (kernels/sparse-gemv.ts) against the dense product of the same
 * pruned weights decoded on the CPU, f32/f16/bf16 values, with subgroups and with the workgroup-memory
 * scan, ragged K (not a multiple of 32), all-zero and all-dense rows, rows not a multiple of a
 * workgroup's 8. Bound: the f32 summation bound (K/32 + 8)·2^-24·Σ|w x| of the kernel's order (each lane
 * sums its chunks, then a 32-lane tree), which one misplaced value exceeds by orders of magnitude.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { openOrSkip, Rng, randoms, tensorOf } from "./helpers.js";
import { packSparse, sparseDTypeOf, sparseView, decodeSparseRow, type SparseValueType } from "../../../src/sparse/bitmap.js";
import { f32ToBf16, f32ToF16 } from "../../../src/tensor/half.js";
import { rawTensor } from "../../../src/tensor/raw.js";
import type { SparseDType } from "../../../src/tensor/dtype.js";

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
      const zero = n === 1 || (n !== 2 && rng.next() < s);
      f[0] = zero ? 0 : rng.next() * 2 - 1 || 0.5;
      bits[n * K + k] = v === "f32" ? u[0]! : v === "f16" ? f32ToF16(f[0]!) : f32ToBf16(f[0]!);
    }
  }
  return rawTensor(`w.${v}`, sparseDTypeOf(v), [N, K], packSparse(v, N, K, bits));
}

for (const [label, which] of [["subgroups when offered", gpu], ["workgroup-memory scan", plain.gpu]] as const) {
  test(`sparse GEMV/GEMM equals the dense product of the pruned weights (${label})`, { skip: which ? false : reason }, async () => {
    const b = which!;
    const rng = new Rng(7);
    for (const v of ["f32", "f16", "bf16"] as SparseValueType[]) {
      for (const s of [0, 0.5, 0.9]) {
        for (const [N, K, rows] of [[13, 1030, 1], [19, 2048 + 32, 1], [11, 100, 3]] as const) {
          const raw = sparseWeight(v, N, K, s, rng);
          const w = b.upload(raw as typeof raw & { dtype: SparseDType });
          const xs = randoms(rows * K, rng);
          const x = tensorOf(b, rows, K, xs);
          const out = b.activation(rows, N);
          b.matmul(out, x, w);
          const got = await b.read(out);
          const view = sparseView(raw.dtype as SparseDType, raw.shape, raw.data);
          const row = new Float32Array(K);
          for (let o = 0; o < N; o++) {
            decodeSparseRow(view, o, row);
            for (let r = 0; r < rows; r++) {
              let exact = 0, mag = 0;
              for (let k = 0; k < K; k++) {
                exact += row[k]! * xs[r * K + k]!;
                mag += Math.abs(row[k]! * xs[r * K + k]!);
              }
              const bound = (K / 32 + 8) * 2 ** -24 * mag + 1e-30;
              assert.ok(Math.abs(got[r * N + o]! - exact) <= bound, `${v} s=${s} [${N},${K}] rows=${rows} out[${r},${o}] = ${got[r * N + o]} vs ${exact}`);
            }
          }
        }
      }
    }
  });
}
