/**
 * Token embedding of tokens picked on the device for several sequences (pipelined batched decoding):
 * out[i] = table[slot[rows[i] * S]], where `pickRowsAhead` left row r's token id in word r * S of the
 * slot buffer (S: the storage offset alignment in words, so each row's id had a bindable slot). The
 * decoding is embed.ts's, for every weight format; the row indices travel in the parameter block.
 */
import { isPackedDType } from "../../../tensor/dtype.js";
import { ENTRY_ARGS, GROUP_INDEX, memoKernel, type Kernel } from "../kernel.js";
import { DECODE_HELPERS, SCALE_FN, elementDecoder, type GpuFormat as DType } from "../weights.js";
import { packedElementDecoder } from "./packed.js";
import { EMBED_GROUP, EMBED_PARAM_BYTES } from "./embed.js";

/**
 * Bindings: out, w, (scales), slot. Params: n (rows), cols, rowStart/rowEnd (rows of this weight part),
 * stride, blocks, outRow, mul (f32 bits), then the picked row of each output row.
 */
export function embedRowsKernel(format: DType, slotWords: number, tiled = true): Kernel {
  const packed = isPackedDType(format);
  const block = format === "q8_0" || format === "q4_0" || packed;
  const name = `embed.${format}.rows${tiled ? "" : ".blocks"}`;
  return memoKernel(`${name}.${slotWords}`, () => ({
    name,
    params: "storage",
    paramBytes: EMBED_PARAM_BYTES,
    bindings: [...(block ? ["write", "read", "read"] as const : ["write", "read"] as const), "read"],
    code: /* wgsl */ `
struct P { n: u32, cols: u32, rowStart: u32, rowEnd: u32, stride: u32, blocks: u32, outRow: u32, mul: u32, rows: array<u32> }
@group(0) @binding(0) var<storage, read> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
${block ? `@group(0) @binding(3) var<storage, read> sc: array<u32>;\n${packed ? "" : SCALE_FN}` : ""}
@group(0) @binding(${block ? 4 : 3}) var<storage, read> slot: array<u32>;
${DECODE_HELPERS}
${packed ? packedElementDecoder(format) : elementDecoder(format, tiled)}
@compute @workgroup_size(${EMBED_GROUP})
fn main(${ENTRY_ARGS}) {
  let i = ${GROUP_INDEX} * ${EMBED_GROUP}u + lid;
  if (i >= p.n * p.cols) { return; }
  let r = i / p.cols;
  let c = i % p.cols;
  let t = slot[p.rows[r] * ${slotWords}u];
  if (t < p.rowStart || t >= p.rowEnd) { return; }
  out[(p.outRow + r) * p.cols + c] = wget(t - p.rowStart, c);
}`,
  }));
}
