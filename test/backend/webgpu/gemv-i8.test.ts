/**
 * The int8-activation GEMV (kernels/gemv-i8.ts), the WebGPU default for batch-1 q8_0/q4_0:
 * - the quantized x (read back) follows the CPU's rule (kernels.wat quant_i8): scale = amax / 127 and
 *   q = nearest-even(x * 127 / amax) clamped to +-127; a q may differ by one only where x * inv sits within
 *   a few ulps of a tie (the GPU's f32 division may differ from the CPU's by an ulp);
 * - the GEMV equals an oracle that takes that quantized x and the file's integer weights and forms each
 *   block's integer dot product exactly, to the f32 bound (blocks + 16) * 2^-23 * sum |scale_w scale_x isum|;
 * - and it is within the stated quantization error of the exact f32 product (as the CPU's int8 path).
 * Rows 1, K odd multiples of 32 (a rest past the last whole tile), weights split into parts, with and
 * without subgroups; q4_0 in both GPU layouts (tiles: gemv-i8.ts; blocks, the int8 default:
 * gemv-blocks.ts, whose x is two planes with a quant sum a block).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { decodeRow } from "../../../src/backend/cpu/reference.js";
import type { GpuTensor, WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import { QUANT_X_BLOCKS, TILE_BLOCKS, gemvI8Kernel, quantXKernel, type BlockFormat } from "../../../src/backend/webgpu/kernels/gemv-i8.js";
import { gemvBlocksI8Kernel } from "../../../src/backend/webgpu/kernels/gemv-blocks.js";
import { grid } from "../../../src/backend/webgpu/kernel.js";
import type { Buf } from "../../../src/backend/webgpu/buffers.js";
import { gemvRows } from "../../../src/backend/webgpu/kernels/matmul.js";
import { f16ToF32 } from "../../../src/tensor/half.js";
import type { RawTensor } from "../../../src/tensor/raw.js";
import { Rng, openOrSkip, quantizedPlanes, randomWeight, tensorOf } from "./helpers.js";

const { gpu, reason } = await openOrSkip({ activations: "int8" });
const plain = gpu ? await openOrSkip({ subgroups: false, maxBindingBytes: 4 * 5216, activations: "int8" }) : { gpu: undefined, reason };
const tiled = gpu ? await openOrSkip({ activations: "int8", q4Layout: "tiles" }) : { gpu: undefined, reason };
const plainTiled = gpu ? await openOrSkip({ subgroups: false, maxBindingBytes: 4 * 5216, activations: "int8", q4Layout: "tiles" }) : { gpu: undefined, reason };
after(() => {
  for (const g of [gpu, plain.gpu, tiled.gpu, plainTiled.gpu]) g?.dispose();
});

const SHAPES: Record<BlockFormat, [number, number][]> = {
  q4_0: [[13, 5 * 1024 + 96], [9, 4 * 1024], [5, 33 * 32]],
  q8_0: [[13, 5 * 512 + 64], [9, 4 * 512], [5, 17 * 32]],
};

/** x with block magnitudes over 2^-3..2^3, one all-zero block and one block with an exact tie. */
function activations(K: number, rng: Rng): Float32Array {
  const x = Float32Array.from({ length: K }, (_, i) => (rng.next() * 2 - 1) * 2 ** (((i >> 5) % 7) - 3));
  x.fill(0, 32, 64);
  return x;
}

/** The GPU's quantization of x for `format`, read back: quants as int8 (x's order), scales by block. */
async function quantized(g: WebGpuBackend, x: GpuTensor, K: number, format: BlockFormat): Promise<{ q: Int8Array; s: Float32Array; bufs: [Buf, Buf] }> {
  const blocks = K / 32;
  if (format === "q4_0" && g.q4Layout === "blocks") return quantizedPlanes(g, x, K);
  const tiles = Math.floor(blocks / TILE_BLOCKS[format]);
  const xq = g.activation(1, K / 4);
  const xs = g.activation(1, Math.ceil(blocks / 8) * 8);
  g.recorder.dispatch(quantXKernel(format), [blocks, tiles], [x.buf, xq.buf, xs.buf], grid(Math.ceil(blocks / QUANT_X_BLOCKS)));
  const q = new Int8Array((await g.read(xq)).buffer);
  // q4_0's whole tiles keep each word's bytes in the order 0 2 1 3 (gemv-i8.ts, `pair`)
  if (format === "q4_0") for (let i = 0; i < tiles * 1024; i += 4) [q[i + 1], q[i + 2]] = [q[i + 2]!, q[i + 1]!];
  const sp = await g.read(xs);
  // undo the tile order of the scales
  const TB = TILE_BLOCKS[format];
  const s = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const t = Math.floor(b / TB);
    const bt = b % TB;
    s[b] = sp[t < tiles ? t * TB + (TB / 4) * (bt & 3) + (bt >> 2) : b]!;
  }
  return { q, s, bufs: [xq.buf, xs.buf] };
}

const f = Math.fround;
/** Round half to even, as WGSL round and wasm f32.nearest. */
function nearest(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function checkQuantization(x: Float32Array, got: { q: Int8Array; s: Float32Array }, what: string): void {
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]!));
    const d = f(amax / 127);
    assert.ok(Math.abs(got.s[b]! - d) <= 2 * 2 ** -23 * d, `${what}: block ${b} scale ${got.s[b]} vs amax/127 = ${d}`);
    const inv = amax > 0 ? f(127 / amax) : 0;
    for (let i = 0; i < 32; i++) {
      const v = f(x[b * 32 + i]! * inv);
      const want = Math.max(-127, Math.min(127, nearest(v)));
      const q = got.q[b * 32 + i]!;
      if (q === want) continue;
      const nearTie = Math.abs(Math.abs(v - Math.trunc(v)) - 0.5) <= 8 * 2 ** -23 * Math.abs(v);
      assert.ok(nearTie && Math.abs(q - want) === 1, `${what}: x[${b * 32 + i}] = ${x[b * 32 + i]} quantized to ${q}, want ${want} (x * inv = ${v})`);
    }
  }
}

/** Integer weights and f16 block scales from the file's bytes. */
function blocksOf(raw: RawTensor): { q: Int8Array; d: Float32Array } {
  const [N, K] = raw.shape as [number, number];
  const nb = (N * K) / 32;
  const q8 = raw.dtype === "q8_0";
  const bb = q8 ? 34 : 18;
  const q = new Int8Array(N * K);
  const d = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const p = b * bb;
    d[b] = f16ToF32(raw.data[p]! | (raw.data[p + 1]! << 8));
    for (let j = 0; j < 32; j++) {
      q[b * 32 + j] = q8 ? (raw.data[p + 2 + j]! << 24) >> 24 : ((j < 16 ? raw.data[p + 2 + j]! : raw.data[p + 2 + j - 16]! >> 4) & 15) - 8;
    }
  }
  return { q, d };
}

test("int8 activations: x quantized by the CPU's rule; GEMV exact on that x; within the quantization bound of the f32 product", { skip: !gpu && reason }, async () => {
  const rng = new Rng(41);
  for (const format of ["q4_0", "q8_0"] as BlockFormat[]) {
    for (const [N, K] of SHAPES[format]) {
      const raw = randomWeight(format, [N, K], rng);
      const { q: wq, d: wd } = blocksOf(raw);
      const xs = activations(K, rng);
      const backends = format === "q4_0" ? [gpu!, plain.gpu!, tiled.gpu!, plainTiled.gpu!] : [tiled.gpu!, plainTiled.gpu!];
      for (const g of backends) {
        assert.equal(g.activations, "int8", "the int8 path was asked for");
        const what = `${format} [${N}, ${K}] ${g.q4Layout} sg=${g.gpu.subgroupMinSize}`;
        const x = tensorOf(g, 1, K, xs) as GpuTensor;
        const xq = await quantized(g, x, K, format);
        checkQuantization(xs, xq, what);
        const wt = g.upload(raw);
        const out = g.activation(1, N);
        g.matmul(out, x, wt);
        const results: [string, Float32Array][] = [["backend default", await g.read(out)]];
        // tuning variants [R, S, U] on the read-back x's buffers
        const sg = g.gpu.subgroupMinSize;
        for (const [R, S, U] of g.gpu.subgroups ? [[1, 1, 4], [4, 2, 2], [2, 2, 2], [1, 1, 2]] : [[2, 1, 2]]) {
          for (const part of wt.parts) {
            const k = wt.tiled ? gemvI8Kernel(format, sg, R, S, U) : gemvBlocksI8Kernel(sg, R, S, U);
            g.recorder.dispatch(k, [part.rows, K, part.rowStart, wt.blocks], [...xq.bufs, part.data, part.scales!, out.buf], grid(Math.ceil(part.rows / gemvRows(sg, R, S))));
          }
          results.push([`R=${R} S=${S} U=${U}`, await g.read(out)]);
          // blocks: the default GEMV quantizes x itself, and a separate quantization + GEMV of the same
          // split and unroll (each row's blocks in the same order) must give the same bits
          if (!wt.tiled && S === 1 && U === 2) assert.deepEqual(results.at(-1)![1], results[0]![1], `${what}: quantX + GEMV R=${R} S=1 U=2 vs the self-quantizing GEMV`);
        }
        const blocks = K / 32;
        for (const [variant, got] of results) for (let o = 0; o < N; o++) {
          let exact = 0, mag = 0, quantErr = 0, f32exact = 0, f32mag = 0;
          const w = new Float32Array(K);
          decodeRow(format, raw.data, o, K, w);
          for (let b = 0; b < blocks; b++) {
            let isum = 0;
            for (let i = 0; i < 32; i++) isum += wq[o * K + b * 32 + i]! * xq.q[b * 32 + i]!;
            const t = f(wd[o * blocks + b]! * xq.s[b]!) * isum;
            exact += t;
            mag += Math.abs(t);
            for (let i = 0; i < 32; i++) {
              const k = b * 32 + i;
              f32exact += w[k]! * xs[k]!;
              f32mag += Math.abs(w[k]! * xs[k]!);
              quantErr += Math.abs(w[k]!) * xq.s[b]! * 0.50003;
            }
          }
          const tight = (blocks + 16) * 2 ** -23 * mag;
          assert.ok(Math.abs(got[o]! - exact) <= tight, `${what} ${variant} (${wt.parts.length} parts): out[${o}] = ${got[o]}, int8 oracle ${exact}, bound ${tight}`);
          const bound = quantErr + tight + (K + 8) * 2 ** -24 * f32mag;
          assert.ok(Math.abs(got[o]! - f32exact) <= bound, `${what}: out[${o}] = ${got[o]} vs f32 product ${f32exact}, quantization bound ${bound}`);
        }
        // the f32 path on the same backend stays exact-ish and differs (the int8 path was taken above)
        g.activations = "f32";
        g.matmul(out, x, wt);
        const f32out = await g.read(out);
        g.activations = "int8";
        assert.ok(f32out.some((v, o) => v !== results[0]![1][o]), `${what}: the f32 and int8 paths gave identical results`);
      }
    }
  }
});

test("int8 activations: x is quantized again after it changes between matmuls", { skip: !gpu && reason }, async () => {
  const g = gpu!;
  const rng = new Rng(5);
  const [N, K] = [9, 1024 + 64];
  const raw = randomWeight("q4_0", [N, K], rng);
  const wt = g.upload(raw);
  const x = tensorOf(g, 1, K, activations(K, rng)) as GpuTensor;
  const a = g.activation(1, N), b = g.activation(1, N);
  g.matmul(a, x, wt);
  const y = g.activation(1, K), zero = tensorOf(g, 1, K, new Float32Array(K));
  g.add(y, x, x);
  g.add(x, y, zero); // x changes on the GPU within the same submission
  g.matmul(b, x, wt);
  const [ra, rb] = [await g.read(a), await g.read(b)];
  // doubling x doubles the scales and keeps the quants: out doubles exactly
  for (let o = 0; o < N; o++) assert.equal(rb[o], 2 * ra[o]!, `out[${o}] after x doubled`);
});

test("activations default: int8 for q4_0 (blocks layout), f32 for q8_0", { skip: !gpu && reason }, async () => {
  const { createWebGpuBackend } = await import("../../../src/backend/webgpu/webgpu-backend.js");
  const g = await createWebGpuBackend();
  try {
    assert.equal(g.activations, "auto");
    assert.equal(g.q4Layout, "blocks");
    const rng = new Rng(2);
    const K = 1024;
    const xs = activations(K, rng);
    for (const format of ["q4_0", "q8_0"] as BlockFormat[]) {
      const raw = randomWeight(format, [5, K], rng);
      const x = tensorOf(g, 1, K, xs);
      const wt = g.upload(raw);
      const out = g.activation(1, 5);
      const results: Record<string, Float32Array> = {};
      for (const act of ["auto", "int8", "f32"] as const) {
        g.activations = act;
        g.matmul(out, x, wt);
        results[act] = await g.read(out);
      }
      g.activations = "auto";
      assert.deepEqual(results.auto, format === "q4_0" ? results.int8 : results.f32, `${format}: auto takes the ${format === "q4_0" ? "int8" : "f32"} path`);
      assert.notDeepEqual(results.int8, results.f32, `${format}: the two paths differ`);
    }
  } finally {
    g.dispose();
  }
});

test("activations option: a bad value is refused by name", { skip: !gpu && reason }, async () => {
  const { createWebGpuBackend } = await import("../../../src/backend/webgpu/webgpu-backend.js");
  await assert.rejects(createWebGpuBackend({ activations: "int4" as "int8" }), /activations: "int4"/);
  await assert.rejects(createWebGpuBackend({ q4Layout: "rows" as "tiles" }), /q4Layout: "rows"/);
});

test("q4_0 layouts: int8 activations upload blocks, f32 tiles; the other activation path reads each layout too", { skip: !gpu && reason }, async () => {
  const rng = new Rng(8);
  const [N, K] = [11, 3 * 1024 + 32];
  const raw = randomWeight("q4_0", [N, K], rng);
  const xs = activations(K, rng);
  const f32 = await openOrSkip({ activations: "f32" });
  try {
    const outs: Record<string, Float32Array> = {};
    for (const g of [gpu!, tiled.gpu!, f32.gpu!]) {
      const wt = g.upload(raw);
      assert.equal(wt.tiled, g.q4Layout === "tiles", `${g.activations} ${g.q4Layout}: the weight's layout`);
      const x = tensorOf(g, 1, K, xs) as GpuTensor;
      const out = g.activation(1, N);
      for (const act of ["int8", "f32"] as const) {
        g.activations = act;
        g.matmul(out, x, wt);
        outs[`${g.q4Layout} ${act}`] = await g.read(out);
      }
      g.activations = g === f32.gpu ? "f32" : "int8";
    }
    assert.equal(gpu!.q4Layout, "blocks");
    assert.equal(f32.gpu!.q4Layout, "tiles");
    // the same products summed in other orders: the layouts agree to f32 rounding of the sum of |w x|
    const w = new Float32Array(K);
    for (let o = 0; o < N; o++) {
      decodeRow("q4_0", raw.data, o, K, w);
      let mag = 0;
      for (let k = 0; k < K; k++) mag += Math.abs(w[k]! * xs[k]!);
      for (const act of ["int8", "f32"]) {
        const [a, b] = [outs[`blocks ${act}`]![o]!, outs[`tiles ${act}`]![o]!];
        assert.ok(Math.abs(a - b) <= (K / 32 + 16) * 2 ** -22 * mag, `${act} out[${o}]: blocks ${a} vs tiles ${b} (sum |w x| ${mag})`);
      }
      // and int8 differs from f32 (both paths were taken)
      assert.notEqual(outs["blocks int8"]![o], outs["blocks f32"]![o], `out[${o}]: int8 and f32 on blocks gave the same value`);
    }
  } finally {
    f32.gpu?.dispose();
  }
});

test("int8 activations: the x scratch grows within one submission without losing what was recorded", { skip: !gpu && reason }, async () => {
  const rng = new Rng(13);
  const fresh = await openOrSkip({ activations: "int8" });
  const g = fresh.gpu!;
  g.quantizeInGemv = false;
  try {
    // K = 16384: 512 blocks, whose (scale, sum) pairs (4 KiB) outgrow the first scratch (2 KiB)
    const shapes: [number, number][] = [[3, 1024], [3, 16384]];
    const raws = shapes.map((s) => randomWeight("q4_0", s, rng));
    const xs = shapes.map(([, K]) => activations(K, rng));
    const outs = shapes.map(([N]) => g.activation(1, N));
    shapes.forEach(([, K], i) => g.matmul(outs[i]!, tensorOf(g, 1, K, xs[i]!), g.upload(raws[i]!)));
    const together = await Promise.all(outs.map((o) => g.read(o)));
    // the same matmuls, each in its own submission, on a backend whose scratch has grown already
    for (let i = 0; i < shapes.length; i++) {
      g.matmul(outs[i]!, tensorOf(g, 1, shapes[i]![1], xs[i]!), g.upload(raws[i]!));
      assert.deepEqual(await g.read(outs[i]!), together[i], `matmul ${i} recorded before the scratch grew`);
    }
  } finally {
    g.dispose();
  }
});

test("q4_0 blocks layout: the f32 GEMM (prefill) and embed read it to the same bits as the tiles layout", { skip: !gpu && reason }, async () => {
  const rng = new Rng(21);
  const [N, K, rows] = [37, 2 * 1024 + 96, 70];
  const raw = randomWeight("q4_0", [N, K], rng);
  const xs = Float32Array.from({ length: rows * K }, () => rng.next() * 2 - 1);
  const tokens = Int32Array.from([0, 5, 36, 17]);
  const got: Record<string, [Float32Array, Float32Array]> = {};
  for (const g of [gpu!, tiled.gpu!]) {
    const wt = g.upload(raw);
    const out = g.activation(rows, N);
    // the int8 GEMM, which prefill on the blocks layout runs by default, is gemm-i8.test.ts's
    g.int8Gemm = false;
    g.matmul(out, tensorOf(g, rows, K, xs), wt);
    g.int8Gemm = true;
    const emb = g.activation(tokens.length, K);
    g.embed(emb, wt, tokens);
    got[g.q4Layout] = [await g.read(out), await g.read(emb)];
  }
  assert.deepEqual(got.blocks![0], got.tiles![0], "GEMM over 70 rows");
  assert.deepEqual(got.blocks![1], got.tiles![1], "embed rows");
  // and embed is the file's dequantized row
  const w = new Float32Array(K);
  decodeRow("q4_0", raw.data, 17, K, w);
  assert.deepEqual(got.blocks![1].subarray(3 * K, 4 * K), w, "embed of row 17");
});
