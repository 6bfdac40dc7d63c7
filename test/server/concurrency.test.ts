import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, reference, readEvents, metric, type Running } from "./helpers.js";

const prompts = ["Once upon a time", "The little dog", "Lily and Ben went to the park. They"];

/** Three streaming completions at once; each must equal model.generate's text, and they must interleave. */
async function concurrentStreams(s: Running): Promise<void> {
  const wants: { text: string; tokens: number }[] = [];
  for (const p of prompts) wants.push(await reference(s.model.generate(p, { temperature: 0, maxTokens: 40 })));
  const arrivals: number[] = [];
  const texts = await Promise.all(
    prompts.map(async (prompt, i) => {
      const res = await fetch(`${s.url}/v1/completions`, {
        method: "POST",
        body: JSON.stringify({ prompt, temperature: 0, max_tokens: 40, stream: true }),
      });
      let text = "";
      let buffered = "";
      const reader = res.body!.getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read()) {
        buffered += new TextDecoder().decode(r.value);
        let cut;
        while ((cut = buffered.indexOf("\n\n")) >= 0) {
          const data = buffered.slice(6, cut);
          buffered = buffered.slice(cut + 2);
          if (data === "[DONE]") continue;
          text += JSON.parse(data).choices[0].text;
          arrivals.push(i);
        }
      }
      return text;
    }),
  );
  texts.forEach((t, i) => assert.equal(t, wants[i]!.text, `stream ${i}`));
  // fair interleaving: every stream's first chunk comes before any stream's last
  const lastOf = (i: number) => arrivals.lastIndexOf(i);
  const firstOf = (i: number) => arrivals.indexOf(i);
  assert.ok(Math.max(...[0, 1, 2].map(firstOf)) < Math.min(...[0, 1, 2].map(lastOf)), `arrival order ${arrivals.join("")}`);
}

test("concurrent streams, batched decoding: each gets its own text, interleaved", async () => {
  const s = await startServer();
  try {
    assert.equal(s.server.scheduler.batched, true);
    await concurrentStreams(s);
    // the sequences' caches were slots of the scheduler's KV pool, and every one came back
    assert.equal(s.server.scheduler.freeSlots, s.server.scheduler.maxBatch);
  } finally {
    await s.close();
  }
});

test("concurrent streams, round-robin (a backend without row views): same texts, interleaved", async () => {
  const s = await startServer();
  try {
    const b = s.model.backend as { rowView?: unknown; kvPool?: unknown };
    b.rowView = undefined;
    b.kvPool = undefined;
    assert.equal(s.server.scheduler.batched, false);
    await concurrentStreams(s);
    assert.equal(s.server.scheduler.freeSlots, undefined, "no pool: caches made one by one");
  } finally {
    await s.close();
  }
});

test("a full queue answers 429, and the server keeps serving", async () => {
  const s = await startServer({ maxBatch: 1, maxQueue: 1 });
  try {
    const body = JSON.stringify({ prompt: "Once", max_tokens: 200, temperature: 0 });
    const all = await Promise.all(Array.from({ length: 4 }, () => fetch(`${s.url}/v1/completions`, { method: "POST", body })));
    const statuses = all.map((r) => r.status).sort();
    assert.ok(statuses.includes(429), `statuses ${statuses}`);
    assert.ok(statuses.includes(200), `statuses ${statuses}`);
    const refused = await all.find((r) => r.status === 429)!.json();
    assert.equal((refused as any).error.code, "queue_full");
    await Promise.all(all.map((r) => (r.bodyUsed ? undefined : r.text())));
    const ok = await fetch(`${s.url}/v1/completions`, { method: "POST", body });
    assert.equal(ok.status, 200);
  } finally {
    await s.close();
  }
});

test("a client that disconnects mid-stream frees its slot at once", async () => {
  const s = await startServer({ maxBatch: 1 });
  try {
    const abort = new AbortController();
    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 400, temperature: 0, stream: true }),
      signal: abort.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    const during = await (await fetch(`${s.url}/metrics`)).text();
    assert.equal(metric(during, "frugal_active_sequences"), 1);
    abort.abort();
    const t0 = performance.now();
    let active = 1;
    while (active !== 0 && performance.now() - t0 < 2000) {
      await new Promise((r) => setTimeout(r, 10));
      active = metric(await (await fetch(`${s.url}/metrics`)).text(), "frugal_active_sequences");
    }
    assert.equal(active, 0);
    // the one slot is free again: a new request is served (not queued behind 400 tokens)
    const next = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 5, stream: true }),
    });
    const { events, done } = await readEvents(next);
    assert.ok(done);
    assert.equal(events.at(-1).choices[0].finish_reason, "length");
    assert.ok(s.server.scheduler.activeSequences === 0);
    assert.equal(s.server.scheduler.freeSlots, 1, "the aborted and the finished sequence gave their KV slot back");
  } finally {
    await s.close();
  }
});
