/**
 * GGUF files converted from the tiny transformers checkpoints of test/fixtures/tiny, the way llama.cpp's
 * convert_hf_to_gguf.py converts them (llama.cpp names, q/k permuted for Llama and Mistral, which it
 * writes as architecture "llama", rope_freqs for Llama-3 RoPE scaling, the vocabulary padded with
 * [PADn] tokens, merges and token types from tokenizer.json, add_bos from its post-processor), must
 * reproduce what transformers computed: the tokenizer's ids, the RoPE frequencies and the logits.
 */
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../paths.js";
import { loadModel, readSource } from "../../src/load.js";
import type { ModelConfig } from "../../src/model/config.js";
import type { Model } from "../../src/model/model.js";
import { renderChat, type ChatMessage } from "../../src/generate/chat-template.js";
import { bf16ToF32 } from "../../src/tensor/half.js";
import {
  type GgufWriteTensor, type GgufWriteValue, encodeGguf, ggufModelMetadata, ggufModelTensors, meta,
} from "../../src/io/gguf-writer.js";
import { tempPath } from "./gguf-fixture.js";

type Json = Record<string, unknown>;

interface Reference {
  folder: string;
  architecture: string;
  rope_inv_freq: number[];
  first_window_last_logits: number[];
  decode_roundtrip: boolean;
  ids: number[];
  greedy: { prompt: string; prompt_with_special_tokens: number[] };
  chat?: { messages: ChatMessage[]; text: string; ids: number[] };
}

const TINY = join(ROOT, "test/fixtures/tiny");
const expected = JSON.parse(readFileSync(join(TINY, "expected.json"), "utf8")) as { eval_text: string; ctx: number; checkpoints: Record<string, Reference> };
const evalText = readFileSync(join(TINY, expected.eval_text), "utf8");
const LOGIT_TOLERANCE = 1e-3;

const GGUF_ARCH: Record<string, string> = { LlamaForCausalLM: "llama", MistralForCausalLM: "llama", Qwen2ForCausalLM: "qwen2", Qwen3ForCausalLM: "qwen3" };

/** convert_hf_to_gguf's llama3 rope_factors. */
function llama3RopeFactors(c: ModelConfig): Float32Array {
  const s = c.rope.scaling;
  if (s?.type !== "llama3") throw new Error("not llama3 scaling");
  const low = s.originalMaxPositions / s.lowFreqFactor;
  const high = s.originalMaxPositions / s.highFreqFactor;
  return Float32Array.from({ length: c.headDim / 2 }, (_, i) => {
    const freq = 1 / c.rope.theta ** ((2 * i) / c.headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < high) return 1;
    if (wavelen > low) return s.factor;
    const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return 1 / ((1 - smooth) / s.factor + smooth);
  });
}

/** convert_hf_to_gguf's get_vocab_base + SpecialVocab for a byte-level BPE tokenizer.json. */
function vocabMetadata(dir: string, vocabSize: number): Record<string, GgufWriteValue> {
  const tj = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")) as Json;
  const tc = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")) as Json;
  const model = tj["model"] as { vocab: Record<string, number>; merges: (string | string[])[] };
  const added = tj["added_tokens"] as { id: number; content: string; special: boolean }[];
  const byId = new Map<number, string>();
  for (const [t, id] of Object.entries(model.vocab)) byId.set(id, t);
  for (const a of added) byId.set(a.id, a.content);
  const tokens: string[] = [];
  const types: number[] = [];
  for (let i = 0; i < vocabSize; i++) {
    const a = added.find((x) => x.id === i);
    tokens.push(byId.get(i) ?? `[PAD${i}]`);
    types.push(!byId.has(i) ? 5 : a ? (a.special ? 3 : 4) : 1);
  }
  const regex = JSON.stringify(tj["pre_tokenizer"]);
  const pre = regex.includes("\\\\p{N}{1,3}") ? "llama-bpe" : regex.includes("\\\\p{N}|") ? "qwen2" : "gpt2";
  const id = (field: string) => {
    const v = tc[field];
    const s = typeof v === "string" ? v : (v as { content?: string } | undefined)?.content;
    return s === undefined ? undefined : tokens.indexOf(s);
  };
  const post = tj["post_processor"] as { type?: string; single?: Json[] } | null;
  const addBos = typeof tc["add_bos_token"] === "boolean" ? (tc["add_bos_token"] as boolean) : post?.type === "TemplateProcessing" && !!post.single?.[0]?.["SpecialToken"];
  const m: Record<string, GgufWriteValue> = {
    "tokenizer.ggml.model": meta.str("gpt2"),
    "tokenizer.ggml.pre": meta.str(pre),
    "tokenizer.ggml.tokens": meta.strings(tokens),
    "tokenizer.ggml.token_type": meta.i32s(types),
    "tokenizer.ggml.merges": meta.strings(model.merges.map((x) => (Array.isArray(x) ? x.join(" ") : x))),
    "tokenizer.ggml.add_bos_token": meta.bool(addBos),
  };
  const bos = id("bos_token"), eos = id("eos_token");
  if (bos !== undefined && bos >= 0) m["tokenizer.ggml.bos_token_id"] = meta.u32(bos);
  if (eos !== undefined && eos >= 0) m["tokenizer.ggml.eos_token_id"] = meta.u32(eos);
  if (typeof tc["chat_template"] === "string") m["tokenizer.chat_template"] = meta.str(tc["chat_template"] as string);
  return m;
}

/** The GGUF file llama.cpp's converter would make of a transformers folder. */
async function convert(dir: string): Promise<string> {
  const src = await readSource(dir);
  const c = src.config;
  const arch = GGUF_ARCH[c.architecture];
  if (!arch) throw new Error(`no GGUF architecture for ${c.architecture}`);
  const stored = [...src.tensors.values()][0]!.dtype;
  const dtype = stored === "bf16" ? "bf16" : "f32";
  const { scaling, ...rope } = c.rope;
  const config: ModelConfig = { ...c, architecture: arch, rope };
  const tensors = [...src.tensors.values()].map((t) => {
    const values = t.dtype === "bf16"
      ? Float32Array.from(new Uint16Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 2), bf16ToF32)
      : new Float32Array(t.data.slice().buffer);
    return { name: t.name, shape: t.shape, values };
  });
  const out: GgufWriteTensor[] = ggufModelTensors(config, tensors, dtype);
  if (scaling?.type === "llama3") out.push({ name: "rope_freqs.weight", dtype: "f32", shape: [c.headDim / 2], data: new Uint8Array(llama3RopeFactors(c).buffer) });
  const path = tempPath(`${arch}.gguf`);
  writeFileSync(path, encodeGguf({ ...ggufModelMetadata(config, dtype), ...vocabMetadata(dir, c.vocabSize) }, out));
  return path;
}

for (const [name, ref] of Object.entries(expected.checkpoints)) {
  describe(`${name} (${ref.architecture}) converted to GGUF, against transformers`, () => {
    let model: Model;
    before(async () => {
      model = await loadModel(await convert(join(TINY, ref.folder)));
    });
    after(() => model?.dispose());

    test("the tokenizer rebuilt from GGUF metadata gives transformers' ids", () => {
      assert.deepEqual(model.tokenizer.encode(evalText, { addSpecialTokens: false }), ref.ids);
      assert.deepEqual(model.tokenizer.encode(ref.greedy.prompt, { addSpecialTokens: true }), ref.greedy.prompt_with_special_tokens);
      if (ref.decode_roundtrip) assert.equal(model.tokenizer.decode(ref.ids), evalText);
    });

    const chat = ref.chat;
    if (chat) {
      test("the chat template from the metadata renders and tokenizes as in transformers", () => {
        const text = renderChat(model.tokenizer, chat.messages);
        assert.equal(text, chat.text);
        assert.deepEqual(model.tokenizer.encode(text, { addSpecialTokens: false }), chat.ids);
      });
    }

    test("the RoPE frequencies (rope_freqs for Llama 3 scaling) are transformers'", () => {
      const inv = model.config.rope.inverseFrequencies ?? null;
      const theta = model.config.rope.theta;
      ref.rope_inv_freq.forEach((want, i) => {
        const got = inv ? inv[i]! : theta ** ((-2 * i) / model.config.headDim);
        assert.ok(Math.abs(got - want) <= 1e-6 * want, `pair ${i}: ${got} vs ${want}`);
      });
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
  });
}
