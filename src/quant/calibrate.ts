/**
 * Calibrated quantization: the inputs of every linear layer, captured while the unquantized model runs on
 * calibration text (CPU backend), drive
 * - a per-group clipping search that minimizes the layer's output error on those inputs (AWQ's auto_clip,
 *   spec §3.1): for r in {0, 0.05, ..., 0.45} clamp the group to ±(1 − r)·max|w|, quantize, score
 *   Σ_t (x_t,g · (ŵ_g − w_g))² = dᵀ H_g d with H_g = X_gᵀ X_g, keep the best r per (row, group); q/k
 *   projections keep plain round-to-nearest, as in AWQ (their errors pass through the softmax);
 * - AWQ-style per-input-channel scaling (awq.ts).
 */
import { CpuBackend, createCpuBackend, type CpuTensor, type CpuWeight } from "../backend/cpu/cpu-backend.js";
import type { LoadedSource } from "../io/source.js";
import type { Tokenizer } from "../io/tokenizer.js";
import { assembleModel } from "../model/assemble.js";
import type { RawTensor } from "../tensor/raw.js";
import type { PackedTensor, QuantFormat } from "./format.js";
import { groupsPerRow } from "./format.js";

/** Captured inputs of one linear layer: `tokens` rows of `cols` floats. */
export interface LayerInputs {
  x: Float32Array;
  tokens: number;
  cols: number;
}

/** Inputs per weight name (Hugging Face names, e.g. model.layers.0.self_attn.q_proj.weight). */
export type Calibration = Map<string, LayerInputs>;

export interface CaptureOptions {
  /** Tokens of calibration text to run (default 512). */
  tokens?: number;
  /** Tokens per forward window (default min(512, the model's context)). */
  ctx?: number;
  threads?: number;
  onProgress?: (what: string, done: number, total: number) => void;
}

/**
 * Runs the model in `loaded` (its tensors are not consumed) on the first `tokens` tokens of `text` and returns
 * the inputs every matmul saw, by weight name. The hook is the CPU backend's matmul, wrapped on this one
 * instance: the model code is unchanged.
 */
export async function captureCalibration(loaded: LoadedSource, text: string, options: CaptureOptions = {}): Promise<Calibration> {
  const want = options.tokens ?? 512;
  const ids = encodePrefix(loaded.tokenizer, text, want);
  if (ids.length < 2) throw new Error(`calibration text has ${ids.length} tokens; need at least 2`);
  const backend: CpuBackend = await createCpuBackend({ threads: options.threads });
  const seen: Calibration = new Map();
  const matmul = backend.matmul.bind(backend);
  backend.matmul = (out, x, w, rows) => {
    const xt = x as CpuTensor, wt = w as CpuWeight;
    const n = rows ?? xt.rows;
    let s = seen.get(wt.name);
    if (!s) seen.set(wt.name, (s = { x: new Float32Array(want * xt.cols), tokens: 0, cols: xt.cols }));
    const take = Math.min(n, want - s.tokens);
    if (take > 0) {
      s.x.set(xt.data.subarray(0, take * xt.cols), s.tokens * xt.cols);
      s.tokens += take;
    }
    matmul(out, x, w, rows);
  };
  const model = assembleModel({ ...loaded, tensors: new Map(loaded.tensors) }, backend);
  try {
    const ctx = Math.min(options.ctx ?? 512, model.network.contextLength);
    const cache = model.network.newCache(ctx);
    for (let i = 0; i < ids.length; i += ctx) {
      const w = ids.slice(i, i + ctx);
      model.network.forward(Int32Array.from(w), 0, cache, true);
      options.onProgress?.("calibration forward", Math.min(i + ctx, ids.length), ids.length);
    }
  } finally {
    model.dispose();
  }
  for (const s of seen.values()) s.x = s.x.subarray(0, s.tokens * s.cols);
  return seen;
}

/**
 * The first `count` tokens of `text`, encoded piecewise (about 2000 characters at a time, cut after a newline)
 * so that long files cost time in proportion to the tokens wanted: some tokenizers are quadratic in the length.
 */
export function encodePrefix(tokenizer: Tokenizer, text: string, count: number): number[] {
  const ids: number[] = [];
  let at = 0;
  while (ids.length < count && at < text.length) {
    let end = Math.min(text.length, at + 2000);
    const nl = text.indexOf("\n", end);
    end = nl < 0 || nl - end > 2000 ? end : nl + 1;
    ids.push(...tokenizer.encode(text.slice(at, end), { addSpecialTokens: false }));
    at = end;
  }
  return ids.slice(0, count);
}

/** Clip ratios of the output-error search: 1 − r for r in {0, 0.05, …, 0.45} (spec §3.1). */
export const OUTPUT_CLIP_RATIOS: readonly number[] = Array.from({ length: 10 }, (_, i) => 1 - 0.05 * i);

/** Per-group Gram matrices H_g = X_gᵀ X_g (f64, G × G each, the last group's partial part only). */
function groupGrams(inputs: LayerInputs, g: number): Float64Array[] {
  const { x, tokens, cols } = inputs;
  const out: Float64Array[] = [];
  for (let start = 0; start < cols; start += g) {
    const n = Math.min(g, cols - start);
    const h = new Float64Array(n * n);
    for (let t = 0; t < tokens; t++) {
      const row = t * cols + start;
      for (let i = 0; i < n; i++) {
        const xi = x[row + i]!;
        if (xi === 0) continue;
        for (let j = i; j < n; j++) h[i * n + j]! += xi * x[row + j]!;
      }
    }
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) h[i * n + j] = h[j * n + i]!;
    out.push(h);
  }
  return out;
}

/**
 * Round-to-nearest with a per-group clipping ratio chosen by output error on `inputs` (see the file comment).
 * Groups are the format's (a row for per-row formats). The chosen clamps are applied to the weights and the
 * result packed once more: exact for formats whose groups are quantized independently; for NVFP4's tensor
 * scale g (set by the largest weight), clamping can move g, so that format's choice is approximate.
 */
export function quantizeWithOutputClip(format: QuantFormat, w: Float32Array, rows: number, cols: number, inputs: LayerInputs): PackedTensor {
  if (inputs.cols !== cols) throw new Error(`${format.name}: calibration inputs have ${inputs.cols} columns, the weight ${cols}`);
  const g = format.groupSize || cols;
  const ng = groupsPerRow(cols, g);
  const grams = groupGrams(inputs, g);
  const amax = new Float32Array(rows * ng);
  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < ng; gi++) {
      let m = 0;
      for (let k = gi * g; k < Math.min(cols, (gi + 1) * g); k++) m = Math.max(m, Math.abs(w[r * cols + k]!));
      amax[r * ng + gi] = m;
    }
  }
  const bestErr = new Float64Array(rows * ng).fill(Infinity);
  const bestRatio = new Float32Array(rows * ng).fill(1);
  const clamped = new Float32Array(w.length);
  const d = new Float64Array(g);
  for (const ratio of OUTPUT_CLIP_RATIOS) {
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < cols; k++) {
        const b = ratio * amax[r * ng + Math.floor(k / g)]!;
        const v = w[r * cols + k]!;
        clamped[r * cols + k] = v > b ? b : v < -b ? -b : v;
      }
    }
    const q = format.unpack(format.pack(clamped, rows, cols));
    for (let r = 0; r < rows; r++) {
      for (let gi = 0; gi < ng; gi++) {
        const start = gi * g, n = Math.min(g, cols - start), h = grams[gi]!;
        for (let i = 0; i < n; i++) d[i] = q[r * cols + start + i]! - w[r * cols + start + i]!;
        let err = 0;
        for (let i = 0; i < n; i++) {
          const di = d[i]!;
          if (di === 0) continue;
          let s = 0;
          for (let j = 0; j < n; j++) s += h[i * n + j]! * d[j]!;
          err += di * s;
        }
        if (err < bestErr[r * ng + gi]!) {
          bestErr[r * ng + gi] = err;
          bestRatio[r * ng + gi] = ratio;
        }
      }
    }
  }
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < cols; k++) {
      const b = bestRatio[r * ng + Math.floor(k / g)]! * amax[r * ng + Math.floor(k / g)]!;
      const v = w[r * cols + k]!;
      clamped[r * cols + k] = v > b ? b : v < -b ? -b : v;
    }
  }
  return format.pack(clamped, rows, cols);
}

/** An f32 RawTensor of `values` under `name` and `shape`. */
export function f32Tensor(name: string, shape: readonly number[], values: Float32Array): RawTensor {
  return { name, dtype: "f32", shape: [...shape], data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}
