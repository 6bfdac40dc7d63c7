/**
 * A matmul worker thread: instantiates the kernels over the shared arena memory and runs each job the
 * control block announces (see worker-pool.ts), until the pool sets `quit`.
 */
import { parentPort, workerData } from "node:worker_threads";
import { CTRL, CTRL_BYTES, type WorkerInit } from "./worker-pool.js";

const init = workerData as WorkerInit;
const instance = await WebAssembly.instantiate(init.module, { env: { memory: init.memory } });
type Run = (ctrl: number, tag: number, thread: number) => number;
const run = instance.exports["run"] as Run;
const packed = init.packedModule ? (await WebAssembly.instantiate(init.packedModule, { env: { memory: init.memory } })) : undefined;
const runPacked = packed?.exports["run"] as Run | undefined;
/** src/quant's packed formats (packed-kernels.wat): KIND_PACKED of wasm-matmul.ts, not imported to keep this worker's graph small */
const KIND_PACKED = 11;
const c = new Int32Array(init.memory.buffer, init.ctrl, CTRL_BYTES / 4);
const SEQ = CTRL.seq >> 2;

/** Returns the next job generation, spinning for `spinMs` before sleeping. */
function nextJob(seen: number): number {
  let s: number;
  let t0 = performance.now();
  let n = 0;
  while ((s = Atomics.load(c, SEQ)) === seen) {
    if ((++n & 1023) !== 0 || performance.now() - t0 < init.spinMs) continue;
    Atomics.add(c, CTRL.sleepers >> 2, 1);
    Atomics.wait(c, SEQ, seen);
    Atomics.sub(c, CTRL.sleepers >> 2, 1);
    t0 = performance.now();
  }
  return s;
}

// read the generation before saying ready: the pool may announce the first job right after
let seen = Atomics.load(c, SEQ);
parentPort!.postMessage("ready");
for (;;) {
  seen = nextJob(seen);
  if (Atomics.load(c, CTRL.quit >> 2) !== 0) break;
  // the job's tag; if the caller has closed it already, run claims nothing. Tag 0 marks a job the caller
  // runs alone (it announced none, but this worker may be late from an earlier one).
  const tag = Atomics.load(c, CTRL.next >> 2) >>> 12;
  if (tag === 0) continue;
  try {
    const kernel = Atomics.load(c, CTRL.kind >> 2) === KIND_PACKED && runPacked ? runPacked : run;
    if (kernel(init.ctrl, tag, init.index) === 0) continue;
  } catch (e) {
    init.errors.postMessage(e instanceof Error ? e.message : String(e));
    Atomics.add(c, CTRL.errors >> 2, 1);
  }
  if (Atomics.load(c, CTRL.callerSleeping >> 2) !== 0) Atomics.notify(c, CTRL.done >> 2);
}
init.errors.close();
