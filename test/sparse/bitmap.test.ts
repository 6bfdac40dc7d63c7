/**
 * The sparse-bitmap layout (spec sparamx §7.1.1-3): dense -> sparse -> dense is bit-exact, the row
 * pointers and masks are consistent, and the WebAssembly sparse GEMV/GEMM equals the dense kernels on the
 * same pruned weights: bit-exactly where both sum in the same order (in-features a multiple of 8, the
 * zero lanes add +-0), otherwise within the f32 summation bound of the reference.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { packSparse, sparseView, unpackSparse, sparseGemvRef, decodeSparseRow, type SparseValueType, sparseDTypeOf, blockPointers, blocksPerRow } from "../../src/sparse/bitmap.js";
import { rawTensor } from "../../src/tensor/raw.js";
import { CpuBackend, CpuTensor, CpuWeight } from "../../src/backend/cpu/cpu-backend.js";
import { Arena } from "../../src/backend/cpu/arena.js";
import { createWasmMatmul } from "../../src/backend/cpu/wasm-matmul.js";
import { matmulRef } from "../../src/backend/cpu/reference.js";
import { f32ToBf16, f32ToF16 } from "../../src/tensor/half.js";
import { rng } from "../rng.js";


/** Dense value bits with about `s` zeros (row 0 all zero, row 1 all dense, a few -0s). */
function denseBits(v: SparseValueType, rows: number, cols: number, s: number, seed: number): Uint32Array | Uint16Array {
  const r = rng(seed);
  const out = v === "f32" ? new Uint32Array(rows * cols) : new Uint16Array(rows * cols);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const zero = n === 0 || (n !== 1 && r() < s);
      let x = zero ? (r() < 0.1 ? -0 : 0) : (r() * 2 - 1) * 3;
      if (!zero && x === 0) x = 0.5;
      f[0] = x;
      out[n * cols + k] = v === "f32" ? u[0]! : v === "f16" ? f32ToF16(x) : f32ToBf16(x);
    }
  }
  return out;
}

const TYPES: SparseValueType[] = ["f32", "f16", "bf16"];

test("round trip is bit-exact (-0 becomes +0), row pointers and masks are consistent", () => {
  for (const v of TYPES) {
    for (const s of [0, 0.2, 0.5, 0.8, 1]) {
      for (const [rows, cols] of [[5, 4864 + 5], [4, 64], [3, 7]] as const) {
        const dense = denseBits(v, rows, cols, s, rows * 1000 + cols + s * 10);
        const data = packSparse(v, rows, cols, dense);
        const t = rawTensor("w", sparseDTypeOf(v), [rows, cols], data);
        const view = sparseView(t.dtype as never, t.shape, t.data, "w");
        const back = unpackSparse(view);
        const zeroMask = v === "f32" ? 0x7fffffff : 0x7fff;
        let nnz = 0;
        for (let i = 0; i < dense.length; i++) {
          const want = (dense[i]! & zeroMask) === 0 ? 0 : dense[i]!;
          if (want !== 0) nnz++;
          assert.equal(back[i], want, `${v} s=${s} [${rows},${cols}] element ${i}`);
        }
        assert.equal(view.nnz, nnz);
        for (let n = 0; n < rows; n++) {
          let pop = 0;
          for (let c = 0; c < view.nChunks; c++) {
            const m = view.masks[n * view.nChunks + c]!;
            for (let j = 0; j < 32; j++) if ((m >>> j) & 1) {
              pop++;
              assert.ok(c * 32 + j < cols, "no mask bit at k >= K");
            }
          }
          assert.equal(view.rowPtr[n + 1]! - view.rowPtr[n]!, pop);
        }
      }
    }
  }
});

test("block pointers: the index of each 1024-column block's first non-zero, counted from the dense weights", () => {
  for (const s of [0, 0.5, 0.97, 1]) {
    for (const [rows, cols] of [[5, 4864 + 5], [3, 1024], [2, 1025], [4, 7]] as const) {
      const dense = denseBits("f16", rows, cols, s, rows * 7 + cols);
      const view = sparseView("sparse-f16", [rows, cols], packSparse("f16", rows, cols, dense));
      const nBlocks = blocksPerRow(cols);
      assert.equal(nBlocks, Math.ceil(cols / 1024));
      const got = blockPointers(view);
      assert.equal(got.length, rows * nBlocks);
      let p = 0;
      for (let n = 0; n < rows; n++) {
        for (let k = 0; k < cols; k++) {
          if (k % 1024 === 0) assert.equal(got[n * nBlocks + k / 1024], p, `s=${s} [${rows},${cols}] row ${n} block ${k / 1024}`);
          if ((dense[n * cols + k]! & 0x7fff) !== 0) p++;
        }
      }
    }
  }
  // masks that disagree with the row pointers are refused
  const data = packSparse("f32", 2, 40, new Uint32Array(80).fill(0x3f800000));
  const view = sparseView("sparse-f32", [2, 40], data);
  view.masks[0] = 1;
  assert.throws(() => blockPointers(view), /row 0/);
});

test("a sparse tensor with a wrong header or size is refused with its name", () => {
  const data = packSparse("f32", 2, 8, new Uint32Array(16).fill(0x3f800000));
  assert.throws(() => rawTensor("blk.w", "sparse-f32", [2, 9], data), /blk\.w/);
  assert.throws(() => rawTensor("blk.w", "sparse-f32", [2, 8], data.subarray(0, data.byteLength - 4)), /blk\.w.*needs/);
  const bad = data.slice();
  new Uint32Array(bad.buffer)[0] = 99;
  assert.throws(() => rawTensor("blk.w", "sparse-f32", [2, 8], bad), /blk\.w/);
});

/** The dense tensor of the same pruned weights (the masked bits, -0 as +0). */
function denseRaw(v: SparseValueType, rows: number, cols: number, dense: Uint32Array | Uint16Array) {
  const zeroMask = v === "f32" ? 0x7fffffff : 0x7fff;
  const clean = dense.map((b) => ((b & zeroMask) === 0 ? 0 : b));
  return { name: "dense", dtype: v, shape: [rows, cols], data: new Uint8Array(clean.buffer.slice(0)) } as const;
}

for (const threads of [1, 2]) {
  test(`WebAssembly sparse GEMV/GEMM equals the dense kernels on the same pruned weights (${threads} thread${threads > 1 ? "s" : ""})`, async () => {
    const arena = new Arena();
    const engine = await createWasmMatmul(arena, { threads, activations: "f32", parallelMin: 0, stallMs: Infinity });
    assert.ok(engine, "WebAssembly SIMD is available");
    const backend = new CpuBackend({ arena, matmul: engine });
    try {
      for (const v of TYPES) {
        for (const s of [0, 0.5, 0.9]) {
          for (const [outF, inF, rows] of [[37, 256, 1], [37, 256, 3], [19, 4864 + 5, 1], [19, 100, 2], [1, 1, 1], [3, 33, 1], [5, 512 + 31, 1], [130, 96, 1]] as const) {
            const dense = denseBits(v, outF, inF, s, outF * 7 + inF + rows + s * 100);
            const sw = backend.upload(rawTensor("sparse", sparseDTypeOf(v), [outF, inF], packSparse(v, outF, inF, dense))) as CpuWeight;
            const d = denseRaw(v, outF, inF, dense);
            const dw = backend.upload(d) as CpuWeight;
            const r = rng(inF + rows);
            const x = backend.activation(rows, inF) as CpuTensor;
            for (let i = 0; i < x.data.length; i++) x.data[i] = r() * 2 - 1;
            const ys = backend.activation(rows, outF) as CpuTensor;
            const yd = backend.activation(rows, outF) as CpuTensor;
            backend.matmul(ys, x, sw);
            const label = `${v} s=${s} ${outF}x${inF} rows=${rows}`;
            if (inF % 32 === 0) {
              backend.matmul(yd, x, dw);
              assert.deepEqual([...ys.data], [...yd.data], `${label}: bit-exact against the dense kernel`);
            }
            // against the reference on the dense weights, f32 summation bound
            const ref = new Float32Array(rows * outF);
            matmulRef(v, d.data, inF, outF, x.data, ref, rows);
            const row = new Float32Array(inF);
            for (let o = 0; o < outF; o++) {
              decodeSparseRow(sparseView(sw.dtype as never, sw.shape, sw.bytes), o, row);
              for (let q = 0; q < rows; q++) {
                let mag = 0;
                for (let k = 0; k < inF; k++) mag += Math.abs(row[k]! * x.data[q * inF + k]!);
                const bound = (inF / 4 + 16) * 2 ** -24 * mag + 1e-30;
                assert.ok(Math.abs(ys.data[q * outF + o]! - ref[q * outF + o]!) <= bound, `${label} out[${q},${o}]`);
              }
            }
            if (rows === 1) {
              const y = new Float32Array(outF);
              sparseGemvRef(sparseView(sw.dtype as never, sw.shape, sw.bytes), x.data, y);
              for (let o = 0; o < outF; o++) {
                decodeSparseRow(sparseView(sw.dtype as never, sw.shape, sw.bytes), o, row);
                let mag = 0;
                for (let k = 0; k < inF; k++) mag += Math.abs(row[k]! * x.data[k]!);
                assert.ok(Math.abs(y[o]! - ys.data[o]!) <= 1e-6 * mag + 1e-30, `${label}: scalar reference, row ${o}`);
              }
            }
          }
        }
      }
      if (threads > 1) assert.ok(engine.workerChunks > 0, "the worker thread took part");
    } finally {
      backend.dispose();
    }
  });
}
