import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, reference, type Running } from "./helpers.js";

const KEY = "sk-test-key";
let s: Running;
let client: OpenAI;

before(async () => {
  s = await startServer({ apiKey: KEY });
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: KEY, maxRetries: 0 });
});
after(() => s.close());

const messages = [{ role: "user" as const, content: "Tell me about the little dog." }];

test("models lists the served model by its base name", async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), ["stories260K"]);
});

test("chat, not streaming, at temperature 0 gives model.chat's text and the tokenizer's counts", async () => {
  const want = await reference(s.model.chat(messages, { temperature: 0, maxTokens: 40 }));
  const r = await client.chat.completions.create({ model: "stories260K", messages, temperature: 0, max_tokens: 40 });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0]!.message.content, want.text);
  assert.equal(r.choices[0]!.finish_reason, s.model.lastStats!.finishReason);
  assert.equal(r.usage!.prompt_tokens, s.model.chatPromptIds(messages).length);
  assert.equal(r.usage!.completion_tokens, want.tokens);
  assert.equal(r.usage!.total_tokens, r.usage!.prompt_tokens + want.tokens);
});

test("chat, streaming, gives the same text in chunks, then finish_reason and usage", async () => {
  const want = await reference(s.model.chat(messages, { temperature: 0, maxTokens: 40 }));
  const stream = await client.chat.completions.create({
    model: "stories260K", messages, temperature: 0, max_completion_tokens: 40, stream: true, stream_options: { include_usage: true },
  });
  let text = "";
  let chunks = 0;
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined | null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? "";
      finish = c.finish_reason ?? finish;
    }
  }
  assert.equal(text, want.text);
  assert.ok(chunks > 3, `streamed in ${chunks} chunks`);
  assert.equal(finish, "length");
  assert.equal(usage?.completion_tokens, want.tokens);
  assert.equal(usage?.prompt_tokens, s.model.chatPromptIds(messages).length);
});

test("completions at temperature 0 give model.generate's text; stop strings cut it before the stop", async () => {
  const prompt = "Once upon a time";
  const want = await reference(s.model.generate(prompt, { temperature: 0, maxTokens: 30 }));
  const r = await client.completions.create({ model: "stories260K", prompt, temperature: 0, max_tokens: 30 });
  assert.equal(r.choices[0]!.text, want.text);
  assert.equal(r.usage!.prompt_tokens, s.model.tokenizer.encode(prompt, { addSpecialTokens: true }).length);
  assert.equal(r.usage!.completion_tokens, want.tokens);
  // stop at the second word of the reference continuation
  const stop = want.text.trim().split(" ")[1]!;
  const cut = want.text.slice(0, want.text.indexOf(stop));
  const stopped = await client.completions.create({ model: "stories260K", prompt, temperature: 0, max_tokens: 30, stop: [stop, "zzzz"] });
  assert.equal(stopped.choices[0]!.text, cut);
  assert.equal(stopped.choices[0]!.finish_reason, "stop");
});

test("logprobs are the log-softmax of the model's own logits", async () => {
  const r = await client.chat.completions.create({
    model: "stories260K", messages, temperature: 0, max_tokens: 3, logprobs: true, top_logprobs: 3,
  });
  const content = r.choices[0]!.logprobs!.content!;
  assert.equal(content.length, 3);
  // independent reference: prefill the prompt, log-softmax in f64, follow the greedy tokens
  const ids = s.model.chatPromptIds(messages);
  const cache = s.model.network.newCache(ids.length + 3);
  let logits = await s.model.backend.read(s.model.prefill(ids, cache));
  for (let t = 0; t < 3; t++) {
    let max = -Infinity;
    for (const v of logits) max = Math.max(max, v);
    const logZ = max + Math.log(logits.reduce((a, v) => a + Math.exp(v - max), 0));
    const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
    const best = order[0]!;
    assert.ok(Math.abs(content[t]!.logprob - (logits[best]! - logZ)) < 1e-9, `token ${t} logprob`);
    assert.equal(content[t]!.top_logprobs.length, 3);
    content[t]!.top_logprobs.forEach((a, i) => assert.ok(Math.abs(a.logprob - (logits[order[i]!]! - logZ)) < 1e-9));
    logits = await s.model.backend.read(s.model.network.forward(Int32Array.of(best), ids.length + t, cache));
  }
});

test("same seed and temperature give the same text; completions logprobs has one entry per token", async () => {
  const ask = () => client.completions.create({ model: "stories260K", prompt: "The dog", temperature: 1, top_p: 0.9, seed: 7, max_tokens: 20, logprobs: 2 });
  const [a, b] = [await ask(), await ask()];
  assert.equal(a.choices[0]!.text, b.choices[0]!.text);
  const lp = a.choices[0]!.logprobs!;
  assert.equal(lp.tokens!.length, a.usage!.completion_tokens);
  assert.equal(lp.tokens!.join(""), a.choices[0]!.text);
  assert.ok(lp.token_logprobs!.every((x) => x! <= 0));
});

test("a request without the API key gets 401", async () => {
  const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "wrong", maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  const res = await fetch(`${s.url}/v1/models`);
  assert.equal(res.status, 401);
  assert.equal(((await res.json()) as any).error.code, "invalid_api_key");
});
