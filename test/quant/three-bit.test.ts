/**
 * The 3-bit codecs (int3-asym, fp3-razer): bit layout against an independent bit-string writer, groups derived
 * by hand, and quantization error on Gaussian rows against f64 references of each codec's own rule (so a
 * wrong rounding, scale or SV choice shows up as an error gap), plus int4 being better than both.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tribits, tribitBytes } from "../../src/quant/tribits.js";
import { int3AsymFormat } from "../../src/quant/int3-asym.js";
import { int4AsymFormat } from "../../src/quant/int4-asym.js";
import { fp3RazerFormat, fp3ScaleBits } from "../../src/quant/fp3-razer.js";
import type { QuantFormat } from "../../src/quant/format.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

function gaussian(n: number, seed: number): Float32Array {
  const u = rng(seed);
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u()));
}

test("3-bit codes: element k in bits 3k..3k+2 of the row's little-endian bit string", () => {
  const u = rng(3);
  const rows = 3, cols = 40, g = 16; // rows padded to 48 codes = 18 bytes
  const want = Array.from({ length: rows * cols }, () => Math.floor(u() * 8));
  const t = new Tribits(rows, cols, g, 0);
  assert.equal(t.bytes.length, tribitBytes(rows, cols, g));
  assert.equal(t.bytes.length, rows * 18);
  want.forEach((c, i) => t.set(Math.floor(i / cols), i % cols, c));
  // independent writer: one BigInt bit string per row
  for (let r = 0; r < rows; r++) {
    let bits = 0n;
    for (let k = 0; k < cols; k++) bits |= BigInt(want[r * cols + k]!) << BigInt(3 * k);
    const bytes = Array.from({ length: 18 }, (_, i) => Number((bits >> BigInt(8 * i)) & 0xffn));
    assert.deepEqual(Array.from(t.bytes.subarray(r * 18, (r + 1) * 18)), bytes, `row ${r}`);
    for (let k = 0; k < cols; k++) assert.equal(t.get(r, k), want[r * cols + k], `row ${r} code ${k}`);
  }
  // overwriting leaves the neighbours alone
  t.set(1, 2, 7);
  t.set(1, 2, 0);
  for (let k = 0; k < cols; k++) assert.equal(t.get(1, k), k === 2 ? 0 : want[cols + k]);
  // padding with a non-zero code fills every slot, the padded ones too
  const padded = new Tribits(2, 5, 8, 4);
  for (let r = 0; r < 2; r++) for (let k = 0; k < 8; k++) assert.equal(padded.get(r, k), 4);
});

test("int3-asym: a group derived by hand", () => {
  const f = int3AsymFormat(8);
  // min −1, max 2.5: s = 3.5/7 = 0.5, z = 2; w/s + z: −2+2 = 0, 2, 3, 5+2 = 7, 0.6+2 → 3 (0.3/0.5 = 0.6 → 1), 1.25 → 2.5+2 → 4 (half to even 2)
  const w = Float32Array.of(-1, 0, 0.5, 2.5, 0.3, 1.25, -0.75, 2);
  const p = f.pack(w, 1, 8);
  const scales = new Uint16Array(p.scales.buffer.slice(0));
  assert.deepEqual(Array.from(scales), [0x3800, 0x4000]); // f16 0.5, f16 2
  const codes = new Tribits(1, 8, 8, 0, p.codes);
  // −0.75/0.5 = −1.5 → half to even −2 → 0
  assert.deepEqual(Array.from({ length: 8 }, (_, k) => codes.get(0, k)), [0, 2, 3, 7, 3, 4, 0, 6]);
  assert.deepEqual(Array.from(f.unpack(p)), [-1, 0, 0.5, 2.5, 0.5, 1, -1, 2]);
  assert.equal(int3AsymFormat(64).bitsPerWeight(64), 3.5);
  assert.deepEqual(int3AsymFormat(64).layout(2, 64), { codeBytes: 48, scaleBytes: 8 });
});

test("fp3-razer: SV flags, the scale grid, an all-zero group and a group derived by hand", () => {
  const f = fp3RazerFormat(8);
  // row 0 zero; row 1: 4, −3, 0.6, 0.25, then zeros. Range-aware s and errors per SV:
  //   +3: s = 1, −3 → tie −4/−2 → −4: err 1 + 0.16 + 0.0625;   +6: s = 0.75: 4 → 4.5, err 0.25 + 0.0225 + 0.0625
  //   −3: s = 1, −3 exact (the sentinel): err 0.16 + 0.0625 — the smallest; −6: s = 1, −3 → −4: err ≥ 1
  const w = new Float32Array(16);
  w.set([4, -3, 0.6, 0.25], 8);
  const p = f.pack(w, 2, 8);
  const words = new Uint16Array(p.scales.buffer.slice(0));
  assert.deepEqual(Array.from(words), [0, 0x8000 | 0x3c00]);
  const codes = new Tribits(2, 8, 8, 0, p.codes);
  assert.deepEqual(Array.from({ length: 16 }, (_, k) => codes.get(k >> 3, k & 7)), [4, 4, 4, 4, 4, 4, 4, 4, 3, 0, 1, 4, 4, 4, 4, 4]);
  assert.deepEqual(Array.from(f.unpack(p)), [0, 0, 0, 0, 0, 0, 0, 0, 4, -3, 1, 0, 0, 0, 0, 0]);
  // +6 wins when the top value is 6 s: 6, 1, 2, 4 at s = 1 are exact (word bit 0 = magnitude 6)
  const p6 = f.pack(Float32Array.of(6, 1, 2, 4, 0, 0, 0, -1), 1, 8);
  assert.equal(new Uint16Array(p6.scales.buffer.slice(0))[0], 0x3c00 | 1);
  assert.deepEqual(Array.from(f.unpack(p6)), [6, 1, 2, 4, 0, 0, 0, -1]);
  // the 9-bit-mantissa grid: even f16 bit patterns; ties to the even 9-bit mantissa
  const ulp = 2 ** -10;
  assert.equal(fp3ScaleBits("t", 1), 0x3c00);
  assert.equal(fp3ScaleBits("t", 1 + ulp), 0x3c00); // tie between 0x3c00 and 0x3c02: 0x3c00 (mantissa 0)
  assert.equal(fp3ScaleBits("t", 1 + 3 * ulp), 0x3c04); // tie between 0x3c02 and 0x3c04: 0x3c04 (mantissa 2)
  assert.equal(fp3ScaleBits("t", 1 + 1.25 * ulp), 0x3c02);
  assert.equal(fp3ScaleBits("t", 1 + 0.75 * ulp), 0x3c00);
  assert.equal(fp3RazerFormat(64).bitsPerWeight(64), 3.25);
  assert.deepEqual(fp3RazerFormat(64).layout(2, 64), { codeBytes: 48, scaleBytes: 4 });
});

/** Σ error² of each codec over Gaussian rows of 64, with an f64 reference error of its own rule. */
function sse(f: QuantFormat, w: Float32Array, rows: number): number {
  const got = f.unpack(f.pack(w, rows, 64));
  let e = 0;
  for (let i = 0; i < w.length; i++) e += (got[i]! - w[i]!) ** 2;
  return e;
}

/** int3-asym's rule in f64 with an unrounded scale (the f16 rounding of s is the only difference). */
function int3Reference(w: Float32Array, rows: number): number {
  let e = 0;
  for (let r = 0; r < rows; r++) {
    const x = w.subarray(r * 64, (r + 1) * 64);
    const min = Math.min(...x), max = Math.max(...x), s = (max - min) / 7, z = Math.min(7, Math.max(0, Math.round(-min / s)));
    for (const v of x) e += ((Math.min(7, Math.max(0, Math.round(v / s + z))) - z) * s - v) ** 2;
  }
  return e;
}

/** fp3-razer's rule in f64: unrounded range-aware scale per SV, nearest level by exhaustive search, best SV. */
function fp3Reference(w: Float32Array, rows: number): number {
  let e = 0;
  for (let r = 0; r < rows; r++) {
    const x = w.subarray(r * 64, (r + 1) * 64);
    const min = Math.min(...x), max = Math.max(...x);
    let best = Infinity;
    for (const sv of [3, 6, -3, -6]) {
      const levels = [0, 1, 2, 4, -1, -2, -4, sv];
      const s = Math.max(max / Math.max(...levels), min / Math.min(...levels));
      let err = 0;
      for (const v of x) err += Math.min(...levels.map((l) => (l * s - v) ** 2));
      best = Math.min(best, err);
    }
    e += best;
  }
  return e;
}

test("3-bit quantization error on Gaussian rows of 64: each codec within 1% of the f64 reference of its own rule", () => {
  const rows = 400;
  const w = gaussian(rows * 64, 17);
  const n = w.length;
  const int3 = sse(int3AsymFormat(64), w, rows) / n, int3Ref = int3Reference(w, rows) / n;
  const fp3 = sse(fp3RazerFormat(64), w, rows) / n, fp3Ref = fp3Reference(w, rows) / n;
  const int4 = sse(int4AsymFormat(64), w, rows) / n;
  assert.ok(Math.abs(int3 / int3Ref - 1) < 0.01, `int3 MSE ${int3} vs reference ${int3Ref}`);
  assert.ok(Math.abs(fp3 / fp3Ref - 1) < 0.01, `fp3-razer MSE ${fp3} vs reference ${fp3Ref}`);
  // one bit fewer: about (15/7)² ≈ 4.6× int4's error for the uniform grid
  assert.ok(int3 / int4 > 3.5 && int3 / int4 < 5.5, `int3 / int4 MSE ${int3 / int4}`);
  assert.ok(fp3 > int4, `fp3-razer ${fp3} above int4 ${int4}`);
  // the SV is worth something: fp3 with one fixed SV (+3, the first) is worse than the per-group choice
  const fixed = fp3RazerFormat(64);
  const pFixed = fixed.unpack(fixed.pack(w, rows, 64, { specialValues: [3] }));
  let eFixed = 0;
  for (let i = 0; i < n; i++) eFixed += (pFixed[i]! - w[i]!) ** 2;
  assert.ok(eFixed / n > fp3 * 1.02, `fixed SV +3: ${eFixed / n} vs chosen ${fp3}`);
  // two scale words a row (fp3-razer-g32, int3g64's bytes) beat one on the same rows
  const fp3g32 = sse(fp3RazerFormat(32), w, rows) / n;
  assert.ok(fp3g32 < fp3 * 0.9, `fp3-razer g32 ${fp3g32} vs g64 ${fp3}`);
  process.stdout.write(`# MSE on N(0,1) rows of 64: int4g64 ${int4.toFixed(5)}, int3g64 ${int3.toFixed(5)}, fp3-razer ${fp3.toFixed(5)} (fixed +3: ${(eFixed / n).toFixed(5)}), fp3-razer g32 ${fp3g32.toFixed(5)}\n`);
});
