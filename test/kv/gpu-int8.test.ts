/**
 * The WebGPU int8 KV cache (SwiftShader in CI, tiny shapes): its attention equals the f32 attention kernel
 * over the dequantized cache bit for bit, its codes follow the CPU int8 KV codec, and it agrees with the
 * CPU's int8 KV store.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { CpuBackend } from "../../src/backend/cpu/cpu-backend.js";
import { GpuTensor, type GpuKVCache } from "../../src/backend/webgpu/webgpu-backend.js";
import type { KvContext } from "../../src/kv/store.js";
import { kvStoreFactory } from "../../src/kv/spec.js";
import { kvFormat } from "../../src/kv/format.js";
import { loadModel } from "../../src/load.js";
import type { KVCache } from "../../src/backend/backend.js";
import { STORIES } from "../paths.js";
import { Rng, assertClose, openOrSkip, randoms, tensorOf } from "../backend/webgpu/helpers.js";

const { gpu, reason } = await openOrSkip();
after(() => gpu?.dispose());

const HEADS = 4, KV = 2, D = 64, CAP = 16, WIDTH = KV * D;

test("int8 KV on WebGPU: attention over codes = attention over the dequantized cache; codes follow the CPU codec", { skip: !gpu && reason }, async () => {
  const g = gpu!;
  const rng = new Rng(5);
  const cache = g.kvCache(1, KV, D, CAP, "int8") as GpuKVCache;
  const plain = g.kvCache(1, KV, D, CAP);
  const cpu = new CpuBackend();
  const ctx: KvContext = { backend: cpu, layers: 1, heads: HEADS, kvHeads: KV, headDim: D, capacity: CAP, rope: cpu.ropeTable(new Float64Array(D / 2), CAP), format: "int8" };
  const host = kvStoreFactory("dense")(ctx);
  const codec = kvFormat("int8");
  let pos = 0;
  for (const rows of [6, 1, 1]) {
    const kd = randoms(rows * WIDTH, rng, 2), vd = randoms(rows * WIDTH, rng, 2), qd = randoms(rows * HEADS * D, rng);
    g.kvWrite(cache, 0, tensorOf(g, rows, WIDTH, kd), tensorOf(g, rows, WIDTH, vd), pos);
    const got = g.activation(rows, HEADS * D);
    g.attention(got, tensorOf(g, rows, HEADS * D, qd), cache, 0, pos, HEADS);
    // dequantize the GPU's own codes on the host and run the f32 kernel over them
    const len = pos + rows;
    const deq = async (codes: GpuKVCache["k"][number], scales: GpuKVCache["k"][number]) => {
      const c = new Int8Array((await g.read(new GpuTensor(len, WIDTH / 4, codes))).buffer);
      const s = await g.read(new GpuTensor(len, KV, scales));
      return Float32Array.from(c, (x, i) => x * s[Math.floor(i / D)]!);
    };
    const kq = await deq(cache.k[0]!, cache.kScales[0]!), vq = await deq(cache.v[0]!, cache.vScales[0]!);
    g.kvWrite(plain, 0, tensorOf(g, len, WIDTH, kq), tensorOf(g, len, WIDTH, vq), 0);
    const want = g.activation(rows, HEADS * D);
    g.attention(want, tensorOf(g, rows, HEADS * D, qd), plain, 0, pos, HEADS);
    assert.deepEqual(await g.read(got), await g.read(want), `rows at ${pos}`);
    // the new rows: the CPU codec's codes (up to one step where x/s sits on a rounding boundary) and scales
    const bytes = new Uint8Array(codec.headBytes(D)), ref = new Float32Array(D);
    let off = 0;
    for (let i = 0; i < rows * KV; i++) {
      for (const [src, q] of [[kd, kq], [vd, vq]] as const) {
        codec.encode(src, i * D, D, bytes, 0);
        codec.decode(bytes, 0, D, ref, 0);
        const scale = new DataView(bytes.buffer).getFloat32(D, true);
        for (let j = 0; j < D; j++) {
          const diff = Math.abs(q[pos * WIDTH + i * D + j]! - ref[j]!);
          assert.ok(diff <= scale * 1.0001, `code ${i}/${j}`);
          // the GPU's f32 division may round the scale differently by an ulp or two: a code flip is a bigger gap
          if (diff > 1e-6 * scale * 128) off++;
        }
      }
    }
    assert.ok(off <= rows * KV * D * 2 * 0.01, `${off} codes differ from the CPU codec`);
    // and the CPU's int8 store (host attention over its own codes) agrees closely
    const att = cpu.activation(rows, HEADS * D), q = cpu.activation(rows, HEADS * D);
    q.data.set(qd);
    const k = cpu.activation(rows, WIDTH), v = cpu.activation(rows, WIDTH);
    k.data.set(kd);
    v.data.set(vd);
    host.step({ layer: 0, pos0: pos, rows, heads: HEADS, h: q, q, k, v, att, rope: () => {} });
    assertClose(await g.read(got), att.data, `CPU int8 store, rows at ${pos}`, 1e-3, 1e-3);
    pos += rows;
  }
});

test("WebGPU: dense through the KV interface is bit-identical to the plain cache; int8 KV runs the model; host-only methods say so", { skip: !gpu && reason }, async () => {
  const model = await loadModel(STORIES, { device: "webgpu" });
  try {
    const net = model.network;
    const ids = model.tokenizer.encode("Once upon a time, there was a little girl", { addSpecialTokens: true });
    const run = async (cache: KVCache) => {
      const rows = [await model.backend.read(net.forward(Int32Array.from(ids.slice(0, 4)), 0, cache))];
      for (let t = 4; t < ids.length; t++) rows.push(await model.backend.read(net.forward(Int32Array.of(ids[t]!), t, cache)));
      return rows;
    };
    const plain = await run(net.newCache(32));
    assert.deepEqual(await run(kvStoreFactory("dense")(net.kvContext(32))), plain);
    const int8 = await run(kvStoreFactory("dense")(net.kvContext(32, "int8")));
    const cpu = await loadModel(STORIES, { kvFormat: "int8" });
    try {
      const cpuRows: Float32Array[] = [];
      const cache = cpu.network.newCache(32);
      cpuRows.push(await cpu.backend.read(cpu.network.forward(Int32Array.from(ids.slice(0, 4)), 0, cache)));
      for (let t = 4; t < ids.length; t++) cpuRows.push(await cpu.backend.read(cpu.network.forward(Int32Array.of(ids[t]!), t, cache)));
      for (let r = 0; r < int8.length; r++) assertClose(int8[r]!, cpuRows[r]!, `int8 KV step ${r}, WebGPU vs CPU`, 1e-2, 1e-2);
    } finally {
      cpu.dispose();
    }
    // a host-only method says so (every KV format, the selection methods and xKV/SVD run on the device:
    // test/kv/gpu-kv4.test.ts, test/kv/gpu-select.test.ts, test/kv/gpu-xkv.test.ts)
    assert.throws(() => net.forward(Int32Array.of(1), 0, kvStoreFactory("sparse:k=50,v=50")(net.kvContext(32))), /sparse.*computes on the host; the webgpu backend keeps tensors on the device/);
    // the host-only KV formats are refused by name when the cache is made
    for (const format of ["int4g64", "int3g64", "fp3-razer", "fp3-razer-rot"]) {
      assert.throws(() => kvStoreFactory("dense")(net.kvContext(32, format)), new RegExp(`--kv-format ${format}: ${format} is a CPU-only KV format; the webgpu backend stores KV as f32, int8`));
      assert.throws(() => kvStoreFactory("streaming:keep=0.5")(net.kvContext(32, format)), new RegExp(`--kv-format ${format}: the webgpu backend stores KV only as f32 or int8`));
    }
    // StreamingLLM: the GPU's windowed attention against the CPU's host selection, f32 and int8
    for (const [spec, format] of [["streaming:keep=0.25", "f32"], ["streaming:keep=0.25", "int8"], ["streaming:keep=0.25,dense0=0", "f32"]] as const) {
      const gpuRows = await run(kvStoreFactory(spec)(net.kvContext(32, format)));
      const cpu = await loadModel(STORIES, { kv: spec, kvFormat: format });
      try {
        const cache = cpu.network.newCache(32);
        const cpuRows = [await cpu.backend.read(cpu.network.forward(Int32Array.from(ids.slice(0, 4)), 0, cache))];
        for (let t = 4; t < ids.length; t++) cpuRows.push(await cpu.backend.read(cpu.network.forward(Int32Array.of(ids[t]!), t, cache)));
        for (let r = 0; r < cpuRows.length; r++) assertClose(gpuRows[r]!, cpuRows[r]!, `${spec} ${format} step ${r}`, 1e-2, 1e-2);
      } finally {
        cpu.dispose();
      }
      if (format === "f32") assert.ok(gpuRows.some((row, r) => row.some((x, i) => Math.abs(x - plain[r]![i]!) > 1e-3)), "the window changes later logits");
    }
  } finally {
    model.dispose();
  }
});
