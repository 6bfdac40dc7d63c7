import { test } from "node:test";
import assert from "node:assert/strict";
import { e2m1Code, e2m1Value, e3m3Round, e3m3Value, e4m3Round, e4m3Value } from "../../src/quant/minifloat.js";

test("E2M1: all 16 codes against the spec table, and the ALU decode (m3 + 252) << 22", () => {
  const table = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];
  for (let c = 0; c < 16; c++) {
    assert.ok(Object.is(e2m1Value(c), table[c]), `code ${c}`);
    assert.equal(e2m1Code(table[c]!), c);
    const m3 = c & 7;
    if (m3 >= 2) {
      const bits = new Uint32Array([((m3 + 252) << 22) | ((c & 8) << 28)]);
      assert.equal(new Float32Array(bits.buffer)[0], table[c], `ALU decode of code ${c}`);
    }
  }
  assert.throws(() => e2m1Code(2.5), /not on the grid/);
});

test("E4M3: hand-derived bytes", () => {
  const cases: [number, number][] = [
    [0x00, 0], [0x01, 2 ** -9], [0x07, (7 / 8) * 2 ** -6], [0x08, 2 ** -6], [0x38, 1], [0x39, 1.125], [0x58, 16],
    [0x77, 240], [0x7e, 448], [0xb8, -1], [0xfe, -448],
  ];
  for (const [b, v] of cases) {
    assert.equal(e4m3Value(b), v, `decode 0x${b.toString(16)}`);
    assert.equal(e4m3Round(v), b, `encode ${v}`);
  }
  assert.ok(Number.isNaN(e4m3Value(0x7f)) && Number.isNaN(e4m3Value(0xff)));
  // ties go to the even code; saturation at 448
  assert.equal(e4m3Round(2 ** -10), 0x00); // halfway 0 .. 2^-9
  assert.equal(e4m3Round(3 * 2 ** -10), 0x02); // halfway 2^-9 .. 2^-8
  assert.equal(e4m3Round(1.0625), 0x38); // halfway 1 .. 1.125
  assert.equal(e4m3Round(1.1875), 0x3a); // halfway 1.125 .. 1.25
  assert.equal(e4m3Round(17), 0x58); // halfway 16 .. 18
  assert.equal(e4m3Round(1.05), 0x38);
  assert.equal(e4m3Round(1.07), 0x39);
  assert.equal(e4m3Round(1.06251), 0x39);
  assert.equal(e4m3Round(1000), 0x7e);
});

test("E4M3 rounding agrees with a brute-force nearest-even search", () => {
  const finite = Array.from({ length: 127 }, (_, c) => c);
  const brute = (v: number) => {
    let best = 0;
    for (const c of finite) {
      const d = Math.abs(e4m3Value(c) - v), db = Math.abs(e4m3Value(best) - v);
      if (d < db || (d === db && c % 2 === 0)) best = c;
    }
    return best;
  };
  let seed = 7;
  for (let i = 0; i < 3000; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const v = 2 ** (-11 + 21 * (seed / 2 ** 31));
    assert.equal(e4m3Round(v), brute(v), `v = ${v}`);
  }
  for (const c of finite) assert.equal(e4m3Round(e4m3Value(c)), c);
});

test("E3M3 payloads: S(p) = E4M3(p)·16 for all 64, hand values, nearest rounding", () => {
  for (let p = 0; p < 64; p++) assert.equal(e3m3Value(p), e4m3Value(p) * 16, `p = ${p}`);
  assert.equal(e3m3Value(0), 0);
  assert.equal(e3m3Value(1), 1 / 32);
  assert.equal(e3m3Value(8), 0.25);
  assert.equal(e3m3Value(18), 0.625);
  assert.equal(e3m3Value(62), 28);
  assert.equal(e3m3Value(63), 30);
  for (let p = 0; p < 64; p++) assert.equal(e3m3Round(e3m3Value(p)), p);
  assert.equal(e3m3Round(5 / 6), 21); // 0.8125 is nearer than 0.875
  assert.equal(e3m3Round(100), 63);
});
