/**
 * xKV / per-layer SVD on WebGPU (SwiftShader in CI): the device kernel equals the host's storage-mode loop
 * (src/kv/xkv/xkv-attention.ts) on the same factors, the identity factorisation equals dense attention,
 * and on frugal-ar-small the WebGPU store at full rank equals dense, at reduced rank follows the CPU
 * store's logits, gives dense's first token, and reports the CPU store's bytes while holding only the
 * factors and the rows after the prompt on the device.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { KVCache } from "../../src/backend/backend.js";
import { kvStoreFactory } from "../../src/kv/spec.js";
import { settleKv, type KvStore } from "../../src/kv/store.js";
import { compressPrompt, type XkvPrompt } from "../../src/kv/xkv/xkv-factors.js";
import { attendCompressed } from "../../src/kv/xkv/xkv-attention.js";
import { XkvDeviceStore } from "../../src/kv/xkv/xkv-device-store.js";
import { XkvStore } from "../../src/kv/xkv/xkv-store.js";
import { ropeCosSin } from "../../src/model/config.js";
import { loadModel } from "../../src/load.js";
import type { Model } from "../../src/model/model.js";
import { ROOT, STORIES } from "../paths.js";
import { Rng, openOrSkip, randoms, tensorOf } from "../backend/webgpu/helpers.js";

const { gpu, reason } = await openOrSkip();
after(() => gpu?.dispose());

const SMALL = join(ROOT, "models/frugal-ar-small");

/** max |a − b| / max |b| */
function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

function inverseFrequencies(d: number): Float64Array {
  return Float64Array.from({ length: d / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / d));
}

test("device xKV attention = the host storage-mode loop on the same factors (groups of 2 and a short last one, T not a tile multiple, r_v > 64, several rows, splits of several tiles, recent rows over a tile)", { skip: !gpu && reason }, async () => {
  const g = gpu!;
  const rng = new Rng(5);
  const shapes = [
    // three prompt splits of one partial tile each; the latent z and B_V's rank loop past 64
    { layers: 3, kv: 2, heads: 6, d: 32, T: 150, R: 6, group: 2, rankK: 9, rankV: 70, ranks: [[9, 70], [5, 35]], runs: [[1, 5], [2, 4], [1, 0]] },
    // 8 rows x 32 kv heads leave 4 prompt splits of 150 positions (tiles of 64, 64, 22); 70 recent rows: 2 recent splits
    { layers: 1, kv: 32, heads: 32, d: 8, T: 600, R: 70, group: 1, rankK: 5, rankV: 7, ranks: [[5, 7]], runs: [[8, 62], [1, 69]] },
  ] as const;
  let worst = 0;
  for (const sh of shapes) {
    const { layers: LAYERS, kv: KV, heads: HEADS, d: D, T, R } = sh;
    const WIDTH = KV * D, CAP = T + R + 4;
    const kPre = Array.from({ length: LAYERS }, () => randoms(T * WIDTH, rng, 2));
    const v = Array.from({ length: LAYERS }, () => randoms(T * WIDTH, rng, 2));
    const prompt = compressPrompt({ layers: LAYERS, kvHeads: KV, headDim: D }, { group: sh.group, rankK: sh.rankK, rankV: sh.rankV }, T, kPre, v);
    assert.deepEqual(prompt.groups.map((x) => [x.k.rank, x.v.rank]), sh.ranks);
    const inv = inverseFrequencies(D);
    const { cos, sin } = ropeCosSin(inv, CAP);
    const ops = g.xkvOps;
    const st = ops.state(LAYERS, KV, D, CAP, g.ropeTable(inv, CAP));
    ops.begin(st);
    const recent = ops.load(st, prompt);
    const rk = Array.from({ length: LAYERS }, () => randoms(R * WIDTH, rng, 2));
    const rv = Array.from({ length: LAYERS }, () => randoms(R * WIDTH, rng, 2));
    for (let l = 0; l < LAYERS; l++) g.kvWrite(recent, l, tensorOf(g, R, WIDTH, rk[l]!), tensorOf(g, R, WIDTH, rv[l]!), 0);
    for (const [rows, after] of sh.runs) {
      const pos0 = T + after;
      for (let l = 0; l < LAYERS; l++) {
        const q = randoms(rows * HEADS * D, rng, 1);
        const want = new Float32Array(rows * HEADS * D);
        attendCompressed({ prompt, layer: l, kvHeads: KV, headDim: D, rope: { cos, sin, half: D / 2 }, recentK: rk[l]!, recentV: rv[l]! }, q, rows, pos0, HEADS, want);
        const out = g.activation(rows, HEADS * D);
        ops.attend(out, tensorOf(g, rows, HEADS * D, q), st, l, pos0, HEADS);
        const diff = maxRelDiff(await g.read(out), want);
        worst = Math.max(worst, diff);
        assert.ok(diff < 1e-5, `${KV} kv heads of ${D}: rows ${rows} at ${pos0}, layer ${l}: ${diff}`);
      }
    }
    ops.release(st);
    assert.equal(ops.residentBytes(st), 0);
  }
  console.log(`# device vs host xKV attention: max relative difference ${worst.toExponential(2)}`);
});

test("identity factorisation (A = X, B = I) through the device kernel = dense attention on WebGPU (spec 7.1.3)", { skip: !gpu && reason }, async () => {
  const g = gpu!;
  const rng = new Rng(9);
  const LAYERS = 2, KV = 2, HEADS = 4, D = 16, T = 70, CAP = 80, WIDTH = KV * D, DG = LAYERS * WIDTH;
  const kPre = Array.from({ length: LAYERS }, () => randoms(T * WIDTH, rng, 2));
  const v = Array.from({ length: LAYERS }, () => randoms(T * WIDTH, rng, 2));
  const stack = (xs: Float32Array[]) => {
    const a = new Float32Array(T * DG);
    for (let t = 0; t < T; t++) xs.forEach((x, j) => a.set(x.subarray(t * WIDTH, (t + 1) * WIDTH), t * DG + j * WIDTH));
    return a;
  };
  const eye = Array.from({ length: LAYERS }, (_, j) => Array.from({ length: KV }, (_, h) => {
    const blk = new Float32Array(DG * D);
    for (let i = 0; i < D; i++) blk[(j * WIDTH + h * D + i) * D + i] = 1;
    return blk;
  }));
  const prompt: XkvPrompt = {
    tokens: T,
    groupOf: new Int32Array(LAYERS),
    groups: [{ firstLayer: 0, size: LAYERS, k: { rank: DG, a: stack(kPre), b: eye }, v: { rank: DG, a: stack(v), b: eye } }],
  };
  const inv = inverseFrequencies(D);
  const table = g.ropeTable(inv, CAP);
  const ops = g.xkvOps;
  const st = ops.state(LAYERS, KV, D, CAP, table);
  ops.begin(st);
  const recent = ops.load(st, prompt);
  const dense = g.kvCache(LAYERS, KV, D, CAP);
  const R = 3;
  for (let l = 0; l < LAYERS; l++) {
    const k = tensorOf(g, T, WIDTH, kPre[l]!);
    g.rope(k, D, 0, table);
    g.kvWrite(dense, l, k, tensorOf(g, T, WIDTH, v[l]!), 0);
    const rk = tensorOf(g, R, WIDTH, randoms(R * WIDTH, rng, 2)), rv = tensorOf(g, R, WIDTH, randoms(R * WIDTH, rng, 2));
    g.kvWrite(dense, l, rk, rv, T);
    g.kvWrite(recent, l, rk, rv, 0);
  }
  for (let l = 0; l < LAYERS; l++) {
    const q = tensorOf(g, 1, HEADS * D, randoms(HEADS * D, rng, 1));
    const want = g.activation(1, HEADS * D), got = g.activation(1, HEADS * D);
    g.attention(want, q, dense, l, T + R - 1, HEADS);
    ops.attend(got, q, st, l, T + R - 1, HEADS);
    const diff = maxRelDiff(await g.read(got), await g.read(want));
    assert.ok(diff < 1e-6, `layer ${l}: ${diff}`);
  }
  ops.release(st);
});

/** Logits of a prefill of `prompt` tokens (then settleKv), then one row per teacher-forced decode step. */
async function run(model: Model, cache: KVCache, ids: number[], prompt: number): Promise<Float32Array[]> {
  const net = model.network;
  const rows = [Float32Array.from(await model.backend.read(net.forward(Int32Array.from(ids.slice(0, prompt)), 0, cache)))];
  await settleKv(cache);
  for (let t = prompt; t < ids.length; t++) rows.push(Float32Array.from(await model.backend.read(net.forward(Int32Array.of(ids[t]!), t, cache))));
  return rows;
}

const TEXT = "The KV cache keeps the keys and values of every position, so decoding reads all of them at each step; compressing them";

test("frugal-ar-small on WebGPU: full-rank xKV = dense, reduced-rank xKV/SVD follow the CPU store, first token dense's, bytes the CPU store's", { skip: !gpu && reason }, async () => {
  const cpu = await loadModel(SMALL);
  const dev = await loadModel(SMALL, { device: "webgpu" });
  try {
    const ids = cpu.tokenizer.encode(TEXT, { addSpecialTokens: true });
    const P = 20, CAP = 64;
    assert.ok(ids.length >= P + 8, `${ids.length} tokens`);
    const c = cpu.config;
    const rowBytes = c.numLayers * 2 * c.numKvHeads * c.headDim * 4;
    const dense = await run(dev, dev.network.newCache(CAP), ids, P);
    const report: string[] = [];
    // full rank (clamped to min(T, D) = T): the factors reproduce the prompt up to f32 rounding of A·B
    for (const G of [1, 2, 4]) {
      const spec = `xkv:group=${G},rankK=512,rankV=512`;
      const rows = await run(dev, kvStoreFactory(spec)(dev.network.kvContext(CAP)), ids, P);
      assert.deepEqual(rows[0], dense[0], `${spec}: the first generated token's logits are dense's`);
      const diff = Math.max(...rows.map((r, i) => maxRelDiff(r, dense[i]!)));
      report.push(`${spec} vs dense ${diff.toExponential(2)}`);
      assert.ok(diff < 1e-4, `${spec}: ${diff}`);
    }
    for (const spec of ["svd:rankK=3,rankV=5", "xkv:group=2,rankK=6,rankV=9", "xkv:group=4,rankK=10,rankV=14"]) {
      const gs = kvStoreFactory(spec)(dev.network.kvContext(CAP)) as XkvDeviceStore;
      const cs = kvStoreFactory(spec)(cpu.network.kvContext(CAP)) as XkvStore;
      assert.ok(gs instanceof XkvDeviceStore && cs instanceof XkvStore);
      const got = await run(dev, gs, ids, P);
      const want = await run(cpu, cs, ids, P);
      assert.deepEqual(got[0], dense[0], `${spec}: first generated token's logits`);
      assert.ok(got.slice(1).some((r, i) => maxRelDiff(r, dense[i + 1]!) > 1e-3), `${spec}: reduced rank changes decode logits`);
      const diff = Math.max(...got.map((r, i) => maxRelDiff(r, want[i]!)));
      report.push(`${spec} WebGPU vs CPU ${diff.toExponential(2)}`);
      assert.ok(diff < 1e-4, `${spec}: WebGPU vs CPU logits ${diff}`);
      assert.equal(gs.bytes(), cs.bytes(), `${spec}: bytes`);
      assert.deepEqual(gs.compressed!.groups.map((x) => [x.k.rank, x.v.rank]), cs.compressed!.groups.map((x) => [x.k.rank, x.v.rank]));
      // the device holds the factors and capacity − T recent rows; the exact prompt cache is gone
      const factors = gs.bytes() - (ids.length - P) * rowBytes;
      assert.ok(gs.deviceBytes() <= factors + (CAP - P) * rowBytes + 16 * (c.numLayers * 4 + 2 * gs.compressed!.groups.length), `${spec}: device bytes ${gs.deviceBytes()}`);
      assert.ok(gs.deviceBytes() < CAP * rowBytes, `${spec}: less than the exact cache`);
      gs.release();
    }
    console.log(`# ${report.join("; ")}`);
  } finally {
    cpu.dispose();
    dev.dispose();
  }
});

test("xKV on WebGPU: a decode step without settleKv is refused with the reason; reference=1 is CPU-only", { skip: !gpu && reason }, async () => {
  const dev = await loadModel(SMALL, { device: "webgpu" });
  const net = dev.network;
  const store = kvStoreFactory("svd:rankK=2,rankV=2")(net.kvContext(32)) as KvStore;
  await dev.backend.read(net.forward(Int32Array.of(0, 5, 9), 0, store));
  assert.throws(() => net.forward(Int32Array.of(7), 3, store), /before the prompt was compressed; await settleKv/);
  assert.throws(() => kvStoreFactory("svd:rankK=2,rankV=2,reference=1")(net.kvContext(32)), /reference=1 .* CPU backend only/);
  await settleKv(store);
  await dev.backend.read(net.forward(Int32Array.of(7), 3, store));
  assert.equal(store.length, 4);
  dev.dispose();
});

test("Model.generate with xKV on WebGPU (settle between the prefill and the pipelined decode, stories260K): full rank gives dense's greedy tokens, reduced rank dense's first", { skip: !gpu && reason }, async () => {
  const gm = await loadModel(STORIES, { device: "webgpu" });
  try {
    const tokens = async () => {
      const ids: number[] = [];
      for await (const p of gm.generate("Once upon a time, there was a little girl named Lily. She", { maxTokens: 32, temperature: 0, stopAtEos: false })) if (p.tokenId !== undefined) ids.push(p.tokenId);
      return ids;
    };
    const want = await tokens();
    const width = gm.config.numKvHeads * gm.config.headDim;
    gm.setKv(`xkv:group=2,rankK=${2 * width},rankV=${2 * width}`);
    assert.deepEqual(await tokens(), want, "full-rank xKV-2");
    gm.setKv("svd:rankK=1,rankV=1");
    const low = await tokens();
    assert.equal(low[0], want[0], "reduced rank: the first token");
    assert.equal(low.length, want.length);
  } finally {
    gm.dispose();
  }
});
