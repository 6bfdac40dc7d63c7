import type { DType } from "./dtype.js";
import { tensorBytes } from "../quant/packed-raw.js";

/**
 * A tensor as a file holds it, before any backend sees it: a name, a storage format, a shape in
 * row-major order with the outermost dimension first (PyTorch's order, so a linear weight is
 * [outFeatures, inFeatures]), and its bytes. Loaders produce these; backends upload them.
 */
export interface RawTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function rawTensor(name: string, dtype: DType, shape: readonly number[], data: Uint8Array): RawTensor {
  let need: number;
  try {
    need = tensorBytes(dtype, shape, data);
  } catch (e) {
    throw new Error(`tensor ${name}: ${(e as Error).message}`);
  }
  if (data.byteLength !== need) {
    throw new Error(`tensor ${name}: ${dtype} [${shape.join(", ")}] needs ${need} bytes, got ${data.byteLength}`);
  }
  return { name, dtype, shape: [...shape], data };
}

/** A tensor source a loader exposes: names are the architecture's canonical names (see model/weights). */
export type TensorMap = Map<string, RawTensor>;
