import { test } from "node:test";
import assert from "node:assert/strict";
import { CpuBackend, type CpuTensor } from "../../src/backend/cpu/cpu-backend.js";
import type { KvContext, KvStore } from "../../src/kv/store.js";
import { kvStoreFactory } from "../../src/kv/spec.js";
import { type KvFormat, checkKvFormat, kvFormat, parseKvFormat } from "../../src/kv/format.js";
import { HostStore } from "../../src/kv/host-store.js";

const LAYERS = 3, HEADS = 4, KV_HEADS = 2, D = 64, CAP = 24;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

function filled(b: CpuBackend, rows: number, cols: number, r: () => number): CpuTensor {
  const t = b.activation(rows, cols);
  for (let i = 0; i < t.data.length; i++) t.data[i] = r() * (i % 7 === 0 ? 4 : 1);
  return t;
}

/** The round trip of every (token, head) row of t through codec (f32: the row itself). */
function roundTrip(b: CpuBackend, t: CpuTensor, rows: number, codec: KvFormat | undefined): CpuTensor {
  const out = b.activation(rows, KV_HEADS * D);
  if (!codec) return out.data.set(t.data), out;
  const bytes = new Uint8Array(codec.headBytes(D));
  for (let i = 0; i < rows * KV_HEADS; i++) {
    codec.encode(t.data, i * D, D, bytes, 0);
    codec.decode(bytes, 0, D, out.data, i * D);
  }
  return out;
}

const codecOf = (name: string) => (name === "f32" ? undefined : kvFormat(name));

/**
 * Runs `kv` with `format` over prefill + decode steps and checks every step's attention against a reference
 * engine's dense attention (or its windowed attention: streaming's sinks and recent rows) over an f32 cache
 * holding each part's round trip by the part's own codec: layer 0's keys by k0, values by v0, the others by k, v.
 */
function checkAgainstRoundTrips(kv: string, format: string, window?: (n: number) => { sinks: number; recent: number }): KvStore {
  const b = new CpuBackend();
  const ctx: KvContext = { backend: b, layers: LAYERS, heads: HEADS, kvHeads: KV_HEADS, headDim: D, capacity: CAP, rope: b.ropeTable(new Float64Array(D / 2), CAP), format };
  const store = kvStoreFactory(kv)(ctx);
  const ref = b.kvCache(LAYERS, KV_HEADS, D, CAP);
  const parts = parseKvFormat(format);
  const r = rng(5);
  let pos = 0;
  for (const rows of [9, 1, 1, 1, 1, 1, 1, 1, 1]) {
    for (let layer = 0; layer < LAYERS; layer++) {
      const q = filled(b, rows, HEADS * D, r), k = filled(b, rows, KV_HEADS * D, r), v = filled(b, rows, KV_HEADS * D, r);
      const att = b.activation(rows, HEADS * D), want = b.activation(rows, HEADS * D);
      const kq = roundTrip(b, k, rows, codecOf(layer === 0 ? parts.k0 : parts.k));
      const vq = roundTrip(b, v, rows, codecOf(layer === 0 ? parts.v0 : parts.v));
      b.kvWrite(ref, layer, kq, vq, pos);
      const w = window?.(pos + 1);
      if (rows === 1 && layer > 0 && w && w.sinks + w.recent < pos + 1) windowAttention(b, want, q, ref, layer, pos, w.sinks, w.recent);
      else b.attention(want, q, ref, layer, pos, HEADS);
      store.step({ layer, pos0: pos, rows, heads: HEADS, h: q, q, k, v, att, rope: () => {} });
      for (let i = 0; i < want.data.length; i++) {
        assert.ok(Math.abs(att.data[i]! - want.data[i]!) <= 1e-6 * (1 + Math.abs(want.data[i]!)), `${kv} ${format}: layer ${layer}, rows at ${pos}, [${i}] ${att.data[i]} vs ${want.data[i]}`);
      }
    }
    pos += rows;
  }
  return store;
}

/** Dense attention of the query at `pos` over only the sinks and the `recent` latest rows of ref (compacted into a fresh cache). */
function windowAttention(b: CpuBackend, out: CpuTensor, q: CpuTensor, ref: ReturnType<CpuBackend["kvCache"]>, layer: number, pos: number, sinks: number, recent: number): void {
  const { k, v } = b.kvView!(ref, layer);
  const keep = [...Array.from({ length: sinks }, (_, i) => i), ...Array.from({ length: recent }, (_, i) => pos + 1 - recent + i)];
  const tmp = b.kvCache(LAYERS, KV_HEADS, D, CAP);
  const kk = b.activation(keep.length, KV_HEADS * D), vv = b.activation(keep.length, KV_HEADS * D);
  keep.forEach((t, i) => {
    kk.data.set(k.subarray(t * KV_HEADS * D, (t + 1) * KV_HEADS * D), i * KV_HEADS * D);
    vv.data.set(v.subarray(t * KV_HEADS * D, (t + 1) * KV_HEADS * D), i * KV_HEADS * D);
  });
  // the compacted rows at positions 0 .. m - 1, the query last: causal attention then reads all m of them
  b.kvWrite(tmp, layer, kk, vv, 0);
  b.attention(out, q, tmp, layer, keep.length - 1, HEADS);
}

const MIXED = "k=int4g64-rot,v=fp3-razer-g32-rot,k0=f32,v0=int3g64";

test("a mixed KV format's attention is the attention over each part's own round trip (keys, values, layer 0 apart)", () => {
  const store = checkAgainstRoundTrips("dense", MIXED);
  // every position resident: layer 0 at f32 keys (256 B a head row) and int3g64 values (28), the others at 36 + 28
  assert.equal(store.bytes(), store.length * KV_HEADS * ((256 + 28) + (LAYERS - 1) * (36 + 28)));
});

test("with StreamingLLM a mixed format attends over its window and counts the kept rows at their own bytes", () => {
  // keep 0.5 with 2 sinks: at n visible, K = ceil(n / 2) positions, the sinks and the K - 2 most recent
  const store = checkAgainstRoundTrips("streaming:keep=0.5,sink=2", MIXED, (n) => ({ sinks: 2, recent: Math.ceil(n / 2) - 2 }));
  const n = store.length, kept = Math.ceil(n / 2);
  assert.equal(store.bytes(), KV_HEADS * (n * (256 + 28) + (LAYERS - 1) * kept * (36 + 28)));
  assert.ok((store as HostStore).usage.selectedSteps > 0, "the window was used");
});

test("a mixed format whose parts are all one format is that format, bit for bit", () => {
  for (const name of ["int4g64-rot", "fp3-razer-g32"]) {
    const b = new CpuBackend();
    const stores = [name, `k=${name},v=${name},k0=${name},v0=${name}`, `v=${name},k=${name}`].map((format) =>
      kvStoreFactory("streaming:keep=0.5")({ backend: b, layers: LAYERS, heads: HEADS, kvHeads: KV_HEADS, headDim: D, capacity: CAP, rope: b.ropeTable(new Float64Array(D / 2), CAP), format }));
    const r = rng(9);
    let pos = 0;
    for (const rows of [10, 1, 1, 1]) {
      for (let layer = 0; layer < LAYERS; layer++) {
        const q = filled(b, rows, HEADS * D, r), k = filled(b, rows, KV_HEADS * D, r), v = filled(b, rows, KV_HEADS * D, r);
        const outs = stores.map((s) => {
          const att = b.activation(rows, HEADS * D);
          s.step({ layer, pos0: pos, rows, heads: HEADS, h: q, q, k, v, att, rope: () => {} });
          return att.data;
        });
        assert.deepEqual(outs[1], outs[0], `${name}: layer ${layer}, rows at ${pos}`);
        assert.deepEqual(outs[2], outs[0], `${name}: layer ${layer}, rows at ${pos}`);
      }
      pos += rows;
    }
    assert.equal(stores[1]!.bytes(), stores[0]!.bytes());
  }
});

test("mixed KV format specs: parts, defaults, and errors naming the spec and the part", () => {
  assert.deepEqual(parseKvFormat("int4"), { k: "int4", v: "int4", k0: "int4", v0: "int4" });
  assert.deepEqual(parseKvFormat("k=int4g64,v=int3g64"), { k: "int4g64", v: "int3g64", k0: "int4g64", v0: "int3g64" });
  assert.deepEqual(parseKvFormat("v=int3g64, k=int4g64 ,k0=f32"), { k: "int4g64", v: "int3g64", k0: "f32", v0: "int3g64" });
  const bad: [string, RegExp][] = [
    ["k=int4g64", /--kv-format k=int4g64: a mixed format needs both k=F and v=F/],
    ["k=int4g64,v=int3", /--kv-format k=int4g64,v=int3: unknown KV format "int3" for v \(known: f32,/],
    ["k=int4,v=int4,x=int8", /unknown part "x" \(allowed: k, v, k0, v0\)/],
    ["k=int4,v=int4,k=int8", /part k given twice/],
    ["k=int4,v=", /malformed part "v="/],
    ["k=int4,int8", /malformed part "int8"/],
  ];
  for (const [spec, re] of bad) assert.throws(() => checkKvFormat(spec), re, spec);
});

test("a backend without host views refuses a mixed format by name when the cache is made", () => {
  const device = { kind: "webgpu", kvFormats: ["int8", "int4", "razer", "nvfp4"] } as unknown as CpuBackend;
  const cpu = new CpuBackend();
  const ctx: KvContext = { backend: device, layers: LAYERS, heads: HEADS, kvHeads: KV_HEADS, headDim: D, capacity: CAP, rope: cpu.ropeTable(new Float64Array(D / 2), CAP), format: "k=int4,v=int4" };
  assert.throws(() => kvStoreFactory("dense")(ctx), /--kv dense --kv-format k=int4,v=int4: k=int4,v=int4 is a CPU-only KV format/);
});
