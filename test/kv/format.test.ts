import { test } from "node:test";
import assert from "node:assert/strict";
import { CpuBackend, type CpuTensor } from "../../src/backend/cpu/cpu-backend.js";
import type { KvContext, KvStore } from "../../src/kv/store.js";
import { kvStoreFactory } from "../../src/kv/spec.js";
import { KV_FORMATS, kvFormat } from "../../src/kv/format.js";
import { int8Format } from "../../src/quant/int8.js";
import { int4AsymFormat } from "../../src/quant/int4-asym.js";
import { int3AsymFormat } from "../../src/quant/int3-asym.js";
import { fp3RazerFormat } from "../../src/quant/fp3-razer.js";
import { nvfp4RazerFormat } from "../../src/quant/nvfp4-razer.js";
import { nvfp4Format } from "../../src/quant/nvfp4.js";

const LAYERS = 2, HEADS = 4, KV_HEADS = 2, D = 64, CAP = 16;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

function filled(b: CpuBackend, rows: number, cols: number, r: () => number): CpuTensor {
  const t = b.activation(rows, cols);
  for (let i = 0; i < t.data.length; i++) t.data[i] = r() * (i % 7 === 0 ? 4 : 1);
  return t;
}

test("each quantized KV format's attention equals the dense attention over its dequantized K/V, bit for bit", () => {
  for (const format of KV_FORMATS.filter((f) => f !== "f32")) {
    const b = new CpuBackend(); // reference engine: its attention is the plain TypeScript loop
    const ctx: KvContext = { backend: b, layers: LAYERS, heads: HEADS, kvHeads: KV_HEADS, headDim: D, capacity: CAP, rope: b.ropeTable(new Float64Array(D / 2), CAP), format };
    const store: KvStore = kvStoreFactory("dense")(ctx);
    const ref = b.kvCache(LAYERS, KV_HEADS, D, CAP);
    const codec = kvFormat(format);
    const r = rng(7);
    let pos = 0;
    for (const rows of [5, 1, 1]) {
      for (let layer = 0; layer < LAYERS; layer++) {
        const q = filled(b, rows, HEADS * D, r), k = filled(b, rows, KV_HEADS * D, r), v = filled(b, rows, KV_HEADS * D, r);
        const att = b.activation(rows, HEADS * D), want = b.activation(rows, HEADS * D);
        // the reference cache gets the codec's round trip of every (token, head) row
        const kq = b.activation(rows, KV_HEADS * D), vq = b.activation(rows, KV_HEADS * D);
        const bytes = new Uint8Array(codec.headBytes(D));
        for (let i = 0; i < rows * KV_HEADS; i++) {
          codec.encode(k.data, i * D, D, bytes, 0);
          codec.decode(bytes, 0, D, kq.data, i * D);
          codec.encode(v.data, i * D, D, bytes, 0);
          codec.decode(bytes, 0, D, vq.data, i * D);
        }
        b.kvWrite(ref, layer, kq, vq, pos);
        b.attention(want, q, ref, layer, pos, HEADS);
        store.step({ layer, pos0: pos, rows, heads: HEADS, h: q, q, k, v, att, rope: () => {} });
        assert.deepEqual(att.data, want.data, `${format}: layer ${layer}, rows at ${pos}`);
        assert.ok(kq.data.some((x, i) => x !== k.data[i]), `${format} actually quantizes`);
      }
      pos += rows;
    }
    const perToken = LAYERS * 2 * KV_HEADS * codec.headBytes(D);
    assert.equal(store.bytes(), pos * perToken, `${format} bytes`);
    assert.ok(perToken < LAYERS * 2 * KV_HEADS * D * 4, `${format} is smaller than f32`);
  }
});

test("each KV format's head-row round trip is its weight codec's pack and unpack of a [1, headDim] row", () => {
  const codecs = {
    int8: int8Format, int4: int4AsymFormat(32), int4g64: int4AsymFormat(64), int3g64: int3AsymFormat(64), "fp3-razer": fp3RazerFormat(64),
    razer: nvfp4RazerFormat(8), nvfp4: nvfp4Format,
  };
  assert.deepEqual(Object.keys(codecs).sort(), KV_FORMATS.filter((f) => f !== "f32").sort(), "every quantized KV format is checked");
  const r = rng(11);
  for (const [name, q] of Object.entries(codecs)) {
    const f = kvFormat(name);
    for (const d of [64, 8, 40]) {
      const row = Float32Array.from({ length: 3 * d }, () => r() * 3);
      const bytes = new Uint8Array(f.headBytes(d) + 5);
      const got = new Float32Array(d + 2);
      f.encode(row, d, d, bytes, 5);
      f.decode(bytes, 5, d, got, 2);
      const want = q.unpack(q.pack(row.slice(d, 2 * d), 1, d));
      assert.deepEqual(got.subarray(2), want, `${name}, headDim ${d}`);
    }
  }
});

test("the 3-bit KV formats store the bytes their layouts say: 28 and 26 bytes a head row of 64", () => {
  // int3g64: 64 × 3 bits + f16 scale + f16 zero; fp3-razer: 64 × 3 bits + one 16-bit scale-and-SV word
  assert.equal(kvFormat("int3g64").headBytes(64), 24 + 4);
  assert.equal(kvFormat("fp3-razer").headBytes(64), 24 + 2);
  assert.equal(kvFormat("int4g64").headBytes(64), 32 + 4);
});

test("a backend without host views refuses the host-only KV formats by name when the cache is made", () => {
  // the shape of the WebGPU backend as the KV code sees it: no hostView, its own formats listed
  const device = { kind: "webgpu", kvFormats: ["int8", "int4", "razer", "nvfp4"] } as unknown as CpuBackend;
  const cpu = new CpuBackend();
  for (const format of ["int4g64", "int3g64", "fp3-razer"]) {
    const ctx: KvContext = { backend: device, layers: LAYERS, heads: HEADS, kvHeads: KV_HEADS, headDim: D, capacity: CAP, rope: cpu.ropeTable(new Float64Array(D / 2), CAP), format };
    assert.throws(() => kvStoreFactory("dense")(ctx), new RegExp(`--kv dense --kv-format ${format}: ${format} is a CPU-only KV format; the webgpu backend stores KV as f32, int8, int4, razer, nvfp4`));
  }
});
