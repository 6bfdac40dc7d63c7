/**
 * The WebAssembly matmul engine against the TypeScript reference (matmulRef), for every weight format, with
 * 1 and 2 threads, odd shapes (out features not a multiple of the thread count or chunk, 1 and 7 rows).
 *
 * Tolerances, all derived rather than tuned:
 * - f32 activations: the kernels sum in f32 in a different order than the reference (which sums in f64
 *   and rounds once). Every kernel's longest chain of f32 additions is below inF/4 + 16, so by the standard
 *   bound |error| <= (inF/4 + 16) * 2^-24 * sum_i |x_i w_i|, plus half an ulp for the reference's rounding.
 * - int8 activations: each 32-block of x is replaced by q * dx, dx = amax/127, |x - q dx| <= dx/2 (plus a
 *   few ulps from forming 127/amax), so |error| <= sum_i |w_i| dx_b(i) * 0.50003 + the f32 summation bound
 *   over blocks. Separately the kernel must match an independent int8 oracle (same quantization, f64 sums)
 *   to f32 rounding, and be bit-exact where quantization is exact.
 * - Integer-valued data whose every partial sum is exactly representable must give bit-identical results on
 *   every path: this catches any misplaced element, which a tolerance might hide.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Arena } from "../../../src/backend/cpu/arena.js";
import { CpuBackend, CpuTensor, CpuWeight, createCpuBackend } from "../../../src/backend/cpu/cpu-backend.js";
import { decodeRow, matmulRef } from "../../../src/backend/cpu/reference.js";
import { createWasmMatmul, WasmMatmul, type ActivationPath } from "../../../src/backend/cpu/wasm-matmul.js";
import { byteSize, type BlockDType as DType } from "../../../src/tensor/dtype.js";
import { f16Table, f32ToBf16, f32ToF16 } from "../../../src/tensor/half.js";
import { rng } from "../../rng.js";

const FORMATS: DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0"];
const BLOCK_FORMATS: DType[] = ["q8_0", "q4_0"];

/** A deterministic generator, so that a failure can be replayed. */

/**
 * Weight bytes in `dtype`. `value()` gives element values for the float formats; for the block formats
 * `quant()` gives the stored integer (int8, or nibble 0..15) and `scale()` each block's scale.
 */
function makeWeight(dtype: DType, outF: number, inF: number, g: { value: () => number; quant: () => number; scale: () => number }): Uint8Array {
  const n = outF * inF;
  const bytes = new Uint8Array(byteSize(dtype, n));
  const dv = new DataView(bytes.buffer);
  switch (dtype) {
    case "f32": for (let i = 0; i < n; i++) dv.setFloat32(i * 4, g.value(), true); break;
    case "f16": for (let i = 0; i < n; i++) dv.setUint16(i * 2, f32ToF16(g.value()), true); break;
    case "bf16": for (let i = 0; i < n; i++) dv.setUint16(i * 2, f32ToBf16(g.value()), true); break;
    case "q8_0":
      for (let b = 0; b < n / 32; b++) {
        dv.setUint16(b * 34, f32ToF16(g.scale()), true);
        for (let j = 0; j < 32; j++) dv.setInt8(b * 34 + 2 + j, g.quant());
      }
      break;
    case "q4_0":
      for (let b = 0; b < n / 32; b++) {
        dv.setUint16(b * 18, f32ToF16(g.scale()), true);
        for (let j = 0; j < 16; j++) bytes[b * 18 + 2 + j] = g.quant() | (g.quant() << 4);
      }
      break;
  }
  return bytes;
}

function randomWeight(dtype: DType, outF: number, inF: number, r: () => number): Uint8Array {
  return makeWeight(dtype, outF, inF, {
    value: () => r() * 2 - 1,
    quant: dtype === "q8_0" ? () => Math.floor(r() * 256) - 128 : () => Math.floor(r() * 16),
    scale: () => 0.001 + r() * 0.02,
  });
}

/** Decoded weight [outF, inF] as f64, through the reference decoder. */
function decoded(w: CpuWeight): Float64Array {
  const row = new Float32Array(w.inFeatures);
  const all = new Float64Array(w.outFeatures * w.inFeatures);
  for (let o = 0; o < w.outFeatures; o++) {
    decodeRow(w.dtype, w.bytes, o, w.inFeatures, row);
    all.set(row, o * w.inFeatures);
  }
  return all;
}

interface Engines {
  backend: CpuBackend;
  engines: Map<string, WasmMatmul>;
  dispose(): void;
}

/** One arena with engines of 1 and 2 threads for both activation paths; parallelMin 0 so that even tiny matmuls use the workers. */
async function engines(): Promise<Engines> {
  const arena = new Arena();
  const map = new Map<string, WasmMatmul>();
  for (const threads of [1, 2]) {
    for (const act of ["f32", "int8"] as ActivationPath[]) {
      const m = await createWasmMatmul(arena, { threads, activations: act, parallelMin: 0, stallMs: Infinity });
      assert.ok(m, "WebAssembly SIMD with threads must be available in Node 20");
      map.set(`${threads}/${act}`, m);
    }
  }
  const backend = new CpuBackend({ arena });
  return { backend, engines: map, dispose: () => { for (const m of map.values()) m.dispose(); } };
}

function fill(t: CpuTensor, f: (i: number) => number): void {
  for (let i = 0; i < t.data.length; i++) t.data[i] = f(i);
}

function run(m: WasmMatmul, b: CpuBackend, w: CpuWeight, x: CpuTensor, rows: number): Float32Array {
  const out = b.activation(rows, w.outFeatures) as CpuTensor;
  fill(out, () => NaN); // every output must be written
  m.matmul(w, x, out, rows);
  return out.data.slice();
}

function reference(w: CpuWeight, x: CpuTensor, rows: number): Float32Array {
  const out = new Float32Array(rows * w.outFeatures);
  matmulRef(w.dtype, w.bytes, w.inFeatures, w.outFeatures, x.data, out, rows);
  return out;
}

const SHAPES: [inF: number, outF: number, rows: number][] = [[64, 37, 1], [96, 131, 7], [512, 259, 1], [2048, 45, 7], [160, 1, 7]];

test("f32 activations: every format matches matmulRef within the f32 summation bound, 1 and 2 threads", async () => {
  const e = await engines();
  const r = rng(1);
  try {
    for (const dtype of FORMATS) {
      const shapes: [number, number, number][] = dtype.startsWith("q") ? SHAPES : [...SHAPES, [67, 13, 7], [5, 9, 1], [1, 3, 2]];
      for (const [inF, outF, rows] of shapes) {
        const w = e.backend.upload({ name: "w", dtype, shape: [outF, inF], data: randomWeight(dtype, outF, inF, r) });
        const x = e.backend.activation(rows, inF) as CpuTensor;
        fill(x, () => r() * 4 - 2);
        const want = reference(w, x, rows);
        const wd = decoded(w);
        for (const threads of [1, 2]) {
          const got = run(e.engines.get(`${threads}/f32`)!, e.backend, w, x, rows);
          for (let row = 0; row < rows; row++) {
            for (let o = 0; o < outF; o++) {
              let abs = 0;
              for (let i = 0; i < inF; i++) abs += Math.abs(x.data[row * inF + i]! * wd[o * inF + i]!);
              const ref = want[row * outF + o]!;
              const tol = (inF / 4 + 16) * 2 ** -24 * abs + 2 ** -24 * Math.abs(ref);
              const err = Math.abs(got[row * outF + o]! - ref);
              assert.ok(err <= tol, `${dtype} [${outF}, ${inF}] rows ${rows} threads ${threads}: out[${row}, ${o}] = ${got[row * outF + o]} vs ${ref} (error ${err} > ${tol})`);
            }
          }
        }
      }
    }
    assert.ok(e.engines.get("2/f32")!.workerChunks > 0, "the worker thread ran part of the matmuls");
    assert.equal(e.engines.get("1/f32")!.workerChunks, 0);
  } finally {
    e.dispose();
  }
});

test("integer data: every format and path is bit-identical to matmulRef", async () => {
  const e = await engines();
  const r = rng(2);
  try {
    for (const dtype of FORMATS) {
      for (const [inF, outF, rows] of [[64, 37, 1], [2048, 45, 7], [96, 131, 7]] as const) {
        // small integers (times a power-of-two scale): every product and partial sum is exact in f32
        const w = e.backend.upload({
          name: "w", dtype, shape: [outF, inF],
          data: makeWeight(dtype, outF, inF, {
            value: () => Math.floor(r() * 31) - 15,
            quant: dtype === "q8_0" ? () => Math.floor(r() * 255) - 127 : () => Math.floor(r() * 16),
            scale: () => 2 ** (Math.floor(r() * 3) - 2),
          }),
        });
        const x = e.backend.activation(rows, inF) as CpuTensor;
        // every 32-block of x holds +-127 so that the int8 path quantizes it exactly (dx = 1); the rest is
        // small so that all partial sums stay below 2^22 in multiples of 1/4, i.e. exact in f32
        fill(x, (i) => (i % 32 === 5 ? (i & 64 ? 127 : -127) : Math.floor(r() * 17) - 8));
        const want = reference(w, x, rows);
        for (const [key, m] of e.engines) {
          if (key.endsWith("int8") && !BLOCK_FORMATS.includes(dtype)) continue;
          const got = run(m, e.backend, w, x, rows);
          assert.deepEqual(got, want, `${dtype} [${outF}, ${inF}] rows ${rows} engine ${key}`);
        }
      }
    }
  } finally {
    e.dispose();
  }
});

/**
 * The int8-activation algorithm written independently: quantize each 32-block as documented, sum in f64.
 * Returns the oracle's outputs, the tolerance of the kernel against it (f32 rounding of the per-block scale
 * product and of the sum over blocks) and the tolerance against the f32 reference (that plus the
 * quantization error).
 */
function int8Oracle(w: CpuWeight, x: CpuTensor, rows: number): { out: Float64Array; tight: Float64Array; bound: Float64Array } {
  const inF = w.inFeatures;
  const outF = w.outFeatures;
  const wd = decoded(w);
  const out = new Float64Array(rows * outF);
  const tight = new Float64Array(rows * outF);
  const bound = new Float64Array(rows * outF);
  const q = new Float64Array(inF);
  const dx = new Float64Array(inF / 32);
  for (let row = 0; row < rows; row++) {
    for (let b = 0; b < inF / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x.data[row * inF + b * 32 + j]!));
      dx[b] = Math.fround(amax / 127);
      const inv = amax > 0 ? Math.fround(127 / amax) : 0;
      for (let j = 0; j < 32; j++) {
        const v = Math.fround(x.data[row * inF + b * 32 + j]! * inv);
        let n = Math.round(v);
        if (n - v === 0.5 && n % 2 !== 0) n -= 1; // round half to even, as f32x4.nearest
        q[b * 32 + j] = Math.max(-127, Math.min(127, n));
      }
    }
    for (let o = 0; o < outF; o++) {
      let s = 0;
      let quantErr = 0;
      let abs = 0;
      for (let i = 0; i < inF; i++) {
        const wi = wd[o * inF + i]!;
        const d = dx[i >> 5]!;
        s += wi * q[i]! * d;
        quantErr += Math.abs(wi) * d * 0.50003;
        abs += Math.abs(wi * q[i]! * d);
      }
      const k = row * outF + o;
      out[k] = s;
      tight[k] = (inF / 32 + 8) * 2 ** -23 * abs;
      bound[k] = quantErr + tight[k]!;
    }
  }
  return { out, tight, bound };
}

test("int8 activations (q8_0, q4_0): match the int8 oracle to f32 rounding and the f32 reference within the stated quantization bound", async () => {
  const e = await engines();
  const r = rng(3);
  try {
    for (const dtype of BLOCK_FORMATS) {
      for (const [inF, outF, rows] of SHAPES) {
        const w = e.backend.upload({ name: "w", dtype, shape: [outF, inF], data: randomWeight(dtype, outF, inF, r) });
        const x = e.backend.activation(rows, inF) as CpuTensor;
        // a range of block magnitudes, as real activations have
        fill(x, (i) => (r() * 2 - 1) * 2 ** (((i >> 5) % 7) - 3));
        const want = reference(w, x, rows);
        const oracle = int8Oracle(w, x, rows);
        for (const threads of [1, 2]) {
          const got = run(e.engines.get(`${threads}/int8`)!, e.backend, w, x, rows);
          for (let k = 0; k < got.length; k++) {
            assert.ok(Math.abs(got[k]! - oracle.out[k]!) <= oracle.tight[k]!,
              `${dtype} [${outF}, ${inF}] threads ${threads}: out ${k} = ${got[k]} vs int8 oracle ${oracle.out[k]} (> ${oracle.tight[k]})`);
            assert.ok(Math.abs(got[k]! - want[k]!) <= oracle.bound[k]!,
              `${dtype} [${outF}, ${inF}] threads ${threads}: out ${k} = ${got[k]} vs reference ${want[k]} (> ${oracle.bound[k]})`);
          }
        }
      }
    }
  } finally {
    e.dispose();
  }
});

test("f16 and bf16 decode every bit pattern exactly: zeros, subnormals, normals, infinities, NaN", async () => {
  const e = await engines();
  try {
    // row o holds pattern o in column `col`, zeros elsewhere; x is all ones, so out[o] is the decoded value.
    // col 8 of 9 goes through the scalar tail, col 3 of 8 through the SIMD loop.
    for (const [inF, col] of [[8, 3], [9, 8]] as const) {
      for (const dtype of ["f16", "bf16"] as const) {
        const outF = 65536;
        const data = new Uint8Array(outF * inF * 2);
        const dv = new DataView(data.buffer);
        for (let o = 0; o < outF; o++) dv.setUint16((o * inF + col) * 2, o, true);
        const w = e.backend.upload({ name: "specials", dtype, shape: [outF, inF], data });
        const x = e.backend.activation(1, inF) as CpuTensor;
        fill(x, () => 1);
        const want = reference(w, x, 1);
        for (const threads of [1, 2]) {
          const got = run(e.engines.get(`${threads}/f32`)!, e.backend, w, x, 1);
          for (let o = 0; o < outF; o++) {
            if (Number.isNaN(want[o]!)) assert.ok(Number.isNaN(got[o]!), `${dtype} pattern ${o.toString(16)} must decode to NaN`);
            else assert.equal(got[o], want[o], `${dtype} pattern 0x${o.toString(16)} (inF ${inF}, threads ${threads})`);
          }
        }
      }
    }
  } finally {
    e.dispose();
  }
});

test("q8_0 and q4_0 block scales decode every f16 pattern exactly on both activation paths", async () => {
  const e = await engines();
  const table = f16Table();
  try {
    for (const dtype of BLOCK_FORMATS) {
      const outF = 65536;
      const inF = 32;
      const bb = dtype === "q8_0" ? 34 : 18;
      const data = new Uint8Array(outF * bb);
      const dv = new DataView(data.buffer);
      for (let o = 0; o < outF; o++) {
        dv.setUint16(o * bb, o, true);
        // element 0 = 1, the rest 0 (q4_0 stores nibble 8 for 0)
        if (dtype === "q8_0") {
          data[o * bb + 2] = 1;
        } else {
          data.fill(0x88, o * bb + 2, o * bb + 18);
          data[o * bb + 2] = 0x89;
        }
      }
      const w = e.backend.upload({ name: "scales", dtype, shape: [outF, inF], data });
      const x = e.backend.activation(1, inF) as CpuTensor;
      fill(x, (i) => (i === 0 ? 127 : 0)); // exact on the int8 path too (dx = 1, q = 127)
      const want = reference(w, x, 1);
      for (let o = 0; o < outF; o++) {
        // the oracle itself: 127 * scale for finite scales, up to the sign of zero
        if (Number.isFinite(table[o]!)) assert.ok(want[o] === Math.fround(127 * table[o]!), `reference at scale 0x${o.toString(16)}`);
      }
      for (const [key, m] of e.engines) {
        const got = run(m, e.backend, w, x, 1);
        for (let o = 0; o < outF; o++) {
          const scale = table[o]!;
          if (Number.isFinite(scale)) assert.equal(got[o], want[o], `${dtype} scale 0x${o.toString(16)} (${key})`);
          // the reference multiplies the scale into every element first (0 * inf = NaN); the kernels apply
          // it to partial sums of the block, giving NaN or +-inf. Either way the output is not finite.
          else assert.ok(!Number.isFinite(got[o]!), `${dtype} non-finite scale 0x${o.toString(16)} gives ${got[o]} (${key})`);
        }
      }
    }
  } finally {
    e.dispose();
  }
});

test("weights allocated after the workers started (memory grown) are read correctly by every thread", async () => {
  const e = await engines();
  const r = rng(4);
  try {
    const before = e.backend.arena.memory.buffer.byteLength;
    e.backend.arena.alloc(64 * 2 ** 20);
    const outF = 300;
    const inF = 256;
    const data = makeWeight("q4_0", outF, inF, { value: () => 0, quant: () => Math.floor(r() * 16), scale: () => 2 ** -Math.floor(r() * 3) });
    const w = e.backend.upload({ name: "late", dtype: "q4_0", shape: [outF, inF], data });
    assert.ok(e.backend.arena.memory.buffer.byteLength >= before + 63 * 2 ** 20, "the memory grew");
    const x = e.backend.activation(7, inF) as CpuTensor;
    // integers with 127 in every block and power-of-two scales: exact on both paths (see the integer test)
    fill(x, (i) => (i % 32 === 0 ? 127 : (i % 17) - 8));
    const want = reference(w, x, 7);
    for (const [key, m] of e.engines) assert.deepEqual(run(m, e.backend, w, x, 7), want, key);
  } finally {
    e.dispose();
  }
});

test("errors: block formats need in-features divisible by 32; a disposed pool refuses work instead of hanging", async () => {
  const arena = new Arena();
  const m = (await createWasmMatmul(arena, { threads: 2, parallelMin: 0, stallMs: Infinity }))!;
  const b = new CpuBackend({ arena, matmul: m });
  const bad = new CpuWeight("bad", "q8_0", [1, 48], arena.alloc(64), new Uint8Array(arena.memory.buffer, 0, 0));
  const x = b.activation(1, 48) as CpuTensor;
  assert.throws(() => m.matmul(bad, x, b.activation(1, 1) as CpuTensor, 1), /bad.*divisible by 32/);
  const w = b.upload({ name: "w", dtype: "f32", shape: [4, 8], data: new Uint8Array(128) });
  const x8 = b.activation(1, 8);
  const out = b.activation(1, 4);
  b.matmul(out, x8, w);
  b.dispose();
  assert.throws(() => b.matmul(out, x8, w), /disposed/);
});

test("createCpuBackend: the WebAssembly engine by default, same forward results as the reference engine", async () => {
  const wasm = await createCpuBackend({ threads: 2, activations: "f32", parallelMin: 0, stallMs: Infinity });
  const ref = new CpuBackend();
  const r = rng(5);
  try {
    const inF = 96;
    const outF = 40;
    const data = randomWeight("f16", outF, inF, r);
    const xs = Float32Array.from({ length: 3 * inF }, () => r() * 2 - 1);
    const results = [wasm, ref].map((b) => {
      const w = b.upload({ name: "w", dtype: "f16", shape: [outF, inF], data });
      const x = b.activation(3, inF) as CpuTensor;
      x.data.set(xs);
      const out = b.activation(3, outF) as CpuTensor;
      b.matmul(out, x, w);
      return out.data.slice();
    });
    assert.ok(wasm.matmulEngine instanceof WasmMatmul, "createCpuBackend uses the WebAssembly engine");
    assert.equal((wasm.matmulEngine as WasmMatmul).threads, 2);
    for (let k = 0; k < results[0]!.length; k++) {
      assert.ok(Math.abs(results[0]![k]! - results[1]![k]!) <= 1e-5 * (1 + Math.abs(results[1]![k]!)), `out ${k}`);
    }
  } finally {
    wasm.dispose();
    ref.dispose();
  }
});
