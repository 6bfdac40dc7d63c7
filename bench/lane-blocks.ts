/**
 * The q4_0 prototype on kernels/lane-blocks.ts's skeleton (a lane owns whole q4_0 blocks of the file's
 * order, int8 x: llama.cpp's mmvq scheme), and the RaZeR pieces re-exported, for bench/gpu-gemv-anatomy.ts
 * and bench/gpu-razer-gemv.ts. Not in the backend: this prices q4_0's block layout before the layout is
 * changed.
 *
 * q4_0: GGUF blocks (16 nibble bytes, byte i: element i low, i + 16 high) and one f16 scale a block (u16
 * pairs). Σ (n − 8) q = Σ n q − 8 Σ q, so nibbles go into dot4I8Packed unmasked for sign.
 */
import { X_BINDINGS, X_LOADS, laneBlocksKernel } from "../src/backend/webgpu/kernels/lane-blocks.js";

export { laneBlocksRows, razerLaneKernel, razerRunsLayout, xPlanes, RAZER_LANE_VARIANTS, type RazerLaneVariant } from "../src/backend/webgpu/kernels/lane-blocks.js";

/**
 * q4_0 on int8 x. Bindings: P { n, k, o0, blocks }, xq, xs, w (vec4<u32> a block, row r's block b at
 * r · blocks + b), sc (u32 pairs of f16 block scales, same indexing), out.
 */
export function blockI8Kernel(R: number, S: number, U: number, subgroup: boolean): string {
  return laneBlocksKernel({
    params: "n: u32, k: u32, o0: u32, blocks: u32",
    decls: `${X_BINDINGS}
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> sc: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
fn wscale(i: u32) -> f32 { return unpack2x16float(sc[i >> 1u])[i & 1u]; }
fn bdot(q: vec4<u32>, a: vec4<u32>, b: vec4<u32>) -> i32 {
  let m = 0x0f0f0f0fu;
  return dot4I8Packed(q.x & m, a.x) + dot4I8Packed(q.y & m, a.y) + dot4I8Packed(q.z & m, a.z) + dot4I8Packed(q.w & m, a.w)
       + dot4I8Packed((q.x >> 4u) & m, b.x) + dot4I8Packed((q.y >> 4u) & m, b.y) + dot4I8Packed((q.z >> 4u) & m, b.z) + dot4I8Packed((q.w >> 4u) & m, b.w);
}`,
    rowLets: (j, r) => `let w${j} = ${r} * p.blocks;`,
    loadX: X_LOADS,
    loadW: (j, b, t) => `let q${j}${t} = w[w${j} + ${b}]; let d${j}${t} = wscale(w${j} + ${b});`,
    step: (j, t) => `acc${j} += d${j}${t} * xs${t}.x * i2f(bdot(q${j}${t}, xa${t}, xb${t}) - 8 * i32(xs${t}.y));`,
    post: (j) => `acc${j}`,
  }, R, S, U, subgroup);
}

