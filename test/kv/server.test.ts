import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, reference } from "../server/helpers.js";

const prompts = ["Once upon a time", "The little dog", "Lily and Ben went to the park. They"];

test("the server with a non-dense --kv decodes one sequence per forward and matches model.generate under the same KV method", async () => {
  const s = await startServer();
  try {
    assert.equal(s.server.scheduler.batched, true);
    s.model.setKv("h2o:keep=0.25", "int8");
    assert.equal(s.server.scheduler.batched, false);
    const wants: string[] = [];
    for (const p of prompts) wants.push((await reference(s.model.generate(p, { temperature: 0, maxTokens: 40 }))).text);
    const dense = await (async () => {
      s.model.setKv("dense");
      const t = (await reference(s.model.generate(prompts[2]!, { temperature: 0, maxTokens: 40 }))).text;
      s.model.setKv("h2o:keep=0.25", "int8");
      return t;
    })();
    assert.notEqual(wants[2], dense, "the KV method changes the greedy text of the longest prompt");
    const got = await Promise.all(
      prompts.map(async (prompt) => {
        const res = await fetch(`${s.url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt, temperature: 0, max_tokens: 40 }) });
        assert.equal(res.status, 200);
        return ((await res.json()) as { choices: { text: string }[] }).choices[0]!.text;
      }),
    );
    got.forEach((t, i) => assert.equal(t, wants[i], `request ${i}`));
  } finally {
    await s.close();
  }
});
