/**
 * RMSNorm: one workgroup per group of `group` consecutive values (a row, or a head for q/k norms).
 * Sums of squares are reduced by a tree in workgroup memory; each thread then scales its values.
 */
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";

/** Threads per workgroup for a group width: narrow groups waste fewer idle threads. */
export function normThreads(group: number): number {
  return group >= 1024 ? 256 : 64;
}

/**
 * Bindings: out, (x unless in place), weight (f32). Params: groups, group, xBase (first element of x
 * read), eps.
 */
export function rmsnormKernel(threads: number, inPlace: boolean): Kernel {
  return memoKernel(`rmsnorm.${threads}.${+inPlace}`, () => {
    const X = inPlace ? "out" : "x";
    const code = /* wgsl */ `
struct P { groups: u32, group: u32, xBase: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${inPlace ? "" : "@group(0) @binding(2) var<storage, read> x: array<f32>;"}
@group(0) @binding(${inPlace ? 2 : 3}) var<storage, read> weight: array<f32>;
const WG = ${threads}u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let g = ${GROUP_INDEX};
  if (g >= p.groups) { return; }
  let base = g * p.group;
  var ss = 0.0;
  for (var i = lid; i < p.group; i += WG) {
    let v = ${X}[p.xBase + base + i];
    ss += v * v;
  }
  red[lid] = ss;
  workgroupBarrier();
  // a log2(WG)-step tree: every thread reading all WG partial sums serially took ~20 us a row on an H200
  for (var w = WG / 2u; w > 0u; w = w / 2u) {
    if (lid < w) { red[lid] += red[lid + w]; }
    workgroupBarrier();
  }
  let scale = 1.0 / sqrt(red[0] / f32(p.group) + p.eps);
  for (var i = lid; i < p.group; i += WG) {
    out[base + i] = weight[i] * (${X}[p.xBase + base + i] * scale);
  }
}`;
    return { name: "rmsnorm", code, bindings: inPlace ? ["write", "read"] : ["write", "read", "read"] };
  });
}
