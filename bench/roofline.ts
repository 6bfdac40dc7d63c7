/**
 * Bytes a batch-1 decode step must read, for a memory-bound roofline: at best a step takes
 * (weights + KV cache read) / bandwidth. Counted at the file's formats, which the WebGPU backend keeps
 * (q8_0/q4_0 blocks are split into quants and scales of the same total; vectors are f32 in both).
 */
import type { ModelConfig } from "../src/model/config.js";
import { byteSize, type BlockDType as DType } from "../src/tensor/dtype.js";

/**
 * Weight bytes one decode step reads when every matrix is `dtype` and every vector f32: all layer
 * matrices and norms (biases and q/k norms where the config has them), the final norm, the whole output
 * projection (the embedding when tied) and one row of the embedding.
 */
export function decodeWeightBytes(c: ModelConfig, dtype: DType): number {
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const matrix = (rows: number, cols: number) => byteSize(dtype, rows * cols);
  const vector = (n: number) => byteSize("f32", n);
  let layer =
    matrix(qDim, c.hiddenSize) + 2 * matrix(kvDim, c.hiddenSize) + matrix(c.hiddenSize, qDim) +
    2 * matrix(c.intermediateSize, c.hiddenSize) + matrix(c.hiddenSize, c.intermediateSize) +
    2 * vector(c.hiddenSize);
  if (c.attentionBias) layer += vector(qDim + 2 * kvDim);
  if (c.qkNorm) layer += 2 * vector(c.headDim);
  return c.numLayers * layer + vector(c.hiddenSize) + matrix(c.vocabSize, c.hiddenSize) + matrix(1, c.hiddenSize);
}

/** KV-cache bytes one decode step reads at `depth` cached positions: K and V of every layer, read once. */
export function kvReadBytes(c: ModelConfig, depth: number, bytesPerValue: number): number {
  return 2 * c.numLayers * depth * c.numKvHeads * c.headDim * bytesPerValue;
}

/** The fastest decode a device of `bandwidthGBs` (GB/s, 1e9) allows when a step reads `bytes`, in tokens/s. */
export function rooflineTokensPerSecond(bytes: number, bandwidthGBs: number): number {
  return (bandwidthGBs * 1e9) / bytes;
}
