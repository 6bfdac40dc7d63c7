/**
 * src/eval/paired-bootstrap against exact identities: a row equal to its baseline is 0 with [0, 0]; a constant
 * per-token shift d (dyadic numbers, so every sum is exact in f64) is expm1(d) in every draw, hence a zero-width
 * interval; two windows, whose three possible resample means are computed by hand; the same seed reproduces;
 * windows that do not pair are refused with the reason.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { pairedDeltaPpl } from "../../src/eval/paired-bootstrap.js";
import { Rng } from "../../src/generate/sampler.js";

/** Windows of 100..227 tokens with NLLs that are multiples of 1/1024 (exact sums). */
function windows(n: number, seed: number): { nll: number[]; tokens: number[] } {
  const rng = new Rng(seed);
  const tokens = Array.from({ length: n }, () => 100 + Math.floor(rng.next() * 128));
  return { nll: tokens.map((t) => Math.round(t * (1 + 2 * rng.next()) * 1024) / 1024), tokens };
}

test("a row identical to the baseline: 0 and [0, 0]", () => {
  const base = windows(32, 7);
  const r = pairedDeltaPpl({ nll: [...base.nll], tokens: [...base.tokens] }, base);
  assert.deepEqual(r, { delta: 0, lo: 0, hi: 0 });
});

test("a constant per-token shift d: expm1(d) exactly, zero-width interval", () => {
  const base = windows(24, 3);
  for (const d of [0.125, -0.03125, 0.015625]) {
    const row = { nll: base.nll.map((x, i) => x + d * base.tokens[i]!), tokens: base.tokens };
    const r = pairedDeltaPpl(row, base, { draws: 2000 });
    assert.equal(r.delta, Math.expm1(d));
    assert.equal(r.lo, Math.expm1(d));
    assert.equal(r.hi, Math.expm1(d));
    assert.ok(Math.abs(r.delta - (Math.exp(d) - 1)) < 1e-15);
  }
});

test("two windows by hand: pooled exp(0.2) − 1 in [exp(0.1) − 1, exp(0.3) − 1]", () => {
  // per-token differences 0.1 and 0.3 over 10 tokens each; a resample is {1,1} (p 1/4), {1,2} or {2,1} (1/2),
  // {2,2} (1/4), so its mean is 0.1, 0.2 or 0.3; the 2.5% and 97.5% points fall in the outer two
  const base = { nll: [10, 20], tokens: [10, 10] };
  const row = { nll: [11, 23], tokens: [10, 10] };
  const r = pairedDeltaPpl(row, base);
  assert.ok(Math.abs(r.delta - Math.expm1(0.2)) < 1e-15);
  assert.ok(Math.abs(r.lo - Math.expm1(0.1)) < 1e-15);
  assert.ok(Math.abs(r.hi - Math.expm1(0.3)) < 1e-15);
  // unequal windows: pooled over tokens, not the mean of the windows' ratios
  const r2 = pairedDeltaPpl({ nll: [11, 23], tokens: [10, 30] }, { nll: [10, 20], tokens: [10, 30] });
  assert.ok(Math.abs(r2.delta - Math.expm1(4 / 40)) < 1e-15);
  assert.ok(Math.abs(r2.lo - Math.expm1(0.1)) < 1e-15 && Math.abs(r2.hi - Math.expm1(0.1)) < 1e-15);
});

test("the interval holds the pooled value, and the same seed gives the same interval", () => {
  const base = windows(40, 11);
  const shift = new Rng(5);
  const row = { nll: base.nll.map((x, i) => x + (shift.next() - 0.3) * 0.1 * base.tokens[i]!), tokens: base.tokens };
  const a = pairedDeltaPpl(row, base, { seed: 9 });
  const b = pairedDeltaPpl(row, base, { seed: 9 });
  const c = pairedDeltaPpl(row, base, { seed: 10 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.ok(a.lo < a.delta && a.delta < a.hi, `${a.lo} < ${a.delta} < ${a.hi}`);
  // a narrower level is inside the wider one
  const n = pairedDeltaPpl(row, base, { seed: 9, level: 0.5 });
  assert.ok(a.lo <= n.lo && n.hi <= a.hi);
});

test("windows that do not pair are refused with the reason", () => {
  const base = { nll: [10, 20], tokens: [10, 10] };
  assert.throws(() => pairedDeltaPpl({ nll: [10], tokens: [10] }, base), /row has 1 NLLs and 1 token counts for 2 windows/);
  assert.throws(() => pairedDeltaPpl({ nll: [10, 20], tokens: [10, 11] }, base), /window 1 scores 11 tokens in the row and 10 in the baseline/);
  assert.throws(() => pairedDeltaPpl({ nll: [], tokens: [] }, { nll: [], tokens: [] }), /no windows/);
  assert.throws(() => pairedDeltaPpl({ nll: [NaN, 20], tokens: [10, 10] }, base), /window 0 has a non-finite NLL/);
});
