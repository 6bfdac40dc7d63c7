/**
 * Finding a WebGPU adapter and opening a device: navigator.gpu in browsers, the `webgpu` package (Dawn)
 * in Node. We ask for the optional features the kernels can use (subgroups, timestamp queries) and raise
 * the limits that bound model size to whatever the adapter offers.
 */

/** The spec's numeric flags, so that Node needs no WebGPU globals installed. */
export const BufferUsage = {
  MAP_READ: 0x0001,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
  QUERY_RESOLVE: 0x0200,
} as const;
export const MAP_READ_MODE = 0x0001;
export const COMPUTE_STAGE = 0x4;

export interface GpuOptions {
  /** Use subgroup operations when the adapter has them (default true); false forces the workgroup-memory paths. */
  subgroups?: boolean;
  /** Request timestamp queries (needed for profiling). Default true when the adapter has them. */
  timestamps?: boolean;
  /** Extra Dawn toggles for Node, e.g. "backend=null". */
  dawnFlags?: string[];
}

/** An open device and what it can do. */
export interface GpuDevice {
  readonly device: GPUDevice;
  /** Keeps Dawn's instance alive in Node for as long as the device is used. */
  readonly gpu: GPU;
  readonly subgroups: boolean;
  /** Smallest subgroup size the adapter may use (1 without subgroups). */
  readonly subgroupMinSize: number;
  readonly timestamps: boolean;
  readonly maxBindingBytes: number;
  readonly maxBufferBytes: number;
  readonly uniformAlign: number;
  readonly maxInvocations: number;
  /** vendor / architecture / device, for reports. */
  readonly description: string;
}

const NO_ADAPTER =
  "WebGPU: no adapter found. Install a GPU driver (Vulkan on Linux, Metal on macOS, D3D12 on Windows). " +
  "On Linux without a GPU, `apt-get install chromium libvulkan1` and set " +
  "VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json to run on SwiftShader (a CPU Vulkan); " +
  "without libvulkan1, LD_LIBRARY_PATH=/usr/lib/chromium also provides the Vulkan loader.";

async function findGpu(dawnFlags: string[]): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  let mod: { create(flags: string[]): GPU };
  // a computed specifier keeps browser bundlers from trying to resolve the Node-only package
  const pkg = "webgpu";
  try {
    mod = (await import(pkg)) as { create(flags: string[]): GPU };
  } catch (e) {
    throw new Error(`WebGPU: this runtime has no navigator.gpu and the optional package "webgpu" could not be loaded (npm install webgpu): ${(e as Error).message}`);
  }
  // Full-precision timestamps: Dawn rounds them by default (a browser anti-fingerprinting measure).
  // No zero-fill of workgroup memory: every kernel here writes its workgroup arrays before reading
  // them, and the fill makes SwiftShader take seconds to compile a kernel with 16 KiB of it.
  return mod.create(["disable-dawn-features=timestamp_quantization", "enable-dawn-features=disable_workgroup_init", ...dawnFlags]);
}

/** Opens the default adapter's device, or throws an error that says how to get one. */
export async function openGpu(options: GpuOptions = {}): Promise<GpuDevice> {
  const gpu = await findGpu(options.dawnFlags ?? []);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error(NO_ADAPTER);
  const wantSubgroups = (options.subgroups ?? true) && adapter.features.has("subgroups");
  const wantTimestamps = (options.timestamps ?? true) && adapter.features.has("timestamp-query");
  const features: GPUFeatureName[] = [];
  if (wantSubgroups) features.push("subgroups" as GPUFeatureName);
  if (wantTimestamps) features.push("timestamp-query");
  const a = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits: {
      maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
      maxBufferSize: a.maxBufferSize,
      maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: a.maxComputeWorkgroupSizeX,
      maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
    },
  });
  const info = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo ?? adapter.info;
  const sgMin = (info as { subgroupMinSize?: number }).subgroupMinSize ?? 4;
  const description = [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(" / ") || "unknown adapter";
  return {
    device,
    gpu,
    subgroups: wantSubgroups,
    subgroupMinSize: wantSubgroups ? sgMin : 1,
    timestamps: wantTimestamps,
    maxBindingBytes: device.limits.maxStorageBufferBindingSize,
    maxBufferBytes: device.limits.maxBufferSize,
    uniformAlign: device.limits.minUniformBufferOffsetAlignment,
    maxInvocations: device.limits.maxComputeInvocationsPerWorkgroup,
    description,
  };
}
