/**
 * Timing shared by the WebGPU benchmarks: GPU time per call of one kernel (timestamp queries, wall time
 * as the fallback) and the device's streaming-copy bandwidth, the yardstick that memory-bound kernels
 * and whole decode steps are reported against.
 */
import type { WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import { BufferUsage, MAP_READ_MODE } from "../src/backend/webgpu/device.js";
import { copyKernel, COPY_GROUP } from "../src/backend/webgpu/kernels/copy.js";
import { grid } from "../src/backend/webgpu/kernel.js";

/**
 * GPU ms per call of kernel `name` (or the first kernel it accepts; timestamps; NaN when the backend is not profiling) and wall ms per
 * call, best of 3 rounds of `iters` calls recorded by `record` into one submission.
 */
export async function measure(b: WebGpuBackend, name: string | ((kernel: string) => boolean), iters: number, record: (i: number) => void): Promise<{ gpu: number; wall: number }> {
  const named = typeof name === "string" ? (k: string) => k === name : name;
  for (let i = 0; i < 3; i++) record(i);
  await b.finish();
  let best = { gpu: Infinity, wall: Infinity };
  for (let rep = 0; rep < 3; rep++) {
    b.resetProfile();
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) record(i);
    await b.finish();
    const wall = (performance.now() - t0) / iters;
    let gpu = NaN;
    if (b.gpu.timestamps) {
      const e = (await b.profile().catch(() => [])).find((k) => named(k.kernel));
      if (e) gpu = e.totalMs / e.calls;
    }
    best = { gpu: Math.min(best.gpu, gpu) || gpu, wall: Math.min(best.wall, wall) };
  }
  return best;
}

/** A streaming copy's time per call and bandwidth. */
export interface CopyBandwidth {
  bytes: number;
  /** ms per copy: GPU time when timestamps were available, else wall time. */
  ms: number;
  /** Bytes read + written per second, in GB/s (1e9). */
  gbs: number;
  timed: "timestamps" | "wall";
}

/** Copies `bytes` from one buffer to another `iters` times and reports the achievable bandwidth. */
export async function copyBandwidth(b: WebGpuBackend, bytes: number, iters: number): Promise<CopyBandwidth> {
  const n4 = bytes / 16;
  const src = b.pool.storage(bytes, "copy src");
  const dst = b.pool.storage(bytes, "copy dst");
  try {
    const t = await measure(b, "copy", iters, () => b.recorder.dispatch(copyKernel(), [n4], [dst, src], grid(Math.ceil(n4 / COPY_GROUP))));
    const timed = Number.isFinite(t.gpu) ? "timestamps" : "wall";
    const ms = timed === "timestamps" ? t.gpu : t.wall;
    return { bytes, ms, gbs: (2 * bytes) / ms / 1e6, timed };
  } finally {
    b.pool.destroy(src);
    b.pool.destroy(dst);
  }
}

/**
 * One compute pass recorded by `record` (any number of dispatches) between two timestamps, submitted
 * alone: GPU ns of the pass, and host ms spent in `record`. For benches that bypass the backend's recorder.
 */
export async function timedPass(device: GPUDevice, record: (pass: GPUComputePassEncoder) => void): Promise<{ gpuNs: number; hostMs: number }> {
  const qs = device.createQuerySet({ type: "timestamp", count: 2 });
  const resolve = device.createBuffer({ size: 16, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: 16, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
  const t0 = performance.now();
  record(pass);
  const hostMs = performance.now() - t0;
  pass.end();
  enc.resolveQuerySet(qs, 0, 2, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(MAP_READ_MODE);
  const t = new BigUint64Array(read.getMappedRange().slice(0));
  read.unmap();
  qs.destroy();
  resolve.destroy();
  read.destroy();
  return { gpuNs: Number(t[1]! - t[0]!), hostMs };
}
