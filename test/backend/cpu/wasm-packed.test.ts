/**
 * The packed-format kernels (packed-kernels.wat) against a dense matmul over the format's own unpack(),
 * for every registered format, 1 and 2 threads, the fused GEMV shape (1 and 3 rows) and the decode-once
 * GEMM shape (5 and 7 rows), row lengths that end in a partial group, non-unit tensor scales.
 *
 * Two checks, both able to fail:
 * - Dyadic data (random codes in every nibble, power-of-two scales, every SV/zero-point variant, activations
 *   multiples of 1/2 in [-4, 4]): every product and partial sum is exact in f32 (below 2^24 units of the
 *   smallest term), so the kernels must equal the f64 reference bit for bit. Any misplaced element, wrong
 *   LUT, wrong scale or padding leak shows. NF4's levels are not dyadic; it gets the tolerance instead.
 * - Real weights packed by each format's quantizer, Gaussian activations: |y - y_ref| <= (Kp/4 + 16) * 2^-24
 *   * sum_k |x_k w_k| (Kp = row length padded to whole groups): the standard first-order bound for f32
 *   summation where no term passes through more than Kp/4 + 16 roundings (the longest chain here is about
 *   Kp/8 + 8: in-group lane sums, one scale multiply, the group-sum chain, the final horizontal sum).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Arena } from "../../../src/backend/cpu/arena.js";
import { CpuBackend, type CpuTensor } from "../../../src/backend/cpu/cpu-backend.js";
import { createWasmMatmul, type WasmMatmul } from "../../../src/backend/cpu/wasm-matmul.js";
import { matmulRef } from "../../../src/backend/cpu/reference.js";
import { PACKED_DTYPES, type PackedDType } from "../../../src/tensor/dtype.js";
import { quantFormat } from "../../../src/quant/formats.js";
import { groupsPerRow, type PackedTensor } from "../../../src/quant/format.js";
import { packedToRaw } from "../../../src/quant/packed-raw.js";
import { f32ToF16 } from "../../../src/tensor/half.js";
import { rng } from "../../rng.js";


function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

/** Random codes and power-of-two scales in `dtype`'s layout (every variant bit random). */
function dyadic(dtype: PackedDType, rows: number, cols: number, r: () => number): PackedTensor {
  const f = quantFormat(dtype);
  const { codeBytes, scaleBytes } = f.layout(rows, cols);
  const codes = new Uint8Array(codeBytes).map(() => Math.floor(r() * 256));
  const scales = new Uint8Array(scaleBytes);
  const dv = new DataView(scales.buffer);
  const e = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const f16pow = (k: number) => (k + 15) << 10;
  let tensorScale = 1;
  switch (dtype) {
    case "int8": for (let i = 0; i < rows; i++) dv.setFloat32(4 * i, 2 ** e(-2, 1), true); break;
    case "fp4": case "nf4": for (let i = 0; i < scaleBytes / 2; i++) dv.setUint16(2 * i, f16pow(e(-2, 1)), true); break;
    case "int4-asym":
      for (let i = 0; i < scaleBytes / 4; i++) {
        dv.setUint16(4 * i, f16pow(e(-2, 1)), true);
        dv.setUint16(4 * i + 2, f32ToF16(e(0, 15)), true);
      }
      break;
    case "razer":
      tensorScale = 2 ** e(-1, 1);
      for (let i = 0; i < scaleBytes / 2; i++) dv.setUint16(2 * i, f16pow(e(-2, 0)) | (e(0, 3) << 14), true);
      break;
    case "nvfp4":
      tensorScale = 2 ** e(-1, 1);
      for (let i = 0; i < scaleBytes; i++) scales[i] = (e(-2, 1) + 7) << 3;
      break;
    case "nvfp4-razer":
      tensorScale = 2 ** e(-1, 1);
      for (let i = 0; i < scaleBytes; i++) scales[i] = (e(1, 4) << 3) | (e(0, 3) << 6);
      break;
  }
  return { format: dtype, rows, cols, groupSize: f.groupSize, codes, scales, tensorScale };
}

/** Real weights packed by the format's quantizer; `big` scales them so that RaZeR needs a scaleMul != 1. */
function quantized(dtype: PackedDType, rows: number, cols: number, r: () => number, big: boolean): PackedTensor {
  const w = Float32Array.from({ length: rows * cols }, () => gauss(r) * (big ? 40 : 0.05) * (r() < 0.02 ? 6 : 1));
  return quantFormat(dtype).pack(w, rows, cols);
}

interface Engines { arena: Arena; backends: Map<number, CpuBackend>; engines: Map<number, WasmMatmul> }
let shared: Promise<Engines> | undefined;
function engines(): Promise<Engines> {
  shared ??= (async () => {
    const arena = new Arena();
    const backends = new Map<number, CpuBackend>(), engines = new Map<number, WasmMatmul>();
    for (const threads of [1, 2]) {
      const m = await createWasmMatmul(arena, { threads, parallelMin: 0, stallMs: Infinity });
      assert.ok(m, "WebAssembly SIMD and threads are available in Node");
      engines.set(threads, m);
      backends.set(threads, new CpuBackend({ arena, matmul: m }));
    }
    return { arena, backends, engines };
  })();
  return shared;
}

/** Runs every engine on p against the f64 dense matmul; returns the worst error / bound ratio. */
async function check(p: PackedTensor, rows: number, r: () => number, exact: boolean): Promise<void> {
  const { backends } = await engines();
  const cols = p.cols;
  const dense = quantFormat(p.format).unpack(p);
  const x = Float32Array.from({ length: rows * cols }, () => (exact ? Math.round(gauss(r) * 2) / 2 : gauss(r)));
  for (let i = 0; i < x.length; i++) if (exact) x[i] = Math.max(-4, Math.min(4, x[i]!));
  const kp = p.format === "int8" ? cols : groupsPerRow(cols, p.groupSize) * p.groupSize;
  for (const [threads, b] of backends) {
    const w = b.upload(packedToRaw(`w.${p.format}`, p));
    const xt = b.activation(rows, cols) as CpuTensor;
    xt.data.set(x);
    const out = b.activation(rows, p.rows) as CpuTensor;
    b.matmul(out, xt, w);
    // the TypeScript reference engine over the same bytes (reference.ts decodeRow of a packed dtype)
    const viaRef = new Float32Array(rows * p.rows);
    matmulRef(p.format as PackedDType, (w as unknown as { bytes: Uint8Array }).bytes, cols, p.rows, x, viaRef, rows);
    for (let i = 0; i < rows; i++) {
      for (let o = 0; o < p.rows; o++) {
        let ref = 0, mag = 0;
        for (let k = 0; k < cols; k++) {
          ref += x[i * cols + k]! * dense[o * cols + k]!;
          mag += Math.abs(x[i * cols + k]! * dense[o * cols + k]!);
        }
        const got = out.data[i * p.rows + o]!;
        const where = `${p.format} [${p.rows}, ${cols}] rows ${rows} threads ${threads} at (${i}, ${o})`;
        if (exact) assert.equal(got, ref, `${where}: ${got} != ${ref}`);
        else assert.ok(Math.abs(got - ref) <= ((kp / 4 + 16) * 2 ** -24) * mag + 1e-30, `${where}: ${got} vs ${ref} (|x w| sum ${mag})`);
        const bound = ((cols + 1) * 2 ** -24) * mag + 1e-30;
        assert.ok(Math.abs(viaRef[i * p.rows + o]! - ref) <= bound, `${where}: the reference engine gives ${viaRef[i * p.rows + o]} vs ${ref}`);
      }
    }
  }
}

const SHAPES: [number, number][] = [[37, 200], [9, 256], [5, 48]];

for (const dtype of PACKED_DTYPES) {
  test(`${dtype}: kernels equal the dense matmul of the unpacked weights (dyadic data: bit for bit)`, async () => {
    const r = rng(7 + dtype.length);
    for (const [outF, inF] of SHAPES) {
      for (const rows of [1, 3, 5, 7]) await check(dyadic(dtype, outF, inF, r), rows, r, dtype !== "nf4");
    }
  });
  test(`${dtype}: kernels on quantized real weights stay within the f32 summation bound`, async () => {
    const r = rng(99 + dtype.length);
    for (const [outF, inF] of SHAPES) {
      for (const rows of [1, 5]) await check(quantized(dtype, outF, inF, r, false), rows, r, false);
    }
    await check(quantized(dtype, 33, 136, r, true), 2, r, false);
  });
}

test("the worker thread takes part in packed matmuls", async () => {
  const { engines: e } = await engines();
  assert.ok(e.get(2)!.workerChunks > 0, "the 2-thread engine's worker ran chunks");
  assert.equal(e.get(1)!.workerChunks, 0);
});

test.after(async () => {
  if (shared) for (const b of (await shared).backends.values()) b.dispose();
});
