/** Shared pieces of the WebGPU tests: opening a device or a reason to skip, random weights, filling and comparing tensors. */
import assert from "node:assert/strict";
import type { Backend, Tensor } from "../../../src/backend/backend.js";
import type { CpuTensor } from "../../../src/backend/cpu/cpu-backend.js";
import { createWebGpuBackend, type GpuTensor, type WebGpuBackend, type WebGpuOptions } from "../../../src/backend/webgpu/webgpu-backend.js";
import type { BlockDType as DType } from "../../../src/tensor/dtype.js";
import type { RawTensor } from "../../../src/tensor/raw.js";
import { f32ToBf16, f32ToF16 } from "../../../src/tensor/half.js";
import { Rng } from "../../../src/generate/sampler.js";
import type { Buf } from "../../../src/backend/webgpu/buffers.js";
import { quantXBlocksKernel } from "../../../src/backend/webgpu/kernels/gemv-blocks.js";
import { QUANT_X_BLOCKS } from "../../../src/backend/webgpu/kernels/gemv-i8.js";
import { grid } from "../../../src/backend/webgpu/kernel.js";

/** A backend, or why there is none (no adapter: the tests then skip and say so). */
/**
 * A WebGPU backend, or why there is none. Activations default to "f32" here, the exact path the op tests
 * compare against exact products; tests of the int8 paths (and of the backend's own default, "auto") ask
 * for them.
 */
export async function openOrSkip(options: WebGpuOptions = {}): Promise<{ gpu?: WebGpuBackend; reason: string }> {
  try {
    const gpu = await createWebGpuBackend({ activations: "f32", ...options });
    return { gpu, reason: "" };
  } catch (e) {
    return { reason: `no WebGPU adapter: ${(e as Error).message.split(". ")[0]}` };
  }
}

export function randoms(n: number, rng: Rng, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
}

/** A random [N, K] weight stored in `format` (block formats: random scales and quants). */
export function randomWeight(format: DType, shape: number[], rng: Rng, name = `w.${format}`): RawTensor {
  const count = shape.reduce((a, b) => a * b, 1);
  const f = randoms(count, rng);
  switch (format) {
    case "f32":
      return { name, dtype: format, shape, data: new Uint8Array(f.buffer) };
    case "f16":
    case "bf16": {
      const h = Uint16Array.from(f, (v) => (format === "f16" ? f32ToF16(v) : f32ToBf16(v)));
      return { name, dtype: format, shape, data: new Uint8Array(h.buffer) };
    }
    case "q8_0":
    case "q4_0": {
      const blockBytes = format === "q8_0" ? 34 : 18;
      const data = new Uint8Array((count / 32) * blockBytes);
      for (let p = 0; p < data.length; p += blockBytes) {
        const s = f32ToF16(0.002 + 0.05 * rng.next());
        data[p] = s & 0xff;
        data[p + 1] = s >> 8;
        for (let j = 2; j < blockBytes; j++) data[p + j] = Math.floor(rng.next() * 256);
      }
      return { name, dtype: format, shape, data };
    }
  }
}

/** Writes `data` into an activation of either backend (before any op that reads it is recorded). */
export function fill(b: Backend, t: Tensor, data: Float32Array): void {
  if (b.kind === "cpu") {
    (t as CpuTensor).data.set(data);
  } else {
    const g = t as GpuTensor;
    (b as WebGpuBackend).gpu.device.queue.writeBuffer(g.buf.buffer, 0, data as Float32Array<ArrayBuffer>);
  }
}

/** An activation holding `data`. */
export function tensorOf(b: Backend, rows: number, cols: number, data: Float32Array): Tensor {
  const t = b.activation(rows, cols);
  fill(b, t, data);
  return t;
}

/** |a - e| <= atol + rtol |e| everywhere, with atol relative to the largest |e|. */
export function assertClose(actual: Float32Array, expected: Float32Array, what: string, rtol = 1e-4, atolScale = 2e-5): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let scale = 0;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  const atol = atolScale * Math.max(scale, 1e-3);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      assert.fail(`${what}: element ${i} is ${a}, expected ${e} (tolerance ${atol + rtol * Math.abs(e)})`);
    }
  }
}

export { Rng };

/**
 * The GPU's int8 quantization of x's first `elems` values (kernels/gemv-blocks.ts quantXBlocksKernel over
 * elems / 32 blocks: the planes of one row, or of all rows of a prompt), read back as quants in x's order
 * and a scale a block; every block's stored quant sum is checked against its quants.
 */
export async function quantizedPlanes(g: WebGpuBackend, x: GpuTensor, elems: number): Promise<{ q: Int8Array; s: Float32Array; bufs: [Buf, Buf] }> {
  const blocks = elems / 32;
  const xq = g.activation(1, elems / 4);
  const xs = g.activation(1, 2 * blocks);
  g.recorder.dispatch(quantXBlocksKernel(), [blocks], [x.buf, xq.buf, xs.buf], grid(Math.ceil(blocks / QUANT_X_BLOCKS)));
  const planes = new Int8Array((await g.read(xq)).buffer);
  const pairs = await g.read(xs);
  const q = new Int8Array(elems);
  const s = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let sum = 0;
    for (let i = 0; i < 32; i++) sum += q[b * 32 + i] = planes[(i < 16 ? 0 : blocks * 16) + b * 16 + (i % 16)]!;
    s[b] = pairs[2 * b]!;
    assert.equal(pairs[2 * b + 1], sum, `block ${b}: the stored quant sum`);
  }
  return { q, s, bufs: [xq.buf, xs.buf] };
}
