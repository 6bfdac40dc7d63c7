/**
 * Batched decoding's matmuls on WebGPU: a matmul of --rows rows (a server step of that many sequences) as
 * one GEMV over all rows (`batchedGemv`, each weight read once) against one GEMV per row (the old path),
 * with the one-row GEMV as the anchor, on Llama-3.2-1B's shapes (out x in: q/o 2048x2048, gate/up
 * 8192x2048, down 2048x8192, LM head 128256x2048) in q4_0 and f16.
 *
 *   node dist/bench/gpu-batch-gemv.js [--formats q4_0,f16] [--shapes 2048x2048,8192x2048,2048x8192,128256x2048]
 *        [--rows 8] [--batch-rows-per-team 1,2,4] [--iters 20] [--rounds 7] [--wall] [--quick]
 *
 * Each configuration (one-row, per-row, batched with each rows-per-team R of --batch-rows-per-team) is
 * timed in turn within every round, so clock drift hits them alike; a figure is the median over rounds of
 * the GPU time of --iters matmuls (timestamp queries: every dispatch in its own timed pass, summed per
 * matmul; wall time when the adapter has none), after one untimed round. --wall: no timestamps, the
 * backend unprofiled, and the wall time of --iters (default 200) matmuls recorded into one submission,
 * back to back as in a decode step: host recording (one dispatch a row against one a part) included. Weights cycle through copies of
 * >= 192 MiB so each matmul's first read comes from DRAM, as in a decode step; the per-row path's later
 * rows may then hit L2, as they do in the server. The last column checks that the batched rows equal the
 * per-row results bit for bit on this GPU (the property the server's batched decoding relies on).
 * --quick: small shapes and few iterations, to check the path on SwiftShader. Ends with one JSON line.
 */
import { parseArgs } from "node:util";
import { createWebGpuBackend, GEMV_BATCH_ROWS, type GpuTensor } from "../src/backend/webgpu/webgpu-backend.js";
import type { GpuFormat, GpuWeight } from "../src/backend/webgpu/weights.js";
import type { Tensor } from "../src/backend/backend.js";
import { GEMV_BATCH_ROWS_PER_TEAM } from "../src/backend/webgpu/kernels/matmul.js";
import { randomWeight } from "./random-weights.js";

const { values: a } = parseArgs({
  options: {
    formats: { type: "string", default: "q4_0,f16" },
    shapes: { type: "string" },
    rows: { type: "string", default: "8" },
    "batch-rows-per-team": { type: "string" },
    iters: { type: "string" },
    wall: { type: "boolean", default: false },
    rounds: { type: "string" },
    quick: { type: "boolean", default: false },
  },
});
const quick = a.quick!;
const FORMATS = a.formats!.split(",") as GpuFormat[];
const SHAPES = (a.shapes ?? (quick ? "256x512,512x256" : "2048x2048,8192x2048,2048x8192,128256x2048")).split(",").map((s) => {
  const [n, k] = s.split("x").map(Number);
  if (!(Number.isInteger(n) && Number.isInteger(k) && n! > 0 && k! > 0)) throw new Error(`--shapes: "${s}" is not OUTxIN`);
  return [n!, k!] as const;
});
const ROWS = Number(a.rows);
if (!(Number.isInteger(ROWS) && ROWS >= 2 && ROWS <= GEMV_BATCH_ROWS)) throw new Error(`--rows must be 2..${GEMV_BATCH_ROWS}, got ${a.rows}`);
const WALL = a.wall!;
const ITERS = Number(a.iters ?? (quick ? 3 : WALL ? 200 : 20));
const ROUNDS = Number(a.rounds ?? (quick ? 2 : 7));
const COLD_BYTES = quick ? 4 << 20 : 192 << 20;

const b = await createWebGpuBackend({ profile: !WALL });
const timed = WALL ? "wall time, one submission" : b.gpu.timestamps ? "GPU timestamps" : "wall time (no timestamp queries)";
console.log(`batched GEMV on ${b.description} (subgroups ${b.gpu.subgroups ? `min ${b.gpu.subgroupMinSize}` : "off"}; ${timed}; ${ROWS} rows, ${ITERS} matmuls a figure, median of ${ROUNDS} rounds)`);

/** ms per matmul of `op` over `iters` calls: GPU time summed over its dispatches, or wall time. */
async function time(op: (i: number) => void): Promise<number> {
  await b.finish();
  b.resetProfile();
  const t0 = performance.now();
  for (let i = 0; i < ITERS; i++) op(i);
  await b.finish();
  const wall = (performance.now() - t0) / ITERS;
  if (WALL || !b.gpu.timestamps) return wall;
  const total = (await b.profile()).reduce((s, k) => s + k.totalMs, 0);
  return total / ITERS;
}

const median = (v: number[]) => [...v].sort((x, y) => x - y)[v.length >> 1]!;

function fill(t: Tensor, n: number, seed: number): void {
  let s = seed;
  const v = Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.2);
  b.gpu.device.queue.writeBuffer((t as GpuTensor).buf.buffer, 0, v);
}

/** Whether two outputs hold the same bits. */
function sameBits(x: Float32Array, y: Float32Array): boolean {
  const [u, v] = [new Uint32Array(x.buffer, x.byteOffset, x.length), new Uint32Array(y.buffer, y.byteOffset, y.length)];
  return u.length === v.length && u.every((e, i) => e === v[i]);
}

interface Row { shape: string; format: GpuFormat; rows: number; R: number; oneUs: number; perRowUs: number; batchedUs: number; speedup: number; ofOne: number; sameBits: boolean }
const results: Row[] = [];
console.log("out x in       format rows  R   one-row us  per-row us  batched us  per-row/batched  batched/one-row  same bits");
for (const [N, K] of SHAPES) {
  for (const format of FORMATS) {
    const raw = randomWeight("w", format, [N, K], 1);
    const copies = Math.max(1, Math.ceil(COLD_BYTES / raw.data.length));
    const ws: GpuWeight[] = Array.from({ length: copies }, (_, c) => b.upload({ ...raw, name: `w${c}` }));
    const x1 = b.activation(1, K);
    const xs = b.activation(ROWS, K);
    fill(x1, K, 1);
    fill(xs, ROWS * K, 2);
    const o1 = b.activation(1, N);
    const oPer = b.activation(ROWS, N);
    const oBat = b.activation(ROWS, N);
    const Rs = a["batch-rows-per-team"]?.split(",").map(Number) ?? [b.gemvBatchRowsPerTeam[format]];
    const savedR = b.gemvBatchRowsPerTeam[format];
    const configs: { name: string; run: () => Promise<number> }[] = [
      { name: "one", run: () => time((i) => b.matmul(o1, x1, ws[i % copies]!)) },
      { name: "per-row", run: async () => {
        b.batchedGemv = false;
        try { return await time((i) => b.matmul(oPer, xs, ws[i % copies]!)); } finally { b.batchedGemv = true; }
      } },
      ...Rs.map((R) => ({ name: `R${R}`, run: async () => {
        b.gemvBatchRowsPerTeam[format] = R;
        try { return await time((i) => b.matmul(oBat, xs, ws[i % copies]!)); } finally { b.gemvBatchRowsPerTeam[format] = savedR; }
      } })),
    ];
    const samples = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    for (let round = -1; round < ROUNDS; round++) {
      for (const c of configs) {
        const ms = await c.run();
        if (round >= 0) samples.get(c.name)!.push(ms);
      }
    }
    // bit check: the same weight and rows through both paths
    b.batchedGemv = false;
    b.matmul(oPer, xs, ws[0]!);
    b.batchedGemv = true;
    const per = await b.read(oPer);
    const one = median(samples.get("one")!) * 1e3;
    const perRow = median(samples.get("per-row")!) * 1e3;
    for (const R of Rs) {
      b.gemvBatchRowsPerTeam[format] = R;
      b.matmul(oBat, xs, ws[0]!);
      b.gemvBatchRowsPerTeam[format] = savedR;
      const same = sameBits(await b.read(oBat), per);
      const batched = median(samples.get(`R${R}`)!) * 1e3;
      const row: Row = { shape: `${N}x${K}`, format, rows: ROWS, R, oneUs: one, perRowUs: perRow, batchedUs: batched, speedup: perRow / batched, ofOne: batched / one, sameBits: same };
      results.push(row);
      console.log(
        `${row.shape.padEnd(14)} ${format.padEnd(6)} ${String(ROWS).padStart(4)} ${String(R).padStart(2)} ${one.toFixed(1).padStart(11)} ${perRow.toFixed(1).padStart(11)} ${batched.toFixed(1).padStart(11)} ${row.speedup.toFixed(2).padStart(16)}x ${row.ofOne.toFixed(2).padStart(15)}x  ${same ? "yes" : "NO"}`,
      );
    }
    for (const w of ws) for (const p of w.parts) { b.pool.destroy(p.data); if (p.scales) b.pool.destroy(p.scales); }
  }
}
console.log(JSON.stringify({ device: b.description, timed, rows: ROWS, iters: ITERS, rounds: ROUNDS, defaultBatchRowsPerTeam: GEMV_BATCH_ROWS_PER_TEAM, results }));
b.dispose();
