import { test } from "node:test";
import assert from "node:assert/strict";
import { fp4Format } from "../../src/quant/fp4.js";
import type { PackedTensor } from "../../src/quant/format.js";
import { nvfp4Format } from "../../src/quant/nvfp4.js";
import { nvfp4RazerFormat } from "../../src/quant/nvfp4-razer.js";
import { razerCodeValue, razerFormat } from "../../src/quant/razer.js";
import { razerFromV1, razerFromV2, razerToV1, razerToV2 } from "../../src/quant/razer-encodings.js";

/** Spec §2.1 with the RaZeR convention: 0x0 is the SV, 0x8 the zero. */
const E2M1 = [NaN, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6];
const FLAG_SV: [number, number][] = [[0x0000, 5], [0x4000, 8], [0x8000, -5], [0xc000, -8]];

test("razer decode table: 4 flag settings × 16 codes, through razerCodeValue and through unpack", () => {
  const codes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) codes[i] = (2 * (i % 8)) | ((2 * (i % 8) + 1) << 4); // codes 0..15 in order, every row
  const words = new Uint16Array(4 * 2);
  FLAG_SV.forEach(([flags], r) => (words[2 * r] = flags | 0x3c00)); // |s| = 1
  const p: PackedTensor = { format: "razer-g16", rows: 4, cols: 16, groupSize: 16, codes, scales: new Uint8Array(words.buffer), tensorScale: 1 };
  const w = razerFormat(16).unpack(p);
  FLAG_SV.forEach(([flags, sv], r) => {
    for (let c = 0; c < 16; c++) {
      const want = c === 0 ? sv : E2M1[c]!;
      assert.equal(razerCodeValue(flags, c), want, `flags ${flags.toString(16)} code ${c}`);
      assert.equal(w[r * 16 + c], want, `unpack: flags ${flags.toString(16)} code ${c}`);
    }
  });
});

test("razer packs an all-zero group as scale word 0 and codes 0x8, and a hand-derived group", () => {
  // row 0: zeros; row 1: values 4, -3, 0.6, 0.125, 0 -> sv = +8 (range-aware s = 0.5 exactly) beats ±5
  const w = new Float32Array(32);
  w.set([4, -3, 0.6, 0.125, 0], 16);
  const p = razerFormat(16).pack(w, 2, 16);
  assert.equal(p.tensorScale, 1);
  const words = new Uint16Array(p.scales.buffer.slice(0));
  assert.equal(words[0], 0);
  assert.ok(p.codes.subarray(0, 8).every((b) => b === 0x88));
  // +5: s = max(4/6, -3/-6) = 0.667 gives err > 0; +8: s = max(4/8, -3/-6) = 0.5 (f16 0x3800) -> 4 is exact
  assert.equal(words[2], 0x4000 | 0x3800);
  // w/s: 8 -> sentinel 0x0, -6 -> 0xF, 1.2 -> 1.0 (0x2), 0.25 -> tie 0 / 0.5 -> lower: 0 (0x8), 0 -> 0x8
  assert.deepEqual(Array.from(p.codes.subarray(8, 11)), [0x0 | (0xf << 4), 0x2 | (0x8 << 4), 0x8 | (0x8 << 4)]);
  assert.deepEqual(Array.from(razerFormat(16).unpack(p).subarray(16, 21)), [4, -3, 0.5, 0, 0]);
});

test("NVFP4 block derived by hand: E4M3 scale 448, ties away from zero", () => {
  const w = new Float32Array(16);
  w.set([2688, 1, 224, -336, 560, -1120]);
  const p = nvfp4Format.pack(w, 1, 16);
  assert.equal(p.tensorScale, 1); // 2688 / (6·448)
  assert.equal(p.scales[0], 0x7e); // 448
  // x/s: 6 -> 0x7; 0.0022 -> 0; 0.5 -> 0x1; -0.75 -> -1 (0xA); 1.25 -> 1.5 (0x3); -2.5 -> -3 (0xD)
  assert.deepEqual(Array.from(p.codes.subarray(0, 3)), [0x7 | (0x0 << 4), 0x1 | (0xa << 4), 0x3 | (0xd << 4)]);
  assert.deepEqual(Array.from(nvfp4Format.unpack(p).subarray(0, 6)), [2688, 0, 224, -448, 672, -1344]);
});

test("NVFP4-RaZeR blocks derived by hand: E3M3 payloads, SV flags in bits 7 and 6", () => {
  const f = nvfp4RazerFormat(8);
  const w = new Float32Array(32);
  w[0] = 168; // g = 168 / (6·28) = 1; the +5 candidate has s = 28 (p = 62) and is exact
  w.set([5, 1, 0], 16);
  const p = f.pack(w, 1, 32);
  assert.equal(p.tensorScale, 1);
  assert.equal(p.scales[0], 62);
  // block 2: ±5 candidates: s = E3M3(5/6) = 0.8125 (p 21), err 0.0156 + 0.0352; +8: s = E3M3(5/8) = 0.625 (p 18),
  // 5 -> the SV exactly, 1 -> 1.6 -> 1.5: err 0.0039, the smallest
  assert.equal(p.scales[1], 0x40 | 18);
  assert.deepEqual(Array.from(p.codes.subarray(8, 10)), [0x0 | (0x3 << 4), 0x8 | (0x8 << 4)]);
  assert.deepEqual(Array.from(f.unpack(p).subarray(16, 19)), [5, 0.9375, 0]);
  assert.equal(p.codes[0], 0x7 | (0x8 << 4));
});

/** Per-group MSE of a decoded tensor against the original. */
function groupErrors(w: Float32Array, q: Float32Array, g: number): Float64Array {
  const out = new Float64Array(w.length / g);
  for (let i = 0; i < w.length; i++) out[Math.floor(i / g)] += (q[i]! - w[i]!) ** 2;
  return out;
}

test("razer dominates FP4 g128 on every one of 10^5 random groups, both scale rules (spec §8.1.3)", () => {
  const groups = 100_000, g = 128;
  const w = new Float32Array(groups * g);
  let a = 12345;
  const u = () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return (a + 0.5) / 2 ** 32;
  };
  for (let i = 0; i < groups; i++) {
    const kind = i % 3;
    for (let j = 0; j < g; j++) {
      const n = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
      const v = kind === 0 ? n : kind === 1 ? Math.log(u()) * (u() < 0.5 ? 1 : -1) : n / Math.sqrt(u()); // Gaussian, Laplace, heavy tail
      w[i * g + j] = v * 0.03;
    }
  }
  const fp4 = groupErrors(w, fp4Format(g).unpack(fp4Format(g).pack(w, groups, g)), g);
  for (const scaleRule of ["range-aware", "absmax"] as const) {
    const f = razerFormat(g);
    const rz = groupErrors(w, f.unpack(f.pack(w, groups, g, { scaleRule })), g);
    let worse = 0;
    for (let i = 0; i < groups; i++) if (rz[i]! > fp4[i]!) worse++;
    assert.equal(worse, 0, `${scaleRule}: ${worse} groups where razer is worse than fp4`);
  }
});

test("v1 and v2 encoding converters: all 16 codes × 4 SVs decode alike and round-trip (spec §8.1.5)", () => {
  const V1_MAGNITUDES = [0.5, NaN, 1, 1.5, 2, 3, 4, 6]; // index 1 is ZERO: +ZERO the zero, −ZERO the SV
  const v1Value = (c: number, sv: number) => ((c >> 1) === 1 ? (c & 1 ? sv : 0) : (c & 1 ? -1 : 1) * V1_MAGNITUDES[c >> 1]!);
  // v2: scale negated for a negative SV, the sentinel decodes to |sv|, 0x8 to zero
  const v2Value = (c: number, sv: number) => (sv < 0 ? -1 : 1) * (c === 0 ? Math.abs(sv) : c === 8 ? 0 : E2M1[c]!);
  for (const [flags, sv] of FLAG_SV) {
    const seen = new Set<number>();
    for (let c = 0; c < 16; c++) {
      const ours = razerCodeValue(flags, c);
      const v1 = razerToV1(c);
      seen.add(v1);
      assert.equal(v1Value(v1, sv) + 0, ours + 0, `v1, sv ${sv}, code ${c}`);
      assert.equal(razerFromV1(v1), c);
      const v2 = razerToV2(c, sv < 0);
      assert.equal(v2Value(v2, sv) + 0, ours + 0, `v2, sv ${sv}, code ${c}`);
      assert.equal(razerFromV2(v2, sv < 0), c);
    }
    assert.equal(seen.size, 16, "the v1 map is a permutation");
  }
});
