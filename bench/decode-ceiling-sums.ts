/**
 * The host's side of gpu-decode-ceiling's check: checkSum over many ranges of filled words, spread over
 * worker threads (an 8B step is 1.2 billion words, ~10 s on one core).
 */
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { checkSum } from "./decode-ceiling-kernels.js";

/** Words [from, to) of a buffer filled with `seed`. */
export interface SumRange {
  seed: number;
  from: number;
  to: number;
}

/** Words a worker sums at a time, so that the ranges of a large region spread over the workers. */
const CHUNK = 1 << 24;

/** checkSum of every range, in order. */
export async function rangeSums(ranges: readonly SumRange[]): Promise<number[]> {
  const chunks: { range: number; part: SumRange }[] = [];
  ranges.forEach((r, range) => {
    for (let from = r.from; from < r.to; from += CHUNK) chunks.push({ range, part: { seed: r.seed, from, to: Math.min(r.to, from + CHUNK) } });
  });
  const sums = ranges.map(() => 0);
  const workers = Math.max(1, Math.min(availableParallelism(), 16, Math.ceil(chunks.length / 4)));
  const shares = Array.from({ length: workers }, (_, w) => chunks.filter((_, i) => i % workers === w));
  const results = await Promise.all(shares.map((share) => new Promise<number[]>((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: share.map((c) => c.part) });
    worker.once("message", resolve);
    worker.once("error", reject);
    worker.once("exit", (code) => { if (code !== 0) reject(new Error(`checksum worker exited with ${code}`)); });
  })));
  results.forEach((partSums, w) => partSums.forEach((s, i) => {
    const c = shares[w]![i]!;
    sums[c.range] = (sums[c.range]! + s) | 0;
  }));
  return sums.map((s) => s >>> 0);
}

if (!isMainThread && parentPort) {
  parentPort.postMessage((workerData as SumRange[]).map((r) => checkSum(r.seed, r.from, r.to)));
}
