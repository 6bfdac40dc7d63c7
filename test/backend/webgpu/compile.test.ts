/**
 * Every kernel variant compiles, including those the CI adapter never picks (32-lane subgroup teams of
 * real GPUs, head widths of real models): WGSL is validated and pipelines built on Dawn's null backend,
 * which executes nothing. Also: the error without an adapter says how to get one.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { openGpu } from "../../../src/backend/webgpu/device.js";
import type { Kernel } from "../../../src/backend/webgpu/kernel.js";
import { GEMV_PORTABLE_WORKGROUP_BYTES, gemmKernel, gemvKernel, gemvVariant, gemvWorkgroupBytes, type GemvX, type XMode } from "../../../src/backend/webgpu/kernels/matmul.js";
import { addGemvKernel, stackedGemvKernel, swigluGemvKernel } from "../../../src/backend/webgpu/kernels/gemv-fused.js";
import { attentionCombineKernel, attentionPartialKernel } from "../../../src/backend/webgpu/kernels/attention.js";
import { addBiasKernel, addKernel, swigluKernel } from "../../../src/backend/webgpu/kernels/elementwise.js";
import { rmsnormKernel } from "../../../src/backend/webgpu/kernels/norm.js";
import { ropeKernel } from "../../../src/backend/webgpu/kernels/rope.js";
import { kvWriteInt8Kernel, kvWriteKernel, kvWriteQuant4Kernel } from "../../../src/backend/webgpu/kernels/kv.js";
import { GEMV_DECODE_DEFAULTS, setGemvDecode } from "../../../src/backend/webgpu/kernels/packed.js";
import { GEMV_DECODE_VARIANTS } from "../../../src/quant/wgsl/decode.js";
import type { PackedDType } from "../../../src/tensor/dtype.js";
import { embedKernel } from "../../../src/backend/webgpu/kernels/embed.js";
import { argmaxFinalKernel, argmaxKernel, argmaxPartsKernel } from "../../../src/backend/webgpu/kernels/argmax.js";
import { sampleKernel } from "../../../src/backend/webgpu/kernels/sample.js";
import { copyKernel } from "../../../src/backend/webgpu/kernels/copy.js";
import { sparseGemvKernel } from "../../../src/backend/webgpu/kernels/sparse-gemv.js";
import { compactWorkgroupBytes, sparseCompactKernel } from "../../../src/backend/webgpu/kernels/sparse-gemv-compact.js";
import { PACKED_DTYPES, type BlockDType as DType } from "../../../src/tensor/dtype.js";
import { attentionRowsCombineKernel, attentionRowsPartialKernel, kvWriteRowsKernel, ropeRowsKernel } from "../../../src/backend/webgpu/kernels/rows.js";
import { embedRowsKernel } from "../../../src/backend/webgpu/kernels/embed-rows.js";

const FORMATS: DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0"];
/** Staged-x variants [R, S, U, x] compiled for every format. */
const STAGED: [number, number, number, GemvX][] = [[1, 1, 1, "shared"], [2, 2, 2, "shared"], [4, 4, 1, "shared-f16"], [8, 2, 1, "shared-f16"], [3, 1, 2, "shared-f16"]];

function allKernels(): Kernel[] {
  const ks: Kernel[] = [];
  for (const f of FORMATS) {
    for (const mode of ["exact", "vec4", "scalar"] as XMode[]) for (const sg of [1, 4, 8, 32, 64]) for (const r of [1, 2, 4]) ks.push(gemvKernel(f, mode, sg, r));
    // tuning variants the bench sweeps: split (teams per row group) and unroll (loads in flight)
    for (const sg of [1, 32]) for (const [r, s, u] of [[1, 2, 1], [2, 1, 4], [4, 4, 2], [3, 1, 3], [8, 8, 1]]) for (const pipe of [false, true]) ks.push(gemvKernel(f, "exact", sg, r, s, u, pipe));
    ks.push(gemmKernel(f), embedKernel(f), embedRowsKernel(f, 64));
  }
  // x staged in workgroup memory (f32 and f16), every format the skeleton serves, every x access mode
  for (const f of [...FORMATS, ...PACKED_DTYPES]) {
    for (const sg of [1, 16, 32]) {
      for (const [r, s, u, x] of STAGED) {
        // larger windows need a device that raises maxComputeWorkgroupStorageSize (the null backend does not)
        const v = { rowsPerTeam: r, split: s, unroll: u, pipeline: false, x };
        if (gemvWorkgroupBytes(f, sg, v) <= GEMV_PORTABLE_WORKGROUP_BYTES) ks.push(gemvKernel(f, "exact", sg, r, s, u, false, x));
      }
    }
    for (const mode of ["vec4", "scalar"] as XMode[]) ks.push(gemvKernel(f, mode, 32, 2, 2, 1, false, "shared-f16"));
  }
  for (const d of [6, 8, 64, 80, 128, 256]) ks.push(attentionPartialKernel(d), attentionCombineKernel(d), attentionRowsPartialKernel(d), attentionRowsCombineKernel(d));
  // quantized KV caches at real head widths, plain and windowed
  for (const d of [64, 128]) {
    ks.push(kvWriteInt8Kernel(d), attentionPartialKernel(d, "int8"), attentionPartialKernel(d, "int8", true));
    for (const f of ["int4", "razer"] as const) ks.push(kvWriteQuant4Kernel(f, d), attentionPartialKernel(d, f), attentionPartialKernel(d, f, true));
  }
  // GEMVs over several x rows (batched decoding): every format and x mode, plain and fused, pipelined
  for (const f of [...FORMATS, ...PACKED_DTYPES]) {
    for (const sg of [1, 16, 32]) {
      for (const B of [2, 8]) {
        for (const mode of ["exact", "vec4", "scalar"] as XMode[]) ks.push(gemvKernel(f, mode, sg, 2, 2, 1, false, "global", undefined, B));
        const v = { rowsPerTeam: 2, split: 2, unroll: 2, pipeline: true, x: "global" as GemvX };
        ks.push(gemvKernel(f, "exact", sg, 1, 4, 1, false, "global", undefined, B), stackedGemvKernel(f, "vec4", sg, v, 3, B), stackedGemvKernel(f, "exact", sg, v, 4, B));
        ks.push(swigluGemvKernel(f, "exact", sg, v, B), addGemvKernel(f, "scalar", sg, v, B));
      }
    }
  }
  // every GEMV decode variant of the packed formats, with 32-lane subgroups and without subgroups
  for (const [f, vs] of Object.entries(GEMV_DECODE_VARIANTS) as [PackedDType, Record<string, unknown>][]) {
    for (const v of Object.keys(vs)) {
      setGemvDecode(f, v);
      for (const sg of [1, 32]) ks.push(gemvKernel(f, "exact", sg), gemvKernel(f, "vec4", sg, 2, 2, 2, true), gemvKernel(f, "exact", sg, 2, 2, 1, false, "global", undefined, 8));
    }
    setGemvDecode(f, GEMV_DECODE_DEFAULTS[f]!);
  }
  for (const [a, b] of [[false, false], [true, false], [false, true], [true, true]] as const) ks.push(addKernel(a, b), swigluKernel(a, b));
  for (const t of [64, 256]) ks.push(rmsnormKernel(t, false), rmsnormKernel(t, true), rmsnormKernel(t, false, true), rmsnormKernel(t, true, true));
  for (const v of ["f32", "f16", "bf16"] as const) for (const sg of [false, true]) ks.push(sparseGemvKernel(v, sg), ...[1, 2, 4, 8].flatMap((t) => [1, 2, 4].filter((h) => compactWorkgroupBytes(t, sg, h) <= GEMV_PORTABLE_WORKGROUP_BYTES).map((h) => sparseCompactKernel(v, sg, t, h))));
  ks.push(addBiasKernel(), ropeKernel(), kvWriteKernel(), argmaxKernel(), argmaxKernel(true), argmaxPartsKernel(), argmaxFinalKernel(), sampleKernel(), copyKernel(), ropeRowsKernel(), kvWriteRowsKernel());
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

test("GEMV workgroup memory: the defaults fit every device; a larger window fails with the size gemvWorkgroupBytes predicts", { skip: !nullGpu && "Dawn's null backend is not available" }, async () => {
  for (const f of [...FORMATS, ...PACKED_DTYPES]) for (const sg of [1, 32]) assert.ok(gemvWorkgroupBytes(f, sg, gemvVariant(f, sg)) <= GEMV_PORTABLE_WORKGROUP_BYTES, `${f} sg=${sg}`);
  const gpu = await openGpu({ dawnFlags: ["backend=null"] });
  const limit = gpu.device.limits.maxComputeWorkgroupStorageSize;
  const v = { rowsPerTeam: 2, split: 4, unroll: 2, pipeline: false, x: "shared" as const };
  const bytes = gemvWorkgroupBytes("q4_0", 32, v);
  assert.ok(bytes > limit, `${bytes} bytes should exceed the null device's ${limit}`);
  const module = gpu.device.createShaderModule({ code: gemvKernel("q4_0", "exact", 32, 2, 4, 2, false, "shared").code });
  await assert.rejects(gpu.device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } }), new RegExp(`\\(${bytes} bytes\\)`));
  gpu.device.destroy();
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
