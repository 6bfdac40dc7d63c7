/**
 * TokenButler's labeled local-window variant (`tokenbutler:keep=F,window=S[,anchors=A]`, selection.ts
 * `pinnedSplit`/`selectPinnedTopK`): the kept set against a brute-force reference (anchors ∪ window ∪ the
 * best of the rest by predicted logit, K_i in all), window = 0 equal to v1 bit for bit, keep = 1 equal to
 * dense, window = 1 equal to StreamingLLM at the same keep, and the parameter errors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../../../src/load.js";
import type { Model } from "../../../src/model/model.js";
import type { KVCache } from "../../../src/backend/backend.js";
import { kvStoreFactory } from "../../../src/kv/spec.js";
import { KvSelection, SINKS, keepBudget, pinnedSplit, selectPinnedTopK, selectTopK } from "../../../src/kv/selection.js";
import { ButlerPolicy, TokenButlerStore } from "../../../src/kv/tokenbutler/tokenbutler-store.js";
import type { LayerKv } from "../../../src/kv/host-attention.js";
import { ROOT } from "../../paths.js";

const BASE = join(ROOT, "models/frugal-ar-base");
const TEXT = "The kernel is the core of the operating system. It manages memory, processes and devices, and it schedules the work of every program that runs on the machine, one slice of time after another.";

async function run(model: Model, cache: KVCache, ids: number[], prompt: number): Promise<Float32Array[]> {
  const net = model.network;
  const rows = [Float32Array.from(await model.backend.read(net.forward(Int32Array.from(ids.slice(0, prompt)), 0, cache)))];
  for (let t = prompt; t < ids.length; t++) rows.push(Float32Array.from(await model.backend.read(net.forward(Int32Array.of(ids[t]!), t, cache))));
  return rows;
}

/**
 * The set by definition, enumerated: the sinks, [0, a), [n − w, n), then repeatedly the best remaining
 * position of [a, n − w) (highest score, the lower position on ties) until K_i are pinned or chosen.
 */
function reference(score: ArrayLike<number>, n: number, k: number, anchors: number, share: number): number[] {
  const a = Math.min(anchors, k);
  const w = Math.min(Math.floor(share * k), k - a);
  const kept = new Set<number>();
  for (let t = 0; t < Math.min(SINKS, n); t++) kept.add(t);
  for (let t = 0; t < a; t++) kept.add(t);
  for (let t = n - w; t < n; t++) kept.add(t);
  const chosen = new Set<number>();
  for (let j = 0; j < k - a - w; j++) {
    let best = -1;
    for (let t = a; t < n - w; t++) if (!chosen.has(t) && (best < 0 || score[t]! > score[best]!)) best = t;
    if (best < 0) break;
    chosen.add(best);
    kept.add(best);
  }
  return [...kept].sort((x, y) => x - y);
}

const list = (sel: KvSelection, h: number) => Array.from(sel.positions.subarray(h * sel.stride, h * sel.stride + sel.counts[h]!));

test("pinnedSplit: anchors and window fit inside K_i", () => {
  assert.deepEqual(pinnedSplit(100, 4, 0.5), { anchors: 4, window: 50 });
  assert.deepEqual(pinnedSplit(100, 8, 1), { anchors: 8, window: 92 });
  assert.deepEqual(pinnedSplit(3, 4, 0.5), { anchors: 3, window: 0 });
  assert.deepEqual(pinnedSplit(7, 4, 0.6), { anchors: 4, window: 3 });
  assert.deepEqual(pinnedSplit(10, 4, 0), { anchors: 4, window: 0 });
});

test("selectPinnedTopK equals the brute-force set on hand-built and random scores (ties, negatives, a >= 4)", () => {
  const order = new Int32Array(64);
  const sel = new KvSelection(1, 64);
  // hand-built: ties at the boundary go to the lower position; pinned positions ignore their scores
  const hand = [9, 9, 9, 9, 9, -1, 5, 5, 5, 2, 7, -3, 5, 0, 1, 1];
  for (const [k, anchors, share] of [[8, 4, 0.5], [8, 6, 0.25], [12, 4, 0.5], [5, 4, 0.5], [3, 4, 0.5], [10, 4, 1], [10, 8, 0.5]] as const) {
    const { anchors: a, window: w } = pinnedSplit(k, anchors, share);
    selectPinnedTopK(sel, 0, Float64Array.from(hand), hand.length, k, a, w, order);
    const got = list(sel, 0);
    assert.deepEqual(got, reference(hand, hand.length, k, anchors, share), `k ${k} anchors ${anchors} share ${share}`);
    assert.equal(got.length, Math.max(k, SINKS));
  }
  // the hand case spelled out: k 8, 4 anchors, window 4 → [0,4) ∪ [12,16), no room for the rest
  selectPinnedTopK(sel, 0, Float64Array.from(hand), 16, 8, 4, 4, order);
  assert.deepEqual(list(sel, 0), [0, 1, 2, 3, 12, 13, 14, 15]);
  // k 10, 4 anchors, window 2: the 4 best of [4, 14) are 4 (9), 10 (7), then the 5s at 6 and 7 (8's and 12's lose the tie)
  selectPinnedTopK(sel, 0, Float64Array.from(hand), 16, 10, 4, 2, order);
  assert.deepEqual(list(sel, 0), [0, 1, 2, 3, 4, 6, 7, 10, 14, 15]);
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let trial = 0; trial < 300; trial++) {
    const n = 6 + Math.floor(rnd() * 58);
    const score = Float64Array.from({ length: n }, () => Math.round((rnd() - 0.5) * 12)); // many ties
    const keep = 0.1 + 0.85 * rnd(), share = [0, 0.25, 0.5, 0.75, 1][trial % 5]!, anchors = 4 + (trial % 3) * 2;
    const k = keepBudget(n, keep);
    if (k >= n) continue;
    const { anchors: a, window: w } = pinnedSplit(k, anchors, share);
    selectPinnedTopK(sel, 0, score, n, k, a, w, order);
    assert.deepEqual(list(sel, 0), reference(score, n, k, anchors, share), `trial ${trial}: n ${n} k ${k} anchors ${anchors} share ${share}`);
  }
});

test("ButlerPolicy with a window keeps the brute-force set of the predictor's own logits at every layer, head and position", async () => {
  const model = await loadModel(BASE);
  try {
    const net = model.network;
    const ids = model.tokenizer.encode(TEXT, { addSpecialTokens: true });
    const store = kvStoreFactory("tokenbutler:keep=0.5")(net.kvContext(64)) as TokenButlerStore;
    await run(model, store, ids, ids.length); // one pass: the predictor holds a query for every position
    const H = net.config.numHeads, N = net.config.numLayers;
    const kv: LayerKv = { k: new Float32Array(0), v: new Float32Array(0), width: 0, headDim: 0 }; // the policy reads only the predictor
    const score = new Float64Array(64);
    let checked = 0;
    for (const [keep, share, anchors] of [[0.5, 0.5, 4], [0.3, 0.25, 8], [0.5, 1, 4], [0.7, 0.5, 6]] as const) {
      const policy = new ButlerPolicy(keep, store.predictor, share, anchors);
      const v1 = new ButlerPolicy(keep, store.predictor);
      const sel = new KvSelection(H, 64), plain = new KvSelection(H, 64);
      for (let pos = 8; pos < ids.length; pos++) {
        const n = pos + 1, k = keepBudget(n, keep);
        for (let l = 1; l < N; l++) {
          assert.equal(policy.select(l, pos, new Float32Array(0), kv, sel), k < n);
          v1.select(l, pos, new Float32Array(0), kv, plain);
          if (k >= n) continue;
          for (let h = 0; h < H; h++) {
            store.predictor.scores(l, h, pos, score);
            assert.deepEqual(list(sel, h), reference(score, n, k, anchors, share), `keep ${keep} window ${share} anchors ${anchors} pos ${pos} layer ${l} head ${h}`);
            // window = 0 is v1: selectTopK on the same logits
            const ref = new KvSelection(1, 64);
            selectTopK(ref, 0, score, n, k, new Int32Array(64));
            assert.deepEqual(list(plain, h), list(ref, 0));
            checked++;
          }
        }
      }
    }
    assert.ok(checked > 1000, `${checked} lists checked`);
  } finally {
    model.dispose();
  }
});

test("tokenbutler window: window=0 is v1 bit for bit, keep=1 is dense bit for bit, window=1 is StreamingLLM at the same keep", async () => {
  const model = await loadModel(BASE);
  try {
    const net = model.network;
    const ids = model.tokenizer.encode(TEXT, { addSpecialTokens: true });
    const PROMPT = 12; // K_i > 4 from the first decode step: below, StreamingLLM keeps the current position beyond K_i
    const dense = await run(model, net.newCache(64), ids, PROMPT);
    const v1 = await run(model, kvStoreFactory("tokenbutler:keep=0.4")(net.kvContext(64)), ids, PROMPT);
    const zero = await run(model, kvStoreFactory("tokenbutler:keep=0.4,window=0")(net.kvContext(64)), ids, PROMPT);
    for (let r = 0; r < v1.length; r++) assert.deepEqual(zero[r], v1[r], `window=0 step ${r}`);
    for (const spec of ["tokenbutler:keep=1,window=0.5", "tokenbutler:keep=1,window=0.5,anchors=8"]) {
      const full = await run(model, kvStoreFactory(spec)(net.kvContext(64)), ids, PROMPT);
      for (let r = 0; r < dense.length; r++) assert.deepEqual(full[r], dense[r], `${spec} step ${r}`);
    }
    const win = kvStoreFactory("tokenbutler:keep=0.4,window=0.5")(net.kvContext(64)) as TokenButlerStore;
    const rows = await run(model, win, ids, PROMPT);
    assert.deepEqual(rows[0], dense[0], "the prefill is dense");
    assert.ok(rows.some((row, r) => row.some((x, i) => x !== dense[r]![i])));
    assert.ok(rows.some((row, r) => row.some((x, i) => x !== v1[r]![i])), "the window changes the selection");
    // the window takes the whole budget but the anchors: sinks + the most recent K_i − 4 = StreamingLLM's set
    const all = await run(model, kvStoreFactory("tokenbutler:keep=0.4,window=1")(net.kvContext(64)), ids, PROMPT);
    const streaming = await run(model, kvStoreFactory("streaming:keep=0.4")(net.kvContext(64)), ids, PROMPT);
    for (let r = 0; r < all.length; r++) assert.deepEqual(all[r], streaming[r], `window=1 vs streaming step ${r}`);
    // K_i attended per head at most (v1 attends up to K_i + 4)
    assert.ok(win.usage.attended < win.usage.visible);
  } finally {
    model.dispose();
  }
});

test("tokenbutler window parameters: range and anchors errors name the spec and the parameter", () => {
  assert.throws(() => kvStoreFactory("tokenbutler:keep=0.5,window=1.5"), /tokenbutler:keep=0.5,window=1.5: window=1.5 must be in \[0, 1\]/);
  assert.throws(() => kvStoreFactory("tokenbutler:keep=0.5,window=-0.1"), /window=-0.1 must be in \[0, 1\]/);
  assert.throws(() => kvStoreFactory("tokenbutler:keep=0.5,window=0.5,anchors=2"), /anchors=2 must be an integer >= 4/);
  assert.throws(() => kvStoreFactory("tokenbutler:keep=0.5,anchors=8"), /anchors=8 needs window > 0/);
});
