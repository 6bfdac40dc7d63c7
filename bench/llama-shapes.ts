/** The Llama shapes the GPU decode benchmarks run (random weights: bench/make-random-gguf.ts). */

/** A Llama-shaped model: residual width, layers, FFN width, query and KV heads, vocabulary, tied embedding. */
export interface Shape {
  dim: number;
  layers: number;
  ffn: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  tied: boolean;
}

/** Llama 3.2 1B and Llama 3.1 8B as their config.json files give them. */
export const SHAPES: Record<string, Shape> = {
  "llama-3.2-1b": { dim: 2048, layers: 16, ffn: 8192, heads: 32, kvHeads: 8, vocab: 128256, tied: true },
  "llama-3.1-8b": { dim: 4096, layers: 32, ffn: 14336, heads: 32, kvHeads: 8, vocab: 128256, tied: false },
};
