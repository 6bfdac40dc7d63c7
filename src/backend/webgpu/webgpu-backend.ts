/**
 * The Backend on WebGPU. Ops are recorded into one command encoder and submitted when a result is read,
 * so a decode step is one queue submission; see recorder.ts for how parameters and bind groups are
 * reused, weights.ts for the weight layouts and kernels/ for the WGSL.
 */
import type { Backend, KVCache, KVSlot, RopeTable, PickedRows, PickedToken, SampleParams, Tensor, Weight } from "../backend.js";
import type { RawTensor } from "../../tensor/raw.js";
import { PACKED_DTYPES, type DType } from "../../tensor/dtype.js";
import { openGpu, type GpuDevice, type GpuOptions } from "./device.js";
import { BufferPool, type Buf } from "./buffers.js";
import { Recorder } from "./recorder.js";
import { f32bits, grid, type Kernel } from "./kernel.js";
import type { KernelTime } from "./profiler.js";
import { GpuWeight, Q4_LAYOUTS, uploadWeight, type GpuFormat, type Q4Layout } from "./weights.js";
import { GpuSparseWeight, parseSparseGemvVariant, recordSparseMatmul, SPARSE_GEMV_DEFAULT, uploadSparse, type SparseGemvVariant } from "./sparse-weight.js";
import { isSparseDType, type SparseDType } from "../../tensor/dtype.js";
import { GEMV_I8_ROWS, GEMV_I8_UNROLL, gemvI8Kernel, type BlockFormat } from "./kernels/gemv-i8.js";
import { GEMM_I8_TILE, gemmBlocksI8Kernel } from "./kernels/gemm-blocks.js";
import { PREFILL_ROWS, prefillAttentionFits, prefillAttentionKernel } from "./kernels/attention-prefill.js";
import { GEMV_BLOCKS, GEMV_BLOCKS_QUANT, QUANT_WINDOW, QUANT_X_ONCE_GROUPS, gemvBlocksI8Kernel, gemvBlocksQuantKernel, quantWindow, selfQuantGrid } from "./kernels/gemv-blocks.js";
import { QuantizedX, type ActivationPath } from "./quantized-x.js";
import { GEMM_TILE, GEMV_BATCH_ROWS_PER_TEAM, GEMV_MAX_BATCH, GEMV_ROWS_PER_TEAM, chunkElems, gemvBatchVariant, gemvRows, gemvSplit, gemmKernel, gemvKernel, gemvVariant, xMode, type GemvVariant } from "./kernels/matmul.js";
import { ELEMENTWISE_GROUP, addBiasKernel, addKernel, swigluKernel } from "./kernels/elementwise.js";
import { normThreads, rmsnormKernel } from "./kernels/norm.js";
import { ROPE_GROUP, ropeKernel } from "./kernels/rope.js";
import { GPU_KV_FORMATS, KV_GROUP, checkKv4HeadDim, isKv4, kvWords, kvWriteInt8Kernel, kvWriteKernel, kvWriteQuant4Kernel, type GpuKvFormat } from "./kernels/kv.js";
import { attentionCombineKernel, attentionPartialKernel, attentionSplits, partialStride } from "./kernels/attention.js";
import { EMBED_GROUP, EMBED_TOKENS, embedKernel } from "./kernels/embed.js";
import { embedRowsKernel } from "./kernels/embed-rows.js";
import { ARGMAX_PARTS, ARGMAX_SPLIT_MIN, argmaxFinalKernel, argmaxKernel, argmaxPartsKernel } from "./kernels/argmax.js";
import { sampleKernel } from "./kernels/sample.js";
import { SAMPLE_PARTS, SAMPLE_ROWS, sampleMaxKernel, sampleSumKernel, sampleWalkKernel } from "./kernels/sample-split.js";
import { ropeCosSin } from "../../model/config.js";
import { GpuSelectOps } from "./select-ops.js";
import { GpuXkvOps } from "./xkv-ops.js";
import { SlotPool } from "../../kv/slot-pool.js";
import { ROWS_GROUP, TABLE_ROWS, attentionRowsCombineKernel, attentionRowsPartialKernel, kvWriteRowsKernel, ropeRowsKernel, rowsParams } from "./kernels/rows.js";
import { uploadStacked, type WeightStack } from "./stacked-weights.js";
import { MAX_STACK, addGemvKernel, fusedGemvBlocksQuantKernel, qkvRopeGemvKernel, fusedGemvI8Kernel, stackedGemvKernel, stackedParams, swigluGemvKernel, swigluRowsPerTeam } from "./kernels/gemv-fused.js";
import { ROPE_KV_GROUP, ropeKvWriteKernel } from "./kernels/rope-kv.js";
import { RAZER_RUNS_GEMV, laneBlocksRows, razerRunsGemvKernel } from "./kernels/lane-blocks.js";
import { gemvDecodeOf } from "./kernels/packed.js";
import { GEMV_DECODE_VARIANTS } from "../../quant/wgsl/decode.js";

export class GpuTensor implements Tensor {
  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly buf: Buf,
  ) {}
}

export class GpuKVCache implements KVCache {
  constructor(
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly capacity: number,
    /** One buffer per layer: [position][kvHeads * headDim] (quantized: codes packed in u32, kernels/kv.ts kvWords). */
    readonly k: readonly Buf[],
    readonly v: readonly Buf[],
    readonly format: GpuKvFormat = "f32",
    /** Quantized formats: one buffer per layer of scale words [position][kvHeads][kvWords(..).scales]. */
    readonly kScales: readonly Buf[] = [],
    readonly vScales: readonly Buf[] = [],
    /** Set on a cache of a GpuKvPool: k and v above are sub-ranges of the pool's buffers. */
    readonly slot?: KVSlot,
  ) {}
}

/**
 * A KV slot pool: one k and one v buffer per layer holding every slot's cache, slot s at s * slotStride
 * floats (capacity * width rounded up to the storage offset alignment, so a slot's cache is also a
 * bindable sub-range that the single-sequence kernels use unchanged, e.g. for prefill).
 */
export class GpuKvPool extends SlotPool<GpuKVCache> {
  constructor(
    slots: number,
    capacity: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly k: readonly Buf[],
    readonly v: readonly Buf[],
    /** Floats from one slot's cache to the next. */
    readonly slotStride: number,
    make: (slot: KVSlot) => GpuKVCache,
  ) {
    super(slots, capacity, make);
  }
}

/** pickRowsAhead's tokens: row r's id is word r × (storage alignment / 4) of `buf`. */
export interface GpuPickedRows extends PickedRows {
  readonly buf: Buf;
}

export class GpuRopeTable implements RopeTable {
  constructor(
    readonly maxPositions: number,
    readonly half: number,
    readonly cos: Buf,
    readonly sin: Buf,
  ) {}
}

export interface WebGpuOptions extends GpuOptions {
  /** Time every dispatch with timestamp queries; read the totals with `profile()`. */
  profile?: boolean;
  /** Cap on one weight binding (tests use a small one to exercise weights split into parts). */
  maxBindingBytes?: number;
  /** Weight rows each GEMV thread team computes, per format (tests; the other GEMV defaults are kernels/matmul.ts's tables). */
  gemvRowsPerTeam?: Partial<Record<GpuFormat, number>>;
  /**
   * How batch-1 q8_0/q4_0 matmuls treat x: "f32" keeps the exact path; "int8" quantizes it per 32-block
   * as the CPU backend does (its default, architecture.md decision 10) and uses integer dot products
   * (kernels/gemv-i8.ts, gemv-blocks.ts); "auto" (default) is int8 for q4_0, whose blocks-layout GEMVs
   * quantize x themselves and fuse the RMSNorm before them (decode on an H200: 8B 278 against 256 t/s, 1B
   * 640-769 against 487-644, docs/performance.md "Session 6"), and f32 for q8_0, whose int8 GEMV needs
   * a quantization dispatch of its own (not measured to win).
   */
  activations?: ActivationPath;
  /**
   * q4_0's layout on the GPU (weights.ts): "tiles" for the f32-x GEMV, "blocks" for the int8-activation
   * GEMV in which a lane owns whole blocks (kernels/gemv-blocks.ts). Default: "tiles" with f32
   * activations, "blocks" otherwise. Every path reads either layout; the other activation path on it is
   * slower, not wrong (the f32-x GEMV reads blocks in the file's order, without coalesced x).
   */
  q4Layout?: Q4Layout;
  /**
   * Whether the fused ops run (matmulStacked, matmulSwiglu, matmulAdd, ropeKvWrite; README "Fusions").
   * Default true; false makes them decline, so a model runs the separate ops (benchmarks compare both).
   */
  fuse?: boolean;
  /**
   * Whether matmuls and fused ops of 2..GEMV_BATCH_ROWS rows run one GEMV over all rows (weights read
   * once; README "A few rows") rather than one GEMV per row over row views. Default true; the results are
   * the same bit for bit, so benchmarks compare both.
   */
  batchedGemv?: boolean;
  /** Weight rows each team of a GEMV over several rows computes, per format (default: GEMV_BATCH_ROWS_PER_TEAM). */
  gemvBatchRowsPerTeam?: Partial<Record<GpuFormat, number>>;
  /** The sparse-bitmap GEMV kernel (sparse-weight.ts: "walk", "compact", "compact-s4-h2", ...). */
  sparseGemv?: SparseGemvVariant;
}

/** Opens a device and returns a backend on it. */
export async function createWebGpuBackend(options: WebGpuOptions = {}): Promise<WebGpuBackend> {
  return new WebGpuBackend(await openGpu(options), options);
}

/**
 * Most rows a matmul runs as GEMV (batched decoding of up to this many sequences): one GEMV over all rows
 * (`batchedGemv`, weights read once), or one per row; more rows take the tiled GEMM, whose 64-row tiles
 * would be mostly empty for a handful of rows.
 */
export const GEMV_BATCH_ROWS = GEMV_MAX_BATCH;

export class WebGpuBackend implements Backend {
  readonly kind = "webgpu" as const;
  readonly formats: readonly DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0", ...PACKED_DTYPES, "sparse-f32", "sparse-f16", "sparse-bf16"];
  readonly recorder: Recorder;
  readonly pool: BufferPool;
  private readonly maxBinding: number;
  /** Weight rows per GEMV thread team, per format; benchmarks change it between runs. */
  readonly gemvRowsPerTeam: Record<GpuFormat, number>;
  private scratch?: Buf;
  /** "int8", "f32" or "auto" activations for batch-1 q8_0/q4_0 matmuls; benchmarks change it between runs. */
  activations: ActivationPath;
  /** The layout q4_0 weights are uploaded in (WebGpuOptions.q4Layout). */
  readonly q4Layout: Q4Layout;
  /**
   * Whether int8 GEMVs over q4_0 blocks quantize x themselves (kernels/gemv-blocks.ts, no dispatch of its
   * own; the same results bit for bit) rather than in a quantX dispatch; benchmarks change it between runs.
   */
  quantizeInGemv = true;
  /** Workgroups of a self-quantizing GEMV whose x fits one window (gemv-blocks.ts selfQuantGrid; 0: one a row group); benchmarks change it between runs. */
  quantOnceGroups = QUANT_X_ONCE_GROUPS;
  /** Whether a self-quantizing GEMV holds all of a longer x in workgroup memory when the device allows (gemv-blocks.ts quantWindow); benchmarks change it between runs. */
  quantWholeX = true;
  /** Whether q4_0 prefill (more rows than a batched GEMV takes) on int8 activations runs the int8 GEMM (kernels/gemm-blocks.ts) rather than the f32 one; benchmarks change it between runs. */
  int8Gemm = true;
  /** Whether prompts of PREFILL_ROWS or more rows take the tiled prefill attention (kernels/attention-prefill.ts; any KV format, not windowed); benchmarks change it between runs. */
  prefillAttention = true;
  /** Whether normMatmulQkvRope runs (else it declines and the Llama forward takes normMatmulStacked + ropeKvWrite); benchmarks change it between runs. */
  fuseQkvRope = true;
  private readonly qx: QuantizedX;
  /** Whether the fused ops run; benchmarks change it between runs. */
  fuse: boolean;
  /** Whether 2..GEMV_BATCH_ROWS rows run one GEMV for all rows (else one per row); benchmarks change it between runs. */
  batchedGemv: boolean;
  /** Weight rows per team of GEMVs over several rows, per format; benchmarks change it between runs. */
  readonly gemvBatchRowsPerTeam: Record<GpuFormat, number>;
  /** The sparse-bitmap GEMV kernel; benchmarks change it between runs. */
  sparseGemv: SparseGemvVariant;
  /** The stack each weight uploaded by uploadStack belongs to. */
  private readonly stacks = new WeakMap<GpuWeight, WeightStack>();
  private readonly result: Buf;
  /** Per-workgroup results of the split argmax and sampling over a vocabulary row (made at first use). */
  private splitParts?: [Buf, Buf];
  /** pickRows' id slots, grown as needed (old ones stay until dispose: pending work may use them). */
  private rowResults?: Buf;
  private disposed = false;
  readonly selectOps: GpuSelectOps;
  readonly xkvOps: GpuXkvOps;

  constructor(readonly gpu: GpuDevice, options: WebGpuOptions = {}) {
    this.pool = new BufferPool(gpu.device, gpu.maxBufferBytes);
    this.recorder = new Recorder(gpu, this.pool, options.profile ?? false);
    this.maxBinding = Math.min(gpu.maxBindingBytes, options.maxBindingBytes ?? Infinity);
    this.gemvRowsPerTeam = { ...GEMV_ROWS_PER_TEAM, ...options.gemvRowsPerTeam };
    this.activations = options.activations ?? "auto";
    if (!["int8", "f32", "auto"].includes(this.activations)) throw new Error(`WebGPU option activations: "${String(this.activations)}" is not "int8", "f32" or "auto"`);
    this.q4Layout = options.q4Layout ?? (this.activations === "f32" ? "tiles" : "blocks");
    if (!Q4_LAYOUTS.includes(this.q4Layout)) throw new Error(`WebGPU option q4Layout: "${String(this.q4Layout)}" is not one of ${Q4_LAYOUTS.join(", ")}`);
    this.fuse = options.fuse ?? true;
    this.batchedGemv = options.batchedGemv ?? true;
    this.gemvBatchRowsPerTeam = { ...GEMV_BATCH_ROWS_PER_TEAM, ...options.gemvBatchRowsPerTeam };
    this.sparseGemv = options.sparseGemv ?? SPARSE_GEMV_DEFAULT;
    parseSparseGemvVariant(this.sparseGemv);
    this.qx = new QuantizedX(this.pool, (k, p, b, g) => this.run(k, p, b, g));
    this.result = this.pool.storage(16, "argmax result");
    this.selectOps = new GpuSelectOps(this.pool, (k, p, b, g) => this.run(k, p, b, g), (buf, off, bytes) => this.recorder.read(buf, off, bytes));
    const rec = this.recorder;
    this.xkvOps = new GpuXkvOps(this.pool, {
      run: (k, p, b, g) => this.run(k, p, b, g),
      read: (buf, off, bytes) => rec.read(buf, off, bytes),
      copy: (src, so, dst, doff, bytes) => rec.copy(src, so, dst, doff, bytes),
      flush: () => rec.flush(),
    }, gpu.device.limits.maxComputeWorkgroupStorageSize);
  }

  /** The adapter, for reports: vendor / architecture / device. */
  get description(): string {
    return this.gpu.description;
  }

  private run(k: Kernel, params: ArrayLike<number>, bufs: readonly Buf[], groups: readonly [number, number]): void {
    if (this.disposed) throw new Error("this WebGPU backend was disposed");
    this.recorder.dispatch(k, params, bufs, groups);
  }

  /** Dense formats give a GpuWeight; sparse-bitmap tensors a GpuSparseWeight (only matmul takes one). */
  upload(raw: RawTensor & { dtype: SparseDType }): GpuSparseWeight;
  upload(raw: RawTensor): GpuWeight;
  upload(raw: RawTensor): GpuWeight | GpuSparseWeight {
    if (isSparseDType(raw.dtype)) return uploadSparse(raw, this.pool, this.maxBinding);
    return uploadWeight(raw, this.pool, this.maxBinding, this.q4Layout);
  }

  /**
   * Uploads weights of one format and row length one after another in one buffer when they fit, so the
   * fused GEMVs read them as one matrix; each returned weight is an ordinary one otherwise.
   */
  uploadStack(raws: readonly RawTensor[]): GpuWeight[] {
    if (raws.length < 2 || raws.length > MAX_STACK || raws.some((r) => isSparseDType(r.dtype) || r.shape.length !== 2)) return raws.map((r) => this.upload(r));
    // RaZeR under a runs GEMV variant: separate weights, so each batch-1 matmul takes its runs copy
    if (raws.some((r) => r.dtype === "razer") && GEMV_DECODE_VARIANTS.razer?.[gemvDecodeOf("razer") ?? ""]?.runs) return raws.map((r) => this.upload(r));
    const { weights, stack } = uploadStacked(raws, this.pool, this.maxBinding, this.rowViewAlign, this.q4Layout);
    if (stack) for (const w of weights) this.stacks.set(w, stack);
    return weights;
  }

  /** The stack whose members are exactly `ws`, in order, when the fused GEMVs may run on it. */
  private fusable(ws: readonly Weight[], x: GpuTensor): WeightStack | undefined {
    if (!this.fuse || x.rows < 1 || x.rows > GEMV_BATCH_ROWS || !(ws[0] instanceof GpuWeight)) return undefined;
    const st = this.stacks.get(ws[0]);
    if (!st || st.members.length !== ws.length || ws.some((w, i) => w !== st.members[i])) return undefined;
    const w = st.members[0]!;
    if (x.cols !== w.inFeatures) throw new Error(`matmul ${w.name}: x [${x.rows}, ${x.cols}] does not fit [${w.shape.join(", ")}]`);
    return st;
  }

  /**
   * Runs a one-row fused op on each of x's rows (2..GEMV_BATCH_ROWS, batched decoding) through row views of
   * x and `others` (its outputs): true when it ran, false (nothing recorded) when the rows cannot be viewed
   * or the op declines. Used where batchVariant gives no batch kernel.
   */
  private fusedPerRow(x: GpuTensor, others: readonly GpuTensor[], op: (x: GpuTensor, row: (t: GpuTensor) => GpuTensor) => boolean): boolean {
    const n = x.rows;
    if (!this.fuse || n > GEMV_BATCH_ROWS || [x, ...others].some((t) => t.rows < n || (t.cols * 4) % this.rowViewAlign !== 0)) return false;
    for (let r = 0; r < n; r++) {
      // the first row decides for all: the op declines on properties every row shares
      if (!op(this.rowView(x, r, 1), (t) => this.rowView(t, r, 1))) return false;
    }
    return true;
  }

  /** Blocks of x a self-quantizing GEMV over `blocks` blocks quantizes at a time (quantWholeX). */
  private quantWindow(blocks: number): number {
    return this.quantWholeX ? quantWindow(blocks, this.gpu.device.limits.maxComputeWorkgroupStorageSize) : QUANT_WINDOW;
  }

  /** Whether w's int8-activation GEMVs quantize x themselves (quantizeInGemv, q4_0 blocks). */
  private selfQuantizing(w: GpuWeight): boolean {
    return !w.tiled && this.quantizeInGemv;
  }

  /** The fused int8-activation GEMV kernel for w's layout (see runI8 for its bindings). */
  private fusedI8(w: GpuWeight, fusion: { stacked: number } | "swiglu" | "add"): { kernel: Kernel; rowsPerGroup: number } {
    const sg = this.gpu.subgroupMinSize;
    return this.selfQuantizing(w) ? fusedGemvBlocksQuantKernel(sg, fusion, false, this.quantWindow(w.blocks)) : fusedGemvI8Kernel(w.format as BlockFormat, sg, fusion, w.tiled);
  }

  /** Whether a batch-1 matmul over w takes the int8-activation GEMV (kernels/gemv-i8.ts). */
  private viaInt8(w: GpuWeight): boolean {
    return w.isBlock && (this.activations === "int8" || (this.activations === "auto" && w.format === "q4_0"));
  }

  /**
   * Records an int8-activation GEMV over `rows` rows: x quantized first unless the scratch holds it.
   * `bufs` are the bindings after x's quants and scales.
   */
  private runI8(k: { kernel: Kernel; rowsPerGroup: number }, x: GpuTensor, w: GpuWeight, params: number[], bufs: readonly Buf[], rows: number): void {
    if (this.selfQuantizing(w)) {
      this.run(k.kernel, params, [x.buf, ...bufs], selfQuantGrid(rows, k.rowsPerGroup, w.blocks, this.quantWindow(w.blocks), this.quantOnceGroups));
      return;
    }
    const [xq, xs] = this.qx.of(x.buf, w.inFeatures, w.tiled ? (w.format as BlockFormat) : "planes", this.recorder.dispatches, this.recorder.submissions);
    this.run(k.kernel, params, [xq, xs, ...bufs], grid(Math.ceil(rows / k.rowsPerGroup)));
    this.qx.keep(this.recorder.dispatches);
  }

  /**
   * The variant of a GEMV over `rows` x rows whose rows equal the one-row variant `single` bit for bit
   * (`single` itself for one row), or undefined where each row runs its own GEMV: batchedGemv off, the
   * int8-activation path (one-row kernels only), or x staged as f16. `even`: a team holds (gate, up) pairs.
   */
  private batchVariant(w: GpuWeight, rows: number, single: GemvVariant, even = false): GemvVariant | undefined {
    if (rows === 1) return single;
    if (!this.batchedGemv || rows > GEMV_BATCH_ROWS || this.viaInt8(w)) return undefined;
    const R = this.gemvBatchRowsPerTeam[w.format];
    return gemvBatchVariant(single, even ? swigluRowsPerTeam(R) : R);
  }

  /** The GEMV variant the plain matmul uses for `format`, or with `rowsPerTeam` rows a team when given. */
  private gemvVariantOf(format: GpuFormat, rowsPerTeam = this.gemvRowsPerTeam[format]): GemvVariant {
    return gemvVariant(format, this.gpu.subgroupMinSize, rowsPerTeam === GEMV_ROWS_PER_TEAM[format] ? {} : { rowsPerTeam });
  }

  /** The GEMV's own parameter words for `rows` rows of w (o0 = 0) with the row factor left to the epilogue. */
  private gemvParams(w: GpuWeight, rows: number, o0 = 0, mul = 1): number[] {
    const K = w.inFeatures;
    return [rows, K, Math.ceil(K / chunkElems(w.format)), o0, w.stride / 4, w.blocks, f32bits(mul)];
  }

  /**
   * outs[i] = x · ws[i]ᵀ for 1..GEMV_BATCH_ROWS rows of x, in one dispatch (or one a row, see
   * batchVariant), when ws were uploaded together by uploadStack (in this order); false, recording
   * nothing, otherwise.
   */
  matmulStacked(outs: readonly Tensor[], x: Tensor, ws: readonly Weight[]): boolean {
    const xt = x as GpuTensor;
    const st = this.fusable(ws, xt);
    if (!st) return false;
    const os = outs as readonly GpuTensor[];
    const rows = st.members.map((w) => w.outFeatures);
    if (os.length !== ws.length || os.some((o, i) => o.cols !== rows[i] || o.rows < xt.rows || o.buf === xt.buf)) {
      throw new Error(`matmulStacked: outputs [${os.map((o) => `${o.rows}x${o.cols}`).join(", ")}] do not fit ${xt.rows} rows of ${st.members.map((w) => w.name).join(", ")}`);
    }
    const w = st.members[0]!;
    const bv = this.batchVariant(w, xt.rows, this.gemvVariantOf(w.format));
    if (!bv) return this.fusedPerRow(xt, os, (xr, row) => this.matmulStacked(os.map(row), xr, ws));
    const sg = this.gpu.subgroupMinSize;
    const n = rows.reduce((a, b) => a + b, 0);
    if (xt.rows === 1 && this.viaInt8(w)) {
      this.runI8(this.fusedI8(w, { stacked: ws.length }), xt, w, [n, w.inFeatures, 0, w.blocks, ...stackedParams(rows, st.members.map((m) => m.mul), f32bits)], [st.data, st.scales!, ...os.map((o) => o.buf)], n);
      return true;
    }
    const k = stackedGemvKernel(w.format, xMode(w.format, w.inFeatures), sg, bv, ws.length, xt.rows, w.tiled);
    // a batch's ocols word goes unused: each output's rows are its member's width
    const params = [...this.gemvParams(w, n), ...stackedParams(rows, st.members.map((m) => m.mul), f32bits), ...(xt.rows > 1 ? [0] : [])];
    const bufs = [xt.buf, st.data, ...(st.scales ? [st.scales] : []), ...os.map((o) => o.buf)];
    this.run(k, params, bufs, grid(Math.ceil(n / gemvRows(sg, bv.rowsPerTeam, bv.split))));
    return true;
  }

  /**
   * out = silu(x · gateᵀ) * (x · upᵀ) for 1..GEMV_BATCH_ROWS rows of x, in one dispatch (or one a row,
   * see batchVariant), when gate and up were uploaded together by uploadStack (gate first); false,
   * recording nothing, otherwise.
   */
  matmulSwiglu(out: Tensor, x: Tensor, gate: Weight, up: Weight): boolean {
    const xt = x as GpuTensor;
    const st = this.fusable([gate, up], xt);
    if (!st) return false;
    const o = out as GpuTensor;
    const [g, u] = st.members as [GpuWeight, GpuWeight];
    if (g.outFeatures !== u.outFeatures || o.cols !== g.outFeatures || o.rows < xt.rows || o.buf === xt.buf) {
      throw new Error(`matmulSwiglu: [${o.rows}, ${o.cols}] does not fit ${xt.rows} rows of ${g.name} [${g.shape.join(", ")}] and ${u.name} [${u.shape.join(", ")}]`);
    }
    const bv = this.batchVariant(g, xt.rows, this.gemvVariantOf(g.format, swigluRowsPerTeam(this.gemvRowsPerTeam[g.format])), true);
    if (!bv) return this.fusedPerRow(xt, [o], (xr, row) => this.matmulSwiglu(row(o), xr, gate, up));
    const sg = this.gpu.subgroupMinSize;
    const n = 2 * g.outFeatures;
    if (xt.rows === 1 && this.viaInt8(g)) {
      this.runI8(this.fusedI8(g, "swiglu"), xt, g, [n, g.inFeatures, 0, g.blocks, g.outFeatures, f32bits(g.mul), f32bits(u.mul)], [st.data, st.scales!, o.buf], n);
      return true;
    }
    const k = swigluGemvKernel(g.format, xMode(g.format, g.inFeatures), sg, bv, xt.rows, g.tiled);
    // a batch's ocols word goes unused: out rows are half (= gate's rows) wide
    const params = [...this.gemvParams(g, n), g.outFeatures, f32bits(g.mul), f32bits(u.mul), ...(xt.rows > 1 ? [0] : [])];
    this.run(k, params, [xt.buf, st.data, ...(st.scales ? [st.scales] : []), o.buf], grid(Math.ceil(n / gemvRows(sg, bv.rowsPerTeam, bv.split))));
    return true;
  }

  /**
   * Whether rmsnorm over one row of x, as `normed`, may run inside the following int8 GEMV over `w`
   * (self-quantizing q4_0 blocks, kernels/gemv-blocks.ts): a row of w's width, an f32 norm weight.
   */
  private normFusable(normed: GpuTensor, x: GpuTensor, norm: Weight, w: GpuWeight): norm is GpuWeight {
    return x.rows === 1 && this.viaInt8(w) && this.selfQuantizing(w) && norm instanceof GpuWeight && norm.format === "f32" &&
      norm.inFeatures === x.cols && x.cols === w.inFeatures && x.cols % 4 === 0 && normed.cols === x.cols && normed.buf !== x.buf;
  }

  normMatmulStacked(outs: readonly Tensor[], normed: Tensor, x: Tensor, norm: Weight, eps: number, ws: readonly Weight[]): boolean {
    const [xt, ht] = [x as GpuTensor, normed as GpuTensor];
    const st = this.fusable(ws, xt);
    if (!st || !this.normFusable(ht, xt, norm, st.members[0]!)) return false;
    const os = outs as readonly GpuTensor[];
    const rows = st.members.map((w) => w.outFeatures);
    if (os.length !== ws.length || os.some((o, i) => o.cols !== rows[i] || o.buf === xt.buf || o.buf === ht.buf)) return false;
    const w = st.members[0]!;
    const n = rows.reduce((a, b) => a + b, 0);
    const k = fusedGemvBlocksQuantKernel(this.gpu.subgroupMinSize, { stacked: ws.length }, true, this.quantWindow(w.blocks));
    const params = [n, w.inFeatures, 0, w.blocks, f32bits(eps), ...stackedParams(rows, st.members.map((m) => m.mul), f32bits)];
    this.run(k.kernel, params, [xt.buf, norm.parts[0]!.data, ht.buf, st.data, st.scales!, ...os.map((o) => o.buf)], selfQuantGrid(n, k.rowsPerGroup, w.blocks, this.quantWindow(w.blocks), this.quantOnceGroups));
    return true;
  }

  normMatmulQkvRope(q: Tensor, normed: Tensor, x: Tensor, norm: Weight, eps: number, ws: readonly [Weight, Weight, Weight], cache: KVCache, layer: number, pos: number, headDim: number, table: RopeTable): boolean {
    const [qt, xt, ht] = [q as GpuTensor, x as GpuTensor, normed as GpuTensor];
    const c = cache as GpuKVCache;
    const st = this.fusable(ws, xt);
    if (!this.fuseQkvRope || !st || !this.normFusable(ht, xt, norm, st.members[0]!) || c.format !== "f32" || !(table instanceof GpuRopeTable)) return false;
    const [wq, wk, wv] = st.members as [GpuWeight, GpuWeight, GpuWeight];
    const width = c.kvHeads * c.headDim;
    const half = headDim / 2;
    if (headDim !== c.headDim || wk.outFeatures !== width || wv.outFeatures !== width || wq.outFeatures % headDim !== 0 || qt.cols !== wq.outFeatures || half > table.half || qt.buf === xt.buf || qt.buf === ht.buf) return false;
    if (pos + 1 > c.capacity) throw new Error(`KV cache full: ${pos + 1} positions > capacity ${c.capacity}`);
    if (pos + 1 > table.maxPositions) throw new Error(`position ${pos} is beyond the RoPE table (${table.maxPositions})`);
    const n = wq.outFeatures + 2 * width;
    const window = this.quantWindow(wq.blocks);
    const k = qkvRopeGemvKernel(this.gpu.subgroupMinSize, window);
    const params = [n, wq.inFeatures, 0, wq.blocks, f32bits(eps), wq.outFeatures + width, wq.outFeatures, headDim, half, pos, table.half, width, f32bits(wq.mul), f32bits(wk.mul), f32bits(wv.mul)];
    this.run(k.kernel, params, [xt.buf, norm.parts[0]!.data, ht.buf, st.data, st.scales!, qt.buf, c.k[layer]!, c.v[layer]!, table.cos, table.sin], selfQuantGrid(n, k.rowsPerGroup, wq.blocks, window, this.quantOnceGroups));
    return true;
  }

  normMatmulSwiglu(out: Tensor, normed: Tensor, x: Tensor, norm: Weight, eps: number, gate: Weight, up: Weight): boolean {
    const [xt, ht, o] = [x as GpuTensor, normed as GpuTensor, out as GpuTensor];
    const st = this.fusable([gate, up], xt);
    if (!st || !this.normFusable(ht, xt, norm, st.members[0]!)) return false;
    const [g, u] = st.members as [GpuWeight, GpuWeight];
    if (g.outFeatures !== u.outFeatures || o.cols !== g.outFeatures || o.buf === xt.buf || o.buf === ht.buf) return false;
    const n = 2 * g.outFeatures;
    const k = fusedGemvBlocksQuantKernel(this.gpu.subgroupMinSize, "swiglu", true, this.quantWindow(g.blocks));
    const params = [n, g.inFeatures, 0, g.blocks, f32bits(eps), g.outFeatures, f32bits(g.mul), f32bits(u.mul)];
    this.run(k.kernel, params, [xt.buf, norm.parts[0]!.data, ht.buf, st.data, st.scales!, o.buf], selfQuantGrid(n, k.rowsPerGroup, g.blocks, this.quantWindow(g.blocks), this.quantOnceGroups));
    return true;
  }

  /**
   * out += x · wᵀ for 1..GEMV_BATCH_ROWS rows of x (the residual add in the GEMV's store, so no
   * projection round trip), one dispatch per weight part (or per part and row, see batchVariant); false,
   * recording nothing, for more rows or where the int8-activation path would run.
   */
  matmulAdd(out: Tensor, x: Tensor, w: Weight): boolean {
    const xt = x as GpuTensor;
    const o = out as GpuTensor;
    // a RaZeR runs copy: the plain matmul (its runs GEMV) and a separate add
    if (!this.fuse || xt.rows < 1 || xt.rows > GEMV_BATCH_ROWS || !(w instanceof GpuWeight) || w.runs) return false;
    if (xt.cols !== w.inFeatures || o.cols !== w.outFeatures || o.rows < xt.rows) {
      throw new Error(`matmulAdd ${w.name}: x [${xt.rows}, ${xt.cols}] · [${w.shape.join(", ")}]ᵀ -> [${o.rows}, ${o.cols}] do not fit`);
    }
    if (o.buf === xt.buf) throw new Error(`matmulAdd ${w.name}: the output may not share storage with x`);
    const bv = this.batchVariant(w, xt.rows, this.gemvVariantOf(w.format));
    if (!bv) return this.fusedPerRow(xt, [o], (xr, row) => this.matmulAdd(row(o), xr, w));
    const sg = this.gpu.subgroupMinSize;
    if (xt.rows === 1 && this.viaInt8(w)) {
      const k = this.fusedI8(w, "add");
      for (const part of w.parts) this.runI8(k, xt, w, [part.rows, w.inFeatures, part.rowStart, w.blocks], [part.data, part.scales!, o.buf], part.rows);
      return true;
    }
    const k = addGemvKernel(w.format, xMode(w.format, w.inFeatures), sg, bv, xt.rows, w.tiled);
    for (const part of w.parts) {
      const bufs = part.scales ? [xt.buf, part.data, part.scales, o.buf] : [xt.buf, part.data, o.buf];
      const params = [...this.gemvParams(w, part.rows, part.rowStart, w.mul), ...(xt.rows > 1 ? [o.cols] : [])];
      this.run(k, params, bufs, grid(Math.ceil(part.rows / gemvRows(sg, bv.rowsPerTeam, bv.split))));
    }
    return true;
  }

  /**
   * RoPE of q (in place) and of k, and the KV write of rotated k and v at positions pos0.., in one
   * dispatch; k itself is left as it was. False, recording nothing, for an int8 cache.
   */
  ropeKvWrite(q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: number, pos0: number, headDim: number, table: RopeTable): boolean {
    const c = cache as GpuKVCache;
    if (!this.fuse || c.format !== "f32") return false;
    const [qt, kt, vt] = [q as GpuTensor, k as GpuTensor, v as GpuTensor];
    const t = table as GpuRopeTable;
    const width = c.kvHeads * c.headDim;
    const half = headDim / 2;
    if (headDim !== c.headDim || kt.cols !== width || vt.cols !== width || vt.rows !== kt.rows || qt.rows !== kt.rows || qt.cols % headDim !== 0 || half > t.half) {
      throw new Error(`ropeKvWrite: q [${qt.rows}, ${qt.cols}], k [${kt.rows}, ${kt.cols}], v [${vt.rows}, ${vt.cols}] do not fit heads of ${headDim}, a cache of ${c.kvHeads}x${c.headDim} and a table of ${t.half} pairs`);
    }
    if (pos0 + kt.rows > c.capacity) throw new Error(`KV cache full: ${pos0 + kt.rows} positions > capacity ${c.capacity}`);
    if (pos0 + kt.rows > t.maxPositions) throw new Error(`position ${pos0 + kt.rows - 1} is beyond the RoPE table (${t.maxPositions})`);
    const qPairs = (qt.rows * qt.cols) / 2;
    const kPairs = (kt.rows * width) / 2;
    this.run(
      ropeKvWriteKernel(),
      [qPairs, kPairs, qt.cols, width, headDim, half, pos0, t.half],
      [qt.buf, c.k[layer]!, c.v[layer]!, kt.buf, vt.buf, t.cos, t.sin],
      grid(Math.ceil((qPairs + kPairs) / ROPE_KV_GROUP)),
    );
    return true;
  }

  activation(rows: number, cols: number): GpuTensor {
    const bytes = rows * cols * 4;
    if (bytes > this.gpu.maxBindingBytes) {
      throw new Error(`activation [${rows}, ${cols}] needs ${bytes} bytes, more than this GPU binds at once (${this.gpu.maxBindingBytes}); use smaller chunks`);
    }
    return new GpuTensor(rows, cols, this.pool.storage(bytes, `activation [${rows}, ${cols}]`));
  }

  view(t: Tensor, rows: number): GpuTensor {
    const g = t as GpuTensor;
    if (rows > g.rows) throw new Error(`view of ${rows} rows of a ${g.rows}-row tensor`);
    return new GpuTensor(rows, g.cols, g.buf);
  }

  readonly kvFormats: readonly string[] = GPU_KV_FORMATS.filter((f) => f !== "f32");

  /**
   * A row view binds a sub-range of the tensor's buffer, so every kernel works on it unchanged; WebGPU
   * binds storage only at multiples of `rowViewAlign` bytes, which rows of most widths are (a width of
   * 64 f32 values is 256 bytes).
   */
  rowView(t: Tensor, row0: number, rows: number): GpuTensor {
    const g = t as GpuTensor;
    if (!(Number.isInteger(row0) && Number.isInteger(rows) && row0 >= 0 && rows > 0 && row0 + rows <= g.rows)) {
      throw new Error(`rows [${row0}, ${row0 + rows}) of a ${g.rows}-row tensor`);
    }
    const offset = row0 * g.cols * 4;
    if (offset % this.rowViewAlign !== 0) throw new Error(`a row view at byte ${offset} is not a multiple of this GPU's storage alignment (${this.rowViewAlign})`);
    return new GpuTensor(rows, g.cols, this.pool.subrange(g.buf, offset, rows * g.cols * 4));
  }

  get rowViewAlign(): number {
    return this.gpu.device.limits.minStorageBufferOffsetAlignment;
  }

  kvCache(layers: number, kvHeads: number, headDim: number, capacity: number, format = "f32"): GpuKVCache {
    if (!(GPU_KV_FORMATS as readonly string[]).includes(format)) throw new Error(`the webgpu backend stores KV caches as ${GPU_KV_FORMATS.join(", ")}, not "${format}"`);
    const f = format as GpuKvFormat;
    // check the head dim
    if (f === "int8") kvWriteInt8Kernel(headDim);
    if (isKv4(f)) checkKv4HeadDim(f, headDim);
    const words = kvWords(f, headDim);
    const bytes = capacity * kvHeads * words.codes * 4;
    if (bytes > this.gpu.maxBindingBytes) {
      throw new Error(`KV cache of ${capacity} positions needs ${bytes} bytes a layer, more than this GPU binds at once (${this.gpu.maxBindingBytes})`);
    }
    const k: Buf[] = [];
    const v: Buf[] = [];
    const ks: Buf[] = [];
    const vs: Buf[] = [];
    for (let l = 0; l < layers; l++) {
      k.push(this.pool.storage(bytes, `k cache ${l}`));
      v.push(this.pool.storage(bytes, `v cache ${l}`));
      if (words.scales > 0) {
        ks.push(this.pool.storage(capacity * kvHeads * words.scales * 4, `k scales ${l}`));
        vs.push(this.pool.storage(capacity * kvHeads * words.scales * 4, `v scales ${l}`));
      }
    }
    return new GpuKVCache(layers, kvHeads, headDim, capacity, k, v, f, ks, vs);
  }

  kvPool(layers: number, kvHeads: number, headDim: number, capacity: number, slots: number): GpuKvPool | undefined {
    const width = kvHeads * headDim;
    const alignFloats = this.rowViewAlign / 4;
    const slotStride = Math.ceil((capacity * width) / alignFloats) * alignFloats;
    const bytes = slots * slotStride * 4;
    // the batched kernels bind a layer's whole pool at once
    if (bytes > this.gpu.maxBindingBytes || bytes > this.gpu.maxBufferBytes) return undefined;
    const k: Buf[] = [];
    const v: Buf[] = [];
    for (let l = 0; l < layers; l++) {
      k.push(this.pool.storage(bytes, `k pool ${l}`));
      v.push(this.pool.storage(bytes, `v pool ${l}`));
    }
    const sub = (bufs: Buf[], s: number) => bufs.map((b) => this.pool.subrange(b, s * slotStride * 4, capacity * width * 4));
    return new GpuKvPool(slots, capacity, kvHeads, headDim, k, v, slotStride, (slot) =>
      new GpuKVCache(layers, kvHeads, headDim, capacity, sub(k, slot.index), sub(v, slot.index), "f32", [], [], slot));
  }

  /** The pool every cache comes from, checked: the batched kernels reach caches only through one. */
  private poolOf(op: string, caches: readonly KVCache[], positions: readonly number[], rows: number): GpuKvPool {
    if (caches.length !== positions.length || positions.length > rows) throw new Error(`${op}: ${caches.length} caches and ${positions.length} positions for ${rows} rows`);
    const pool = caches[0]?.slot?.pool;
    if (!(pool instanceof GpuKvPool) || caches.some((c) => c.slot?.pool !== pool)) throw new Error(`${op}: the caches must all come from one kvPool`);
    caches.forEach((c, r) => {
      if (!(positions[r]! >= 0 && positions[r]! < c.capacity)) throw new Error(`${op}: row ${r} at position ${positions[r]} is outside its cache (capacity ${c.capacity})`);
    });
    return pool;
  }

  /** Calls `body` for each chunk of at most TABLE_ROWS rows: [first row, rows]. */
  private chunks(n: number, body: (r0: number, rows: number) => void): void {
    for (let r0 = 0; r0 < n; r0 += TABLE_ROWS) body(r0, Math.min(TABLE_ROWS, n - r0));
  }

  /** Rows [r0, r0 + rows) of t as a tensor of their own (a sub-range when r0 > 0). */
  private rowsOf(t: GpuTensor, r0: number, rows: number): GpuTensor {
    if (r0 === 0) return new GpuTensor(rows, t.cols, t.buf);
    return new GpuTensor(rows, t.cols, this.pool.subrange(t.buf, r0 * t.cols * 4, rows * t.cols * 4));
  }

  ropeRows(x: Tensor, headDim: number, positions: readonly number[], table: RopeTable): void {
    const xt = x as GpuTensor;
    const t = table as GpuRopeTable;
    const half = headDim / 2;
    if (positions.length > xt.rows) throw new Error(`ropeRows: ${positions.length} positions for ${xt.rows} rows`);
    if (half > t.half || xt.cols % headDim !== 0) throw new Error(`rope: heads of ${headDim} do not fit rows of ${xt.cols} and a table of ${t.half} pairs`);
    for (const p of positions) if (!(p >= 0 && p < t.maxPositions)) throw new Error(`position ${p} is beyond the RoPE table (${t.maxPositions})`);
    this.chunks(positions.length, (r0, rows) => {
      const pairs = (rows * xt.cols) / 2;
      const params = rowsParams([pairs, xt.cols, headDim, half, t.half], positions.slice(r0, r0 + rows).map((p) => [0, p, 0, 0] as const));
      this.run(ropeRowsKernel(), params, [this.rowsOf(xt, r0, rows).buf, t.cos, t.sin], grid(Math.ceil(pairs / ROWS_GROUP)));
    });
  }

  kvWriteRows(caches: readonly KVCache[], layer: number, k: Tensor, v: Tensor, positions: readonly number[]): void {
    const kt = k as GpuTensor;
    const vt = v as GpuTensor;
    const pool = this.poolOf("kvWriteRows", caches, positions, kt.rows);
    const width = pool.kvHeads * pool.headDim;
    if (kt.cols !== width || vt.cols !== width) throw new Error(`kvWriteRows: rows of ${kt.cols} do not fit the cache's ${width}`);
    this.chunks(positions.length, (r0, rows) => {
      const n = rows * width;
      const table = positions.slice(r0, r0 + rows).map((p, i) => [caches[r0 + i]!.slot!.index, p, 0, 0] as const);
      const bufs = [pool.k[layer]!, pool.v[layer]!, this.rowsOf(kt, r0, rows).buf, this.rowsOf(vt, r0, rows).buf];
      this.run(kvWriteRowsKernel(), rowsParams([n, width, pool.slotStride], table), bufs, grid(Math.ceil(n / ROWS_GROUP)));
    });
  }

  attentionRows(out: Tensor, q: Tensor, caches: readonly KVCache[], layer: number, positions: readonly number[], heads: number): void {
    const qt = q as GpuTensor;
    const o = out as GpuTensor;
    const pool = this.poolOf("attentionRows", caches, positions, qt.rows);
    const d = pool.headDim;
    if (heads % pool.kvHeads !== 0 || qt.cols !== heads * d || o.cols !== heads * d) {
      throw new Error(`attentionRows: q [${qt.rows}, ${qt.cols}] of ${heads} heads does not fit ${pool.kvHeads} kv heads of ${d}`);
    }
    if (o.buf === qt.buf) throw new Error("attentionRows: the output may not share storage with q");
    this.chunks(positions.length, (r0, rows) => {
      // each row is split as `attention` would split it alone, so its numbers are that op's
      const table = positions.slice(r0, r0 + rows).map((p, i) => {
        const splits = attentionSplits(1, heads, p + 1);
        return [caches[r0 + i]!.slot!.index, p, splits, Math.ceil((p + 1) / splits)] as const;
      });
      const maxSplits = Math.max(...table.map((e) => e[2]));
      const partial = this.scratchFor(rows * heads * maxSplits * partialStride(d) * 4);
      const header = [rows, heads, heads / pool.kvHeads, pool.kvHeads * d, qt.cols, maxSplits, pool.slotStride, f32bits(1 / Math.sqrt(d))];
      this.run(attentionRowsPartialKernel(d), rowsParams(header, table), [partial, this.rowsOf(qt, r0, rows).buf, pool.k[layer]!, pool.v[layer]!], grid(rows * heads * maxSplits));
      this.run(attentionRowsCombineKernel(d), rowsParams([rows, heads, maxSplits, o.cols], table), [this.rowsOf(o, r0, rows).buf, partial], grid(rows * heads));
    });
  }

  ropeTable(inv: Float64Array, maxPositions: number): GpuRopeTable {
    const half = inv.length;
    const { cos, sin } = ropeCosSin(inv, maxPositions);
    const up = (a: Float32Array, label: string) => this.pool.upload(new Uint8Array(a.buffer), label);
    return new GpuRopeTable(maxPositions, half, up(cos, "rope cos"), up(sin, "rope sin"));
  }

  embed(out: Tensor, table: Weight, tokens: Int32Array): void {
    const o = out as GpuTensor;
    const w = table as GpuWeight;
    const cols = w.inFeatures;
    if (o.cols !== cols || o.rows < tokens.length) throw new Error(`embed ${w.name}: ${tokens.length} tokens of width ${cols} do not fit [${o.rows}, ${o.cols}]`);
    for (const id of tokens) {
      if (!(id >= 0 && id < w.outFeatures)) throw new Error(`token id ${id} is outside the vocabulary [0, ${w.outFeatures})`);
    }
    const k = embedKernel(w.format, false, w.tiled);
    for (let r0 = 0; r0 < tokens.length; r0 += EMBED_TOKENS) {
      const ids = tokens.subarray(r0, r0 + EMBED_TOKENS);
      for (const part of w.parts) {
        const params = new Uint32Array(8 + ids.length);
        params.set([ids.length, cols, part.rowStart, part.rowStart + part.rows, w.stride, w.blocks, r0, f32bits(w.mul)]);
        params.set(ids, 8);
        const bufs = part.scales ? [o.buf, part.data, part.scales] : [o.buf, part.data];
        this.run(k, params, bufs, grid(Math.ceil((ids.length * cols) / EMBED_GROUP)));
      }
    }
  }

  matmul(out: Tensor, x: Tensor, w: Weight, rows?: number): void {
    const o = out as GpuTensor;
    const xt = x as GpuTensor;
    if (w instanceof GpuSparseWeight) {
      if (this.disposed) throw new Error("this WebGPU backend was disposed");
      const n = rows ?? xt.rows;
      if (xt.cols !== w.inFeatures || o.cols !== w.outFeatures || n > xt.rows || n > o.rows) throw new Error(`matmul ${w.name}: x [${xt.rows}, ${xt.cols}] · [${w.shape.join(", ")}]ᵀ -> [${o.rows}, ${o.cols}] do not fit`);
      const sg = this.gpu.subgroups && this.gpu.subgroupMinSize === 32;
      if (n > 0) recordSparseMatmul(this.recorder, w, xt.buf, o.buf, n, o.cols, sg, this.sparseGemv, this.gpu.device.limits.maxComputeWorkgroupStorageSize);
      return;
    }
    const wt = w as GpuWeight;
    const n = rows ?? xt.rows;
    if (xt.cols !== wt.inFeatures || o.cols !== wt.outFeatures || n > xt.rows || n > o.rows) {
      throw new Error(`matmul ${wt.name}: x [${xt.rows}, ${xt.cols}] · [${wt.shape.join(", ")}]ᵀ -> [${o.rows}, ${o.cols}] (${n} rows) do not fit`);
    }
    if (o.buf === xt.buf) throw new Error(`matmul ${wt.name}: the output may not share storage with x`);
    if (n === 0) return;
    const K = wt.inFeatures;
    if (n > 1 && n <= GEMV_BATCH_ROWS) {
      // a few rows (batched decoding): GEMV beats a 64-row GEMM tile mostly empty, and each row's result
      // is then exactly its single-sequence result; one GEMV over all rows reads the weights once
      const bv = this.batchVariant(wt, n, this.gemvVariantOf(wt.format));
      if (bv) {
        const sg = this.gpu.subgroupMinSize;
        const k = gemvKernel(wt.format, xMode(wt.format, K), sg, bv.rowsPerTeam, bv.split, bv.unroll, bv.pipeline, bv.x, undefined, n, wt.tiled);
        for (const part of wt.parts) {
          const bufs = part.scales ? [xt.buf, part.data, part.scales, o.buf] : [xt.buf, part.data, o.buf];
          this.run(k, [...this.gemvParams(wt, part.rows, part.rowStart, wt.mul), o.cols], bufs, grid(Math.ceil(part.rows / gemvRows(sg, bv.rowsPerTeam, bv.split))));
        }
        return;
      }
      if ((K * 4) % this.rowViewAlign === 0 && (o.cols * 4) % this.rowViewAlign === 0) {
        for (let r = 0; r < n; r++) this.matmul(this.rowView(o, r, 1), this.rowView(xt, r, 1), w);
        return;
      }
    }
    if (n === 1 && wt.runs) {
      // RaZeR's runs copy on int8 x (the "runs-i8" GEMV decode variant, kernels/lane-blocks.ts)
      const [xq, xs] = this.qx.of(xt.buf, K, "planes", this.recorder.dispatches, this.recorder.submissions);
      const { R, S, U } = RAZER_RUNS_GEMV;
      const k = razerRunsGemvKernel(R, S, U, this.gpu.subgroups && this.gpu.subgroupMinSize >= 32);
      for (const part of wt.runs.parts) {
        this.run(k, [part.rows, K, part.rowStart, K / 32, wt.runs.srow, f32bits(wt.runs.mul)], [xq, xs, part.data, part.scales!, o.buf], grid(Math.ceil(part.rows / laneBlocksRows(R, S))));
      }
      this.qx.keep(this.recorder.dispatches);
      return;
    }
    for (const part of wt.parts) {
      const bufs = part.scales ? [xt.buf, part.data, part.scales, o.buf] : [xt.buf, part.data, o.buf];
      if (n === 1 && this.viaInt8(wt) && this.selfQuantizing(wt)) {
        const sg = this.gpu.subgroupMinSize;
        const R = GEMV_BLOCKS_QUANT.rowsPerTeam;
        const window = this.quantWindow(wt.blocks);
        this.run(gemvBlocksQuantKernel(sg, R, GEMV_BLOCKS_QUANT.unroll, undefined, false, window), [part.rows, K, part.rowStart, wt.blocks], [xt.buf, part.data, part.scales!, o.buf], selfQuantGrid(part.rows, gemvRows(sg, R, 1), wt.blocks, window, this.quantOnceGroups));
      } else if (n === 1 && this.viaInt8(wt)) {
        const [xq, xs] = this.qx.of(xt.buf, K, wt.tiled ? (wt.format as BlockFormat) : "planes", this.recorder.dispatches, this.recorder.submissions);
        const sg = this.gpu.subgroupMinSize;
        const R = wt.tiled ? GEMV_I8_ROWS[wt.format as BlockFormat] : GEMV_BLOCKS.rowsPerTeam;
        const S = wt.tiled ? gemvSplit(sg, R) : GEMV_BLOCKS.split;
        const k = wt.tiled ? gemvI8Kernel(wt.format as BlockFormat, sg, R, S, GEMV_I8_UNROLL[wt.format as BlockFormat]) : gemvBlocksI8Kernel(sg);
        this.run(k, [part.rows, K, part.rowStart, wt.blocks], [xq, xs, part.data, part.scales!, o.buf], grid(Math.ceil(part.rows / gemvRows(sg, R, S))));
        this.qx.keep(this.recorder.dispatches);
      } else if (n === 1) {
        const sg = this.gpu.subgroupMinSize;
        const R = this.gemvRowsPerTeam[wt.format];
        const v = gemvVariant(wt.format, sg, R === GEMV_ROWS_PER_TEAM[wt.format] ? {} : { rowsPerTeam: R });
        const k = gemvKernel(wt.format, xMode(wt.format, K), sg, v.rowsPerTeam, v.split, v.unroll, v.pipeline, v.x, undefined, 1, wt.tiled);
        const chunks = Math.ceil(K / chunkElems(wt.format));
        this.run(k, [part.rows, K, chunks, part.rowStart, wt.stride / 4, wt.blocks, f32bits(wt.mul)], bufs, grid(Math.ceil(part.rows / gemvRows(sg, R, v.split))));
      } else if (this.int8Gemm && this.viaInt8(wt) && !wt.tiled) {
        // prefill on int8 x (kernels/gemm-blocks.ts): every row's blocks quantized at once, as planes
        const [xq, xs] = this.qx.of(xt.buf, n * K, "planes", this.recorder.dispatches, this.recorder.submissions);
        const tiles = Math.ceil(part.rows / GEMM_I8_TILE);
        const rowTiles = Math.ceil(n / GEMM_I8_TILE);
        if (tiles > 65535 || rowTiles > 65535) throw new Error(`matmul ${wt.name}: too large for one dispatch`);
        this.run(gemmBlocksI8Kernel(), [n, part.rows, wt.blocks, part.rowStart, o.cols, n * wt.blocks], [xq, xs, part.data, part.scales!, o.buf], [tiles, rowTiles]);
        this.qx.keep(this.recorder.dispatches);
      } else {
        const groups = wt.isBlock ? K / 8 : Math.ceil(K / 8);
        const tiles = Math.ceil(part.rows / GEMM_TILE);
        const rowTiles = Math.ceil(n / GEMM_TILE);
        if (tiles > 65535 || rowTiles > 65535) throw new Error(`matmul ${wt.name}: too large for one dispatch`);
        this.run(gemmKernel(wt.format, wt.tiled), [n, part.rows, K, groups, part.rowStart, o.cols, wt.stride / 4, wt.blocks, f32bits(wt.mul)], bufs, [tiles, rowTiles]);
      }
    }
  }

  addBias(x: Tensor, bias: Weight): void {
    const xt = x as GpuTensor;
    const b = bias as GpuWeight;
    if (b.inFeatures !== xt.cols || b.outFeatures !== 1) throw new Error(`addBias ${b.name}: [${b.shape.join(", ")}] does not fit a row of ${xt.cols}`);
    const n = xt.rows * xt.cols;
    this.run(addBiasKernel(), [n, xt.cols], [xt.buf, b.parts[0]!.data], grid(Math.ceil(n / ELEMENTWISE_GROUP)));
  }

  private norm(o: GpuTensor, x: GpuTensor, xBase: number, count: number, w: GpuWeight, eps: number, group: number): void {
    if (w.inFeatures < group) throw new Error(`rmsnorm ${w.name}: ${w.inFeatures} weights for groups of ${group}`);
    if (count % group !== 0) throw new Error(`rmsnorm: ${count} values are not whole groups of ${group}`);
    const threads = normThreads(group);
    const inPlace = o.buf === x.buf;
    const k = rmsnormKernel(threads, inPlace, group % 4 === 0 && xBase % 4 === 0);
    const wbuf = w.parts[0]!.data;
    const bufs = inPlace ? [o.buf, wbuf] : [o.buf, x.buf, wbuf];
    const groups = count / group;
    this.run(k, [groups, group, xBase, f32bits(eps)], bufs, grid(groups));
  }

  rmsnorm(out: Tensor, x: Tensor, weight: Weight, eps: number, group: number): void {
    const xt = x as GpuTensor;
    this.norm(out as GpuTensor, xt, 0, xt.rows * xt.cols, weight as GpuWeight, eps, group);
  }

  rmsnormRow(out: Tensor, x: Tensor, row: number, weight: Weight, eps: number): void {
    const xt = x as GpuTensor;
    if (!(row >= 0 && row < xt.rows)) throw new Error(`rmsnormRow: row ${row} of a ${xt.rows}-row tensor`);
    this.norm(out as GpuTensor, xt, row * xt.cols, xt.cols, weight as GpuWeight, eps, xt.cols);
  }

  rope(x: Tensor, headDim: number, pos0: number, table: RopeTable): void {
    const xt = x as GpuTensor;
    const t = table as GpuRopeTable;
    const half = headDim / 2;
    if (pos0 + xt.rows > t.maxPositions) throw new Error(`position ${pos0 + xt.rows - 1} is beyond the RoPE table (${t.maxPositions})`);
    if (half > t.half || xt.cols % headDim !== 0) throw new Error(`rope: heads of ${headDim} do not fit rows of ${xt.cols} and a table of ${t.half} pairs`);
    const pairs = (xt.rows * xt.cols) / 2;
    this.run(ropeKernel(), [pairs, xt.cols, headDim, half, pos0, t.half], [xt.buf, t.cos, t.sin], grid(Math.ceil(pairs / ROPE_GROUP)));
  }

  kvWrite(cache: KVCache, layer: number, k: Tensor, v: Tensor, pos0: number): void {
    const c = cache as GpuKVCache;
    const kt = k as GpuTensor;
    const width = c.kvHeads * c.headDim;
    if (pos0 + kt.rows > c.capacity) throw new Error(`KV cache full: ${pos0 + kt.rows} positions > capacity ${c.capacity}`);
    if (kt.cols !== width || (v as GpuTensor).cols !== width) throw new Error(`kvWrite: rows of ${kt.cols} do not fit the cache's ${width}`);
    const n = kt.rows * width;
    if (c.format !== "f32") {
      const items = kt.rows * c.kvHeads;
      const kernel = c.format === "int8" ? kvWriteInt8Kernel(c.headDim) : kvWriteQuant4Kernel(c.format, c.headDim);
      this.run(kernel, [c.kvHeads, pos0, items], [c.k[layer]!, c.kScales[layer]!, kt.buf], grid(items));
      this.run(kernel, [c.kvHeads, pos0, items], [c.v[layer]!, c.vScales[layer]!, (v as GpuTensor).buf], grid(items));
      return;
    }
    this.run(kvWriteKernel(), [n, pos0 * width], [c.k[layer]!, c.v[layer]!, kt.buf, (v as GpuTensor).buf], grid(Math.ceil(n / KV_GROUP)));
  }

  attention(out: Tensor, q: Tensor, cache: KVCache, layer: number, pos0: number, heads: number, window?: { sinks: number; shift: number }): void {
    const c = cache as GpuKVCache;
    const qt = q as GpuTensor;
    const o = out as GpuTensor;
    const d = c.headDim;
    const rows = qt.rows;
    if (heads % c.kvHeads !== 0 || qt.cols !== heads * d || o.cols !== heads * d) {
      throw new Error(`attention: q [${qt.rows}, ${qt.cols}] of ${heads} heads does not fit ${c.kvHeads} kv heads of ${d}`);
    }
    if (pos0 + rows > c.capacity) throw new Error(`attention: positions up to ${pos0 + rows} exceed the cache's ${c.capacity}`);
    if (o.buf === qt.buf) throw new Error("attention: the output may not share storage with q");
    const kv = c.format !== "f32" ? [c.k[layer]!, c.kScales[layer]!, c.v[layer]!, c.vScales[layer]!] : [c.k[layer]!, c.v[layer]!];
    if (this.prefillAttention && rows >= PREFILL_ROWS && !window && prefillAttentionFits(d)) {
      const sg = this.gpu.subgroups && this.gpu.subgroupMinSize >= 8;
      const k = prefillAttentionKernel(d, sg, c.format);
      this.run(k, [rows, heads, heads / c.kvHeads, c.kvHeads * d, qt.cols, o.cols, pos0, f32bits(1 / Math.sqrt(d))], [o.buf, qt.buf, ...kv], [Math.ceil(rows / PREFILL_ROWS), heads]);
      return;
    }
    const maxLen = pos0 + rows;
    const splits = attentionSplits(rows, heads, maxLen);
    const span = Math.ceil(maxLen / splits);
    const partial = this.scratchFor(rows * heads * splits * partialStride(d) * 4);
    const items = rows * heads * splits;
    const extra = window ? [window.sinks, window.shift] : [];
    this.run(
      attentionPartialKernel(d, c.format, window !== undefined),
      [rows, heads, heads / c.kvHeads, c.kvHeads * d, qt.cols, pos0, splits, span, f32bits(1 / Math.sqrt(d)), ...extra],
      [partial, qt.buf, ...kv],
      grid(items),
    );
    this.run(attentionCombineKernel(d), [rows, heads, splits, o.cols], [o.buf, partial], grid(rows * heads));
  }

  attentionWindow(out: Tensor, q: Tensor, cache: KVCache, layer: number, pos: number, heads: number, sinks: number, window: number): void {
    if ((q as GpuTensor).rows !== 1) throw new Error(`attentionWindow: one query row, got ${(q as GpuTensor).rows}`);
    if (!(sinks >= 0 && window >= 1 && sinks + window < pos + 1)) throw new Error(`attentionWindow: sinks ${sinks} + window ${window} must be fewer than the ${pos + 1} positions`);
    // the kernel walks a list of sinks + window entries as if they were positions 0..; entry j >= sinks maps to j + shift
    this.attention(out, q, cache, layer, sinks + window - 1, heads, { sinks, shift: pos + 1 - window - sinks });
  }

  /** The attention split buffer, grown as needed (old ones stay until dispose: pending work may use them). */
  private scratchFor(bytes: number): Buf {
    if (!this.scratch || this.scratch.size < bytes) this.scratch = this.pool.storage(Math.max(bytes, 1 << 16), "attention partials");
    return this.scratch;
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    this.binary(addKernel, out, a, b);
  }

  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    this.binary(swigluKernel, out, gate, up);
  }

  private binary(make: (aliasA: boolean, aliasB: boolean) => Kernel, out: Tensor, a: Tensor, b: Tensor): void {
    const o = out as GpuTensor;
    const at = a as GpuTensor;
    const bt = b as GpuTensor;
    const n = o.rows * o.cols;
    if (at.rows * at.cols < n || bt.rows * bt.cols < n) throw new Error(`elementwise: inputs of ${at.rows * at.cols} and ${bt.rows * bt.cols} values for ${n} outputs`);
    const aliasA = at.buf === o.buf;
    const aliasB = bt.buf === o.buf;
    const bufs = [o.buf, ...(aliasA ? [] : [at.buf]), ...(aliasB ? [] : [bt.buf])];
    this.run(make(aliasA, aliasB), [n], bufs, grid(Math.ceil(n / ELEMENTWISE_GROUP)));
  }

  async read(t: Tensor, row = 0, rows = t.rows - row): Promise<Float32Array> {
    const g = t as GpuTensor;
    if (!(Number.isInteger(row) && Number.isInteger(rows) && row >= 0 && rows >= 0 && row + rows <= g.rows)) {
      throw new Error(`read rows [${row}, ${row + rows}) of a ${g.rows}-row tensor`);
    }
    if (rows === 0) return new Float32Array(0);
    return new Float32Array(await this.recorder.read(g.buf.buffer, (g.buf.offset ?? 0) + row * g.cols * 4, rows * g.cols * 4));
  }

  async argmax(logits: Tensor): Promise<number> {
    this.dispatchArgmax(logits);
    return new Uint32Array(await this.recorder.read(this.result.buffer, 0, 4))[0]!;
  }

  /** Two scratch buffers of a word per workgroup of the split argmax and sampling kernels. */
  private parts(): [Buf, Buf] {
    const n = Math.max(ARGMAX_PARTS, SAMPLE_PARTS * SAMPLE_ROWS) * 4;
    return (this.splitParts ??= [this.pool.storage(n, "split parts a"), this.pool.storage(n, "split parts b")]);
  }

  private dispatchArgmax(logits: Tensor, out = this.result, row = (logits as GpuTensor).rows - 1): void {
    const g = logits as GpuTensor;
    if (g.rows === 0 || g.cols === 0) throw new Error("argmax of an empty tensor");
    if (g.cols >= ARGMAX_SPLIT_MIN && g.cols % 4 === 0) {
      // a vocabulary row: ARGMAX_PARTS workgroups, then one over their results
      const [pv, pi] = this.parts();
      this.run(argmaxPartsKernel(), [g.cols, row * g.cols, Math.ceil(g.cols / 4 / ARGMAX_PARTS)], [pv, pi, g.buf], [ARGMAX_PARTS, 1]);
      this.run(argmaxFinalKernel(), [ARGMAX_PARTS], [out, pv, pi], [1, 1]);
      return;
    }
    this.run(argmaxKernel(g.cols % 4 === 0), [g.cols, row * g.cols], [out, g.buf], [1, 1]);
  }

  pickRows(logits: Tensor, picks: readonly ({ params: SampleParams; uniform: number } | undefined)[]): Promise<number[]> {
    return this.pickInto(logits, picks).ids;
  }

  pickRowsAhead(logits: Tensor, picks: readonly ({ params: SampleParams; uniform: number } | undefined)[]): GpuPickedRows {
    return this.pickInto(logits, picks);
  }

  private pickInto(logits: Tensor, picks: readonly ({ params: SampleParams; uniform: number } | undefined)[]): GpuPickedRows {
    const g = logits as GpuTensor;
    if (picks.length === 0 || picks.length > g.rows) return { rows: 0, ids: Promise.reject(new Error(`pickRows: ${picks.length} picks for ${g.rows} rows`)), buf: this.result };
    // row r's id lands in its own bindable slot (a storage-offset alignment apart); one read brings them all.
    // One buffer serves consecutive pipelined steps: step t + 1's embedPickedRows reads it before its own
    // picks overwrite it, and step t's readback copy was recorded before both (queue order)
    const stride = this.rowViewAlign;
    if (!this.rowResults || this.rowResults.size < picks.length * stride) this.rowResults = this.pool.storage(Math.max(picks.length, 8) * stride, "picked rows");
    const results = this.rowResults;
    if (this.splitSampleable(g, picks)) {
      // every row draws by temperature (and min-p): the rows' draws in three dispatches
      this.dispatchSplitSample(g, 0, picks.map((p) => ({ ...p!.params, uniform: p!.uniform })), results, stride / 4);
    } else picks.forEach((pick, r) => {
      const slot = this.pool.subrange(results, r * stride, 16);
      if (pick) this.dispatchSample(logits, pick.params, pick.uniform, slot, 0, r);
      else this.dispatchArgmax(logits, slot, r);
    });
    const ids = this.recorder.read(results.buffer, 0, picks.length * stride).then((b) => {
      const words = new Uint32Array(b);
      return picks.map((_, r) => this.sampledToken(words[(r * stride) / 4]!));
    });
    // a step picked ahead of a stop may never be awaited; its failure surfaces at the next read instead
    ids.catch(() => {});
    return { rows: picks.length, ids, buf: results };
  }

  embedPickedRows(out: Tensor, table: Weight, picked: PickedRows, rows: readonly number[]): void {
    const o = out as GpuTensor;
    const w = table as GpuWeight;
    const p = picked as GpuPickedRows;
    const cols = w.inFeatures;
    if (o.cols !== cols || o.rows < rows.length) throw new Error(`embed ${w.name}: ${rows.length} tokens of width ${cols} do not fit [${o.rows}, ${o.cols}]`);
    if (rows.length > EMBED_TOKENS) throw new Error(`embedPickedRows: at most ${EMBED_TOKENS} rows, got ${rows.length}`);
    for (const r of rows) if (!(Number.isInteger(r) && r >= 0 && r < p.rows)) throw new Error(`embedPickedRows: row ${r} of ${p.rows} picked rows`);
    const k = embedRowsKernel(w.format, this.rowViewAlign / 4, w.tiled);
    for (const part of w.parts) {
      const params = new Uint32Array(8 + rows.length);
      params.set([rows.length, cols, part.rowStart, part.rowStart + part.rows, w.stride, w.blocks, 0, f32bits(w.mul)]);
      params.set(rows, 8);
      const bufs = part.scales ? [o.buf, part.data, part.scales, p.buf] : [o.buf, part.data, p.buf];
      this.run(k, params, bufs, grid(Math.ceil((rows.length * cols) / EMBED_GROUP)));
    }
  }

  pickAhead(logits: Tensor, sample?: { params: SampleParams; uniform: number }): PickedToken {
    // one slot suffices: step t + 1's embed reads it, and its own pick overwrites it, after the copy
    // that brings step t's id back, in queue order
    if (sample) this.dispatchSample(logits, sample.params, sample.uniform, this.result, 0);
    else this.dispatchArgmax(logits);
    const id = this.recorder.read(this.result.buffer, 0, 4).then((b) => this.sampledToken(new Uint32Array(b)[0]!));
    // a step picked ahead of a stop is never awaited; its failure surfaces at the next read instead
    id.catch(() => {});
    return { id };
  }

  embedPicked(out: Tensor, table: Weight, _token: PickedToken): void {
    const o = out as GpuTensor;
    const w = table as GpuWeight;
    const cols = w.inFeatures;
    if (o.cols !== cols || o.rows < 1) throw new Error(`embed ${w.name}: a token of width ${cols} does not fit [${o.rows}, ${o.cols}]`);
    const k = embedKernel(w.format, true, w.tiled);
    for (const part of w.parts) {
      const params = [1, cols, part.rowStart, part.rowStart + part.rows, w.stride, w.blocks, 0, f32bits(w.mul)];
      const bufs = part.scales ? [o.buf, part.data, part.scales, this.result] : [o.buf, part.data, this.result];
      this.run(k, params, bufs, grid(Math.ceil(cols / EMBED_GROUP)));
    }
  }

  async sample(logits: Tensor, params: SampleParams, uniform: number): Promise<number> {
    this.dispatchSample(logits, params, uniform, this.result, 0);
    return this.sampledToken(new Uint32Array(await this.recorder.read(this.result.buffer, 0, 4))[0]!);
  }

  /**
   * `sample`, plus the kept set the kernel drew from (kept[i] is 1 when token i may be drawn): for tests
   * that compare it with the CPU's `keptTokens`.
   */
  async sampleKept(logits: Tensor, params: SampleParams, uniform: number): Promise<{ token: number; kept: Uint32Array }> {
    const n = (logits as GpuTensor).cols;
    const out = this.pool.storage((n + 1) * 4, "sample kept mask");
    try {
      this.dispatchSample(logits, params, uniform, out, 1);
      const words = new Uint32Array(await this.recorder.read(out.buffer, 0, (n + 1) * 4));
      return { token: this.sampledToken(words[0]!), kept: words.subarray(1) };
    } finally {
      this.pool.destroy(out);
    }
  }

  private dispatchSample(logits: Tensor, o: SampleParams, uniform: number, out: Buf, mode: number, row = (logits as GpuTensor).rows - 1): void {
    const g = logits as GpuTensor;
    if (g.rows === 0 || g.cols === 0) throw new Error("sample of an empty tensor");
    checkSample(o, uniform);
    const topK = Math.min(o.topK, g.cols);
    if (mode === 0 && this.splitSampleable(g, [{ params: o }])) {
      this.dispatchSplitSample(g, row, [{ ...o, uniform }], out, 0);
      return;
    }
    const params = [g.cols, row * g.cols, topK, mode, f32bits(o.temperature), f32bits(o.topP), f32bits(o.minP), f32bits(uniform)];
    this.run(sampleKernel(), params, [out, g.buf], [1, 1]);
  }

  /** Whether draws from these picks over `logits` take kernels/sample-split.ts: temperature (and min-p) only, over a vocabulary row. */
  private splitSampleable(logits: GpuTensor, picks: readonly ({ params: SampleParams } | undefined)[]): boolean {
    return logits.cols >= ARGMAX_SPLIT_MIN && picks.length <= SAMPLE_ROWS &&
      picks.every((p) => p !== undefined && (p.params.topK === 0 || p.params.topK >= logits.cols) && p.params.topP >= 1);
  }

  /**
   * Draws for logits rows row0.. (one a draw) by temperature and min-p over many workgroups: three
   * dispatches whatever the number of rows; row r's id lands in out[r · stride] (words).
   */
  private dispatchSplitSample(g: GpuTensor, row0: number, draws: readonly (SampleParams & { uniform: number })[], out: Buf, stride: number): void {
    for (const d of draws) checkSample(d, d.uniform);
    const [keys, sums] = this.parts();
    const per = (f: (d: SampleParams & { uniform: number }) => number) => Array.from({ length: SAMPLE_ROWS }, (_, r) => f32bits(r < draws.length ? f(draws[r]!) : 1));
    const params = [g.cols, row0 * g.cols, Math.ceil(g.cols / SAMPLE_PARTS), stride, ...per((d) => d.temperature), ...per((d) => d.minP), ...per((d) => d.uniform)];
    const rows = draws.length;
    this.run(sampleMaxKernel(), params, [keys, g.buf], [SAMPLE_PARTS, rows]);
    this.run(sampleSumKernel(), params, [sums, keys, g.buf], [SAMPLE_PARTS, rows]);
    this.run(sampleWalkKernel(), params, [out, sums, keys, g.buf], [1, rows]);
  }

  private sampledToken(id: number): number {
    if (id === 0xffffffff) throw new RangeError("no token is left to sample from (top-p 0 keeps none)");
    return id;
  }

  /** GPU time per kernel since creation or the last `resetProfile` (needs `{ profile: true }`). */
  async profile(): Promise<KernelTime[]> {
    return this.recorder.profile();
  }

  resetProfile(): void {
    this.recorder.resetProfile();
  }

  /** Submits recorded work and waits until the GPU has finished it. */
  async finish(): Promise<void> {
    await this.recorder.idle();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.recorder.destroy();
    this.pool.destroyAll();
    this.gpu.device.destroy();
  }
}

/** Throws a RangeError naming the first sampling parameter out of range. */
function checkSample(o: SampleParams, uniform: number): void {
  if (!(o.temperature > 0 && Number.isFinite(o.temperature))) throw new RangeError(`sample: temperature must be positive, got ${o.temperature}`);
  if (!(Number.isInteger(o.topK) && o.topK >= 0)) throw new RangeError(`sample: topK must be a non-negative integer, got ${o.topK}`);
  if (!(o.topP >= 0 && o.topP <= 1)) throw new RangeError(`sample: topP must be in [0, 1], got ${o.topP}`);
  if (!(o.minP >= 0 && o.minP <= 1)) throw new RangeError(`sample: minP must be in [0, 1], got ${o.minP}`);
  if (!(uniform >= 0 && uniform < 1)) throw new RangeError(`sample: uniform must be in [0, 1), got ${uniform}`);
}
