/**
 * The WebGPU 4-bit KV caches, int4, razer and nvfp4 (SwiftShader in CI, tiny shapes), against the CPU
 * codecs of src/kv/format.ts:
 * - the GPU's own codes, decoded on the host by the CPU codec, give exactly the values the GPU attention
 *   decodes: attention over the codes equals the f32 attention kernel over that dequantized cache bit for
 *   bit (head dims 24, a partial group, and 64);
 * - the GPU quantizer follows the CPU codec: per (token, head) row, decoded values equal the CPU's except on
 *   rows where an f32-vs-f64 rounding tie went the other way, at most 5% of rows (stated bound);
 * - attention agrees with the CPU's host store of the same format within 2e-2 (absolute and relative;
 *   a flipped code moves one value by one quantization step);
 * - stories260K: greedy tokens on WebGPU equal the CPU's with the same KV format.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { CpuBackend } from "../../src/backend/cpu/cpu-backend.js";
import { GpuTensor, type GpuKVCache, type WebGpuBackend } from "../../src/backend/webgpu/webgpu-backend.js";
import { kvWords } from "../../src/backend/webgpu/kernels/kv.js";
import type { KvContext } from "../../src/kv/store.js";
import { kvStoreFactory } from "../../src/kv/spec.js";
import { kvFormat } from "../../src/kv/format.js";
import { loadModel } from "../../src/load.js";
import type { Model } from "../../src/model/model.js";
import { STORIES } from "../paths.js";
import { Rng, assertClose, openOrSkip, randoms, tensorOf } from "../backend/webgpu/helpers.js";

const { gpu, reason } = await openOrSkip();
after(() => gpu?.dispose());

const FORMATS = ["int4", "razer", "nvfp4"] as const;
const HEADS = 4, KV = 2, CAP = 16;

/**
 * The CPU codec's bytes of head row `ph` from the GPU's words: codes are the same nibbles (the codec pads
 * them to whole groups); int4 scale words are the codec's scale bytes; razer's and nvfp4's scale bytes are
 * packed four to a word, then g.
 */
function codecBytes(format: (typeof FORMATS)[number], D: number, codes: Uint32Array, scales: Uint32Array, ph: number): Uint8Array {
  const codec = kvFormat(format);
  const out = new Uint8Array(codec.headBytes(D));
  const words = kvWords(format, D);
  out.set(new Uint8Array(codes.buffer, ph * words.codes * 4, D / 2), 0);
  const g = format === "int4" ? 32 : 16;
  const codeBytes = Math.ceil(D / g) * (g / 2);
  const sb = new Uint8Array(scales.buffer, ph * words.scales * 4, words.scales * 4);
  if (format === "int4") out.set(sb, codeBytes);
  else {
    const blocks = Math.ceil(D / 16);
    out.set(sb.subarray(0, blocks), codeBytes);
    out.set(sb.subarray(sb.length - 4), codeBytes + blocks);
  }
  return out;
}

async function words(g: WebGpuBackend, buf: GpuKVCache["k"][number], n: number): Promise<Uint32Array> {
  return new Uint32Array((await g.read(new GpuTensor(1, n, buf))).buffer);
}

for (const format of FORMATS) {
  test(`${format} KV on WebGPU: attention over codes = attention over the CPU codec's decode of them; close to the CPU store`, { skip: !gpu && reason }, async () => {
    const g = gpu!;
    const codec = kvFormat(format);
    for (const D of [8, 24, 64]) {
      const WIDTH = KV * D;
      const rng = new Rng(7 + D);
      const cache = g.kvCache(1, KV, D, CAP, format) as GpuKVCache;
      const plain = g.kvCache(1, KV, D, CAP);
      const cpu = new CpuBackend();
      const ctx: KvContext = { backend: cpu, layers: 1, heads: HEADS, kvHeads: KV, headDim: D, capacity: CAP, rope: cpu.ropeTable(new Float64Array(D / 2), CAP), format };
      const host = kvStoreFactory("dense")(ctx);
      const w = kvWords(format, D);
      let pos = 0, rowsOff = 0, rowsAll = 0;
      for (const rows of [6, 1, 1]) {
        // heavy-tailed values, so that RaZeR's special values get picked
        const heavy = (n: number) => randoms(n, rng, 2).map((x) => (rng.next() < 0.05 ? x * 6 : x));
        const kd = heavy(rows * WIDTH), vd = heavy(rows * WIDTH), qd = randoms(rows * HEADS * D, rng);
        g.kvWrite(cache, 0, tensorOf(g, rows, WIDTH, kd), tensorOf(g, rows, WIDTH, vd), pos);
        const got = g.activation(rows, HEADS * D);
        g.attention(got, tensorOf(g, rows, HEADS * D, qd), cache, 0, pos, HEADS);
        // the GPU's codes decoded by the CPU codec, then the f32 kernel over them
        const len = pos + rows;
        const deq = async (codes: GpuKVCache["k"][number], scales: GpuKVCache["k"][number]) => {
          const c = await words(g, codes, len * KV * w.codes), s = await words(g, scales, len * KV * w.scales);
          const out = new Float32Array(len * WIDTH);
          for (let ph = 0; ph < len * KV; ph++) codec.decode(codecBytes(format, D, c, s, ph), 0, D, out, ph * D);
          return out;
        };
        const kq = await deq(cache.k[0]!, cache.kScales[0]!), vq = await deq(cache.v[0]!, cache.vScales[0]!);
        g.kvWrite(plain, 0, tensorOf(g, len, WIDTH, kq), tensorOf(g, len, WIDTH, vq), 0);
        const want = g.activation(rows, HEADS * D);
        g.attention(want, tensorOf(g, rows, HEADS * D, qd), plain, 0, pos, HEADS);
        assert.deepEqual(await g.read(got), await g.read(want), `${format} D=${D} rows at ${pos}`);
        // the new rows against the CPU codec's own quantization of the same values
        const bytes = new Uint8Array(codec.headBytes(D)), ref = new Float32Array(D);
        for (let i = 0; i < rows * KV; i++) {
          for (const [src, q] of [[kd, kq], [vd, vq]] as const) {
            codec.encode(src, i * D, D, bytes, 0);
            codec.decode(bytes, 0, D, ref, 0);
            rowsAll++;
            if (ref.some((x, j) => x !== q[pos * WIDTH + i * D + j])) rowsOff++;
          }
        }
        // the CPU's store of the same format (host attention over its own codes)
        const att = cpu.activation(rows, HEADS * D), q = cpu.activation(rows, HEADS * D);
        q.data.set(qd);
        const k = cpu.activation(rows, WIDTH), v = cpu.activation(rows, WIDTH);
        k.data.set(kd);
        v.data.set(vd);
        host.step({ layer: 0, pos0: pos, rows, heads: HEADS, h: q, q, k, v, att, rope: () => {} });
        assertClose(await g.read(got), att.data, `${format} D=${D}: CPU store, rows at ${pos}`, 2e-2, 2e-2);
        pos += rows;
      }
      assert.ok(rowsOff <= rowsAll * 0.05, `${format} D=${D}: ${rowsOff} of ${rowsAll} head rows quantize differently from the CPU codec`);
      cpu.dispose?.();
    }
  });
}

async function greedy(model: Model, prompt: string, maxTokens: number): Promise<number[]> {
  const ids: number[] = [];
  for await (const piece of model.generate(prompt, { temperature: 0, maxTokens, stopAtEos: false })) {
    if (piece.tokenId !== undefined) ids.push(piece.tokenId);
  }
  return ids;
}

test("stories260K: greedy tokens with int4, razer and nvfp4 KV on WebGPU equal the CPU's with the same KV format", { skip: !gpu && reason }, async () => {
  for (const format of FORMATS) {
    const cpu = await loadModel(STORIES, { kvFormat: format });
    const g = await loadModel(STORIES, { device: "webgpu", kvFormat: format });
    try {
      const want = await greedy(cpu, "Once upon a time", 100);
      const got = await greedy(g, "Once upon a time", 100);
      assert.equal(want.length, 100);
      assert.deepEqual(got, want, format);
    } finally {
      cpu.dispose();
      g.dispose();
    }
  }
});
