/**
 * End-to-end test of the browser page (web/): builds it with Vite, serves the build with Vite's preview
 * server on 127.0.0.1, drives it in headless Chromium (WebGPU on SwiftShader, a CPU Vulkan) and checks
 * that the page generates exactly the text Node's CPU backend generates for the same request.
 *
 * FRUGAL_UPDATE_SCREENSHOT=1 also saves the page after generation as docs/web-page.png.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import type { PreviewServer } from "vite";
import { ROOT, STORIES, STORIES_TOKENIZER } from "../paths.js";
import { loadModel } from "../../src/load.js";
import { tinyConfig, randomHfTensors, tinyGguf } from "../io/gguf-fixture.js";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless=new",
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-angle=swiftshader",
  "--use-webgpu-adapter=swiftshader",
  "--disable-gpu-sandbox",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const PROMPT = "Once upon a time";
/** Longest a load plus generation may take in the page (SwiftShader compiles the kernels on first use). */
const GENERATE_TIMEOUT_MS = 40_000;

const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (apt-get install chromium)`;

let tmp: string;
let server: PreviewServer | undefined;
let baseUrl: string;
let browser: Browser | undefined;
let context: BrowserContext | undefined;

before(async () => {
  if (skip) return;
  tmp = mkdtempSync(join(tmpdir(), "frugal-web-"));
  const vite = await import("vite");
  const configFile = join(ROOT, "web/vite.config.ts");
  const outDir = join(tmp, "site");
  // the build's expected warnings (node: modules behind Node checks, kernels.wasm emitted by the config) are noise here
  await vite.build({ configFile, logLevel: "error", build: { outDir } });
  server = await vite.preview({ configFile, logLevel: "error", build: { outDir }, preview: { host: "127.0.0.1", port: 0, strictPort: true } });
  const address = server.httpServer.address();
  assert.ok(address && typeof address === "object", "the preview server is not listening");
  baseUrl = `http://127.0.0.1:${address.port}/`;
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
  context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
});

after(async () => {
  await context?.close();
  await browser?.close();
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Opens the page and waits until it has checked for WebGPU; collects the page's console errors. */
async function openPage(): Promise<{ page: Page; problems: string[] }> {
  const page = await context!.newPage();
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  await page.goto(baseUrl);
  await page.waitForFunction(() => document.body.dataset.webgpu !== undefined, undefined, { timeout: 15_000 });
  return { page, problems };
}

async function fillRequest(page: Page, device: "webgpu" | "cpu", maxTokens: number): Promise<void> {
  await page.selectOption("#device", device);
  await page.fill("#prompt", PROMPT);
  await page.fill("#max-tokens", String(maxTokens));
  await page.fill("#temperature", "0");
  await page.fill("#seed", "");
}

/** Clicks Generate and waits for the page to finish; returns the generated text, status and error text. */
async function generate(page: Page): Promise<{ state: string; text: string; status: string; error: string }> {
  await page.click("#generate");
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state ?? ""), undefined, { timeout: GENERATE_TIMEOUT_MS });
  return page.evaluate(() => ({
    state: document.body.dataset.state!,
    text: document.getElementById("generated")!.textContent!,
    status: document.getElementById("status")!.textContent!,
    error: document.getElementById("error")!.textContent!,
  }));
}

/** What Node's CPU backend generates for the same greedy request. */
async function nodeText(source: string, maxTokens: number): Promise<string> {
  const model = await loadModel(source);
  try {
    return await model.complete(PROMPT, { maxTokens, temperature: 0 });
  } finally {
    model.dispose();
  }
}

test("the page generates on WebGPU, from the default model URL, exactly Node's greedy text", { skip }, async () => {
  const { page, problems } = await openPage();
  assert.equal(await page.evaluate(() => document.body.dataset.webgpu), "available", await page.textContent("#gpu-notice") ?? "");
  await fillRequest(page, "webgpu", 40);
  const r = await generate(page);
  assert.equal(r.state, "done", `${r.error}\n${problems.join("\n")}`);
  assert.equal(r.text, await nodeText(STORIES, 40));
  assert.match(r.status, /^40 tokens \(token limit\) · [\d.]+ tokens\/s · prompt \d+ tokens in \d+ ms · stories260K\.bin on WebGPU/);
  const shot = join(tmp, "web-page.png");
  await page.screenshot({ path: shot, fullPage: true });
  assert.deepEqual([...readFileSync(shot).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  if (process.env.FRUGAL_UPDATE_SCREENSHOT === "1") copyFileSync(shot, join(ROOT, "docs/web-page.png"));
  await page.close();
});

test("the page generates on the CPU, from llama2.c files chosen in the file picker, with the WebAssembly kernels, exactly Node's text", { skip }, async () => {
  const { page, problems } = await openPage();
  const wasm: number[] = [];
  page.on("response", (r) => {
    if (r.url().endsWith("/kernels.wasm")) wasm.push(r.status());
  });
  assert.equal(await page.evaluate(() => crossOriginIsolated), true, "the preview server must send COOP/COEP headers");
  await page.check("#source-kind-file");
  await page.setInputFiles("#model-file", STORIES);
  await page.setInputFiles("#tokenizer-file", STORIES_TOKENIZER);
  await fillRequest(page, "cpu", 60);
  const r = await generate(page);
  assert.equal(r.state, "done", `${r.error}\n${problems.join("\n")}`);
  assert.equal(r.text, await nodeText(STORIES, 60));
  assert.match(r.status, /· stories260K\.bin on CPU$/);
  assert.deepEqual(wasm, [200], "the CPU backend fetches its WebAssembly kernels once");
  await page.close();
});

// on the CPU: WebGPU on SwiftShader would spend seconds compiling kernels for this model's shapes
test("the page reads a GGUF file from the file picker and generates on the CPU exactly Node's text", { skip }, async () => {
  const config = tinyConfig("llama", { maxPositions: 64 });
  const file = join(tmp, "tiny-llama.gguf");
  writeFileSync(file, tinyGguf(config, randomHfTensors(config, 7), "f32"));
  const { page, problems } = await openPage();
  await page.check("#source-kind-file");
  await page.setInputFiles("#model-file", file);
  await fillRequest(page, "cpu", 20);
  const r = await generate(page);
  assert.equal(r.state, "done", `${r.error}\n${problems.join("\n")}`);
  const expected = await nodeText(file, 20);
  assert.ok(expected.length > 0);
  assert.equal(r.text, expected);
  assert.match(r.status, /· tiny-llama\.gguf on CPU$/);
  await page.close();
});

test("a llama2.c URL without a tokenizer URL finds the tokenizer beside it, as the Node loader does", { skip }, async () => {
  const { page, problems } = await openPage();
  await page.fill("#tokenizer-url", "");
  await fillRequest(page, "cpu", 30);
  const r = await generate(page);
  assert.equal(r.state, "done", `${r.error}\n${problems.join("\n")}`);
  assert.equal(r.text, await nodeText(STORIES, 30));
  await page.close();
});

test("bad models give clear errors: a missing URL, a truncated file, a llama2.c checkpoint without its tokenizer", { skip }, async () => {
  const { page } = await openPage();
  await page.fill("#model-url", "models/stories260K/missing.bin");
  await fillRequest(page, "cpu", 5);
  let r = await generate(page);
  assert.equal(r.state, "error");
  assert.match(r.error, /models\/stories260K\/missing\.bin: the server answered HTTP 404/);

  await page.check("#source-kind-file");
  await page.setInputFiles("#model-file", { name: "cut.bin", mimeType: "application/octet-stream", buffer: readFileSync(STORIES).subarray(0, 5000) });
  await page.setInputFiles("#tokenizer-file", STORIES_TOKENIZER);
  r = await generate(page);
  assert.equal(r.state, "error");
  assert.match(r.error, /^cut\.bin: truncated: /);

  await page.setInputFiles("#model-file", STORIES);
  await page.setInputFiles("#tokenizer-file", []);
  r = await generate(page);
  assert.equal(r.state, "error");
  assert.match(r.error, /^stories260K\.bin: a llama2\.c checkpoint needs its tokenizer file/);
  await page.close();
});

test("without navigator.gpu the page says so and switches to the CPU", { skip }, async () => {
  const page = await context!.newPage();
  // as in a browser without WebGPU
  await page.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
  await page.goto(baseUrl);
  await page.waitForFunction(() => document.body.dataset.webgpu !== undefined, undefined, { timeout: 15_000 });
  assert.equal(await page.evaluate(() => document.body.dataset.webgpu), "unavailable");
  assert.match((await page.textContent("#gpu-notice")) ?? "", /navigator\.gpu is missing[\s\S]*Switched to the CPU device/);
  assert.equal(await page.inputValue("#device"), "cpu");
  // choosing WebGPU anyway fails with the same reason, before anything is loaded
  await fillRequest(page, "webgpu", 5);
  const r = await generate(page);
  assert.equal(r.state, "error");
  assert.match(r.error, /^WebGPU is not available in this browser \(navigator\.gpu is missing\)/);
  await page.close();
});
