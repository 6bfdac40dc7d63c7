/**
 * out[r, o] = sum_i x[r, i] * w[o, i] for every weight format.
 *
 * GEMV (one row, the decode step) should stream the weight once at DRAM bandwidth; what it does for that:
 * - A team of threads (32, or the subgroup if smaller) loads 16 bytes a lane, 512 contiguous bytes a load,
 *   U such loads per row before it computes (U = `unroll`), and optionally the next step's loads before
 *   it computes the current one (`pipeline`), to keep more bytes in flight per team.
 * - x is read in the tile order of weights.ts: lane l takes x vec4 l + 32v of the tile, so x loads are
 *   512 contiguous bytes too (in the file's order a q4_0 lane's x is one 128-byte line per lane).
 * - R rows share each x load, and S teams split a row group's K (S = `split`), so sharing x does not cut
 *   the number of teams; their sums meet in workgroup memory.
 * - x comes straight from the storage buffer (`x` = "global", each team loads its own through L1), or is
 *   staged once per K window in workgroup memory for all teams of the workgroup ("shared"; "shared-f16"
 *   stores it as f16 pairs, which halves the x bytes every lane reads for each of its weight loads).
 * - q8_0/q4_0 decode without int-to-float conversions (weights.ts, `nib4` / `i8f`).
 * Team sums: subgroup shuffles, or a workgroup-memory tree without subgroups. Measured on an H200
 * (docs/results/gpu-gemv-h200-after.txt, one long process): 8192x8192 f32 96%, f16 78%, q8_0 56%, q4_0
 * 35% of copy bandwidth; the 14336-wide shapes far below, a figure in doubt (docs/performance.md) that
 * bench/gpu-gemv-sweep.ts re-measures one process per variant.
 * A GEMV may serve up to 8 rows of x (`batch`, batched decoding): each weight load feeds every row, and
 * each row's sum keeps the one-row kernel's order, so rows equal one-row GEMVs bit for bit.
 *
 * GEMM (prefill) tiles 64 rows x 64 output features per workgroup, steps K by 32 through workgroup
 * memory, and each of 256 threads accumulates a 4 x 4 block. Weights are decoded to f32 in groups of 8
 * while the tile is loaded, so quantized weights cost no extra passes.
 */
import { isPackedDType } from "../../../tensor/dtype.js";
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";
import { DECODE_HELPERS, SCALE_FN, type GpuFormat as DType, type GpuWeight } from "../weights.js";
import { packedTile } from "../packed-weights.js";
import { gemvDecodeOf, packedGemv, packedGroupLoader } from "./packed.js";

const GEMV_THREADS = 256;

/** Threads sharing weight rows in the GEMV for subgroup width `sg` (1: no subgroups). */
export function gemvTeam(sg: number): number {
  return sg > 1 ? Math.min(sg, 32) : 32;
}

/**
 * The GEMV's defaults, one table per parameter: a format absent from GEMV_SPLIT takes gemvSplit's rule.
 * Defaults here are the variants with the least total time over 8192x8192, 4096x14336 and 14336x4096 on
 * an H200 (docs/results/gpu-gemv-h200-after.txt); bench/gpu-gemv-sweep.ts times the alternatives, each
 * in its own process, and is what to set them from.
 */
export const GEMV_ROWS_PER_TEAM: Record<DType, number> = {
  f32: 2, f16: 2, bf16: 2, q8_0: 4, q4_0: 2,
  // packed formats (not yet timed on a GPU): as q4_0 for the 4-bit ones, as q8_0 for int8
  int8: 4, "int4-asym": 2, fp4: 2, nf4: 2, razer: 2, nvfp4: 2, "nvfp4-razer": 2,
};

/** Teams splitting the K of one row group (a power of two dividing the workgroup's teams), where not gemvSplit's rule. */
export const GEMV_SPLIT: Partial<Record<DType, number>> = {};

/** 16-byte weight loads per lane and row that a GEMV team issues before it computes, per format. */
export const GEMV_UNROLL: Record<DType, number> = {
  f32: 2, f16: 2, bf16: 2, q8_0: 1, q4_0: 1,
  int8: 1, "int4-asym": 1, fp4: 1, nf4: 1, razer: 1, nvfp4: 1, "nvfp4-razer": 1,
};

/**
 * Whether the GEMV loads the next step's weights before computing the current one, per format. Off: the
 * pipelined variant passes the tests but has not been timed on a GPU yet (bench it before turning it on).
 */
export const GEMV_PIPELINE: Record<DType, boolean> = {
  f32: false, f16: false, bf16: false, q8_0: false, q4_0: false,
  int8: false, "int4-asym": false, fp4: false, nf4: false, razer: false, nvfp4: false, "nvfp4-razer": false,
};

/**
 * Where the GEMV reads x: "global" (each team from the storage buffer, through L1), "shared" (staged in
 * workgroup memory once per K window for all teams of a workgroup), "shared-f16" (staged as f16: x is
 * rounded to f16, |x| must stay below 65504; see the README for the bound). Untimed alternatives: global.
 */
export const GEMV_X: Record<DType, GemvX> = {
  f32: "global", f16: "global", bf16: "global", q8_0: "global", q4_0: "global",
  int8: "global", "int4-asym": "global", fp4: "global", nf4: "global", razer: "global", nvfp4: "global", "nvfp4-razer": "global",
};

/** Most x rows one GEMV dispatch serves (batched decoding: one row per sequence). */
export const GEMV_MAX_BATCH = 8;

/**
 * Weight rows per team of a GEMV over several x rows (batch B > 1), per format. A lane holds R x B sums,
 * so R stays small; it also sets how many teams share each x load (x bytes read per weight byte fall as R
 * grows) and the workgroups of a small matrix (256 / 32 / S x R rows each). f16 and q4_0: 4, from
 * bench/gpu-batch-gemv.ts on an H200 at 8 rows (R = 1 / 2 / 4, µs: q4_0 2048x8192 121 / 104 / 96,
 * 128256x2048 430 / 403 / 364; f16 2048x8192 107 / 96 / 84; only q4_0 2048x2048 preferred R = 1, 15 vs
 * 19 µs; docs/results/session4/gpu-batch-gemv-h200.txt). The rest: 2, not measured.
 */
export const GEMV_BATCH_ROWS_PER_TEAM: Record<DType, number> = {
  f32: 2, f16: 4, bf16: 2, q8_0: 2, q4_0: 4,
  int8: 2, "int4-asym": 2, fp4: 2, nf4: 2, razer: 2, nvfp4: 2, "nvfp4-razer": 2,
};

/**
 * The variant of a GEMV over several x rows whose rows equal the one-row variant `single` bit for bit:
 * split and unroll fix the order of each row's sum, so they stay; R becomes `rowsPerTeam`; x is read from
 * global memory (staged f32 x holds the same values, so "shared" agrees too). Undefined for x staged as f16
 * (the one-row kernel rounds x there): such a format keeps one GEMV per row.
 */
export function gemvBatchVariant(single: GemvVariant, rowsPerTeam: number): GemvVariant | undefined {
  if (single.x === "shared-f16") return undefined;
  return { ...single, rowsPerTeam, x: "global" };
}

/**
 * Teams that split the K of one row group by default: the largest power of two dividing R (so R rows
 * share x without fewer teams in flight), at most the teams of a workgroup.
 */
export function gemvSplit(sg: number, rowsPerTeam: number): number {
  const teams = GEMV_THREADS / gemvTeam(sg);
  let s = 1;
  while (rowsPerTeam % (2 * s) === 0 && 2 * s <= teams) s *= 2;
  return s;
}

/** Output rows of one GEMV workgroup. */
export function gemvRows(sg: number, rowsPerTeam: number, split = gemvSplit(sg, rowsPerTeam)): number {
  return (GEMV_THREADS / gemvTeam(sg) / split) * rowsPerTeam;
}

/** Where the GEMV reads x from (see GEMV_X). */
export type GemvX = "global" | "shared" | "shared-f16";
export const GEMV_XS: readonly GemvX[] = ["global", "shared", "shared-f16"];

/** One GEMV variant; see the header. */
export interface GemvVariant {
  rowsPerTeam: number;
  split: number;
  unroll: number;
  pipeline: boolean;
  x: GemvX;
}

/** The default variant of a format for subgroup width `sg`, with `over` replacing any field (split follows R unless given). */
export function gemvVariant(format: DType, sg: number, over: Partial<GemvVariant> = {}): GemvVariant {
  const rowsPerTeam = over.rowsPerTeam ?? GEMV_ROWS_PER_TEAM[format];
  const table = over.rowsPerTeam === undefined ? GEMV_SPLIT[format] : undefined;
  const teams = GEMV_THREADS / gemvTeam(sg);
  return {
    rowsPerTeam,
    split: over.split ?? (table !== undefined && teams % table === 0 ? table : gemvSplit(sg, rowsPerTeam)),
    unroll: over.unroll ?? GEMV_UNROLL[format],
    pipeline: over.pipeline ?? GEMV_PIPELINE[format],
    x: over.x ?? GEMV_X[format],
  };
}

/** A variant as the bench and the tests name it: "R2 S2 U1", plus " pipe" and the x mode when not global. */
export function gemvVariantName(v: GemvVariant): string {
  return `R${v.rowsPerTeam} S${v.split} U${v.unroll}${v.pipeline ? " pipe" : ""}${v.x === "global" ? "" : ` ${v.x}`}`;
}

/** Parses gemvVariantName's form (fields in any order; R is required, S defaults to gemvSplit's rule, U to 1). */
export function parseGemvVariant(text: string, sg: number): GemvVariant {
  const v: Partial<GemvVariant> = { unroll: 1, pipeline: false, x: "global" };
  for (const t of text.trim().split(/[\s_]+/)) {
    const m = /^([RSU])(\d+)$/.exec(t);
    if (m) v[({ R: "rowsPerTeam", S: "split", U: "unroll" } as const)[m[1] as "R" | "S" | "U"]] = Number(m[2]);
    else if (t === "pipe") v.pipeline = true;
    else if ((GEMV_XS as readonly string[]).includes(t)) v.x = t as GemvX;
    else throw new Error(`GEMV variant "${text}": "${t}" is not R<n>, S<n>, U<n>, pipe or one of ${GEMV_XS.join(", ")}`);
  }
  if (v.rowsPerTeam === undefined) throw new Error(`GEMV variant "${text}" names no R<rows per team>`);
  return { ...(v as GemvVariant), split: v.split ?? gemvSplit(sg, v.rowsPerTeam) };
}

/** Bytes of workgroup memory a GEMV variant of `batch` x rows declares (x window and team sums). */
export function gemvWorkgroupBytes(format: DType, sg: number, v: GemvVariant, batch = 1): number {
  const team = gemvTeam(sg);
  // without subgroups a batch reduces its x rows one after another through one array
  const red = sg > 1 ? (v.split > 1 ? (GEMV_THREADS / team) * v.rowsPerTeam * batch : 0) : GEMV_THREADS * v.rowsPerTeam;
  const window = v.x === "global" ? 0 : team * v.unroll * v.split * gemvFormat(format, true).xv * (v.x === "shared" ? 16 : 8);
  return 4 * red + window;
}

/** Workgroup memory every device offers (WebGPU's default limit); the backend's defaults must fit it. */
export const GEMV_PORTABLE_WORKGROUP_BYTES = 16384;

/** Weights one 16-byte load covers. */
export function chunkElems(format: DType): number {
  if (isPackedDType(format)) return packedTile(format) === 1024 ? 32 : 16;
  return { f32: 4, f16: 8, bf16: 8, q8_0: 16, q4_0: 32 }[format];
}

/** How x is read: whole vec4s, vec4s with a bound, or guarded scalars (K not a multiple of 4). */
export type XMode = "exact" | "vec4" | "scalar";

export function xMode(format: DType, K: number): XMode {
  // packed rows are padded to whole tiles, and x past K must read as 0 there
  if (K % (isPackedDType(format) ? packedTile(format) : chunkElems(format)) === 0) return "exact";
  return K % 4 === 0 ? "vec4" : "scalar";
}

function xLoader(mode: XMode, batched = false): string {
  if (batched) {
    // x row b starts at element xb = b * k (in the binding's elements: vec4s, or f32s for "scalar")
    if (mode === "exact") return "fn xload(j: u32, xb: u32) -> vec4<f32> { return x[xb + j]; }";
    if (mode === "vec4") return "fn xload(j: u32, xb: u32) -> vec4<f32> { if (j < p.k / 4u) { return x[xb + j]; } return vec4<f32>(0.0); }";
    return `fn xs(i: u32, xb: u32) -> f32 { return select(0.0, x[xb + min(i, p.k - 1u)], i < p.k); }
fn xload(j: u32, xb: u32) -> vec4<f32> { let i = 4u * j; return vec4<f32>(xs(i, xb), xs(i + 1u, xb), xs(i + 2u, xb), xs(i + 3u, xb)); }`;
  }
  if (mode === "exact") return "fn xload(j: u32) -> vec4<f32> { return x[j]; }";
  if (mode === "vec4") return "fn xload(j: u32) -> vec4<f32> { if (j < p.k / 4u) { return x[j]; } return vec4<f32>(0.0); }";
  return `fn xs(i: u32) -> f32 { return select(0.0, x[min(i, p.k - 1u)], i < p.k); }
fn xload(j: u32) -> vec4<f32> { let i = 4u * j; return vec4<f32>(xs(i), xs(i + 1u), xs(i + 2u), xs(i + 3u)); }`;
}

const isBlock = (f: DType) => f === "q8_0" || f === "q4_0";
/** Formats whose weights come with a scale binding. */
const hasScales = (f: DType) => isBlock(f) || isPackedDType(f);

/**
 * How the GEMV walks one format's rows. A slot is one 16-byte load of a lane; slots of whole tiles use
 * the tile order (x vec4 l + 32v), the rest of a row the file's order (x vec4s XV*s ..). WGSL pieces:
 * `slots` a row, `tileSlots` of them in whole tiles, `rowVec4s` (row stride of w), and for block formats
 * the scale binding's element type, its row stride `scaleRow` (in those elements) and the remainder's block.
 */
interface GemvFormat {
  xv: number;
  slots: string;
  tileSlots: string;
  rowVec4s: string;
  scaleType?: string;
  scaleRow?: string;
  restBlock?: string;
  /** WGSL of slot `slot`'s scales for the row whose scales start at `c` (default: element slot / 8). */
  scaleAt?: (c: string, slot: string) => string;
  /** WGSL of the output from row sum `acc` of part row `row` (default: acc). */
  post?: (acc: string, row: string) => string;
  /** `fn tdot(q, [c,] x0..) -> f32` (a tile slot), `fn rdot(q, [scale,] x0..) -> f32` (a rest slot), `fn rscale(e) -> f32`. */
  fns: string;
  /** WGSL first in the entry point (packed decode variants' workgroup tables). */
  prologue?: string;
}

function gemvFormat(format: DType, tiled: boolean): GemvFormat {
  if (isPackedDType(format)) return packedGemv(format);
  const xc = (n: number) => Array.from({ length: n }, (_, v) => `x${v}: vec4<f32>`).join(", ");
  switch (format) {
    case "f32":
      return {
        xv: 1, slots: "p.chunks", tileSlots: "p.chunks", rowVec4s: "p.stride4",
        fns: `fn tdot(q: vec4<u32>, ${xc(1)}) -> f32 { return dot(bitcast<vec4<f32>>(q), x0); }`,
      };
    case "f16":
    case "bf16": {
      const d = format === "f16" ? "unpack2x16float" : "bf2";
      return {
        xv: 2, slots: "p.chunks", tileSlots: "((p.k >> 8u) * 32u)", rowVec4s: "p.stride4",
        fns: `fn tdot(q: vec4<u32>, ${xc(2)}) -> f32 {
  return dot(vec4<f32>(${d}(q.x), ${d}(q.y)), x0) + dot(vec4<f32>(${d}(q.z), ${d}(q.w)), x1);
}
fn rdot(q: vec4<u32>, ${xc(2)}) -> f32 { return tdot(q, x0, x1); }`,
      };
    }
    case "q8_0":
      return {
        xv: 4, slots: "(2u * p.blocks)", tileSlots: "((p.blocks >> 4u) * 32u)", rowVec4s: "(2u * p.blocks)",
        scaleType: "vec2<u32>", scaleRow: "(((p.blocks + 7u) >> 3u) * 2u)", restBlock: "(s >> 1u)",
        fns: `fn tdot(q: vec4<u32>, c: vec2<u32>, ${xc(4)}) -> f32 {
  let a = unpack2x16float(c.x);
  let b = unpack2x16float(c.y);
  return a.x * dot(i8f(q.x), x0) + a.y * dot(i8f(q.y), x1) + b.x * dot(i8f(q.z), x2) + b.y * dot(i8f(q.w), x3);
}
fn rdot(q: vec4<u32>, d: f32, ${xc(4)}) -> f32 {
  return d * (dot(i8f(q.x), x0) + dot(i8f(q.y), x1) + dot(i8f(q.z), x2) + dot(i8f(q.w), x3));
}
fn rscale(e: u32) -> f32 { return unpack2x16float(sc[e >> 2u][(e >> 1u) & 1u])[e & 1u]; }`,
      };
    case "q4_0":
      return {
        xv: 8, slots: "p.blocks", tileSlots: tiled ? "((p.blocks >> 5u) * 32u)" : "0u", rowVec4s: "p.blocks",
        scaleType: "vec4<u32>", scaleRow: "((p.blocks + 7u) >> 3u)", restBlock: "s",
        fns: `fn tdot(q: vec4<u32>, c: vec4<u32>, ${xc(8)}) -> f32 {
  let a = unpack2x16float(c.x);
  let b = unpack2x16float(c.y);
  let e = unpack2x16float(c.z);
  let f = unpack2x16float(c.w);
  return a.x * dot(nib4(q.x), x0) + a.y * dot(nib4(q.x >> 16u), x1)
       + b.x * dot(nib4(q.y), x2) + b.y * dot(nib4(q.y >> 16u), x3)
       + e.x * dot(nib4(q.z), x4) + e.y * dot(nib4(q.z >> 16u), x5)
       + f.x * dot(nib4(q.w), x6) + f.y * dot(nib4(q.w >> 16u), x7);
}
// the file's order: bits 0-15 of word j are elements 4j, 4j+16, 4j+1, 4j+17; bits 16-31 the next two pairs
fn rword(u: u32, a: vec4<f32>, b: vec4<f32>) -> f32 {
  return dot(nib4(u), vec4<f32>(a.x, b.x, a.y, b.y)) + dot(nib4(u >> 16u), vec4<f32>(a.z, b.z, a.w, b.w));
}
fn rdot(q: vec4<u32>, d: f32, ${xc(8)}) -> f32 {
  return d * (rword(q.x, x0, x4) + rword(q.y, x1, x5) + rword(q.z, x2, x6) + rword(q.w, x3, x7));
}
fn rscale(e: u32) -> f32 { return unpack2x16float(sc[e >> 3u][(e >> 1u) & 3u])[e & 1u]; }`,
      };
  }
}

/**
 * Hooks for fused GEMVs (kernels/gemv-fused.ts), so they reuse this skeleton rather than copy it. A team
 * row r (0..p.n) reads weight row `row(r)`, and `store` replaces the default `out[p.o0 + r] = sum` with
 * its own epilogue. Both see WGSL; `key` names the variant in the kernel cache.
 */
export interface GemvHooks {
  key: string;
  /** Extra fields of the parameter struct P (after `mul`), e.g. ", half: u32". */
  params?: string;
  /** Extra WGSL declarations: bindings after `out` (numbered from `firstBinding`), helper functions; `batch`: the kernel's x rows (absent: 1). */
  decls?: (firstBinding: number, batch?: number) => string;
  /** Kinds of the bindings `decls` declares. */
  bindings?: readonly ("read" | "write")[];
  /** WGSL of the weight row that team row `r` (a u32 expression below p.n) reads. */
  row?: (r: string) => string;
  /**
   * WGSL statements storing a team's sums: sums[j] (after the format's post) of team row rows[j], to be
   * stored only when rows[j] < p.n. In a kernel of several x rows, `b` is the x row of these sums (its
   * results go to row b of the outputs; `p.ocols` is the row stride the caller passed); undefined in a
   * one-row kernel.
   */
  store?: (sums: readonly string[], rows: readonly string[], b?: number) => string;
}

/**
 * The GEMV kernel for a weight format, x access mode, subgroup width `sg` (1: no subgroups), rows per
 * team, teams per row group (`split`, a power of two), loads in flight per lane and row (`unroll`), loads
 * of the next step issued before the current one computes (`pipeline`) and where x is read (`x`).
 * Params: n (rows of this part), k, chunks (16-byte loads a row, plain formats), o0 (first output),
 * stride4 (vec4s a row, plain formats), blocks (blocks a row). Grid: ceil(n / gemvRows(sg, R, split)).
 *
 * `batch` B > 1 serves B rows of x at once (batched decoding): x row b starts at element b * k, each lane
 * loads each weight slot once and adds it into R x B sums, and row b's outputs start at b * ocols (ocols:
 * a last parameter word, after the hooks' own). Each row's sum is formed in exactly the order of the one-
 * row kernel with the same split and unroll (R only picks which rows a team holds), so row b equals the
 * one-row GEMV on row b bit for bit (gemvBatchVariant keeps those). x must be read from global memory.
 * B = 1 generates the one-row kernel unchanged.
 */
export function gemvKernel(
  format: DType,
  mode: XMode,
  sg: number,
  rowsPerTeam = GEMV_ROWS_PER_TEAM[format],
  split = gemvVariant(format, sg, rowsPerTeam === GEMV_ROWS_PER_TEAM[format] ? {} : { rowsPerTeam }).split,
  unroll = GEMV_UNROLL[format],
  pipeline = GEMV_PIPELINE[format],
  x: GemvX = GEMV_X[format],
  hooks?: GemvHooks,
  batch = 1,
  tiled = true,
): Kernel {
  const team = gemvTeam(sg);
  const teams = GEMV_THREADS / team;
  const viaSubgroup = sg > 1;
  const [R, S, U] = [rowsPerTeam, split, unroll];
  if (!(S >= 1 && (S & (S - 1)) === 0 && teams % S === 0)) throw new Error(`GEMV split ${S} must be a power of two dividing ${teams} teams`);
  if (!(R >= 1 && U >= 1)) throw new Error(`GEMV rows per team ${R} and unroll ${U} must be at least 1`);
  if (!GEMV_XS.includes(x)) throw new Error(`GEMV x "${String(x)}" is not one of ${GEMV_XS.join(", ")}`);
  const staged = x !== "global";
  if (staged && pipeline) throw new Error("GEMV: a pipelined variant reads x from global memory (x staged in workgroup memory is not pipelined)");
  const B = batch;
  if (!(Number.isInteger(B) && B >= 1 && B <= GEMV_MAX_BATCH)) throw new Error(`GEMV batch ${B} must be an integer from 1 to ${GEMV_MAX_BATCH}`);
  if (B > 1 && staged) throw new Error(`GEMV: x staged in workgroup memory ("${x}") holds one x row; a batch of ${B} rows reads x from global memory`);
  const batched = B > 1;
  return memoKernel(`gemv.${format}${gemvDecodeOf(format) ? `:${gemvDecodeOf(format)}` : ""}.${mode}.${team}.${+viaSubgroup}.${R}.${S}.${U}.${+pipeline}.${x}${hooks ? `.${hooks.key}` : ""}${batched ? `.b${B}` : ""}${tiled ? "" : ".blocks"}`, () => {
    const f = gemvFormat(format, tiled);
    // per-load scales (block and 4-bit packed formats); a scale binding (those, and int8's row scales)
    const block = isBlock(format) || f.scaleAt !== undefined;
    const scaled = block || f.post !== undefined && f.scaleType !== undefined;
    const scaleAt = f.scaleAt ?? ((c: string, sl: string) => `sc[${c} + ((${sl}) >> 3u)]`);
    const rows = Array.from({ length: R }, (_, j) => j);
    const loads = Array.from({ length: U }, (_, u) => u);
    const each = (fn: (j: number) => string, sep = "\n      ") => rows.map(fn).join(sep);
    // x rows of a batched kernel; acc(j, b): team row j's sum for x row b
    const xrows = Array.from({ length: B }, (_, b) => b);
    const acc = (j: number, b: number) => (batched ? `acc${j}_${b}` : `acc${j}`);
    const eachAcc = (fn: (a: string, j: number, b: number) => string, sep = "\n  ") => rows.flatMap((j) => xrows.map((b) => fn(acc(j, b), j, b))).join(sep);
    const slot = (u: number) => (u === 0 ? "s" : `(s + ${u * team}u)`);
    const xs = Array.from({ length: f.xv }, (_, v) => `x${v}`).join(", ");
    // x of a slot as lets x0.. (tile order: vec4 l + 32v of the tile; the rest: XV consecutive vec4s)
    const xLets = (sl: string, tile: boolean) =>
      `let b = ${tile ? `(${sl} & ~31u) * ${f.xv}u + (${sl} & 31u)` : `${sl} * ${f.xv}u`};\n        ` +
      Array.from({ length: f.xv }, (_, v) => `let x${v} = xload(b${v === 0 ? "" : ` + ${tile ? 32 * v : v}u`});`).join(" ");
    const hasRest = f.tileSlots !== f.slots;
    const tdot = (q: string, c: string) => (block ? `tdot(${q}, ${c}, ${xs})` : `tdot(${q}, ${xs})`);
    // batched: the slot's x index once, then per x row its x vec4s and the R sums that use them (the
    // weights `dot(j)` reads are loaded once for all rows)
    const xRows = (sl: string, tile: boolean, dot: (j: number) => string) =>
      `let xi = ${tile ? `(${sl} & ~31u) * ${f.xv}u + (${sl} & 31u)` : `${sl} * ${f.xv}u`};
        ${xrows.map((b) => `{
          ${Array.from({ length: f.xv }, (_, v) => `let x${v} = xload(xi${v === 0 ? "" : ` + ${tile ? 32 * v : v}u`}, xb${b});`).join(" ")}
          ${each((j) => `${acc(j, b)} += ${dot(j)};`, "\n          ")}
        }`).join("\n        ")}`;
    const names = loads.flatMap((u) => rows.map((j) => `${j}_${u}`));
    const fetch = (decl: string, base: string) =>
      [
        ...loads.flatMap((u) => rows.map((j) => `${decl}q${j}_${u} = w[w${j} + ${base}${u ? ` + ${u * team}u` : ""}];`)),
        ...(block ? loads.flatMap((u) => rows.map((j) => `${decl}c${j}_${u} = ${scaleAt(`c${j}`, `${base}${u ? ` + ${u * team}u` : ""}`)};`)) : []),
      ].join("\n      ");
    const compute = (q: string, c: string) =>
      loads.map((u) => `{
        ${batched
          ? xRows(slot(u), true, (j) => tdot(`${q}${j}_${u}`, `${c}${j}_${u}`))
          : `${xLets(slot(u), true)}
        ${each((j) => `acc${j} += ${tdot(`${q}${j}_${u}`, `${c}${j}_${u}`)};`, "\n        ")}`}
      }`).join("\n      ");
    // pipelined: the next step's weights are loaded before this step's are used, so a team keeps a
    // step of loads in flight while it computes (the last step reloads itself: a cache hit)
    const unrolled = pipeline
      ? `if (steps > kp) {
      ${fetch("var ", "(kp * (TEAM * U) + lane)")}
      for (var st = kp; st < steps; st += S) {
        let s = st * (TEAM * U) + lane;
        ${names.map((n) => `let pq${n} = q${n};${block ? ` let pc${n} = c${n};` : ""}`).join("\n        ")}
        let n = min(st + S, steps - 1u) * (TEAM * U) + lane;
        ${fetch("", "n")}
        ${compute("pq", "pc")}
      }
    }`
      : `for (var st = kp; st < steps; st += S) {
      let s = st * (TEAM * U) + lane;
      ${fetch("let ", "s")}
      ${compute("q", "c")}
    }`;
    // x staged in workgroup memory: a window is the S * U * TEAM slots that one iteration of all teams
    // covers; xw[v * WS + i] holds x vec4 v of window slot i, so a team's reads are contiguous (no bank
    // conflicts). Weights are fetched before the barriers, so their loads are in flight while x is staged.
    const WS = team * U * S;
    const xwRead = (e: string) => (x === "shared-f16" ? `xh(${e})` : `xw[${e}]`);
    const stagedLoop = `let ls = kp * (TEAM * U) + lane;
    for (var it = 0u; it < steps / S; it++) {
      let s = (it * S + kp) * (TEAM * U) + lane;
      ${fetch("let ", "s")}
      workgroupBarrier();
      let base = it * (S * TEAM * U);
      for (var k = 0u; k < ${Math.ceil((WS * f.xv) / GEMV_THREADS)}u; k++) {
        let i = lid + k * ${GEMV_THREADS}u;
        if (i < ${WS * f.xv}u) {
          let sl = base + i % ${WS}u;
          let t = xload((sl & ~31u) * ${f.xv}u + (sl & 31u) + (i / ${WS}u) * 32u);
          ${x === "shared-f16" ? "xw[i] = vec2<u32>(pack2x16float(t.xy), pack2x16float(t.zw));" : "xw[i] = t;"}
        }
      }
      workgroupBarrier();
      ${loads.map((u) => `{
        ${Array.from({ length: f.xv }, (_, v) => `let x${v} = ${xwRead(`ls + ${u * team + v * WS}u`)};`).join(" ")}
        ${each((j) => `acc${j} += ${tdot(`q${j}_${u}`, `c${j}_${u}`)};`, "\n        ")}
      }`).join("\n      ")}
    }`;
    const xwDecl = !staged
      ? ""
      : x === "shared-f16"
        ? `var<workgroup> xw: array<vec2<u32>, ${WS * f.xv}>;
fn xh(i: u32) -> vec4<f32> { let h = xw[i]; return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y)); }`
        : `var<workgroup> xw: array<vec4<f32>, ${WS * f.xv}>;`;
    const tileOne = batched
      ? `${each((j) => `let tq${j} = w[w${j} + s];`, " ")}${block ? `\n        ${each((j) => `let tc${j} = ${scaleAt(`c${j}`, "s")};`, " ")}` : ""}
        ${xRows("s", true, (j) => tdot(`tq${j}`, `tc${j}`))}`
      : `${xLets("s", true)}
        ${each((j) => `acc${j} += ${tdot(`w[w${j} + s]`, scaleAt(`c${j}`, "s"))};`, "\n        ")}`;
    const restOne = batched
      ? `${each((j) => `let tq${j} = w[w${j} + s];`, " ")}${block ? `\n        ${each((j) => `let td${j} = rscale(o${j} * SCALES + ${f.restBlock});`, " ")}` : ""}
        ${xRows("s", false, (j) => (block ? `rdot(tq${j}, td${j}, ${xs})` : `rdot(tq${j}, ${xs})`))}`
      : block
      ? `${xLets("s", false)}
        ${each((j) => `acc${j} += rdot(w[w${j} + s], rscale(o${j} * SCALES + ${f.restBlock}), ${xs});`, "\n        ")}`
      : `${xLets("s", false)}
        ${each((j) => `acc${j} += rdot(w[w${j} + s], ${xs});`, "\n        ")}`;
    const tail = `for (var s = steps * (TEAM * U) + kp * TEAM + lane; s < slots; s += TEAM * S) {
      ${hasRest ? `if (s < tileSlots) {
        ${tileOne}
      } else {
        ${restOne}
      }` : tileOne}
    }`;
    let reduce: string;
    let wgMemory = "";
    if (viaSubgroup) {
      const shuffles: string[] = [];
      for (let o = team / 2; o >= 1; o /= 2) for (const j of rows) for (const b of xrows) shuffles.push(`${acc(j, b)} += subgroupShuffleXor(${acc(j, b)}, ${o}u);`);
      reduce = shuffles.join("\n  ");
      if (S > 1 && batched) {
        wgMemory = `var<workgroup> red: array<f32, ${teams * R * B}>;`;
        reduce += `
  if (lane == 0u) {
    ${eachAcc((a, j, b) => `red[(team * R + ${j}u) * ${B}u + ${b}u] = ${a};`, "\n    ")}
  }
  workgroupBarrier();
  if (lane == 0u && kp == 0u) {
    for (var i = 1u; i < S; i++) {
      ${eachAcc((a, j, b) => `${a} += red[((team + i) * R + ${j}u) * ${B}u + ${b}u];`, "\n      ")}
    }
  }`;
      } else if (S > 1) {
        wgMemory = `var<workgroup> red: array<f32, ${teams * R}>;`;
        reduce += `
  if (lane == 0u) {
    ${each((j) => `red[team * R + ${j}u] = acc${j};`, "\n    ")}
  }
  workgroupBarrier();
  if (lane == 0u && kp == 0u) {
    for (var i = 1u; i < S; i++) {
      ${each((j) => `acc${j} += red[(team + i) * R + ${j}u];`)}
    }
  }`;
      }
    } else if (batched) {
      // one x row at a time through the same array: after a row's last barrier each thread reads back
      // only its own slots, which only it overwrites with the next row's sums
      wgMemory = `var<workgroup> red: array<f32, ${GEMV_THREADS * R}>;`;
      reduce = `let q = lid % (TEAM * S);
  ${xrows.map((b) => `${each((j) => `red[lid * R + ${j}u] = ${acc(j, b)};`, "\n  ")}
  workgroupBarrier();
  for (var h = TEAM * S / 2u; h > 0u; h >>= 1u) {
    if (q < h) {
      ${each((j) => `red[lid * R + ${j}u] += red[(lid + h) * R + ${j}u];`)}
    }
    workgroupBarrier();
  }
  ${each((j) => `${acc(j, b)} = red[lid * R + ${j}u];`, "\n  ")}`).join("\n  ")}`;
    } else {
      wgMemory = `var<workgroup> red: array<f32, ${GEMV_THREADS * R}>;`;
      reduce = `${each((j) => `red[lid * R + ${j}u] = acc${j};`, "\n  ")}
  workgroupBarrier();
  let q = lid % (TEAM * S);
  for (var h = TEAM * S / 2u; h > 0u; h >>= 1u) {
    if (q < h) {
      ${each((j) => `red[lid * R + ${j}u] += red[(lid + h) * R + ${j}u];`)}
    }
    workgroupBarrier();
  }
  ${each((j) => `acc${j} = red[lid * R + ${j}u];`, "\n  ")}`;
    }
    const code = /* wgsl */ `${viaSubgroup ? "enable subgroups;" : ""}
struct P { n: u32, k: u32, chunks: u32, o0: u32, stride4: u32, blocks: u32, mul: f32${hooks?.params ?? ""}${batched ? ", ocols: u32" : ""} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<${mode === "scalar" ? "f32" : "vec4<f32>"}>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
${scaled ? `@group(0) @binding(3) var<storage, read> sc: array<${f.scaleType}>;` : ""}
@group(0) @binding(${scaled ? 4 : 3}) var<storage, read_write> out: array<f32>;
${hooks?.decls?.(scaled ? 5 : 4, B) ?? ""}
${DECODE_HELPERS}
${xLoader(mode, batched)}
${f.fns}
const TEAM = ${team}u;
const R = ${R}u;
const S = ${S}u;
const U = ${U}u;
const ROWS = ${teams / S}u * R;
${wgMemory}
${xwDecl}

@compute @workgroup_size(${GEMV_THREADS})
fn main(${ENTRY_ARGS}) {
  let team = lid / TEAM;
  let lane = lid % TEAM;
  let kp = team % S;
  let row0 = ${GROUP_INDEX} * ROWS + (team / S) * R;
  ${f.prologue ?? ""}
  ${batched ? eachAcc((a) => `var ${a} = 0.0;`) : each((j) => `var acc${j} = 0.0;`, "\n  ")}${batched ? `
  ${xrows.map((b) => `let xb${b} = ${b}u * ${mode === "scalar" ? "p.k" : "(p.k / 4u)"};`).join(" ")}` : ""}
  // rows past n (the last teams of the last workgroup) read clamped in-bounds rows; their sums are dropped
  let last = p.n - 1u;
  ${each((j) => `let o${j} = ${hooks?.row ? hooks.row(`min(row0 + ${j}u, last)`) : `min(row0 + ${j}u, last)`};`, "\n  ")}
  ${each((j) => `let w${j} = o${j} * ${f.rowVec4s};`, "\n  ")}
  ${block ? each((j) => `let c${j} = o${j} * ${f.scaleRow};`, "\n  ") : ""}
  let slots = ${f.slots};
  let tileSlots = ${f.tileSlots};
  // whole unrolled steps, as many for every team of the row group; the rest one slot at a time
  let steps = tileSlots / (TEAM * U * S) * S;
  ${staged ? `// every team takes part in staging x (workgroup barriers), rows past n included
  ${stagedLoop}` : ""}
  if (row0 < p.n) {
    ${staged ? "" : unrolled}
    ${tail}
  }
  ${reduce}
  if (lane == 0u && kp == 0u) {
    ${batched
      ? xrows.map((b) => hooks?.store
        ? hooks.store(rows.map((j) => (f.post ? f.post(acc(j, b), `o${j}`) : acc(j, b))), rows.map((j) => `(row0 + ${j}u)`), b)
        : each((j) => `if (row0 + ${j}u < p.n) { out[${b}u * p.ocols + p.o0 + row0 + ${j}u] = ${f.post ? f.post(acc(j, b), `(row0 + ${j}u)`) : acc(j, b)}; }`, "\n    ")).join("\n    ")
      : hooks?.store
      ? hooks.store(rows.map((j) => (f.post ? f.post(`acc${j}`, `o${j}`) : `acc${j}`)), rows.map((j) => `(row0 + ${j}u)`))
      : each((j) => `if (row0 + ${j}u < p.n) { out[p.o0 + row0 + ${j}u] = ${f.post ? f.post(`acc${j}`, `(row0 + ${j}u)`) : `acc${j}`}; }`, "\n    ")}
  }
}`.replace(/SCALES/g, "((p.blocks + 7u) & ~7u)");
    return {
      name: `matmul.gemv.${format}${hooks ? `.${hooks.key}` : ""}${batched ? `.x${B}` : ""}`,
      code,
      bindings: [...(scaled ? ["read", "read", "read", "write"] as const : ["read", "read", "write"] as const), ...(hooks?.bindings ?? [])],
    };
  });
}

/** WGSL `fn load8(o, g) -> array<vec4<f32>, 2>`: weights 8g..8g+7 of row o, decoded (weights.ts layout). */
function groupLoader(format: DType, tiled: boolean): string {
  if (isPackedDType(format)) return packedGroupLoader(format);
  switch (format) {
    case "f32":
      return `fn load8(o: u32, g: u32) -> array<vec4<f32>, 2> {
  let b = o * p.stride4 + 2u * g;
  return array<vec4<f32>, 2>(bitcast<vec4<f32>>(w[b]), bitcast<vec4<f32>>(w[b + 1u]));
}`;
    case "f16":
    case "bf16": {
      const d = format === "f16" ? "unpack2x16float" : "bf2";
      // in a whole tile (32 groups) group g is words 2v, 2v+1 of lanes 2(g & 15) and 2(g & 15) + 1
      return `fn load8(o: u32, g: u32) -> array<vec4<f32>, 2> {
  let row = o * p.stride4;
  var ua: vec2<u32>;
  var ub: vec2<u32>;
  if ((g >> 5u) < (p.stride4 >> 5u)) {
    let b = row + (g >> 5u) * 32u + (g & 15u) * 2u;
    let hi = ((g >> 4u) & 1u) == 1u;
    let qa = w[b];
    let qb = w[b + 1u];
    ua = select(qa.xy, qa.zw, hi);
    ub = select(qb.xy, qb.zw, hi);
  } else {
    let q = w[row + g];
    ua = q.xy;
    ub = q.zw;
  }
  return array<vec4<f32>, 2>(vec4<f32>(${d}(ua.x), ${d}(ua.y)), vec4<f32>(${d}(ub.x), ${d}(ub.y)));
}`;
    }
    case "q8_0":
      return `fn load8(o: u32, g: u32) -> array<vec4<f32>, 2> {
  let ss = o * ((p.blocks + 7u) & ~7u);
  if ((g >> 6u) < (p.blocks >> 4u)) {
    let t = g >> 6u;
    let v = (g >> 4u) & 3u;
    let l = (g & 15u) * 2u;
    let b = o * p.blocks * 2u + t * 32u + l;
    let s = scale(ss + t * 16u + (l >> 3u) * 4u + v);
    return array<vec4<f32>, 2>(i8x4(w[b][v]) * s, i8x4(w[b + 1u][v]) * s);
  }
  let b = g / 4u;
  let part = g % 4u;
  let q = w[o * p.blocks * 2u + b * 2u + part / 2u];
  let u = select(q.xy, q.zw, (part & 1u) == 1u);
  let s = scale(ss + b);
  return array<vec4<f32>, 2>(i8x4(u.x) * s, i8x4(u.y) * s);
}`;
    case "q4_0":
      return `fn load8(o: u32, g: u32) -> array<vec4<f32>, 2> {
  let ss = o * ((p.blocks + 7u) & ~7u);
  if (${tiled ? "(g >> 7u) < (p.blocks >> 5u)" : "false"}) {
    let t = g >> 7u;
    let v = (g >> 4u) & 7u;
    let l = (g & 15u) * 2u;
    let b = o * p.blocks + t * 32u + l;
    let s = scale(ss + t * 32u + (l >> 3u) * 8u + v);
    let sh = 16u * (v & 1u);
    return array<vec4<f32>, 2>(nib4(w[b][v >> 1u] >> sh) * s, nib4(w[b + 1u][v >> 1u] >> sh) * s);
  }
  let b = g / 4u;
  let part = g % 4u;
  let q = w[o * p.blocks + b];
  let u = select(q.xy, q.zw, (part & 1u) == 1u);
  let high = part >= 2u;
  let s = scale(ss + b);
  return array<vec4<f32>, 2>(select(lo4(u.x), hi4(u.x), high) * s, select(lo4(u.y), hi4(u.y), high) * s);
}`;
  }
}

/** GEMM weight bindings: quants as vec4s, scales as f16 pairs. */
function weightBindings(format: DType, first: number): string {
  let s = `@group(0) @binding(${first}) var<storage, read> w: array<vec4<u32>>;\n`;
  if (isPackedDType(format)) s += `@group(0) @binding(${first + 1}) var<storage, read> sc: array<u32>;\n`;
  else if (isBlock(format)) s += `@group(0) @binding(${first + 1}) var<storage, read> sc: array<u32>;\n${SCALE_FN}`;
  return s;
}

/**
 * WGSL storing a 64 x 64 GEMM tile: thread (tx, ty) holds acc[i][j] of x row r0 + 4 ty + i and output
 * feature o0 + 4 tx + j; rows past p.rows and features past p.n are dropped.
 */
export const GEMM_STORE = /* wgsl */ `for (var i = 0u; i < 4u; i++) {
    let r = r0 + ty * 4u + i;
    if (r >= p.rows) { break; }
    for (var j = 0u; j < 4u; j++) {
      let o = o0 + tx * 4u + j;
      if (o < p.n) { out[r * p.outCols + p.o0 + o] = acc[i][j]; }
    }
  }`;

/** GEMM tile sizes: rows of x and output features per workgroup. */
export const GEMM_TILE = 64;

/**
 * The tiled GEMM kernel for a weight format. Params: rows, n (features of this part), k, groups (8-weight
 * groups a row), o0, outCols, stride4, blocks. Grid: x over feature tiles, y over row tiles.
 */
export function gemmKernel(format: DType, tiled = true): Kernel {
  return memoKernel(`gemm.${format}${tiled ? "" : ".blocks"}`, () => {
    const code = /* wgsl */ `
struct P { rows: u32, n: u32, k: u32, groups: u32, o0: u32, outCols: u32, stride4: u32, blocks: u32, mul: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
${weightBindings(format, 2)}
@group(0) @binding(${hasScales(format) ? 4 : 3}) var<storage, read_write> out: array<f32>;
${DECODE_HELPERS}
${groupLoader(format, tiled)}
// [k][row / 4] and [k][feature / 4]: the inner loop reads one vec4 of each
var<workgroup> xt: array<vec4<f32>, 512>;
var<workgroup> wt: array<vec4<f32>, 512>;

@compute @workgroup_size(256)
fn main(${ENTRY_ARGS}) {
  let o0 = wid.x * 64u;
  let r0 = wid.y * 64u;
  let tx = lid % 16u;
  let ty = lid / 16u;
  let lr = lid / 4u;
  let lk = (lid % 4u) * 8u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < p.k; k0 += 32u) {
    let r = r0 + lr;
    for (var e = 0u; e < 8u; e++) {
      let k = k0 + lk + e;
      var v = 0.0;
      if (r < p.rows && k < p.k) { v = x[r * p.k + k]; }
      xt[(lk + e) * 16u + lr / 4u][lr % 4u] = v;
    }
    let o = o0 + lr;
    let g = (k0 + lk) / 8u;
    var wv = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
    if (o < p.n && g < p.groups) { wv = load8(o, g); }
    for (var e = 0u; e < 4u; e++) {
      wt[(lk + e) * 16u + lr / 4u][lr % 4u] = wv[0][e];
      wt[(lk + 4u + e) * 16u + lr / 4u][lr % 4u] = wv[1][e];
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 32u; kk++) {
      let a = xt[kk * 16u + ty];
      let b = wt[kk * 16u + tx];
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }
  ${GEMM_STORE}
}`;
    return {
      name: `matmul.gemm.${format}`,
      code,
      bindings: hasScales(format) ? ["read", "read", "read", "write"] : ["read", "read", "write"],
    };
  });
}

/** Parameter words shared by both paths, for one part of weight w. */
export function weightParams(w: GpuWeight): { stride4: number; blocks: number } {
  return { stride4: w.stride / 4, blocks: w.blocks };
}
