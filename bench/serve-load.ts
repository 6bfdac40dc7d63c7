/**
 * Load on `frugal serve`: starts the server as a child process on 127.0.0.1 (a random port), measures one
 * stream alone, then N concurrent streaming clients, then a bounded soak.
 *
 *   node dist/bench/serve-load.js [--model SRC] [--clients 8] [--requests 32] [--max-tokens 64]
 *        [--temperature 0.8] [--threads 2] [--device cpu|webgpu] [--max-batch 8] [--soak-requests 200] [--soak-seconds 60]
 *
 * Reports aggregate generated tokens/s under load against one stream alone (the ratio), p50/p99 time to
 * first token, errors (anything but a clean 200 stream ending in [DONE]), the server's resident memory
 * before and after the soak, and whether it decoded from a KV slot pool (one dispatch per layer for RoPE,
 * the KV write and attention of all sequences; `kvPool` in the JSON). Ends with one JSON line.
 */
import { parseArgs } from "node:util";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const { values: a } = parseArgs({
  options: {
    model: { type: "string" },
    clients: { type: "string", default: "8" },
    requests: { type: "string", default: "32" },
    "max-tokens": { type: "string", default: "64" },
    temperature: { type: "string", default: "0.8" },
    threads: { type: "string", default: "2" },
    device: { type: "string", default: "cpu" },
    "max-batch": { type: "string", default: "8" },
    "soak-requests": { type: "string", default: "200" },
    "soak-seconds": { type: "string", default: "60" },
  },
});
const clients = Number(a.clients);
const requests = Number(a.requests);
const maxTokens = Number(a["max-tokens"]);

interface Outcome {
  ok: boolean;
  tokens: number;
  ttftMs: number;
  ms: number;
}

const PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park.", "The sun was", "Tom had a red ball."];

async function startServer(): Promise<{ url: string; child: ChildProcess }> {
  const args = [join(ROOT, "bin/frugal.js"), "serve", "--port", "0", "--threads", a.threads!, "--max-batch", a["max-batch"]!, "--max-queue", "1000"];
  if (a.model) args.push("--model", a.model);
  if (a.device !== "cpu") args.push("--device", a.device!);
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (c) => {
      log += c;
      const m = /on (http:\/\/127\.0\.0\.1:\d+)\//.exec(log);
      if (m) resolve(m[1]!);
    });
    child.on("exit", () => reject(new Error(`the server exited: ${log}`)));
  });
  process.stderr.write(log);
  return { url, child };
}

/** One streaming completion; counts tokens from the closing usage chunk. */
async function stream(url: string, i: number): Promise<Outcome> {
  const t0 = performance.now();
  let ttftMs = NaN;
  let tokens = 0;
  let done = false;
  try {
    const res = await fetch(`${url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({
        prompt: PROMPTS[i % PROMPTS.length], max_tokens: maxTokens, temperature: Number(a.temperature), seed: i, stream: true,
        stream_options: { include_usage: true },
      }),
    });
    if (res.status !== 200) {
      await res.text();
      return { ok: false, tokens: 0, ttftMs, ms: performance.now() - t0 };
    }
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      buffered += decoder.decode(r.value, { stream: true });
      let cut;
      while ((cut = buffered.indexOf("\n\n")) >= 0) {
        const data = buffered.slice(6, cut);
        buffered = buffered.slice(cut + 2);
        if (data === "[DONE]") {
          done = true;
          continue;
        }
        const event = JSON.parse(data);
        if (event.error) return { ok: false, tokens, ttftMs, ms: performance.now() - t0 };
        if (event.usage) tokens = event.usage.completion_tokens;
        else if (Number.isNaN(ttftMs)) ttftMs = performance.now() - t0;
      }
    }
  } catch {
    return { ok: false, tokens, ttftMs, ms: performance.now() - t0 };
  }
  return { ok: done, tokens, ttftMs, ms: performance.now() - t0 };
}

/** `total` requests over `width` concurrent clients; stops early past `deadline` (ms, performance.now). */
async function load(url: string, width: number, total: number, deadline = Infinity): Promise<{ outcomes: Outcome[]; ms: number }> {
  const outcomes: Outcome[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < total && performance.now() < deadline) outcomes.push(await stream(url, next++));
    }),
  );
  return { outcomes, ms: performance.now() - t0 };
}

async function rss(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^frugal_resident_memory_bytes (\d+)$/m.exec(text)![1]);
}

/** Whether the server decodes from a KV slot pool (batched RoPE/KV write/attention): its gauge exists then. */
async function pooled(url: string): Promise<boolean> {
  return /^frugal_kv_slots_free \d+$/m.test(await (await fetch(`${url}/metrics`)).text());
}

function percentile(xs: number[], p: number): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

const rate = (r: { outcomes: Outcome[]; ms: number }) => (r.outcomes.reduce((s, o) => s + o.tokens, 0) / r.ms) * 1000;

const { url, child } = await startServer();
try {
  // warm-up, alone and at full width: kernels for batches of several rows compile on first use
  await load(url, 1, 2);
  await load(url, clients, clients);
  const kvPool = await pooled(url);
  const single = await load(url, 1, Math.max(2, Math.ceil(requests / clients)));
  const loaded = await load(url, clients, requests);
  const rssBefore = await rss(url);
  const soak = await load(url, clients, Number(a["soak-requests"]), performance.now() + Number(a["soak-seconds"]) * 1000);
  const rssAfter = await rss(url);
  const all = [...single.outcomes, ...loaded.outcomes, ...soak.outcomes];
  const errors = all.filter((o) => !o.ok).length;
  const ttft = loaded.outcomes.map((o) => o.ttftMs);
  const result = {
    model: a.model ?? "stories260K (default)",
    clients,
    requests,
    maxTokens,
    temperature: Number(a.temperature),
    threads: Number(a.threads),
    device: a.device,
    kvPool,
    singleTokensPerSecond: +rate(single).toFixed(1),
    concurrentTokensPerSecond: +rate(loaded).toFixed(1),
    ratio: +(rate(loaded) / rate(single)).toFixed(2),
    ttftP50Ms: +percentile(ttft, 50).toFixed(1),
    ttftP99Ms: +percentile(ttft, 99).toFixed(1),
    singleTtftP50Ms: +percentile(single.outcomes.map((o) => o.ttftMs), 50).toFixed(1),
    errors,
    soakRequests: soak.outcomes.length,
    soakSeconds: +(soak.ms / 1000).toFixed(1),
    rssBeforeSoakMiB: +(rssBefore / 2 ** 20).toFixed(1),
    rssAfterSoakMiB: +(rssAfter / 2 ** 20).toFixed(1),
  };
  console.log(
    `single stream ${result.singleTokensPerSecond} tok/s; ${clients} clients ${result.concurrentTokensPerSecond} tok/s (x${result.ratio}); ` +
      `TTFT p50 ${result.ttftP50Ms} ms, p99 ${result.ttftP99Ms} ms; errors ${errors}; ${kvPool ? "KV slot pool (batched RoPE/KV/attention)" : "no KV pool (per-row ops)"}; ` +
      `RSS ${result.rssBeforeSoakMiB} -> ${result.rssAfterSoakMiB} MiB over ${result.soakRequests} soak requests (${result.soakSeconds} s)`,
  );
  console.log(JSON.stringify(result));
} finally {
  child.kill("SIGTERM");
}
