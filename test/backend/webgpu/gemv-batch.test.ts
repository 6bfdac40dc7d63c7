/**
 * GEMVs over several rows of x (batched decoding, kernels/matmul.ts `batch`): for every weight format and
 * B = 2, 3, 8 rows, with and without subgroups and with weights split into parts,
 * - each row of the B-row matmul equals the one-row GEMV on that row bit for bit (the server's batched
 *   rows must equal single-sequence results), and the f64 product within the f32 summation bound
 *   (K + 16) * 2^-24 * sum |w x|;
 * - the same for the fused ops (matmulStacked, matmulSwiglu, matmulAdd) against their one-row runs;
 * - one dispatch per weight part instead of one per row, and `batchedGemv = false` brings back the
 *   per-row GEMVs with the same bits.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { decodeRow } from "../../../src/backend/cpu/reference.js";
import type { Tensor, Weight } from "../../../src/backend/backend.js";
import type { GpuTensor, WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import { f32bits, grid } from "../../../src/backend/webgpu/kernel.js";
import {
  GEMV_BATCH_ROWS_PER_TEAM, GEMV_PORTABLE_WORKGROUP_BYTES, GEMV_ROWS_PER_TEAM, chunkElems, gemvBatchVariant, gemvKernel, gemvRows, gemvVariant,
  gemvWorkgroupBytes, xMode,
} from "../../../src/backend/webgpu/kernels/matmul.js";
import { swigluRowsPerTeam } from "../../../src/backend/webgpu/kernels/gemv-fused.js";
import { PACKED_DTYPES, isPackedDType, type BlockDType, type PackedDType } from "../../../src/tensor/dtype.js";
import type { GpuFormat } from "../../../src/backend/webgpu/weights.js";
import type { RawTensor } from "../../../src/tensor/raw.js";
import { quantFormat } from "../../../src/quant/formats.js";
import { packedToRaw } from "../../../src/quant/packed-raw.js";
import { Rng, openOrSkip, randomWeight, randoms, tensorOf } from "./helpers.js";
import { assertProduct, packedWeight } from "./packed-helpers.js";

const { gpu, reason } = await openOrSkip();
// subgroups with weights split by rows into parts (20864-byte bindings: 2 to 7 parts below), and no
// subgroups (the workgroup-memory reduction, x rows one after another)
const parts = gpu ? await openOrSkip({ maxBindingBytes: 4 * 5216 }) : { gpu: undefined, reason };
const plain = gpu ? await openOrSkip({ subgroups: false }) : { gpu: undefined, reason };
after(() => {
  gpu?.dispose();
  parts.gpu?.dispose();
  plain.gpu?.dispose();
});
const skip = !gpu && reason;

const DENSE = ["f32", "f16", "bf16", "q8_0", "q4_0"] as const;
const FORMATS: readonly GpuFormat[] = [...DENSE, ...PACKED_DTYPES];
const BATCHES = [2, 3, 8];

/**
 * [N, K] per format: odd row counts (teams past n) and rows of whole tiles plus a rest, with K % 4 != 0
 * (scalar x) for f32; packed rows of 7 whole tiles and a partial one (guarded vec4 x), long enough to
 * be split into parts by `parts`.
 */
const SHAPE: Record<GpuFormat, [number, number]> = {
  f32: [13, 1030], f16: [13, 5 * 256 + 44], bf16: [13, 5 * 256 + 12], q8_0: [13, 5 * 512 + 64], q4_0: [13, 5 * 1024 + 96],
  ...(Object.fromEntries(PACKED_DTYPES.map((f) => [f, [13, 7 * 1024 + 136]])) as Record<PackedDType, [number, number]>),
};

/** A random [N, K] weight in `format` and its values as the CPU decodes them (flat, row-major). */
function weightOf(format: GpuFormat, N: number, K: number, rng: Rng, scale = 1): { raw: RawTensor; w: Float32Array } {
  if (isPackedDType(format)) {
    if (scale === 1) return packedWeight(format, N, K, rng);
    // `scale` gives members of one stack different tensor scales (each is applied in the epilogue)
    const p = quantFormat(format).pack(randoms(N * K, rng, 0.05 * scale), N, K);
    return { raw: packedToRaw(`w.${format}`, p), w: quantFormat(format).unpack(p) };
  }
  const raw = randomWeight(format as BlockDType, [N, K], rng);
  const w = new Float32Array(N * K);
  for (let o = 0; o < N; o++) decodeRow(raw.dtype, raw.data, o, K, w.subarray(o * K, (o + 1) * K));
  return { raw, w };
}

/** got equals want bit for bit (both f32). */
function assertSameBits(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const [g, w] = [new Uint32Array(got.buffer, got.byteOffset, got.length), new Uint32Array(want.buffer, want.byteOffset, want.length)];
  for (let i = 0; i < g.length; i++) if (g[i] !== w[i]) assert.fail(`${what}: [${i}] = ${got[i]}, the one-row GEMV gives ${want[i]}`);
}

/** Row r of a [rows, cols] host array. */
const rowOf = (a: Float32Array, r: number, cols: number) => a.subarray(r * cols, (r + 1) * cols);

/** Runs `op` on each row of x alone (one-row tensors, the single-sequence path) and concatenates the outputs of `cols` each. */
async function perRow(g: WebGpuBackend, xs: Float32Array, B: number, K: number, cols: readonly number[], op: (x: Tensor, outs: Tensor[]) => void): Promise<Float32Array[]> {
  const got = cols.map((c) => new Float32Array(B * c));
  for (let r = 0; r < B; r++) {
    const outs = cols.map((c) => g.activation(1, c));
    op(tensorOf(g, 1, K, rowOf(xs, r, K)), outs);
    for (let i = 0; i < cols.length; i++) got[i]!.set(await g.read(outs[i]!), r * cols[i]!);
  }
  return got;
}

const backendName = (g: WebGpuBackend) => `${g.gpu.subgroups ? "subgroups" : "no subgroups"}${g === parts.gpu ? ", parts" : ""}`;

test("matmul of 2, 3, 8 rows, every format: one dispatch a part, each row the one-row GEMV's bits and the exact product", { skip }, async () => {
  const rng = new Rng(41);
  for (const format of FORMATS) {
    const [N, K] = SHAPE[format];
    const { raw, w } = weightOf(format, N, K, rng);
    // no subgroups: the reduction does not depend on the format, so one dense and one packed format
    const backends = [gpu!, parts.gpu!, ...(format === "q4_0" || format === "nvfp4-razer" ? [plain.gpu!] : [])];
    for (const g of backends) {
      const wt = g.upload(raw);
      if (g === parts.gpu) assert.ok(wt.parts.length > 1, `${format}: weights split into parts`);
      // split weights change only offsets: B = 3 covers them
      for (const B of g === gpu ? BATCHES : [3]) {
        const what = `${format} [${N}, ${K}] x ${B} rows (${backendName(g)}, ${wt.parts.length} parts)`;
        const xs = randoms(B * K, rng);
        const out = g.activation(B, N);
        const d0 = g.recorder.dispatches;
        g.matmul(out, tensorOf(g, B, K, xs), wt);
        assert.equal(g.recorder.dispatches - d0, wt.parts.length, `${what}: one dispatch a part`);
        const got = await g.read(out);
        const [want] = await perRow(g, xs, B, K, [N], (x, [o]) => g.matmul(o!, x, wt));
        assertSameBits(got, want!, what);
        assertProduct(got, w, xs, B, N, K, what);
      }
    }
  }
});

test("matmul of a few rows with K % 4 != 0 (scalar x), rows < x's rows, and batchedGemv off (one GEMV a row, same bits)", { skip }, async () => {
  const rng = new Rng(42);
  for (const format of ["f32", "razer", "int8"] as GpuFormat[]) {
    const [N, K] = [7, 301];
    const { raw, w } = weightOf(format, N, K, rng);
    const g = gpu!;
    const wt = g.upload(raw);
    const B = 3;
    // x holds one row more than the matmul reads
    const xs = randoms((B + 1) * K, rng);
    const x = tensorOf(g, B + 1, K, xs);
    const out = g.activation(B + 1, N);
    g.matmul(out, x, wt, B);
    const got = (await g.read(out)).subarray(0, B * N);
    const [want] = await perRow(g, xs, B, K, [N], (xr, [o]) => g.matmul(o!, xr, wt));
    assertSameBits(got, want!, `${format} [${N}, ${K}] x ${B} of ${B + 1} rows`);
    assertProduct(got, w, xs, B, N, K, `${format} [${N}, ${K}]`);
  }
  // row views need 256-byte rows: [64, 1024] f16, as a server's batch; the old path takes one GEMV a row
  const g = gpu!;
  const { raw } = weightOf("q4_0", 64, 1024, rng);
  const wt = g.upload(raw);
  const xs = randoms(4 * 1024, rng);
  const run = async (batched: boolean) => {
    g.batchedGemv = batched;
    try {
      const out = g.activation(4, 64);
      const d0 = g.recorder.dispatches;
      g.matmul(out, tensorOf(g, 4, 1024, xs), wt);
      return { dispatches: g.recorder.dispatches - d0, out: await g.read(out) };
    } finally {
      g.batchedGemv = true;
    }
  };
  const [on, off] = [await run(true), await run(false)];
  assert.deepEqual([on.dispatches, off.dispatches], [1, 4]);
  assertSameBits(on.out, off.out, "batchedGemv on vs off");
});

test("the B-row GEMV's rows are the one-row GEMV's bits under any rows per team, pipelined or not", { skip }, async () => {
  const rng = new Rng(43);
  const g = gpu!;
  const sg = g.gpu.subgroupMinSize;
  for (const [format, R, pipeline] of [["q4_0", 1, false], ["q4_0", 4, true], ["q8_0", 3, false], ["f16", 1, true]] as [GpuFormat, number, boolean][]) {
    const [N, K] = SHAPE[format];
    const { raw, w } = weightOf(format, N, K, rng);
    const wt = g.upload(raw);
    const part = wt.parts[0]!;
    const B = 3;
    const xs = randoms(B * K, rng);
    const single = { ...gemvVariant(format, sg), pipeline };
    const v = gemvBatchVariant(single, R)!;
    const mode = xMode(format, K);
    const one = gemvKernel(format, mode, sg, single.rowsPerTeam, single.split, single.unroll, single.pipeline, single.x);
    const many = gemvKernel(format, mode, sg, v.rowsPerTeam, v.split, v.unroll, v.pipeline, v.x, undefined, B);
    const params = [N, K, Math.ceil(K / chunkElems(format)), 0, wt.stride / 4, wt.blocks, f32bits(wt.mul)];
    const bufs = (x: Tensor, o: Tensor) => [(x as GpuTensor).buf, part.data, ...(part.scales ? [part.scales] : []), (o as GpuTensor).buf];
    const out = g.activation(B, N);
    g.recorder.dispatch(many, [...params, N], bufs(tensorOf(g, B, K, xs), out), grid(Math.ceil(N / gemvRows(sg, v.rowsPerTeam, v.split))));
    const got = await g.read(out);
    const want = new Float32Array(B * N);
    for (let r = 0; r < B; r++) {
      const o = g.activation(1, N);
      g.recorder.dispatch(one, params, bufs(tensorOf(g, 1, K, rowOf(xs, r, K)), o), grid(Math.ceil(N / gemvRows(sg, single.rowsPerTeam, single.split))));
      want.set(await g.read(o), r * N);
    }
    const what = `${format} batch R=${R} (one-row R=${single.rowsPerTeam} S=${single.split} U=${single.unroll}) pipeline=${pipeline}`;
    assertSameBits(got, want, what);
    assertProduct(got, w, xs, B, N, K, what);
  }
});

test("batched GEMV kernels: x staged in workgroup memory refuses a batch; the default variants' workgroup memory fits 16 KiB", () => {
  assert.throws(() => gemvKernel("q4_0", "exact", 32, 2, 2, 1, false, "shared", undefined, 2), /staged in workgroup memory/);
  assert.throws(() => gemvKernel("q4_0", "exact", 32, 2, 2, 1, false, "global", undefined, 9), /batch 9/);
  assert.equal(gemvBatchVariant({ rowsPerTeam: 2, split: 2, unroll: 1, pipeline: false, x: "shared-f16" }, 2), undefined);
  for (const f of FORMATS) {
    for (const sg of [1, 16, 32]) {
      const single = gemvVariant(f, sg);
      for (const R of [GEMV_BATCH_ROWS_PER_TEAM[f], swigluRowsPerTeam(GEMV_BATCH_ROWS_PER_TEAM[f])]) {
        const v = gemvBatchVariant(single, R);
        assert.ok(v, `${f}: the default variant takes a batch`);
        assert.ok(gemvWorkgroupBytes(f, sg, v, 8) <= GEMV_PORTABLE_WORKGROUP_BYTES, `${f} sg=${sg} R=${R}`);
      }
    }
  }
  assert.equal(Object.keys(GEMV_BATCH_ROWS_PER_TEAM).length, Object.keys(GEMV_ROWS_PER_TEAM).length);
});

/** Exact row sums of w·x (x: B rows of K) and their magnitudes sum |w x|, [B * N] each. */
function exact(w: Float32Array, xs: Float32Array, N: number, K: number, B: number): { sum: Float64Array; mag: Float64Array } {
  const sum = new Float64Array(B * N);
  const mag = new Float64Array(B * N);
  for (let r = 0; r < B; r++) {
    for (let o = 0; o < N; o++) {
      for (let i = 0; i < K; i++) {
        const t = w[o * K + i]! * xs[r * K + i]!;
        sum[r * N + o] += t;
        mag[r * N + o] += Math.abs(t);
      }
    }
  }
  return { sum, mag };
}

function assertWithin(got: Float32Array, want: ArrayLike<number>, bound: (i: number) => number, what: string): void {
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i]! - want[i]!) <= bound(i))) assert.fail(`${what}: [${i}] = ${got[i]}, exact ${want[i]}, bound ${bound(i)}`);
  }
}

const silu = (g: number) => g / (1 + Math.exp(-g));
/** Fused-op rows (fused.test.ts's): whole tiles plus a rest. */
const FK = 1120;
/** Formats the fused ops are checked on at every B; the rest at B = 3. */
const FUSED_ALL_B: readonly GpuFormat[] = ["f16", "q8_0", "q4_0", "razer"];

test("fused ops (stacked q/k/v, gate/up/SwiGLU, add) over 2, 3, 8 rows: one dispatch, each row the one-row fused op's bits and the exact value", { skip }, async () => {
  const rng = new Rng(44);
  const gamma = (FK + 16) * 2 ** -24;
  for (const format of FORMATS) {
    const batches = FUSED_ALL_B.includes(format) ? BATCHES : [3];
    // stacks must fit one binding, so `parts` (split weights) serves matmulAdd only
    const backends = [gpu!, ...(format === "q4_0" || format === "razer" ? [plain.gpu!] : [])];
    // 64-row members: every format's stack members (int8's f32 row scales too) end 256-byte aligned
    const rows = [128, 64, 64];
    const ws = rows.map((n, i) => weightOf(format, n, FK, rng, [1, 400, 4000][i]));
    const [gate, up] = [weightOf(format, 64, FK, rng), weightOf(format, 64, FK, rng, 400)];
    const ow = weightOf(format, 40, FK, rng);
    for (const g of backends) {
      const stack = g.uploadStack(ws.map((w) => w.raw));
      const [wg, wu] = g.uploadStack([gate.raw, up.raw]) as Weight[] as [Weight, Weight];
      for (const B of g === plain.gpu ? [8] : batches) {
        const what = `${format} x ${B} rows (${backendName(g)})`;
        const xs = randoms(B * FK, rng);
        const x = tensorOf(g, B, FK, xs);
        // stacked
        const outs = rows.map((n) => g.activation(B, n));
        let d0 = g.recorder.dispatches;
        assert.equal(g.matmulStacked(outs, x, stack), true, `${what}: stacked fused`);
        assert.equal(g.recorder.dispatches - d0, 1, `${what}: stacked in one dispatch`);
        const wantS = await perRow(g, xs, B, FK, rows, (xr, os) => assert.ok(g.matmulStacked(os, xr, stack)));
        for (let i = 0; i < 3; i++) {
          const got = await g.read(outs[i]!);
          assertSameBits(got, wantS[i]!, `${what} stacked out ${i}`);
          const ref = exact(ws[i]!.w, xs, rows[i]!, FK, B);
          assertWithin(got, ref.sum, (o) => gamma * ref.mag[o]!, `${what} stacked out ${i}`);
        }
        // swiglu
        const out = g.activation(B, 64);
        d0 = g.recorder.dispatches;
        assert.equal(g.matmulSwiglu(out, x, wg, wu), true, `${what}: swiglu fused`);
        assert.equal(g.recorder.dispatches - d0, 1, `${what}: swiglu in one dispatch`);
        const got = await g.read(out);
        const [wantG] = await perRow(g, xs, B, FK, [64], (xr, [o]) => assert.ok(g.matmulSwiglu(o!, xr, wg, wu)));
        assertSameBits(got, wantG!, `${what} swiglu`);
        const G = exact(gate.w, xs, 64, FK, B);
        const U = exact(up.w, xs, 64, FK, B);
        const want = Array.from({ length: B * 64 }, (_, i) => silu(G.sum[i]!) * U.sum[i]!);
        const bound = (i: number) =>
          1.1 * Math.abs(U.sum[i]!) * gamma * G.mag[i]! + Math.abs(silu(G.sum[i]!)) * gamma * U.mag[i]! + gamma ** 2 * G.mag[i]! * U.mag[i]! + 8 * 2 ** -24 * Math.abs(want[i]!) + 1e-30;
        assertWithin(got, want, bound, `${what} swiglu`);
      }
    }
    // add, on every backend (weights split into parts too)
    for (const g of [gpu!, parts.gpu!, ...(backends.includes(plain.gpu!) ? [plain.gpu!] : [])]) {
      const wt = g.upload(ow.raw);
      if (g === parts.gpu) assert.ok(wt.parts.length > 1, `${format}: weights split into parts`);
      for (const B of g === gpu ? batches : [3]) {
        const what = `${format} x ${B} rows (${backendName(g)}, ${wt.parts.length} parts)`;
        const xs = randoms(B * FK, rng);
        const rv = randoms(B * 40, rng, 4);
        const out = tensorOf(g, B, 40, rv);
        const d0 = g.recorder.dispatches;
        assert.equal(g.matmulAdd(out, tensorOf(g, B, FK, xs), wt), true, `${what}: add fused`);
        assert.equal(g.recorder.dispatches - d0, wt.parts.length, `${what}: add in one dispatch a part`);
        const got = await g.read(out);
        const want1 = new Float32Array(B * 40);
        for (let r = 0; r < B; r++) {
          const o = tensorOf(g, 1, 40, rowOf(rv, r, 40));
          assert.ok(g.matmulAdd(o, tensorOf(g, 1, FK, rowOf(xs, r, FK)), wt));
          want1.set(await g.read(o), r * 40);
        }
        assertSameBits(got, want1, `${what} add`);
        const P = exact(ow.w, xs, 40, FK, B);
        assertWithin(got, Array.from(P.sum, (s, i) => rv[i]! + s), (i) => gamma * P.mag[i]! + 2 ** -24 * (Math.abs(rv[i]!) + Math.abs(P.sum[i]!)), `${what} add`);
      }
    }
  }
});

test("int8 activations keep one int8 GEMV a row (their kernels are one-row): rows equal lone int8 runs; over 8 rows the fused ops decline", { skip }, async () => {
  const rng = new Rng(45);
  const g = gpu!;
  // 256-byte rows, so the per-row path can take row views
  const [N, K, B] = [64, 1024, 3];
  const wt = g.upload(weightOf("q4_0", N, K, rng).raw);
  const xs = randoms(B * K, rng);
  const rv = randoms(B * N, rng, 4);
  g.activations = "int8";
  try {
    const out = g.activation(B, N);
    g.matmul(out, tensorOf(g, B, K, xs), wt);
    const sum = tensorOf(g, B, N, rv);
    assert.equal(g.matmulAdd(sum, tensorOf(g, B, K, xs), wt), true);
    const [got, gotSum] = [await g.read(out), await g.read(sum)];
    const [want] = await perRow(g, xs, B, K, [N], (x, [o]) => g.matmul(o!, x, wt));
    assertSameBits(got, want!, "int8 matmul");
    const wantSum = new Float32Array(B * N);
    for (let r = 0; r < B; r++) {
      const o = tensorOf(g, 1, N, rowOf(rv, r, N));
      assert.ok(g.matmulAdd(o, tensorOf(g, 1, K, rowOf(xs, r, K)), wt));
      wantSum.set(await g.read(o), r * N);
    }
    assertSameBits(gotSum, wantSum, "int8 matmulAdd");
    // and not the f32 GEMV's bits: the int8 path did run
    g.activations = "f32";
    const f32 = g.activation(B, N);
    g.matmul(f32, tensorOf(g, B, K, xs), wt);
    assert.notDeepEqual(await g.read(f32), got);
  } finally {
    g.activations = "f32";
  }
  const d0 = g.recorder.dispatches;
  assert.equal(g.matmulAdd(g.activation(9, N), g.activation(9, K), wt), false);
  assert.equal(g.recorder.dispatches, d0);
});
