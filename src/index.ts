export { loadModel, readSource, DEFAULT_MODEL, type LoadOptions } from "./load.js";
export { Model, type GenerateOptions, type Piece, type GenerationStats } from "./model/model.js";
export type { ModelConfig } from "./model/config.js";
export type { ChatMessage } from "./generate/chat-template.js";
export type { Tokenizer } from "./io/tokenizer.js";
export type { Backend } from "./backend/backend.js";
/** Node 20: turn on relaxed SIMD (faster sparse CPU kernels, same results) before the first model loads. */
export { enableRelaxedSimd } from "./backend/cpu/relaxed-simd.js";
