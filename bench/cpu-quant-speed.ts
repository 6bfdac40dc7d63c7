/**
 * CPU speed of the packed weight formats (packed-kernels.wat) against our own f16 and q4_0 paths, measured in
 * the same run and interleaved (each repetition times every format once, in turn; medians reported), so a
 * noisy shared machine slows all of them alike:
 * - GEMV (one activation row) at 8192x8192, 4096x14336 and 14336x4096 (out x in), 2 threads by default;
 *   q4_0 with int8 activations (the engine's default, llama.cpp's arithmetic) and with f32 activations;
 * - decode tokens/s on frugal-ar-base with each format's linear projections (embedding and lm_head as
 *   stored, bf16), against the model as stored (bf16), f16 and q4_0 linears.
 * Weights for the GEMVs are random codes with valid scales (speed does not depend on the values).
 *
 *   node dist/bench/cpu-quant-speed.js [--threads 2] [--reps 9] [--decode 32] [--no-gemv] [--no-decode]
 *     [--md docs/quantization.md] [--svg docs/quantization-speed.svg]   (--md: rewrite the quant-speed section)
 */
import { readFileSync, writeFileSync } from "node:fs";
import { Arena } from "../src/backend/cpu/arena.js";
import { CpuBackend, createCpuBackend, type CpuTensor, type CpuWeight } from "../src/backend/cpu/cpu-backend.js";
import { createWasmMatmul, type WasmMatmul } from "../src/backend/cpu/wasm-matmul.js";
import { readSource } from "../src/load.js";
import { assembleModel } from "../src/model/assemble.js";
import type { Model } from "../src/model/model.js";
import { barChartSvg, markdownTable } from "../src/eval/plot.js";
import { QUANT_FORMATS, quantFormat } from "../src/quant/formats.js";
import { quantizeQ4_0 } from "../src/quant/q4_0.js";
import { LINEAR_WEIGHT, quantizeTensors, tensorToF32 } from "../src/quant/quantize-model.js";
import { tensorBytes } from "../src/quant/packed-raw.js";
import { PACKED_DTYPES, type DType, type PackedDType } from "../src/tensor/dtype.js";
import { f32ToF16 } from "../src/tensor/half.js";
import type { RawTensor, TensorMap } from "../src/tensor/raw.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const THREADS = Number(arg("--threads", "2"));
const REPS = Number(arg("--reps", "9"));
const DECODE = Number(arg("--decode", "32"));
const SVG = arg("--svg", "docs/quantization-speed.svg");
const MD = arg("--md", "");
const SHAPES: [number, number][] = [[8192, 8192], [4096, 14336], [14336, 4096]];

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Random weight bytes: random codes, and scales that decode to small finite values. */
function randomWeight(dtype: DType, rows: number, cols: number): Uint8Array {
  const n = rows * cols;
  if (dtype === "f16") {
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = f32ToF16(Math.random() * 0.02 - 0.01);
    return new Uint8Array(out.buffer);
  }
  const bytes = new Uint8Array(tensorBytes(dtype, [rows, cols]));
  for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.random() * 256) | 0;
  const dv = new DataView(bytes.buffer);
  if (dtype === "q4_0") {
    for (let b = 0; b < n / 32; b++) dv.setUint16(b * 18, f32ToF16(0.01), true);
    return bytes;
  }
  const { codeBytes, scaleBytes } = quantFormat(dtype).layout(rows, cols);
  const scales = new DataView(bytes.buffer, codeBytes, scaleBytes);
  switch (dtype as PackedDType) {
    case "int8": for (let i = 0; i < scaleBytes; i += 4) scales.setFloat32(i, 1e-3, true); break;
    case "int4-asym": for (let i = 0; i < scaleBytes; i += 4) { scales.setUint16(i, 0x2000, true); scales.setUint16(i + 2, 0x4800, true); } break;
    case "fp4": case "nf4": for (let i = 0; i < scaleBytes; i += 2) scales.setUint16(i, 0x2000, true); break;
    case "razer": for (let i = 0; i < scaleBytes; i += 2) scales.setUint16(i, 0x2000 | ((Math.random() * 4) << 14), true); break;
    case "nvfp4": case "nvfp4-razer": for (let i = 0; i < scaleBytes; i++) scales.setUint8(i, 0x30 | ((Math.random() * 4) << 6)); break;
  }
  dv.setFloat32(bytes.length - 4, 1, true);
  return bytes;
}

interface GemvRow { shape: string; label: string; ms: number; gbps: number; vsF16: number; vsQ4: number }
const gemv: GemvRow[] = [];
const GEMV_KINDS: { label: string; dtype: DType; engine: "int8" | "f32" }[] = [
  { label: "f16", dtype: "f16", engine: "f32" },
  { label: "q4_0 (int8 x)", dtype: "q4_0", engine: "int8" },
  { label: "q4_0 (f32 x)", dtype: "q4_0", engine: "f32" },
  ...PACKED_DTYPES.map((d) => ({ label: d, dtype: d as DType, engine: "f32" as const })),
];

if (!args.includes("--no-gemv")) {
  for (const [outF, inF] of SHAPES) {
    const arena = new Arena();
    const engines = { int8: (await createWasmMatmul(arena, { threads: THREADS, activations: "int8" }))!, f32: (await createWasmMatmul(arena, { threads: THREADS, activations: "f32" }))! };
    const backend = new CpuBackend({ arena });
    const weights = GEMV_KINDS.map((k) => backend.upload({ name: k.label, dtype: k.dtype, shape: [outF, inF], data: randomWeight(k.dtype, outF, inF) }) as CpuWeight);
    const x = backend.activation(1, inF) as CpuTensor;
    for (let i = 0; i < inF; i++) x.data[i] = Math.random() * 2 - 1;
    const out = backend.activation(1, outF) as CpuTensor;
    const samples = GEMV_KINDS.map(() => [] as number[]);
    const call = (i: number) => (engines[GEMV_KINDS[i]!.engine] as WasmMatmul).matmul(weights[i]!, x, out, 1);
    for (let i = 0; i < GEMV_KINDS.length; i++) call(i);
    for (let rep = 0; rep < REPS; rep++) {
      for (let i = 0; i < GEMV_KINDS.length; i++) {
        const t0 = performance.now();
        for (let j = 0; j < 3; j++) call(i);
        samples[i]!.push((performance.now() - t0) / 3);
      }
    }
    const ms = samples.map(median);
    const shape = `${outF}x${inF}`;
    for (let i = 0; i < GEMV_KINDS.length; i++) {
      const row = { shape, label: GEMV_KINDS[i]!.label, ms: ms[i]!, gbps: weights[i]!.bytes.byteLength / (ms[i]! * 1e6), vsF16: ms[0]! / ms[i]!, vsQ4: ms[1]! / ms[i]! };
      gemv.push(row);
      console.error(`${shape.padEnd(11)} ${row.label.padEnd(14)} ${row.ms.toFixed(3)} ms  ${row.gbps.toFixed(1)} GB/s  x${row.vsF16.toFixed(2)} vs f16  x${row.vsQ4.toFixed(2)} vs q4_0`);
    }
    engines.int8.dispose();
    engines.f32.dispose();
  }
}

/** frugal-ar-base with its linear projections converted by `convert` (undefined: as stored). */
function withLinears(source: TensorMap, convert: (t: RawTensor) => RawTensor): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, t] of source) out.set(name, LINEAR_WEIGHT.test(name) ? convert(t) : t);
  return out;
}

interface DecodeRow { label: string; tokensPerSecond: number; vsBf16: number; vsF16: number; vsQ4: number; linearBytes: number }
const decode: DecodeRow[] = [];
if (!args.includes("--no-decode")) {
  const source = await readSource("models/frugal-ar-base");
  const toF16 = (t: RawTensor): RawTensor => {
    const { w } = tensorToF32(t);
    const h = new Uint16Array(w.length);
    for (let i = 0; i < w.length; i++) h[i] = f32ToF16(w[i]!);
    return { ...t, dtype: "f16", data: new Uint8Array(h.buffer) };
  };
  const toQ4 = (t: RawTensor): RawTensor => ({ ...t, dtype: "q4_0", data: quantizeQ4_0(tensorToF32(t).w) });
  const variants: { label: string; tensors: () => TensorMap }[] = [
    { label: "bf16 (as stored)", tensors: () => new Map(source.tensors) },
    { label: "f16", tensors: () => withLinears(source.tensors, toF16) },
    { label: "q4_0", tensors: () => withLinears(source.tensors, toQ4) },
    ...QUANT_FORMATS.map((f) => ({ label: f.name, tensors: () => {
      const m = new Map(source.tensors);
      quantizeTensors(m, f.name);
      return m;
    } })),
  ];
  const models: Model[] = [];
  const linearBytes: number[] = [];
  for (const v of variants) {
    const tensors = v.tensors();
    linearBytes.push([...tensors].filter(([n]) => LINEAR_WEIGHT.test(n)).reduce((a, [, t]) => a + t.data.byteLength, 0));
    models.push(assembleModel({ ...source, tensors }, await createCpuBackend({ threads: THREADS })));
    console.error(`decode: loaded ${v.label}`);
  }
  const prompt = Int32Array.from([0, 100, 200, 300, 400, 500, 600, 700]);
  const rate = async (m: Model): Promise<number> => {
    const cache = m.network.newCache(prompt.length + DECODE + 1);
    let next = await m.backend.argmax!(m.network.forward(prompt, 0, cache));
    const t0 = performance.now();
    for (let i = 0; i < DECODE; i++) next = await m.backend.argmax!(m.network.forward(Int32Array.of(next), prompt.length + i, cache));
    return (DECODE / (performance.now() - t0)) * 1000;
  };
  const samples = models.map(() => [] as number[]);
  for (const m of models) await rate(m);
  for (let rep = 0; rep < Math.max(3, Math.ceil(REPS / 3)); rep++) for (let i = 0; i < models.length; i++) samples[i]!.push(await rate(models[i]!));
  const tps = samples.map(median);
  for (let i = 0; i < variants.length; i++) {
    const row = { label: variants[i]!.label, tokensPerSecond: tps[i]!, vsBf16: tps[i]! / tps[0]!, vsF16: tps[i]! / tps[1]!, vsQ4: tps[i]! / tps[2]!, linearBytes: linearBytes[i]! };
    decode.push(row);
    console.error(`decode ${row.label.padEnd(17)} ${row.tokensPerSecond.toFixed(1)} tokens/s  x${row.vsF16.toFixed(2)} vs f16  x${row.vsQ4.toFixed(2)} vs q4_0  linears ${(row.linearBytes / 2 ** 20).toFixed(1)} MiB`);
  }
  for (const m of models) m.dispose();
}

const parts: string[] = [];
if (gemv.length) {
  const labels = GEMV_KINDS.map((k) => k.label);
  parts.push(markdownTable(
    ["weights", ...SHAPES.flatMap(([o, i]) => [`${o}x${i} ms`, `vs f16`, `vs q4_0`])],
    labels.map((l) => [l, ...SHAPES.flatMap(([o, i]) => {
      const r = gemv.find((g) => g.shape === `${o}x${i}` && g.label === l)!;
      return [r.ms.toFixed(2), r.vsF16.toFixed(2), r.vsQ4.toFixed(2)];
    })]),
    [false, ...SHAPES.flatMap(() => [true, true, true])],
  ));
  writeFileSync(SVG, barChartSvg({
    title: "CPU GEMV speed relative to f16 (higher is faster)",
    subtitle: `WASM SIMD, ${THREADS} threads, one activation row, median of ${REPS} interleaved repetitions`,
    yLabel: "speed / f16",
    groups: SHAPES.map(([o, i]) => `${o}x${i}`),
    series: labels.map((l) => ({ name: l, values: SHAPES.map(([o, i]) => gemv.find((g) => g.shape === `${o}x${i}` && g.label === l)!.vsF16) })),
    width: 1200,
    height: 420,
  }));
}
if (decode.length) {
  parts.push(markdownTable(
    ["linear weights", "tokens/s", "vs bf16", "vs f16", "vs q4_0", "linear MiB"],
    decode.map((d) => [d.label, d.tokensPerSecond.toFixed(1), d.vsBf16.toFixed(2), d.vsF16.toFixed(2), d.vsQ4.toFixed(2), (d.linearBytes / 2 ** 20).toFixed(1)]),
    [false, true, true, true, true, true],
  ));
}
const text = [
  `<!-- quant-speed:begin (generated by bench/cpu-quant-speed.ts; edits here are overwritten) -->`,
  `WASM SIMD engine, ${THREADS} threads, medians of interleaved repetitions (${REPS} GEMV, ${Math.max(3, Math.ceil(REPS / 3))} decode runs of ${DECODE} tokens).`,
  "",
  parts.join("\n\n"),
  "",
  gemv.length ? `![GEMV speed per format](${SVG.replace(/^docs\//, "")})` : "",
  `<!-- quant-speed:end -->`,
].join("\n");
console.log(text);
if (MD) {
  const doc = readFileSync(MD, "utf8");
  const re = /<!-- quant-speed:begin[\s\S]*?<!-- quant-speed:end -->/;
  if (!re.test(doc)) throw new Error(`${MD} has no quant-speed markers`);
  writeFileSync(MD, doc.replace(re, text));
}
console.log(JSON.stringify({ bench: "cpu-quant-speed", threads: THREADS, reps: REPS, gemv, decode }));
