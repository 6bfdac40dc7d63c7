/**
 * The browser entry point: loads a model from bytes (a file picker) or a URL (fetch) with the byte-level
 * parsers, onto WebGPU or a single-threaded CPU backend.
 *
 * Nothing in this module's import graph loads a node: module when it is evaluated: the few node: imports
 * left are dynamic, behind a Node check or inside file-path functions that browsers never call.
 */
import type { Backend } from "./backend/backend.js";
import { assembleModel } from "./model/assemble.js";
import type { Model } from "./model/model.js";
import type { LoadedSource } from "./io/source.js";
import { parseLlama2cCheckpoint, Llama2cTokenizer } from "./io/llama2c.js";
import { ggufFromBytes } from "./io/load-gguf.js";
import { FormatError } from "./io/errors.js";

export { Model, type GenerateOptions, type Piece, type GenerationStats } from "./model/model.js";
export type { ModelConfig } from "./model/config.js";
export type { Tokenizer } from "./io/tokenizer.js";

/** Where the forward pass runs in a browser. */
export type BrowserDevice = "webgpu" | "cpu";

/** A file's bytes and the name errors should call it by (a file name or URL). */
export interface NamedBytes {
  bytes: Uint8Array;
  name: string;
}

export interface BrowserLoadOptions {
  /** Defaults to "webgpu". */
  device?: BrowserDevice;
  /** Longest context (prompt + generated tokens) to serve; defaults to the model's own, capped at 32768 as in Node. */
  contextLength?: number;
  /** Reports progress: bytes fetched of the total (0 when the server does not say). */
  onProgress?: (what: string, done: number, total: number) => void;
  /** Aborts downloads. */
  signal?: AbortSignal;
}


/** Tokenizer file names looked for beside a llama2.c checkpoint URL, in order (as the Node loader does). */
const TOKENIZER_NAMES = ["tokenizer.bin", "tok512.bin", "tok4096.bin"];

/** True when the bytes start with GGUF's magic "GGUF". */
export function isGguf(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 4 && bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46;
}

/** True when the bytes look like a safetensors file: a u64 header length, then a JSON object. */
function isSafetensors(bytes: Uint8Array): boolean {
  if (bytes.byteLength < 9 || bytes[8] !== 0x7b) return false;
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  return headerLength > 1n && headerLength <= BigInt(bytes.byteLength - 8);
}

/**
 * Reads a model held in memory: a GGUF file, or a llama2.c checkpoint with its tokenizer.bin. Tensor
 * data may be views into `model.bytes`.
 */
export async function readSourceFromBytes(model: NamedBytes, tokenizer?: NamedBytes): Promise<LoadedSource> {
  if (isGguf(model.bytes)) return ggufFromBytes(model.bytes, model.name);
  if (isSafetensors(model.bytes)) {
    throw new FormatError(model.name, "safetensors checkpoints are not supported in the browser; convert the model to GGUF");
  }
  const { config, tensors } = parseLlama2cCheckpoint(model.bytes, model.name);
  if (!tokenizer) throw new FormatError(model.name, "a llama2.c checkpoint needs its tokenizer file (tokenizer.bin) as well");
  const tok = new Llama2cTokenizer(tokenizer.bytes, config.vocabSize, tokenizer.name);
  return { source: model.name, format: "llama2.c", config, tensors, tokenizer: tok };
}

/**
 * Why WebGPU cannot run here, or undefined when an adapter is available. The text says what to do
 * about it.
 */
export async function webGpuUnavailableReason(): Promise<string | undefined> {
  if (globalThis.isSecureContext === false) {
    return "WebGPU needs a secure context: open this page over https:// or from localhost.";
  }
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (!gpu) {
    return (
      "WebGPU is not available in this browser (navigator.gpu is missing). Use Chrome or Edge 113+, " +
      "Safari 26+ or Firefox 141+ (Windows); on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu. " +
      "Or choose the CPU device."
    );
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (e) {
    return `WebGPU: requesting an adapter failed (${(e as Error).message}). Choose the CPU device instead.`;
  }
  if (!adapter) {
    return (
      "WebGPU is present but the browser offered no GPU adapter: the GPU or its driver may be blocklisted, " +
      "or hardware acceleration is off (see chrome://gpu). Choose the CPU device instead."
    );
  }
  return undefined;
}

/** Opens the backend for `device`, with errors that say what the browser lacks. */
async function createBrowserBackend(device: BrowserDevice): Promise<Backend> {
  if (device === "webgpu") {
    const reason = await webGpuUnavailableReason();
    if (reason) throw new Error(reason);
    const { createWebGpuBackend } = await import("./backend/webgpu/webgpu-backend.js");
    return createWebGpuBackend();
  }
  if (device === "cpu") {
    const { createCpuBackend } = await import("./backend/cpu/cpu-backend.js");
    try {
      // one thread: the worker pool is built on node:worker_threads
      return await createCpuBackend({ threads: 1 });
    } catch (e) {
      if (globalThis.crossOriginIsolated === false) {
        throw new Error(
          `the CPU device needs a shared WebAssembly memory, which this browser allows only on cross-origin isolated ` +
            `pages (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp): ` +
            (e as Error).message,
        );
      }
      throw e;
    }
  }
  throw new Error(`device "${String(device)}" is not available in the browser (webgpu, cpu)`);
}

/** Puts a model read into memory onto the chosen device (as load.ts's loadModel does in Node). */
export async function modelFromSource(loaded: LoadedSource, options: Pick<BrowserLoadOptions, "device" | "contextLength"> = {}): Promise<Model> {
  return assembleModel(loaded, await createBrowserBackend(options.device ?? "webgpu"), options.contextLength);
}

/**
 * Loads a model from bytes in memory (a GGUF file, or a llama2.c checkpoint plus `tokenizer`) onto the
 * chosen device (default WebGPU).
 */
export async function loadModelFromBytes(
  bytes: Uint8Array,
  name: string,
  options: BrowserLoadOptions & { tokenizer?: NamedBytes } = {},
): Promise<Model> {
  const loaded = await readSourceFromBytes({ bytes, name }, options.tokenizer);
  return modelFromSource(loaded, options);
}

/**
 * Loads a model from a URL (a GGUF file or a llama2.c checkpoint) onto the chosen device (default
 * WebGPU). A llama2.c checkpoint's tokenizer comes from `tokenizerUrl`, else from the first of
 * <name>.tokenizer.bin, tokenizer.bin, tok512.bin, tok4096.bin beside it that the server has.
 */
export async function loadModelFromUrl(url: string, options: BrowserLoadOptions & { tokenizerUrl?: string } = {}): Promise<Model> {
  const bytes = await fetchBytes(url, options);
  let tokenizer: NamedBytes | undefined;
  if (!isGguf(bytes)) {
    const tokUrl = options.tokenizerUrl || (await findTokenizerUrl(url, options.signal));
    if (tokUrl) tokenizer = { bytes: await fetchBytes(tokUrl, options), name: tokUrl };
  }
  const loaded = await readSourceFromBytes({ bytes, name: url }, tokenizer);
  return modelFromSource(loaded, options);
}

/** Downloads `url` whole, reporting progress. */
export async function fetchBytes(url: string, options: Pick<BrowserLoadOptions, "onProgress" | "signal"> = {}): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url, options.signal ? { signal: options.signal } : {});
  } catch (e) {
    if (options.signal?.aborted) throw e;
    throw new Error(`${url}: could not fetch it (${(e as Error).message}); is the server reachable, and does it allow cross-origin requests?`);
  }
  if (!response.ok) throw new Error(`${url}: the server answered HTTP ${response.status} ${response.statusText}`.trimEnd());
  const total = Number(response.headers.get("content-length")) || 0;
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let done = 0;
  for (;;) {
    const next = await reader.read();
    if (next.done) break;
    chunks.push(next.value);
    done += next.value.byteLength;
    options.onProgress?.(url, done, total);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(done);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** The first tokenizer file beside a llama2.c checkpoint URL that the server has, if any. */
async function findTokenizerUrl(modelUrl: string, signal?: AbortSignal): Promise<string | undefined> {
  const base = new URL(modelUrl, globalThis.location?.href);
  const stem = base.pathname.split("/").pop()!.replace(/\.bin$/, "");
  for (const name of [`${stem}.tokenizer.bin`, ...TOKENIZER_NAMES]) {
    const candidate = new URL(name, base).href;
    const response = await fetch(candidate, { method: "HEAD", ...(signal ? { signal } : {}) }).catch(() => undefined);
    if (response?.ok) return candidate;
  }
  return undefined;
}
