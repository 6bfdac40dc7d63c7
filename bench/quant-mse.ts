/**
 * Weight quantization error of every number format on synthetic data: Gaussian, Laplace and Student-t (ν = 3)
 * matrices (fixed seed), MSE of pack → unpack relative to INT4-asym g128, each format at its own group size.
 * Prints a Markdown table and one JSON line, writes an SVG bar chart, and checks the spec's §8.2 targets
 * (8192 × 128 values, ±2%, ±4% for the t(3) block-16 columns) unless --no-spec.
 *
 *   node dist/bench/quant-mse.js [--rows 4096] [--cols 4096] [--svg docs/quantization-mse.svg] [--no-spec]
 */
import { writeFileSync } from "node:fs";
import { barChartSvg, markdownTable } from "../src/eval/plot.js";
import type { PackOptions, QuantFormat } from "../src/quant/format.js";
import { fp4Format } from "../src/quant/fp4.js";
import { int4AsymFormat } from "../src/quant/int4-asym.js";
import { int8Format } from "../src/quant/int8.js";
import { nf4Format } from "../src/quant/nf4.js";
import { nvfp4Format } from "../src/quant/nvfp4.js";
import { nvfp4RazerFormat } from "../src/quant/nvfp4-razer.js";
import { razerFormat } from "../src/quant/razer.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const ROWS = Number(arg("--rows", "4096"));
const COLS = Number(arg("--cols", "4096"));
const SVG = arg("--svg", "docs/quantization-mse.svg");
const SEED = 20260101;

interface Variant {
  readonly label: string;
  readonly format: QuantFormat;
  readonly options?: PackOptions;
  /** The spec §8.2 column it corresponds to, with its targets (Gaussian, Laplace, t3) and tolerance. */
  readonly spec?: { readonly targets: readonly [number, number, number]; readonly tol: readonly [number, number, number]; readonly format?: QuantFormat };
  readonly chart?: boolean;
}

const T2 = [0.02, 0.02, 0.02] as const, T4 = [0.02, 0.02, 0.04] as const;
const VARIANTS: Variant[] = [
  { label: "int8 (per row)", format: int8Format },
  { label: "int4-asym g128", format: int4AsymFormat(128), chart: true },
  { label: "int4-asym g128 + clip", format: int4AsymFormat(128), options: { clip: true }, spec: { targets: [0.917, 0.927, 0.94], tol: T2 }, chart: true },
  { label: "fp4 g128", format: fp4Format(128), spec: { targets: [1.173, 0.865, 0.838], tol: T2 }, chart: true },
  { label: "nf4 g64", format: nf4Format(64), spec: { targets: [0.904, 0.762, 0.829], tol: T2, format: nf4Format(128) }, chart: true },
  { label: "razer g128", format: razerFormat(128), spec: { targets: [0.948, 0.675, 0.58], tol: T2 }, chart: true },
  { label: "razer g128 absmax", format: razerFormat(128), options: { scaleRule: "absmax" }, spec: { targets: [0.947, 0.67, 0.575], tol: T2 } },
  { label: "razer g128 ±5 only", format: razerFormat(128), options: { specialValues: [5, -5] }, spec: { targets: [0.981, 0.766, 0.799], tol: T2 } },
  { label: "razer g128 + clip", format: razerFormat(128), options: { clip: true }, spec: { targets: [0.863, 0.618, 0.545], tol: T2 }, chart: true },
  { label: "nvfp4 g16", format: nvfp4Format, spec: { targets: [0.892, 0.507, 0.297], tol: T4 }, chart: true },
  { label: "nvfp4-razer g16", format: nvfp4RazerFormat(8), spec: { targets: [0.56, 0.324, 0.193], tol: T4 }, chart: true },
];

/** mulberry32: a small seeded generator, uniform in [0, 1). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(u: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
}

const DISTRIBUTIONS: { name: string; sample: (u: () => number) => () => number }[] = [
  { name: "Gaussian", sample: normal },
  {
    name: "Laplace",
    sample: (u) => () => {
      const v = u() - 0.5;
      return -Math.sign(v) * Math.log(1 - 2 * Math.abs(v));
    },
  },
  {
    name: "Student-t(3)",
    sample: (u) => {
      const z = normal(u);
      return () => {
        const a = z(), b = z(), c = z();
        return z() / Math.sqrt((a * a + b * b + c * c) / 3);
      };
    },
  },
];

function data(dist: number, rows: number, cols: number): Float32Array {
  const next = DISTRIBUTIONS[dist]!.sample(rng(SEED + dist));
  return Float32Array.from({ length: rows * cols }, next);
}

function mse(format: QuantFormat, w: Float32Array, rows: number, cols: number, options?: PackOptions): number {
  const q = format.unpack(format.pack(w, rows, cols, options));
  let s = 0;
  for (let i = 0; i < w.length; i++) s += (q[i]! - w[i]!) ** 2;
  return s / w.length;
}

/** Relative MSE (to INT4-asym g128) of every variant on every distribution, shape rows × cols. */
function table(rows: number, cols: number, pick: (v: Variant) => QuantFormat | undefined): (number | undefined)[][] {
  const out = VARIANTS.map(() => DISTRIBUTIONS.map((): number | undefined => undefined));
  for (let d = 0; d < DISTRIBUTIONS.length; d++) {
    const w = data(d, rows, cols);
    const base = mse(int4AsymFormat(128), w, rows, cols);
    VARIANTS.forEach((v, i) => {
      const f = pick(v);
      if (f) out[i]![d] = mse(f, w, rows, cols, v.options) / base;
    });
  }
  return out;
}

const r3 = (v: number | undefined) => (v === undefined ? "" : v.toFixed(3));
const t0 = Date.now();
const main = table(ROWS, COLS, (v) => v.format);
const headers = ["format", "bits/weight", ...DISTRIBUTIONS.map((d) => d.name)];
console.log(`\nWeight MSE relative to int4-asym g128, ${ROWS}×${COLS} values per distribution (seed ${SEED}):\n`);
console.log(markdownTable(headers, VARIANTS.map((v, i) => [v.label, v.format.bitsPerWeight(COLS).toFixed(3), ...main[i]!.map(r3)]), [false, true, true, true, true]));

let specRows: { label: string; got: (number | undefined)[]; targets: readonly number[]; ok: boolean }[] = [];
if (!args.includes("--no-spec")) {
  const spec = table(8192, 128, (v) => (v.spec ? v.spec.format ?? v.format : undefined));
  specRows = VARIANTS.flatMap((v, i) => {
    if (!v.spec) return [];
    const got = spec[i]!;
    const ok = got.every((g, d) => g !== undefined && Math.abs(g / v.spec!.targets[d]! - 1) <= v.spec!.tol[d]!);
    return [{ label: v.spec.format ? v.label.replace("g64", "g128") : v.label, got, targets: v.spec.targets, ok }];
  });
  console.log("Spec §8.2 check (8192×128 values, same seeds; target in brackets):\n");
  console.log(
    markdownTable(
      ["format", ...DISTRIBUTIONS.map((d) => d.name), "within tolerance"],
      specRows.map((s) => [s.label, ...s.got.map((g, d) => `${r3(g)} (${s.targets[d]})`), s.ok ? "yes" : "NO"]),
      [false, true, true, true, false],
    ),
  );
}

const charted = VARIANTS.map((v, i) => ({ v, i })).filter(({ v }) => v.chart);
writeFileSync(
  SVG,
  barChartSvg({
    title: "Weight MSE relative to INT4-asym g128 (lower is better)",
    subtitle: `${ROWS}×${COLS} i.i.d. values per distribution, seed ${SEED}; each format at its own group size`,
    yLabel: "MSE / MSE(int4-asym g128)",
    groups: DISTRIBUTIONS.map((d) => d.name),
    series: charted.map(({ v, i }) => ({ name: v.label, values: main[i]! })),
    width: 1400,
    height: 440,
  }),
);
console.log(`chart: ${SVG}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
console.log(
  JSON.stringify({
    bench: "quant-mse",
    rows: ROWS,
    cols: COLS,
    seed: SEED,
    relativeTo: "int4-asym g128",
    results: VARIANTS.map((v, i) => ({ format: v.label, bitsPerWeight: v.format.bitsPerWeight(COLS), ...Object.fromEntries(DISTRIBUTIONS.map((d, j) => [d.name, main[i]![j]])) })),
    spec: specRows,
  }),
);
