/**
 * The chat mode of the page, and the switch between it and the in-browser mode (main.ts). The chat talks
 * to the `frugal serve` that served the page: POST /v1/chat/completions with the whole conversation and
 * `stream: true`, showing the answer as its server-sent events arrive. Under Vite's dev or preview server
 * there is no API, which /health tells; the chat then says it needs `frugal serve`.
 *
 * Data attributes on <body> tell scripts (the end-to-end test) where it is: `data-mode` (chat, browser),
 * `data-server` (checking, connected, absent), `data-chat` (idle, sending, done, error). Each assistant
 * message carries `data-chunks`, the number of events that brought it text.
 */
import { sseData } from "./sse.js";

type Mode = "chat" | "browser";
interface Message {
  role: "user" | "assistant";
  content: string;
}

const byId = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
};

const ui = {
  tabChat: byId<HTMLButtonElement>("mode-chat"),
  tabBrowser: byId<HTMLButtonElement>("mode-browser"),
  chatPanel: byId<HTMLElement>("chat-panel"),
  browserPanel: byId<HTMLElement>("browser-panel"),
  server: byId<HTMLDivElement>("chat-server"),
  messages: byId<HTMLDivElement>("chat-messages"),
  error: byId<HTMLDivElement>("chat-error"),
  input: byId<HTMLTextAreaElement>("chat-input"),
  send: byId<HTMLButtonElement>("chat-send"),
  stop: byId<HTMLButtonElement>("chat-stop"),
  clear: byId<HTMLButtonElement>("chat-clear"),
  maxTokens: byId<HTMLInputElement>("chat-max-tokens"),
  temperature: byId<HTMLInputElement>("chat-temperature"),
  seed: byId<HTMLInputElement>("chat-seed"),
  apiKey: byId<HTMLInputElement>("api-key"),
};

/** The conversation so far: what the next request sends, before the new user message. */
const conversation: Message[] = [];
let running: AbortController | undefined;
let connected = false;
/** Set once the user picks a tab, so that the server probe no longer chooses one. */
let modeChosen = false;

function showMode(mode: Mode): void {
  document.body.dataset.mode = mode;
  ui.tabChat.setAttribute("aria-selected", String(mode === "chat"));
  ui.tabBrowser.setAttribute("aria-selected", String(mode === "browser"));
  ui.chatPanel.classList.toggle("hidden", mode !== "chat");
  ui.browserPanel.classList.toggle("hidden", mode !== "browser");
}

function pickMode(mode: Mode): void {
  modeChosen = true;
  showMode(mode);
  history.replaceState(null, "", `#${mode}`);
  if (mode === "chat") ui.input.focus();
}

/** The request's sampling fields, checked. */
function readSettings(): { max_tokens: number; temperature: number; seed?: number } {
  const maxTokens = Number(ui.maxTokens.value);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error(`Max tokens must be a whole number of at least 1, not "${ui.maxTokens.value}"`);
  const temperature = Number(ui.temperature.value);
  if (ui.temperature.value.trim() === "" || !(temperature >= 0)) throw new Error(`Temperature must be 0 or more, not "${ui.temperature.value}"`);
  const seedText = ui.seed.value.trim();
  const seed = seedText === "" ? undefined : Number(seedText);
  if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`Seed must be a whole number or empty, not "${seedText}"`);
  return { max_tokens: maxTokens, temperature, ...(seed === undefined ? {} : { seed }) };
}

/** The message of an OpenAI-style error object, or undefined when `body` is none. */
function errorMessage(body: unknown): string | undefined {
  const error = (body as { error?: { message?: unknown } } | null)?.error;
  return typeof error?.message === "string" ? error.message : undefined;
}

function addMessage(role: Message["role"], text: string): HTMLDivElement {
  const el = document.createElement("div");
  el.className = `message ${role}`;
  el.textContent = text;
  ui.messages.append(el);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  return el;
}

function setBusy(busy: boolean): void {
  ui.send.disabled = busy || !connected;
  ui.stop.disabled = !busy;
  ui.clear.disabled = busy;
}

/** Sends the conversation plus the typed message and streams the answer into a new assistant message. */
async function send(): Promise<void> {
  const content = ui.input.value;
  if (!connected || running || content.trim() === "") return;
  ui.error.textContent = "";
  let settings: ReturnType<typeof readSettings>;
  try {
    settings = readSettings();
  } catch (e) {
    ui.error.textContent = (e as Error).message;
    document.body.dataset.chat = "error";
    return;
  }
  const messages: Message[] = [...conversation, { role: "user", content }];
  const userEl = addMessage("user", content);
  const answerEl = addMessage("assistant", "");
  answerEl.dataset.chunks = "0";
  ui.input.value = "";
  const controller = new AbortController();
  running = controller;
  setBusy(true);
  document.body.dataset.chat = "sending";
  let answer = "";
  try {
    const key = ui.apiKey.value.trim();
    const res = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) },
      body: JSON.stringify({ messages, stream: true, ...settings }),
      signal: controller.signal,
    });
    if (!res.ok || !res.body) {
      const body: unknown = await res.json().catch(() => undefined);
      throw new Error(`The server answered ${res.status}: ${errorMessage(body) ?? res.statusText}`);
    }
    let finished = false;
    for await (const data of sseData(res.body, controller.signal)) {
      if (data === "[DONE]") {
        finished = true;
        break;
      }
      const chunk = JSON.parse(data) as { choices?: { delta?: { content?: string } }[] };
      const failure = errorMessage(chunk);
      if (failure !== undefined) throw new Error(`The server stopped the answer: ${failure}`);
      const piece = chunk.choices?.[0]?.delta?.content;
      if (!piece) continue;
      answer += piece;
      answerEl.textContent = answer;
      answerEl.dataset.chunks = String(Number(answerEl.dataset.chunks) + 1);
      ui.messages.scrollTop = ui.messages.scrollHeight;
    }
    if (!finished && !controller.signal.aborted) throw new Error("The connection closed before the answer was complete.");
    // a stopped answer stays, as far as it got: the conversation goes on from what was shown
    conversation.push({ role: "user", content }, { role: "assistant", content: answer });
    document.body.dataset.chat = "done";
  } catch (e) {
    if (controller.signal.aborted && answer !== "") {
      conversation.push({ role: "user", content }, { role: "assistant", content: answer });
      document.body.dataset.chat = "done";
    } else {
      // the turn did not happen: take it back and give the text back to send again (say, with a key)
      userEl.remove();
      answerEl.remove();
      ui.input.value = content;
      ui.error.textContent = controller.signal.aborted ? "Stopped." : e instanceof Error ? e.message : String(e);
      document.body.dataset.chat = "error";
    }
  } finally {
    running = undefined;
    setBusy(false);
  }
}

function clearChat(): void {
  conversation.length = 0;
  ui.messages.replaceChildren();
  ui.error.textContent = "";
  document.body.dataset.chat = "idle";
}

/** Asks /health whether the page came from `frugal serve`; shows the answer and picks the first tab. */
async function findServer(): Promise<void> {
  document.body.dataset.server = "checking";
  let model: string | undefined;
  try {
    const res = await fetch("/health", { headers: { Accept: "application/json" } });
    const body = (await res.json()) as { status?: unknown; model?: unknown };
    if (res.ok && body.status === "ok" && typeof body.model === "string") model = body.model;
  } catch {
    // not JSON, or no answer: not a Frugal server
  }
  connected = model !== undefined;
  document.body.dataset.server = connected ? "connected" : "absent";
  ui.server.replaceChildren();
  const code = (text: string) => Object.assign(document.createElement("code"), { textContent: text });
  if (connected) {
    ui.server.append("Chatting with ", code(model!), " on ", code("frugal serve"), ` at ${location.host}.`);
  } else {
    ui.server.append(
      "The chat needs ", code("frugal serve"), ", which serves this page and the model's API; this page came from another server ",
      "(Vite's?). Run ", code("npm run web:build"), ", then ", code("frugal serve"), ", and open the address it prints.",
    );
  }
  setBusy(false);
  if (!modeChosen) showMode(connected ? "chat" : "browser");
}

ui.tabChat.addEventListener("click", () => pickMode("chat"));
ui.tabBrowser.addEventListener("click", () => pickMode("browser"));
ui.send.addEventListener("click", () => void send());
ui.stop.addEventListener("click", () => running?.abort());
ui.clear.addEventListener("click", clearChat);
ui.input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    void send();
  }
});

document.body.dataset.chat = "idle";
const asked = location.hash.slice(1);
if (asked === "chat" || asked === "browser") {
  modeChosen = true;
  showMode(asked);
} else showMode("browser");
void findServer();
