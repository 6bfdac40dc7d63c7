import { test } from "node:test";
import assert from "node:assert/strict";
import { quantizeQ4_0, dequantizeQ4_0 } from "../../src/quant/q4_0.js";
import { f16ToF32 } from "../../src/tensor/half.js";
import { decodeRow } from "../../src/backend/cpu/reference.js";

function block(head: number[]): number[] {
  return [...head, ...new Array(32 - head.length).fill(0)];
}

/** The 32 nibbles of block b, element order (low nibbles are elements 0..15, high nibbles 16..31). */
function nibbles(q: Uint8Array, b: number): number[] {
  const out = new Array<number>(32);
  for (let j = 0; j < 16; j++) {
    const byte = q[b * 18 + 2 + j]!;
    out[j] = byte & 15;
    out[j + 16] = byte >> 4;
  }
  return out;
}

function scaleBits(q: Uint8Array, b: number): number {
  return q[b * 18]! | (q[b * 18 + 1]! << 8);
}

test("q4_0 blocks derived by hand", () => {
  // block 0: the largest magnitude is -8, so d = -8 / -8 = 1 and nibble = min(15, trunc(x + 8.5))
  const b0 = block([-8, 7, 7.4, -0.6, 0.5, -3.5, -0.5, -0.50001]);
  b0[16] = 3; // a high nibble
  b0[31] = -7.9;
  // block 1: 8 comes before -8, so max = 8 and d = -1: nibble = min(15, trunc(-x + 8.5));
  // -8 gives 16.5 -> 16, clamped to 15
  const b1 = block([8, -8, -7, 2]);
  const q = quantizeQ4_0(Float32Array.from([...b0, ...b1, ...block([])]));
  assert.equal(q.byteLength, 3 * 18);
  assert.equal(scaleBits(q, 0), 0x3c00); // 1.0
  const want0 = block([0, 15, 15, 7, 9, 5, 8, 7]).map((v, i) => (i >= 8 ? 8 : v));
  want0[16] = 11;
  want0[31] = 0;
  assert.deepEqual(nibbles(q, 0), want0);
  // the packing: byte j = nibble j | nibble (j + 16) << 4
  assert.equal(q[2], 0 | (11 << 4));
  assert.equal(scaleBits(q, 1), 0xbc00); // -1.0
  assert.deepEqual(nibbles(q, 1), block([0, 15, 15, 6]).map((v, i) => (i >= 4 ? 8 : v)));
  // all zero: d = 0.0f / -8 = -0.0f, stored as f16 -0 (0x8000) as in C; every value maps to trunc(0 + 8.5) = 8
  assert.equal(scaleBits(q, 2), 0x8000);
  assert.deepEqual(nibbles(q, 2), new Array(32).fill(8));
});

test("q4_0 round trip: within half a step, one step at the clamped end", () => {
  let seed = 11;
  const next = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const n = 32 * 200;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (next() - 0.5) * 10 ** ((i >> 5) % 7 - 3);
  const q = quantizeQ4_0(x);
  const y = dequantizeQ4_0(q, n);
  for (let b = 0; b < n / 32; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j]!;
      if (amax < Math.abs(v)) [amax, max] = [Math.abs(v), v];
    }
    const d = Math.fround(max / -8);
    const d16 = f16ToF32(scaleBits(q, b));
    for (let j = 0; j < 32; j++) {
      const i = b * 32 + j;
      // x / d lies in [-8, 8]; above 7.5 the nibble clamps at 15 and the error grows to one step
      const steps = x[i]! / d > 7.5 ? 1 : 0.5;
      const bound = Math.abs(d) * steps * (1 + 1e-6) + 8 * Math.abs(d - d16);
      assert.ok(Math.abs(x[i]! - y[i]!) <= bound, `block ${b} element ${j}: ${x[i]} -> ${y[i]} (bound ${bound})`);
    }
  }
});

test("q4_0 dequantization agrees with the CPU backend's row decoder", () => {
  const x = Float32Array.from({ length: 64 }, (_, i) => Math.cos(i * 1.3) * (2 + i));
  const q = quantizeQ4_0(x);
  const row = new Float32Array(64);
  decodeRow("q4_0", q, 0, 64, row);
  assert.deepEqual(dequantizeQ4_0(q, 64), row);
});

test("q4_0 refuses partial blocks", () => {
  assert.throws(() => quantizeQ4_0(new Float32Array(31)), /whole blocks/);
  assert.throws(() => dequantizeQ4_0(new Uint8Array(17), 32), /need 18 bytes/);
});
