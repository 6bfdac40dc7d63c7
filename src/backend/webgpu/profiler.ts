/**
 * GPU time per kernel from timestamp queries. While profiling, every dispatch gets its own compute pass
 * whose beginning and end are timestamped (timestamps inside a pass are not core WebGPU); the queries
 * of each submission are resolved into a staging buffer and summed per kernel name when it maps.
 */
import { BufferUsage, MAP_READ_MODE } from "./device.js";
import type { BufferPool } from "./buffers.js";

/** Total GPU time of one kernel over the profiled span. */
export interface KernelTime {
  kernel: string;
  calls: number;
  totalMs: number;
}

/** Dispatches timed per submission before the recorder must submit. */
const CAPACITY = 2048;

export class Profiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuffer: GPUBuffer;
  private names: string[] = [];
  private batch?: { names: string[]; staging: GPUBuffer; bytes: number };
  private readonly pending = new Set<Promise<void>>();
  private readonly totals = new Map<string, { calls: number; ns: number }>();

  constructor(device: GPUDevice, private readonly pool: BufferPool) {
    this.querySet = device.createQuerySet({ type: "timestamp", count: CAPACITY * 2 });
    this.resolveBuffer = pool.raw(CAPACITY * 16, BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC, "timestamps").buffer;
  }

  get full(): boolean {
    return this.names.length >= CAPACITY;
  }

  /** A pass descriptor that timestamps the pass of kernel `name`. */
  pass(name: string): GPUComputePassDescriptor {
    const i = this.names.length;
    this.names.push(name);
    return { timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } };
  }

  /** Records the resolution of this submission's queries. */
  resolve(encoder: GPUCommandEncoder): void {
    if (this.names.length === 0) return;
    const bytes = this.names.length * 16;
    const staging = this.pool.takeStaging(bytes);
    encoder.resolveQuerySet(this.querySet, 0, this.names.length * 2, this.resolveBuffer, 0);
    encoder.copyBufferToBuffer(this.resolveBuffer, 0, staging, 0, bytes);
    this.batch = { names: this.names, staging, bytes };
    this.names = [];
  }

  /** Starts reading back the submission just made. */
  submitted(): void {
    const b = this.batch;
    if (!b) return;
    this.batch = undefined;
    const p = b.staging.mapAsync(MAP_READ_MODE, 0, b.bytes).then(() => {
      const t = new BigUint64Array(b.staging.getMappedRange(0, b.bytes));
      b.names.forEach((name, i) => {
        const ns = Math.max(0, Number(t[2 * i + 1]! - t[2 * i]!));
        const e = this.totals.get(name) ?? { calls: 0, ns: 0 };
        e.calls++;
        e.ns += ns;
        this.totals.set(name, e);
      });
      b.staging.unmap();
      this.pool.releaseStaging(b.staging);
    });
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p)).catch(() => {});
  }

  /** Per-kernel totals since the last reset, longest first. */
  async report(): Promise<KernelTime[]> {
    await Promise.all([...this.pending]);
    return [...this.totals]
      .map(([kernel, e]) => ({ kernel, calls: e.calls, totalMs: e.ns / 1e6 }))
      .sort((a, b) => b.totalMs - a.totalMs);
  }

  reset(): void {
    this.totals.clear();
  }

  destroy(): void {
    this.querySet.destroy();
  }
}
