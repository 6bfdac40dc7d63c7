/**
 * RoPE of q and k and the KV write in one dispatch: one thread per half-split pair (i, i + half) of q
 * (rotated in place) or of k (rotated into the cache at positions pos0.., with v's two values at the
 * same places copied beside it). The arithmetic is rope.ts's, so the results are those of rope, rope,
 * kvWrite; k itself is left unrotated (nothing reads it after the write).
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

export const ROPE_KV_GROUP = 256;

/**
 * Bindings: q, kCache, vCache, k, v, cos, sin. Params: qPairs (rows * qCols / 2), kPairs (rows * kvCols / 2),
 * qCols, kvCols, headDim, half, pos0, tableHalf. Grid: ceil((qPairs + kPairs) / ROPE_KV_GROUP).
 */
export function ropeKvWriteKernel(): Kernel {
  return memoKernel("ropeKvWrite", () => ({
    name: "ropeKvWrite",
    bindings: ["write", "write", "write", "read", "read", "read", "read"],
    code: /* wgsl */ `
struct P { qPairs: u32, kPairs: u32, qCols: u32, kvCols: u32, headDim: u32, half: u32, pos0: u32, tableHalf: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<f32>;
@group(0) @binding(3) var<storage, read_write> vc: array<f32>;
@group(0) @binding(4) var<storage, read> k: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
@group(0) @binding(6) var<storage, read> cosT: array<f32>;
@group(0) @binding(7) var<storage, read> sinT: array<f32>;
@compute @workgroup_size(${ROPE_KV_GROUP})
fn main(${ENTRY_ARGS}) {
  let g = ${GROUP_INDEX} * ${ROPE_KV_GROUP}u + lid;
  let isQ = g < p.qPairs;
  let t = select(g - p.qPairs, g, isQ);
  if (!isQ && t >= p.kPairs) { return; }
  let cols = select(p.kvCols, p.qCols, isQ);
  let perRow = cols / 2u;
  let r = t / perRow;
  let rem = t % perRow;
  let h = rem / p.half;
  let i = rem % p.half;
  let base = r * cols + h * p.headDim;
  let at = (p.pos0 + r) * p.tableHalf + i;
  let c = cosT[at];
  let s = sinT[at];
  if (isQ) {
    let a = q[base + i];
    let b = q[base + i + p.half];
    q[base + i] = a * c - b * s;
    q[base + i + p.half] = b * c + a * s;
    return;
  }
  let a = k[base + i];
  let b = k[base + i + p.half];
  let dst = p.pos0 * p.kvCols + base;
  kc[dst + i] = a * c - b * s;
  kc[dst + i + p.half] = b * c + a * s;
  vc[dst + i] = v[base + i];
  vc[dst + i + p.half] = v[base + i + p.half];
}`,
  }));
}
