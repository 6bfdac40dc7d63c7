/**
 * Every GPU buffer the backend makes goes through here: it numbers buffers (bind groups are cached by
 * those numbers), keeps a pool of map-read staging buffers for readback, and frees everything at once.
 */
import { BufferUsage } from "./device.js";

export interface Buf {
  readonly id: number;
  readonly buffer: GPUBuffer;
  readonly size: number;
  /** Where a binding of this Buf starts in `buffer` (a sub-range: a row view); whole buffer when absent. */
  readonly offset?: number;
}

export class BufferPool {
  private nextId = 1;
  private readonly live = new Set<GPUBuffer>();
  private readonly staging = new Map<number, GPUBuffer[]>();
  private readonly ranges = new Map<string, Buf>();

  constructor(private readonly device: GPUDevice, private readonly maxBufferBytes: number) {}

  /** A storage buffer of at least `bytes` (rounded up to 16 so vec4 views always fit). */
  storage(bytes: number, label: string, extraUsage = 0): Buf {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (size > this.maxBufferBytes) throw new Error(`WebGPU: ${label} needs ${size} bytes, more than this device's maxBufferSize ${this.maxBufferBytes}`);
    const buffer = this.device.createBuffer({
      size,
      usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC | extraUsage,
      label,
    });
    this.live.add(buffer);
    return { id: this.nextId++, buffer, size };
  }

  /** A storage buffer holding `data` (its length is padded to 16 bytes with zeros). */
  upload(data: Uint8Array, label: string): Buf {
    const b = this.storage(data.byteLength, label);
    const whole = data.byteLength - (data.byteLength % 4);
    if (whole > 0) this.device.queue.writeBuffer(b.buffer, 0, data as Uint8Array<ArrayBuffer>, 0, whole);
    if (whole < data.byteLength) {
      const tail = new Uint8Array(4);
      tail.set(data.subarray(whole));
      this.device.queue.writeBuffer(b.buffer, whole, tail);
    }
    return b;
  }

  /**
   * Bytes [offset, offset + size) of `parent` as a Buf of its own, the same one each time it is asked
   * for (so bind groups over it are cached too). `offset` must be a multiple of the device's storage
   * offset alignment.
   */
  subrange(parent: Buf, offset: number, size: number): Buf {
    const start = (parent.offset ?? 0) + offset;
    if (offset < 0 || offset + size > parent.size) throw new Error(`sub-range [${offset}, ${offset + size}) of a ${parent.size}-byte buffer`);
    const key = `${parent.buffer.label}|${parent.id}|${start}|${size}`;
    let b = this.ranges.get(key);
    if (!b) {
      b = { id: this.nextId++, buffer: parent.buffer, size, offset: start };
      this.ranges.set(key, b);
    }
    return b;
  }

  /** A buffer with custom usage (uniform rings, query resolution). */
  raw(bytes: number, usage: number, label: string): Buf {
    const buffer = this.device.createBuffer({ size: bytes, usage, label });
    this.live.add(buffer);
    return { id: this.nextId++, buffer, size: bytes };
  }

  /** A map-read buffer of at least `bytes`; give it back with `releaseStaging`. */
  takeStaging(bytes: number): GPUBuffer {
    const size = Math.max(256, 2 ** Math.ceil(Math.log2(bytes)));
    const free = this.staging.get(size);
    const b = free?.pop();
    if (b) return b;
    const buffer = this.device.createBuffer({ size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST, label: "readback" });
    this.live.add(buffer);
    return buffer;
  }

  releaseStaging(b: GPUBuffer): void {
    const list = this.staging.get(b.size) ?? [];
    list.push(b);
    this.staging.set(b.size, list);
  }

  /** Frees a buffer whose last use has been submitted. */
  destroy(b: Buf): void {
    this.live.delete(b.buffer);
    b.buffer.destroy();
  }

  destroyAll(): void {
    for (const b of this.live) b.destroy();
    this.live.clear();
    this.staging.clear();
    this.ranges.clear();
  }
}
