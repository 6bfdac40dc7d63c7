import { test } from "node:test";
import assert from "node:assert/strict";
import { quantizeQ8_0, dequantizeQ8_0 } from "../../src/quant/q8_0.js";
import { f16ToF32 } from "../../src/tensor/half.js";
import { decodeRow } from "../../src/backend/cpu/reference.js";

/** One block of 32 values: `head` first, the rest zero. */
function block(head: number[]): number[] {
  return [...head, ...new Array(32 - head.length).fill(0)];
}

function scaleBits(blocks: Uint8Array, b: number): number {
  return blocks[b * 34]! | (blocks[b * 34 + 1]! << 8);
}

function quants(blocks: Uint8Array, b: number): number[] {
  return Array.from(new Int8Array(blocks.buffer, blocks.byteOffset + b * 34 + 2, 32));
}

test("q8_0 blocks derived by hand", () => {
  const x = Float32Array.from([
    // amax 127: d = 1, q = round(x) with halves away from zero (0.5 -> 1, -0.5 -> -1, 2.5 -> 3)
    ...block([127, -127, 0.5, -0.5, 1.5, -1.5, 2.5, 2.4999, 63.5, -0.49]),
    // amax 254: d = 2, q = round(x / 2)
    ...block([254, 3, -3, 1, -1, 5, 0.9]),
    // all zero: d = 0 and every q is 0
    ...block([]),
    // amax 1: d = f32(1/127) = 0.0078740157187..., its inverse rounds to exactly 127 in f32, so
    // 0.5 -> 63.5 -> 64; stored as f16: 2^-7 * (1 + 8/1024) = 0x2008
    ...block([1, 0.5, -1]),
  ]);
  const q = quantizeQ8_0(x);
  assert.equal(q.byteLength, 4 * 34);
  assert.equal(scaleBits(q, 0), 0x3c00); // 1.0
  assert.deepEqual(quants(q, 0), block([127, -127, 1, -1, 2, -2, 3, 2, 64, 0]));
  assert.equal(scaleBits(q, 1), 0x4000); // 2.0
  assert.deepEqual(quants(q, 1), block([127, 2, -2, 1, -1, 3, 0]));
  assert.equal(scaleBits(q, 2), 0);
  assert.deepEqual(quants(q, 2), block([]));
  assert.equal(scaleBits(q, 3), 0x2008);
  assert.deepEqual(quants(q, 3), block([127, 64, -127]));
});

test("q8_0 round trip stays within half a step (plus the f16 rounding of the scale)", () => {
  let seed = 7;
  const next = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const n = 32 * 200;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (next() - 0.5) * 10 ** ((i >> 5) % 7 - 3); // blocks of very different scales
  const q = quantizeQ8_0(x);
  const y = dequantizeQ8_0(q, n);
  for (let b = 0; b < n / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const d = Math.fround(amax / 127);
    const d16 = f16ToF32(scaleBits(q, b));
    const bound = (d / 2) * (1 + 1e-6) + 127 * Math.abs(d - d16);
    for (let j = 0; j < 32; j++) {
      const i = b * 32 + j;
      assert.ok(Math.abs(x[i]! - y[i]!) <= bound, `block ${b} element ${j}: ${x[i]} -> ${y[i]} (bound ${bound})`);
    }
  }
});

test("q8_0 dequantization agrees with the CPU backend's row decoder", () => {
  const x = Float32Array.from({ length: 96 }, (_, i) => Math.sin(i * 0.7) * (1 + i));
  const q = quantizeQ8_0(x);
  const row = new Float32Array(96);
  decodeRow("q8_0", q, 0, 96, row);
  assert.deepEqual(dequantizeQ8_0(q, 96), row);
});

test("q8_0 refuses partial blocks", () => {
  assert.throws(() => quantizeQ8_0(new Float32Array(33)), /whole blocks/);
  assert.throws(() => dequantizeQ8_0(new Uint8Array(33), 32), /need 34 bytes/);
});
