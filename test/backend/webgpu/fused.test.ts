/**
 * The fused ops of the WebGPU backend (README "Fusions") against the exact (f64) results and against the
 * separate ops they replace, for f16, q8_0, q4_0 and RaZeR weights, with and without subgroups:
 * - matmulStacked (q, k, v in one GEMV), matmulSwiglu (gate, up, SwiGLU), matmulAdd (out += W·x) within
 *   the GEMV's f32 summation bound (K + 16) * 2^-24 * sum |w x| (propagated through silu for SwiGLU);
 * - ropeKvWrite against rope, rope, kvWrite (same arithmetic; 1e-6 relative);
 * - whole models: fewer dispatches per decode step, stories260K's decode logits with and without fusion,
 *   and frugal-ar-small's teacher-forced logits against the CPU backend's.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeRow } from "../../../src/backend/cpu/reference.js";
import type { Weight } from "../../../src/backend/backend.js";
import { GEMV_BATCH_ROWS, type GpuKVCache, type WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import type { GpuWeight } from "../../../src/backend/webgpu/weights.js";
import type { BlockDType } from "../../../src/tensor/dtype.js";
import type { RawTensor } from "../../../src/tensor/raw.js";
import { GEMV_X } from "../../../src/backend/webgpu/kernels/matmul.js";
import { ropeInverseFrequencies } from "../../../src/model/config.js";
import { loadModel } from "../../../src/load.js";
import { ROOT } from "../../paths.js";
import { Rng, assertClose, openOrSkip, randomWeight, randoms, tensorOf } from "./helpers.js";
import { quantFormat } from "../../../src/quant/formats.js";
import { packedToRaw } from "../../../src/quant/packed-raw.js";

const { gpu, reason } = await openOrSkip();
// no subgroups: the workgroup-memory reduction path of the same skeleton
const plain = gpu ? await openOrSkip({ subgroups: false }) : { gpu: undefined, reason };
after(() => {
  gpu?.dispose();
  plain.gpu?.dispose();
});
const skip = !gpu && reason;
const backends = () => [gpu!, plain.gpu!];

const FORMATS = ["f16", "q8_0", "q4_0", "razer"] as const;
type Format = (typeof FORMATS)[number];
/** Whole tiles plus a rest (or a partial packed tile); row counts keep each stacked member 256-byte aligned. */
const K = 1120;

/** A random [N, K] weight in `format` and its values as the CPU decodes them (flat, row-major). */
function weight(format: Format, N: number, rng: Rng, name: string, scale = 1): { raw: RawTensor; w: Float32Array } {
  if (format === "razer") {
    // `scale` gives members of one stack different tensor scales (each is applied in the epilogue)
    const f = randoms(N * K, rng, 0.05 * scale);
    const p = quantFormat(format).pack(f, N, K);
    return { raw: packedToRaw(name, p), w: quantFormat(format).unpack(p) };
  }
  const raw = randomWeight(format as BlockDType, [N, K], rng, name);
  const w = new Float32Array(N * K);
  for (let o = 0; o < N; o++) decodeRow(raw.dtype, raw.data, o, K, w.subarray(o * K, (o + 1) * K));
  return { raw, w };
}

/** Exact row sums of w·x and their magnitudes sum |w x|. */
function exact(w: Float32Array, x: Float32Array, N: number): { sum: Float64Array; mag: Float64Array } {
  const sum = new Float64Array(N);
  const mag = new Float64Array(N);
  for (let o = 0; o < N; o++) {
    for (let i = 0; i < K; i++) {
      const t = w[o * K + i]! * x[i]!;
      sum[o] += t;
      mag[o] += Math.abs(t);
    }
  }
  return { sum, mag };
}

const GAMMA = (K + 16) * 2 ** -24;

function assertWithin(got: Float32Array, want: ArrayLike<number>, bound: (o: number) => number, what: string): void {
  for (let o = 0; o < want.length; o++) {
    if (!(Math.abs(got[o]! - want[o]!) <= bound(o))) assert.fail(`${what}: [${o}] = ${got[o]}, exact ${want[o]}, bound ${bound(o)}`);
  }
}

const silu = (g: number) => g / (1 + Math.exp(-g));

test("matmulStacked: q, k and v in one dispatch equal the exact products and the three matmuls", { skip }, async () => {
  const rng = new Rng(31);
  for (const format of FORMATS) {
    const ws = [weight(format, 64, rng, "q"), weight(format, 32, rng, "k", 400), weight(format, 32, rng, "v", 4000)];
    const xv = randoms(K, rng);
    const refs = ws.map((w, i) => exact(w.w, xv, [64, 32, 32][i]!));
    for (const b of backends()) {
      const what = `${format} ${b.gpu.subgroups ? "subgroups" : "no subgroups"}`;
      const up = b.uploadStack(ws.map((w) => w.raw));
      if (format === "razer") assert.equal(new Set(up.map((w) => w.mul)).size, 3, "the members' tensor scales differ");
      const x = tensorOf(b, 1, K, xv);
      const outs = ws.map((_, i) => b.activation(1, [64, 32, 32][i]!));
      const before = b.recorder.dispatches;
      assert.equal(b.matmulStacked(outs, x, up), true, `${what}: the stack was made and fused`);
      assert.equal(b.recorder.dispatches - before, 1, `${what}: one dispatch`);
      const sep = ws.map((_, i) => b.activation(1, [64, 32, 32][i]!));
      up.forEach((w, i) => b.matmul(sep[i]!, x, w));
      for (let i = 0; i < 3; i++) {
        const got = await b.read(outs[i]!);
        assertWithin(got, refs[i]!.sum, (o) => GAMMA * refs[i]!.mag[o]!, `${what} out ${i}`);
        // the separate matmuls read the same stacked weights through their sub-ranges
        assertWithin(await b.read(sep[i]!), refs[i]!.sum, (o) => GAMMA * refs[i]!.mag[o]!, `${what} matmul ${i}`);
      }
      // a weight set in another order is not the stack: declined, nothing recorded
      const n = b.recorder.dispatches;
      assert.equal(b.matmulStacked([outs[1]!, outs[0]!, outs[2]!], x, [up[1]!, up[0]!, up[2]!]), false);
      assert.equal(b.recorder.dispatches, n);
    }
  }
});

test("matmulSwiglu: silu(gate·x) * (up·x) in one dispatch equals the exact value and matmul, matmul, swiglu", { skip }, async () => {
  const rng = new Rng(32);
  const N = 64;
  for (const format of FORMATS) {
    const [g, u] = [weight(format, N, rng, "gate"), weight(format, N, rng, "up", 400)];
    const xv = randoms(K, rng);
    const G = exact(g.w, xv, N);
    const U = exact(u.w, xv, N);
    const want = Array.from({ length: N }, (_, o) => silu(G.sum[o]!) * U.sum[o]!);
    // |silu'| <= 1.1: the sums' bounds carried through the product, plus the epilogue's own roundings
    const bound = (o: number) =>
      1.1 * Math.abs(U.sum[o]!) * GAMMA * G.mag[o]! + Math.abs(silu(G.sum[o]!)) * GAMMA * U.mag[o]! + GAMMA ** 2 * G.mag[o]! * U.mag[o]! + 8 * 2 ** -24 * Math.abs(want[o]!) + 1e-30;
    for (const b of backends()) {
      const what = `${format} ${b.gpu.subgroups ? "subgroups" : "no subgroups"}`;
      const [wg, wu] = b.uploadStack([g.raw, u.raw]) as Weight[] as [Weight, Weight];
      if (format === "razer") assert.notEqual((wg as GpuWeight).mul, (wu as GpuWeight).mul, "gate's and up's tensor scales differ");
      const x = tensorOf(b, 1, K, xv);
      const out = b.activation(1, N);
      const before = b.recorder.dispatches;
      assert.equal(b.matmulSwiglu(out, x, wg, wu), true, `${what}: fused`);
      assert.equal(b.recorder.dispatches - before, 1);
      assertWithin(await b.read(out), want, bound, `${what} fused`);
      const sg = b.activation(1, N);
      const su = b.activation(1, N);
      b.matmul(sg, x, wg);
      b.matmul(su, x, wu);
      b.swiglu(sg, sg, su);
      assertWithin(await b.read(sg), want, bound, `${what} separate`);
    }
  }
});

test("the fused GEMVs run the plain GEMV's variant: with x staged in workgroup memory too", { skip }, async () => {
  const rng = new Rng(35);
  for (const format of ["f16", "q4_0"] as const) {
    const saved = GEMV_X[format];
    GEMV_X[format] = "shared";
    try {
      const ws = [weight(format, 64, rng, "q"), weight(format, 32, rng, "k"), weight(format, 32, rng, "v")];
      const xv = randoms(K, rng);
      for (const b of backends()) {
        const up = b.uploadStack(ws.map((w) => w.raw));
        const x = tensorOf(b, 1, K, xv);
        const outs = ws.map((w) => b.activation(1, w.raw.shape[0]!));
        assert.equal(b.matmulStacked(outs, x, up), true);
        for (let i = 0; i < 3; i++) {
          const ref = exact(ws[i]!.w, xv, ws[i]!.raw.shape[0]!);
          assertWithin(await b.read(outs[i]!), ref.sum, (o) => GAMMA * ref.mag[o]!, `${format} x shared, out ${i}`);
        }
      }
    } finally {
      GEMV_X[format] = saved;
    }
  }
});

test("matmulAdd: out += W·x equals the exact sum and matmul then add", { skip }, async () => {
  const rng = new Rng(33);
  const N = 40;
  for (const format of FORMATS) {
    const w = weight(format, N, rng, "o");
    const xv = randoms(K, rng);
    const rv = randoms(N, rng, 4);
    const P = exact(w.w, xv, N);
    const want = Array.from({ length: N }, (_, o) => rv[o]! + P.sum[o]!);
    const bound = (o: number) => GAMMA * P.mag[o]! + 2 ** -24 * (Math.abs(rv[o]!) + Math.abs(P.sum[o]!));
    for (const b of backends()) {
      const what = `${format} ${b.gpu.subgroups ? "subgroups" : "no subgroups"}`;
      const wt = b.upload(w.raw);
      const x = tensorOf(b, 1, K, xv);
      const out = tensorOf(b, 1, N, rv);
      assert.equal(b.matmulAdd(out, x, wt), true);
      assertWithin(await b.read(out), want, bound, `${what} fused`);
      const res = tensorOf(b, 1, N, rv);
      const proj = b.activation(1, N);
      b.matmul(proj, x, wt);
      b.add(res, res, proj);
      assertWithin(await b.read(res), want, bound, `${what} separate`);
      // more rows than a GEMV serves are the GEMM's: declined (2..8 rows: gemv-batch.test.ts)
      assert.equal(b.matmulAdd(b.activation(GEMV_BATCH_ROWS + 1, N), b.activation(GEMV_BATCH_ROWS + 1, K), wt), false);
    }
  }
});

test("ropeKvWrite: RoPE of q and k and the KV write in one dispatch equal rope, rope, kvWrite", { skip }, async () => {
  const rng = new Rng(34);
  const [heads, kvHeads, hd, rows, pos0] = [4, 2, 16, 3, 5];
  const table = gpu!.ropeTable(ropeInverseFrequencies({ theta: 10000, dim: hd } as never), 16);
  for (const b of backends()) {
    const t = b === gpu ? table : b.ropeTable(ropeInverseFrequencies({ theta: 10000, dim: hd } as never), 16);
    const qv = randoms(rows * heads * hd, rng);
    const kv = randoms(rows * kvHeads * hd, rng);
    const vv = randoms(rows * kvHeads * hd, rng);
    const fusedCache = b.kvCache(1, kvHeads, hd, 16);
    const sepCache = b.kvCache(1, kvHeads, hd, 16);
    const [q1, k1, v1] = [tensorOf(b, rows, heads * hd, qv), tensorOf(b, rows, kvHeads * hd, kv), tensorOf(b, rows, kvHeads * hd, vv)];
    const before = b.recorder.dispatches;
    assert.equal(b.ropeKvWrite(q1, k1, v1, fusedCache, 0, pos0, hd, t), true);
    assert.equal(b.recorder.dispatches - before, 1);
    const [q2, k2, v2] = [tensorOf(b, rows, heads * hd, qv), tensorOf(b, rows, kvHeads * hd, kv), tensorOf(b, rows, kvHeads * hd, vv)];
    b.rope(q2, hd, pos0, t);
    b.rope(k2, hd, pos0, t);
    b.kvWrite(sepCache, 0, k2, v2, pos0);
    assertClose(await b.read(q1), await b.read(q2), "q", 1e-6, 1e-7);
    const cache = async (c: GpuKVCache, which: "k" | "v") => new Float32Array(await b.recorder.read(c[which][0]!.buffer, 0, 16 * kvHeads * hd * 4));
    assertClose(await cache(fusedCache as GpuKVCache, "k"), await cache(sepCache as GpuKVCache, "k"), "k cache", 1e-6, 1e-7);
    assertClose(await cache(fusedCache as GpuKVCache, "v"), await cache(sepCache as GpuKVCache, "v"), "v cache", 0, 0);
    // an int8 cache keeps the separate ops
    assert.equal(b.ropeKvWrite(q1, k1, v1, b.kvCache(1, kvHeads, hd, 16, "int8"), 0, pos0, hd, t), false);
  }
});

/** Dispatches one decode step records, and its logits. */
async function step(model: Awaited<ReturnType<typeof loadModel>>, b: WebGpuBackend, ids: number[]): Promise<{ dispatches: number; logits: Float32Array }> {
  const net = model.network;
  const cache = net.newCache(64);
  await b.read(model.prefill(ids.slice(0, -1), cache));
  const before = b.recorder.dispatches;
  const logits = net.forward(Int32Array.of(ids.at(-1)!), ids.length - 1, cache);
  const dispatches = b.recorder.dispatches - before;
  return { dispatches, logits: await b.read(logits) };
}

test("stories260K: a fused decode step has fewer dispatches and the unfused step's logits", { skip }, async () => {
  const fused = await openOrSkip();
  const unfused = await openOrSkip({ fuse: false });
  const a = await loadModel(undefined, { backend: fused.gpu! });
  const b = await loadModel(undefined, { backend: unfused.gpu! });
  try {
    const ids = [1, 403, 407, 261, 378, 347, 452];
    const f = await step(a, fused.gpu!, ids);
    const u = await step(b, unfused.gpu!, ids);
    const layers = a.config.numLayers;
    // per layer: q,k,v 3 -> 1, rope q + rope k + kvWrite 3 -> 1, o + add 2 -> 1, gate + up + swiglu 3 -> 1, down + add 2 -> 1
    assert.equal(u.dispatches - f.dispatches, 8 * layers, `dispatches per step: ${u.dispatches} unfused, ${f.dispatches} fused`);
    assertClose(f.logits, u.logits, "decode logits", 1e-4, 2e-5);
  } finally {
    a.dispose();
    b.dispose();
  }
});

test("frugal-ar-small: teacher-forced decode logits on WebGPU (fused) match the CPU backend's", { skip }, async () => {
  const dir = join(ROOT, "models/frugal-ar-small");
  const cpu = await loadModel(dir);
  const g = await loadModel(dir, { device: "webgpu" });
  try {
    const ids = cpu.tokenizer.encode("Once upon a time, a small robot found a key in the garden.");
    const cc = cpu.network.newCache(64);
    const gc = g.network.newCache(64);
    for (let t = 0; t < ids.length; t++) {
      const want = await cpu.backend.read(cpu.network.forward(Int32Array.of(ids[t]!), t, cc));
      const got = await g.backend.read(g.network.forward(Int32Array.of(ids[t]!), t, gc));
      assertClose(got, want, `position ${t}`, 1e-3, 1e-4);
    }
  } finally {
    cpu.dispose();
    g.dispose();
  }
});

test("int8 activations: the fused q8_0/q4_0 GEMVs equal the int8 matmuls (and add, swiglu) they replace", { skip }, async () => {
  const i8 = await openOrSkip({ activations: "int8" });
  const i8plain = await openOrSkip({ activations: "int8", subgroups: false });
  try {
    const rng = new Rng(36);
    for (const format of ["q8_0", "q4_0"] as const) {
      const xv = randoms(K, rng);
      for (const b of [i8.gpu!, i8plain.gpu!]) {
        const what = `${format} ${b.gpu.subgroups ? "subgroups" : "no subgroups"}`;
        const x = tensorOf(b, 1, K, xv);
        const ws = [weight(format, 64, rng, "q"), weight(format, 32, rng, "k"), weight(format, 32, rng, "v")];
        const up = b.uploadStack(ws.map((w) => w.raw));
        const outs = ws.map((w) => b.activation(1, w.raw.shape[0]!));
        const before = b.recorder.dispatches;
        assert.equal(b.matmulStacked(outs, x, up), true, `${what}: stacked on the int8 path`);
        assert.ok(b.recorder.dispatches - before <= 2, `${what}: x quantized once, one GEMV`);
        for (let i = 0; i < 3; i++) {
          const sep = b.activation(1, ws[i]!.raw.shape[0]!);
          b.matmul(sep, x, up[i]!);
          assert.deepEqual(await b.read(outs[i]!), await b.read(sep), `${what}: stacked out ${i} = its own int8 matmul`);
        }
        const [g, u] = [weight(format, 64, rng, "gate"), weight(format, 64, rng, "up")];
        const [wg, wu] = b.uploadStack([g.raw, u.raw]) as Weight[] as [Weight, Weight];
        const fused = b.activation(1, 64);
        assert.equal(b.matmulSwiglu(fused, x, wg, wu), true, `${what}: swiglu on the int8 path`);
        const sg = b.activation(1, 64), su = b.activation(1, 64);
        b.matmul(sg, x, wg);
        b.matmul(su, x, wu);
        b.swiglu(sg, sg, su);
        const [f, s] = [await b.read(fused), await b.read(sg)];
        // the same expression on the same sums; a compiler may contract it differently
        for (let o = 0; o < 64; o++) assert.ok(Math.abs(f[o]! - s[o]!) <= 4 * 2 ** -24 * Math.abs(s[o]!), `${what}: swiglu [${o}] ${f[o]} vs ${s[o]}`);
        const wo = b.upload(weight(format, 40, rng, "o").raw);
        const rv = randoms(40, rng, 4);
        const out = tensorOf(b, 1, 40, rv), res = tensorOf(b, 1, 40, rv), proj = b.activation(1, 40);
        assert.equal(b.matmulAdd(out, x, wo), true, `${what}: add on the int8 path`);
        b.matmul(proj, x, wo);
        b.add(res, res, proj);
        assert.deepEqual(await b.read(out), await b.read(res), `${what}: out += W·x = matmul then add`);
      }
    }
  } finally {
    i8.gpu?.dispose();
    i8plain.gpu?.dispose();
  }
});
