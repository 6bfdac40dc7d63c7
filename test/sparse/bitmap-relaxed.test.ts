/**
 * The sparse kernels with relaxed SIMD (kernels-relaxed.wasm: every i8x16.swizzle of kernels.wat as
 * i8x16.relaxed_swizzle). Node 20 needs a flag, set here before any module compiles; then the engine must
 * pick the relaxed kernels, they must equal the plain ones bit for bit on every sparse value type, and
 * bitmap.test's whole suite (sparse = dense kernel bit-exactly, the f32 bound, the scalar reference)
 * runs again on them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { packSparse, sparseDTypeOf, SPARSE_DTYPES, valueTypeOf } from "../../src/sparse/bitmap.js";
import { rawTensor } from "../../src/tensor/raw.js";
import { CpuBackend, CpuTensor, CpuWeight } from "../../src/backend/cpu/cpu-backend.js";
import { Arena } from "../../src/backend/cpu/arena.js";
import { createWasmMatmul, usesRelaxedSimd } from "../../src/backend/cpu/wasm-matmul.js";
import { enableRelaxedSimd } from "../../src/backend/cpu/relaxed-simd.js";
import { rng } from "../rng.js";

const available = await enableRelaxedSimd();

test("the engine picks the relaxed-SIMD kernels where the runtime has relaxed SIMD, unless told not to", async () => {
  assert.equal(available, true, "relaxed SIMD turned on");
  assert.equal(await usesRelaxedSimd(), true);
  assert.equal(await usesRelaxedSimd({ relaxedSimd: false }), false);
});

test("relaxed-SIMD sparse GEMV/GEMM equals the plain kernels bit for bit", async () => {
  const run = async (relaxedSimd: boolean, v: (typeof SPARSE_DTYPES)[number], outF: number, inF: number, rows: number, s: number) => {
    const arena = new Arena();
    const engine = (await createWasmMatmul(arena, { threads: 2, activations: "f32", parallelMin: 0, stallMs: Infinity, relaxedSimd }))!;
    const backend = new CpuBackend({ arena, matmul: engine });
    try {
      const r = rng(outF * 31 + inF + rows);
      const vt = valueTypeOf(v);
      const bits = vt === "f32" ? new Uint32Array(outF * inF) : new Uint16Array(outF * inF);
      const f = new Float32Array(1), u = new Uint32Array(f.buffer);
      for (let i = 0; i < bits.length; i++) {
        f[0] = r() < s ? 0 : (r() * 2 - 1) * 3 + 1e-3;
        bits[i] = vt === "f32" ? u[0]! : vt === "bf16" ? u[0]! >>> 16 : Math.round(f[0] * 1000) & 0x3fff;
      }
      const w = backend.upload(rawTensor("w", sparseDTypeOf(vt), [outF, inF], packSparse(vt, outF, inF, bits))) as CpuWeight;
      const x = backend.activation(rows, inF) as CpuTensor;
      for (let i = 0; i < x.data.length; i++) x.data[i] = r() * 2 - 1;
      const y = backend.activation(rows, outF) as CpuTensor;
      backend.matmul(y, x, w);
      return [...y.data];
    } finally {
      backend.dispose();
    }
  };
  for (const v of SPARSE_DTYPES) {
    for (const s of [0, 0.5, 0.9]) {
      for (const [outF, inF, rows] of [[67, 512, 1], [19, 4869, 1], [33, 96, 3]] as const) {
        assert.deepEqual(await run(true, v, outF, inF, rows, s), await run(false, v, outF, inF, rows, s), `${v} s=${s} ${outF}x${inF} rows=${rows}`);
      }
    }
  }
});

// bitmap.test's WebAssembly tests again, now on the relaxed kernels (the engine's default)
await import("./bitmap.test.js");
