export { loadModel, readSource, DEFAULT_MODEL, type LoadOptions } from "./load.js";
export { Model, type GenerateOptions, type Piece, type GenerationStats } from "./model/model.js";
export type { ModelConfig } from "./model/config.js";
export type { ChatMessage } from "./generate/chat-template.js";
export type { Tokenizer } from "./io/tokenizer.js";
export type { Backend } from "./backend/backend.js";
