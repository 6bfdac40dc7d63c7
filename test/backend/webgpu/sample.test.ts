/**
 * Sampling on the GPU against the CPU sampler: the kept set equals keptTokens exactly, draws equal
 * drawKept for the same u except where u * total lands within f32 rounding of a cumulative boundary
 * (counted and bounded), and stories260K generates the same tokens on both backends with a seed.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { SampleParams } from "../../../src/backend/backend.js";
import { drawKept, keptTokens } from "../../../src/generate/sampler.js";
import { loadModel } from "../../../src/load.js";
import type { Model } from "../../../src/model/model.js";
import { Rng, openOrSkip, tensorOf } from "./helpers.js";

const { gpu, reason } = await openOrSkip();
const skip = !gpu && reason;
after(() => gpu?.dispose());

/** Logits on a 0.1 grid over [-10, 10]: many exact ties, distinct values well apart. */
function tiedLogits(n: number, rng: Rng): Float32Array {
  return Float32Array.from({ length: n }, () => Math.round(rng.next() * 200) / 10 - 10);
}

const optionSets: Record<string, SampleParams> = {
  "temperature only": { temperature: 0.8, topK: 0, topP: 1, minP: 0 },
  "top-k 40": { temperature: 1, topK: 40, topP: 1, minP: 0 },
  "top-p 0.9": { temperature: 0.7, topK: 0, topP: 0.9, minP: 0 },
  "min-p 0.05": { temperature: 1.2, topK: 0, topP: 1, minP: 0.05 },
  "top-k 500, top-p 0.5, min-p 0.01": { temperature: 1.3, topK: 500, topP: 0.5, minP: 0.01 },
  "top-k 300, top-p 0.95": { temperature: 0.9, topK: 300, topP: 0.95, minP: 0 },
};

/** The kept ids of keptTokens in ascending order. */
function cpuKept(logits: Float32Array, o: SampleParams): { ids: Int32Array; w: Float64Array; sorted: number[] } {
  const { ids, w } = keptTokens(logits, o);
  return { ids, w, sorted: [...ids].sort((a, b) => a - b) };
}

/**
 * True when u * total lies within 1e-5 (relative) of a cumulative sum of the kept weights in id order:
 * there f32 and f64 accumulation may pick neighbouring tokens.
 */
function nearBoundary(ids: Int32Array, w: Float64Array, u: number): boolean {
  const order = Array.from(ids.keys()).sort((a, b) => ids[a]! - ids[b]!);
  let total = 0;
  for (const x of w) total += x;
  const goal = u * total;
  let acc = 0;
  for (const j of order) {
    acc += w[j]!;
    if (Math.abs(acc - goal) <= 1e-5 * total) return true;
  }
  return goal <= 1e-5 * total;
}

for (const n of [1000, 50000]) {
  test(`vocab ${n}: the GPU's kept set equals keptTokens for every option set`, { skip }, async () => {
    const rng = new Rng(n);
    let tieCutsTopK = 0;
    for (const [name, o] of Object.entries(optionSets)) {
      for (let row = 0; row < 2; row++) {
        const logits = tiedLogits(n, rng);
        const t = tensorOf(gpu!, 1, n, logits);
        const { kept } = await gpu!.sampleKept(t, o, 0.5);
        const got: number[] = [];
        kept.forEach((v, i) => v && got.push(i));
        const want = cpuKept(logits, o).sorted;
        assert.deepEqual(got, want, `${name}, row ${row}: kept ${got.length} tokens, keptTokens ${want.length}`);
        if (o.topK > 0) {
          // the k-th largest value is tied beyond the cut: the lowest ids among the ties must be the ones kept
          const kth = [...logits].sort((a, b) => b - a)[o.topK - 1]!;
          const tied = logits.filter((l) => l === kth).length;
          const keptTied = want.filter((i) => logits[i] === kth).length;
          if (o.topP === 1 && o.minP === 0 && keptTied < tied) tieCutsTopK++;
        }
      }
    }
    assert.ok(tieCutsTopK > 0, "no top-k cut fell inside a run of equal logits; the tie rule went untested");
  });

  test(`vocab ${n}: GPU draws equal drawKept for the same u, except at rounding boundaries`, { skip }, async (t0) => {
    const rng = new Rng(n + 1);
    const drawsPerRow = n > 10000 ? 6 : 20;
    let draws = 0;
    let boundary = 0;
    for (const [name, o] of Object.entries(optionSets)) {
      const logits = tiedLogits(n, rng);
      const t = tensorOf(gpu!, 1, n, logits);
      const { ids, w } = cpuKept(logits, o);
      // u = 0 and u near 1 pin the first and last kept ids; f32-exact u so both sides draw the same number
      const us = [0, Math.fround(1 - 2 ** -20), ...Array.from({ length: drawsPerRow - 2 }, () => Math.fround(rng.next()))];
      for (const u of us) {
        const got = await gpu!.sample(t, o, u);
        const want = drawKept(ids, w, u);
        draws++;
        if (got === want) continue;
        // a mismatch is allowed only where u * total sits on a cumulative boundary, and then only to a
        // neighbouring kept token
        assert.ok(nearBoundary(ids, w, u), `${name}, u = ${u}: GPU drew ${got}, CPU ${want}, not near a boundary`);
        const sorted = [...ids].sort((a, b) => a - b);
        assert.ok(Math.abs(sorted.indexOf(got) - sorted.indexOf(want)) === 1, `${name}, u = ${u}: ${got} is not next to ${want}`);
        boundary++;
      }
    }
    t0.diagnostic(`${draws} draws, ${boundary} differed at a rounding boundary`);
    assert.ok(boundary <= draws / 20, `${boundary} of ${draws} draws differed at rounding boundaries`);
  });
}

test("vocab 60000, temperature (and min-p) only: the split sampler (three dispatches) draws as drawKept", { skip }, async () => {
  const rng = new Rng(77);
  const n = 60_000;
  let draws = 0, boundary = 0;
  for (const o of [optionSets["temperature only"]!, optionSets["min-p 0.05"]!, { temperature: 0.3, topK: 0, topP: 1, minP: 0 }]) {
    const logits = tiedLogits(n, rng);
    const t = tensorOf(gpu!, 1, n, logits);
    const { ids, w } = cpuKept(logits, o);
    const before = gpu!.recorder.dispatches;
    await gpu!.sample(t, o, 0.5);
    assert.equal(gpu!.recorder.dispatches - before, 3, "the split path ran");
    // u = 0, near 1, and u that put the goal at part and thread-range edges of the id order
    const us = [0, Math.fround(1 - 2 ** -20), ...Array.from({ length: 30 }, () => Math.fround(rng.next()))];
    for (const u of us) {
      const got = await gpu!.sample(t, o, u);
      const want = drawKept(ids, w, u);
      draws++;
      if (got === want) continue;
      assert.ok(nearBoundary(ids, w, u), `T ${o.temperature} min-p ${o.minP}, u = ${u}: GPU drew ${got}, CPU ${want}, not near a boundary`);
      boundary++;
    }
  }
  assert.ok(boundary <= draws / 20, `${boundary} of ${draws} draws differed at rounding boundaries`);
});

test("pickRows: a batch's temperature draws over a vocabulary are three dispatches and equal each row's own draw", { skip }, async () => {
  const rng = new Rng(78);
  const n = 40_000, rows = 5;
  const logits = Float32Array.from({ length: rows * n }, () => Math.round(rng.next() * 200) / 10 - 10);
  const t = tensorOf(gpu!, rows, n, logits);
  const picks = Array.from({ length: rows }, (_, r) => ({ params: { temperature: 0.5 + 0.2 * r, topK: 0, topP: 1, minP: r === 2 ? 0.05 : 0 }, uniform: Math.fround(rng.next()) }));
  const before = gpu!.recorder.dispatches;
  const ids = await gpu!.pickRows(t, picks);
  assert.equal(gpu!.recorder.dispatches - before, 3, "one split sampler for all rows");
  for (let r = 0; r < rows; r++) {
    // the same row alone (sample() draws from the last row of its tensor)
    const alone = await gpu!.sample(tensorOf(gpu!, 1, n, logits.subarray(r * n, (r + 1) * n)), picks[r]!.params, picks[r]!.uniform);
    assert.equal(ids[r], alone, `row ${r}`);
    const { ids: kept, w } = cpuKept(logits.subarray(r * n, (r + 1) * n), picks[r]!.params);
    const want = drawKept(kept, w, picks[r]!.uniform);
    assert.ok(ids[r] === want || nearBoundary(kept, w, picks[r]!.uniform), `row ${r}: GPU ${ids[r]}, CPU ${want}`);
  }
  // a greedy row among them: each row its own dispatches, the same ids for the sampled rows
  const mixed = await gpu!.pickRows(t, [picks[0], undefined, picks[2]]);
  assert.equal(mixed[0], ids[0]);
  assert.equal(mixed[2], ids[2]);
});

test("sample: bad parameters are refused by name; top-p 0 keeps nothing and says so", { skip }, async () => {
  const t = tensorOf(gpu!, 1, 8, Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
  const ok: SampleParams = { temperature: 1, topK: 0, topP: 1, minP: 0 };
  await assert.rejects(gpu!.sample(t, { ...ok, temperature: 0 }, 0.5), /temperature/);
  await assert.rejects(gpu!.sample(t, { ...ok, topP: 2 }, 0.5), /topP/);
  await assert.rejects(gpu!.sample(t, { ...ok, topK: 1.5 }, 0.5), /topK/);
  await assert.rejects(gpu!.sample(t, ok, 1), /uniform/);
  await assert.rejects(gpu!.sample(t, { ...ok, topP: 0 }, 0.5), /no token/);
  assert.equal(await gpu!.sample(t, { ...ok, topK: 1 }, 0.9), 7, "top-k 1 is the argmax");
});

test("stories260K: seeded generation (temperature 0.8, top-p 0.9, seed 7) gives the same tokens on CPU and WebGPU", { skip }, async () => {
  const cpu = await loadModel();
  const web = await loadModel(undefined, { device: "webgpu" });
  try {
    let gpuDraws = 0;
    // decoding is pipelined on WebGPU: each token is drawn by pickAhead with sampling parameters
    const pickAhead = web.backend.pickAhead!.bind(web.backend);
    web.backend.pickAhead = (logits, sample) => {
      if (sample) gpuDraws++;
      return pickAhead(logits, sample);
    };
    const run = async (m: Model) => {
      const ids: number[] = [];
      for await (const p of m.generate("Once upon a time", { temperature: 0.8, topP: 0.9, seed: 7, maxTokens: 120, stopAtEos: false })) {
        if (p.tokenId !== undefined) ids.push(p.tokenId);
      }
      return ids;
    };
    const want = await run(cpu);
    assert.equal(want.length, 120);
    assert.deepEqual(await run(web), want);
    assert.equal(gpuDraws, 120, "every token was drawn on the GPU");
  } finally {
    cpu.dispose();
    web.dispose();
  }
});
