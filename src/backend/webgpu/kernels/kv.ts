/** Appending keys and values to a layer's cache: a copy of n rows to positions pos0.. (one thread per value). */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

export const KV_GROUP = 256;

/** Bindings: kCache, vCache, k, v. Params: n (values), dstBase (first value in the cache). */
export function kvWriteKernel(): Kernel {
  return memoKernel("kvWrite", () => ({
    name: "kvWrite",
    bindings: ["write", "write", "read", "read"],
    code: /* wgsl */ `
struct P { n: u32, dstBase: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> kc: array<f32>;
@group(0) @binding(2) var<storage, read_write> vc: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@compute @workgroup_size(${KV_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${KV_GROUP}u + lid;
  if (i >= p.n) { return; }
  kc[p.dstBase + i] = k[i];
  vc[p.dstBase + i] = v[i];
}`,
  }));
}

/**
 * Quantizes n rows of `heads` heads of D values into an int8 KV cache at positions pos0..: per (row, head)
 * s = max|x|/127, codes clamp(round-half-away(x/s), ±127) packed four to a u32 (lowest byte first), the
 * same rule as src/quant/int8.ts on one head row. One workgroup per (row, head); run once for K, once for V.
 * Bindings: codes, scales, src. Params: heads, pos0, items (rows * heads).
 */
export function kvWriteInt8Kernel(headDim: number): Kernel {
  if (headDim % 4 !== 0 || headDim > 256) throw new Error(`int8 KV cache: head dim ${headDim} must be a multiple of 4 and at most 256`);
  return memoKernel(`kvWrite.int8.${headDim}`, () => ({
    name: "kvWrite.int8",
    bindings: ["write", "write", "read"],
    code: /* wgsl */ `
struct P { heads: u32, pos0: u32, items: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> codes: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<f32>;
@group(0) @binding(3) var<storage, read> src: array<f32>;
const D = ${headDim}u;
const Q = ${headDim / 4}u;
var<workgroup> red: array<f32, 64>;
fn code(x: f32, s: f32) -> u32 {
  if (s <= 0.0) { return 0u; }
  let r = clamp(sign(x) * floor(abs(x / s) + 0.5), -127.0, 127.0);
  return u32(i32(r)) & 0xffu;
}
@compute @workgroup_size(64)
fn main(${ENTRY_ARGS}) {
  let id = ${GROUP_INDEX};
  if (id >= p.items) { return; }
  let r = id / p.heads;
  let h = id % p.heads;
  let base = id * D;
  var m = 0.0;
  var x = vec4<f32>(0.0);
  if (lid < Q) {
    x = vec4<f32>(src[base + 4u * lid], src[base + 4u * lid + 1u], src[base + 4u * lid + 2u], src[base + 4u * lid + 3u]);
    m = max(max(abs(x.x), abs(x.y)), max(abs(x.z), abs(x.w)));
  }
  red[lid] = m;
  workgroupBarrier();
  var amax = 0.0;
  for (var u = 0u; u < Q; u++) { amax = max(amax, red[u]); }
  let s = amax / 127.0;
  let dst = (p.pos0 + r) * p.heads + h;
  if (lid == 0u) { scales[dst] = s; }
  if (lid < Q) {
    codes[dst * Q + lid] = code(x.x, s) | (code(x.y, s) << 8u) | (code(x.z, s) << 16u) | (code(x.w, s) << 24u);
  }
}`,
  }));
}
