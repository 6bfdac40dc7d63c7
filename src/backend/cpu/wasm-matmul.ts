/**
 * The WebAssembly SIMD engine of the CPU backend (kernels.wat): matmul for every weight format, attention,
 * rmsnorm and swiglu, the first two spread over worker threads (worker-pool.ts). Weights, activations and
 * the job's control block all live in the arena's shared memory, so a job passes only offsets.
 */
import { SPARSE_TABLE_AT, type Arena } from "./arena.js";
import type { CpuKVCache, CpuMatmul, CpuTensor, CpuWeight } from "./cpu-backend.js";
import { isPackedDType, type DType, type PackedDType } from "../../tensor/dtype.js";
import { f16Table } from "../../tensor/half.js";
import { CTRL, CTRL_BYTES, MAX_CHUNKS, WorkerPool, type SpinOptions } from "./worker-pool.js";
import { SPARSE_TABLE_BYTES, sparseSwizzleTable } from "../../sparse/cpu-table.js";
import { packedKernelModule, packedShape, packedTablesIn } from "./wasm-packed.js";

/**
 * How q8_0/q4_0 matmuls treat activations: "f32" keeps them exact (the result differs from the reference
 * only by f32 summation order); "int8" quantizes each 32-block of the activation row to int8 once per
 * matmul, as llama.cpp does, and uses integer dot products. Other formats always use f32 activations.
 *
 * "int8" is the default: it runs about 2.5x (q8_0) and 3x (q4_0) the multiply-adds per instruction of
 * "f32", which is what bounds decode here (bench/cpu-gemv.ts), and it is llama.cpp's arithmetic. Its error
 * against the exact result is at most sum_i |w_i| * dx_b(i) / 2 (dx = the block's amax / 127) plus f32
 * rounding (test/backend/cpu/wasm-matmul.test.ts checks that bound).
 */
export type ActivationPath = "f32" | "int8";

export interface WasmMatmulOptions extends SpinOptions {
  /** Threads including the calling one; 1 runs without workers. */
  threads?: number;
  /** Defaults to "int8" (see ActivationPath). */
  activations?: ActivationPath;
  /** Matmuls with fewer multiply-adds than this run on the calling thread alone. */
  parallelMin?: number;
  /**
   * Use kernels-relaxed.wasm (the sparse kernels' swizzles as relaxed SIMD, same results) where this
   * engine validates it; default true. Node 20 needs `--experimental-wasm-relaxed-simd` (bin/frugal.js
   * sets it); Chrome 114+ has it by default.
   */
  relaxedSimd?: boolean;
}

interface Kernels {
  run(ctrl: number, tag: number, thread: number): number;
  prep_f32(x: number, dst: number, count: number): void;
  quant_i8(x: number, dq: number, ds: number, count: number, q4: number, dqGap: number, dsStep: number): void;
  silu_mul(out: number, gate: number, up: number, n: number): void;
  rmsnorm(out: number, x: number, w: number, count: number, group: number, eps: number): void;
}

const KIND_F32 = 0, KIND_F16 = 1, KIND_BF16 = 2, KIND_Q8_F32 = 3, KIND_Q4_F32 = 4, KIND_Q8_I8 = 5, KIND_Q4_I8 = 6;
const KIND_ATTENTION = 7;
const KIND_SPARSE_F32 = 8, KIND_SPARSE_F16 = 9, KIND_SPARSE_BF16 = 10;
/** src/quant's packed formats run in their own module (packed-kernels.wat); matmul-worker.ts has the same number */
export const KIND_PACKED = 11;
/** Output-feature chunks per thread: enough that a late-waking worker does not hold up the others. */
const CHUNKS_PER_THREAD = 4;

const compiled = new Map<string, Promise<WebAssembly.Module | undefined>>();

/** One f16 -> f32 table per arena, shared by its engines and threads. */
const tables = new WeakMap<Arena, number>();

function f16TableIn(arena: Arena): number {
  let at = tables.get(arena);
  if (at === undefined) {
    at = arena.alloc(65536 * 4);
    new Float32Array(arena.memory.buffer, at, 65536).set(f16Table());
    tables.set(arena, at);
  }
  return at;
}

async function compileFile(file: string): Promise<WebAssembly.Module | undefined> {
  const url = new URL(file, import.meta.url);
  let bytes: Uint8Array<ArrayBuffer>;
  if (typeof process !== "undefined" && process.versions?.node) {
    const { readFile } = await import("node:fs/promises");
    const { fileURLToPath } = await import("node:url");
    try {
      bytes = new Uint8Array(await readFile(fileURLToPath(url)));
    } catch (e) {
      if (file === "./kernels.wasm") throw e;
      return undefined;
    }
  } else {
    bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  }
  if (!WebAssembly.validate(bytes)) return undefined;
  return WebAssembly.compile(bytes);
}

/**
 * The compiled kernels, or undefined where this engine lacks WebAssembly SIMD or threads. With `relaxed`
 * (Node only: the web build ships kernels.wasm alone), kernels-relaxed.wasm where the engine accepts it.
 */
export function kernelModule(relaxed = false): Promise<WebAssembly.Module | undefined> {
  const node = typeof process !== "undefined" && !!process.versions?.node;
  const file = relaxed && node ? "./kernels-relaxed.wasm" : "./kernels.wasm";
  let m = compiled.get(file);
  if (!m) {
    m = file === "./kernels.wasm" ? compileFile(file) : compileFile(file).then((r) => r ?? kernelModule(false));
    compiled.set(file, m);
  }
  return m;
}

/** Whether the engine over `options` runs the relaxed-SIMD kernels (false where the runtime refuses them). */
export async function usesRelaxedSimd(options: WasmMatmulOptions = {}): Promise<boolean> {
  return (options.relaxedSimd ?? true) && (await kernelModule(true)) !== (await kernelModule(false));
}

/** Threads the machine offers (cores), at least 1. */
export async function defaultThreads(): Promise<number> {
  if (typeof process !== "undefined" && process.versions?.node) {
    const os = await import("node:os");
    return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  }
  return Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1);
}

/** Creates the engine over `arena`, or returns undefined where WebAssembly SIMD/threads are unavailable. */
export async function createWasmMatmul(arena: Arena, options: WasmMatmulOptions = {}): Promise<WasmMatmul | undefined> {
  const module = await kernelModule(options.relaxedSimd ?? true);
  // optional: without it (a page that does not ship packed-kernels.wasm) only the packed formats are missing
  const packedModule = await packedKernelModule();
  if (!module) return undefined;
  const instance = await WebAssembly.instantiate(module, { env: { memory: arena.memory } });
  const kernels = instance.exports as unknown as Kernels;
  const packed = packedModule
    ? ((await WebAssembly.instantiate(packedModule, { env: { memory: arena.memory } })).exports as unknown as Pick<Kernels, "run">)
    : undefined;
  const threads = Math.max(1, Math.floor(options.threads ?? (await defaultThreads())));
  const ctrl = arena.alloc(CTRL_BYTES);
  const pool = threads > 1 ? await WorkerPool.start(threads - 1, module, arena.memory, ctrl, options, packedModule) : undefined;
  return new WasmMatmul(arena, kernels, ctrl, pool, options.activations ?? "int8", options.parallelMin ?? 65536, packed);
}

export class WasmMatmul implements CpuMatmul {
  private readonly ctl: Int32Array;
  private readonly ctlF32: Float32Array;
  private scratch = 0;
  private scratchBytes = 0;
  private threadScratch = 0;
  private threadScratchBytes = 0;

  constructor(
    private readonly arena: Arena,
    private readonly kernels: Kernels,
    private readonly ctrl: number,
    private readonly pool: WorkerPool | undefined,
    readonly activations: ActivationPath,
    private readonly parallelMin: number,
    private readonly packed?: Pick<Kernels, "run">,
  ) {
    // the control block sits below every later allocation, so a view taken now stays valid as memory grows
    this.ctl = new Int32Array(arena.memory.buffer, ctrl, CTRL_BYTES / 4);
    this.ctlF32 = new Float32Array(arena.memory.buffer, ctrl, CTRL_BYTES / 4);
    this.ctl[CTRL.f16Table >> 2] = f16TableIn(arena);
    // the sparse kernels read their swizzle patterns at this fixed address (a constant in kernels.wat)
    new Uint8Array(arena.memory.buffer, SPARSE_TABLE_AT, SPARSE_TABLE_BYTES).set(sparseSwizzleTable());
  }

  /** Chunks of work the worker threads have run (0 without workers): tests check that they take part. */
  get workerChunks(): number {
    return this.pool?.workerChunks ?? 0;
  }

  /** Threads a large matmul runs on, the calling one included. */
  get threads(): number {
    return 1 + (this.pool?.size ?? 0);
  }

  matmul(w: CpuWeight, x: CpuTensor, out: CpuTensor, rows: number): void {
    const inF = w.inFeatures;
    const outF = w.outFeatures;
    if (rows > x.rows || rows > out.rows) throw new Error(`matmul ${w.name}: ${rows} rows of a ${Math.min(x.rows, out.rows)}-row tensor`);
    if (rows === 0 || outF === 0) return;
    if (isPackedDType(w.dtype)) return this.matmulPacked(w, w.dtype, x, out, rows);
    const kind = this.kindOf(w.dtype, w.name);
    let xp = x.offset;
    let xs = 0;
    if (kind >= KIND_SPARSE_F32) {
      // activations padded with zeros to whole 32-chunks; prefill expands each weight row into the thread's scratch
      const padded = Math.ceil(inF / 32) * 32;
      if (padded !== inF) {
        xp = this.scratchFor(rows * padded * 4);
        const dst = new Float32Array(this.arena.memory.buffer, xp, rows * padded);
        for (let r = 0; r < rows; r++) {
          dst.set(x.data.subarray(r * inF, (r + 1) * inF), r * padded);
          dst.fill(0, r * padded + inF, (r + 1) * padded);
        }
      }
      if (rows > 1) this.threadScratchFor(padded * 4);
    } else if (kind >= KIND_Q8_F32) {
      if (inF % 32 !== 0) throw new Error(`matmul ${w.name}: ${w.dtype} needs in-features divisible by 32, got ${inF}`);
      const count = rows * inF;
      if (kind >= KIND_Q8_I8) {
        // 64 bytes of int16 per block, 80 for q4_0 (its offset correction), and one f32 scale
        const blockBytes = kind === KIND_Q4_I8 ? 80 : 64;
        const q4 = kind === KIND_Q4_I8 ? 1 : 0;
        const nb = inF / 32;
        xp = this.scratchFor((count / 32) * (blockBytes + 4));
        xs = xp + (count / 32) * blockBytes;
        // rows below rows & ~3 (rows >= 4) in groups of four, blocks and scales interleaved (the GEMM
        // kernels' layout); the rest one after another
        const grouped = rows >= 4 ? rows & ~3 : 0;
        for (let r = 0; r < grouped; r++) {
          const g = r >> 2;
          const k = r & 3;
          this.kernels.quant_i8(x.offset + r * inF * 4, xp + (g * 4 * nb + k) * blockBytes, xs + (g * 4 * nb + k) * 4, inF, q4, 3 * blockBytes, 16);
        }
        if (grouped < rows) {
          this.kernels.quant_i8(x.offset + grouped * inF * 4, xp + grouped * nb * blockBytes, xs + grouped * nb * 4, (rows - grouped) * inF, q4, 0, 4);
        }
      } else {
        xp = this.scratchFor(count * 4);
        this.kernels.prep_f32(x.offset, xp, count);
      }
    }
    const c = this.ctl;
    c[CTRL.kind >> 2] = kind;
    c[CTRL.w >> 2] = w.offset;
    c[CTRL.x >> 2] = xp;
    c[CTRL.xs >> 2] = xs;
    c[CTRL.out >> 2] = out.offset;
    c[CTRL.inF >> 2] = inF;
    c[CTRL.rows >> 2] = rows;
    this.runJob(outF, inF * outF * rows >= this.parallelMin && outF > 1, kind >= KIND_Q8_I8 && kind <= KIND_Q4_I8 ? 4 : 1);
  }

  /**
   * src/quant's packed formats (packed-kernels.wat): f32 activations, rows padded with zeros to whole
   * groups when the row length is not a multiple of the group; 4+ rows take the decode-once GEMM shape.
   */
  private matmulPacked(w: CpuWeight, dtype: PackedDType, x: CpuTensor, out: CpuTensor, rows: number): void {
    if (!this.packed) throw new Error(`matmul ${w.name}: no WebAssembly kernel for ${dtype} (packed-kernels.wasm was not found)`);
    const inF = w.inFeatures;
    const shape = packedShape(dtype, w.outFeatures, inF);
    let xp = x.offset;
    if (shape.paddedCols !== inF) {
      xp = this.scratchFor(rows * shape.paddedCols * 4);
      const dst = new Float32Array(this.arena.memory.buffer, xp, rows * shape.paddedCols);
      for (let r = 0; r < rows; r++) {
        dst.set(x.data.subarray(r * inF, (r + 1) * inF), r * shape.paddedCols);
        dst.fill(0, r * shape.paddedCols + inF, (r + 1) * shape.paddedCols);
      }
    }
    if (rows >= 4) this.threadScratchFor(shape.paddedCols * 4);
    const c = this.ctl;
    c[CTRL.kind >> 2] = KIND_PACKED;
    c[CTRL.w >> 2] = w.offset;
    c[CTRL.x >> 2] = xp;
    c[CTRL.out >> 2] = out.offset;
    c[CTRL.inF >> 2] = inF;
    c[CTRL.rows >> 2] = rows;
    c[CTRL.qfmt >> 2] = shape.fmt;
    c[CTRL.qgroup >> 2] = shape.group;
    c[CTRL.qscales >> 2] = w.offset + shape.scalesAt;
    this.ctlF32[CTRL.qtensorScale >> 2] = new DataView(w.bytes.buffer, w.bytes.byteOffset, w.bytes.byteLength).getFloat32(w.bytes.byteLength - 4, true);
    c[CTRL.qtables >> 2] = packedTablesIn(this.arena, dtype);
    c[CTRL.qxstride >> 2] = shape.paddedCols;
    c[CTRL.qscaleRow >> 2] = shape.scaleBytesPerRow;
    c[CTRL.qcodeRow >> 2] = shape.codeBytesPerRow;
    this.runJob(w.outFeatures, inF * w.outFeatures * rows >= this.parallelMin && w.outFeatures > 1, 1, this.packed);
  }

  /**
   * Causal attention (Backend.attention) in the kernels, spread over threads by (row, head); false (the
   * backend's loop then runs) for head widths that are not a multiple of 4.
   */
  attention(out: CpuTensor, q: CpuTensor, cache: CpuKVCache, layer: number, pos0: number, heads: number): boolean {
    const d = cache.headDim;
    if (d % 4 !== 0 || d === 0 || heads % cache.kvHeads !== 0) return false;
    const rows = q.rows;
    const longest = pos0 + rows;
    if (longest > cache.capacity) throw new Error(`attention over ${longest} positions exceeds the KV cache capacity ${cache.capacity}`);
    const layerBytes = layer * cache.capacity * cache.kvHeads * d * 4;
    this.threadScratchFor(((longest + 3) & ~3) * 4);
    const c = this.ctl;
    c[CTRL.kind >> 2] = KIND_ATTENTION;
    c[CTRL.w >> 2] = cache.k.byteOffset + layerBytes;
    c[CTRL.xs >> 2] = cache.v.byteOffset + layerBytes;
    c[CTRL.x >> 2] = q.offset;
    c[CTRL.out >> 2] = out.offset;
    c[CTRL.rows >> 2] = rows;
    c[CTRL.pos0 >> 2] = pos0;
    c[CTRL.heads >> 2] = heads;
    c[CTRL.kvHeads >> 2] = cache.kvHeads;
    c[CTRL.headDim >> 2] = d;
    this.ctlF32[CTRL.scale >> 2] = 1 / Math.sqrt(d);
    // multiply-adds: scores and the weighted sum of V, each over up to `longest` positions
    const work = 2 * rows * heads * longest * d;
    this.runJob(rows * heads, work >= this.parallelMin && rows * heads > 1);
    return true;
  }

  /** Backend.rmsnorm for f32 weights (false for other formats: the backend's loop decodes them). */
  rmsnorm(out: CpuTensor, x: CpuTensor, weight: CpuWeight, eps: number, group: number): boolean {
    if (weight.dtype !== "f32" || weight.bytes.byteLength < group * 4) return false;
    const count = x.rows * x.cols;
    if (count % group !== 0 || out.rows * out.cols < count) return false;
    this.kernels.rmsnorm(out.offset, x.offset, weight.offset, count, group, eps);
    return true;
  }

  /** Backend.swiglu: out = silu(gate) * up over out's elements. */
  swiglu(out: CpuTensor, gate: CpuTensor, up: CpuTensor): boolean {
    this.kernels.silu_mul(out.offset, gate.offset, up.offset, out.rows * out.cols);
    return true;
  }

  /**
   * Runs the job in the control block over `items` (output features, or attention items), in chunks that
   * are multiples of `align` (the int8 kernels take four weight rows at a time).
   */
  private runJob(items: number, worthSplitting: boolean, align = 1, kernels: Pick<Kernels, "run"> = this.kernels): void {
    const c = this.ctl;
    const parallel = worthSplitting && this.pool !== undefined && this.pool.available;
    const even = Math.ceil(items / Math.min(this.threads * CHUNKS_PER_THREAD, MAX_CHUNKS));
    const chunk = parallel ? Math.max(align, Math.ceil(even / align) * align) : items;
    const nChunks = Math.ceil(items / chunk);
    c[CTRL.outF >> 2] = items;
    c[CTRL.chunk >> 2] = chunk;
    c[CTRL.nChunks >> 2] = nChunks;
    if (parallel) {
      this.pool!.run(nChunks, (tag) => kernels.run(this.ctrl, tag, 0));
    } else {
      // tag 0: workers never claim chunks of it, even one still waking from an earlier job
      Atomics.store(c, CTRL.next >> 2, 0);
      kernels.run(this.ctrl, 0, 0);
    }
  }

  private kindOf(dtype: DType, name: string): number {
    switch (dtype) {
      case "f32": return KIND_F32;
      case "f16": return KIND_F16;
      case "bf16": return KIND_BF16;
      case "q8_0": return this.activations === "int8" ? KIND_Q8_I8 : KIND_Q8_F32;
      case "q4_0": return this.activations === "int8" ? KIND_Q4_I8 : KIND_Q4_F32;
      case "sparse-f32": return KIND_SPARSE_F32;
      case "sparse-f16": return KIND_SPARSE_F16;
      case "sparse-bf16": return KIND_SPARSE_BF16;
      default: throw new Error(`matmul ${name}: no WebAssembly kernel for ${String(dtype)}`);
    }
  }

  /** A scratch region of at least `bytes`, reallocated (doubling) when a larger one is needed. */
  private scratchFor(bytes: number): number {
    if (bytes > this.scratchBytes) {
      this.scratchBytes = Math.max(bytes, this.scratchBytes * 2);
      this.scratch = this.arena.alloc(this.scratchBytes);
    }
    return this.scratch;
  }

  /** Makes each thread's scratch at least `bytes` (reallocated, doubling, when a job needs more). */
  private threadScratchFor(bytes: number): void {
    if (bytes <= this.threadScratchBytes) return;
    this.threadScratchBytes = Math.max(bytes, this.threadScratchBytes * 2);
    this.threadScratch = this.arena.alloc(this.threadScratchBytes * this.threads);
    this.ctl[CTRL.scratch >> 2] = this.threadScratch;
    this.ctl[CTRL.scratchStride >> 2] = this.threadScratchBytes;
  }

  dispose(): void {
    this.pool?.dispose();
  }
}
