import { test } from "node:test";
import assert from "node:assert/strict";
import { jacobiSingularValues, symmetricEigen, truncatedSvd } from "../../../src/kv/xkv/svd.js";
import { Rng } from "../../../src/generate/sampler.js";

function gaussian(rng: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
}

/** A T x D matrix with a decaying spectrum (columns scaled geometrically), like real K/V caches. */
function decaying(T: number, D: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  const x = new Float64Array(T * D);
  for (let t = 0; t < T; t++) for (let c = 0; c < D; c++) x[t * D + c] = gaussian(rng) * 0.8 ** c;
  // mix the columns so the singular vectors are not the axes
  const y = new Float64Array(T * D);
  const mix = Array.from({ length: D * D }, () => gaussian(rng) / Math.sqrt(D));
  for (let t = 0; t < T; t++) for (let c = 0; c < D; c++) {
    let s = 0;
    for (let k = 0; k < D; k++) s += x[t * D + k]! * mix[k * D + c]!;
    y[t * D + c] = s;
  }
  return y;
}

const frob2 = (x: ArrayLike<number>) => Array.from(x).reduce((s, v) => s + v * v, 0);

function product(a: Float64Array, b: Float64Array, T: number, r: number, D: number): Float64Array {
  const out = new Float64Array(T * D);
  for (let t = 0; t < T; t++) for (let j = 0; j < r; j++) {
    const av = a[t * r + j]!;
    for (let c = 0; c < D; c++) out[t * D + c] = out[t * D + c]! + av * b[j * D + c]!;
  }
  return out;
}

test("symmetricEigen: M V = V Λ and VᵀV = I", () => {
  const n = 23;
  const rng = new Rng(3);
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) m[i * n + j] = m[j * n + i] = gaussian(rng);
  const { values, vectors } = symmetricEigen(m, n);
  for (let i = 1; i < n; i++) assert.ok(values[i]! >= values[i - 1]!, "ascending");
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < n; i++) {
      let mv = 0;
      for (let j = 0; j < n; j++) mv += m[i * n + j]! * vectors[j * n + k]!;
      assert.ok(Math.abs(mv - values[k]! * vectors[i * n + k]!) < 1e-10);
    }
    for (let l = 0; l < n; l++) {
      let dot = 0;
      for (let i = 0; i < n; i++) dot += vectors[i * n + k]! * vectors[i * n + l]!;
      assert.ok(Math.abs(dot - (k === l ? 1 : 0)) < 1e-12);
    }
  }
});

for (const [T, D] of [[60, 16], [12, 40]] as const) {
  test(`truncatedSvd ${T}x${D}: orthonormal B, Eckart–Young error, Jacobi singular values, full rank exact`, () => {
    const x = decaying(T, D, T * 7 + D);
    const ref = jacobiSingularValues(x, T, D);
    const n = Math.min(T, D);
    for (const r of [1, 3, 7, n, n + 5]) {
      const s = truncatedSvd(x, T, D, r);
      assert.equal(s.rank, Math.min(r, n));
      for (let i = 0; i < n; i++) assert.ok(Math.abs(s.sigma[i]! - ref[i]!) <= 1e-9 * ref[0]!, `sigma ${i}`);
      // B has orthonormal rows; AᵀA = Σ²
      for (let i = 0; i < s.rank; i++) for (let j = 0; j < s.rank; j++) {
        let bb = 0, aa = 0;
        for (let c = 0; c < D; c++) bb += s.b[i * D + c]! * s.b[j * D + c]!;
        for (let t = 0; t < T; t++) aa += s.a[t * s.rank + i]! * s.a[t * s.rank + j]!;
        assert.ok(Math.abs(bb - (i === j ? 1 : 0)) < 1e-9, `BBᵀ[${i},${j}] = ${bb}`);
        assert.ok(Math.abs(aa - (i === j ? ref[i]! ** 2 : 0)) < 1e-8 * ref[0]! ** 2, `AᵀA[${i},${j}]`);
      }
      const approx = product(s.a, s.b, T, s.rank, D);
      const err = frob2(x.map((v, i) => v - approx[i]!));
      const discarded = ref.slice(s.rank).reduce((acc, v) => acc + v * v, 0);
      if (s.rank < n) assert.ok(Math.abs(err - discarded) <= 1e-6 * discarded, `rank ${r}: ${err} vs ${discarded}`);
      else assert.ok(err <= 1e-20 * frob2(x), `full rank reconstructs: ${err}`);
      // sign convention: the largest-|.| entry of each B row is positive
      for (let i = 0; i < s.rank; i++) {
        let best = 0;
        for (let c = 0; c < D; c++) if (Math.abs(s.b[i * D + c]!) > Math.abs(best)) best = s.b[i * D + c]!;
        assert.ok(best > 0);
      }
    }
  });
}

test("truncatedSvd is deterministic and f32 input gives the same factors as its f64 copy", () => {
  const x = Float32Array.from(decaying(30, 10, 5));
  const a = truncatedSvd(x, 30, 10, 4);
  const b = truncatedSvd(Float64Array.from(x), 30, 10, 4);
  assert.deepEqual(a.a, b.a);
  assert.deepEqual(a.b, b.b);
});

test("truncatedSvd: a rank-deficient wide matrix still reconstructs exactly at full rank", () => {
  const T = 6, D = 20;
  const x = new Float64Array(T * D);
  for (let c = 0; c < D; c++) { x[c] = c + 1; x[D + c] = 2 * (c + 1); x[2 * D + c] = Math.sin(c); }
  const s = truncatedSvd(x, T, D, T);
  const approx = product(s.a, s.b, T, s.rank, D);
  assert.ok(frob2(x.map((v, i) => v - approx[i]!)) < 1e-20 * frob2(x));
});

test("truncatedSvd rejects bad shapes and ranks", () => {
  assert.throws(() => truncatedSvd(new Float64Array(10), 3, 4, 1), /expected 3x4/);
  assert.throws(() => truncatedSvd(new Float64Array(12), 3, 4, 0), /rank must be/);
});
