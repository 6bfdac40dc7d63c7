import type { ModelConfig } from "../model/config.js";
import type { TensorMap } from "../tensor/raw.js";
import type { Tokenizer } from "./tokenizer.js";

/** Everything a loader reads from a model source, before any backend is involved. */
export interface LoadedSource {
  /** A human-readable name of where it came from (a path, a hub id). */
  readonly source: string;
  /** The file format it was read from. */
  readonly format: "llama2.c" | "gguf" | "safetensors";
  readonly config: ModelConfig;
  readonly tensors: TensorMap;
  readonly tokenizer: Tokenizer;
  /** Defaults the model's authors recommend (generation_config.json or GGUF metadata). */
  readonly generation?: { temperature?: number; topK?: number; topP?: number; eosTokenIds?: number[] };
}
