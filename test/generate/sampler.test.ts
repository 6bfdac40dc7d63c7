import { test } from "node:test";
import assert from "node:assert/strict";
import { Sampler, argmax } from "../../src/generate/sampler.js";

const logits = () => Float32Array.from([1, 3, 2, 0.5, 2.9, -1]);

test("temperature 0 and top-k 1 both pick the argmax", () => {
  assert.equal(new Sampler({ temperature: 0 }).sample(logits()), 1);
  for (let seed = 0; seed < 20; seed++) assert.equal(new Sampler({ temperature: 1, topK: 1, seed }).sample(logits()), 1);
  assert.equal(argmax(Float32Array.from([2, 5, 5])), 1, "ties go to the first index");
});

test("the same seed gives the same draws; different seeds differ", () => {
  const draw = (seed: number) => {
    const s = new Sampler({ temperature: 1, seed });
    return Array.from({ length: 50 }, () => s.sample(logits()));
  };
  assert.deepEqual(draw(7), draw(7));
  assert.notDeepEqual(draw(7), draw(8));
});

test("sampling frequencies follow softmax(logits / T)", () => {
  const T = 0.7;
  const s = new Sampler({ temperature: T, seed: 1 });
  const counts = new Float64Array(6);
  const n = 40000;
  for (let i = 0; i < n; i++) counts[s.sample(logits())]!++;
  const e = Array.from(logits(), (l) => Math.exp(l / T));
  const z = e.reduce((a, b) => a + b, 0);
  for (let i = 0; i < 6; i++) {
    const p = e[i]! / z;
    const sd = Math.sqrt((p * (1 - p)) / n);
    assert.ok(Math.abs(counts[i]! / n - p) < 5 * sd + 1e-9, `token ${i}: ${counts[i]! / n} vs ${p}`);
  }
});

test("top-p keeps the smallest prefix reaching p; min-p drops tokens below p * max", () => {
  // probabilities at T=1 of [1,3,2,0.5,2.9,-1]: token 1 and 4 together are ~0.68
  const s = new Sampler({ temperature: 1, topP: 0.6, seed: 3 });
  const seen = new Set(Array.from({ length: 2000 }, () => s.sample(logits())));
  assert.deepEqual([...seen].sort(), [1, 4]);
  const m = new Sampler({ temperature: 1, minP: Math.exp(-1.05), seed: 3 }); // keeps logits >= 3 - 1.05
  const seenM = new Set(Array.from({ length: 2000 }, () => m.sample(logits())));
  assert.deepEqual([...seenM].sort(), [1, 2, 4]);
});

test("repetition penalty divides positive and multiplies negative logits of seen tokens", () => {
  const l = logits();
  new Sampler({ temperature: 0, repetitionPenalty: 2 }).sample(l, [1, 5, 1]);
  assert.deepEqual([...l], [1, 1.5, 2, 0.5, Math.fround(2.9), -2]);
});

test("out-of-range options are refused by name", () => {
  assert.throws(() => new Sampler({ topP: 1.5 }), /topP/);
  assert.throws(() => new Sampler({ temperature: -1 }), /temperature/);
  assert.throws(() => new Sampler({ repetitionPenalty: 0 }), /repetitionPenalty/);
});

test("the kept set equals a brute-force sort-and-cut on random logits (top-k, min-p, top-p, ties)", async () => {
  const { keptTokens } = await import("../../src/generate/sampler.js");
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let trial = 0; trial < 200; trial++) {
    const n = 50 + Math.floor(rand() * 400);
    // a coarse grid makes ties common
    const logits = Float32Array.from({ length: n }, () => Math.round(rand() * 40) / 4 - 5);
    const o = {
      temperature: 0.5 + rand(),
      topK: rand() < 0.5 ? Math.floor(rand() * n) : 0,
      topP: rand() < 0.7 ? rand() : 1,
      minP: rand() < 0.3 ? rand() * 0.2 : 0,
    };
    const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
    let ids = o.topK > 0 && o.topK < n ? order.slice(0, o.topK) : order;
    const max = logits[ids[0]!]!;
    let w = ids.map((id) => Math.exp((logits[id]! - max) / o.temperature));
    const total = w.reduce((a, b) => a + b, 0);
    ids = ids.filter((_, i) => w[i]! >= o.minP);
    w = w.filter((x) => x >= o.minP);
    if (o.topP < 1) {
      let acc = 0;
      let keep = 0;
      while (keep < w.length && acc < o.topP * total) acc += w[keep++]!;
      ids = ids.slice(0, keep);
    }
    const got = keptTokens(logits, o);
    assert.deepEqual([...got.ids].sort((a, b) => a - b), [...ids].sort((a, b) => a - b), JSON.stringify(o));
  }
});

test("drawKept walks the kept tokens in ascending id order to u * total weight", async () => {
  const { drawKept } = await import("../../src/generate/sampler.js");
  // id order: 2 (w 2), 5 (w 1), 9 (w 1); total 4, so 2 owns u in [0, 0.5], 5 (0.5, 0.75], 9 (0.75, 1)
  const ids = Int32Array.from([5, 2, 9]);
  const w = Float64Array.from([1, 2, 1]);
  const cases: [number, number][] = [[0, 2], [0.49, 2], [0.5, 2], [0.51, 5], [0.75, 5], [0.76, 9], [0.999, 9]];
  for (const [u, id] of cases) assert.equal(drawKept(ids, w, u), id, `u = ${u}`);
  assert.throws(() => drawKept(new Int32Array(0), new Float64Array(0), 0.5), /no token/);
});

test("top-p 0 keeps only the most likely token (as transformers' min_tokens_to_keep = 1)", () => {
  for (let seed = 0; seed < 20; seed++) assert.equal(new Sampler({ temperature: 1, topP: 0, seed }).sample(logits()), 1);
});
