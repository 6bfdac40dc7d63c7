/**
 * Sparse-bitmap GEMV on the CPU against our own dense kernel of the same value type, same threads, in
 * the same run: for each shape, value type and sparsity, dense and sparse calls alternate (interleaved
 * rounds, median), weights cycled through >= 96 MiB so that every call reads DRAM as a decode step does.
 * Prints ms, GB/s of bytes read, speedup over dense, the byte ceiling b/(1 + (1 - s) b) (b = value bits,
 * spec sparamx §3.1) and the fraction of it reached; one JSON line with every number (or --json FILE).
 *
 *   node dist/bench/cpu-sparse.js [--quick] [--threads N] [--types f16,bf16,f32] [--json FILE]
 */
import { writeFile } from "node:fs/promises";
import { Arena } from "../src/backend/cpu/arena.js";
import { CpuBackend, CpuTensor, CpuWeight } from "../src/backend/cpu/cpu-backend.js";
import { createWasmMatmul } from "../src/backend/cpu/wasm-matmul.js";
import { f32ToBf16, f32ToF16 } from "../src/tensor/half.js";
import { packSparse, sparseDTypeOf, type SparseValueType } from "../src/sparse/bitmap.js";
import { pruneMask } from "../src/sparse/prune.js";

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = args.includes("--quick");
const threads = Number(opt("--threads") ?? 2);
const types = (opt("--types") ?? "f16,bf16,f32").split(",") as SparseValueType[];
const SHAPES: [number, number][] = quick ? [[2048, 2048]] : [[1536, 512], [512, 1536], [2048, 5632], [4096, 4096]];
const SPARSITIES = quick ? [0.5, 0.9] : [0, 0.3, 0.5, 0.7, 0.9];
const COLD_BYTES = 96 * 2 ** 20;
const ROUNDS = quick ? 5 : 9;

function bits(v: SparseValueType, w: Float32Array): Uint32Array | Uint16Array {
  if (v === "f32") return new Uint32Array(w.slice().buffer);
  const out = new Uint16Array(w.length);
  for (let i = 0; i < w.length; i++) out[i] = v === "f16" ? f32ToF16(w[i]!) : f32ToBf16(w[i]!);
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

export interface SparseGemvRow {
  outF: number; inF: number; values: SparseValueType; sparsity: number; threads: number;
  denseMs: number; sparseMs: number; speedup: number; ceiling: number; ofCeiling: number; denseGBs: number; sparseGBs: number;
}

export async function sparseGemvSweep(shapes: [number, number][], valueTypes: SparseValueType[], sparsities: number[], nThreads: number, rounds: number, log = console.log): Promise<SparseGemvRow[]> {
  const results: SparseGemvRow[] = [];
  for (const [outF, inF] of shapes) {
    for (const v of valueTypes) {
      const w = new Float32Array(outF * inF);
      for (let i = 0; i < w.length; i++) w[i] = Math.random() * 2 - 1;
      for (const s of sparsities) {
        const arena = new Arena();
        const engine = await createWasmMatmul(arena, { threads: nThreads, activations: "f32" });
        if (!engine) throw new Error("WebAssembly SIMD is not available");
        const backend = new CpuBackend({ arena, matmul: engine });
        const mask = pruneMask(w, outF, inF, s);
        const pruned = w.map((x, i) => (mask[i] ? 0 : x));
        const denseBitsV = bits(v, pruned);
        const denseData = new Uint8Array(denseBitsV.buffer);
        const sparseData = packSparse(v, outF, inF, denseBitsV);
        const copies = Math.max(2, Math.ceil(COLD_BYTES / denseData.byteLength));
        const dense: CpuWeight[] = [], sparse: CpuWeight[] = [];
        for (let i = 0; i < copies; i++) {
          dense.push(backend.upload({ name: `d${i}`, dtype: v, shape: [outF, inF], data: denseData }));
          sparse.push(backend.upload({ name: `s${i}`, dtype: sparseDTypeOf(v), shape: [outF, inF], data: sparseData }));
        }
        const x = backend.activation(1, inF) as CpuTensor;
        for (let i = 0; i < inF; i++) x.data[i] = Math.random() * 2 - 1;
        const out = backend.activation(1, outF);
        const timeOf = (ws: CpuWeight[]) => {
          const calls = Math.max(copies, 20);
          for (let i = 0; i < 2; i++) backend.matmul(out, x, ws[i]!);
          const t0 = performance.now();
          for (let i = 0; i < calls; i++) backend.matmul(out, x, ws[i % copies]!);
          return (performance.now() - t0) / calls;
        };
        const dm: number[] = [], sm: number[] = [];
        for (let r = 0; r < rounds; r++) {
          dm.push(timeOf(dense));
          sm.push(timeOf(sparse));
        }
        const denseMs = median(dm), sparseMs = median(sm);
        const b = v === "f32" ? 32 : 16;
        const ceiling = b / (1 + (1 - s) * b);
        const row: SparseGemvRow = {
          outF, inF, values: v, sparsity: s, threads: nThreads, denseMs, sparseMs, speedup: denseMs / sparseMs, ceiling,
          ofCeiling: denseMs / sparseMs / ceiling, denseGBs: denseData.byteLength / denseMs / 1e6, sparseGBs: sparseData.byteLength / sparseMs / 1e6,
        };
        results.push(row);
        log(`${outF}x${inF} ${v.padEnd(4)} s=${(s * 100).toFixed(0).padStart(2)}% | dense ${denseMs.toFixed(3)} ms ${row.denseGBs.toFixed(1)} GB/s | sparse ${sparseMs.toFixed(3)} ms ${row.sparseGBs.toFixed(1)} GB/s | x${row.speedup.toFixed(2)} (ceiling x${ceiling.toFixed(2)}, ${(row.ofCeiling * 100).toFixed(0)}%)`);
        backend.dispose();
      }
    }
  }
  return results;
}

if (process.argv[1]?.endsWith("cpu-sparse.js")) {
  console.log(`CPU sparse-bitmap GEMV vs our dense kernel of the same value type, ${threads} thread(s), median of ${ROUNDS} interleaved rounds`);
  const results = await sparseGemvSweep(SHAPES, types, SPARSITIES, threads, ROUNDS);
  const json = JSON.stringify({ bench: "cpu-sparse", threads, results });
  const file = opt("--json");
  if (file) await writeFile(file, json + "\n");
  console.log(json);
}
