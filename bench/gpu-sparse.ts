/**
 * WebGPU sparse-bitmap GEMV against our own dense GEMV of the same value type (f16 by default), batch 1,
 * sparsity 0..99%, every sparse kernel variant asked for (--variants; default all of SPARSE_GEMV_VARIANTS in
 * src/backend/webgpu/sparse-weight.ts: "walk", the old kernel, and "compact" with its splits and sub-steps),
 * all timed in one process, interleaved, with the device's copy bandwidth.
 *
 * Per (shape, values, sparsity):
 *  1. correctness first: every variant through the backend's matmul against the dense kernel on the same
 *     pruned weights (the first and last 64 rows), within both f32 summation bounds; a variant outside them
 *     is reported WRONG and not timed there, the rest go on, and the exit code is 1;
 *  2. timing: the dense GEMV, each variant and a streaming copy, each a timestamped compute pass of --iters
 *     calls back to back (as in a decode step: no per-pass cost in the time per call), weights cycled
 *     through >= 192 MiB of GPU copies so each call reads DRAM; --rounds rounds in one submission, the
 *     order of the kinds rotated every round, after the GPU has been kept busy for --warmup-ms; the median
 *     round per kind;
 *  3. the timed pipelines' last outputs are compared with the backend's: bit-identical, so what is timed
 *     is what was checked.
 * Prints per shape and sparsity: dense us, each variant's us and its speedup (dense / sparse); then the
 * table, the crossover sparsity per variant (sparse faster than dense; linear interpolation) and, with
 * --out DIR, writes DIR/gpu-sparse.json, .md and .svg. --doc FILE replaces the GPU section of
 * docs/sparsity.md (between <!-- gpu-sparse:begin --> and <!-- gpu-sparse:end -->).
 *
 *   node dist/bench/gpu-sparse.js [--out DIR] [--variants walk,compact,compact-s8-h1] [--values f16] [--shapes 4096x14336,8192x8192]
 *        [--sparsities 0,0.5,0.9,0.99] [--iters 50] [--rounds 7] [--warmup-ms 150] [--budget-s 200] [--no-subgroups] [--smoke]
 *   node dist/bench/gpu-sparse.js --from DIR/gpu-sparse.json --doc docs/sparsity.md --svg docs/sparsity-gpu.svg
 *
 * --smoke: small shapes (K of several 1024-column blocks), few calls: checks the whole path on SwiftShader.
 */
import { execFileSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createWebGpuBackend, type GpuTensor, type WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import { GpuWeight } from "../src/backend/webgpu/weights.js";
import { GpuSparseWeight, parseSparseGemvVariant, sparseDispatch, SPARSE_GEMV_VARIANTS, type SparseGemvVariant } from "../src/backend/webgpu/sparse-weight.js";
import { chunkElems, gemvKernel, gemvRows, gemvVariant, xMode } from "../src/backend/webgpu/kernels/matmul.js";
import { copyKernel, COPY_GROUP } from "../src/backend/webgpu/kernels/copy.js";
import { f32bits, grid, type Kernel } from "../src/backend/webgpu/kernel.js";
import { BufferUsage, MAP_READ_MODE } from "../src/backend/webgpu/device.js";
import type { Buf } from "../src/backend/webgpu/buffers.js";
import { sparseDTypeOf, sparseLayout, sparseView, type SparseValueType } from "../src/sparse/bitmap.js";
import type { SparseDType } from "../src/tensor/dtype.js";
import { lineChartSvg, markdownTable } from "../src/eval/plot.js";

export interface GpuSparseVariantResult {
  us: number; speedup: number; gbs: number; maxErrRatio: number;
}
export interface GpuSparseRow {
  out: number; in: number; values: SparseValueType; sparsity: number;
  denseUs: number; denseGBs: number; copyGBs: number; sparseMiB: number; ceiling: number;
  variants: Record<string, GpuSparseVariantResult>;
}
export interface GpuSparseReport {
  bench: "gpu-sparse"; version: 2; device: string; subgroups: string; date: string; seconds: number;
  iters: number; rounds: number; coldMiB: number; variants: string[]; rows: GpuSparseRow[];
  /** "OUTxIN values variant" -> crossover sparsity (null: sparse slower at every measured sparsity). */
  crossover: Record<string, number | null>;
  /** Variants that failed a check (wrong results: not timed there). */
  failures: string[];
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
 * bench makes 100M-weight tensors at a dozen sparsities within its time budget).
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

/** Rows `which` of a sparse tensor as dense value bits (for the correctness check). */
function denseRowsOf(v: SparseValueType, data: Uint8Array, N: number, K: number, which: number[]): Uint8Array {
  const s = sparseView(sparseDTypeOf(v), [N, K], data);
  const u = v === "f32" ? new Uint32Array(which.length * K) : new Uint16Array(which.length * K);
  which.forEach((n, i) => {
    let p = s.rowPtr[n]!;
    for (let c = 0; c < s.nChunks; c++) {
      for (let m = s.masks[n * s.nChunks + c]!; m !== 0; m &= m - 1) u[i * K + c * 32 + 31 - Math.clz32(m & -m)] = s.bits[p++]!;
    }
  });
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

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor((v.length - 1) / 2)]!;

/** One thing timed: `calls` dispatches recorded into a pass; call i of all rounds uses weight copy i mod copies. */
interface Kind {
  name: string;
  calls: number;
  record(pass: GPUComputePassEncoder, i: number): void;
}

const pipelines = new Map<string, Promise<GPUComputePipeline>>();
/** A pipeline for `k` (its own layout, as the backend's recorder would build it from the same WGSL), made once. */
function pipelineOf(device: GPUDevice, k: Kernel): Promise<GPUComputePipeline> {
  let p = pipelines.get(k.key);
  if (!p) {
    p = device.createComputePipelineAsync({ label: k.name, layout: "auto", compute: { module: device.createShaderModule({ code: k.code, label: k.key }), entryPoint: "main" } });
    pipelines.set(k.key, p);
  }
  return p;
}

/** A kind that dispatches `kernel` with `params` over each buffer set of `sets` in turn. */
async function kindOf(b: WebGpuBackend, name: string, calls: number, kernel: Kernel, params: number[], sets: Buf[][], groups: [number, number]): Promise<Kind> {
  const device = b.gpu.device;
  const pipeline = await pipelineOf(device, kernel);
  const uniform = b.pool.raw(64, BufferUsage.UNIFORM | BufferUsage.COPY_DST, `${name} params`).buffer;
  device.queue.writeBuffer(uniform, 0, new Uint32Array([...params, ...new Array<number>(16 - params.length).fill(0)]));
  const bindGroups = sets.map((bufs) => device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: uniform } }, ...bufs.map((buf, j) => ({ binding: j + 1, resource: { buffer: buf.buffer } }))],
  }));
  return {
    name, calls,
    record(pass, i) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroups[i % bindGroups.length]!);
      pass.dispatchWorkgroups(groups[0], groups[1]);
    },
  };
}

/**
 * Median GPU us per call of every kind: the GPU kept busy for `warmupMs` (at least one untimed round),
 * then `rounds` rounds in one submission, each kind a timestamped pass of its calls, the kinds' order
 * rotated every round.
 */
async function timeKinds(b: WebGpuBackend, kinds: Kind[], rounds: number, warmupMs: number): Promise<number[]> {
  const device = b.gpu.device;
  const t0 = performance.now();
  do {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const k of kinds) for (let i = 0; i < k.calls; i++) k.record(pass, i);
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  } while (performance.now() - t0 < warmupMs);
  const passes = rounds * kinds.length;
  if (2 * passes > 4096) throw new Error(`--rounds ${rounds}: more than 4096 timestamps in one query set`);
  const querySet = device.createQuerySet({ type: "timestamp", count: 2 * passes });
  const resolve = device.createBuffer({ size: 16 * passes, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
  const readback = device.createBuffer({ size: 16 * passes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const order: number[] = [];
  const enc = device.createCommandEncoder();
  let q = 0;
  for (let r = 0; r < rounds; r++) {
    for (let j = 0; j < kinds.length; j++) {
      const ki = (j + r) % kinds.length;
      const k = kinds[ki]!;
      order.push(ki);
      const pass = enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * q, endOfPassWriteIndex: 2 * q + 1 } });
      for (let i = 0; i < k.calls; i++) k.record(pass, r * k.calls + i);
      pass.end();
      q++;
    }
  }
  enc.resolveQuerySet(querySet, 0, 2 * passes, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, readback, 0, 16 * passes);
  device.queue.submit([enc.finish()]);
  await readback.mapAsync(MAP_READ_MODE);
  const t = new BigUint64Array(readback.getMappedRange().slice(0));
  readback.unmap();
  readback.destroy();
  resolve.destroy();
  querySet.destroy();
  const per = kinds.map(() => [] as number[]);
  order.forEach((ki, i) => per[ki]!.push(Number(t[2 * i + 1]! - t[2 * i]!) / 1e3 / kinds[ki]!.calls));
  return per.map(median);
}

/** GPU copies of a sparse weight (same bytes, new buffers): each reads as much DRAM as the original. */
function copiesOf(b: WebGpuBackend, w: GpuSparseWeight, count: number): GpuSparseWeight[] {
  const enc = b.gpu.device.createCommandEncoder();
  const out = [w];
  for (let i = 1; i < count; i++) {
    const p = w.parts[0]!;
    const d = b.pool.storage(p.data.size, `${w.name} copy ${i}`);
    enc.copyBufferToBuffer(p.data.buffer, 0, d.buffer, 0, p.data.size);
    out.push(new GpuSparseWeight(`${w.name}.${i}`, w.dtype, w.shape, [{ ...p, data: d }]));
  }
  b.gpu.device.queue.submit([enc.finish()]);
  return out;
}

async function readBuf(b: WebGpuBackend, buf: Buf, floats: number): Promise<Float32Array> {
  return new Float32Array(await b.recorder.read(buf.buffer, 0, floats * 4));
}

function logClocks(): void {
  try {
    console.log(execFileSync("nvidia-smi", ["--query-gpu=name,pstate,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem", "--format=csv"], { encoding: "utf8" }).trim());
  } catch {
    // not an NVIDIA machine: nothing to log
  }
}

export interface RunOptions {
  variants: SparseGemvVariant[]; values: SparseValueType[]; shapes: [number, number][]; sparsities: number[];
  iters: number; rounds: number; warmupMs: number; coldBytes: number; copyBytes: number; subgroups: boolean;
  /** No new (shape, sparsity) is started after this many seconds; the rest is listed as not run. */
  budgetS: number;
}

export async function run(o: RunOptions): Promise<GpuSparseReport> {
  const started = performance.now();
  logClocks();
  const b = await createWebGpuBackend({ subgroups: o.subgroups });
  if (!b.gpu.timestamps) throw new Error(`gpu-sparse: ${b.description} has no timestamp queries`);
  const device = b.gpu.device;
  const sg32 = b.gpu.subgroups && b.gpu.subgroupMinSize === 32;
  const wgBytes = device.limits.maxComputeWorkgroupStorageSize;
  const subgroups = sg32 ? "subgroup scan" : "workgroup-memory scan";
  console.log(`WebGPU sparse GEMV on ${b.description} (${subgroups}; subgroups ${b.gpu.subgroups ? `min ${b.gpu.subgroupMinSize}` : "off"}); variants ${o.variants.join(", ")}; ${o.rounds} rounds of ${o.iters} calls a kind`);
  const copySrc = b.pool.storage(o.copyBytes, "copy src"), copyDst = b.pool.storage(o.copyBytes, "copy dst");
  const n4 = o.copyBytes / 16;
  const copyKind = await kindOf(b, "copy", 1, copyKernel(), [n4], [[copyDst, copySrc]], grid(Math.ceil(n4 / COPY_GROUP)));
  const rows: GpuSparseRow[] = [];
  const failures: string[] = [];
  for (const [N, K] of o.shapes) {
    for (const v of o.values) {
      const denseData = denseBits(v, N * K, N + K);
      const dCopies = Math.max(1, Math.ceil(o.coldBytes / denseData.byteLength));
      const dense = Array.from({ length: dCopies }, (_, i) => b.upload({ name: `dense${i}`, dtype: v, shape: [N, K], data: denseData }) as GpuWeight);
      const xs = Float32Array.from({ length: K }, (_, i) => Math.sin(i * 0.37) * 0.5);
      const x = b.activation(1, K) as GpuTensor;
      device.queue.writeBuffer(x.buf.buffer, 0, xs);
      const yDense = b.activation(1, N) as GpuTensor, yDenseRef = b.activation(1, N) as GpuTensor;
      // the dense kernel as the backend runs a batch-1 GEMV of this format (webgpu-backend.ts, matmul)
      const sg = b.gpu.subgroupMinSize;
      const dv = gemvVariant(v, sg);
      const w0 = dense[0]!;
      if (w0.parts.length !== 1) throw new Error(`${N}x${K} ${v}: the dense weight is split into ${w0.parts.length} bindings; the bench times one`);
      const denseKind = await kindOf(
        b, "dense", o.iters, gemvKernel(v, xMode(v, K), sg, dv.rowsPerTeam, dv.split, dv.unroll, dv.pipeline, dv.x),
        [N, K, Math.ceil(K / chunkElems(v)), 0, w0.stride / 4, w0.blocks, f32bits(w0.mul)],
        dense.map((w) => [x.buf, w.parts[0]!.data, yDense.buf]), grid(Math.ceil(N / gemvRows(sg, dv.rowsPerTeam, dv.split))),
      );
      b.matmul(yDenseRef, x, w0);
      const denseRef = await readBuf(b, yDenseRef.buf, N);
      const checkRows = [...new Set([...Array.from({ length: Math.min(N, 64) }, (_, i) => i), ...Array.from({ length: Math.min(N, 64) }, (_, i) => N - 1 - i)])].sort((p, q) => p - q);
      const yCheck = b.activation(1, checkRows.length) as GpuTensor;
      const ySparse = o.variants.map(() => b.activation(1, N) as GpuTensor);
      const ySparseRef = b.activation(1, N) as GpuTensor;
      for (const s of o.sparsities) {
        const t0 = performance.now();
        if ((t0 - started) / 1e3 > o.budgetS) {
          console.log(`${N}x${K} ${v} s=${(s * 100).toFixed(0)}%: not run (budget of ${o.budgetS} s spent)`);
          continue;
        }
        const sparseData = randomSparse(v, N, K, s, N + K + Math.round(s * 1000));
        let sparse: GpuSparseWeight[];
        try {
          const first = b.upload({ name: "sparse", dtype: sparseDTypeOf(v) as SparseDType, shape: [N, K], data: sparseData });
          sparse = copiesOf(b, first, Math.max(1, Math.ceil(o.coldBytes / first.parts[0]!.data.size)));
        } catch (e) {
          // e.g. a dense-ish sparse tensor over this device's binding limit: report and go on
          console.log(`${N}x${K} ${v} s=${(s * 100).toFixed(0)}%: skipped (${(e as Error).message})`);
          continue;
        }
        const gpuBytes = sparse[0]!.parts[0]!.data.size;
        // 1. every variant through the backend against the dense kernel on the same weights' rows; the
        // kernels sum in different orders: the difference is within both f32 summation bounds, with
        // sum |w x| <= 0.25 sum |x| (every weight is below 0.25 in magnitude)
        const check = b.upload({ name: "check", dtype: v, shape: [checkRows.length, K], data: denseRowsOf(v, sparseData, N, K, checkRows) });
        b.matmul(yCheck, x, check);
        const d = await readBuf(b, yCheck.buf, checkRows.length);
        const mag = 0.25 * xs.reduce((a, c) => a + Math.abs(c), 0);
        // a variant outside the bounds is reported and not timed; the others go on (exit code 1 at the end)
        const refs = new Map<string, Float32Array>();
        const errs = new Map<string, number>();
        const fail = (variant: string, why: string) => {
          const m = `${N}x${K} ${v} s=${s} ${variant}: ${why}`;
          console.log(`WRONG ${m}`);
          failures.push(m);
        };
        for (const variant of o.variants) {
          b.sparseGemv = variant;
          b.matmul(ySparseRef, x, sparse[0]!);
          const got = await readBuf(b, ySparseRef.buf, N);
          let maxErrRatio = 0;
          checkRows.forEach((n, i) => (maxErrRatio = Math.max(maxErrRatio, Math.abs(d[i]! - got[n]!) / ((K + 8 + K / 32 + 8) * 2 ** -24 * mag))));
          if (!(maxErrRatio <= 1)) {
            fail(variant, `sparse GEMV differs from dense by ${maxErrRatio.toFixed(2)}x the f32 bound: kernel bug`);
            continue;
          }
          refs.set(variant, got);
          errs.set(variant, maxErrRatio);
        }
        const timed = o.variants.filter((variant) => refs.has(variant));
        // 2. the timing, every kind interleaved
        const kinds = [copyKind, denseKind];
        for (const variant of timed) {
          const ds = sparse.map((w) => sparseDispatch(w, variant, 1, sg32, wgBytes));
          const y = ySparse[o.variants.indexOf(variant)]!;
          kinds.push(await kindOf(b, variant, o.iters, ds[0]!.kernel, ds[0]!.params, sparse.map((w) => [x.buf, w.parts[0]!.data, y.buf]), ds[0]!.groups));
        }
        const us = await timeKinds(b, kinds, o.rounds, o.warmupMs);
        // 3. what was timed is what was checked
        const dGot = await readBuf(b, yDense.buf, N);
        if (dGot.some((y, i) => !Object.is(y, denseRef[i]))) throw new Error(`${N}x${K} ${v}: the timed dense pipeline's output differs from the backend's`);
        const [copyUs, denseUs] = [us[0]!, us[1]!];
        const bitsV = v === "f32" ? 32 : 16;
        const row: GpuSparseRow = {
          out: N, in: K, values: v, sparsity: s, denseUs, denseGBs: denseData.byteLength / denseUs / 1e3,
          copyGBs: (2 * o.copyBytes) / copyUs / 1e3, sparseMiB: gpuBytes / 2 ** 20, ceiling: bitsV / (1 + (1 - s) * bitsV), variants: {},
        };
        for (const [i, variant] of timed.entries()) {
          const got = await readBuf(b, ySparse[o.variants.indexOf(variant)]!.buf, N);
          if (got.some((y, j) => !Object.is(y, refs.get(variant)![j]))) {
            fail(variant, "the timed pipeline's output differs from the backend's");
            continue;
          }
          const t = us[2 + i]!;
          row.variants[variant] = { us: t, speedup: denseUs / t, gbs: gpuBytes / t / 1e3, maxErrRatio: errs.get(variant)! };
        }
        rows.push(row);
        const parts = o.variants.map((variant) => (row.variants[variant] ? `${variant} ${row.variants[variant]!.us.toFixed(1)} us x${row.variants[variant]!.speedup.toFixed(2)}` : `${variant} WRONG`));
        console.log(`${N}x${K} ${v} s=${(s * 100).toFixed(0).padStart(2)}%: dense ${denseUs.toFixed(1)} us | ${parts.join(" | ")} | copy ${row.copyGBs.toFixed(0)} GB/s [${((performance.now() - t0) / 1000).toFixed(1)} s]`);
        for (const w of sparse) for (const p of w.parts) b.pool.destroy(p.data);
        for (const p of check.parts) b.pool.destroy(p.data);
      }
      for (const w of dense) for (const p of w.parts) b.pool.destroy(p.data);
    }
  }
  const crossovers: Record<string, number | null> = {};
  for (const [N, K] of o.shapes) {
    for (const v of o.values) {
      for (const variant of o.variants) {
        const pts = rows.filter((r) => r.out === N && r.in === K && r.values === v && r.variants[variant]).map((r) => ({ s: r.sparsity, speedup: r.variants[variant]!.speedup }));
        crossovers[`${N}x${K} ${v} ${variant}`] = crossover(pts);
      }
    }
  }
  const report: GpuSparseReport = {
    bench: "gpu-sparse", version: 2, device: b.description, subgroups, date: new Date().toISOString(), seconds: (performance.now() - started) / 1e3,
    iters: o.iters, rounds: o.rounds, coldMiB: o.coldBytes / 2 ** 20, variants: o.variants, rows, crossover: crossovers, failures,
  };
  b.dispose();
  return report;
}

export function reportMarkdown(r: GpuSparseReport, svgName: string): string {
  const headers = ["shape (out x in)", "values", "sparsity", "dense us", ...r.variants.map((v) => `${v} us (speedup)`), "byte ceiling", "fastest sparse GB/s", "copy GB/s"];
  const table = markdownTable(
    headers,
    r.rows.map((x) => [
      `${x.out} x ${x.in}`, x.values, `${(x.sparsity * 100).toFixed(0)}%`, x.denseUs.toFixed(1),
      ...r.variants.map((v) => (x.variants[v] ? `${x.variants[v]!.us.toFixed(1)} (**${x.variants[v]!.speedup.toFixed(2)}**)` : "wrong / not run")),
      x.ceiling.toFixed(2), (Object.keys(x.variants).length ? Math.max(...Object.values(x.variants).map((e) => e.gbs)).toFixed(0) : "-"), x.copyGBs.toFixed(0),
    ]),
    headers.map((_, i) => i >= 2),
  );
  const cross = Object.entries(r.crossover).map(([k, c]) => `${k}: ${c === null ? "never (slower at every measured sparsity)" : `${(c * 100).toFixed(0)}%`}`).join("; ");
  return `Device: ${r.device} (${r.subgroups}); measured ${r.date} in ${r.seconds.toFixed(0)} s. Times: GPU timestamps around passes of ${r.iters} calls back to back, weights cycled through >= ${r.coldMiB} MiB, median of ${r.rounds} interleaved rounds; speedup = dense us / sparse us; copy GB/s = read + write of a streaming copy in the same rounds.

**Crossover sparsity** (sparse GEMV faster than our dense GEMV of the same value type): ${cross}.
${r.failures.length ? `\n**Failed checks** (not timed there): ${r.failures.join("; ")}.\n` : ""}
${table}
![GPU sparse vs dense GEMV](${svgName})
`;
}

export function reportSvg(r: GpuSparseReport): string {
  const keys = [...new Set(r.rows.map((x) => `${x.out}x${x.in} ${x.values}`))];
  const series = keys.flatMap((k) => r.variants.map((v) => ({
    name: `${v} ${k}`,
    points: r.rows.filter((x) => `${x.out}x${x.in} ${x.values}` === k && x.variants[v]).map((x) => ({ x: x.sparsity * 100, y: x.variants[v]!.speedup })),
  })));
  series.push({ name: "break-even", points: [{ x: 0, y: 1 }, { x: 100, y: 1 }] });
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

function numbers(flag: string, text: string, ok: (n: number) => boolean): number[] {
  return text.split(",").filter((t) => t.trim()).map((t) => {
    const n = Number(t);
    if (!ok(n)) throw new Error(`--${flag}: "${t}" is out of range`);
    return n;
  });
}

if (process.argv[1]?.endsWith("gpu-sparse.js")) {
  const { values: a } = parseArgs({
    options: {
      out: { type: "string" }, from: { type: "string" }, doc: { type: "string" }, svg: { type: "string" },
      variants: { type: "string", default: SPARSE_GEMV_VARIANTS.join(",") }, values: { type: "string", default: "f16" },
      shapes: { type: "string" }, sparsities: { type: "string" }, iters: { type: "string" }, rounds: { type: "string" },
      "warmup-ms": { type: "string" }, "budget-s": { type: "string", default: "200" }, "no-subgroups": { type: "boolean", default: false }, smoke: { type: "boolean", default: false },
    },
  });
  const smoke = a.smoke!;
  let report: GpuSparseReport;
  if (a.from) {
    report = JSON.parse(await readFile(a.from, "utf8")) as GpuSparseReport;
    if (report.version !== 2) throw new Error(`${a.from}: not a version-2 gpu-sparse report (one variant per row: rerun the bench)`);
  } else {
    const positive = (n: number) => Number.isInteger(n) && n > 0;
    report = await run({
      variants: a.variants!.split(",").map((s) => s.trim()).filter((s) => s).map((s) => (parseSparseGemvVariant(s), s)),
      values: a.values!.split(",").map((s) => {
        if (s !== "f32" && s !== "f16" && s !== "bf16") throw new Error(`--values: "${s}" is not f32, f16 or bf16`);
        return s;
      }),
      shapes: (a.shapes ?? (smoke ? "40x300,70x2100" : "4096x14336,8192x8192")).split(",").map((s) => {
        const m = /^(\d+)x(\d+)$/.exec(s);
        if (!m) throw new Error(`--shapes: "${s}" is not OUTxIN`);
        return [Number(m[1]), Number(m[2])] as [number, number];
      }),
      sparsities: numbers("sparsities", a.sparsities ?? (smoke ? "0,0.5,0.9,0.99" : "0,0.3,0.5,0.6,0.7,0.8,0.85,0.9,0.95,0.97,0.98,0.99"), (n) => n >= 0 && n <= 1),
      iters: numbers("iters", a.iters ?? (smoke ? "3" : "50"), positive)[0]!,
      rounds: numbers("rounds", a.rounds ?? (smoke ? "2" : "7"), positive)[0]!,
      warmupMs: numbers("warmup-ms", a["warmup-ms"] ?? (smoke ? "0" : "150"), (n) => n >= 0)[0]!,
      coldBytes: smoke ? 1 << 20 : 192 << 20,
      copyBytes: smoke ? 4 << 20 : 256 << 20,
      subgroups: !a["no-subgroups"],
      budgetS: numbers("budget-s", a["budget-s"]!, (n) => n > 0)[0]!,
    });
  }
  console.log(`\n${reportMarkdown(report, "gpu-sparse.svg")}`);
  if (report.failures.length) {
    console.log(`${report.failures.length} variant checks FAILED:\n${report.failures.join("\n")}`);
    process.exitCode = 1;
  }
  if (a.out) {
    await mkdir(a.out, { recursive: true });
    await writeFile(join(a.out, "gpu-sparse.json"), JSON.stringify(report) + "\n");
    await writeFile(join(a.out, "gpu-sparse.svg"), reportSvg(report));
    await writeFile(join(a.out, "gpu-sparse.md"), reportMarkdown(report, "gpu-sparse.svg"));
    console.log(`wrote ${a.out}/gpu-sparse.json, gpu-sparse.md, gpu-sparse.svg`);
  }
  if (a.svg) await writeFile(a.svg, reportSvg(report));
  if (a.doc) {
    await updateDoc(a.doc, reportMarkdown(report, a.svg ? a.svg.split("/").pop()! : "sparsity-gpu.svg"));
    console.log(`updated ${a.doc}`);
  }
}
