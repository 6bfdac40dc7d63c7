/**
 * The batched position-dependent ops (ropeRows, kvWriteRows, attentionRows over caches of one kvPool)
 * against the single-row ops run row by row: bit for bit on the same backend (the batched kernels do each
 * row's arithmetic as the single-row kernels do, attention split as it would be alone), and the WebGPU
 * results against the CPU's to f32 rounding. Rows sit at different positions, so attention takes a
 * different number of splits per row; 70 rows exercise a batch longer than one parameter table (64 rows).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, KVCache, Tensor } from "../../../src/backend/backend.js";
import { CpuBackend } from "../../../src/backend/cpu/cpu-backend.js";
import { ropeInverseFrequencies } from "../../../src/model/config.js";
import { Rng, assertClose, openOrSkip, randoms, tensorOf } from "./helpers.js";

const { gpu, reason } = await openOrSkip({ activations: "f32" });
after(() => gpu?.dispose());

interface Shape {
  heads: number;
  kvHeads: number;
  headDim: number;
  capacity: number;
}

interface Outcome {
  batched: { q: Float32Array; k: Float32Array; att: Float32Array };
  perRow: { q: Float32Array; k: Float32Array; att: Float32Array };
}

/** The same step, batched and row by row, on backend b; each over its own pool with the same history. */
async function step(b: Backend, s: Shape, positions: number[], seed: number): Promise<Outcome> {
  const rng = new Rng(seed);
  const n = positions.length;
  const width = s.kvHeads * s.headDim;
  const qCols = s.heads * s.headDim;
  const rope = b.ropeTable(ropeInverseFrequencies({ theta: 10000, dim: s.headDim }), s.capacity);
  const poolA = b.kvPool!(2, s.kvHeads, s.headDim, s.capacity, n)!;
  const poolB = b.kvPool!(2, s.kvHeads, s.headDim, s.capacity, n)!;
  assert.ok(poolA && poolB, "the pools fit");
  const cachesA: KVCache[] = positions.map(() => poolA.take());
  const cachesB: KVCache[] = positions.map(() => poolB.take());
  assert.equal(poolA.available, 0);
  // every input is written before any op is recorded (WebGPU: writeBuffer runs before the submission)
  const history = positions.map((p) => (p > 0 ? { k: randoms(p * width, rng), v: randoms(p * width, rng) } : undefined));
  const q = randoms(n * qCols, rng), k = randoms(n * width, rng), v = randoms(n * width, rng);
  const hist = history.map((h, r) => h && { k: tensorOf(b, positions[r]!, width, h.k), v: tensorOf(b, positions[r]!, width, h.v) });
  const qA = tensorOf(b, n, qCols, q), kA = tensorOf(b, n, width, k), vA = tensorOf(b, n, width, v);
  const one = (data: Float32Array, cols: number, r: number) => tensorOf(b, 1, cols, data.subarray(r * cols, (r + 1) * cols));
  const qB = positions.map((_, r) => one(q, qCols, r)), kB = positions.map((_, r) => one(k, width, r)), vB = positions.map((_, r) => one(v, width, r));
  const attA = b.activation(n, qCols);
  const attB = positions.map(() => b.activation(1, qCols));
  for (let r = 0; r < n; r++) {
    const h = hist[r];
    if (!h) continue;
    b.kvWrite(cachesA[r]!, 1, h.k, h.v, 0);
    b.kvWrite(cachesB[r]!, 1, h.k, h.v, 0);
  }
  b.ropeRows!(qA, s.headDim, positions, rope);
  b.ropeRows!(kA, s.headDim, positions, rope);
  b.kvWriteRows!(cachesA, 1, kA, vA, positions);
  b.attentionRows!(attA, qA, cachesA, 1, positions, s.heads);
  for (let r = 0; r < n; r++) {
    const p = positions[r]!;
    b.rope(qB[r]!, s.headDim, p, rope);
    b.rope(kB[r]!, s.headDim, p, rope);
    b.kvWrite(cachesB[r]!, 1, kB[r]!, vB[r]!, p);
    b.attention(attB[r]!, qB[r]!, cachesB[r]!, 1, p, s.heads);
  }
  const cat = async (ts: Tensor[]) => {
    const parts = await Promise.all(ts.map((t) => b.read(t)));
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) out.set(p, (o += p.length) - p.length);
    return out;
  };
  const batched = { q: await b.read(qA), k: await b.read(kA), att: await b.read(attA) };
  const perRow = { q: await cat(qB), k: await cat(kB), att: await cat(attB) };
  for (const c of cachesA) poolA.release(c);
  assert.equal(poolA.available, n);
  return { batched, perRow };
}

const CASES: { what: string; shape: Shape; positions: number[] }[] = [
  // heads 4 of 8 (vec4 loads), GQA 2:1; positions 300 and 131 take several attention splits, 0 and 5 one
  { what: "d=8 GQA, rows at 300, 0, 5, 131", shape: { heads: 4, kvHeads: 2, headDim: 8, capacity: 320 }, positions: [300, 0, 5, 131] },
  // head width 6 (scalar loads), one kv head
  { what: "d=6, rows at 2, 77, 1", shape: { heads: 2, kvHeads: 1, headDim: 6, capacity: 96 }, positions: [2, 77, 1] },
  // 70 rows: two parameter tables
  { what: "d=8, 70 rows", shape: { heads: 4, kvHeads: 2, headDim: 8, capacity: 8 }, positions: Array.from({ length: 70 }, (_, i) => (i * 3) % 8) },
];

for (const c of CASES) {
  test(`CPU ropeRows/kvWriteRows/attentionRows equal the row-by-row ops exactly (${c.what})`, async () => {
    const r = await step(new CpuBackend(), c.shape, c.positions, 7);
    assert.deepEqual(r.batched, r.perRow);
  });

  test(`WebGPU ropeRows/kvWriteRows/attentionRows equal the row-by-row ops exactly, and the CPU's to f32 rounding (${c.what})`, { skip: !gpu && reason }, async () => {
    const r = await step(gpu!, c.shape, c.positions, 7);
    assert.deepEqual(r.batched.q, r.perRow.q, "q after ropeRows");
    assert.deepEqual(r.batched.k, r.perRow.k, "k after ropeRows");
    assert.deepEqual(r.batched.att, r.perRow.att, "attention");
    const cpu = await step(new CpuBackend(), c.shape, c.positions, 7);
    assertClose(r.batched.q, cpu.batched.q, `${c.what}: q`);
    assertClose(r.batched.att, cpu.batched.att, `${c.what}: attention`, 1e-4, 1e-5);
  });
}

test("WebGPU batched ops refuse caches of different pools, or of no pool", { skip: !gpu && reason }, async () => {
  const b = gpu!;
  const a = b.kvPool(1, 1, 8, 4, 2)!, other = b.kvPool(1, 1, 8, 4, 2)!;
  const k = b.activation(2, 8), v = b.activation(2, 8);
  assert.throws(() => b.kvWriteRows([a.take(), other.take()], 0, k, v, [0, 0]), /one kvPool/);
  assert.throws(() => b.kvWriteRows([a.take(), b.kvCache(1, 1, 8, 4)], 0, k, v, [0, 0]), /one kvPool/);
  assert.throws(() => b.kvWriteRows([], 0, k, v, [0]), /0 caches and 1 positions/);
  assert.throws(() => b.kvWriteRows([other.take()], 0, k, v, [4]), /outside its cache/);
});

test("a KV pool hands out each slot once and takes back only its own caches", () => {
  const b = new CpuBackend();
  const pool = b.kvPool(1, 1, 4, 8, 2);
  const x = pool.take(), y = pool.take();
  assert.notEqual(x, y);
  assert.equal(pool.available, 0);
  assert.throws(() => pool.take(), /all 2 slots are taken/);
  pool.release(x);
  assert.throws(() => pool.release(x), /already given back/);
  assert.throws(() => pool.release(b.kvCache(1, 1, 4, 8)), /not one of the pool's/);
  assert.throws(() => pool.release(b.kvPool(1, 1, 4, 8, 1).take()), /not one of the pool's/);
  assert.equal(pool.take(), x, "a slot's cache is made once and reused");
  pool.release(y);
  assert.equal(pool.available, 1);
});

test("WebGPU pickRows gives each row the token argmax or sample gives that row alone", { skip: !gpu && reason }, async () => {
  const b = gpu!;
  const rng = new Rng(11);
  const rows = 5, vocab = 333; // rows not at aligned offsets: pickRows must not need row views
  const data = randoms(rows * vocab, rng, 4);
  data[2 * vocab + 17] = 50; // a clear winner in row 2
  const logits = tensorOf(b, rows, vocab, data);
  const singles = Array.from({ length: rows }, (_, r) => tensorOf(b, 1, vocab, data.subarray(r * vocab, (r + 1) * vocab)));
  const params = { temperature: 0.8, topK: 40, topP: 0.9, minP: 0 };
  const picks = [undefined, { params, uniform: 0.3 }, undefined, { params: { ...params, topK: 0, topP: 1 }, uniform: 0.77 }, { params, uniform: 0.01 }];
  const got = await b.pickRows(logits, picks);
  const want: number[] = [];
  for (let r = 0; r < rows; r++) {
    const p = picks[r];
    want.push(p ? await b.sample(singles[r]!, p.params, p.uniform) : await b.argmax(singles[r]!));
  }
  assert.deepEqual(got, want);
  assert.equal(got[2], 17);
  assert.rejects(() => b.pickRows(logits, new Array(6).fill(undefined)), /6 picks for 5 rows/);
});
