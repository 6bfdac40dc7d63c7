/**
 * The WebAssembly rmsnorm and swiglu against f64 formulas, with bounds from their f32 arithmetic:
 * - swiglu: exp (Cephes polynomial, about 2 ulp), one division, two multiplies: 8 * 2^-24 relatively;
 *   gates below -87.3 give 0 where the true value is below 1e-35.
 * - rmsnorm: the sum of squares in 8 f32 lanes (chains of group/8 + 3 additions), then sqrt, division and
 *   two multiplies: ((group/8 + 3) + 6) * 2^-24 relatively on each output (half of the sum's error after the
 *   square root, doubled for safety).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Arena } from "../../../src/backend/cpu/arena.js";
import { CpuBackend, CpuTensor, CpuWeight } from "../../../src/backend/cpu/cpu-backend.js";
import { createWasmMatmul, type WasmMatmul } from "../../../src/backend/cpu/wasm-matmul.js";
import { f32ToF16 } from "../../../src/tensor/half.js";

async function setup(): Promise<{ backend: CpuBackend; engine: WasmMatmul }> {
  const arena = new Arena();
  const engine = (await createWasmMatmul(arena, { threads: 1 }))!;
  return { backend: new CpuBackend({ arena, matmul: engine }), engine };
}

test("swiglu: silu(gate) * up within 8 ulps of f64, including large gates of both signs and odd lengths", async () => {
  const { backend, engine } = await setup();
  try {
    for (const n of [1, 7, 64, 2817]) {
      const gate = backend.activation(1, n) as CpuTensor;
      const up = backend.activation(1, n) as CpuTensor;
      for (let i = 0; i < n; i++) {
        // a sweep through [-120, 120] with a few exact zeros
        gate.data[i] = i % 13 === 0 ? 0 : ((i * 7919) % 2400) / 10 - 120;
        up.data[i] = ((i * 104729) % 200) / 100 - 1;
      }
      const out = backend.activation(1, n) as CpuTensor;
      assert.equal(engine.swiglu(out, gate, up), true);
      for (let i = 0; i < n; i++) {
        const g = gate.data[i]!;
        const want = (g / (1 + Math.exp(-g))) * up.data[i]!;
        const tol = 8 * 2 ** -24 * Math.abs(want) + 1e-35;
        assert.ok(Math.abs(out.data[i]! - want) <= tol, `n ${n} i ${i}: silu(${g}) * ${up.data[i]} = ${out.data[i]} vs ${want}`);
      }
      // in place (out aliasing gate), as the model calls it
      const copy = out.data.slice();
      backend.swiglu(gate, gate, up);
      assert.deepEqual(gate.data, copy);
    }
  } finally {
    backend.dispose();
  }
});

test("rmsnorm: f32 weights within the derived bound of f64, several groups per row and odd group sizes", async () => {
  const { backend, engine } = await setup();
  try {
    for (const [rows, cols, group] of [[3, 64, 64], [2, 134, 67], [1, 2048, 2048], [4, 128, 16]] as const) {
      const x = backend.activation(rows, cols) as CpuTensor;
      for (let i = 0; i < x.data.length; i++) x.data[i] = Math.sin(i * 1.7) * (1 + (i % 5));
      const wBytes = new Uint8Array(group * 4);
      const wv = new Float32Array(wBytes.buffer);
      for (let i = 0; i < group; i++) wv[i] = 0.5 + Math.cos(i) * 0.3;
      const w = backend.upload({ name: "norm", dtype: "f32", shape: [group], data: wBytes }) as CpuWeight;
      const out = backend.activation(rows, cols) as CpuTensor;
      assert.equal(engine.rmsnorm(out, x, w, 1e-5, group), true);
      for (let g = 0; g < rows * cols; g += group) {
        let ss = 0;
        for (let i = 0; i < group; i++) ss += x.data[g + i]! ** 2;
        const scale = 1 / Math.sqrt(ss / group + 1e-5);
        for (let i = 0; i < group; i++) {
          const want = wv[i]! * x.data[g + i]! * scale;
          const tol = (group / 8 + 9) * 2 ** -24 * Math.abs(want) + 1e-30;
          assert.ok(Math.abs(out.data[g + i]! - want) <= tol, `[${rows}, ${cols}] group ${group} at ${g + i}: ${out.data[g + i]} vs ${want}`);
        }
      }
    }
  } finally {
    backend.dispose();
  }
});

test("rmsnorm: other weight formats are left to the backend's loop, same results as the reference backend", async () => {
  const { backend, engine } = await setup();
  const ref = new CpuBackend();
  try {
    const wBytes = new Uint8Array(32 * 2);
    const dv = new DataView(wBytes.buffer);
    for (let i = 0; i < 32; i++) dv.setUint16(i * 2, f32ToF16(0.25 + i / 64), true);
    const results = [backend, ref].map((b) => {
      const x = b.activation(2, 32) as CpuTensor;
      for (let i = 0; i < 64; i++) x.data[i] = i - 30;
      const w = b.upload({ name: "norm", dtype: "f16", shape: [32], data: wBytes }) as CpuWeight;
      if (b === backend) assert.equal(engine.rmsnorm(x, x, w, 1e-6, 32), false);
      const out = b.activation(2, 32) as CpuTensor;
      b.rmsnorm(out, x, w, 1e-6, 32);
      return out.data.slice();
    });
    assert.deepEqual(results[0], results[1]);
  } finally {
    backend.dispose();
    ref.dispose();
  }
});
