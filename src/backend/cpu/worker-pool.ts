/**
 * Worker threads that run the matmul kernels beside the calling thread. Every worker instantiates the same
 * compiled module over the arena's shared memory, then waits on a control block in that memory: a job costs
 * a few atomic operations, not a postMessage (which costs tens of microseconds). Workers spin briefly after
 * a job (decode issues matmuls back to back) and then sleep in Atomics.wait.
 *
 * Node only (node:worker_threads, Atomics.wait on the main thread).
 */
import type { MessagePort, Worker } from "node:worker_threads";

/** Byte offsets inside the control block; kernels.wat reads the job fields at the same offsets. */
export const CTRL = {
  /** job generation; workers wait for it to change */
  seq: 0,
  /** set to 1 when the pool is disposed */
  quit: 4,
  /** workers currently asleep in Atomics.wait (the caller skips notify when 0) */
  sleepers: 8,
  /** set by a worker whose kernel threw */
  error: 12,
  /** workers that finished the current job (own cache line: written by workers) */
  done: 64,
  /** next chunk to claim (own cache line: every thread hammers it) */
  next: 128,
  kind: 192, w: 196, x: 200, xs: 204, out: 208, inF: 212, outF: 216, rows: 220, chunk: 224, nChunks: 228,
} as const;
export const CTRL_BYTES = 256;

const I = (byteOffset: number): number => byteOffset >> 2;

/** How long a thread busy-waits before sleeping, and how long the caller waits for a silent worker. */
export interface SpinOptions {
  /** Worker spin after a job before sleeping, in milliseconds. */
  workerSpinMs?: number;
  /** A worker that neither finishes nor makes progress for this long is reported as hung. */
  hangMs?: number;
}

export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctrl: number;
  spinMs: number;
  errors: MessagePort;
}

export class WorkerPool {
  private disposed = false;

  private constructor(
    private readonly workers: Worker[],
    private readonly errorPorts: MessagePort[],
    private readonly ctl: Int32Array,
    private readonly hangMs: number,
    private readonly receive: (port: MessagePort) => { message: unknown } | undefined,
  ) {}

  /** Starts `size` workers (size >= 1) and resolves when each has instantiated the module. */
  static async start(
    size: number, module: WebAssembly.Module, memory: WebAssembly.Memory, ctrl: number, spin: SpinOptions = {},
  ): Promise<WorkerPool> {
    const { Worker, MessageChannel, receiveMessageOnPort } = await import("node:worker_threads");
    const ctl = new Int32Array(memory.buffer, ctrl, CTRL_BYTES / 4);
    const url = new URL("./matmul-worker.js", import.meta.url);
    const workers: Worker[] = [];
    const errorPorts: MessagePort[] = [];
    try {
      await Promise.all(Array.from({ length: size }, () => {
        const channel = new MessageChannel();
        const init: WorkerInit = { module, memory, ctrl, spinMs: spin.workerSpinMs ?? 1, errors: channel.port2 };
        const worker = new Worker(url, { workerData: init, transferList: [channel.port2] });
        workers.push(worker);
        errorPorts.push(channel.port1);
        return new Promise<void>((resolve, reject) => {
          worker.once("message", () => resolve());
          worker.once("error", reject);
          worker.once("exit", (code) => reject(new Error(`matmul worker exited (code ${code}) before it was ready`)));
        }).finally(() => {
          worker.removeAllListeners("message").removeAllListeners("exit");
          worker.unref();
        });
      }));
    } catch (e) {
      for (const w of workers) void w.terminate();
      throw e;
    }
    // an error after start is reported through the control block; keep the event from crashing the process
    for (const w of workers) w.on("error", () => {});
    for (const p of errorPorts) p.unref();
    return new WorkerPool(workers, errorPorts, ctl, spin.hangMs ?? 60_000, (p) => receiveMessageOnPort(p));
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * Runs the job already written in the control block on every worker and, through `here`, on the calling
   * thread; returns when all of them are done. The caller must have reset the chunk counter.
   */
  run(here: () => void): void {
    if (this.disposed) throw new Error("matmul worker pool was disposed");
    const c = this.ctl;
    Atomics.store(c, I(CTRL.done), 0);
    Atomics.add(c, I(CTRL.seq), 1);
    if (Atomics.load(c, I(CTRL.sleepers)) > 0) Atomics.notify(c, I(CTRL.seq));
    let failure: unknown;
    try {
      here();
    } catch (e) {
      failure = e;
    }
    this.waitDone();
    if (Atomics.load(c, I(CTRL.error)) !== 0) {
      Atomics.store(c, I(CTRL.error), 0);
      const messages = this.errorPorts.map((p) => this.receive(p)?.message).filter((m) => m !== undefined);
      throw new Error(`matmul worker failed: ${messages.join("; ") || "unknown error"}`);
    }
    if (failure !== undefined) throw failure;
  }

  private waitDone(): void {
    const c = this.ctl;
    const size = this.workers.length;
    let spins = 0;
    let d: number;
    let progress = -1;
    let since = 0;
    while ((d = Atomics.load(c, I(CTRL.done))) < size) {
      if (++spins < 20_000) continue;
      // a worker still computing or not yet awake: sleep until it reports, and give up on one that is gone
      Atomics.wait(c, I(CTRL.done), d, 100);
      const mark = d * 0x10000 + Atomics.load(c, I(CTRL.next));
      const now = performance.now();
      if (mark !== progress) {
        progress = mark;
        since = now;
      } else if (now - since > this.hangMs) {
        throw new Error(`matmul worker did not respond for ${this.hangMs} ms`);
      }
    }
  }

  /** Stops the workers; safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const c = this.ctl;
    Atomics.store(c, I(CTRL.quit), 1);
    Atomics.add(c, I(CTRL.seq), 1);
    Atomics.notify(c, I(CTRL.seq));
    for (const w of this.workers) void w.terminate();
    for (const p of this.errorPorts) p.close();
  }
}
