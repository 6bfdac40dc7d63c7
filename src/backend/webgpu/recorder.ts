/**
 * Records a forward pass into one command encoder and one compute pass, and submits it when a result is
 * read (one queue submission per decode step). Parameter blocks of every dispatch go into a CPU-side
 * ring that is uploaded with a single writeBuffer just before the submission. Each dispatch binds its
 * slice at a fixed offset baked into its bind group rather than as a dynamic offset: a decode step records
 * the same dispatches in the same order every time, so its slices land at the same offsets and every bind
 * group is made once and reused, and a bind group set without dynamic offsets costs ~30% less host time
 * through dawn.node (1.9 against 2.7 µs on the GPU machine, bench/gpu-dispatch-floor.ts).
 */
import { BufferUsage, COMPUTE_STAGE, MAP_READ_MODE, type GpuDevice } from "./device.js";
import type { Buf, BufferPool } from "./buffers.js";
import { PARAM_BYTES, type Kernel } from "./kernel.js";
import { Profiler, type KernelTime } from "./profiler.js";

const RING_BYTES = 1 << 20;
/** Bind groups kept before the cache starts over (each is a kernel, its buffers and a parameter offset). */
const MAX_BIND_GROUPS = 1 << 14;

interface Compiled {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

export class Recorder {
  private encoder?: GPUCommandEncoder;
  private pass?: GPUComputePassEncoder;
  private readonly ring: Buf;
  private readonly staging = new Uint8Array(RING_BYTES);
  private readonly words = new Uint32Array(this.staging.buffer);
  private ringUsed = 0;
  private readonly align: number;
  private readonly compiled = new Map<string, Compiled>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly errors: Promise<GPUError | null>[] = [];
  private uncaptured?: string;
  private lost?: string;
  private readonly profiler?: Profiler;
  /** Counters for tests and reports. */
  dispatches = 0;
  submissions = 0;

  constructor(private readonly gpu: GpuDevice, private readonly pool: BufferPool, profile: boolean) {
    const d = gpu.device;
    this.align = Math.max(gpu.uniformAlign, d.limits.minStorageBufferOffsetAlignment);
    this.ring = pool.raw(RING_BYTES, BufferUsage.UNIFORM | BufferUsage.STORAGE | BufferUsage.COPY_DST, "params");
    if (profile) {
      if (!gpu.timestamps) throw new Error(`WebGPU: profiling needs the timestamp-query feature, which ${gpu.description} does not offer`);
      this.profiler = new Profiler(d, pool);
    }
    d.addEventListener("uncapturederror", (e) => {
      this.uncaptured ??= (e as GPUUncapturedErrorEvent).error.message;
    });
    void d.lost.then((info) => {
      this.lost = info.message || info.reason || "device lost";
    });
  }

  private get device(): GPUDevice {
    return this.gpu.device;
  }

  private ensureEncoder(): GPUCommandEncoder {
    if (this.lost) throw new Error(`WebGPU device lost: ${this.lost}`);
    if (!this.encoder) {
      this.device.pushErrorScope("out-of-memory");
      this.device.pushErrorScope("validation");
      this.encoder = this.device.createCommandEncoder();
    }
    return this.encoder;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = undefined;
  }

  private kernel(k: Kernel): Compiled {
    let c = this.compiled.get(k.key);
    if (!c) {
      const params: GPUBufferBindingLayout =
        k.params === "storage" ? { type: "read-only-storage" } : { type: "uniform" };
      const layout = this.device.createBindGroupLayout({
        label: k.name,
        entries: [
          { binding: 0, visibility: COMPUTE_STAGE, buffer: params },
          ...k.bindings.map((b, i) => ({
            binding: i + 1,
            visibility: COMPUTE_STAGE,
            buffer: { type: b === "read" ? ("read-only-storage" as const) : ("storage" as const) },
          })),
        ],
      });
      const module = this.device.createShaderModule({ code: k.code, label: k.name });
      const pipeline = this.device.createComputePipeline({
        label: k.name,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: "main" },
      });
      c = { pipeline, layout };
      this.compiled.set(k.key, c);
    }
    return c;
  }

  private bindGroup(k: Kernel, layout: GPUBindGroupLayout, bufs: readonly Buf[], paramBytes: number, paramOffset: number): GPUBindGroup {
    let key = `${k.key}|${paramOffset}`;
    for (const b of bufs) key += `,${b.id}`;
    let g = this.bindGroups.get(key);
    if (!g) {
      // sequences that never repeat (one-off kernels, changing batch mixes) must not grow the cache forever
      if (this.bindGroups.size >= MAX_BIND_GROUPS) this.bindGroups.clear();
      g = this.device.createBindGroup({
        layout,
        entries: [
          { binding: 0, resource: { buffer: this.ring.buffer, offset: paramOffset, size: paramBytes } },
          ...bufs.map((b, i) => ({ binding: i + 1, resource: b.offset === undefined ? { buffer: b.buffer } : { buffer: b.buffer, offset: b.offset, size: b.size } })),
        ],
      });
      this.bindGroups.set(key, g);
    }
    return g;
  }

  /** Reserves a parameter slot, submitting what is recorded when the ring is full. */
  private params(words: ArrayLike<number>, bytes: number): number {
    if (words.length * 4 > bytes) throw new Error(`parameter block of ${words.length} words exceeds ${bytes} bytes`);
    if (this.ringUsed + bytes > RING_BYTES) this.flush();
    const off = this.ringUsed;
    this.ringUsed = Math.ceil((off + bytes) / this.align) * this.align;
    this.words.set(words, off / 4);
    return off;
  }

  /** Records one dispatch of `k` over a grid of workgroups. */
  dispatch(k: Kernel, params: ArrayLike<number>, bufs: readonly Buf[], groups: readonly [number, number]): void {
    if (bufs.length !== k.bindings.length) throw new Error(`${k.name}: ${bufs.length} buffers for ${k.bindings.length} bindings`);
    if (this.profiler?.full) this.flush();
    const bytes = k.paramBytes ?? PARAM_BYTES;
    const offset = this.params(params, bytes);
    // after a possible flush and inside this batch's error scopes, so compile errors surface at its read
    const encoder = this.ensureEncoder();
    const { pipeline, layout } = this.kernel(k);
    const group = this.bindGroup(k, layout, bufs, bytes, offset);
    if (this.profiler) {
      this.endPass();
      this.pass = encoder.beginComputePass(this.profiler.pass(k.name));
    } else {
      this.pass ??= encoder.beginComputePass();
    }
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, group);
    this.pass.dispatchWorkgroups(groups[0], groups[1]);
    if (this.profiler) this.endPass();
    this.dispatches++;
  }

  /** Records a buffer-to-buffer copy after the dispatches so far. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    const encoder = this.ensureEncoder();
    this.endPass();
    encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /** Submits everything recorded so far (a no-op when nothing is). */
  flush(): void {
    const encoder = this.encoder;
    if (!encoder) return;
    this.endPass();
    this.profiler?.resolve(encoder);
    if (this.ringUsed > 0) this.device.queue.writeBuffer(this.ring.buffer, 0, this.staging, 0, this.ringUsed);
    this.device.queue.submit([encoder.finish()]);
    this.errors.push(this.device.popErrorScope(), this.device.popErrorScope());
    this.profiler?.submitted();
    this.encoder = undefined;
    this.ringUsed = 0;
    this.submissions++;
  }

  /** Throws the first GPU error raised since the last check. */
  async check(): Promise<void> {
    const errs = await Promise.all(this.errors.splice(0));
    const first = errs.find((e) => e) ?? undefined;
    if (first) throw new Error(`WebGPU error: ${first.message}`);
    if (this.uncaptured) {
      const m = this.uncaptured;
      this.uncaptured = undefined;
      throw new Error(`WebGPU error: ${m}`);
    }
    if (this.lost) throw new Error(`WebGPU device lost: ${this.lost}`);
  }

  /** Submits pending work and returns `bytes` of `src` from `offset`. */
  async read(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    const staging = this.pool.takeStaging(bytes);
    this.copy(src, offset, staging, 0, bytes);
    this.flush();
    try {
      await staging.mapAsync(MAP_READ_MODE, 0, bytes);
    } catch (e) {
      await this.check();
      throw e;
    }
    const out = staging.getMappedRange(0, bytes).slice(0);
    staging.unmap();
    this.pool.releaseStaging(staging);
    await this.check();
    return out;
  }

  /** Waits for submitted work (for benchmarks). */
  async idle(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.check();
  }

  async profile(): Promise<KernelTime[]> {
    if (!this.profiler) throw new Error("profiling is off: create the WebGPU backend with { profile: true }");
    this.flush();
    return this.profiler.report();
  }

  resetProfile(): void {
    this.profiler?.reset();
  }

  destroy(): void {
    this.profiler?.destroy();
  }
}
