/**
 * The one description of a decoder-only transformer that every loader produces and every backend runs.
 * Field names are ours (camelCase); each loader translates its own format's names in one place.
 */
export interface ModelConfig {
  /** Architecture family as named by the source, e.g. "LlamaForCausalLM", "Qwen3ForCausalLM", "llama2.c". */
  readonly architecture: string;
  readonly vocabSize: number;
  /** Width of the residual stream. */
  readonly hiddenSize: number;
  /** Width of the SwiGLU feed-forward layer. */
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  /** Key/value heads; numHeads / numKvHeads query heads share each (grouped-query attention). */
  readonly numKvHeads: number;
  /** Per-head width; Qwen3 sets it explicitly, others derive hiddenSize / numHeads. */
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly rope: RopeConfig;
  /** Longest context the model was trained for. */
  readonly maxPositions: number;
  /** The output projection reuses the token embedding. */
  readonly tieEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2). */
  readonly attentionBias: boolean;
  /** RMSNorm on each query and key head before RoPE (Qwen3). */
  readonly qkNorm: boolean;
  readonly bosTokenId?: number;
  readonly eosTokenIds: readonly number[];
}

export type RopeConfig = {
  readonly theta: number;
  /** Rotated dimensions per head (all of them for every supported family). */
  readonly dim: number;
  readonly scaling?: RopeScaling;
  /** Explicit per-pair inverse frequencies (GGUF's rope_freqs); when present they replace theta and scaling. */
  readonly inverseFrequencies?: readonly number[];
};

export type RopeScaling =
  | { readonly type: "linear"; readonly factor: number }
  | {
      readonly type: "llama3";
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositions: number;
    };

/** Inverse frequencies per rotated pair, with the model's scaling applied (as transformers computes them). */
export function ropeInverseFrequencies(rope: RopeConfig): Float64Array {
  if (rope.inverseFrequencies) return Float64Array.from(rope.inverseFrequencies);
  const half = rope.dim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / rope.theta ** ((2 * i) / rope.dim);
  const s = rope.scaling;
  if (s?.type === "linear") {
    for (let i = 0; i < half; i++) inv[i] = inv[i]! / s.factor;
  } else if (s?.type === "llama3") {
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) inv[i] = f / s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
  }
  return inv;
}

/**
 * cos and sin of every position's angle for each inverse frequency, [position][pair], as every backend's
 * RoPE table holds them. The angle is formed in f32 before cos/sin, as transformers does, so that all
 * backends rotate by the same values and agree with it to the last bits.
 */
export function ropeCosSin(inv: Float64Array, maxPositions: number): { cos: Float32Array; sin: Float32Array } {
  const half = inv.length;
  const cos = new Float32Array(maxPositions * half);
  const sin = new Float32Array(maxPositions * half);
  for (let p = 0; p < maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * Math.fround(inv[i]!));
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
