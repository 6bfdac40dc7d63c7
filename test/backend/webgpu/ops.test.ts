/**
 * Every WebGPU op against the CPU backend (the oracle) on random data, on whatever adapter is present
 * (SwiftShader in CI). Shapes are tiny and odd on purpose: partial vec4s, partial tiles, split weights.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, Tensor } from "../../../src/backend/backend.js";
import { CpuBackend } from "../../../src/backend/cpu/cpu-backend.js";
import type { WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import { ARGMAX_SPLIT_MIN } from "../../../src/backend/webgpu/kernels/argmax.js";
import { ropeInverseFrequencies } from "../../../src/model/config.js";
import type { BlockDType as DType } from "../../../src/tensor/dtype.js";
import type { RawTensor } from "../../../src/tensor/raw.js";
import { Rng, assertClose, openOrSkip, randomWeight, randoms, tensorOf } from "./helpers.js";

// f32 activations: the oracle (CpuBackend) computes q8_0/q4_0 exactly; the int8-activation GEMV, the
// default, is checked against its own exact oracle in gemv-i8.test.ts
const { gpu, reason } = await openOrSkip({ activations: "f32" });
// the workgroup-memory reduction path of the GEMV with other rows per team, and weights split into many parts
const plain = gpu
  ? await openOrSkip({ activations: "f32", subgroups: false, maxBindingBytes: 2048, gemvRowsPerTeam: { f32: 3, f16: 1, bf16: 4, q8_0: 1, q4_0: 2 } })
  : { gpu: undefined, reason };
after(() => {
  gpu?.dispose();
  plain.gpu?.dispose();
});

if (gpu) console.log(`# adapter: ${gpu.description}, subgroups ${gpu.gpu.subgroups} (min size ${gpu.gpu.subgroupMinSize})`);

const FORMATS: DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0"];

/** Runs `body` on the CPU and on each GPU backend and compares what it returns. */
async function agree(what: string, body: (b: Backend) => Promise<Float32Array>, gpus: (WebGpuBackend | undefined)[] = [gpu], rtol?: number, atol?: number) {
  const expected = await body(new CpuBackend());
  for (const g of gpus) assertClose(await body(g!), expected, what, rtol, atol);
}

test("matmul: every format, GEMV (1 row) and GEMM (9 rows), odd shapes", { skip: !gpu && reason }, async () => {
  const rng = new Rng(1);
  for (const format of FORMATS) {
    const block = format === "q8_0" || format === "q4_0";
    // plain: K odd (scalar x loads), K = 4 mod 8 (guarded vec4 loads), K = 64 (exact)
    const shapes = block ? [[37, 32], [37, 96], [70, 64]] : [[37, 45], [70, 68], [65, 64]];
    for (const [N, K] of shapes as [number, number][]) {
      const raw = randomWeight(format, [N, K], rng);
      for (const rows of [1, 9]) {
        const x = randoms(rows * K, rng);
        await agree(`${format} [${N}, ${K}] x ${rows} rows`, async (b) => {
          const w = b.upload(raw);
          const out = b.activation(rows, N);
          b.matmul(out, tensorOf(b, rows, K, x), w);
          return b.read(out);
        }, [gpu, plain.gpu]);
      }
    }
  }
});

test("matmul: 70 rows (two row tiles) and a `rows` limit leave the other rows alone", { skip: !gpu && reason }, async () => {
  const rng = new Rng(2);
  const raw = randomWeight("q8_0", [66, 64], rng);
  const x = randoms(70 * 64, rng);
  await agree("q8_0 x 70 rows", async (b) => {
    const out = b.activation(70, 66);
    b.matmul(out, tensorOf(b, 70, 64, x), b.upload(raw));
    return b.read(out);
  });
  for (const rows of [1, 3]) {
    await agree(`f16 with rows = ${rows} of 9`, async (b) => {
      const out = b.activation(9, 66);
      b.matmul(out, tensorOf(b, 9, 64, x.subarray(0, 9 * 64)), b.upload(randomWeight("f16", [66, 64], new Rng(3))), rows);
      const all = await b.read(out);
      for (let i = rows * 66; i < all.length; i++) assert.equal(all[i], 0, "rows past the limit stay zero");
      return all;
    });
  }
});

test("matmul rejects shapes that do not fit and an output that aliases x", { skip: !gpu && reason }, () => {
  const g = gpu!;
  const w = g.upload(randomWeight("f32", [8, 16], new Rng(4)));
  assert.throws(() => g.matmul(g.activation(1, 8), g.activation(1, 15), w), /do not fit/);
  const x = g.activation(2, 16);
  assert.throws(() => g.matmul(x, x, g.upload(randomWeight("f32", [16, 16], new Rng(4)))), /share storage/);
});

test("embed: every format, repeated ids, split tables", { skip: !gpu && reason }, async () => {
  const rng = new Rng(5);
  for (const format of FORMATS) {
    const block = format === "q8_0" || format === "q4_0";
    const raw = randomWeight(format, [37, block ? 64 : 45], rng);
    const tokens = Int32Array.of(3, 0, 36, 3, 17);
    await agree(`embed ${format}`, async (b) => {
      const out = b.activation(5, raw.shape[1]!);
      b.embed(out, b.upload(raw), tokens);
      return b.read(out);
    }, [gpu, plain.gpu]);
  }
  const g = gpu!;
  assert.throws(() => g.embed(g.activation(1, 45), g.upload(randomWeight("f32", [37, 45], rng)), Int32Array.of(37)), /outside the vocabulary/);
});

test("addBias, add and swiglu, with and without aliasing", { skip: !gpu && reason }, async () => {
  const rng = new Rng(6);
  const [a, c, bias] = [randoms(3 * 50, rng, 4), randoms(3 * 50, rng, 4), randomWeight("bf16", [50], rng, "bias")];
  await agree("addBias (bf16 bias)", async (b) => {
    const x = tensorOf(b, 3, 50, a);
    b.addBias(x, b.upload(bias));
    return b.read(x);
  });
  await agree("add", async (b) => {
    const out = b.activation(3, 50);
    b.add(out, tensorOf(b, 3, 50, a), tensorOf(b, 3, 50, c));
    return b.read(out);
  });
  await agree("add in place (x += y, y += x)", async (b) => {
    const x = tensorOf(b, 3, 50, a);
    const y = tensorOf(b, 3, 50, c);
    b.add(x, x, y);
    b.add(y, x, y);
    return new Float32Array([...(await b.read(x)), ...(await b.read(y))]);
  });
  await agree("swiglu", async (b) => {
    const out = b.activation(3, 50);
    b.swiglu(out, tensorOf(b, 3, 50, a), tensorOf(b, 3, 50, c));
    return b.read(out);
  });
  await agree("swiglu in place on a 2-row view", async (b) => {
    const gate = tensorOf(b, 3, 50, a);
    b.swiglu(b.view(gate, 2), b.view(gate, 2), tensorOf(b, 3, 50, c));
    return b.read(gate);
  });
});

test("rmsnorm (rows, heads in place, wide rows) and rmsnormRow", { skip: !gpu && reason }, async () => {
  const rng = new Rng(7);
  for (const [rows, cols, group] of [[3, 64, 64], [3, 64, 16], [2, 1030, 1030], [2, 2048, 2048]] as const) {
    const x = randoms(rows * cols, rng, 3);
    const weight = randomWeight("f16", [group], rng, "norm");
    await agree(`rmsnorm [${rows}, ${cols}] groups of ${group}`, async (b) => {
      const out = b.activation(rows, cols);
      b.rmsnorm(out, tensorOf(b, rows, cols, x), b.upload(weight), 1e-5, group);
      return b.read(out);
    });
    await agree(`rmsnorm in place, groups of ${group}`, async (b) => {
      const t = tensorOf(b, rows, cols, x);
      b.rmsnorm(t, t, b.upload(weight), 1e-6, group);
      return b.read(t);
    });
  }
  const x = randoms(3 * 64, rng);
  const weight = randomWeight("f32", [64], rng, "norm");
  await agree("rmsnormRow of row 2", async (b) => {
    const out = b.activation(1, 64);
    b.rmsnormRow(out, tensorOf(b, 3, 64, x), 2, b.upload(weight), 1e-5);
    return b.read(out);
  });
});

test("rope: half-split pairs at an offset position", { skip: !gpu && reason }, async () => {
  const rng = new Rng(8);
  const inv = ropeInverseFrequencies({ theta: 10000, dim: 8 });
  const x = randoms(3 * 16, rng);
  await agree("rope", async (b) => {
    const t = tensorOf(b, 3, 16, x);
    b.rope(t, 8, 5, b.ropeTable(inv, 16));
    return b.read(t);
  }, [gpu], 1e-5, 1e-6);
  const g = gpu!;
  assert.throws(() => g.rope(g.activation(3, 16), 8, 14, g.ropeTable(inv, 16)), /beyond the RoPE table/);
});

test("kvWrite + attention: GQA, decode over many positions (split), prefill, head widths 8 and 6", { skip: !gpu && reason }, async () => {
  for (const headDim of [8, 6]) {
    const rng = new Rng(9 + headDim);
    const heads = 4;
    const kvHeads = 2;
    const width = kvHeads * headDim;
    const k = randoms(300 * width, rng, 2);
    const v = randoms(300 * width, rng);
    const k0 = randoms(300 * width, rng, 2);
    const setup = (b: Backend) => {
      const cache = b.kvCache(2, kvHeads, headDim, 320);
      b.kvWrite(cache, 0, tensorOf(b, 300, width, k0), tensorOf(b, 300, width, k0), 0);
      // layer 1 written in two pieces, the second at an offset
      b.kvWrite(cache, 1, tensorOf(b, 100, width, k.subarray(0, 100 * width)), tensorOf(b, 100, width, v.subarray(0, 100 * width)), 0);
      b.kvWrite(cache, 1, tensorOf(b, 200, width, k.subarray(100 * width)), tensorOf(b, 200, width, v.subarray(100 * width)), 100);
      return cache;
    };
    // (rows, pos0): one decode row over 300 positions; 3 rows with splits; 64 rows (rows x heads = 256, one split of 5 tiles); 5 rows from 0
    for (const [rows, pos0] of [[1, 299], [3, 200], [64, 236], [5, 0]] as const) {
      const q = randoms(rows * heads * headDim, rng);
      await agree(`attention d=${headDim} rows=${rows} pos0=${pos0}`, async (b) => {
        const cache = setup(b);
        const out = b.activation(rows, heads * headDim);
        b.attention(out, tensorOf(b, rows, heads * headDim, q), cache, 1, pos0, heads);
        return b.read(out);
      }, [gpu], 1e-4, 1e-5);
    }
  }
  const g = gpu!;
  assert.throws(() => g.kvWrite(g.kvCache(1, 1, 4, 8), 0, g.activation(3, 4), g.activation(3, 4), 6), /KV cache full/);
});

test("read returns any row range; argmax finds the first largest value of the last row", { skip: !gpu && reason }, async () => {
  const rng = new Rng(10);
  const x = randoms(4 * 1000, rng);
  x[3 * 1000 + 700] = 5;
  x[3 * 1000 + 10] = 5; // a tie: the lower index wins
  x[2 * 1000 + 5] = 9; // not in the last row
  const g = gpu!;
  const t = tensorOf(g, 4, 1000, x);
  assert.deepEqual(await g.read(t, 1, 2), x.subarray(1000, 3000));
  assert.equal((await g.read(t, 4, 0)).length, 0);
  await assert.rejects(g.read(t, 3, 2), /rows \[3, 5\) of a 4-row tensor/);
  assert.equal(await g.argmax(t), 10);
  assert.equal(await new CpuBackend().argmax(tensorOf(new CpuBackend(), 4, 1000, x)), 10);
  const y = randoms(1 * 777, rng);
  const cpu = new CpuBackend();
  assert.equal(await g.argmax(tensorOf(g, 1, 777, y)), await cpu.argmax(tensorOf(cpu, 1, 777, y)));
  // long rows: 8004 takes one workgroup's vec4 scan (several vec4s a thread, four in flight, a partial last
  // round), 20004 the two-stage argmax (ARGMAX_PARTS workgroups of 40 vec4s, then one over their results).
  // Ties in one thread's later vec4, inside one vec4 and in a later part must keep the lowest index.
  for (const n of [8_004, 20_004]) {
    assert.equal(n >= ARGMAX_SPLIT_MIN, n === 20_004, "the two sizes take the two paths");
    const z = randoms(2 * n, rng);
    const at = (j: number, c: number) => n + 4 * j + c;
    z[at(3 + 256 * 5, 1)] = 7;
    z[at(3 + 256 * 7, 0)] = 7;
    z[at(3, 3)] = 7;
    z[at(3, 2)] = 7;
    assert.equal(await g.argmax(tensorOf(g, 2, n, z)), 4 * 3 + 2, `n = ${n}`);
    assert.equal(await cpu.argmax(tensorOf(cpu, 2, n, z)), 4 * 3 + 2);
    z[at(3, 2)] = 0;
    z[at(3, 3)] = 0;
    // now the first 7 is in a later part (two-stage) or a later round of thread 3 (one workgroup)
    assert.equal(await g.argmax(tensorOf(g, 2, n, z)), 4 * (3 + 256 * 5) + 1, `n = ${n}, tie across parts`);
    z[at((n - 4) / 4, 3)] = 8; // the very last value
    assert.equal(await g.argmax(tensorOf(g, 2, n, z)), n - 1, `n = ${n}, last value`);
  }
});

test("a forward pass's ops become one submission; parameter blocks are per dispatch", { skip: !gpu && reason }, async () => {
  const g = gpu!;
  const rng = new Rng(11);
  const a = randoms(64, rng);
  const x = tensorOf(g, 1, 64, a);
  const w = g.upload(randomWeight("f32", [64], rng, "norm"));
  await g.read(x);
  const before = g.recorder.submissions;
  // the same kernel recorded twice with different parameters must see both parameter blocks
  const table: RawTensor = randomWeight("f32", [4, 64], rng, "table");
  const e1 = g.activation(1, 64);
  const e2 = g.activation(1, 64);
  g.embed(e1, g.upload(table), Int32Array.of(1));
  g.embed(e2, g.upload(table), Int32Array.of(3));
  g.rmsnorm(x, x, w, 1e-5, 64);
  const sum: Tensor = g.activation(1, 64);
  g.add(sum, e1, e2);
  const got = await g.read(sum);
  assert.equal(g.recorder.submissions - before, 1);
  const t = new Float32Array(table.data.buffer);
  assertClose(got, Float32Array.from({ length: 64 }, (_, i) => t[64 + i]! + t[3 * 64 + i]!), "two embeds in one submission");
});

test("more dispatches than the parameter ring holds are split into submissions and stay correct", { skip: !gpu && reason }, async () => {
  const g = gpu!;
  const x = tensorOf(g, 1, 4, new Float32Array(4));
  const one = tensorOf(g, 1, 4, new Float32Array(4).fill(1));
  await g.read(x);
  const before = g.recorder.submissions;
  const n = 4500; // the 1 MiB ring holds 4096 parameter blocks of 256 bytes
  for (let i = 0; i < n; i++) g.add(x, x, one);
  assert.deepEqual(await g.read(x), new Float32Array(4).fill(n));
  assert.equal(g.recorder.submissions - before, 2);
});

test("profile: timestamp totals per kernel", { skip: !gpu && reason }, async (t) => {
  const { gpu: p } = await openOrSkip({ profile: true });
  if (!p) return t.skip("profiling needs timestamp-query");
  try {
    const rng = new Rng(12);
    const w = p.upload(randomWeight("q4_0", [40, 64], rng));
    const x = tensorOf(p, 1, 64, randoms(64, rng));
    const out = p.activation(1, 40);
    p.matmul(out, x, w);
    p.matmul(out, x, w);
    p.add(out, out, out);
    await p.read(out);
    const report = await p.profile();
    const byName = new Map(report.map((k) => [k.kernel, k]));
    assert.equal(byName.get("matmul.gemv.q4_0")?.calls, 2);
    assert.equal(byName.get("add")?.calls, 1);
    for (const k of report) assert.ok(k.totalMs >= 0 && Number.isFinite(k.totalMs), `${k.kernel}: ${k.totalMs} ms`);
    p.resetProfile();
    assert.deepEqual(await p.profile(), []);
  } finally {
    p.dispose();
  }
});
