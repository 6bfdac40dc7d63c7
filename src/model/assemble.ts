import type { Backend } from "../backend/backend.js";
import type { LoadedSource } from "../io/source.js";
import { LlamaModel } from "./llama.js";
import { Model } from "./model.js";

/**
 * The longest context served by default: a model's own, capped so that a 128K-context model does not
 * build tables for positions nobody uses. `contextLength` raises or lowers it.
 */
export const DEFAULT_CONTEXT_CAP = 32768;

/**
 * Puts a model read into memory onto a backend: checks and uploads every tensor, then drops the file's
 * copies (the backend holds its own), so weights are resident once. The backend is disposed if this
 * fails. Shared by Node's loadModel and the browser entry.
 */
export function assembleModel(loaded: LoadedSource, backend: Backend, contextLength?: number): Model {
  try {
    const context = contextLength ?? Math.min(loaded.config.maxPositions, DEFAULT_CONTEXT_CAP);
    const network = LlamaModel.create(loaded.config, loaded.tensors, backend, loaded.source, context);
    loaded.tensors.clear();
    return new Model(loaded, backend, network);
  } catch (e) {
    backend.dispose();
    throw e;
  }
}
