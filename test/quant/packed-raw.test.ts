import { test } from "node:test";
import assert from "node:assert/strict";
import { QUANT_FORMATS } from "../../src/quant/formats.js";
import { packedToRaw, rawToPacked, tensorBytes } from "../../src/quant/packed-raw.js";
import { rawTensor } from "../../src/tensor/raw.js";

function gaussian(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
}

for (const f of QUANT_FORMATS) {
  test(`${f.name}: layout() gives the byte counts pack() produces, and the RawTensor round trip keeps every byte`, () => {
    for (const [rows, cols] of [[3, 200], [5, 256], [2, 17]] as [number, number][]) {
      const p = f.pack(gaussian(rows * cols, rows * cols), rows, cols);
      assert.deepEqual(f.layout(rows, cols), { codeBytes: p.codes.byteLength, scaleBytes: p.scales.byteLength });
      const raw = packedToRaw("w", p);
      assert.equal(raw.data.byteLength, tensorBytes(raw.dtype, [rows, cols]));
      rawTensor("w", raw.dtype, raw.shape, raw.data); // the generic size check accepts it
      const back = rawToPacked(raw);
      assert.deepEqual(f.unpack(back), f.unpack(p));
      assert.equal(back.tensorScale, p.tensorScale);
    }
  });
}

test("rawToPacked names the tensor when its bytes do not fit the shape", () => {
  const p = QUANT_FORMATS[1]!.pack(gaussian(256, 1), 1, 256);
  const raw = packedToRaw("model.layers.0.mlp.up_proj.weight", p);
  assert.throws(() => rawToPacked({ ...raw, data: raw.data.subarray(1) }), /model\.layers\.0\.mlp\.up_proj\.weight.*needs \d+ bytes, got/);
  assert.throws(() => rawToPacked({ ...raw, dtype: "f16" }), /not a packed format/);
});
