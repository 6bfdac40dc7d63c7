/**
 * Timing shared by the WebGPU benchmarks: GPU time per call of one kernel (timestamp queries, wall time
 * as the fallback) and the device's streaming-copy bandwidth, the yardstick that memory-bound kernels
 * and whole decode steps are reported against.
 */
import type { WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import { copyKernel, COPY_GROUP } from "../src/backend/webgpu/kernels/copy.js";
import { grid } from "../src/backend/webgpu/kernel.js";

/**
 * GPU ms per call of kernel `name` (timestamps; NaN when the backend is not profiling) and wall ms per
 * call, best of 3 rounds of `iters` calls recorded by `record` into one submission.
 */
export async function measure(b: WebGpuBackend, name: string, iters: number, record: (i: number) => void): Promise<{ gpu: number; wall: number }> {
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
      const e = (await b.profile().catch(() => [])).find((k) => k.kernel === name);
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
