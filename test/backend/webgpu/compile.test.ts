/**
 * Every kernel variant compiles, including those the CI adapter never picks (32-lane subgroup teams of
 * real GPUs, head widths of real models): WGSL is validated and pipelines built on Dawn's null backend,
 * which executes nothing. Also: the error without an adapter says how to get one.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { openGpu } from "../../../src/backend/webgpu/device.js";
import type { Kernel } from "../../../src/backend/webgpu/kernel.js";
import { gemmKernel, gemvKernel, type XMode } from "../../../src/backend/webgpu/kernels/matmul.js";
import { attentionCombineKernel, attentionPartialKernel } from "../../../src/backend/webgpu/kernels/attention.js";
import { addBiasKernel, addKernel, swigluKernel } from "../../../src/backend/webgpu/kernels/elementwise.js";
import { rmsnormKernel } from "../../../src/backend/webgpu/kernels/norm.js";
import { ropeKernel } from "../../../src/backend/webgpu/kernels/rope.js";
import { kvWriteKernel } from "../../../src/backend/webgpu/kernels/kv.js";
import { embedKernel } from "../../../src/backend/webgpu/kernels/embed.js";
import { argmaxKernel } from "../../../src/backend/webgpu/kernels/argmax.js";
import { sampleKernel } from "../../../src/backend/webgpu/kernels/sample.js";
import { copyKernel } from "../../../src/backend/webgpu/kernels/copy.js";
import { sparseGemvKernel } from "../../../src/backend/webgpu/kernels/sparse-gemv.js";
import { attentionRowsCombineKernel, attentionRowsPartialKernel, kvWriteRowsKernel, ropeRowsKernel } from "../../../src/backend/webgpu/kernels/rows.js";
import { embedRowsKernel } from "../../../src/backend/webgpu/kernels/embed-rows.js";
import type { BlockDType as DType } from "../../../src/tensor/dtype.js";

const FORMATS: DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0"];

function allKernels(): Kernel[] {
  const ks: Kernel[] = [];
  for (const f of FORMATS) {
    for (const mode of ["exact", "vec4", "scalar"] as XMode[]) for (const sg of [1, 4, 8, 32, 64]) for (const r of [1, 2, 4]) ks.push(gemvKernel(f, mode, sg, r));
    // tuning variants the bench sweeps: split (teams per row group) and unroll (loads in flight)
    for (const sg of [1, 32]) for (const [r, s, u] of [[1, 2, 1], [2, 1, 4], [4, 4, 2], [3, 1, 3], [8, 8, 1]]) for (const pipe of [false, true]) ks.push(gemvKernel(f, "exact", sg, r, s, u, pipe));
    ks.push(gemmKernel(f), embedKernel(f), embedRowsKernel(f, 64));
  }
  for (const d of [6, 8, 64, 80, 128, 256]) ks.push(attentionPartialKernel(d), attentionCombineKernel(d), attentionRowsPartialKernel(d), attentionRowsCombineKernel(d));
  for (const [a, b] of [[false, false], [true, false], [false, true], [true, true]] as const) ks.push(addKernel(a, b), swigluKernel(a, b));
  for (const t of [64, 256]) ks.push(rmsnormKernel(t, false), rmsnormKernel(t, true));
  for (const v of ["f32", "f16", "bf16"] as const) for (const sg of [false, true]) ks.push(sparseGemvKernel(v, sg));
  ks.push(addBiasKernel(), ropeKernel(), kvWriteKernel(), argmaxKernel(), sampleKernel(), copyKernel(), ropeRowsKernel(), kvWriteRowsKernel());
  return ks;
}

const nullGpu = await openGpu({ dawnFlags: ["backend=null"] }).catch(() => undefined);

test("every kernel variant compiles (Dawn null backend)", { skip: !nullGpu && "Dawn's null backend is not available" }, async () => {
  const device = nullGpu!.device;
  const failures: string[] = [];
  for (const k of allKernels()) {
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code: k.code, label: k.key });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error").map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
    await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } }).catch((e: Error) => errors.push(e.message));
    const scope = await device.popErrorScope();
    if (scope) errors.push(scope.message);
    if (errors.length) failures.push(`${k.key}: ${errors.join("; ")}`);
  }
  device.destroy();
  assert.deepEqual(failures, []);
});

test("without an adapter the error says how to get one", async () => {
  const nav = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  Object.defineProperty(globalThis, "navigator", { value: { gpu: { requestAdapter: async () => null } }, configurable: true, writable: true });
  try {
    await assert.rejects(openGpu(), /no adapter found.*GPU driver.*apt-get install chromium.*VK_ICD_FILENAMES=\/usr\/lib\/chromium\/vk_swiftshader_icd\.json/s);
  } finally {
    if (nav) Object.defineProperty(globalThis, "navigator", nav);
    else delete (globalThis as { navigator?: unknown }).navigator;
  }
});
