/**
 * GEMV (one activation row) and a small GEMM on the CPU backend: the TypeScript reference against the
 * WebAssembly SIMD engine, 1 and 2 threads, f32 and int8 activations for the block formats. Prints time per
 * call, GB/s of weight bytes read and ratios, then one JSON line with every number.
 *
 * Weights are stored in enough copies (>= 96 MiB in all) that successive calls read them from DRAM, not
 * from the L3 cache, as a decode step over a whole model does.
 *
 *   node dist/bench/cpu-gemv.js [--quick] [--rows N]
 */
import { Arena } from "../src/backend/cpu/arena.js";
import { CpuBackend, CpuTensor, CpuWeight, referenceMatmul, type CpuMatmul } from "../src/backend/cpu/cpu-backend.js";
import { createWasmMatmul, type ActivationPath } from "../src/backend/cpu/wasm-matmul.js";
import { byteSize, type BlockDType as DType } from "../src/tensor/dtype.js";
import { f32ToBf16, f32ToF16 } from "../src/tensor/half.js";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const rowsArg = args.indexOf("--rows");
const gemmRows = rowsArg >= 0 ? Number(args[rowsArg + 1]) : 0;
const SHAPES: [number, number][] = quick ? [[2048, 2048]] : [[2048, 2048], [5632, 2048], [2048, 5632], [4096, 4096]];
const FORMATS: DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0"];
const COLD_BYTES = 96 * 2 ** 20;
const MIN_MS = quick ? 150 : 400;

/** Random weight bytes in `dtype`: values in [-1, 1) for the float formats, random quants and small scales for blocks. */
function randomWeight(dtype: DType, outF: number, inF: number): Uint8Array {
  const n = outF * inF;
  const bytes = new Uint8Array(byteSize(dtype, n));
  const dv = new DataView(bytes.buffer);
  const r = () => Math.random() * 2 - 1;
  if (dtype === "f32") for (let i = 0; i < n; i++) dv.setFloat32(i * 4, r(), true);
  else if (dtype === "f16") for (let i = 0; i < n; i++) dv.setUint16(i * 2, f32ToF16(r()), true);
  else if (dtype === "bf16") for (let i = 0; i < n; i++) dv.setUint16(i * 2, f32ToBf16(r()), true);
  else {
    const bb = dtype === "q8_0" ? 34 : 18;
    for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.random() * 256) | 0;
    for (let b = 0; b < n / 32; b++) dv.setUint16(b * bb, f32ToF16(Math.random() * 0.02), true);
  }
  return bytes;
}

/** Mean milliseconds per call of `f`, cycling through `copies`, after a warm-up. */
function time(f: (copy: number) => void, copies: number, minMs: number, minCalls: number): number {
  for (let i = 0; i < Math.min(copies, 2); i++) f(i);
  let calls = 0;
  const t0 = performance.now();
  let t = t0;
  while (calls < minCalls || t - t0 < minMs) {
    f(calls % copies);
    calls++;
    t = performance.now();
  }
  return (t - t0) / calls;
}

interface Engine {
  label: string;
  threads: number;
  activations: ActivationPath | "-";
  matmul: CpuMatmul;
}

interface Row {
  outF: number; inF: number; rows: number; dtype: DType; engine: string; threads: number; activations: string;
  ms: number; gbps: number; vsRef: number;
}

const results: Row[] = [];
const rows = gemmRows > 0 ? gemmRows : 1;
console.log(`CPU ${rows === 1 ? "GEMV" : `GEMM (${rows} rows)`}: out x in, ms per call, GB/s of weight bytes; weights cycled through >= ${COLD_BYTES / 2 ** 20} MiB`);
for (const [outF, inF] of SHAPES) {
  for (const dtype of FORMATS) {
    const arena = new Arena();
    const engines: Engine[] = [{ label: "ref", threads: 1, activations: "-", matmul: referenceMatmul }];
    const paths: ActivationPath[] = dtype === "q8_0" || dtype === "q4_0" ? ["f32", "int8"] : ["f32"];
    for (const threads of [1, 2]) {
      for (const activations of paths) {
        const m = await createWasmMatmul(arena, { threads, activations });
        if (!m) throw new Error("WebAssembly SIMD is not available");
        engines.push({ label: `wasm${threads}t${paths.length > 1 ? `-${activations}` : ""}`, threads, activations, matmul: m });
      }
    }
    const backend = new CpuBackend({ arena });
    const data = randomWeight(dtype, outF, inF);
    const copies = Math.max(2, Math.ceil(COLD_BYTES / data.byteLength));
    const weights: CpuWeight[] = [];
    for (let i = 0; i < copies; i++) weights.push(backend.upload({ name: `w${i}`, dtype, shape: [outF, inF], data }));
    const x = backend.activation(rows, inF) as CpuTensor;
    for (let i = 0; i < x.data.length; i++) x.data[i] = Math.random() * 2 - 1;
    const out = backend.activation(rows, outF) as CpuTensor;
    let refMs = 0;
    const line: string[] = [];
    for (const e of engines) {
      const isRef = e.label === "ref";
      const ms = time((i) => e.matmul.matmul(weights[i]!, x, out, rows), copies, isRef ? MIN_MS / 2 : MIN_MS, isRef ? 2 : 10);
      if (isRef) refMs = ms;
      const gbps = data.byteLength / (ms * 1e6);
      results.push({ outF, inF, rows, dtype, engine: e.label, threads: e.threads, activations: e.activations, ms, gbps, vsRef: refMs / ms });
      line.push(`${e.label} ${ms.toFixed(3)} ms ${gbps.toFixed(1)} GB/s${isRef ? "" : ` x${(refMs / ms).toFixed(1)}`}`);
      if (!isRef) e.matmul.dispose();
    }
    console.log(`${outF}x${inF} ${dtype.padEnd(4)} | ${line.join(" | ")}`);
  }
}

// 2-thread speed-up of each wasm configuration
const speedup: Record<string, number> = {};
for (const r of results) {
  if (r.threads !== 2) continue;
  const one = results.find((o) => o.threads === 1 && o.engine !== "ref" && o.outF === r.outF && o.inF === r.inF && o.dtype === r.dtype && o.activations === r.activations);
  if (one) speedup[`${r.outF}x${r.inF} ${r.dtype} ${r.activations}`] = one.ms / r.ms;
}
console.log("2-thread / 1-thread speed-up:", Object.entries(speedup).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", "));
console.log(JSON.stringify({ bench: "cpu-gemv", rows, results, speedup }));
