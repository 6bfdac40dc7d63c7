import { test } from "node:test";
import assert from "node:assert/strict";
import { CpuBackend, type CpuTensor } from "../../src/backend/cpu/cpu-backend.js";
import type { KvContext } from "../../src/kv/store.js";
import { kvStoreFactory } from "../../src/kv/spec.js";
import type { HostStore } from "../../src/kv/host-store.js";
import { SINKS, keepBudget } from "../../src/kv/selection.js";
import { streamingKeeps } from "../../src/kv/policies.js";

const HEADS = 4, KV = 2, D = 16, CAP = 64;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

/** Runs a prefill of `prompt` rows then decode rows up to position `last` on layers 0 and 1; returns the store and layer 1's last q. */
function drive(spec: string, prompt: number, last: number): { store: HostStore; q: Float32Array; k: Float32Array } {
  const b = new CpuBackend();
  const ctx: KvContext = { backend: b, layers: 2, heads: HEADS, kvHeads: KV, headDim: D, capacity: CAP, rope: b.ropeTable(new Float64Array(D / 2), CAP), format: "f32" };
  const store = kvStoreFactory(spec)(ctx) as HostStore;
  const r = rng(3);
  const keys = new Float32Array(CAP * KV * D);
  let q = new Float32Array(0);
  const t = (rows: number, cols: number): CpuTensor => {
    const x = b.activation(rows, cols);
    for (let i = 0; i < x.data.length; i++) x.data[i] = r();
    return x;
  };
  for (let pos = 0; pos <= last; pos += pos === 0 ? prompt : 1) {
    const rows = pos === 0 ? prompt : 1;
    for (let layer = 0; layer < 2; layer++) {
      const qt = t(rows, HEADS * D), kt = t(rows, KV * D), vt = t(rows, KV * D);
      if (layer === 1) {
        keys.set(kt.data, pos * KV * D);
        q = qt.data.slice();
      }
      store.step({ layer, pos0: pos, rows, heads: HEADS, h: qt, q: qt, k: kt, v: vt, att: b.activation(rows, HEADS * D), rope: () => {} });
    }
  }
  return { store, q, k: keys };
}

function list(store: HostStore, h: number): number[] {
  const s = store.selection;
  return Array.from(s.positions.subarray(h * s.stride, h * s.stride + s.counts[h]!));
}

test("StreamingLLM keeps exactly the sinks and the last K_i − 4 positions", () => {
  const last = 40, n = last + 1, k = keepBudget(n, 0.25);
  const { store } = drive("streaming:keep=0.25", 8, last);
  const want = [0, 1, 2, 3, ...Array.from({ length: k - SINKS }, (_, i) => n - (k - SINKS) + i)];
  for (let h = 0; h < HEADS; h++) assert.deepEqual(list(store, h), want);
  const fixed = drive("streaming:sink=2,window=5", 8, last).store;
  assert.deepEqual(list(fixed, 0), [0, 1, 36, 37, 38, 39, 40]);
});

test("StreamingLLM with dense0=0 windows layer 0 too: both layers hold only the window", () => {
  const last = 40, n = last + 1, k = keepBudget(n, 0.25), row = 2 * D * 4;
  const base = drive("streaming:keep=0.25", 8, last).store;
  const all = drive("streaming:keep=0.25,dense0=0", 8, last).store;
  // layer 0 whole (n positions) under the baseline rule, the window (k) with dense0=0; layer 1 the window in both
  assert.equal(base.bytes(), KV * (n + k) * row);
  assert.equal(all.bytes(), KV * (k + k) * row);
  assert.equal(all.usage.selectedSteps, 2 * base.usage.selectedSteps, "layer 0's decode steps select too");
  assert.throws(() => kvStoreFactory("streaming:keep=0.25,dense0=2"), /dense0=2 must be 0 or 1/);
});

test("StreamingLLM pyramid=s: the first windowed layer keeps keep·(1 + s), the last keep·(1 − s), mean keep", () => {
  const keeps = streamingKeeps(0.5, 8, 0, 0.5);
  assert.deepEqual([keeps[0], keeps[7]], [0.75, 0.25]);
  assert.ok(Math.abs(keeps.reduce((a, b) => a + b) / 8 - 0.5) < 1e-12, `mean ${keeps}`);
  assert.deepEqual(streamingKeeps(0.5, 8, 1, 0.5).slice(0, 2), [0.5, 0.75], "layer 0 stays whole (unwindowed) with dense0=1");
  assert.deepEqual(streamingKeeps(0.8, 3, 0, 0.5), [1, 0.8, 0.4], "a share is capped at 1");
  assert.deepEqual(streamingKeeps(0.5, 3, 0, -0.5), [0.25, 0.5, 0.75], "s < 0: more in the deeper layers");
  // two windowed layers (dense0=0): layer 0 at 0.25·1.5, layer 1 at 0.25·0.5; bytes are each layer's own window
  const last = 40, n = last + 1, row = 2 * D * 4;
  const store = drive("streaming:keep=0.25,dense0=0,pyramid=0.5", 8, last).store;
  assert.equal(store.bytes(), KV * (keepBudget(n, 0.375) + keepBudget(n, 0.125)) * row);
  assert.equal(list(store, 0).length, keepBudget(n, 0.125), "layer 1's window");
  assert.throws(() => kvStoreFactory("streaming:sink=4,window=8,pyramid=0.5"), /pyramid= shares keep= among layers; it needs keep=F/);
  const device = { kind: "webgpu", kvFormats: ["int8"] } as unknown as CpuBackend;
  const ctx: KvContext = { backend: device, layers: 2, heads: HEADS, kvHeads: KV, headDim: D, capacity: CAP, rope: new CpuBackend().ropeTable(new Float64Array(D / 2), CAP), format: "f32" };
  assert.throws(() => kvStoreFactory("streaming:keep=0.5,pyramid=0.5")(ctx), /pyramid= runs on the CPU only \(the webgpu backend's windowed attention takes one window for all layers\)/);
});

test("the oracle keeps the sinks plus each head's true top-K_i positions by q·k", () => {
  const last = 33, n = last + 1, k = keepBudget(n, 0.3);
  const { store, q, k: keys } = drive("oracle:keep=0.3", 10, last);
  for (let h = 0; h < HEADS; h++) {
    const g = Math.floor(h / (HEADS / KV));
    const score = Array.from({ length: n }, (_, t) => {
      let s = 0;
      for (let i = 0; i < D; i++) s += q[h * D + i]! * keys[t * KV * D + g * D + i]!;
      return { t, s };
    });
    const top = score.sort((a, b) => b.s - a.s || a.t - b.t).slice(0, k).map((x) => x.t);
    const want = [...new Set([0, 1, 2, 3, ...top])].sort((a, b) => a - b);
    assert.deepEqual(list(store, h), want, `head ${h}`);
  }
});

test("H2O and SnapKV hold K_i positions besides the sinks and keep the current one; Quest takes whole pages", () => {
  const last = 50, n = last + 1, k = keepBudget(n, 0.25);
  for (const spec of ["h2o:keep=0.25", "snapkv:keep=0.25,window=8"]) {
    const { store } = drive(spec, 30, last);
    for (let h = 0; h < HEADS; h++) {
      const l = list(store, h);
      assert.equal(l.filter((t) => t >= SINKS).length, k, `${spec} head ${h}: ${l}`);
      assert.ok(l.includes(last), `${spec} keeps the newest position`);
    }
    assert.ok(store.bytes() < n * 2 * 2 * KV * D * 4, `${spec} counts fewer resident bytes than dense`);
  }
  const { store } = drive("quest:keep=0.5,page=8", 30, last);
  for (let h = 0; h < HEADS; h++) {
    const pages = new Map<number, number>();
    for (const t of list(store, h)) if (t >= SINKS) pages.set(Math.floor(t / 8), (pages.get(Math.floor(t / 8)) ?? 0) + 1);
    for (const [p, c] of pages) assert.ok(c === Math.min(8, n - p * 8) || p === 0, `page ${p} whole (${c})`);
    assert.ok(list(store, h).length <= keepBudget(n, 0.5) + SINKS);
  }
});
