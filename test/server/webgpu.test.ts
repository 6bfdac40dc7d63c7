/**
 * The server on WebGPU: concurrent sequences decode in one forwardBatch, and each sequence's token is
 * picked on the device (argmax, or the sample kernel with the sequence's own seeded draws), so only
 * token ids come back. Streams decoded together must equal model.generate's, seeded sampling included: a
 * batch's rows are GEMV sums in a lone step's order (docs/architecture.md decision 20), so the logits and
 * therefore the draws are the same bit for bit.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../../src/load.js";
import { FrugalServer } from "../../src/server/server.js";
import { Scheduler } from "../../src/server/scheduler.js";
import { ROOT } from "../paths.js";
import { reference, readEvents } from "./helpers.js";
import { openOrSkip } from "../backend/webgpu/helpers.js";

const probe = await openOrSkip();
probe.gpu?.dispose();
const skip = !probe.gpu && probe.reason;

test("WebGPU server: batched streams with tokens picked on the device equal model.generate", { skip }, async () => {
  const model = await loadModel(join(ROOT, "models/frugal-ar-small"), { device: "webgpu" });
  const server = new FrugalServer(model, {});
  const { port } = await server.listen(0, "127.0.0.1");
  try {
    assert.equal(server.scheduler.batched, true);
    const requests = [
      { prompt: "The package manager", temperature: 0, seed: undefined },
      { prompt: "To configure the network", temperature: 0, seed: undefined },
      { prompt: "A file system", temperature: 0, seed: undefined },
      { prompt: "The package manager", temperature: 0.7, seed: 9 },
    ];
    const wants: { text: string; tokens: number }[] = [];
    for (const r of requests) {
      wants.push(await reference(model.generate(r.prompt, { temperature: r.temperature, seed: r.seed, maxTokens: 24 })));
    }
    let reads = 0;
    const read = model.backend.read.bind(model.backend);
    model.backend.read = (t, row, rows) => {
      if (t.cols === model.config.vocabSize) reads++;
      return read(t, row, rows);
    };
    const texts = await Promise.all(
      requests.map(async (r) => {
        const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
          method: "POST",
          body: JSON.stringify({ prompt: r.prompt, temperature: r.temperature, seed: r.seed, max_tokens: 24, stream: true }),
        });
        const { events, done } = await readEvents(res);
        assert.ok(done);
        return events.map((e) => e.choices[0].text).join("");
      }),
    );
    texts.forEach((t, i) => assert.equal(t, wants[i]!.text, `request ${i}`));
    // logits rows come back only for the prompts' first tokens, never for decode steps
    assert.ok(reads <= requests.length, `${reads} vocab-wide reads`);

    // a seeded draw on the device, lone stream: the sequence's own Rng feeds the sample kernel
    const sampled = { prompt: "A file system", temperature: 0.7, seed: 5 };
    const want = await reference(model.generate(sampled.prompt, { temperature: 0.7, seed: 5, maxTokens: 24 }));
    reads = 0;
    const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ ...sampled, max_tokens: 24 }),
    });
    assert.equal((await res.json()).choices[0].text, want.text);
    assert.ok(reads <= 1, `${reads} vocab-wide reads`);
  } finally {
    await server.close(1000);
    model.dispose();
  }
});

test("WebGPU scheduler: pipelined steps give the same seeded and greedy tokens as unpipelined ones, and free every slot", { skip }, async () => {
  const model = await loadModel(join(ROOT, "models/frugal-ar-small"), { device: "webgpu" });
  try {
    const b = model.backend;
    const jobs = [
      { prompt: "The package manager", temperature: 0.8, seed: 3 },
      { prompt: "To configure the network", temperature: 0, seed: undefined },
      { prompt: "A file system", temperature: 0.8, seed: 11 },
    ];
    // all three are submitted in one turn, so they are admitted together and stay one batch to the end
    const run = async () => {
      const scheduler = new Scheduler(model, { maxBatch: 4 });
      const results = await Promise.all(
        jobs.map(
          (j) =>
            new Promise<{ text: string; finish: string; tokens: number }>((resolve, reject) => {
              let text = "";
              scheduler.submit({
                promptIds: model.tokenizer.encode(j.prompt, { addSpecialTokens: true }),
                maxTokens: 12, temperature: j.temperature, topP: 1, seed: j.seed, stop: [],
                onPiece: (t) => (text += t),
                onDone: (r) => resolve({ text, finish: r.finishReason, tokens: r.completionTokens }),
                onError: reject,
              });
            }),
        ),
      );
      assert.equal(scheduler.freeSlots, 4, "every KV slot came back");
      return results;
    };
    let embeds = 0;
    const embedPickedRows = b.embedPickedRows!.bind(b);
    b.embedPickedRows = (...args) => {
      embeds++;
      return embedPickedRows(...args);
    };
    const pipelined = await run();
    assert.ok(embeds >= 10, `${embeds} steps fed by the device's picks`);
    const ahead = b.pickRowsAhead;
    b.pickRowsAhead = undefined;
    embeds = 0;
    const plain = await run();
    b.pickRowsAhead = ahead;
    assert.equal(embeds, 0);
    // same batch composition every step (no sequence ends early), so the same numbers and the same draws
    for (const r of plain) assert.equal(r.finish, "length", "a sequence ended early; pick other prompts");
    assert.deepEqual(pipelined, plain);
  } finally {
    model.dispose();
  }
});
