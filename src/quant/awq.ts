/**
 * AWQ-style activation-aware scaling (Lin et al., arXiv 2306.00978), done on f32 weights before quantizing.
 * For a set of linears that share one input x, a per-input-channel scale s (s_k = mean_t |x_tk|^α,
 * normalized by sqrt(max s · min s), α on a grid of 0, 0.1, …, 0.9) multiplies the weight columns
 * (W' = W·diag(s)) and divides the input (x' = x/s), so W'x' = Wx exactly; α is chosen by the output error
 * ‖X (Q(W')·diag(1/s) − W)ᵀ‖² on calibration tokens, summed over the set. 1/s is folded where the input
 * comes from, as AWQ does:
 * - q, k, v: into input_layernorm's weight; gate, up: into post_attention_layernorm's weight;
 * - down: into up_proj's rows (down's input is silu(gate)·up, linear in up's outputs);
 * - o: into v_proj's rows only when every query head has its own KV head (attention output is linear in V per
 *   head); with grouped-query attention one V channel feeds several o columns, so o is left unscaled (AWQ
 *   skips it in that case too).
 * The search scores a subset of rows (at most 96 per tensor, evenly spaced) and at most 64 tokens: the
 * quantizers treat rows independently, so this estimates the full error at a fraction of the cost.
 */
import type { ModelConfig } from "../model/config.js";
import type { TensorMap } from "../tensor/raw.js";
import type { QuantFormat } from "./format.js";
import { f32Tensor, type Calibration, type LayerInputs } from "./calibrate.js";
import { tensorToF32 } from "./quantize-model.js";

const ALPHAS: readonly number[] = Array.from({ length: 10 }, (_, i) => i * 0.1);
const SEARCH_ROWS = 96;
const SEARCH_TOKENS = 64;

interface Linear {
  name: string;
  w: Float32Array;
  rows: number;
  cols: number;
}

function load(tensors: TensorMap, name: string): Linear {
  const t = tensors.get(name);
  if (!t) throw new Error(`awq: missing tensor ${name}`);
  return { name, ...tensorToF32(t) };
}

function vector(tensors: TensorMap, name: string): Float32Array {
  const t = tensors.get(name);
  if (!t) throw new Error(`awq: missing tensor ${name}`);
  const { w } = tensorToF32({ ...t, shape: [1, t.shape[0]!] });
  return w;
}

/** Output error of quantizing `lin` after scaling its columns by s, on a row subset and token subset. */
function scaledError(format: QuantFormat, lin: Linear, s: Float32Array, x: LayerInputs): number {
  const step = Math.max(1, Math.floor(lin.rows / SEARCH_ROWS));
  const rows = Math.ceil(lin.rows / step);
  const cols = lin.cols;
  const sub = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let k = 0; k < cols; k++) sub[i * cols + k] = lin.w[i * step * cols + k]! * s[k]!;
  const q = format.unpack(format.pack(sub, rows, cols));
  const tokens = Math.min(SEARCH_TOKENS, x.tokens);
  const d = new Float64Array(cols);
  let err = 0;
  for (let i = 0; i < rows; i++) {
    for (let k = 0; k < cols; k++) d[k] = q[i * cols + k]! / s[k]! - lin.w[i * step * cols + k]!;
    for (let t = 0; t < tokens; t++) {
      let y = 0;
      for (let k = 0; k < cols; k++) y += x.x[t * cols + k]! * d[k]!;
      err += y * y;
    }
  }
  return err * step;
}

/** The best scale of a set of linears sharing input x (α = 0, s = 1, is a candidate: never worse than RTN here). */
function searchScale(format: QuantFormat, set: Linear[], x: LayerInputs): { s: Float32Array; alpha: number } {
  const cols = x.cols;
  const mean = new Float64Array(cols);
  for (let t = 0; t < x.tokens; t++) for (let k = 0; k < cols; k++) mean[k]! += Math.abs(x.x[t * cols + k]!);
  let best = { s: new Float32Array(cols).fill(1), alpha: 0 }, bestErr = Infinity;
  for (const alpha of ALPHAS) {
    const s = new Float32Array(cols);
    let mx = 0, mn = Infinity;
    for (let k = 0; k < cols; k++) {
      const v = Math.max(1e-4, (mean[k]! / x.tokens) ** alpha);
      s[k] = v;
      mx = Math.max(mx, v);
      mn = Math.min(mn, v);
    }
    const norm = Math.sqrt(mx * mn);
    for (let k = 0; k < cols; k++) s[k] = s[k]! / norm;
    let err = 0;
    for (const lin of set) err += scaledError(format, lin, s, x);
    if (err < bestErr) {
      bestErr = err;
      best = { s, alpha };
    }
  }
  return best;
}

function scaleColumns(lin: Linear, s: Float32Array): void {
  for (let r = 0; r < lin.rows; r++) for (let k = 0; k < lin.cols; k++) lin.w[r * lin.cols + k]! *= s[k]!;
}

function scaleRows(lin: Linear, s: Float32Array): void {
  for (let r = 0; r < lin.rows; r++) for (let k = 0; k < lin.cols; k++) lin.w[r * lin.cols + k]! /= s[r]!;
}

function scaledInputs(x: LayerInputs, s: Float32Array): LayerInputs {
  const out = new Float32Array(x.x.length);
  for (let t = 0; t < x.tokens; t++) for (let k = 0; k < x.cols; k++) out[t * x.cols + k] = x.x[t * x.cols + k]! / s[k]!;
  return { x: out, tokens: x.tokens, cols: x.cols };
}

/**
 * Applies AWQ scaling to every layer of `tensors` in place (weights and norms become f32) and updates
 * `calib` to the scaled inputs. Returns the chosen α per scaled set, for reports. Progress is reported in f32
 * bytes of weights searched.
 */
export function applyAwq(
  tensors: TensorMap, config: ModelConfig, format: QuantFormat, calib: Calibration,
  onProgress?: (what: string, done: number, total: number) => void,
): Map<string, number> {
  const chosen = new Map<string, number>();
  const inputs = (name: string): LayerInputs => {
    const x = calib.get(name);
    if (!x) throw new Error(`awq: no calibration inputs for ${name}`);
    return x;
  };
  const store = (lin: Linear) => tensors.set(lin.name, f32Tensor(lin.name, [lin.rows, lin.cols], lin.w));
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const q = load(tensors, `${p}self_attn.q_proj.weight`), k = load(tensors, `${p}self_attn.k_proj.weight`);
    const v = load(tensors, `${p}self_attn.v_proj.weight`), o = load(tensors, `${p}self_attn.o_proj.weight`);
    const gate = load(tensors, `${p}mlp.gate_proj.weight`), up = load(tensors, `${p}mlp.up_proj.weight`);
    const down = load(tensors, `${p}mlp.down_proj.weight`);
    const norms = [`${p}input_layernorm.weight`, `${p}post_attention_layernorm.weight`];

    // q, k, v share the input norm
    const xa = inputs(q.name);
    const a = searchScale(format, [q, k, v], xa);
    for (const lin of [q, k, v]) scaleColumns(lin, a.s);
    const n0 = vector(tensors, norms[0]!).map((w, i) => w / a.s[i]!);
    for (const lin of [q, k, v]) calib.set(lin.name, scaledInputs(xa, a.s));
    chosen.set(`${p}qkv`, a.alpha);

    // o: only where its input channels map one to one onto v's rows
    if (config.numHeads === config.numKvHeads && o.cols === v.rows) {
      const xo = inputs(o.name);
      const b = searchScale(format, [o], xo);
      scaleColumns(o, b.s);
      scaleRows(v, b.s);
      calib.set(o.name, scaledInputs(xo, b.s));
      chosen.set(`${p}o`, b.alpha);
    }

    // gate, up share the post-attention norm
    const xm = inputs(gate.name);
    const c = searchScale(format, [gate, up], xm);
    for (const lin of [gate, up]) scaleColumns(lin, c.s);
    const n1 = vector(tensors, norms[1]!).map((w, i) => w / c.s[i]!);
    for (const lin of [gate, up]) calib.set(lin.name, scaledInputs(xm, c.s));
    chosen.set(`${p}gate_up`, c.alpha);

    // down: its input is silu(gate) * up, so 1/s goes into up's rows
    const xd = inputs(down.name);
    const e = searchScale(format, [down], xd);
    scaleColumns(down, e.s);
    scaleRows(up, e.s);
    calib.set(down.name, scaledInputs(xd, e.s));
    chosen.set(`${p}down`, e.alpha);

    for (const lin of [q, k, v, o, gate, up, down]) store(lin);
    tensors.set(norms[0]!, f32Tensor(norms[0]!, [n0.length], n0));
    tensors.set(norms[1]!, f32Tensor(norms[1]!, [n1.length], n1));
    // progress in f32 bytes of the layer's weights (layers are alike, so the total is the layer count times this one)
    const layerBytes = [q, k, v, o, gate, up, down].reduce((a, lin) => a + lin.w.byteLength, 0);
    onProgress?.(`AWQ search (${format.name})`, (l + 1) * layerBytes, config.numLayers * layerBytes);
  }
  return chosen;
}
