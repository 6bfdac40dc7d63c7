/**
 * TokenButler's predictor on the device (docs/kv-cache.md, "Selection on WebGPU"): the ops its forward
 * needs that the model's op set lacks, and its selection keys.
 *
 * - `layerNormKernel`: LayerNorm with weight and bias, one workgroup per row (the predictor's norm1).
 * - `geluKernel`, `siluKernel`: in place; GELU is the exact erf form, with the CPU predictor's erf fit.
 * - `writeRowsKernel`: appends rows into the importance-key store at a row offset.
 * - `butlerScoresKernel`: the predicted logits q̃_σ·K̃_σ[t]/√d′ of one query row over positions [0, n),
 *   per query head; they are the ranking keys the shared radix top-K (attention-select.ts) selects from.
 *   Positions outside [pinLo, pinHi) get the largest finite f32 (the window variant's pinned positions).
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

export const NORM_GROUP = 64;
export const POINTWISE_GROUP = 256;
export const SCORES_GROUP = 64;

/** Bindings: out, x, weight, bias. Params: rows, cols, eps. Mean first, then the biased variance (as the CPU predictor). */
export function layerNormKernel(): Kernel {
  return memoKernel("butler.layernorm", () => ({
    name: "butler.layernorm",
    bindings: ["write", "read", "read", "read"],
    code: /* wgsl */ `
struct P { rows: u32, cols: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> b: array<f32>;
const WG = ${NORM_GROUP}u;
var<workgroup> red: array<f32, WG>;
fn total(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}
@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let r = ${GROUP_INDEX};
  if (r >= p.rows) { return; }
  let base = r * p.cols;
  var s = 0.0;
  for (var i = lid; i < p.cols; i += WG) { s += x[base + i]; }
  let mean = total(s, lid) / f32(p.cols);
  var v = 0.0;
  for (var i = lid; i < p.cols; i += WG) { let d = x[base + i] - mean; v += d * d; }
  let inv = 1.0 / sqrt(total(v, lid) / f32(p.cols) + p.eps);
  for (var i = lid; i < p.cols; i += WG) { out[base + i] = (x[base + i] - mean) * inv * w[i] + b[i]; }
}`,
  }));
}

function pointwise(name: string, body: string, extra = ""): Kernel {
  return memoKernel(name, () => ({
    name,
    bindings: ["write"],
    code: /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
${extra}
@compute @workgroup_size(${POINTWISE_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${POINTWISE_GROUP}u + lid;
  if (i >= p.n) { return; }
  let v = x[i];
  x[i] = ${body};
}`,
  }));
}

/** x = 0.5·x·(1 + erf(x/√2)). Bindings: x. Params: n. erf: Numerical Recipes' erfc fit, as src/kv/tokenbutler/predictor.ts. */
export function geluKernel(): Kernel {
  return pointwise("butler.gelu", "0.5 * v * (1.0 + erf(v / 1.4142135623730951))", /* wgsl */ `
fn erf(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}`);
}

/** x = x / (1 + exp(−x)). Bindings: x. Params: n. */
export function siluKernel(): Kernel {
  return pointwise("butler.silu", "v / (1.0 + exp(-v))");
}

/** dst[base + i] = src[i] for i < n. Bindings: dst, src. Params: n, base. */
export function writeRowsKernel(): Kernel {
  return memoKernel("butler.writerows", () => ({
    name: "butler.writerows",
    bindings: ["write", "read"],
    code: /* wgsl */ `
struct P { n: u32, base: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@compute @workgroup_size(${POINTWISE_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${POINTWISE_GROUP}u + lid;
  if (i < p.n) { dst[p.base + i] = src[i]; }
}`,
  }));
}

/**
 * Bindings: keys (write, [heads][stride]), q̃ (one row [slots·d′]), K̃ ([position][slots·d′]).
 * Params: n, heads, layers, layer, dPrime, width (slots·d′), stride, scale, tiles (ceil(n / 64)).
 * One thread per (head, position): keys[h][t] = Σ_i q̃[σ·d′ + i]·K̃[t][σ·d′ + i] · scale, σ = h·layers + layer.
 */
export function butlerScoresKernel(): Kernel {
  return memoKernel("butler.scores", () => ({
    name: "butler.scores",
    bindings: ["write", "read", "read"],
    code: /* wgsl */ `
struct P { n: u32, heads: u32, layers: u32, layer: u32, dp: u32, width: u32, stride: u32, scale: f32, tiles: u32, pinLo: u32, pinHi: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> keys: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> kc: array<f32>;
@compute @workgroup_size(${SCORES_GROUP})
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  let h = id / p.tiles;
  let t = (id % p.tiles) * ${SCORES_GROUP}u + lid;
  if (h >= p.heads || t >= p.n) { return; }
  let o = (h * p.layers + p.layer) * p.dp;
  let kb = t * p.width + o;
  var s = 0.0;
  for (var i = 0u; i < p.dp; i++) { s += q[o + i] * kc[kb + i]; }
  // pinned positions (the window variant's anchors and window) take the largest finite f32: the top-K takes them first
  keys[h * p.stride + t] = select(s * p.scale, bitcast<f32>(0x7f7fffffu), t < p.pinLo || t >= p.pinHi);
}`,
  }));
}
