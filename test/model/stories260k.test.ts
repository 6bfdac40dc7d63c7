import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { loadModel } from "../../src/load.js";
import { STORIES, STORIES_EXPECTED } from "../paths.js";

test("stories260K greedy from BOS reproduces llama2.c run.c's 200 tokens exactly", async () => {
  const expected = readFileSync(STORIES_EXPECTED, "utf8");
  const model = await loadModel(STORIES);
  try {
    let text = "";
    for await (const piece of model.generate("", { temperature: 0, maxTokens: 200 })) text += piece.text;
    assert.equal(model.lastStats?.generatedTokens, 200);
    assert.equal(text, expected);
  } finally {
    model.dispose();
  }
});

test("prefill of a whole window gives the same logits as feeding the tokens one at a time", async () => {
  const model = await loadModel(STORIES);
  try {
    const ids = model.tokenizer.encode("Once upon a time, there was a little girl named Lily.", { addSpecialTokens: true });
    const all = await model.backend.read(model.network.forward(Int32Array.from(ids), 0, model.network.newCache(64), true));
    const cache = model.network.newCache(64);
    const vocab = model.config.vocabSize;
    for (let t = 0; t < ids.length; t++) {
      const row = await model.backend.read(model.network.forward(Int32Array.of(ids[t]!), t, cache));
      for (let i = 0; i < vocab; i++) {
        assert.ok(Math.abs(row[i]! - all[t * vocab + i]!) <= 1e-5 * (1 + Math.abs(row[i]!)), `position ${t}, logit ${i}`);
      }
    }
  } finally {
    model.dispose();
  }
});

test("greedy continuation of the first k greedy tokens is the rest of the greedy sequence", async () => {
  const model = await loadModel(STORIES);
  try {
    const ids = async (prompt: number[], n: number) => {
      const out: number[] = [];
      for await (const p of model.generateFromTokens(prompt, { temperature: 0, maxTokens: n })) if (p.tokenId !== undefined) out.push(p.tokenId);
      return out;
    };
    const full = await ids([1], 60);
    const rest = await ids([1, ...full.slice(0, 25)], 35);
    assert.deepEqual(rest, full.slice(25));
  } finally {
    model.dispose();
  }
});

test("repeated generations reuse one KV cache instead of growing memory", async () => {
  const model = await loadModel(STORIES);
  try {
    const first = await model.complete("Once upon a time", { temperature: 0, maxTokens: 30 });
    const cpu = model.backend as unknown as { arena?: { used: number } };
    const used = cpu.arena!.used;
    for (let i = 0; i < 5; i++) assert.equal(await model.complete("Once upon a time", { temperature: 0, maxTokens: 30 }), first);
    assert.equal(cpu.arena!.used, used);
  } finally {
    model.dispose();
  }
});
