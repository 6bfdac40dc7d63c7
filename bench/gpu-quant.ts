/**
 * WebGPU speed of every weight format (issue #5): batch-1 GEMV against the device's copy bandwidth and
 * dense f16 measured in the same run, then batch-1 decode tokens/s of Llama-shaped models with random
 * weights, per format. Writes JSON, a markdown table and SVG charts under --out, and (--write-doc) the
 * "GPU speed" section of docs/quantization.md from that JSON.
 *
 *   node dist/bench/gpu-quant.js --out DIR [--formats f16,q8_0,q4_0,int8,...] [--shapes 8192x8192,4096x14336]
 *        [--models llama-3.2-1b,llama-3.1-8b] [--iters 50] [--decode 32] [--repeats 3] [--prompt 64]
 *        [--activations int8,f32] [--head same|f16] [--tune q4_0,fp4,razer,...] [--tune-shapes 8192x8192] [--no-gemv] [--no-decode] [--smoke]
 *   node dist/bench/gpu-quant.js --out DIR --per-process [--time-limit 450] [same options]
 *   node dist/bench/gpu-quant.js --from-json DIR/gpu-quant.json --write-doc docs/quantization.md [--out DIR]
 *
 * --formats entries may name a GEMV decode variant, FORMAT:VARIANT (kernels/packed.ts; e.g. razer:per-element,
 * razer:sentinel-sum, nf4:private, nf4:workgroup, nf4:select); a bare FORMAT times the backend's default.
 * --per-process: one child process per --formats entry (f16 first, the anchor of the speedups), each with its
 * own device, copy-bandwidth measurement, GEMVs and decode; the driver logs the GPU clocks (nvidia-smi, where
 * present) before each child, merges the children's JSON into one report and stops starting children after
 * --time-limit seconds (the rest are listed as skipped). Long single-process runs gave unreliable GEMV
 * timings (the same f16 kernel 35 µs alone, up to 96 µs late in a long bench).
 *
 * GEMV: `out x in` shapes; each format's weight is cycled through enough copies (>= 192 MiB) that every call
 * reads DRAM, not L2; the time per call is from timestamp queries (wall time over many calls in one
 * submission when the adapter has none). Bytes = the weight as the GPU holds it (codes, scales, tile padding)
 * + x + out; "of copy" is those bytes per second over the copy kernel's (read + write) bandwidth.
 * Decode: every matrix of the model (layers, embedding, output head; --head f16 keeps the head and the
 * embedding f16) in the format, random but valid codes and scales made directly in the packed layout
 * (tiled from one random block: speed does not depend on values); a --prompt-token prefill, 4 untimed
 * steps, then --decode timed greedy steps (pipelined as generate() runs them: each step one submission,
 * recorded while the GPU runs the previous one, returning the token id); median of
 * --repeats runs. Roofline = (weights + KV cache read) / copy bandwidth.
 * --activations: the paths timed for q8_0/q4_0 (both by default, in that order): int8 quantizes x per
 * 32-block and uses integer dot products (the backend default); f32 is the exact path. Rows say which.
 * --smoke: tiny shapes and iterations, to check the whole path on any adapter (SwiftShader included).
 */
import { parseArgs } from "node:util";
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { createWebGpuBackend, type GpuTensor, type WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import type { GpuFormat, GpuWeight } from "../src/backend/webgpu/weights.js";
import { chunkElems, gemvKernel, gemvRows, gemvSplit, xMode } from "../src/backend/webgpu/kernels/matmul.js";
import { f32bits, grid } from "../src/backend/webgpu/kernel.js";
import type { ActivationPath } from "../src/backend/webgpu/quantized-x.js";
import { GEMV_I8_ROWS, GEMV_I8_UNROLL, QUANT_X_BLOCKS, TILE_BLOCKS, gemvI8Kernel, quantXKernel } from "../src/backend/webgpu/kernels/gemv-i8.js";
import { LlamaModel, expectedShape, expectedTensorNames } from "../src/model/llama.js";
import type { ModelConfig } from "../src/model/config.js";
import { quantFormat } from "../src/quant/formats.js";
import { tensorBytes } from "../src/quant/packed-raw.js";
import { PACKED_DTYPES, isDType, isPackedDType, isSparseDType, type DType, type PackedDType } from "../src/tensor/dtype.js";
import { GEMV_DECODE_DEFAULTS, setGemvDecode } from "../src/backend/webgpu/kernels/packed.js";
import { GEMV_DECODE_VARIANTS } from "../src/quant/wgsl/decode.js";
import type { RawTensor } from "../src/tensor/raw.js";
import { barChartSvg, markdownTable } from "../src/eval/plot.js";
import { copyBandwidth, measure, type CopyBandwidth } from "./gpu-timing.js";
import { randomWeight } from "./random-weights.js";
import { kvReadBytes } from "./roofline.js";
import { randomLlamaConfig } from "./make-random-gguf.js";
import { promptIds, spread, type Spread } from "./llama-cpp-anchor.js";

const MODELS: Record<string, { dim: number; layers: number; ffn: number; heads: number; kvHeads: number; vocab: number; tied: boolean }> = {
  "llama-3.2-1b": { dim: 2048, layers: 16, ffn: 8192, heads: 32, kvHeads: 8, vocab: 128256, tied: true },
  "llama-3.1-8b": { dim: 4096, layers: 32, ffn: 14336, heads: 32, kvHeads: 8, vocab: 128256, tied: false },
  smoke: { dim: 256, layers: 2, ffn: 640, heads: 4, kvHeads: 2, vocab: 1000, tied: false },
};

/** Per-process runs: which child measured a row, that child's copy bandwidth and the GPU clocks before it. */
interface Proc { proc?: number; procCopyGbs?: number; clocks?: string }
interface GemvRow extends Proc { variant?: string; activations?: ActivationPath; quantXUs?: number; shape: string; out: number; in: number; format: DType; bitsPerWeight: number; mib: number; us: number; timed: "timestamps" | "wall"; gbs: number; ofCopy: number; vsF16?: number }
/** One GEMV tuning variant: rows per team R, split S, unroll U, pipelined loads. */
interface TuneRow { variant?: string; activations?: ActivationPath; shape: string; format: DType; R: number; S: number; U: number; pipeline: boolean; us: number; ofCopy: number; isDefault: boolean }
interface DecodeRow extends Proc { variant?: string; activations?: ActivationPath; model: string; format: DType; head: string; weightGB: number; tokS: Spread; prefillTokS: Spread; rooflineTokS: number; ofRoofline: number; vsQ4_0?: number; vsF16?: number }
interface Report {
  bench: "gpu-quant";
  device: string;
  features: string;
  date: string;
  settings: Record<string, string | number | boolean>;
  copy: CopyBandwidth;
  gemv: GemvRow[];
  tune?: TuneRow[];
  decode: DecodeRow[];
}

/** Every format, and every GEMV decode variant of those that have several. */
const DEFAULT_FORMATS = ["f16", "q8_0", "q4_0", ...PACKED_DTYPES.flatMap((f) => {
  const vs = GEMV_DECODE_VARIANTS[f];
  return vs ? Object.keys(vs).map((v) => `${f}:${v}`) : [f];
})].join(",");

const { values: a, tokens } = parseArgs({
  tokens: true,
  options: {
    out: { type: "string" },
    activations: { type: "string", default: "int8,f32" },
    formats: { type: "string", default: DEFAULT_FORMATS },
    shapes: { type: "string", default: "8192x8192,4096x14336,14336x4096" },
    models: { type: "string", default: "llama-3.2-1b,llama-3.1-8b" },
    iters: { type: "string", default: "50" },
    decode: { type: "string", default: "32" },
    repeats: { type: "string", default: "3" },
    prompt: { type: "string", default: "64" },
    head: { type: "string", default: "same" },
    "no-gemv": { type: "boolean", default: false },
    tune: { type: "string", default: "q4_0,fp4,razer,nvfp4-razer,int4-asym" },
    "tune-shapes": { type: "string", default: "8192x8192,4096x14336" },
    "no-decode": { type: "boolean", default: false },
    smoke: { type: "boolean", default: false },
    "from-json": { type: "string" },
    "per-process": { type: "boolean", default: false },
    "time-limit": { type: "string", default: "450" },
    /** Internal: a child of --per-process (no f16 forced in, no speedups computed). */
    child: { type: "boolean", default: false },
    "write-doc": { type: "string" },
  },
});

const smoke = a.smoke!;
const int = (name: keyof typeof a, v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: ${v} is not a positive integer`);
  return n;
};
/** A --formats entry: a weight format and, for formats with several GEMV decoders, the one to time. */
interface FormatSpec { format: DType; variant?: string; label: string }
function parseSpec(entry: string): FormatSpec {
  const [f, v] = entry.split(":") as [string, string | undefined];
  if (!isDType(f) || f === "f32" || f === "bf16" || isSparseDType(f)) throw new Error(`--formats: "${f}" is not one of f16, q8_0, q4_0, ${PACKED_DTYPES.join(", ")}`);
  const vs = isPackedDType(f) ? GEMV_DECODE_VARIANTS[f] : undefined;
  if (v !== undefined && !vs?.[v]) throw new Error(`--formats: "${entry}": ${f} has ${vs ? `the GEMV decode variants ${Object.keys(vs).join(", ")}` : "one GEMV decoder"}`);
  // a format with variants always names the one timed, the backend's default when none is given
  const variant = vs ? (v ?? GEMV_DECODE_DEFAULTS[f as PackedDType]) : undefined;
  return { format: f, variant, label: variant ? `${f}:${variant}` : f };
}
/** Makes the GEMV kernels built from now on use the spec's decoder (kernels are keyed by it). */
function useSpec(s: FormatSpec): void {
  if (isPackedDType(s.format) && s.variant) setGemvDecode(s.format, s.variant);
}
const specs = a.formats!.split(",").filter((f) => f).map(parseSpec);
if (!a.child && !specs.some((s) => s.format === "f16")) specs.unshift(parseSpec("f16")); // the anchor of every speedup
const labelOf = (r: { format: DType; variant?: string; activations?: ActivationPath }) => (r.variant ? `${r.format}:${r.variant}` : r.format) + (r.activations ? ` (${r.activations} x)` : "");
const actModes = a.activations!.split(",").filter((m) => m) as ActivationPath[];
for (const m of actModes) if (m !== "int8" && m !== "f32") throw new Error(`--activations: "${m}" is not int8 or f32`);
/** The activation paths to time for a format: both (as listed) for q8_0/q4_0, none (the only path) for others. */
const modesOf = (f: DType): (ActivationPath | undefined)[] => (f === "q8_0" || f === "q4_0" ? actModes : [undefined]);
const shapes = parseShapes(smoke ? "64x1024,96x2048" : a.shapes!, "--shapes");
const models = (smoke ? "smoke" : a.models!).split(",").filter((m) => m).map((m) => {
  if (!MODELS[m]) throw new Error(`--models: unknown "${m}" (known: ${Object.keys(MODELS).join(", ")})`);
  return m;
});
if (a.head !== "same" && a.head !== "f16") throw new Error(`--head: "${a.head}" is not same or f16`);
const ITERS = smoke ? 3 : int("iters", a.iters!);
const DECODE = smoke ? 4 : int("decode", a.decode!);
const REPEATS = smoke ? 1 : int("repeats", a.repeats!);
const PROMPT = smoke ? 8 : int("prompt", a.prompt!);
const COLD_BYTES = smoke ? 1 << 20 : 192 << 20;
const COPY_BYTES = smoke ? 4 << 20 : 512 << 20;

function bitsPerWeight(format: DType, cols: number): number {
  if (isPackedDType(format)) return quantFormat(format).bitsPerWeight(cols);
  return { f16: 16, q8_0: 8.5, q4_0: 4.5 }[format as "f16"]!;
}

const gpuBytes = (w: GpuWeight) => w.parts.reduce((s, p) => s + p.data.size + (p.scales?.size ?? 0), 0);
const log = (s: string) => process.stderr.write(`${s}\n`);

/** (R, U, pipeline) variants the tuning table measures; S is the default split for R. */
/** int8-activation GEMV variants [R, S, U] (S = 0: gemvSplit's default). */
const TUNE_I8_VARIANTS: [number, number, number][] = [[1, 1, 1], [2, 0, 1], [4, 0, 1], [8, 0, 1], [2, 1, 1], [4, 1, 1], [2, 0, 2], [4, 0, 2], [2, 1, 2], [1, 1, 4]];
const TUNE_VARIANTS: [number, number, boolean][] = [[1, 1, false], [2, 1, false], [4, 1, false], [8, 1, false], [2, 2, false], [4, 2, false], [2, 1, true], [4, 1, true]];

function parseShapes(list: string, flag: string): [number, number][] {
  return list.split(",").filter((s) => s).map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s);
    if (!m) throw new Error(`${flag}: "${s}" is not OUTxIN`);
    return [Number(m[1]), Number(m[2])] as [number, number];
  });
}

/**
 * GEMV variants (rows per team, unroll, pipelined loads) of a few formats: the defaults of kernels/matmul.ts
 * for the packed formats are q4_0's, not yet timed on a GPU; this table is what to set them from.
 */
async function tuneSection(b: WebGpuBackend, copy: CopyBandwidth): Promise<TuneRow[]> {
  const rows: TuneRow[] = [];
  // entries as --formats (FORMAT or FORMAT:VARIANT); a child of --per-process tunes only its own entry
  const list = a.tune!.split(",").filter((f) => f).map(parseSpec).filter((t) => !a.child || specs.some((s) => s.label === t.label));
  for (const [outF, inF] of smoke ? shapes.slice(0, 1) : parseShapes(a["tune-shapes"]!, "--tune-shapes")) {
    for (const spec of list) {
      const format = spec.format as GpuFormat;
      useSpec(spec);
      const one = randomWeight("w", format, [outF, inF], 1);
      const copies = Math.max(1, Math.ceil(COLD_BYTES / one.data.length));
      const ws: GpuWeight[] = [];
      for (let c = 0; c < copies; c++) ws.push(b.upload(c === 0 ? one : randomWeight(`w${c}`, format, [outF, inF], c + 1)));
      const x = b.activation(1, inF) as GpuTensor;
      b.gpu.device.queue.writeBuffer(x.buf.buffer, 0, new Float32Array(inF).fill(0.01));
      const out = b.activation(1, outF) as GpuTensor;
      const sg = b.gpu.subgroupMinSize;
      const bytes = gpuBytes(ws[0]!) + (inF + outF) * 4;
      for (const [R, U, pipeline] of smoke ? TUNE_VARIANTS.slice(0, 2) : TUNE_VARIANTS) {
        const S = gemvSplit(sg, R);
        const k = gemvKernel(format, xMode(format, inF), sg, R, S, U, pipeline);
        const t = await measure(b, `matmul.gemv.${format}`, ITERS, (i) => {
          const w = ws[i % copies]!;
          for (const part of w.parts) {
            const bufs = part.scales ? [x.buf, part.data, part.scales, out.buf] : [x.buf, part.data, out.buf];
            b.recorder.dispatch(k, [part.rows, inF, Math.ceil(inF / chunkElems(format)), part.rowStart, w.stride / 4, w.blocks, f32bits(w.mul)], bufs, grid(Math.ceil(part.rows / gemvRows(sg, R, S))));
          }
        });
        const ms = Number.isFinite(t.gpu) ? t.gpu : t.wall;
        const isDefault = R === b.gemvRowsPerTeam[format] && U === 1 && !pipeline;
        rows.push({ ...(spec.variant ? { variant: spec.variant } : {}), shape: `${outF}x${inF}`, format, R, S, U, pipeline, us: ms * 1e3, ofCopy: bytes / ms / 1e6 / copy.gbs, isDefault });
        log(`tune ${outF}x${inF} ${spec.label.padEnd(24)} R=${R} S=${S} U=${U} pipeline=${pipeline ? 1 : 0}: ${(ms * 1e3).toFixed(1)} us, ${((bytes / ms / 1e6 / copy.gbs) * 100).toFixed(0)}% of copy`);
      }
      if ((format === "q8_0" || format === "q4_0") && actModes.includes("int8")) {
        // the int8-activation GEMV's variants, on x quantized once
        const blocks = inF / 32;
        const xq = b.activation(1, inF) as GpuTensor, xs = b.activation(1, inF) as GpuTensor;
        b.recorder.dispatch(quantXKernel(format), [blocks, Math.floor(blocks / TILE_BLOCKS[format])], [x.buf, xq.buf, xs.buf], grid(Math.ceil(blocks / QUANT_X_BLOCKS)));
        for (const [R, S0, U] of smoke ? TUNE_I8_VARIANTS.slice(0, 2) : TUNE_I8_VARIANTS) {
          const S = S0 || gemvSplit(sg, R);
          const k = gemvI8Kernel(format, sg, R, S, U);
          const t = await measure(b, `matmul.gemv.${format}`, ITERS, (i) => {
            const w = ws[i % copies]!;
            for (const part of w.parts) b.recorder.dispatch(k, [part.rows, inF, part.rowStart, w.blocks], [xq.buf, xs.buf, part.data, part.scales!, out.buf], grid(Math.ceil(part.rows / gemvRows(sg, R, S))));
          });
          const ms = Number.isFinite(t.gpu) ? t.gpu : t.wall;
          const isDefault = R === GEMV_I8_ROWS[format] && S === gemvSplit(sg, R) && U === GEMV_I8_UNROLL[format];
          rows.push({ activations: "int8", shape: `${outF}x${inF}`, format, R, S, U, pipeline: false, us: ms * 1e3, ofCopy: bytes / ms / 1e6 / copy.gbs, isDefault });
          log(`tune ${outF}x${inF} ${format}/int8 R=${R} S=${S} U=${U}: ${(ms * 1e3).toFixed(1)} us, ${((bytes / ms / 1e6 / copy.gbs) * 100).toFixed(0)}% of copy`);
        }
        b.pool.destroy(xq.buf);
        b.pool.destroy(xs.buf);
      }
      for (const w of ws) for (const p of w.parts) { b.pool.destroy(p.data); if (p.scales) b.pool.destroy(p.scales); }
      b.pool.destroy(x.buf);
      b.pool.destroy(out.buf);
    }
  }
  return rows;
}

async function gemvSection(b: WebGpuBackend, copy: CopyBandwidth): Promise<GemvRow[]> {
  const rows: GemvRow[] = [];
  for (const [outF, inF] of shapes) {
    for (const spec of specs) {
      const { format, variant } = spec;
      useSpec(spec);
      const one = randomWeight("w", format, [outF, inF], 1);
      const copies = Math.max(1, Math.ceil(COLD_BYTES / one.data.length));
      const ws: GpuWeight[] = [];
      for (let c = 0; c < copies; c++) ws.push(b.upload(c === 0 ? one : randomWeight(`w${c}`, format, [outF, inF], c + 1)));
      const x = b.activation(1, inF) as GpuTensor;
      b.gpu.device.queue.writeBuffer(x.buf.buffer, 0, new Float32Array(inF).fill(0.01));
      const out = b.activation(1, outF);
      for (const act of modesOf(format)) {
      if (act) b.activations = act;
      // int8: x is quantized once for all the calls of a submission (the calls share x), timed apart below
      // the GEMV the backend picks: matmul.gemv.<format>, or q4_0's self-quantizing matmul.gemvq.q4_0.blocks
      const t = await measure(b, (k) => k === `matmul.gemv.${format}` || k === `matmul.gemvq.${format}.blocks`, ITERS, (i) => b.matmul(out, x, ws[i % copies]!));
      let quantXUs: number | undefined;
      // q4_0 on the blocks layout quantizes x inside its GEMV: no quantization dispatch to price
      const selfQuantizing = format === "q4_0" && b.q4Layout === "blocks" && b.quantizeInGemv;
      if (act === "int8" && !selfQuantizing) {
        const fmt = format as "q8_0" | "q4_0";
        const blocks = inF / 32;
        const q = b.activation(1, inF) as GpuTensor, sx = b.activation(1, inF) as GpuTensor;
        const tq = await measure(b, "matmul.quantx", ITERS, () => b.recorder.dispatch(quantXKernel(fmt), [blocks, Math.floor(blocks / TILE_BLOCKS[fmt])], [x.buf, q.buf, sx.buf], grid(Math.ceil(blocks / QUANT_X_BLOCKS))));
        quantXUs = (Number.isFinite(tq.gpu) ? tq.gpu : tq.wall) * 1e3;
        b.pool.destroy(q.buf);
        b.pool.destroy(sx.buf);
      }
      const timed = Number.isFinite(t.gpu) ? "timestamps" : "wall";
      const ms = timed === "timestamps" ? t.gpu : t.wall;
      const bytes = gpuBytes(ws[0]!) + (inF + outF) * 4;
      const gbs = bytes / ms / 1e6;
      const row: GemvRow = { ...(variant ? { variant } : {}), ...(act ? { activations: act } : {}), quantXUs, shape: `${outF}x${inF}`, out: outF, in: inF, format, bitsPerWeight: bitsPerWeight(format, inF), mib: bytes / 2 ** 20, us: ms * 1e3, timed, gbs, ofCopy: gbs / copy.gbs };
      rows.push(row);
      log(`gemv ${row.shape.padEnd(11)} ${labelOf(row).padEnd(24)} ${row.us.toFixed(1).padStart(8)} us ${gbs.toPrecision(3).padStart(6)} GB/s ${(row.ofCopy * 100).toFixed(0).padStart(3)}% of copy${quantXUs !== undefined ? ` (+ x quantization ${quantXUs.toFixed(1)} us once per x)` : ""}`);
      }
      b.activations = "int8";
      for (const w of ws) for (const p of w.parts) { b.pool.destroy(p.data); if (p.scales) b.pool.destroy(p.scales); }
      b.pool.destroy(x.buf);
      b.pool.destroy((out as GpuTensor).buf);
    }
  }
  return rows;
}

/** The model's tensors, made on demand (only `get`/`has` are used), so a whole 8B model never sits in memory. */
class RandomTensors extends Map<string, RawTensor> {
  constructor(private readonly config: ModelConfig, private readonly format: DType, private readonly headFormat: DType) {
    super();
    this.names = new Set(expectedTensorNames(config));
  }
  private readonly names: Set<string>;
  bytes = 0;
  override has(name: string): boolean {
    return this.names.has(name);
  }
  override get(name: string): RawTensor | undefined {
    if (!this.names.has(name)) return undefined;
    const head = name === "lm_head.weight" || name === "model.embed_tokens.weight";
    const t = randomWeight(name, head ? this.headFormat : this.format, expectedShape(this.config, name), this.bytes + 7);
    this.bytes += t.data.length;
    return t;
  }
}

/** Weight bytes one decode step reads: every matrix but the embedding (one row of it), plus the f32 vectors. */
function stepBytes(c: ModelConfig, format: DType, head: DType): number {
  let total = 0;
  for (const n of expectedTensorNames(c)) {
    const shape = expectedShape(c, n);
    const isHead = n === "lm_head.weight" || n === "model.embed_tokens.weight";
    const bytes = shape.length === 1 ? 4 * shape[0]! : tensorBytes(isHead ? head : format, shape);
    if (n === "model.embed_tokens.weight" && !c.tieEmbeddings) total += bytes / shape[0]!;
    else total += bytes;
  }
  return total;
}

async function decodeSection(copy: CopyBandwidth): Promise<DecodeRow[]> {
  const rows: DecodeRow[] = [];
  for (const name of models) {
    const s = MODELS[name]!;
    const config = randomLlamaConfig({ ...s, hidden: s.ffn, ctx: 2048 });
    for (const spec of specs) for (const act of modesOf(spec.format)) {
      const { format, variant } = spec;
      useSpec(spec);
      const head: DType = a.head === "f16" ? "f16" : format;
      const b = await createWebGpuBackend(act ? { activations: act } : {});
      try {
        const t0 = performance.now();
        const tensors = new RandomTensors(config, format, head);
        const context = PROMPT + DECODE + 16;
        const net = LlamaModel.create(config, tensors, b, `random ${name}`, context);
        await b.finish();
        const loadS = (performance.now() - t0) / 1000;
        const ids = Int32Array.from(promptIds(config.vocabSize, PROMPT));
        const cache = net.newCache(context);
        const run = async (): Promise<[number, number]> => {
          // decoding as generate() runs it: step t + 1 recorded while the GPU runs step t (pickAhead)
          const p0 = performance.now();
          let pending = b.pickAhead(net.forward(ids, 0, cache));
          await pending.id;
          const p1 = performance.now();
          let pos = ids.length;
          let d0 = p1;
          for (let i = 0; i < 4 + DECODE; i++) {
            if (i === 4) d0 = performance.now();
            const next = b.pickAhead(net.forward(pending, pos++, cache));
            await pending.id;
            pending = next;
          }
          await pending.id;
          return [(ids.length / (p1 - p0)) * 1000, (DECODE / (performance.now() - d0)) * 1000];
        };
        await run(); // pipelines compile, buffers settle
        const pre: number[] = [], dec: number[] = [];
        for (let r = 0; r < REPEATS; r++) {
          const [p, d] = await run();
          pre.push(p);
          dec.push(d);
        }
        const weightBytes = stepBytes(config, format, head);
        const kv = kvReadBytes(config, PROMPT + 4 + DECODE / 2, 4);
        const rooflineTokS = (copy.gbs * 1e9) / (weightBytes + kv);
        const tokS = spread(dec);
        rows.push({ ...(variant ? { variant } : {}), ...(act ? { activations: act } : {}), model: name, format, head, weightGB: weightBytes / 1e9, tokS, prefillTokS: spread(pre), rooflineTokS, ofRoofline: tokS.median / rooflineTokS });
        log(`decode ${name} ${labelOf({ format, variant, activations: act }).padEnd(24)} load ${loadS.toFixed(1)} s, ${tokS.median.toFixed(1)} tok/s (${((tokS.median / rooflineTokS) * 100).toFixed(0)}% of roofline), prefill ${spread(pre).median.toFixed(0)} tok/s`);
      } finally {
        b.dispose();
      }
    }
  }
  return rows;
}

/** Speedups over f16 (GEMV, same shape) and q4_0 / f16 (decode, same model), from the merged rows. */
function addRatios(rep: Report): void {
  for (const r of rep.gemv) {
    const f16 = rep.gemv.find((x) => x.shape === r.shape && x.format === "f16");
    if (f16) r.vsF16 = f16.us / r.us;
  }
  for (const r of rep.decode) {
    // q4_0's own default path (the first listed activation mode) is the anchor
    const base = (f: DType) => rep.decode.find((x) => x.model === r.model && x.format === f)?.tokS.median;
    const q4 = base("q4_0"), f16 = base("f16");
    if (q4) r.vsQ4_0 = r.tokS.median / q4;
    if (f16) r.vsF16 = r.tokS.median / f16;
  }
}

const pct = (v: number) => `${(v * 100).toFixed(0)}%`;

function markdown(rep: Report): string {
  const parts: string[] = [];
  parts.push(`Device: ${rep.device} (${rep.features}); copy bandwidth ${rep.copy.gbs.toPrecision(4)} GB/s (read + write, ${rep.copy.timed}), measured in the same run. ${rep.date}.\n`);
  if (rep.settings.perProcess) {
    parts.push(`One process per format entry (--per-process); each row's "of copy" is against its own process's copy bandwidth (per process: ${rep.settings.copyGbsPerProcess} GB/s).${rep.settings.skipped ? ` Skipped at the time limit: ${rep.settings.skipped}.` : ""}${rep.settings.failed ? ` Failed: ${rep.settings.failed}.` : ""}\n`);
  }
  if (rep.gemv.length) {
    parts.push(`GEMV, batch 1 (out x in), median-of-3 rounds of ${rep.settings.iters} calls, weights cycled through >= 192 MiB of copies; time ${rep.gemv[0]!.timed === "timestamps" ? "from GPU timestamps" : "wall clock"}. Ideal 4-bit speedup over f16 = 16 / bits per weight (3.9x at 4.125).\n`);
    parts.push(markdownTable(
      ["shape", "format", "bits/w", "MiB read", "µs", "GB/s", "of copy", "vs f16"],
      rep.gemv.map((r) => [r.shape, labelOf(r), r.bitsPerWeight.toFixed(3), r.mib.toFixed(1), r.us.toFixed(1), r.gbs.toFixed(0), pct(r.ofCopy), r.vsF16 ? `${r.vsF16.toFixed(2)}x` : ""]),
      [false, false, true, true, true, true, true, true],
    ));
  }
  if (rep.tune?.length) {
    parts.push(`\nGEMV tuning variants (same timing): R = weight rows per 32-lane team, S = teams splitting a row's K, U = 16-byte loads in flight per lane and row, pipelined = next step's loads issued before this step's math; * = the backend's default.\n`);
    parts.push(markdownTable(
      ["shape", "format", "R", "S", "U", "pipelined", "µs", "of copy"],
      rep.tune.map((r) => [r.shape, labelOf(r), `${r.R}${r.isDefault ? "*" : ""}`, r.S, r.U, r.pipeline ? "yes" : "no", r.us.toFixed(1), pct(r.ofCopy)]),
      [false, false, true, true, true, false, true, true],
    ));
  }
  if (rep.decode.length) {
    parts.push(`\nDecode, batch 1, random weights (every matrix in the format; head and embedding: ${rep.settings.head === "f16" ? "f16" : "the same format"}), ${rep.settings.prompt}-token prefill, ${rep.settings.decode} timed greedy steps, median (min–max) of ${rep.settings.repeats}. Roofline = (weights + f32 KV read) / copy bandwidth.\n`);
    parts.push(markdownTable(
      ["model", "format", "weights GB/step", "tokens/s", "of roofline", "vs q4_0", "vs f16", "prefill tok/s"],
      rep.decode.map((r) => [r.model, labelOf(r), r.weightGB.toFixed(2), `${r.tokS.median.toFixed(1)} (${r.tokS.min.toFixed(1)}–${r.tokS.max.toFixed(1)})`, pct(r.ofRoofline), r.vsQ4_0 ? `${r.vsQ4_0.toFixed(3)}` : "", r.vsF16 ? `${r.vsF16.toFixed(2)}x` : "", r.prefillTokS.median.toFixed(0)]),
      [false, false, true, true, true, true, true, true],
    ));
  }
  return parts.join("\n");
}

function gemvSvg(rep: Report): string {
  const groups = [...new Set(rep.gemv.map((r) => r.shape))];
  const fs = [...new Set(rep.gemv.map((r) => labelOf(r)))].filter((f) => f !== "f16");
  return barChartSvg({
    title: "WebGPU GEMV speedup over f16 (batch 1)",
    subtitle: `${rep.device}; ideal for 4-bit ≈ 3.9x`,
    yLabel: "x f16",
    groups,
    series: fs.map((f) => ({ name: f, values: groups.map((g) => rep.gemv.find((r) => r.shape === g && labelOf(r) === f)?.vsF16) })),
    width: 900,
  });
}

function decodeSvg(rep: Report): string {
  const groups = [...new Set(rep.decode.map((r) => r.model))];
  const fs = [...new Set(rep.decode.map((r) => labelOf(r)))];
  return barChartSvg({
    title: "WebGPU decode tokens/s per weight format (batch 1, random weights)",
    subtitle: rep.device,
    yLabel: "tokens/s",
    groups,
    series: fs.map((f) => ({ name: f, values: groups.map((g) => rep.decode.find((r) => r.model === g && labelOf(r) === f)?.tokS.median) })),
    width: 900,
  });
}

const START = "<!-- gpu-speed:start -->";
const END = "<!-- gpu-speed:end -->";

/** Replaces (or appends) the "GPU speed" section of `doc` with the report's tables. */
export function gpuSpeedSection(rep: Report, svgDir: string): string {
  return [
    START,
    "## GPU speed",
    "",
    "Regenerate on the GPU machine, then write this section from its JSON:",
    "",
    "```",
    "node scripts/build.mjs",
    "node dist/bench/gpu-quant.js --out OUT",
    "node dist/bench/gpu-quant.js --from-json OUT/gpu-quant.json --write-doc docs/quantization.md --out docs",
    "```",
    "",
    markdown(rep),
    "",
    ...(rep.gemv.length ? [`![GEMV speedup over f16](${svgDir}gpu-quant-gemv.svg)`, ""] : []),
    ...(rep.decode.length ? [`![decode tokens/s](${svgDir}gpu-quant-decode.svg)`, ""] : []),
    END,
  ].join("\n");
}

function writeDoc(rep: Report, path: string): void {
  if (!existsSync(path)) throw new Error(`--write-doc: ${path} does not exist (it updates the GPU speed section of an existing doc)`);
  const doc = readFileSync(path, "utf8");
  const section = gpuSpeedSection(rep, "");
  const i = doc.indexOf(START);
  const j = doc.indexOf(END);
  const next = i >= 0 && j > i ? doc.slice(0, i) + section + doc.slice(j + END.length) : `${doc.trimEnd()}\n\n${section}\n`;
  writeFileSync(path, next);
  log(`wrote the GPU speed section of ${path}`);
}

function writeOutputs(rep: Report, dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "gpu-quant.json"), JSON.stringify(rep, null, 1));
  writeFileSync(join(dir, "gpu-quant.md"), markdown(rep));
  if (rep.gemv.length) writeFileSync(join(dir, "gpu-quant-gemv.svg"), gemvSvg(rep));
  if (rep.decode.length) writeFileSync(join(dir, "gpu-quant-decode.svg"), decodeSvg(rep));
  log(`wrote ${dir}/gpu-quant.{json,md} and the SVG charts`);
}

/** The GPU's current SM and memory clocks (nvidia-smi), or why not. */
function gpuClocks(): string {
  try {
    return execFileSync("nvidia-smi", ["--query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw", "--format=csv,noheader"], { encoding: "utf8", timeout: 10_000 }).trim();
  } catch {
    return "no nvidia-smi";
  }
}

/**
 * --per-process: every --formats entry in its own child (same options), the children's reports merged
 * into one. Children start only while less than --time-limit seconds have passed, and each is killed at
 * the time left.
 */
async function driver(out: string): Promise<void> {
  const t0 = performance.now();
  const limitS = Number(a["time-limit"]);
  if (!(limitS > 0)) throw new Error(`--time-limit: ${a["time-limit"]} is not a positive number of seconds`);
  // the options given, less those the driver sets per child
  const own = new Set(["per-process", "time-limit", "formats", "out", "child", "write-doc"]);
  const pass: string[] = [];
  for (const t of tokens ?? []) if (t.kind === "option" && !own.has(t.name)) pass.push(t.rawName, ...(t.value !== undefined ? [t.value] : []));
  const script = fileURLToPath(import.meta.url);
  const reports: Report[] = [];
  const skipped: string[] = [], failed: string[] = [];
  for (const [i, spec] of specs.entries()) {
    const leftS = limitS - (performance.now() - t0) / 1000;
    if (leftS < 5) {
      skipped.push(spec.label);
      continue;
    }
    const clocks = gpuClocks();
    const dir = join(out, "parts", `${String(i).padStart(2, "0")}-${spec.label.replace(/[^a-z0-9_-]/gi, "_")}`);
    log(`[${i + 1}/${specs.length}] ${spec.label} (clocks: ${clocks}; ${leftS.toFixed(0)} s left)`);
    const r = spawnSync(process.execPath, [script, "--child", "--formats", spec.label, "--out", dir, ...pass], { stdio: ["ignore", "ignore", "inherit"], timeout: Math.floor(leftS * 1000) });
    const json = join(dir, "gpu-quant.json");
    if (r.status !== 0 && !existsSync(json)) {
      failed.push(`${spec.label} (${r.signal ?? `exit ${r.status}`})`);
      continue;
    }
    if (r.status !== 0) failed.push(`${spec.label} (${r.signal ?? `exit ${r.status}`}; rows written before that kept)`);
    const part = JSON.parse(readFileSync(json, "utf8")) as Report;
    const tag = <T extends Proc>(row: T): T => ({ ...row, proc: i, procCopyGbs: part.copy.gbs, clocks });
    part.gemv = part.gemv.map(tag);
    part.decode = part.decode.map(tag);
    reports.push(part);
  }
  if (!reports.length) throw new Error(`--per-process: no child finished (${failed.join(", ")})`);
  const copies = reports.map((r) => r.copy.gbs).sort((x, y) => x - y);
  const first = reports[0]!;
  const rep: Report = {
    bench: "gpu-quant", device: first.device, features: first.features, date: first.date,
    settings: { ...first.settings, perProcess: true, copyGbsPerProcess: copies.map((c) => c.toPrecision(4)).join(" "), skipped: skipped.join(","), failed: failed.join(",") },
    copy: { ...first.copy, gbs: copies[copies.length >> 1]! },
    gemv: reports.flatMap((r) => r.gemv), tune: reports.flatMap((r) => r.tune ?? []), decode: reports.flatMap((r) => r.decode),
  };
  addRatios(rep);
  writeOutputs(rep, out);
  if (a["write-doc"]) writeDoc(rep, a["write-doc"]);
  process.stdout.write(markdown(rep));
  if (skipped.length) log(`skipped (time limit): ${skipped.join(", ")}`);
  if (failed.length) log(`failed: ${failed.join(", ")}`);
  log(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s, ${reports.length} processes`);
}

async function main(): Promise<void> {
  if (a["from-json"]) {
    if (!existsSync(a["from-json"])) throw new Error(`--from-json: ${a["from-json"]} does not exist`);
    const rep = JSON.parse(readFileSync(a["from-json"], "utf8")) as Report;
    if (rep.bench !== "gpu-quant") throw new Error(`--from-json: ${a["from-json"]} is not a gpu-quant report`);
    if (a.out) writeOutputs(rep, a.out);
    if (a["write-doc"]) writeDoc(rep, a["write-doc"]);
    process.stdout.write(markdown(rep));
    return;
  }
  if (!a.out) throw new Error("--out DIR is required (JSON, markdown and SVG go there)");
  if (a["per-process"]) return driver(a.out);
  const t0 = performance.now();
  const b = await createWebGpuBackend({ profile: true });
  const device = b.description;
  const features = `subgroups ${b.gpu.subgroups ? `min ${b.gpu.subgroupMinSize}` : "off"}, timestamps ${b.gpu.timestamps ? "on" : "off"}, no shader-f16 used`;
  log(`WebGPU ${device} (${features})`);
  let copy: CopyBandwidth;
  let gemv: GemvRow[] = [];
  let tune: TuneRow[] = [];
  try {
    copy = await copyBandwidth(b, COPY_BYTES, ITERS);
    log(`copy ${COPY_BYTES >> 20} MiB: ${copy.gbs.toPrecision(4)} GB/s (${copy.timed})`);
    if (!a["no-gemv"]) gemv = await gemvSection(b, copy);
    if (!a["no-gemv"] && a.tune) tune = await tuneSection(b, copy);
  } finally {
    b.dispose();
  }
  const rep: Report = {
    bench: "gpu-quant", device, features, date: new Date().toISOString().slice(0, 10),
    settings: { iters: ITERS, decode: DECODE, repeats: REPEATS, prompt: PROMPT, head: a.head!, smoke },
    copy, gemv, tune, decode: [],
  };
  addRatios(rep);
  writeOutputs(rep, a.out); // a run cut short keeps the GEMV table
  if (!a["no-decode"]) rep.decode = await decodeSection(copy);
  addRatios(rep);
  writeOutputs(rep, a.out);
  if (a["write-doc"]) writeDoc(rep, a["write-doc"]);
  process.stdout.write(markdown(rep));
  log(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

await main();
