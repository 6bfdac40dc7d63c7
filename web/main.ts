/**
 * The page's controller: reads the form, loads the chosen model (kept while the choice stays the same),
 * streams the generated text and reports speed. `document.body.dataset.state` tells scripts (the
 * end-to-end test) where it is: idle, loading, generating, done or error.
 */
import {
  loadModelFromBytes, loadModelFromUrl, webGpuUnavailableReason,
  type BrowserDevice, type Model, type NamedBytes,
} from "../src/browser.js";

type PageState = "idle" | "loading" | "generating" | "done" | "error";

const byId = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
};

const ui = {
  kindUrl: byId<HTMLInputElement>("source-kind-url"),
  kindFile: byId<HTMLInputElement>("source-kind-file"),
  urlFields: byId<HTMLDivElement>("url-fields"),
  fileFields: byId<HTMLDivElement>("file-fields"),
  modelUrl: byId<HTMLInputElement>("model-url"),
  tokenizerUrl: byId<HTMLInputElement>("tokenizer-url"),
  modelFile: byId<HTMLInputElement>("model-file"),
  tokenizerFile: byId<HTMLInputElement>("tokenizer-file"),
  device: byId<HTMLSelectElement>("device"),
  gpuNotice: byId<HTMLDivElement>("gpu-notice"),
  prompt: byId<HTMLTextAreaElement>("prompt"),
  maxTokens: byId<HTMLInputElement>("max-tokens"),
  temperature: byId<HTMLInputElement>("temperature"),
  seed: byId<HTMLInputElement>("seed"),
  generate: byId<HTMLButtonElement>("generate"),
  stop: byId<HTMLButtonElement>("stop"),
  status: byId<HTMLDivElement>("status"),
  error: byId<HTMLDivElement>("error"),
  shownPrompt: byId<HTMLSpanElement>("shown-prompt"),
  generated: byId<HTMLSpanElement>("generated"),
};

/** The loaded model and what it was loaded from, so that a repeated choice does not load it again. */
let loaded: { key: string; model: Model; label: string } | undefined;
let running: AbortController | undefined;

function setState(state: PageState, status: string): void {
  document.body.dataset.state = state;
  ui.status.textContent = status;
}

function showError(e: unknown): void {
  ui.error.textContent = e instanceof Error ? e.message : String(e);
  setState("error", "Failed (see below).");
}

const mb = (bytes: number): string => (bytes / 1e6).toFixed(bytes < 1e7 ? 2 : 0);

/** The form's sampling fields, checked. */
function readRequest(): { prompt: string; maxTokens: number; temperature: number; seed?: number } {
  const maxTokens = Number(ui.maxTokens.value);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error(`Max tokens must be a whole number of at least 1, not "${ui.maxTokens.value}"`);
  const temperature = Number(ui.temperature.value);
  if (ui.temperature.value.trim() === "" || !(temperature >= 0)) throw new Error(`Temperature must be 0 or more, not "${ui.temperature.value}"`);
  const seedText = ui.seed.value.trim();
  const seed = seedText === "" ? undefined : Number(seedText);
  if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`Seed must be a whole number or empty, not "${seedText}"`);
  return { prompt: ui.prompt.value, maxTokens, temperature, ...(seed === undefined ? {} : { seed }) };
}

/** Loads the model the form names onto the chosen device, unless it is the one already loaded. */
async function ensureModel(signal: AbortSignal): Promise<{ model: Model; label: string }> {
  const device = ui.device.value as BrowserDevice;
  const fromFiles = ui.kindFile.checked;
  const modelFile = ui.modelFile.files?.[0];
  const tokenizerFile = ui.tokenizerFile.files?.[0];
  const fileKey = (f?: File) => (f ? `${f.name}:${f.size}:${f.lastModified}` : "");
  const key = fromFiles
    ? `file|${fileKey(modelFile)}|${fileKey(tokenizerFile)}|${device}`
    : `url|${ui.modelUrl.value.trim()}|${ui.tokenizerUrl.value.trim()}|${device}`;
  if (loaded?.key === key) return loaded;
  loaded?.model.dispose();
  loaded = undefined;

  const t0 = performance.now();
  let model: Model;
  let name: string;
  if (fromFiles) {
    if (!modelFile) throw new Error("Choose a model file (.gguf, or a llama2.c .bin with its tokenizer), or switch to a URL.");
    name = modelFile.name;
    setState("loading", `Reading ${name} (${mb(modelFile.size)} MB)…`);
    const bytes = new Uint8Array(await modelFile.arrayBuffer());
    const tokenizer: NamedBytes | undefined = tokenizerFile
      ? { bytes: new Uint8Array(await tokenizerFile.arrayBuffer()), name: tokenizerFile.name }
      : undefined;
    setState("loading", `Loading ${name} onto ${device}…`);
    model = await loadModelFromBytes(bytes, name, { device, ...(tokenizer ? { tokenizer } : {}) });
  } else {
    const url = ui.modelUrl.value.trim();
    if (!url) throw new Error("Enter a model URL, or choose files.");
    name = url.split("/").pop() || url;
    const tokenizerUrl = ui.tokenizerUrl.value.trim();
    setState("loading", `Fetching ${url}…`);
    model = await loadModelFromUrl(url, {
      device,
      signal,
      ...(tokenizerUrl ? { tokenizerUrl } : {}),
      onProgress: (what, done, total) =>
        setState("loading", `Fetching ${what}: ${mb(done)}${total ? ` of ${mb(total)}` : ""} MB`),
    });
  }
  const adapter = (model.backend as { description?: string }).description;
  const label = `${name} on ${device === "webgpu" ? `WebGPU${adapter ? ` (${adapter})` : ""}` : "CPU"}`;
  loaded = { key, model, label };
  setState("loading", `Loaded ${label} in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  return loaded;
}

/** Lets the browser paint between tokens: the CPU backend otherwise never leaves the microtask queue. */
function paint(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

async function generate(): Promise<void> {
  ui.error.textContent = "";
  running = new AbortController();
  ui.generate.disabled = true;
  ui.stop.disabled = false;
  try {
    const request = readRequest();
    const { model, label } = await ensureModel(running.signal);
    ui.shownPrompt.textContent = request.prompt;
    ui.generated.textContent = "";
    setState("generating", `Generating on ${label}…`);
    let tokens = 0;
    let lastPaint = performance.now();
    const start = lastPaint;
    for await (const piece of model.generate(request.prompt, { ...request, signal: running.signal })) {
      if (piece.text) ui.generated.append(piece.text);
      if (piece.tokenId === undefined) continue;
      tokens++;
      const now = performance.now();
      if (now - lastPaint > 50) {
        ui.status.textContent = `Generating on ${label}: ${tokens} tokens, ${(tokens / ((now - start) / 1000)).toFixed(1)} tokens/s`;
        await paint();
        lastPaint = performance.now();
      }
    }
    const s = model.lastStats!;
    const decodeRate = s.generatedTokens / Math.max(s.decodeMs / 1000, 1e-9);
    const ending = s.finishReason === "stop" ? "end of text" : s.finishReason === "abort" ? "stopped" : "token limit";
    setState(
      "done",
      `${s.generatedTokens} tokens (${ending}) · ${decodeRate.toFixed(1)} tokens/s · prompt ${s.promptTokens} tokens in ${s.prefillMs.toFixed(0)} ms · ${label}`,
    );
  } catch (e) {
    showError(e);
  } finally {
    running = undefined;
    ui.generate.disabled = false;
    ui.stop.disabled = true;
  }
}

function showSourceKind(): void {
  ui.urlFields.classList.toggle("hidden", ui.kindFile.checked);
  ui.fileFields.classList.toggle("hidden", !ui.kindFile.checked);
}

ui.kindUrl.addEventListener("change", showSourceKind);
ui.kindFile.addEventListener("change", showSourceKind);
ui.generate.addEventListener("click", () => void generate());
ui.stop.addEventListener("click", () => running?.abort());
showSourceKind();

// say up front when WebGPU cannot run, and offer the CPU instead; data-webgpu tells scripts the outcome
void webGpuUnavailableReason().then((reason) => {
  document.body.dataset.webgpu = reason ? "unavailable" : "available";
  if (!reason) return;
  ui.gpuNotice.textContent = `${reason}\nSwitched to the CPU device.`;
  ui.device.value = "cpu";
});
