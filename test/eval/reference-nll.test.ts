/**
 * Frugal against Hugging Face transformers on tiny random checkpoints of every supported architecture
 * (test/fixtures/tiny, made by training/make_reference_checkpoints.py on a GPU in float32 with TF32 off):
 * the tokenizer's ids, the windowed perplexity of `frugal eval ppl` within 1e-4 nats, the logits of one
 * position, the greedy continuation and the chat template must all be what transformers produced.
 */
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../paths.js";
import { loadModel } from "../../src/load.js";
import { perplexityOfTokens } from "../../src/eval/perplexity.js";
import { renderChat, type ChatMessage } from "../../src/generate/chat-template.js";
import type { Model } from "../../src/model/model.js";

interface Reference {
  folder: string;
  architecture: string;
  vocab_size: number;
  tokens: number;
  nll: number;
  first_window_last_logits: number[];
  decode_roundtrip: boolean;
  ids: number[];
  greedy: { prompt: string; prompt_with_special_tokens: number[]; prompt_ids: number[]; ids: number[]; min_top2_gap: number };
  chat?: { messages: ChatMessage[]; text: string; ids: number[] };
}

interface Expected {
  eval_text: string;
  ctx: number;
  checkpoints: Record<string, Reference>;
}

const TINY = join(ROOT, "test/fixtures/tiny");
const expected = JSON.parse(readFileSync(join(TINY, "expected.json"), "utf8")) as Expected;
const evalText = readFileSync(join(TINY, expected.eval_text), "utf8");

/** The task's bound on |Frugal - transformers| for a mean NLL; float32 rounding is ~1e-6 here. */
const NLL_TOLERANCE = 1e-4;
/** Logits are O(10); a float32 forward pass differs from PyTorch's by ~1e-5. */
const LOGIT_TOLERANCE = 1e-3;

test("the fixtures cover every architecture the loader supports", () => {
  const archs = new Set(Object.values(expected.checkpoints).map((c) => c.architecture));
  for (const a of ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]) assert.ok(archs.has(a), a);
});

for (const [name, ref] of Object.entries(expected.checkpoints)) {
  describe(`${name} (${ref.architecture}) against transformers`, () => {
    let model: Model;
    before(async () => {
      model = await loadModel(join(TINY, ref.folder));
    });
    after(() => model?.dispose());

    test("the tokenizer gives transformers' ids", () => {
      assert.deepEqual(model.tokenizer.encode(evalText, { addSpecialTokens: false }), ref.ids);
      assert.deepEqual(model.tokenizer.encode(ref.greedy.prompt, { addSpecialTokens: true }), ref.greedy.prompt_with_special_tokens);
      if (ref.decode_roundtrip) assert.equal(model.tokenizer.decode(ref.ids), evalText);
    });

    test("the logits of the first window's last position", async () => {
      const window = ref.ids.slice(0, expected.ctx);
      const out = model.network.forward(Int32Array.from(window), 0, model.network.newCache(expected.ctx), true);
      const logits = await model.backend.read(out);
      const last = logits.subarray((window.length - 1) * model.config.vocabSize);
      ref.first_window_last_logits.forEach((want, i) => {
        assert.ok(Math.abs(last[i]! - want) < LOGIT_TOLERANCE, `logit ${i}: ${last[i]} vs transformers ${want}`);
      });
    });

    test(`windowed perplexity (ctx ${expected.ctx}) within ${NLL_TOLERANCE} nats`, async () => {
      const r = await perplexityOfTokens(model, ref.ids, { ctx: expected.ctx });
      assert.equal(r.tokens, ref.tokens);
      assert.ok(Math.abs(r.nll - ref.nll) < NLL_TOLERANCE, `nll ${r.nll} vs transformers ${ref.nll}`);
    });

    test(`greedy continuation of ${JSON.stringify(ref.greedy.prompt)}`, async () => {
      const ids: number[] = [];
      const options = { temperature: 0, maxTokens: ref.greedy.ids.length, stopAtEos: false };
      for await (const piece of model.generateFromTokens(ref.greedy.prompt_ids, options)) {
        if (piece.tokenId !== undefined) ids.push(piece.tokenId);
      }
      assert.deepEqual(ids, ref.greedy.ids);
    });

    const chat = ref.chat;
    if (chat) {
      test("the chat template renders and tokenizes as in transformers", () => {
        const text = renderChat(model.tokenizer, chat.messages);
        assert.equal(text, chat.text);
        assert.deepEqual(model.tokenizer.encode(text, { addSpecialTokens: false }), chat.ids);
      });
    }
  });
}
