/**
 * Quantizes a model's tensors (a TensorMap, before any backend sees it) into one of src/quant's formats:
 * every linear projection inside the transformer blocks (q, k, v, o, gate, up, down). The embedding stays
 * in its stored format (a gather, not a matmul: quantizing it saves memory, not time, and the papers keep
 * it) and so does lm_head unless `lmHead` is set (the spec's paper-comparable setting keeps it; with tied
 * embeddings a separate quantized lm_head.weight is then added and the embedding is left alone). Norms and
 * biases are vectors and stay as they are.
 */
import { decodeRow } from "../backend/cpu/reference.js";
import { isPackedDType } from "../tensor/dtype.js";
import type { RawTensor, TensorMap } from "../tensor/raw.js";
import type { PackOptions } from "./format.js";
import { quantFormat } from "./formats.js";
import { packedToRaw } from "./packed-raw.js";

/** Names of the linear projections that get quantized. */
export const LINEAR_WEIGHT = /^model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$/;

/** A quantizer of one weight: from f32 [rows, cols] to a packed RawTensor (RTN by default; see calibrate.ts). */
export type WeightQuantizer = (name: string, w: Float32Array, rows: number, cols: number) => RawTensor;

export interface QuantizeModelOptions {
  /** Also quantize lm_head (a separate copy of the embedding when they are tied). */
  lmHead?: boolean;
  /** Packer options for plain round-to-nearest (e.g. { clip: true } for the weight-MSE clipping search). */
  pack?: PackOptions;
  /** Replaces plain round-to-nearest (calibrated quantizers). */
  quantizer?: WeightQuantizer;
  /** Progress in f32 bytes quantized of total. */
  onProgress?: (what: string, done: number, total: number) => void;
}

/** A 2-D tensor of any stored format as f32 [rows, cols]. */
export function tensorToF32(t: RawTensor): { w: Float32Array; rows: number; cols: number } {
  if (t.shape.length !== 2) throw new Error(`tensor ${t.name}: shape [${t.shape.join(", ")}] is not a matrix`);
  const [rows, cols] = t.shape as [number, number];
  const w = new Float32Array(rows * cols);
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    decodeRow(t.dtype, t.data, r, cols, row);
    w.set(row, r * cols);
  }
  return { w, rows, cols };
}

/** The tensors `quantizeTensors` replaces, in map order. */
export function quantizedNames(tensors: TensorMap, lmHead = false): string[] {
  const names = [...tensors.keys()].filter((n) => LINEAR_WEIGHT.test(n));
  if (lmHead) names.push("lm_head.weight");
  return names;
}

/** Quantizes the linear weights of `tensors` in place into `formatName` (an error lists the known names). */
export function quantizeTensors(tensors: TensorMap, formatName: string, options: QuantizeModelOptions = {}): void {
  const format = quantFormat(formatName);
  const names = quantizedNames(tensors, options.lmHead);
  if (options.lmHead && !tensors.has("lm_head.weight")) {
    const embed = tensors.get("model.embed_tokens.weight");
    if (!embed) throw new Error("cannot quantize lm_head: the model has neither lm_head.weight nor model.embed_tokens.weight");
    tensors.set("lm_head.weight", { ...embed, name: "lm_head.weight" });
  }
  const size = (n: string) => tensors.get(n)!.shape.reduce((a, b) => a * b, 1);
  const total = names.reduce((a, n) => a + size(n), 0);
  const what = `quantizing to ${format.name}`;
  let done = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    if (isPackedDType(t.dtype)) throw new Error(`tensor ${name} is already quantized (${t.dtype}); load the unquantized model to quantize it as ${format.name}`);
    const { w, rows, cols } = tensorToF32(t);
    const packed = options.quantizer
      ? options.quantizer(name, w, rows, cols)
      : packedToRaw(name, format.pack(w, rows, cols, options.pack), t.shape);
    tensors.set(name, packed);
    done += rows * cols;
    options.onProgress?.(what, 4 * done, 4 * total);
  }
  if (total === 0) options.onProgress?.(what, 1, 1);
}
