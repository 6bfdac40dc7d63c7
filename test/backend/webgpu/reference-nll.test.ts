/**
 * The WebGPU backend against Hugging Face transformers on the tiny random checkpoints of every supported
 * architecture (test/fixtures/tiny): the windowed perplexity must be the CPU backend's within 1e-3 nats (the
 * WebGPU issue's bound; the CPU backend is itself within 1e-4 of transformers, test/eval/reference-nll).
 * Only the first two windows, to keep SwiftShader's time small.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../paths.js";
import { loadModel } from "../../../src/load.js";
import { perplexityOfTokens } from "../../../src/eval/perplexity.js";
import { openOrSkip } from "./helpers.js";

interface Expected {
  ctx: number;
  checkpoints: Record<string, { folder: string; ids: number[] }>;
}

const TINY = join(ROOT, "test/fixtures/tiny");
const expected = JSON.parse(readFileSync(join(TINY, "expected.json"), "utf8")) as Expected;
const probe = await openOrSkip();
probe.gpu?.dispose();
const skip = !probe.gpu && probe.reason;

for (const [name, ref] of Object.entries(expected.checkpoints)) {
  test(`${name}: WebGPU perplexity equals the CPU's and transformers' (first two windows)`, { skip }, async () => {
    const cpu = await loadModel(join(TINY, ref.folder));
    const gpu = await loadModel(join(TINY, ref.folder), { device: "webgpu" });
    try {
      const want = await perplexityOfTokens(cpu, ref.ids, { ctx: expected.ctx, chunks: 2 });
      const got = await perplexityOfTokens(gpu, ref.ids, { ctx: expected.ctx, chunks: 2 });
      assert.equal(got.tokens, want.tokens);
      assert.ok(Math.abs(got.nll - want.nll) < 1e-3, `WebGPU ${got.nll} vs CPU ${want.nll}`);
    } finally {
      cpu.dispose();
      gpu.dispose();
    }
  });
}
