/**
 * Sparse-bitmap weights on the CPU against our own dense kernels of the same value type, same threads, one
 * run (the machine is shared: every ratio comes from interleaved rounds, median):
 *
 *  1. GEMV: for each shape, value type and sparsity, dense and sparse calls alternate, weights cycled
 *     through >= 96 MiB so that every call reads DRAM as a decode step does ("cold"); the same two kernels
 *     are also timed on one copy that stays in L2/L3 ("hot"). Dense hot ~ dense cold means the dense
 *     kernel is bound by its instructions, not by memory, and then reading fewer bytes cannot help; dense
 *     cold / sparse hot bounds the speedup any byte saving can give this sparse kernel (its reads free).
 *     Prints ms, GB/s, speedup over dense, the byte ceiling b/(1 + (1 - s) b) (b = value bits, spec
 *     sparamx §3.1) and the fraction of it reached.
 *     Where the runtime has relaxed SIMD (turned on here for Node 20), the sparse kernels are
 *     kernels-relaxed.wasm's and the plain kernels.wasm ones are timed too ("plain" columns).
 *  2. End-to-end decode of frugal-ar-base (stored bf16), batch 1: the unpruned model on the dense
 *     kernels, the Wanda-pruned model on the sparse-bf16 kernels, and the same pruned weights on the
 *     dense kernels; 16-token prompt, then one-token greedy steps, interleaved rounds, median tokens/s,
 *     with the bytes of the linear weights. Wanda calibration: 4 x 128 tokens of the first 60,000
 *     characters of models/corpus-val.txt (as bench/sparse-eval.ts).
 *
 *   node dist/bench/cpu-sparse.js [--quick] [--threads N] [--types bf16,f16,f32] [--skip-gemv] [--skip-decode] [--no-relaxed]
 *                                 [--json FILE] [--doc docs/sparsity.md]
 *
 * --no-relaxed times the plain kernels only. --doc writes the tables between <!-- cpu-sparse-speed:begin --> and <!-- cpu-sparse-speed:end -->.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir, cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { Arena } from "../src/backend/cpu/arena.js";
import { CpuBackend, CpuTensor, CpuWeight } from "../src/backend/cpu/cpu-backend.js";
import { createWasmMatmul, usesRelaxedSimd } from "../src/backend/cpu/wasm-matmul.js";
import { enableRelaxedSimd } from "../src/backend/cpu/relaxed-simd.js";
import { createCpuBackend } from "../src/backend/cpu/cpu-backend.js";
import { f32ToBf16, f32ToF16 } from "../src/tensor/half.js";
import { packSparse, sparseDTypeOf, type SparseValueType } from "../src/sparse/bitmap.js";
import { pruneMask } from "../src/sparse/prune.js";
import { loadModel, readSource } from "../src/load.js";
import type { Model } from "../src/model/model.js";
import { linearSparsity, prunedTensors, sparsify, withTensors, writePrunedFolder } from "../src/sparse/source.js";
import { markdownTable } from "../src/eval/plot.js";

const args = process.argv.slice(2);
// before any kernel compiles; --no-relaxed keeps the plain kernels only
const relaxed = !args.includes("--no-relaxed") && (await enableRelaxedSimd()) && (await usesRelaxedSimd());
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = args.includes("--quick");
const threads = Number(opt("--threads") ?? 2);
const types = (opt("--types") ?? "bf16").split(",") as SparseValueType[];
/** frugal-ar-base's linear shapes (out x in), then a large one */
const SHAPES: [number, number][] = quick ? [[1376, 512]] : [[1376, 512], [512, 1376], [512, 512], [4096, 4096]];
const SPARSITIES = quick ? [0.5, 0.9] : [0.5, 0.7, 0.9];
const COLD_BYTES = 96 * 2 ** 20;
const ROUNDS = quick ? 5 : 15;
const MODEL = "models/frugal-ar-base";
const CALIB_CHARS = 60_000;
const CALIB = { sequences: 4, seqLen: 128 };

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
  /** the same kernels on one copy of the weights (cache-resident) */
  denseHotMs: number; sparseHotMs: number;
  /** kernels.wasm's sparse kernel where `sparseMs` is the relaxed-SIMD one (else undefined) */
  plainMs?: number; plainHotMs?: number;
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
        const plainBackend = relaxed ? await createCpuBackend({ threads: nThreads, activations: "f32", relaxedSimd: false }) : undefined;
        const mask = pruneMask(w, outF, inF, s);
        const pruned = w.map((x, i) => (mask[i] ? 0 : x));
        const denseBitsV = bits(v, pruned);
        const denseData = new Uint8Array(denseBitsV.buffer);
        const sparseData = packSparse(v, outF, inF, denseBitsV);
        const copies = Math.max(2, Math.ceil(COLD_BYTES / denseData.byteLength));
        const dense: CpuWeight[] = [], sparse: CpuWeight[] = [], plain: CpuWeight[] = [];
        for (let i = 0; i < copies; i++) {
          dense.push(backend.upload({ name: `d${i}`, dtype: v, shape: [outF, inF], data: denseData }));
          sparse.push(backend.upload({ name: `s${i}`, dtype: sparseDTypeOf(v), shape: [outF, inF], data: sparseData }));
          if (plainBackend) plain.push(plainBackend.upload({ name: `p${i}`, dtype: sparseDTypeOf(v), shape: [outF, inF], data: sparseData }));
        }
        const io = (b: CpuBackend) => {
          const x = b.activation(1, inF) as CpuTensor;
          for (let i = 0; i < inF; i++) x.data[i] = xs[i]!;
          return { x, out: b.activation(1, outF) };
        };
        const xs = Float32Array.from({ length: inF }, () => Math.random() * 2 - 1);
        const main = io(backend), side = plainBackend ? io(plainBackend) : undefined;
        const timeOf = (ws: CpuWeight[], n: number, b = backend, { x, out } = main) => {
          const calls = Math.max(n, 40);
          for (let i = 0; i < 2; i++) b.matmul(out, x, ws[i]!);
          const t0 = performance.now();
          for (let i = 0; i < calls; i++) b.matmul(out, x, ws[i % n]!);
          return (performance.now() - t0) / calls;
        };
        const dm: number[] = [], sm: number[] = [], dh: number[] = [], sh: number[] = [], pm: number[] = [], ph: number[] = [];
        for (let r = 0; r < rounds; r++) {
          dm.push(timeOf(dense, copies));
          sm.push(timeOf(sparse, copies));
          if (plainBackend) pm.push(timeOf(plain, copies, plainBackend, side));
          dh.push(timeOf(dense, 1));
          sh.push(timeOf(sparse, 1));
          if (plainBackend) ph.push(timeOf(plain, 1, plainBackend, side));
        }
        const denseMs = median(dm), sparseMs = median(sm);
        const b = v === "f32" ? 32 : 16;
        const ceiling = b / (1 + (1 - s) * b);
        const row: SparseGemvRow = {
          outF, inF, values: v, sparsity: s, threads: nThreads, denseMs, sparseMs, speedup: denseMs / sparseMs, ceiling,
          ofCeiling: denseMs / sparseMs / ceiling, denseGBs: denseData.byteLength / denseMs / 1e6, sparseGBs: sparseData.byteLength / sparseMs / 1e6,
          denseHotMs: median(dh), sparseHotMs: median(sh),
          ...(plainBackend ? { plainMs: median(pm), plainHotMs: median(ph) } : {}),
        };
        results.push(row);
        log(`${outF}x${inF} ${v.padEnd(4)} s=${(s * 100).toFixed(0).padStart(2)}% | dense ${denseMs.toFixed(3)} ms ${row.denseGBs.toFixed(1)} GB/s (hot ${row.denseHotMs.toFixed(3)}) | sparse ${sparseMs.toFixed(3)} ms ${row.sparseGBs.toFixed(1)} GB/s (hot ${row.sparseHotMs.toFixed(3)}) | x${row.speedup.toFixed(2)} (ceiling x${ceiling.toFixed(2)}, ${(row.ofCeiling * 100).toFixed(0)}%)` +
          (row.plainMs !== undefined ? ` | plain sparse ${row.plainMs.toFixed(3)} ms (hot ${row.plainHotMs!.toFixed(3)}) x${(denseMs / row.plainMs).toFixed(2)}` : ""));
        backend.dispose();
        plainBackend?.dispose();
      }
    }
  }
  return results;
}

export interface DecodeRow {
  sparsity: number; realised: number; denseTps: number; sparseTps: number; prunedDenseTps: number;
  /** the pruned model on kernels.wasm's sparse kernels where `sparseTps` ran the relaxed-SIMD ones */
  plainTps?: number;
  ratio: number; ratioPrunedDense: number; denseLinearBytes: number; sparseLinearBytes: number; otherBytes: number;
}

/** Decode tokens/s: 16-token prompt, then `steps` one-token greedy steps. */
async function decodeTps(model: Model, steps: number): Promise<number> {
  const cache = model.network.newCache(16 + steps + 1);
  const prompt = Int32Array.from({ length: 16 }, (_, i) => 5 + i);
  let tok = await model.backend.argmax!(model.network.forward(prompt, 0, cache));
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) tok = await model.backend.argmax!(model.network.forward(Int32Array.of(tok), 16 + i, cache));
  return steps / ((performance.now() - t0) / 1000);
}

const bytesOf = (m: Iterable<{ data: Uint8Array }>) => [...m].reduce((a, t) => a + t.data.byteLength, 0);

export async function decodeSweep(levels: number[], nThreads: number, rounds: number, steps: number, log = console.log): Promise<DecodeRow[]> {
  const calib = (await readFile("models/corpus-val.txt", "utf8")).slice(0, CALIB_CHARS);
  const source = await readSource(MODEL);
  const dense = await loadModel(MODEL, { threads: nThreads });
  const dir = await mkdtemp(join(tmpdir(), "cpu-sparse-"));
  const out: DecodeRow[] = [];
  try {
    for (const s of levels) {
      const t0 = performance.now();
      const pruned = await prunedTensors(source, { method: "wanda", sparsity: s, calibText: calib, ...CALIB, threads: nThreads });
      const realised = linearSparsity(pruned);
      const folder = join(dir, `w${Math.round(s * 100)}`);
      await writePrunedFolder(folder, { source: resolve(MODEL), method: "wanda", sparsity: s, realised }, pruned);
      const withPruned = withTensors(source, pruned);
      const denseLinearBytes = bytesOf(pruned.values());
      const sparseLinearBytes = bytesOf([...sparsify(withPruned).tensors].filter(([n]) => pruned.has(n)).map(([, t]) => t));
      const otherBytes = bytesOf([...source.tensors].filter(([n]) => !pruned.has(n)).map(([, t]) => t));
      log(`wanda ${(s * 100).toFixed(0)}%: realised ${(realised * 100).toFixed(2)}% in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      const sparse = await loadModel(folder, { threads: nThreads });
      const prunedDense = await loadModel(folder, { threads: nThreads, sparse: { kernels: false } });
      const plain = relaxed ? await loadModel(folder, { backend: await createCpuBackend({ threads: nThreads, relaxedSimd: false }) }) : undefined;
      const d: number[] = [], sp: number[] = [], pd: number[] = [], pl: number[] = [];
      try {
        for (const m of [dense, sparse, prunedDense, plain]) if (m) await decodeTps(m, 4);
        for (let r = 0; r < rounds; r++) {
          d.push(await decodeTps(dense, steps));
          sp.push(await decodeTps(sparse, steps));
          pd.push(await decodeTps(prunedDense, steps));
          if (plain) pl.push(await decodeTps(plain, steps));
        }
      } finally {
        sparse.dispose();
        prunedDense.dispose();
        plain?.dispose();
      }
      const row: DecodeRow = {
        sparsity: s, realised, denseTps: median(d), sparseTps: median(sp), prunedDenseTps: median(pd), ratio: median(sp) / median(d),
        ratioPrunedDense: median(sp) / median(pd), denseLinearBytes, sparseLinearBytes, otherBytes,
        ...(plain ? { plainTps: median(pl) } : {}),
      };
      out.push(row);
      log(`decode ${MODEL} wanda ${(s * 100).toFixed(0)}%: dense ${row.denseTps.toFixed(1)} t/s | sparse ${row.sparseTps.toFixed(1)} t/s (x${row.ratio.toFixed(2)}) | pruned on dense kernels ${row.prunedDenseTps.toFixed(1)} t/s (sparse x${row.ratioPrunedDense.toFixed(2)})` +
        (row.plainTps !== undefined ? ` | plain sparse kernels ${row.plainTps.toFixed(1)} t/s (x${(row.plainTps / row.prunedDenseTps).toFixed(2)} of pruned-dense)` : ""));
    }
  } finally {
    dense.dispose();
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}

export function gemvTable(rows: SparseGemvRow[]): string {
  const plain = rows.some((r) => r.plainMs !== undefined);
  return markdownTable(
    ["shape (out x in)", "values", "sparsity", "dense ms", "sparse ms", "speedup", "byte ceiling", "of ceiling", "dense GB/s", "dense hot ms", "sparse hot ms", "limit: dense / sparse hot",
      ...(plain ? ["plain sparse ms", "plain speedup", "plain hot ms"] : [])],
    rows.map((r) => [`${r.outF} x ${r.inF}`, r.values, `${(r.sparsity * 100).toFixed(0)}%`, r.denseMs.toFixed(3), r.sparseMs.toFixed(3), `**${r.speedup.toFixed(2)}**`,
      r.ceiling.toFixed(2), `${(r.ofCeiling * 100).toFixed(0)}%`, r.denseGBs.toFixed(1), r.denseHotMs.toFixed(3), r.sparseHotMs.toFixed(3), (r.denseMs / r.sparseHotMs).toFixed(2),
      ...(plain ? [r.plainMs?.toFixed(3) ?? "", r.plainMs ? (r.denseMs / r.plainMs).toFixed(2) : "", r.plainHotMs?.toFixed(3) ?? ""] : [])]),
  );
}

export function decodeTable(rows: DecodeRow[]): string {
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  const plain = rows.some((r) => r.plainTps !== undefined);
  return markdownTable(
    ["Wanda sparsity (realised)", "dense bf16 t/s", "pruned, sparse-bf16 kernel t/s", "pruned, dense kernel t/s", "sparse / dense", "sparse / pruned-dense",
      ...(plain ? ["plain sparse kernel t/s", "plain / pruned-dense"] : []), "linear MiB dense / sparse", "other MiB"],
    rows.map((r) => [`${(r.sparsity * 100).toFixed(0)}% (${(r.realised * 100).toFixed(2)}%)`, r.denseTps.toFixed(1), r.sparseTps.toFixed(1), r.prunedDenseTps.toFixed(1),
      `**${r.ratio.toFixed(2)}**`, `**${r.ratioPrunedDense.toFixed(2)}**`,
      ...(plain ? [r.plainTps?.toFixed(1) ?? "", r.plainTps ? (r.plainTps / r.prunedDenseTps).toFixed(2) : ""] : []),
      `${mb(r.denseLinearBytes)} / ${mb(r.sparseLinearBytes)}`, mb(r.otherBytes)]),
  );
}

if (process.argv[1]?.endsWith("cpu-sparse.js")) {
  const started = new Date().toISOString();
  const t0 = performance.now();
  const load0 = loadavg()[0]!;
  console.log(`CPU sparse-bitmap vs our dense kernels of the same value type, ${threads} thread(s), ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), load average ${load0.toFixed(2)} at start`);
  console.log(`GEMV: median of ${ROUNDS} interleaved rounds; sparse kernels: ${relaxed ? "relaxed SIMD (kernels-relaxed.wasm), plain ones timed beside them" : "plain (kernels.wasm)"}`);
  const gemv = args.includes("--skip-gemv") ? [] : await sparseGemvSweep(SHAPES, types, SPARSITIES, threads, ROUNDS);
  const decode = args.includes("--skip-decode") ? [] : await decodeSweep(quick ? [0.5] : [0.5, 0.7, 0.9], threads, quick ? 3 : 9, quick ? 16 : 48);
  const seconds = (performance.now() - t0) / 1000;
  const load1 = loadavg()[0]!;
  const header = `Measured ${started} in ${seconds.toFixed(0)} s with \`node dist/bench/cpu-sparse.js${args.length ? " " + args.join(" ") : ""}\`, ${threads} threads, ${cpus().length}-core ${cpus()[0]?.model ?? "CPU"}; load average ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end (ratios come from interleaved rounds in one run; absolute times move with the load). Sparse kernels: ${relaxed ? "relaxed SIMD (kernels-relaxed.wasm); \"plain\" columns: kernels.wasm's" : "kernels.wasm's (no relaxed SIMD)"}.`;
  const md = header + "\n" + (gemv.length ? `\n**GEMV** (cold: weights cycled through 96 MiB; hot: one copy, cache-resident up to L3's 8 MiB):\n\n${gemvTable(gemv)}\n` : "") +
    (decode.length ? `\n**Decode, frugal-ar-base, batch 1** (Wanda, 4 x 128 calibration tokens; median of interleaved rounds of ${quick ? 16 : 48} steps):\n\n${decodeTable(decode)}\n\nThe unpruned dense model and the pruned weights on the dense kernel run the same code over the same bytes: their ratio (${decode.map((d) => (d.denseTps / d.prunedDenseTps).toFixed(2)).join(", ")}) is this run's noise.\n` : "");
  console.log("\n" + md);
  const json = JSON.stringify({ bench: "cpu-sparse", started, seconds, threads, loadavg: [load0, load1], gemv, decode });
  const file = opt("--json");
  if (file) await writeFile(file, json + "\n");
  const doc = opt("--doc");
  if (doc) {
    const text = await readFile(doc, "utf8");
    const begin = "<!-- cpu-sparse-speed:begin -->", end = "<!-- cpu-sparse-speed:end -->";
    const a = text.indexOf(begin), b = text.indexOf(end);
    if (a < 0 || b < a) throw new Error(`${doc}: no ${begin} ... ${end} section to write`);
    await writeFile(doc, text.slice(0, a + begin.length) + "\n" + md + text.slice(b));
  }
}
