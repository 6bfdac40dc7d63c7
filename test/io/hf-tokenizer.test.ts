import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { HfTokenizer, loadHfTokenizer } from "../../src/io/hf-tokenizer.js";
import { FormatError } from "../../src/io/errors.js";
import { StreamDecoder } from "../../src/io/tokenizer.js";
import { byteLevelTokenizer, sentencePieceTokenizer, tempDir } from "../fixtures/hf/tiny-hf.js";

const CONFIG = {
  bos_token: "<s>",
  eos_token: { content: "</s>", lstrip: false, normalized: false, rstrip: false, single_word: false, __type: "AddedToken" },
  pad_token: null,
  unk_token: null,
  chat_template: [
    { name: "tool_use", template: "TOOLS" },
    { name: "default", template: "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}" },
  ],
};

test("byte-level BPE: encode gives the hand-derived ids; BOS comes from the TemplateProcessing post-processor", () => {
  const tok = new HfTokenizer(byteLevelTokenizer(true), CONFIG, "tiny");
  assert.deepEqual(tok.encode("hello world!"), [14, 19, 10]);
  assert.deepEqual(tok.encode("hello world!", { addSpecialTokens: true }), [0, 14, 19, 10]);
  assert.deepEqual(tok.encode("hold"), [2, 5, 4, 9]);
  // special tokens written in the text are matched whole
  assert.deepEqual(tok.encode("<s>hello</s>"), [0, 14, 1]);
});

test("byte-level BPE as Llama 3 writes it (Split regex + ByteLevel pre-tokenizer, Sequence post-processor) gives the same ids", () => {
  const plain = byteLevelTokenizer(true);
  const llama3 = {
    ...plain,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        {
          type: "Split",
          pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
          behavior: "Isolated",
          invert: false,
        },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: { type: "Sequence", processors: [{ type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true }, plain["post_processor"]] },
  };
  const tok = new HfTokenizer(llama3, CONFIG, "llama3-style");
  assert.deepEqual(tok.encode("hello world! hold", { addSpecialTokens: true }), [0, 14, 19, 10, 6, 2, 5, 4, 9]);
  assert.deepEqual(tok.encode("hello world! hold"), [14, 19, 10, 6, 2, 5, 4, 9]);
});

test("byte-level BPE: a ByteLevel post-processor (Qwen style) adds nothing", () => {
  const tok = new HfTokenizer(byteLevelTokenizer(false), { eos_token: "</s>", bos_token: null }, "tiny");
  assert.deepEqual(tok.encode("hello world!", { addSpecialTokens: true }), [14, 19, 10]);
  assert.equal(tok.bosTokenId, undefined);
});

test("decode drops special tokens unless asked, and ids past the tokenizer's vocabulary have no text", () => {
  const tok = new HfTokenizer(byteLevelTokenizer(true), CONFIG, "tiny");
  assert.equal(tok.decode([0, 14, 19, 10, 1]), "hello world!");
  assert.equal(tok.decode([0, 14, 19, 10, 1], { keepSpecial: true }), "<s>hello world!</s>");
  assert.equal(tok.decode([14, 25, 10]), "hello!");
  assert.equal(tok.decode([]), "");
  // streaming decode reassembles the same text piece by piece
  const stream = new StreamDecoder(tok, [0]);
  const pieces = [14, 19, 10].map((id) => stream.push(id));
  assert.equal(pieces.join("") + stream.flush(), "hello world!");
});

test("special tokens, ids and the default chat template come from tokenizer_config.json", () => {
  const tok = new HfTokenizer(byteLevelTokenizer(true), CONFIG, "tiny");
  assert.equal(tok.vocabSize, 20);
  assert.equal(tok.bosTokenId, 0);
  assert.deepEqual(tok.eosTokenIds, [1]);
  assert.deepEqual(tok.specialTokens, { bos_token: "<s>", eos_token: "</s>" });
  assert.equal(tok.chatTemplate, CONFIG.chat_template[1]!.template);
  const single = new HfTokenizer(byteLevelTokenizer(true), { chat_template: "T" }, "tiny");
  assert.equal(single.chatTemplate, "T");
  assert.equal(single.bosTokenId, undefined);
  assert.throws(() => new HfTokenizer(byteLevelTokenizer(true), { chat_template: 5 }, "tiny"), FormatError);
});

test("SentencePiece-style BPE (Llama 2): ▁ for spaces, byte fallback, BOS, and decode strips the dummy prefix", () => {
  const tok = new HfTokenizer(sentencePieceTokenizer(), { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" }, "sp");
  assert.deepEqual(tok.encode("hi hi!", { addSpecialTokens: true }), [1, 7, 7, 8]);
  assert.equal(tok.decode([1, 7, 7, 8]), "hi hi!");
  assert.equal(tok.vocabSize, 9);
  assert.deepEqual([tok.bosTokenId, ...tok.eosTokenIds], [1, 2]);
});

test("Llama tokenizer classes: add_bos_token / add_eos_token in tokenizer_config.json override the post-processor", () => {
  const sp = sentencePieceTokenizer();
  const base = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", tokenizer_class: "LlamaTokenizer" };
  const noTemplate = { ...sp, post_processor: null };
  assert.deepEqual(new HfTokenizer(noTemplate, base, "sp").encode("hi", { addSpecialTokens: true }), [1, 7]); // add_bos_token defaults to true
  assert.deepEqual(new HfTokenizer(sp, { ...base, add_bos_token: false }, "sp").encode("hi", { addSpecialTokens: true }), [7]);
  assert.deepEqual(new HfTokenizer(sp, { ...base, add_eos_token: true }, "sp").encode("hi", { addSpecialTokens: true }), [1, 7, 2]);
  assert.deepEqual(new HfTokenizer(sp, { ...base, add_eos_token: true }, "sp").encode("hi"), [7]);
  // other classes follow the post-processor whatever the flags say
  assert.deepEqual(new HfTokenizer(sp, { ...base, tokenizer_class: "PreTrainedTokenizerFast", add_bos_token: false }, "sp").encode("hi", { addSpecialTokens: true }), [1, 7]);
});

test("loadHfTokenizer reads the folder; chat_template.jinja overrides the config's template", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(byteLevelTokenizer(true)));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(CONFIG));
  const tok = await loadHfTokenizer(dir);
  assert.deepEqual(tok.encode("hello", { addSpecialTokens: true }), [0, 14]);
  assert.equal(tok.chatTemplate, CONFIG.chat_template[1]!.template);
  writeFileSync(join(dir, "chat_template.jinja"), "{{ messages[0]['content'] }}");
  assert.equal((await loadHfTokenizer(dir)).chatTemplate, "{{ messages[0]['content'] }}");
});

test("a missing or broken tokenizer.json is refused naming the file", async () => {
  const dir = tempDir();
  await assert.rejects(loadHfTokenizer(dir), (e: Error) => e instanceof FormatError && e.message.includes(join(dir, "tokenizer.json")));
  writeFileSync(join(dir, "tokenizer.json"), "{");
  await assert.rejects(loadHfTokenizer(dir), (e: Error) => e instanceof FormatError && e.message.includes("not valid JSON"));
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({ model: { type: "Nonsense" } }));
  await assert.rejects(loadHfTokenizer(dir), (e: Error) => e instanceof FormatError && e.message.includes("tokenizer.json"));
});
