/**
 * Rotary position embedding in place, half-split pairs (i, i + headDim/2): one thread per pair.
 * cos/sin come from the table the backend uploads (the CPU backend's values, so both agree).
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

export const ROPE_GROUP = 256;

/** Bindings: x, cos, sin. Params: pairs (rows * cols / 2), cols, headDim, half, pos0, tableHalf. */
export function ropeKernel(): Kernel {
  return memoKernel("rope", () => ({
    name: "rope",
    bindings: ["write", "read", "read"],
    code: /* wgsl */ `
struct P { pairs: u32, cols: u32, headDim: u32, half: u32, pos0: u32, tableHalf: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> cosT: array<f32>;
@group(0) @binding(3) var<storage, read> sinT: array<f32>;
@compute @workgroup_size(${ROPE_GROUP})
fn main(${ENTRY_ARGS}) {
  let t = ${GROUP_INDEX} * ${ROPE_GROUP}u + lid;
  if (t >= p.pairs) { return; }
  let perRow = p.cols / 2u;
  let r = t / perRow;
  let rem = t % perRow;
  let h = rem / p.half;
  let i = rem % p.half;
  let base = r * p.cols + h * p.headDim;
  let at = (p.pos0 + r) * p.tableHalf + i;
  let c = cosT[at];
  let s = sinT[at];
  let a = x[base + i];
  let b = x[base + i + p.half];
  x[base + i] = a * c - b * s;
  x[base + i + p.half] = b * c + a * s;
}`,
  }));
}
