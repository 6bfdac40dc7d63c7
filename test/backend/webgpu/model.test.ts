/**
 * stories260K end to end on WebGPU against the CPU backend: greedy generation of 200 tokens, greedy
 * decoding with argmax on the device, and perplexity.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { loadModel } from "../../../src/load.js";
import type { Model } from "../../../src/model/model.js";
import { evaluatePerplexity } from "../../../src/eval/perplexity.js";
import type { WebGpuBackend } from "../../../src/backend/webgpu/webgpu-backend.js";
import { openOrSkip } from "./helpers.js";

const probe = await openOrSkip();
probe.gpu?.dispose();
const skip = !probe.gpu && probe.reason;
const cpu = await loadModel();
const gpu = skip ? undefined : await loadModel(undefined, { device: "webgpu" });
after(() => {
  cpu.dispose();
  gpu?.dispose();
});

async function greedy(model: Model, prompt: string, maxTokens: number): Promise<number[]> {
  const ids: number[] = [];
  for await (const piece of model.generate(prompt, { temperature: 0, maxTokens, stopAtEos: false })) {
    if (piece.tokenId !== undefined) ids.push(piece.tokenId);
  }
  return ids;
}

test("greedy generation: the same 200 tokens as the CPU backend", { skip }, async () => {
  const want = await greedy(cpu, "Once upon a time", 200);
  assert.equal(want.length, 200);
  const got = await greedy(gpu!, "Once upon a time", 200);
  assert.deepEqual(got, want);
});

test("pipelined decoding: every step is picked ahead on the device; stops, EOS and a reused cache agree with the CPU", { skip }, async () => {
  let picks = 0;
  const pickAhead = gpu!.backend.pickAhead!.bind(gpu!.backend);
  gpu!.backend.pickAhead = (logits, sample) => {
    picks++;
    return pickAhead(logits, sample);
  };
  try {
    const texts = async (m: Model) => [
      await m.complete("Once upon a time", { temperature: 0, maxTokens: 300 }),
      await m.complete("The cat sat", { temperature: 0, maxTokens: 60, stop: ["."] }),
      await m.complete("Lily", { temperature: 0, maxTokens: 1 }),
    ];
    const want = await texts(cpu);
    assert.deepEqual(await texts(gpu!), want);
    assert.ok(picks > 0, "generation went through pickAhead");
    assert.equal(cpu.lastStats!.generatedTokens, gpu!.lastStats!.generatedTokens);
  } finally {
    gpu!.backend.pickAhead = pickAhead;
  }
});

test("argmax on the device: decoding that reads back only token ids agrees with the CPU", { skip }, async () => {
  const prompt = cpu.tokenizer.encode("The little dog", { addSpecialTokens: true });
  const run = async (m: Model) => {
    const cache = m.network.newCache(64);
    const ids = [...prompt];
    let logits = m.network.forward(Int32Array.from(prompt), 0, cache);
    for (let i = 0; i < 40; i++) {
      const id = await m.backend.argmax!(logits);
      ids.push(id);
      logits = m.network.forward(Int32Array.of(id), ids.length - 1, cache);
    }
    return ids;
  };
  const recorder = (gpu!.backend as WebGpuBackend).recorder;
  const before = recorder.submissions;
  assert.deepEqual(await run(gpu!), await run(cpu));
  assert.equal(recorder.submissions - before, 40, "one queue submission per forward pass (40 argmax reads, each after one forward)");
});

test("perplexity matches the CPU within 1e-3 nats", { skip }, async () => {
  const text =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. " +
    "One day, she saw a big red ball in the park. She ran to the ball and kicked it very high. " +
    "The ball went over the tree and Lily laughed. Her mom said it was time to go home.";
  const want = await evaluatePerplexity(cpu, text, { ctx: 64 });
  const got = await evaluatePerplexity(gpu!, text, { ctx: 64 });
  assert.equal(got.tokens, want.tokens);
  assert.ok(want.tokens > 60, `scored ${want.tokens} tokens`);
  assert.ok(Math.abs(got.nll - want.nll) < 1e-3, `GPU nll ${got.nll} vs CPU ${want.nll}`);
});
