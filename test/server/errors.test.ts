import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { startServer, type Running } from "./helpers.js";

let s: Running;
before(async () => {
  s = await startServer({ maxBodyBytes: 4096 });
});
after(() => s.close());

const good = { messages: [{ role: "user", content: "Hi" }], max_tokens: 3, temperature: 0 };

async function post(path: string, body: unknown, raw = false): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(s.url + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: raw ? (body as string) : JSON.stringify(body) });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

/** Asserts an OpenAI-style error object, then that a good request right after still succeeds. */
async function expectError(r: { status: number; body: any }, status: number, param: string | null, message: RegExp): Promise<void> {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.deepEqual(Object.keys(r.body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(r.body.error.param, param);
  assert.match(r.body.error.message, message);
  assert.equal(typeof r.body.error.type, "string");
  const ok = await post("/v1/chat/completions", good);
  assert.equal(ok.status, 200);
  assert.equal(ok.body.choices[0].message.role, "assistant");
}

const chat = (patch: Record<string, unknown>) => post("/v1/chat/completions", { ...good, ...patch });

test("malformed JSON is a 400", async () => {
  await expectError(await post("/v1/chat/completions", '{"messages": [', true), 400, null, /not valid JSON/);
  await expectError(await post("/v1/chat/completions", "[1,2]", true), 400, null, /JSON object/);
});

test("wrong field types are 400s naming the field", async () => {
  await expectError(await chat({ temperature: "hot" }), 400, "temperature", /temperature must be a number/);
  await expectError(await chat({ max_tokens: 2.5 }), 400, "max_tokens", /integer/);
  await expectError(await chat({ stream: "yes" }), 400, "stream", /boolean/);
  await expectError(await chat({ stop: [1] }), 400, "stop", /string/);
  await expectError(await chat({ top_p: 3 }), 400, "top_p", /\[0, 1\]/);
  await expectError(await chat({ messages: [{ role: "user", content: 5 }] }), 400, "messages[0].content", /string/);
  await expectError(await chat({ messages: [{ content: "x" }] }), 400, "messages[0].role", /string/);
  await expectError(await post("/v1/completions", { prompt: 12 }), 400, "prompt", /string/);
});

test("negative and oversized max_tokens are 400s", async () => {
  await expectError(await chat({ max_tokens: -1 }), 400, "max_tokens", /\[1, /);
  await expectError(await chat({ max_tokens: 0 }), 400, "max_tokens", /\[1, /);
  const context = s.model.network.contextLength;
  await expectError(await chat({ max_tokens: context }), 400, "max_tokens", new RegExp(`context of ${context}`));
  await expectError(await chat({ max_completion_tokens: 1e9 }), 400, "max_tokens", /leave room/);
});

test("empty or missing messages (and a missing prompt) are 400s", async () => {
  await expectError(await chat({ messages: [] }), 400, "messages", /at least one/);
  await expectError(await post("/v1/chat/completions", { max_tokens: 3 }), 400, "messages", /required/);
  await expectError(await chat({ messages: "hello" }), 400, "messages", /array/);
  await expectError(await post("/v1/completions", { max_tokens: 3 }), 400, "prompt", /required/);
});

test("a prompt longer than the context is a 400", async () => {
  const context = s.model.network.contextLength;
  const long = "Once upon a time ".repeat(context);
  await expectError(await post("/v1/completions", { prompt: long.slice(0, 3000) }), 400, "prompt", /context holds/);
});

test("an unknown model is a 404", async () => {
  await expectError(await chat({ model: "gpt-4o" }), 404, "model", /gpt-4o/);
  const r = await fetch(`${s.url}/v1/models/gpt-4o`);
  await expectError({ status: r.status, body: await r.json() }, 404, "model", /does not exist/);
});

test("an unknown route is a 404 and a wrong method a 405", async () => {
  const r = await fetch(`${s.url}/v1/embeddings`, { method: "POST", body: "{}" });
  await expectError({ status: r.status, body: await r.json() }, 404, null, /no route/);
  const m = await fetch(`${s.url}/v1/chat/completions`);
  assert.equal(m.headers.get("allow"), "POST");
  await expectError({ status: m.status, body: await m.json() }, 405, null, /GET is not allowed/);
  const d = await fetch(`${s.url}/v1/models`, { method: "DELETE" });
  await expectError({ status: d.status, body: await d.json() }, 405, null, /DELETE/);
});

test("an oversized body is a 413, declared or chunked", async () => {
  const big = JSON.stringify({ ...good, messages: [{ role: "user", content: "x".repeat(10_000) }] });
  await expectError(await post("/v1/chat/completions", big, true), 413, null, /limit is 4096/);
  // no Content-Length: counted as it arrives
  const chunked = await new Promise<{ status: number; body: any }>((resolve, reject) => {
    const req = request(`${s.url}/v1/chat/completions`, { method: "POST", headers: { "Transfer-Encoding": "chunked" } }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on("error", reject);
    for (let i = 0; i < 10; i++) req.write(big.slice(i * 1000, (i + 1) * 1000));
    req.end(big.slice(10_000));
  });
  await expectError(chunked, 413, null, /exceeds 4096/);
});

test("an error after nothing went wrong is counted in /metrics by endpoint and status", async () => {
  await chat({ temperature: -1 });
  const text = await (await fetch(`${s.url}/metrics`)).text();
  assert.match(text, /frugal_requests_total\{endpoint="\/v1\/chat\/completions",status="400"\} [1-9]/);
  assert.match(text, /frugal_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} [1-9]/);
  assert.equal((await (await fetch(`${s.url}/health`)).json() as any).status, "ok");
});
