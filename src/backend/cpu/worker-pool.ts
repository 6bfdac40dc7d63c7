/**
 * Worker threads that run the matmul kernels beside the calling thread. Every worker instantiates the same
 * compiled module over the arena's shared memory, then waits on a control block in that memory: a job costs
 * a few atomic operations, not a postMessage (which costs tens of microseconds). Workers spin briefly after
 * a job (decode issues matmuls back to back) and then sleep in Atomics.wait.
 *
 * Node only (node:worker_threads, Atomics.wait on the main thread).
 */
import type { MessagePort, Worker } from "node:worker_threads";

/** Byte offsets inside the control block; kernels.wat reads `done`, `next` and the job fields at the same offsets. */
export const CTRL = {
  /** announcement counter; workers wait for it to change */
  seq: 0,
  /** set to 1 when the pool is disposed */
  quit: 4,
  /** workers currently asleep in Atomics.wait (the caller skips notify when 0) */
  sleepers: 8,
  /** workers whose kernel threw during the current job */
  errors: 12,
  /** 1 while the caller sleeps waiting for `done` */
  callerSleeping: 16,
  /** chunks finished in the current job (own cache line: written by every thread) */
  done: 64,
  /** job tag << 12 | next chunk to claim (own cache line) */
  next: 128,
  kind: 192, w: 196, x: 200, xs: 204, out: 208, inF: 212, outF: 216, rows: 220, chunk: 224, nChunks: 228,
  /** per-thread scratch: thread t (the caller is 0, worker i is i + 1) owns scratch + t * scratchStride */
  scratch: 232, scratchStride: 236,
  /** a 65536-entry f16 -> f32 table in the same memory (block scales are looked up, not decoded) */
  f16Table: 240,
  /** attention jobs (kind 7): first query position, heads, kv heads, head width, score scale (f32) */
  pos0: 256, heads: 260, kvHeads: 264, headDim: 268, scale: 272,
  /** packed-format jobs (kind 11, packed-kernels.wat): see wasm-packed.ts */
  qfmt: 320, qgroup: 324, qscales: 328, qtensorScale: 332, qtables: 336, qxstride: 340, qscaleRow: 344, qcodeRow: 348,
} as const;
export const CTRL_BYTES = 352;
/** How long the pool sits out after a stalled job (see SpinOptions.stallMs). */
const PAUSE_MS = 20;
/** Most chunks one job may have (the 12-bit index field; 0xfff marks a closed job). */
export const MAX_CHUNKS = 0xffe;

const I = (byteOffset: number): number => byteOffset >> 2;

/** How long a thread busy-waits before sleeping, and how long the caller waits for a silent worker. */
export interface SpinOptions {
  /**
   * Worker spin after a job before sleeping, in milliseconds (default 0.25: longer than the gaps between
   * the matmuls of a decode step, short enough not to starve other work on a busy machine).
   */
  workerSpinMs?: number;
  /** A worker that neither finishes nor makes progress for this long is reported as hung. */
  hangMs?: number;
  /**
   * A job that waits longer than this (ms), plus twice the caller's time per chunk, for workers after the
   * caller's share pauses the pool for 20 ms (default 1; Infinity never pauses, e.g. for tests that must
   * exercise the workers).
   */
  stallMs?: number;
}

export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctrl: number;
  spinMs: number;
  errors: MessagePort;
  /** this worker's thread index (1..size; the caller is 0) */
  index: number;
  /** packed-kernels.wat, which runs the jobs of kind 8 */
  packedModule?: WebAssembly.Module;
}

export class WorkerPool {
  private disposed = false;
  private tag = 0;
  private pausedUntil = 0;
  /** Chunks the workers (not the caller) have run, over the pool's life. */
  workerChunks = 0;

  private constructor(
    private readonly workers: Worker[],
    private readonly errorPorts: MessagePort[],
    private readonly ctl: Int32Array,
    private readonly hangMs: number,
    private readonly stallMs: number,
    private readonly receive: (port: MessagePort) => { message: unknown } | undefined,
  ) {}

  /** Starts `size` workers (size >= 1) and resolves when each has instantiated the module. */
  static async start(
    size: number, module: WebAssembly.Module, memory: WebAssembly.Memory, ctrl: number, spin: SpinOptions = {},
    packedModule?: WebAssembly.Module,
  ): Promise<WorkerPool> {
    const { Worker, MessageChannel, receiveMessageOnPort } = await import("node:worker_threads");
    const ctl = new Int32Array(memory.buffer, ctrl, CTRL_BYTES / 4);
    const url = new URL("./matmul-worker.js", import.meta.url);
    const workers: Worker[] = [];
    const errorPorts: MessagePort[] = [];
    try {
      await Promise.all(Array.from({ length: size }, (_, i) => {
        const channel = new MessageChannel();
        const init: WorkerInit = { module, memory, ctrl, spinMs: spin.workerSpinMs ?? 0.25, errors: channel.port2, index: i + 1, ...(packedModule ? { packedModule } : {}) };
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
    return new WorkerPool(workers, errorPorts, ctl, spin.hangMs ?? 60_000, spin.stallMs ?? 1, (p) => receiveMessageOnPort(p));
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * False for a while after a job waited too long for a worker's chunk (see stallMs; the machine has more
   * runnable threads than cores): callers then run jobs alone instead of queueing behind a preempted thread.
   */
  get available(): boolean {
    return this.pausedUntil === 0 || performance.now() >= this.pausedUntil;
  }

  /**
   * Runs a job of `nChunks` chunks whose parameters the caller has written into the control block: opens
   * it, wakes the workers, runs the caller's share through `here(tag)` (the kernels' run(ctrl, tag), which
   * returns how many chunks it ran), and returns when every chunk is done. A worker that is asleep or descheduled simply takes no chunk; the
   * caller waits only for chunks a worker actually claimed.
   */
  run(nChunks: number, here: (tag: number) => number): void {
    if (this.disposed) throw new Error("matmul worker pool was disposed");
    if (nChunks > MAX_CHUNKS) throw new Error(`a matmul job of ${nChunks} chunks exceeds ${MAX_CHUNKS}`);
    const c = this.ctl;
    // tags 1..0xfffff; 0 is the calling thread's own (single-threaded) jobs, which workers never join
    const tag = (this.tag = (this.tag % 0xfffff) + 1);
    Atomics.store(c, I(CTRL.done), 0);
    Atomics.store(c, I(CTRL.next), tag << 12);
    Atomics.add(c, I(CTRL.seq), 1);
    if (Atomics.load(c, I(CTRL.sleepers)) > 0) Atomics.notify(c, I(CTRL.seq));
    let failure: unknown;
    let mine = 0;
    const start = performance.now();
    try {
      mine = here(tag);
    } catch (e) {
      failure = e;
    }
    const waitFrom = performance.now();
    const workerFailed = failure === undefined && this.waitDone(nChunks);
    // a worker the OS descheduled in the middle of a chunk holds everyone up; on a machine that busy,
    // the caller alone is faster for a while. A worker that merely started its last chunk late may need
    // up to a chunk's time (the caller's own time per chunk tells it) beyond that.
    const chunkMs = (waitFrom - start) / Math.max(1, mine);
    if (performance.now() - waitFrom > this.stallMs + 2 * chunkMs) this.pausedUntil = performance.now() + PAUSE_MS;
    // close the job: no thread can claim a chunk of it from now on
    const claimed = Math.min(Atomics.exchange(c, I(CTRL.next), (tag << 12) | 0xfff) & 0xfff, nChunks);
    this.workerChunks += claimed - mine;
    if (failure !== undefined || workerFailed) {
      // chunks that threw never count as done; wait for the rest so that none writes into the next job
      const lost = Atomics.load(c, I(CTRL.errors)) + (failure !== undefined ? 1 : 0);
      this.waitFor(() => Atomics.load(c, I(CTRL.done)) >= claimed - lost);
      Atomics.store(c, I(CTRL.errors), 0);
      const messages = this.errorPorts.map((p) => this.receive(p)?.message).filter((m) => m !== undefined);
      if (failure !== undefined) throw failure;
      throw new Error(`matmul worker failed: ${messages.join("; ") || "unknown error"}`);
    }
  }

  /** Waits until `nChunks` chunks are done; true if a worker failed instead. */
  private waitDone(nChunks: number): boolean {
    const c = this.ctl;
    let failed = false;
    this.waitFor(() => (failed = Atomics.load(c, I(CTRL.errors)) > 0) || Atomics.load(c, I(CTRL.done)) >= nChunks);
    return failed;
  }

  /** Spins briefly on `ready`, then sleeps on `done` (workers notify it); throws on a worker that stopped. */
  private waitFor(ready: () => boolean): void {
    const c = this.ctl;
    // spin about 50 us (a worker usually finishes its last chunk within that), then sleep: spinning longer
    // would take the core from a worker that the OS has descheduled
    const t0 = performance.now();
    for (let spins = 1; ; spins++) {
      if (ready()) return;
      if ((spins & 255) === 0 && performance.now() - t0 > 0.05) break;
    }
    let progress = -1;
    let since = performance.now();
    for (;;) {
      Atomics.store(c, I(CTRL.callerSleeping), 1);
      const d = Atomics.load(c, I(CTRL.done));
      if (ready()) break;
      Atomics.wait(c, I(CTRL.done), d, 100);
      const mark = Atomics.load(c, I(CTRL.done)) * 0x10000 + (Atomics.load(c, I(CTRL.next)) & 0xfff);
      const now = performance.now();
      if (mark !== progress) {
        progress = mark;
        since = now;
      } else if (now - since > this.hangMs) {
        Atomics.store(c, I(CTRL.callerSleeping), 0);
        throw new Error(`matmul worker did not respond for ${this.hangMs} ms`);
      }
    }
    Atomics.store(c, I(CTRL.callerSleeping), 0);
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
