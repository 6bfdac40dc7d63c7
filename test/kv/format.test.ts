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
import type { QuantFormat } from "../../src/quant/format.js";
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
    int8: int8Format, int4: int4AsymFormat(32), int4g64: int4AsymFormat(64), int3g64: int3AsymFormat(64), "fp3-razer": fp3RazerFormat(64), "fp3-razer-g32": fp3RazerFormat(32),
    razer: nvfp4RazerFormat(8), nvfp4: nvfp4Format,
  };
  assert.deepEqual(Object.keys(codecs).sort(), KV_FORMATS.filter((f) => f !== "f32" && !f.endsWith("-rot") && !f.endsWith("-clip")).sort(), "every unrotated KV format is checked");
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

test("the 3-bit KV formats store the bytes their layouts say: 28, 26 and 28 bytes a head row of 64", () => {
  // int3g64: 64 × 3 bits + f16 scale + f16 zero; fp3-razer: 64 × 3 bits + one 16-bit scale-and-SV word
  assert.equal(kvFormat("int3g64").headBytes(64), 24 + 4);
  assert.equal(kvFormat("fp3-razer").headBytes(64), 24 + 2);
  assert.equal(kvFormat("fp3-razer-g32").headBytes(64), 24 + 4);
  assert.equal(kvFormat("int4g64").headBytes(64), 32 + 4);
});

test("a backend without host views refuses the host-only KV formats by name when the cache is made", () => {
  // the shape of the WebGPU backend as the KV code sees it: no hostView, its own formats listed
  const device = { kind: "webgpu", kvFormats: ["int8", "int4", "razer", "nvfp4"] } as unknown as CpuBackend;
  const cpu = new CpuBackend();
  for (const format of ["int4g64", "int3g64", "fp3-razer", "fp3-razer-rot"]) {
    const ctx: KvContext = { backend: device, layers: LAYERS, heads: HEADS, kvHeads: KV_HEADS, headDim: D, capacity: CAP, rope: cpu.ropeTable(new Float64Array(D / 2), CAP), format };
    assert.throws(() => kvStoreFactory("dense")(ctx), new RegExp(`--kv dense --kv-format ${format}: ${format} is a CPU-only KV format; the webgpu backend stores KV as f32, int8, int4, razer, nvfp4`));
  }
});

/** H·x/√n by the Sylvester matrix, H[i][j] = (−1)^popcount(i & j), in f64 (independent of the butterflies). */
function hadamardMatrix(x: ArrayLike<number>, n: number): Float64Array {
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (let j = 0; j < n; j++) {
      let p = i & j, odd = 0;
      while (p) (odd ^= p & 1), (p >>= 1);
      acc += odd ? -x[j]! : x[j]!;
    }
    y[i] = acc / Math.sqrt(n);
  }
  return y;
}

test("the rotated KV formats: the codec's round trip of the Hadamard-rotated row, rotated back; same bytes", () => {
  const codecs: Record<string, QuantFormat> = { "int4g64-rot": int4AsymFormat(64), "int3g64-rot": int3AsymFormat(64), "fp3-razer-rot": fp3RazerFormat(64), "fp3-razer-g32-rot": fp3RazerFormat(32) };
  assert.deepEqual(Object.keys(codecs).sort(), KV_FORMATS.filter((f) => f.endsWith("-rot")).sort());
  const r = rng(13);
  for (const [name, q] of Object.entries(codecs)) {
    const f = kvFormat(name);
    assert.equal(f.headBytes(64), kvFormat(name.replace(/-rot$/, "")).headBytes(64), `${name} bytes`);
    for (let trial = 0; trial < 20; trial++) {
      const row = Float32Array.from({ length: 64 }, (_, k) => r() * (k === 5 ? 20 : 2));
      const bytes = new Uint8Array(f.headBytes(64));
      const got = new Float32Array(64);
      f.encode(row, 0, 64, bytes, 0);
      f.decode(bytes, 0, 64, got, 0);
      const want = hadamardMatrix(q.unpack(q.pack(Float32Array.from(hadamardMatrix(row, 64)), 1, 64)), 64);
      for (let k = 0; k < 64; k++) assert.ok(Math.abs(got[k]! - want[k]!) <= 1e-5 * (1 + Math.abs(want[k]!)), `${name} trial ${trial} [${k}]: ${got[k]} vs ${want[k]}`);
    }
    assert.throws(() => f.encode(new Float32Array(48), 0, 48, new Uint8Array(64), 0), new RegExp(`--kv-format ${name}: head_dim 48 is not a power of two`));
  }
});

test("the rotation lowers 3-bit error on rows with an outlier channel (the reason it exists)", () => {
  const r = rng(21);
  for (const name of ["int4g64", "int3g64", "fp3-razer"]) {
    const plain = kvFormat(name), rot = kvFormat(`${name}-rot`);
    let ePlain = 0, eRot = 0;
    for (let trial = 0; trial < 200; trial++) {
      const row = Float32Array.from({ length: 64 }, (_, k) => r() * (k === 9 ? 12 : 1));
      for (const [f, add] of [[plain, (e: number) => (ePlain += e)], [rot, (e: number) => (eRot += e)]] as const) {
        const bytes = new Uint8Array(f.headBytes(64));
        const got = new Float32Array(64);
        f.encode(row, 0, 64, bytes, 0);
        f.decode(bytes, 0, 64, got, 0);
        let e = 0;
        for (let k = 0; k < 64; k++) e += (got[k]! - row[k]!) ** 2;
        add(e);
      }
    }
    assert.ok(eRot < 0.5 * ePlain, `${name}: rotated ${eRot} vs plain ${ePlain}`);
  }
});

test("fp3-razer-g32-clip: the codec's pack with the clipping search, never a larger row error than without it", () => {
  const f = kvFormat("fp3-razer-g32-clip"), plain = kvFormat("fp3-razer-g32"), q = fp3RazerFormat(32);
  assert.equal(f.headBytes(64), plain.headBytes(64));
  const r = rng(29);
  let eClip = 0, ePlain = 0;
  for (let trial = 0; trial < 100; trial++) {
    const row = Float32Array.from({ length: 64 }, () => r() * 2 + (r() > 0.95 ? r() * 8 : 0));
    const bytes = new Uint8Array(f.headBytes(64));
    const got = new Float32Array(64), base = new Float32Array(64);
    f.encode(row, 0, 64, bytes, 0);
    f.decode(bytes, 0, 64, got, 0);
    assert.deepEqual(got, q.unpack(q.pack(row, 1, 64, { clip: true })), `trial ${trial}`);
    plain.encode(row, 0, 64, bytes, 0);
    plain.decode(bytes, 0, 64, base, 0);
    let a = 0, b = 0;
    for (let k = 0; k < 64; k++) (a += (got[k]! - row[k]!) ** 2), (b += (base[k]! - row[k]!) ** 2);
    assert.ok(a <= b * (1 + 1e-12), `trial ${trial}: clipped ${a} > unclipped ${b}`);
    (eClip += a), (ePlain += b);
  }
  assert.ok(eClip < ePlain, `the search finds something: ${eClip} vs ${ePlain}`);
});
