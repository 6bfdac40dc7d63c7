/**
 * End-to-end test of the page's chat mode: builds the page with Vite, serves the build with `frugal serve`
 * (FrugalServer in this process, stories260K, an API key) on 127.0.0.1, drives it in headless Chromium
 * and checks that the streamed answers are exactly what model.chat gives for the same conversation and
 * settings, that the server's error objects are shown, and that under Vite's preview server the chat says
 * it needs `frugal serve`.
 *
 * FRUGAL_UPDATE_SCREENSHOT=1 also saves the page after a two-turn conversation as docs/server-chat.png.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import type { PreviewServer } from "vite";
import { ROOT } from "../paths.js";
import { reference, startServer, type Running } from "../server/helpers.js";
import { pageFiles } from "../../src/server/static.js";
import type { ChatMessage } from "../../src/generate/chat-template.js";

const CHROMIUM = "/usr/bin/chromium";
/** As in page.test.ts. */
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
const KEY = "sk-chat-test";
const MAX_TOKENS = 40;
const ANSWER_TIMEOUT_MS = 15_000;

const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (apt-get install chromium)`;

let tmp: string;
let site: string;
let served: Running | undefined;
let preview: PreviewServer | undefined;
let browser: Browser | undefined;
let context: BrowserContext | undefined;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "frugal-chat-"));
  if (skip) return;
  const vite = await import("vite");
  const configFile = join(ROOT, "web/vite.config.ts");
  site = join(tmp, "site");
  await vite.build({ configFile, logLevel: "error", build: { outDir: site } });
  served = await startServer({ apiKey: KEY, staticFiles: pageFiles(site) });
  preview = await vite.preview({ configFile, logLevel: "error", build: { outDir: site }, preview: { host: "127.0.0.1", port: 0, strictPort: true } });
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
  context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
});

after(async () => {
  await context?.close();
  await browser?.close();
  await preview?.close();
  await served?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Opens `url`, waits until the page has asked /health, and collects the page's errors. */
async function openPage(url: string): Promise<{ page: Page; problems: string[] }> {
  const page = await context!.newPage();
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => ["connected", "absent"].includes(document.body.dataset.server ?? ""), undefined, { timeout: 10_000 });
  return { page, problems };
}

interface Turn {
  state: string;
  error: string;
  input: string;
  messages: { role: string; text: string; chunks?: number }[];
}

/** Types `text`, presses Send, waits for the answer to end; returns what the page shows. */
async function say(page: Page, text: string): Promise<Turn> {
  await page.fill("#chat-input", text);
  await page.click("#chat-send");
  await page.waitForFunction(() => document.body.dataset.chat !== "sending", undefined, { timeout: ANSWER_TIMEOUT_MS });
  return page.evaluate(() => ({
    state: document.body.dataset.chat!,
    error: document.getElementById("chat-error")!.textContent!,
    input: (document.getElementById("chat-input") as HTMLTextAreaElement).value,
    messages: Array.from(document.querySelectorAll<HTMLElement>("#chat-messages .message"), (el) => ({
      role: el.classList.contains("user") ? "user" : "assistant",
      text: el.textContent!,
      ...(el.dataset.chunks === undefined ? {} : { chunks: Number(el.dataset.chunks) }),
    })),
  }));
}

/** model.chat's greedy answer to `messages`, as the server's model gives it outside the server. */
async function expected(messages: ChatMessage[]): Promise<string> {
  const { text } = await reference(served!.model.chat(messages, { temperature: 0, maxTokens: MAX_TOKENS }));
  assert.ok(text.length > 0, "model.chat answers something");
  return text;
}

test("served by frugal serve, the chat streams model.chat's answers, keeps the conversation and shows the server's errors", { skip }, async () => {
  const { page, problems } = await openPage(`${served!.url}/`);
  assert.equal(await page.evaluate(() => document.body.dataset.mode), "chat", "the chat is the first tab under frugal serve");
  assert.match((await page.textContent("#chat-server")) ?? "", /Chatting with stories260K on frugal serve/);
  await page.fill("#chat-temperature", "0");
  await page.fill("#chat-seed", "");

  const first = "Tell me about the little dog.";
  // no key yet: the server's 401 error object, and the turn is taken back
  let turn = await say(page, first);
  assert.equal(turn.state, "error");
  assert.match(turn.error, /^The server answered 401: missing or wrong API key: send Authorization: Bearer <key>$/);
  assert.deepEqual(turn.messages, []);
  assert.equal(turn.input, first, "the message is given back to send again");

  await page.fill("#api-key", KEY);
  await page.fill("#chat-max-tokens", "100000");
  turn = await say(page, first);
  assert.equal(turn.state, "error");
  assert.match(turn.error, /^The server answered 400: max_tokens is 100000, but the prompt's \d+ tokens leave room for \d+ in the context of 512$/);

  await page.fill("#chat-max-tokens", String(MAX_TOKENS));
  turn = await say(page, first);
  assert.equal(turn.state, "done", `${turn.error}\n${problems.join("\n")}`);
  const answer1 = await expected([{ role: "user", content: first }]);
  assert.equal(turn.messages.length, 2);
  assert.deepEqual(turn.messages[0], { role: "user", text: first });
  assert.equal(turn.messages[1]!.role, "assistant");
  assert.equal(turn.messages[1]!.text, answer1);
  assert.ok(turn.messages[1]!.chunks! > 1, `the answer arrived in ${turn.messages[1]!.chunks} chunks`);

  // the second turn sends the whole conversation
  const second = "What did the dog do next?";
  turn = await say(page, second);
  assert.equal(turn.state, "done", `${turn.error}\n${problems.join("\n")}`);
  const answer2 = await expected([
    { role: "user", content: first },
    { role: "assistant", content: answer1 },
    { role: "user", content: second },
  ]);
  assert.deepEqual(turn.messages.map((m) => m.role), ["user", "assistant", "user", "assistant"]);
  assert.equal(turn.messages[3]!.text, answer2);
  assert.notEqual(answer2, await expected([{ role: "user", content: second }]), "the history changes the answer");
  assert.ok(turn.messages[3]!.chunks! > 1);
  assert.deepEqual(problems, []);

  const shot = join(tmp, "server-chat.png");
  await page.screenshot({ path: shot, fullPage: true });
  assert.deepEqual([...readFileSync(shot).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  if (process.env.FRUGAL_UPDATE_SCREENSHOT === "1") copyFileSync(shot, join(ROOT, "docs/server-chat.png"));

  // New chat forgets the conversation: the same first message gets the same first answer
  await page.click("#chat-clear");
  turn = await say(page, first);
  assert.deepEqual(turn.messages.map((m) => m.text), [first, answer1]);
  await page.close();
});

test("the in-browser tab of the page served by frugal serve still generates (the build's model and kernels are served)", { skip }, async () => {
  const { page, problems } = await openPage(`${served!.url}/#browser`);
  assert.equal(await page.evaluate(() => document.body.dataset.mode), "browser");
  assert.equal(await page.evaluate(() => crossOriginIsolated), true);
  await page.selectOption("#device", "cpu");
  await page.fill("#max-tokens", "20");
  await page.fill("#temperature", "0");
  await page.click("#generate");
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state ?? ""), undefined, { timeout: ANSWER_TIMEOUT_MS });
  assert.equal(await page.evaluate(() => document.body.dataset.state), "done", `${await page.textContent("#error")}\n${problems.join("\n")}`);
  const { text } = await reference(served!.model.generate("Once upon a time", { temperature: 0, maxTokens: 20 }));
  assert.equal(await page.textContent("#generated"), text);
  await page.close();
});

test("under Vite's preview server the chat says it needs frugal serve, and the page opens on the in-browser tab", { skip }, async () => {
  const address = preview!.httpServer.address();
  assert.ok(address && typeof address === "object");
  const base = `http://127.0.0.1:${address.port}/`;
  let { page } = await openPage(base);
  assert.equal(await page.evaluate(() => document.body.dataset.server), "absent");
  assert.equal(await page.evaluate(() => document.body.dataset.mode), "browser");
  await page.click("#mode-chat");
  assert.equal(await page.isVisible("#chat-panel"), true);
  assert.match((await page.textContent("#chat-server")) ?? "", /The chat needs frugal serve.*npm run web:build/);
  assert.equal(await page.isDisabled("#chat-send"), true);
  await page.close();
});

test("/ of a server whose page is not built says how to build it; other missing files are not found", async () => {
  const empty = join(tmp, "not-built");
  mkdirSync(empty);
  const files = pageFiles(empty);
  const root = await files("/");
  assert.ok(root);
  assert.equal(root.type, "text/html; charset=utf-8");
  assert.match(new TextDecoder().decode(root.body), /the chat page is not built\. Run <code>npm run web:build<\/code>/);
  assert.equal(await files("/assets/index.js"), undefined);
  assert.equal(await files("/../package.json"), undefined);
});
