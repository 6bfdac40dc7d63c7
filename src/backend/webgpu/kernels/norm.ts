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
 * read), eps. `vec4` (group and xBase multiples of 4) reads and writes vec4s: a decode row is one
 * workgroup on one SM, so it is bound by the latency of its loads, and a quarter as many helps.
 */
export function rmsnormKernel(threads: number, inPlace: boolean, vec4 = false): Kernel {
  return memoKernel(`rmsnorm.${threads}.${+inPlace}${vec4 ? ".v4" : ""}`, () => {
    const X = inPlace ? "out" : "x";
    const T = vec4 ? "vec4<f32>" : "f32";
    const L = vec4 ? 4 : 1;
    const code = /* wgsl */ `
struct P { groups: u32, group: u32, xBase: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<${T}>;
${inPlace ? "" : `@group(0) @binding(2) var<storage, read> x: array<${T}>;`}
@group(0) @binding(${inPlace ? 2 : 3}) var<storage, read> weight: array<${T}>;
const WG = ${threads}u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(${ENTRY_ARGS}) {
  let g = ${GROUP_INDEX};
  if (g >= p.groups) { return; }
  let n = p.group / ${L}u;
  let base = g * n;
  let xb = p.xBase / ${L}u;
  var ss = 0.0;
  for (var i = lid; i < n; i += WG) {
    let v = ${X}[xb + base + i];
    ss += ${vec4 ? "dot(v, v)" : "v * v"};
  }
  red[lid] = ss;
  workgroupBarrier();
  // a log2(WG)-step tree: every thread reading all WG partial sums serially took ~20 us a row on an H200
  for (var w = WG / 2u; w > 0u; w = w / 2u) {
    if (lid < w) { red[lid] += red[lid + w]; }
    workgroupBarrier();
  }
  let scale = 1.0 / sqrt(red[0] / f32(p.group) + p.eps);
  for (var i = lid; i < n; i += WG) {
    out[base + i] = weight[i] * (${X}[xb + base + i] * scale);
  }
}`;
    return { name: "rmsnorm", code, bindings: inPlace ? ["write", "read"] : ["write", "read", "read"] };
  });
}
