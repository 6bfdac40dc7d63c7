/**
 * A packed model on WebGPU against the CPU reference path: stories260K with every 2-D weight (embedding,
 * tied output, attention and MLP projections) quantized by a packed format's pack() and stored as packed
 * RawTensors (packedToRaw), run on WebGPU (packed GEMV/GEMM/embed kernels), must generate the same greedy
 * tokens as the CPU backend running the same model with the unpacked f32 weights (format.unpack), the
 * prompt going through the GEMM (prefill) and each new token through the GEMV.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createCpuBackend } from "../../../src/backend/cpu/cpu-backend.js";
import { DEFAULT_MODEL, readSource } from "../../../src/load.js";
import { assembleModel } from "../../../src/model/assemble.js";
import type { Model } from "../../../src/model/model.js";
import { quantFormat } from "../../../src/quant/formats.js";
import { packedToRaw } from "../../../src/quant/packed-raw.js";
import type { PackedDType } from "../../../src/tensor/dtype.js";
import { openOrSkip } from "./helpers.js";

const probe = await openOrSkip();
// one device for every format's model (SwiftShader compiles each pipeline once a device); disposed at the end
const gpu = probe.gpu;
const cpuModels: Model[] = [];
after(() => {
  for (const m of cpuModels) m.dispose();
  gpu?.dispose();
});

/** stories260K with its 2-D weights packed in `format` (for the GPU) and their unpacked f32 values (for the CPU). */
async function quantized(format: PackedDType): Promise<{ packed: Awaited<ReturnType<typeof readSource>>; dense: Awaited<ReturnType<typeof readSource>> }> {
  const packed = await readSource(DEFAULT_MODEL);
  const dense = await readSource(DEFAULT_MODEL);
  const f = quantFormat(format);
  let n = 0;
  for (const [name, t] of packed.tensors) {
    if (t.shape.length !== 2 || t.dtype !== "f32") continue;
    const [rows, cols] = t.shape as [number, number];
    const w = new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
    const p = f.pack(w, rows, cols);
    packed.tensors.set(name, packedToRaw(name, p, t.shape));
    dense.tensors.set(name, { name, dtype: "f32", shape: t.shape, data: new Uint8Array(f.unpack(p).buffer) });
    n++;
  }
  assert.ok(n >= 5 * 7 + 1, `packed ${n} weights`);
  return { packed, dense };
}

async function greedy(model: Model, prompt: string, maxTokens: number): Promise<number[]> {
  const ids: number[] = [];
  for await (const piece of model.generate(prompt, { temperature: 0, maxTokens, stopAtEos: false })) {
    if (piece.tokenId !== undefined) ids.push(piece.tokenId);
  }
  return ids;
}

// RaZeR g128, the spec's primary format; every format's kernels are checked exactly in packed-gemv/gemm.test.ts
// (SwiftShader runs this model's packed steps slowly: rows of 64 are padded to 1024-weight tiles)
for (const format of ["razer"] as PackedDType[]) {
  test(`${format} stories260K: WebGPU generates the CPU's greedy tokens`, { skip: !gpu && probe.reason }, async () => {
    const { packed, dense } = await quantized(format);
    const cpu = assembleModel(dense, await createCpuBackend({ threads: 1 }));
    cpuModels.push(cpu);
    const onGpu = assembleModel(packed, gpu!);
    const prompt = "Once upon a time, there was a little girl named Lily who";
    const want = await greedy(cpu, prompt, 16);
    assert.equal(want.length, 16);
    assert.deepEqual(await greedy(onGpu, prompt, 16), want);
  });
}
