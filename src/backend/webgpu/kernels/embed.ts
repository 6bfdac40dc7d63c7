/**
 * Token embedding: out[r] = table[tokens[r]], decoding any weight format. Token ids travel in the
 * parameter block (a storage binding, so it can hold an array), up to EMBED_TOKENS per dispatch.
 */
import { isPackedDType } from "../../../tensor/dtype.js";
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";
import { DECODE_HELPERS, SCALE_FN, elementDecoder, type GpuFormat as DType } from "../weights.js";
import { packedElementDecoder } from "./packed.js";

export const EMBED_PARAM_BYTES = 4096;
const HEADER_WORDS = 8;
/** Token ids one dispatch carries. */
export const EMBED_TOKENS = EMBED_PARAM_BYTES / 4 - HEADER_WORDS;
export const EMBED_GROUP = 256;

/**
 * Bindings: out, w, (scales), (slot). Params: n (tokens), cols, rowStart/rowEnd (rows of this weight
 * part), stride, blocks, outRow (first output row), mul (f32 bits; packed formats' row factor), then the
 * token ids. With `picked`, the one token id is word 0 of the slot buffer a device-side argmax or sample
 * wrote (pipelined decoding), not a param.
 */
export function embedKernel(format: DType, picked = false, tiled = true): Kernel {
  const packed = isPackedDType(format);
  const block = format === "q8_0" || format === "q4_0" || packed;
  const name = `embed.${format}${picked ? ".picked" : ""}${tiled ? "" : ".blocks"}`;
  const slotBinding = block ? 4 : 3;
  return memoKernel(name, () => ({
    name,
    params: "storage",
    paramBytes: EMBED_PARAM_BYTES,
    bindings: [...(block ? ["write", "read", "read"] as const : ["write", "read"] as const), ...(picked ? ["read"] as const : [])],
    code: /* wgsl */ `
struct P { n: u32, cols: u32, rowStart: u32, rowEnd: u32, stride: u32, blocks: u32, outRow: u32, mul: u32, tokens: array<u32> }
@group(0) @binding(0) var<storage, read> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
${block ? `@group(0) @binding(3) var<storage, read> sc: array<u32>;\n${packed ? "" : SCALE_FN}` : ""}
${picked ? `@group(0) @binding(${slotBinding}) var<storage, read> slot: array<u32>;` : ""}
${DECODE_HELPERS}
${isPackedDType(format) ? packedElementDecoder(format) : elementDecoder(format, tiled)}
@compute @workgroup_size(${EMBED_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${EMBED_GROUP}u + lid;
  if (i >= p.n * p.cols) { return; }
  let r = i / p.cols;
  let c = i % p.cols;
  let t = ${picked ? "slot[0]" : "p.tokens[r]"};
  if (t < p.rowStart || t >= p.rowEnd) { return; }
  out[(p.outRow + r) * p.cols + c] = wget(t - p.rowStart, c);
}`,
  }));
}
