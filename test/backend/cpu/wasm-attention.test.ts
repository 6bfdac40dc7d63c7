/**
 * The WebAssembly attention kernel against an independent f64 attention written here, and against the
 * backend's own TypeScript loop, for grouped-query heads, several layers, 1 and 7 query rows after a
 * prefix (so the causal length varies per row and is rarely a multiple of 4), 1 and 2 threads.
 *
 * Tolerance per output element o_i = sum_t p_t v_ti, from the kernel's f32 arithmetic: each score
 * s_t = scale * q.k_t carries at most (d/4 + 8) * 2^-24 * scale * sum_j |q_j k_tj| of rounding, which moves
 * p_t by at most twice the largest such error relatively; exp (Cephes polynomial) and the normalization
 * add a few ulps; the weighted sum over t positions adds (len + 16) * 2^-24 relatively. All of it scales
 * with sum_t p_t |v_ti|.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Arena } from "../../../src/backend/cpu/arena.js";
import { CpuBackend, CpuKVCache, CpuTensor } from "../../../src/backend/cpu/cpu-backend.js";
import { createWasmMatmul, type WasmMatmul } from "../../../src/backend/cpu/wasm-matmul.js";
import { rng } from "../../rng.js";


/** f64 attention and the per-element tolerance of the f32 kernel (see the file comment). */
function oracle(q: CpuTensor, c: CpuKVCache, layer: number, pos0: number, heads: number): { out: Float64Array; tol: Float64Array } {
  const d = c.headDim;
  const width = c.kvHeads * d;
  const group = heads / c.kvHeads;
  const scale = 1 / Math.sqrt(d);
  const out = new Float64Array(q.rows * heads * d);
  const tol = new Float64Array(out.length);
  for (let r = 0; r < q.rows; r++) {
    const len = pos0 + r + 1;
    for (let h = 0; h < heads; h++) {
      const qo = r * q.cols + h * d;
      const base = (layer * c.capacity) * width + Math.floor(h / group) * d;
      const s = new Float64Array(len);
      let maxErr = 0;
      for (let t = 0; t < len; t++) {
        let dot = 0;
        let abs = 0;
        for (let j = 0; j < d; j++) {
          dot += q.data[qo + j]! * c.k[base + t * width + j]!;
          abs += Math.abs(q.data[qo + j]! * c.k[base + t * width + j]!);
        }
        s[t] = dot * scale;
        maxErr = Math.max(maxErr, (d / 4 + 8) * 2 ** -24 * scale * abs + 2 ** -24 * Math.abs(s[t]!));
      }
      const max = Math.max(...s);
      let sum = 0;
      for (let t = 0; t < len; t++) sum += (s[t] = Math.exp(s[t]! - max));
      const rel = 2 * maxErr + 16 * 2 ** -24 + (len + 16) * 2 ** -24;
      for (let j = 0; j < d; j++) {
        let o = 0;
        let a = 0;
        for (let t = 0; t < len; t++) {
          const v = c.v[base + t * width + j]!;
          o += (s[t]! / sum) * v;
          a += (s[t]! / sum) * Math.abs(v);
        }
        out[r * heads * d + h * d + j] = o;
        tol[r * heads * d + h * d + j] = rel * a * 1.01 + 1e-30;
      }
    }
  }
  return { out, tol };
}

interface Case { heads: number; kvHeads: number; d: number; rows: number; pos0: number; layer: number; qScale: number }

const CASES: Case[] = [
  { heads: 8, kvHeads: 2, d: 16, rows: 1, pos0: 37, layer: 1, qScale: 1 },
  { heads: 8, kvHeads: 2, d: 16, rows: 7, pos0: 20, layer: 2, qScale: 1 },
  { heads: 6, kvHeads: 6, d: 20, rows: 7, pos0: 0, layer: 0, qScale: 1 }, // d % 16 = 4: the 4-column path
  { heads: 4, kvHeads: 1, d: 64, rows: 1, pos0: 70, layer: 2, qScale: 1 },
  // peaked softmax: score gaps beyond 87, where exp underflows
  { heads: 4, kvHeads: 2, d: 32, rows: 3, pos0: 40, layer: 1, qScale: 12 },
];

async function setup(threads: number): Promise<{ backend: CpuBackend; engine: WasmMatmul }> {
  const arena = new Arena();
  const engine = (await createWasmMatmul(arena, { threads, parallelMin: 0, stallMs: Infinity }))!;
  return { backend: new CpuBackend({ arena, matmul: engine }), engine };
}

test("attention kernel: matches an f64 oracle within the derived f32 bound, 1 and 2 threads", async () => {
  for (const threads of [1, 2]) {
    const { backend, engine } = await setup(threads);
    const reference = new CpuBackend();
    try {
      const r = rng(7 + threads);
      for (const k of CASES) {
        const capacity = k.pos0 + k.rows + 5;
        const cache = backend.kvCache(3, k.kvHeads, k.d, capacity);
        for (let i = 0; i < cache.k.length; i++) {
          cache.k[i] = r() * 2 - 1;
          cache.v[i] = r() * 2 - 1;
        }
        const q = backend.activation(k.rows, k.heads * k.d) as CpuTensor;
        for (let i = 0; i < q.data.length; i++) q.data[i] = (r() * 2 - 1) * k.qScale;
        const out = backend.activation(k.rows, k.heads * k.d) as CpuTensor;
        out.data.fill(NaN);
        assert.ok(engine.attention(out, q, cache, k.layer, k.pos0, k.heads), "the kernel takes head widths divisible by 4");
        const want = oracle(q, cache, k.layer, k.pos0, k.heads);
        // the backend's TypeScript loop, on copies, as a second opinion on the oracle itself
        const rc = reference.kvCache(3, k.kvHeads, k.d, capacity);
        rc.k.set(cache.k);
        rc.v.set(cache.v);
        const rq = reference.activation(k.rows, k.heads * k.d) as CpuTensor;
        rq.data.set(q.data);
        const ro = reference.activation(k.rows, k.heads * k.d) as CpuTensor;
        reference.attention(ro, rq, rc, k.layer, k.pos0, k.heads);
        for (let i = 0; i < out.data.length; i++) {
          const what = `${JSON.stringify(k)} threads ${threads} out ${i}`;
          assert.ok(Math.abs(out.data[i]! - want.out[i]!) <= want.tol[i]!, `${what}: ${out.data[i]} vs ${want.out[i]} (> ${want.tol[i]})`);
          assert.ok(Math.abs(ro.data[i]! - want.out[i]!) <= want.tol[i]!, `${what}: the TypeScript loop ${ro.data[i]} vs ${want.out[i]}`);
        }
      }
    } finally {
      backend.dispose();
      reference.dispose();
    }
  }
});

test("attention: head widths not divisible by 4 fall back to the backend's loop, same results", async () => {
  const { backend, engine } = await setup(2);
  try {
    const r = rng(11);
    const cache = backend.kvCache(1, 2, 6, 16);
    for (let i = 0; i < cache.k.length; i++) {
      cache.k[i] = r() - 0.5;
      cache.v[i] = r() - 0.5;
    }
    const q = backend.activation(2, 24) as CpuTensor;
    for (let i = 0; i < q.data.length; i++) q.data[i] = r() - 0.5;
    const out = backend.activation(2, 24) as CpuTensor;
    assert.equal(engine.attention(out, q, cache, 0, 5, 4), false);
    backend.attention(out, q, cache, 0, 5, 4);
    const want = oracle(q, cache, 0, 5, 4);
    for (let i = 0; i < out.data.length; i++) assert.ok(Math.abs(out.data[i]! - want.out[i]!) <= want.tol[i]!, `out ${i}`);
  } finally {
    backend.dispose();
  }
});

test("attention: a query past the cache capacity is an error, not a read beyond it", async () => {
  const { backend, engine } = await setup(1);
  try {
    const cache = backend.kvCache(1, 1, 8, 4);
    const q = backend.activation(2, 8) as CpuTensor;
    const out = backend.activation(2, 8) as CpuTensor;
    assert.throws(() => engine.attention(out, q, cache, 0, 3, 1), /exceeds the KV cache capacity 4/);
  } finally {
    backend.dispose();
  }
});
