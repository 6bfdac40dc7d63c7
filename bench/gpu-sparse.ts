/**
 * WebGPU sparse-bitmap GEMV against our own dense GEMV of the same value type (f16 by default), batch 1,
 * sparsity 0..95%, with the device's copy bandwidth measured in the same run. For every sparsity the
 * sparse result is first checked against the dense kernel on the same pruned weights (within the f32
 * summation bound), then both are timed (GPU timestamps, wall time as fallback), weights cycled through
 * >= 192 MiB of copies so each call reads DRAM. Reports time, GB/s, speedup, the byte ceiling
 * b/(1 + (1 - s) b) and the crossover sparsity where sparse becomes faster (linear interpolation).
 *
 * Writes DIR/gpu-sparse.json, DIR/gpu-sparse.md, DIR/gpu-sparse.svg; --doc FILE replaces the GPU section
 * of docs/sparsity.md (between <!-- gpu-sparse:begin --> and <!-- gpu-sparse:end -->).
 *
 *   node dist/bench/gpu-sparse.js --out DIR [--smoke] [--iters N] [--values f16,f32] [--shapes 4096x14336,8192x8192]
 *                                 [--no-subgroups]   (the workgroup-memory scan even where subgroups exist)
 *   node dist/bench/gpu-sparse.js --from DIR/gpu-sparse.json --doc docs/sparsity.md --svg docs/sparsity-gpu.svg
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createWebGpuBackend, type GpuTensor, type WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import { copyBandwidth, measure } from "./gpu-timing.js";
import { sparseDTypeOf, sparseLayout, sparseView, type SparseValueType } from "../src/sparse/bitmap.js";
import type { SparseDType } from "../src/tensor/dtype.js";
import { lineChartSvg, markdownTable } from "../src/eval/plot.js";

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const smoke = args.includes("--smoke");

export interface GpuSparseRow {
  out: number; in: number; values: SparseValueType; sparsity: number;
  denseUs: number; sparseUs: number; speedup: number; ceiling: number; denseGBs: number; sparseGBs: number; sparseMiB: number;
  maxErrRatio: number;
}
export interface GpuSparseReport {
  bench: "gpu-sparse"; device: string; subgroups: string; copyGBs: number; timed: string; iters: number;
  rows: GpuSparseRow[]; crossover: Record<string, number | null>;
}

function xorshift(seed: number): () => number {
  let st = (seed * 2654435761) >>> 0 || 1;
  return () => ((st ^= st << 13), (st ^= st >>> 17), (st ^= st << 5), st >>> 0);
}

/** Random finite non-zero value bits below 0.25 in magnitude, from 32 random bits. */
function valueBits(v: SparseValueType, r: number): number {
  if (v === "f32") return (r & 0x8000_0000) | 0x3e00_0000 | (r & 0x007f_ffff) | 1;
  return (r & (0x8000 | (v === "f16" ? 0x33ff : 0x3e7f))) | 1;
}

/** A dense [N, K] weight of random non-zero values (dense GEMV time does not depend on the values). */
export function denseBits(v: SparseValueType, n: number, seed: number): Uint8Array {
  const next = xorshift(seed);
  const u = v === "f32" ? new Uint32Array(n) : new Uint16Array(n);
  for (let i = 0; i < n; i++) u[i] = valueBits(v, next());
  return new Uint8Array(u.buffer);
}

/**
 * A random [N, K] sparse-bitmap tensor, each weight zero with probability s, built in one pass (the
 * bench makes 100M-weight tensors at 11 sparsities within its time budget).
 */
export function randomSparse(v: SparseValueType, N: number, K: number, s: number, seed: number): Uint8Array {
  const next = xorshift(seed);
  const cut = Math.floor(s * 65536);
  const nChunks = Math.ceil(K / 32);
  const masks = new Uint32Array(N * nChunks);
  const rowPtr = new Uint32Array(N + 1);
  const vals = v === "f32" ? new Uint32Array(N * K) : new Uint16Array(N * K);
  let p = 0;
  for (let n = 0; n < N; n++) {
    rowPtr[n] = p;
    for (let c = 0; c < nChunks; c++) {
      let m = 0;
      const k0 = c * 32, k1 = Math.min(K, k0 + 32);
      for (let k = k0; k < k1; k++) {
        const r = next();
        if ((r >>> 16) < cut) continue;
        m |= 1 << (k - k0);
        vals[p++] = valueBits(v, r);
      }
      masks[n * nChunks + c] = m;
    }
  }
  rowPtr[N] = p;
  const l = sparseLayout(v, N, K, p);
  const out = new Uint8Array(l.bytes);
  new Uint32Array(out.buffer, 0, 3).set([p, N, K]);
  new Uint32Array(out.buffer, l.masks, masks.length).set(masks);
  new Uint32Array(out.buffer, l.rowPtr, N + 1).set(rowPtr);
  (v === "f32" ? new Uint32Array(out.buffer, l.values, p) : new Uint16Array(out.buffer, l.values, p)).set(vals.subarray(0, p));
  return out;
}

/** The first `rows` rows of a sparse tensor as dense value bits (for the correctness check). */
function denseRowsOf(v: SparseValueType, data: Uint8Array, K: number, rows: number): Uint8Array {
  const s = sparseView(sparseDTypeOf(v), [new Uint32Array(data.buffer, 0, 3)[1]!, K], data);
  const u = v === "f32" ? new Uint32Array(rows * K) : new Uint16Array(rows * K);
  for (let n = 0; n < rows; n++) {
    let p = s.rowPtr[n]!;
    for (let c = 0; c < s.nChunks; c++) {
      for (let m = s.masks[n * s.nChunks + c]!; m !== 0; m &= m - 1) u[n * K + c * 32 + 31 - Math.clz32(m & -m)] = s.bits[p++]!;
    }
  }
  return new Uint8Array(u.buffer);
}

/** Smallest sparsity where sparse is faster, interpolated between measured points (null: never). */
export function crossover(points: { s: number; speedup: number }[]): number | null {
  const p = [...points].sort((a, b) => a.s - b.s);
  if (p.length && p[0]!.speedup >= 1) return p[0]!.s;
  for (let i = 1; i < p.length; i++) {
    const [a, b] = [p[i - 1]!, p[i]!];
    if (a.speedup < 1 && b.speedup >= 1) return a.s + ((1 - a.speedup) / (b.speedup - a.speedup)) * (b.s - a.s);
  }
  return null;
}

async function run(): Promise<GpuSparseReport> {
  const iters = Number(opt("--iters") ?? (smoke ? 3 : 100));
  const valueTypes = (opt("--values") ?? "f16").split(",") as SparseValueType[];
  const shapes = (opt("--shapes") ?? (smoke ? "40x300" : "4096x14336,8192x8192")).split(",").map((s) => s.split("x").map(Number) as [number, number]);
  const sparsities = smoke ? [0, 0.5, 0.9] : [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];
  const coldBytes = smoke ? 1 << 20 : 192 << 20;
  const b: WebGpuBackend = await createWebGpuBackend({ profile: true, subgroups: !args.includes("--no-subgroups") });
  const subgroups = b.gpu.subgroups && b.gpu.subgroupMinSize === 32 ? "subgroup scan" : "workgroup-memory scan";
  console.log(`WebGPU sparse GEMV on ${b.description} (${subgroups}; subgroups ${b.gpu.subgroups ? `min ${b.gpu.subgroupMinSize}` : "off"}, timestamps ${b.gpu.timestamps})`);
  const copy = await copyBandwidth(b, smoke ? 4 << 20 : 512 << 20, smoke ? 3 : 50);
  console.log(`copy: ${copy.gbs.toPrecision(4)} GB/s (read + write, ${copy.timed})`);
  const rows: GpuSparseRow[] = [];
  const crossovers: Record<string, number | null> = {};
  for (const [N, K] of shapes) {
    for (const v of valueTypes) {
      const pts: { s: number; speedup: number }[] = [];
      const denseData = denseBits(v, N * K, N + K);
      const dCopies = Math.max(1, Math.ceil(coldBytes / denseData.byteLength));
      const dense = Array.from({ length: dCopies }, (_, i) => b.upload({ name: `dense${i}`, dtype: v, shape: [N, K], data: denseData }));
      const xs = Float32Array.from({ length: K }, (_, i) => Math.sin(i * 0.37) * 0.5);
      const x = b.activation(1, K) as GpuTensor;
      b.gpu.device.queue.writeBuffer(x.buf.buffer, 0, xs);
      const yd = b.activation(1, N), ys = b.activation(1, N);
      const checkRows = Math.min(N, 64);
      const yc = b.activation(1, checkRows);
      for (const s of sparsities) {
        const t0 = performance.now();
        const sparseData = randomSparse(v, N, K, s, N + K + Math.round(s * 100));
        const sCopies = Math.max(1, Math.ceil(coldBytes / sparseData.byteLength));
        let sparse;
        try {
          sparse = Array.from({ length: sCopies }, (_, i) => b.upload({ name: `sparse${i}`, dtype: sparseDTypeOf(v) as SparseDType, shape: [N, K], data: sparseData }));
        } catch (e) {
          // e.g. a dense-ish sparse tensor over this device's binding limit: report and go on
          console.log(`${N}x${K} ${v} s=${(s * 100).toFixed(0)}%: skipped (${(e as Error).message})`);
          continue;
        }
        // correctness first: the sparse kernel against the dense kernel on the same weights (first rows)
        const check = b.upload({ name: "check", dtype: v, shape: [checkRows, K], data: denseRowsOf(v, sparseData, K, checkRows) });
        b.matmul(yc, x, check);
        b.matmul(ys, x, sparse[0]!);
        const [d, sp] = [await b.read(yc), await b.read(ys)];
        // the kernels sum in different orders: the difference is within both f32 summation bounds, with
        // sum |w x| <= 0.25 sum |x| (every weight is below 0.25 in magnitude)
        let maxErrRatio = 0;
        const mag = 0.25 * xs.reduce((a, c) => a + Math.abs(c), 0);
        for (let o = 0; o < checkRows; o++) maxErrRatio = Math.max(maxErrRatio, Math.abs(d[o]! - sp[o]!) / ((K + 8 + K / 32 + 8) * 2 ** -24 * mag));
        if (!(maxErrRatio <= 1)) throw new Error(`${N}x${K} ${v} s=${s}: sparse GEMV differs from dense by ${maxErrRatio.toFixed(2)}x the f32 bound: kernel bug`);
        const td = await measure(b, `matmul.gemv.${v}`, iters, (i) => b.matmul(yd, x, dense[i % dCopies]!));
        const ts = await measure(b, `matmul.sparse.${v}`, iters, (i) => b.matmul(ys, x, sparse[i % sCopies]!));
        const timed = Number.isFinite(td.gpu) && Number.isFinite(ts.gpu);
        const [dms, sms] = timed ? [td.gpu, ts.gpu] : [td.wall, ts.wall];
        const bitsV = v === "f32" ? 32 : 16;
        const row: GpuSparseRow = {
          out: N, in: K, values: v, sparsity: s, denseUs: dms * 1e3, sparseUs: sms * 1e3, speedup: dms / sms,
          ceiling: bitsV / (1 + (1 - s) * bitsV), denseGBs: denseData.byteLength / dms / 1e6, sparseGBs: sparseData.byteLength / sms / 1e6,
          sparseMiB: sparseData.byteLength / 2 ** 20, maxErrRatio,
        };
        rows.push(row);
        pts.push({ s, speedup: row.speedup });
        console.log(`${N}x${K} ${v} s=${(s * 100).toFixed(0).padStart(2)}% dense ${row.denseUs.toFixed(1)} us (${row.denseGBs.toFixed(0)} GB/s) sparse ${row.sparseUs.toFixed(1)} us (${row.sparseGBs.toFixed(0)} GB/s) x${row.speedup.toFixed(2)} ceiling x${row.ceiling.toFixed(2)} [${((performance.now() - t0) / 1000).toFixed(1)} s]`);
        for (const w of [...sparse, check]) for (const p of w.parts) b.pool.destroy(p.data);
      }
      for (const w of dense) for (const p of w.parts) b.pool.destroy(p.data);
      crossovers[`${N}x${K} ${v}`] = crossover(pts);
    }
  }
  const report: GpuSparseReport = { bench: "gpu-sparse", device: b.description, subgroups, copyGBs: copy.gbs, timed: b.gpu.timestamps ? "timestamps" : "wall", iters, rows, crossover: crossovers };
  b.dispose();
  return report;
}

export function reportMarkdown(r: GpuSparseReport, svgName: string): string {
  const table = markdownTable(
    ["shape (out x in)", "values", "sparsity", "dense us", "sparse us", "speedup", "byte ceiling", "dense GB/s", "sparse GB/s"],
    r.rows.map((x) => [`${x.out} x ${x.in}`, x.values, `${(x.sparsity * 100).toFixed(0)}%`, x.denseUs.toFixed(1), x.sparseUs.toFixed(1), x.speedup.toFixed(2), x.ceiling.toFixed(2), x.denseGBs.toFixed(0), x.sparseGBs.toFixed(0)]),
    [false, false, true, true, true, true, true, true, true],
  );
  const cross = Object.entries(r.crossover).map(([k, c]) => `${k}: ${c === null ? "never (sparse slower at every measured sparsity)" : `${(c * 100).toFixed(0)}%`}`).join("; ");
  return `Device: ${r.device} (${r.subgroups}); copy bandwidth in the same run ${r.copyGBs.toPrecision(4)} GB/s (read + write); times from ${r.timed}, best of 3 rounds of ${r.iters} calls.

**Crossover sparsity** (sparse GEMV faster than our dense GEMV of the same value type): ${cross}.

${table}
![GPU sparse vs dense GEMV](${svgName})
`;
}

export function reportSvg(r: GpuSparseReport): string {
  const keys = [...new Set(r.rows.map((x) => `${x.out}x${x.in} ${x.values}`))];
  const series = keys.map((k) => ({ name: `sparse/dense ${k}`, points: r.rows.filter((x) => `${x.out}x${x.in} ${x.values}` === k).map((x) => ({ x: x.sparsity * 100, y: x.speedup })) }));
  const ceil = r.rows.filter((x) => `${x.out}x${x.in} ${x.values}` === keys[0]).map((x) => ({ x: x.sparsity * 100, y: Math.min(x.ceiling, 8) }));
  series.push({ name: "byte ceiling (capped at 8)", points: ceil });
  series.push({ name: "break-even", points: [{ x: 0, y: 1 }, { x: 95, y: 1 }] });
  return lineChartSvg({ title: "WebGPU sparse-bitmap GEMV: speedup over our dense GEMV", subtitle: r.device, xLabel: "sparsity (%)", yLabel: "dense time / sparse time", series, yFromZero: true });
}

/** Replaces the text between the GPU markers of `doc` with `section`. */
export async function updateDoc(doc: string, section: string): Promise<void> {
  const text = await readFile(doc, "utf8");
  const begin = "<!-- gpu-sparse:begin -->", end = "<!-- gpu-sparse:end -->";
  const i = text.indexOf(begin), j = text.indexOf(end);
  if (i < 0 || j < i) throw new Error(`${doc}: no ${begin} ... ${end} section to replace`);
  await writeFile(doc, text.slice(0, i + begin.length) + "\n" + section + text.slice(j));
}

if (process.argv[1]?.endsWith("gpu-sparse.js")) {
  const from = opt("--from");
  const report: GpuSparseReport = from ? JSON.parse(await readFile(from, "utf8")) as GpuSparseReport : await run();
  const out = opt("--out");
  if (out) {
    await mkdir(out, { recursive: true });
    await writeFile(join(out, "gpu-sparse.json"), JSON.stringify(report) + "\n");
    await writeFile(join(out, "gpu-sparse.svg"), reportSvg(report));
    await writeFile(join(out, "gpu-sparse.md"), reportMarkdown(report, "gpu-sparse.svg"));
    console.log(`wrote ${out}/gpu-sparse.json, gpu-sparse.md, gpu-sparse.svg`);
  }
  const svg = opt("--svg");
  if (svg) await writeFile(svg, reportSvg(report));
  const doc = opt("--doc");
  if (doc) {
    await updateDoc(doc, reportMarkdown(report, svg ? svg.split("/").pop()! : "sparsity-gpu.svg"));
    console.log(`updated ${doc}`);
  }
  if (!out && !doc) console.log(JSON.stringify(report));
}
