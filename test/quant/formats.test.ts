/**
 * Table-driven checks of every weight format's pack/unpack: values on the format's grid come back bit for bit
 * (partial last groups, all-zero rows, RaZeR's special value and scaleMul ≠ 1 included); round-to-nearest picks
 * the nearest level of the decoded scale (error ≤ half a grid step × scale inside the range); the last partial
 * group depends only on its own values; clipping never raises the error; the registry and bad input.
 * Scales and levels are read back from the packed bytes with the spec's layouts, independently of the codecs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { PackedTensor, QuantFormat } from "../../src/quant/format.js";
import { QUANT_FORMATS, quantFormat } from "../../src/quant/formats.js";
import { fp4Format } from "../../src/quant/fp4.js";
import { int4AsymFormat } from "../../src/quant/int4-asym.js";
import { int8Format } from "../../src/quant/int8.js";
import { NF4_LEVELS, nf4Format } from "../../src/quant/nf4.js";
import { nvfp4Format } from "../../src/quant/nvfp4.js";
import { nvfp4RazerFormat } from "../../src/quant/nvfp4-razer.js";
import { razerFormat } from "../../src/quant/razer.js";
import { e3m3Value, e4m3Value } from "../../src/quant/minifloat.js";
import { f16ToF32 } from "../../src/tensor/half.js";

const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.5, -1, -1.5, -2, -3, -4, -6];
/** The spec's NF4 table (§6), 7 decimals. */
const NF4 = [-1, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.09105, 0, 0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.562617, 0.7229568, 1];
const ROWS = 6, COLS = 200; // 200 = 128 + 72 = 3·64 + 8 = 12·16 + 8: every grouped format ends in a partial group

function rng(seed: number) {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { u, int: (n: number) => Math.floor(u() * n), pick: <T>(xs: readonly T[]) => xs[Math.floor(u() * xs.length)]!, normal: () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u()) };
}
type Rng = ReturnType<typeof rng>;

const f16Normal = (r: Rng, lo = 0x2000, hi = 0x3bff) => f16ToF32(lo + r.int(hi - lo));
const u16 = (p: PackedTensor) => new Uint16Array(p.scales.buffer.slice(p.scales.byteOffset, p.scales.byteOffset + p.scales.byteLength));
const nibble = (p: PackedTensor, g: number, r: number, k: number) => {
  const bytesPerRow = (Math.ceil(p.cols / g) * g) / 2;
  const b = p.codes[r * bytesPerRow + (k >> 1)]!;
  return k & 1 ? b >> 4 : b & 15;
};
const ints = (lo: number, hi: number) => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
const withSv = (sv: number) => [...E2M1, sv].sort((a, b) => a - b);

/** Fills every group of g along each row with `group(values, r)`; the generator sets its own first elements. */
function fill(g: number, group: (out: number[], n: number) => void): Float32Array {
  const w = new Float32Array(ROWS * COLS);
  for (let r = 0; r < ROWS; r++) {
    for (let k0 = 0; k0 < COLS; k0 += g) {
      const n = Math.min(g, COLS - k0);
      const vals: number[] = [];
      group(vals, n);
      for (let i = 0; i < n; i++) w[r * COLS + k0 + i] = vals[i]!;
    }
  }
  w.fill(0, COLS, 2 * COLS); // row 1 all zero
  return w;
}

/** Random group: the listed extremes first (so the scale rule recovers s), then random levels, all times s. */
function gridGroup(r: Rng, levels: readonly number[], extremes: readonly number[], s: number) {
  return (out: number[], n: number) => {
    for (let i = 0; i < n; i++) out.push(Math.fround((i < extremes.length ? extremes[i]! : r.pick(levels)) * s) + 0); // + 0: no -0 inputs
  };
}

interface Case {
  readonly format: QuantFormat;
  readonly g: number;
  /** Values exactly on the format's grid, from which its scale rule recovers the scales. */
  readonly onGrid: (r: Rng) => Float32Array;
  /** The decoded scale and the sorted level set of element (row, k) of a packed tensor. */
  readonly grid: (p: PackedTensor, row: number, k: number) => { s: number; levels: readonly number[] };
  /** How far the test's level table may be from the codec's (the spec lists NF4 to 7 decimals). */
  readonly levelTol?: number;
}

function razerCase(g: number): Case {
  const f = razerFormat(g);
  return {
    format: f,
    g,
    onGrid: (r) => {
      return fill(g, (out, n) => {
        const sv = r.pick([5, 8, -5, -8]);
        const L = withSv(sv);
        gridGroup(r, L, [L[L.length - 1]!, L[0]!, sv], f16Normal(r, 0x2400))(out, n);
      });
    },
    grid: (p, row, k) => {
      const ng = Math.ceil(p.cols / g);
      const word = u16(p)[row * (ng + (ng & 1)) + Math.floor(k / g)]!;
      const sv = (word & 0x8000 ? -1 : 1) * (word & 0x4000 ? 8 : 5);
      return { s: p.tensorScale * f16ToF32(word & 0x3fff), levels: withSv(sv) };
    },
  };
}

const CASES: Case[] = [
  {
    format: int8Format,
    g: COLS,
    onGrid: (r) => fill(COLS, gridGroup(r, ints(-127, 127), [r.pick([127, -127])], 2 ** -(3 + r.int(8)))),
    grid: (p, row) => ({ s: new Float32Array(p.scales.buffer.slice(0))[row]!, levels: ints(-127, 127) }),
  },
  {
    format: int4AsymFormat(128),
    g: 128,
    onGrid: (r) =>
      fill(128, (out, n) => {
        const z = r.int(16);
        gridGroup(r, ints(-z, 15 - z), [-z, 15 - z], f16Normal(r))(out, n);
      }),
    grid: (p, row, k) => {
      const i = row * Math.ceil(p.cols / 128) + Math.floor(k / 128);
      const z = f16ToF32(u16(p)[2 * i + 1]!);
      return { s: f16ToF32(u16(p)[2 * i]!), levels: ints(-z, 15 - z) };
    },
  },
  {
    format: fp4Format(128),
    g: 128,
    onGrid: (r) => fill(128, (out, n) => gridGroup(r, E2M1, [r.pick([6, -6])], f16Normal(r))(out, n)),
    grid: (p, row, k) => ({ s: f16ToF32(u16(p)[row * Math.ceil(p.cols / 128) + Math.floor(k / 128)]!), levels: [...E2M1].sort((a, b) => a - b) }),
  },
  {
    format: nf4Format(64),
    g: 64,
    onGrid: (r) => fill(64, (out, n) => gridGroup(r, Array.from(NF4_LEVELS), [r.pick([1, -1])], f16Normal(r))(out, n)),
    grid: (p, row, k) => ({ s: f16ToF32(u16(p)[row * Math.ceil(p.cols / 64) + Math.floor(k / 64)]!), levels: NF4.map(Math.fround) }),
    levelTol: 1e-7,
  },
  razerCase(128),
  razerCase(64),
  razerCase(32),
  {
    format: nvfp4Format,
    g: 16,
    onGrid: (r) => {
      const g = 2 ** -3;
      const w = fill(16, (out, n) => gridGroup(r, E2M1, [r.pick([6, -6])], g * e4m3Value(1 + r.int(126)))(out, n));
      w.fill(0, 3 * COLS + 16, 3 * COLS + 32);
      w[3 * COLS + 16] = 6 * 448 * g; // a block holding the tensor maximum: g = max / (6·448)
      return w;
    },
    grid: (p, row, k) => ({ s: p.tensorScale * e4m3Value(p.scales[row * Math.ceil(p.cols / 16) + Math.floor(k / 16)]!), levels: [...E2M1].sort((a, b) => a - b) }),
  },
  {
    format: nvfp4RazerFormat(8),
    g: 16,
    onGrid: (r) => {
      const g = 2 ** -3;
      const w = fill(16, (out, n) => {
        const sv = r.pick([5, -5, 8, -8]);
        const top = Math.abs(sv) === 8 ? sv : r.pick([6, -6]);
        gridGroup(r, withSv(sv).filter((v) => Math.abs(v) <= 6 || v === sv), [top, sv], g * e3m3Value(1 + r.int(57)))(out, n); // S ≤ 18: 8·S stays below the tensor maximum 168
      });
      w.fill(0, 3 * COLS + 16, 3 * COLS + 32);
      w[3 * COLS + 16] = 6 * 28 * g; // a block holding the tensor maximum: g = max / (6·28)
      return w;
    },
    grid: (p, row, k) => {
      const byte = p.scales[row * Math.ceil(p.cols / 16) + Math.floor(k / 16)]!;
      const sv = (byte & 0x80 ? -1 : 1) * (byte & 0x40 ? 8 : 5);
      return { s: p.tensorScale * e3m3Value(byte & 0x3f), levels: withSv(sv) };
    },
  },
];

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

for (const c of CASES) {
  const name = c.format.name;

  test(`${name}: on-grid values (partial groups, a zero row) come back bit for bit`, () => {
    const r = rng(name.length * 977);
    for (let rep = 0; rep < 4; rep++) {
      const w = c.onGrid(r);
      const back = c.format.unpack(c.format.pack(w, ROWS, COLS));
      assert.deepEqual(bits(back), bits(w));
    }
  });

  test(`${name}: round to nearest: each value lands on the nearest level of its decoded scale`, () => {
    const r = rng(31 + name.length);
    const w = Float32Array.from({ length: ROWS * COLS }, () => r.normal() * (r.u() < 0.02 ? 8 : 1) * 0.05);
    const p = c.format.pack(w, ROWS, COLS);
    const q = c.format.unpack(p);
    for (let row = 0; row < ROWS; row++) {
      for (let k = 0; k < COLS; k++) {
        const i = row * COLS + k;
        const { s, levels } = c.grid(p, row, k);
        const t = w[i]! / s;
        const err = Math.abs(q[i]! - w[i]!);
        const slack = Math.abs(q[i]!) * 2 ** -24 + (c.levelTol ?? 0) * s + 1e-300; // the decoded product's own f32 rounding
        const nearest = Math.min(...levels.map((l) => Math.abs(t - l))) * s;
        assert.ok(err <= nearest * (1 + 1e-12) + slack, `${name} [${row}, ${k}]: error ${err}, nearest level is ${nearest} away`);
        const lo = levels[0]!, hi = levels[levels.length - 1]!;
        if (t >= lo && t <= hi) {
          const j = levels.findIndex((l) => l >= t);
          const halfStep = j === 0 ? 0 : (levels[j]! - levels[j - 1]!) / 2;
          assert.ok(err <= halfStep * s * (1 + 1e-12) + slack, `${name} [${row}, ${k}]: error ${err} above half a step ${halfStep * s}`);
        }
      }
    }
  });

  if (c.g < COLS) {
    test(`${name}: the last partial group depends only on its own values`, () => {
      const r = rng(5);
      const w = Float32Array.from({ length: ROWS * COLS }, () => r.normal() * 0.02);
      const start = Math.floor(COLS / c.g) * c.g, n = COLS - start;
      w[COLS + COLS - 1] = 0.5; // the tensor maximum sits in a tail, so per-tensor scales agree
      const tail = new Float32Array(ROWS * n);
      for (let row = 0; row < ROWS; row++) tail.set(w.subarray(row * COLS + start, (row + 1) * COLS), row * n);
      const whole = c.format.unpack(c.format.pack(w, ROWS, COLS));
      const alone = c.format.unpack(c.format.pack(tail, ROWS, n));
      for (let row = 0; row < ROWS; row++) assert.deepEqual(bits(whole.subarray(row * COLS + start, (row + 1) * COLS)), bits(alone.subarray(row * n, (row + 1) * n)));
    });
  }

  test(`${name}: the clipping search never raises the weight MSE`, () => {
    const r = rng(77);
    const w = Float32Array.from({ length: ROWS * COLS }, () => r.normal() / Math.sqrt(r.u() + 0.01));
    const mse = (clip: boolean) => c.format.unpack(c.format.pack(w, ROWS, COLS, { clip })).reduce((s, v, i) => s + (v - w[i]!) ** 2, 0);
    const plain = mse(false), clipped = mse(true);
    assert.ok(clipped <= plain, `clipped ${clipped} > plain ${plain}`);
    // 4-bit grids are coarse enough that clipping heavy tails pays off somewhere
    if (c.g < COLS) assert.ok(clipped < plain, "on heavy-tailed data clipping should help somewhere");
  });
}

test("razer: absmax rule round-trips on-grid values, scaleMul ≠ 1 for large and tiny tensors, padding codes 0x8", () => {
  const c = CASES.find((x) => x.format.name === "razer")!;
  const r = rng(3);
  const w = c.onGrid(r);
  assert.deepEqual(bits(c.format.unpack(c.format.pack(w, ROWS, COLS, { scaleRule: "absmax" }))), bits(w));
  for (const m of [2 ** 12, 2 ** -16]) {
    const big = w.map((v) => v * m);
    const p = c.format.pack(big, ROWS, COLS);
    assert.notEqual(p.tensorScale, 1);
    assert.ok(Number.isInteger(Math.log2(p.tensorScale)), "scaleMul is a power of two");
    assert.deepEqual(bits(c.format.unpack(p)), bits(big));
  }
  const p = c.format.pack(w, ROWS, COLS);
  for (let row = 0; row < ROWS; row++) for (let k = COLS; k < 256; k++) assert.equal(nibble(p, 128, row, k), 0x8);
  // 3 groups a row take 4 scale words (two per u32); the spare one is 0
  const p3 = razerFormat(64).pack(w.subarray(0, ROWS * 150), ROWS, 150);
  assert.equal(p3.scales.byteLength, ROWS * 4 * 2);
  for (let row = 0; row < ROWS; row++) assert.equal(u16(p3)[row * 4 + 3], 0);
});

test("NF4 levels match the spec's table", () => {
  const got = quantFormat("nf4").unpack({ format: "nf4", rows: 1, cols: 64, groupSize: 64, codes: Uint8Array.from({ length: 32 }, (_, i) => ((2 * i) % 16) | (((2 * i + 1) % 16) << 4)), scales: new Uint8Array([0x00, 0x3c]), tensorScale: 1 });
  for (let c = 0; c < 16; c++) assert.ok(Math.abs(got[c]! - NF4[c]!) <= 6e-8, `level ${c}: ${got[c]} vs ${NF4[c]}`);
  assert.equal(got[7], 0);
});

test("registry: unique names, lookup, bits per weight from the layouts", () => {
  const names = QUANT_FORMATS.map((f) => f.name);
  assert.equal(new Set(names).size, names.length);
  const want: Record<string, number> = { int8: 8 + 32 / 4096, "int4-asym": 4.25, fp4: 4.125, nf4: 4.25, razer: 4.125, nvfp4: 4.5, "nvfp4-razer": 4.5 };
  assert.deepEqual(names.sort(), Object.keys(want).sort());
  for (const [n, b] of Object.entries(want)) assert.equal(quantFormat(n).bitsPerWeight(4096), b, n);
  assert.equal(quantFormat("razer").bitsPerWeight(200), (2 * (4 * 128 + 16)) / 200); // padded partial group
  assert.throws(() => quantFormat("int3"), /unknown quantization format "int3" \(known: int8, .*razer/);
});

test("bad input: wrong shapes, non-finite weights, foreign or truncated packed tensors", () => {
  for (const f of QUANT_FORMATS) {
    assert.throws(() => f.pack(new Float32Array(10), 3, 4), new RegExp(`${f.name}: 10 values for shape \\[3, 4\\]`));
    assert.throws(() => f.pack(Float32Array.from([1, NaN]), 1, 2), /weight 1 is NaN/);
    const p = f.pack(new Float32Array(64).fill(0.5), 2, 32);
    assert.throws(() => f.unpack({ ...p, codes: p.codes.subarray(1) }), /codes hold/);
    assert.throws(() => f.unpack({ ...p, scales: p.scales.subarray(1) }), /scales hold/);
    const other = QUANT_FORMATS.find((o) => o !== f)!;
    assert.throws(() => f.unpack({ ...p, format: other.name }), /cannot unpack/);
  }
});

test("ties: fp4 midpoints go to the lower level, int4-asym rounds half to even", () => {
  const fp4 = quantFormat("fp4");
  const w = new Float32Array(128);
  w.set([6, 0.25, 0.75, -0.75, 2.5, -2.5, 5, -5, 1.25]);
  assert.deepEqual(Array.from(fp4.unpack(fp4.pack(w, 1, 128)).subarray(0, 9)), [6, 0, 0.5, -1, 2, -3, 4, -6, 1]);
  const int4 = quantFormat("int4-asym");
  w.fill(0).set([-8, 7, 0.5, 1.5, 2.5, -0.5, -1.5, 3.4]); // s = 15/15 = 1, z = 8
  assert.deepEqual(Array.from(int4.unpack(int4.pack(w, 1, 128)).subarray(0, 8)), [-8, 7, 0, 2, 2, 0, -2, 3]);
});
