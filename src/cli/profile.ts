import type { Backend } from "../backend/backend.js";
import { createBackend, type LoadOptions } from "../load.js";
import { timeOps } from "../backend/op-timer.js";

/**
 * A backend for `--profile`: WebGPU times each kernel with timestamp queries; the CPU backend's ops
 * complete before they return, so wall time per op is exact there.
 */
export async function profiledBackend(options: LoadOptions): Promise<{ backend: Backend; report(): Promise<string> }> {
  if ((options.device ?? "cpu") === "webgpu") {
    const { createWebGpuBackend } = await import("../backend/webgpu/webgpu-backend.js");
    const gpu = await createWebGpuBackend({ profile: true });
    return {
      backend: gpu,
      async report() {
        const rows = await gpu.profile();
        const total = rows.reduce((a, r) => a + r.totalMs, 0);
        return rows
          .sort((a, b) => b.totalMs - a.totalMs)
          .map((r) => `${r.kernel.padEnd(24)} ${r.totalMs.toFixed(2).padStart(9)} ms ${((100 * r.totalMs) / total).toFixed(1).padStart(5)}%  ${r.calls} calls`)
          .join("\n");
      },
    };
  }
  const { backend, times } = timeOps(await createBackend(options));
  return { backend, report: async () => times.report() };
}
