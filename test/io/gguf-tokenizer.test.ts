/**
 * Tokenizers rebuilt from GGUF metadata, on hand-made vocabularies whose ids are derived by hand from
 * llama.cpp's algorithms (llm_tokenizer_spm: repeatedly merge the adjacent pair whose joined text is
 * the best-scoring piece; llm_tokenizer_bpe: pre-tokenizer regex, then ranked merges).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GgufTokenizer } from "../../src/io/gguf-tokenizer.js";
import { parseGgufHeader } from "../../src/io/gguf.js";
import { FormatError } from "../../src/io/errors.js";
import { encodeGguf, meta, spmVocabMetadata, syntheticSpmVocab, type GgufWriteValue } from "../../src/io/gguf-writer.js";

function tokenizer(metadata: Record<string, GgufWriteValue>): GgufTokenizer {
  return new GgufTokenizer(parseGgufHeader(encodeGguf(metadata, [])).metadata, "vocab.gguf");
}

// ---------------------------------------------------------------------------------------------
// SentencePiece ("llama")

const BYTE = (b: number) => b + 3; // <0x00> is id 3
const SPM_PIECES: [string, number, number][] = [
  // text, score, type (1 normal, 3 control, 4 user-defined)
  ["\u2581", -100, 1], ["h", -100, 1], ["e", -100, 1], ["l", -100, 1], ["o", -100, 1], ["w", -100, 1], ["r", -100, 1], ["d", -100, 1],
  // ids run against the scores, so an id-ordered merge list would tokenize differently
  ["\u2581w", -8, 1], ["or", -7, 1], ["\u2581hello", -6, 1], ["\u2581he", -5, 1], ["llo", -4, 1], ["he", -3, 1], ["\u2581h", -2, 1], ["ll", -1, 1],
  ["a", -100, 1], ["b", -100, 1], ["c", -100, 1], ["bc", -2, 1], ["ab", -1, 1],
  ["<|im_end|>", 0, 3], ["<tool>", 0, 4],
];
const ID = Object.fromEntries(SPM_PIECES.map(([t], i) => [t, 259 + i])) as Record<string, number>;

function spmMetadata(extra: Record<string, GgufWriteValue> = {}): Record<string, GgufWriteValue> {
  const tokens = ["<unk>", "<s>", "</s>", ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`), ...SPM_PIECES.map((p) => p[0])];
  const scores = [0, 0, 0, ...new Array(256).fill(0), ...SPM_PIECES.map((p) => p[1])];
  const types = [2, 3, 3, ...new Array(256).fill(6), ...SPM_PIECES.map((p) => p[2])];
  return {
    "tokenizer.ggml.model": meta.str("llama"),
    "tokenizer.ggml.tokens": meta.strings(tokens),
    "tokenizer.ggml.scores": meta.f32s(scores),
    "tokenizer.ggml.token_type": meta.i32s(types),
    "tokenizer.ggml.bos_token_id": meta.u32(1),
    "tokenizer.ggml.eos_token_id": meta.u32(2),
    "tokenizer.ggml.unknown_token_id": meta.u32(0),
    "tokenizer.chat_template": meta.str("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"),
    ...extra,
  };
}

test("SentencePiece: merges follow piece scores, as llama.cpp's merging does", () => {
  const t = tokenizer(spmMetadata());
  // "▁hello": ll(-1), then ▁h(-2) (which leaves no "he"), llo(-4), ▁he(-5), ▁hello(-6)
  assert.deepEqual(t.encode("hello", { addSpecialTokens: true }), [1, ID["\u2581hello"]]);
  // "▁abc": ab(-1) beats bc(-2), though bc has the lower id
  assert.deepEqual(t.encode("abc"), [ID["\u2581"], ID["ab"], ID["c"]]);
  // "▁world": or(-7), then ▁w(-8); "l" and "d" stay single
  assert.deepEqual(t.encode("world"), [ID["\u2581w"], ID["or"], ID["l"], ID["d"]]);
  // one run of text: the space inside becomes ▁ and starts the second word
  assert.deepEqual(t.encode("hello world"), [ID["\u2581hello"], ID["\u2581w"], ID["or"], ID["l"], ID["d"]]);
  // é is not a piece: its UTF-8 bytes C3 A9 fall back to byte tokens
  assert.deepEqual(t.encode("hé"), [ID["\u2581h"], BYTE(0xc3), BYTE(0xa9)]);
  assert.deepEqual(t.encode(""), []);
  assert.deepEqual(t.encode("", { addSpecialTokens: true }), [1]);
});

test("SentencePiece: special tokens in the text are matched whole, and text after them gets the space prefix", () => {
  const t = tokenizer(spmMetadata());
  assert.deepEqual(t.encode("<s>hello</s>"), [1, ID["\u2581hello"], 2]);
  assert.deepEqual(t.encode("hello<|im_end|>"), [ID["\u2581hello"], ID["<|im_end|>"]]);
  assert.deepEqual(t.encode("<tool>hello"), [ID["<tool>"], ID["\u2581hello"]]);
});

test("SentencePiece: decoding turns ▁ into spaces, joins byte tokens, drops the first space and special tokens", () => {
  const t = tokenizer(spmMetadata());
  const ids = [1, ID["\u2581hello"], ID["\u2581w"], ID["or"], ID["l"], ID["d"], 2];
  assert.equal(t.decode(ids), "hello world");
  assert.equal(t.decode(ids, { keepSpecial: true }), "<s> hello world</s>");
  assert.equal(t.decode([ID["\u2581h"], BYTE(0xc3), BYTE(0xa9)]), "hé");
  assert.equal(t.decode([]), "");
  assert.throws(() => t.decode([999]), /token id 999 is outside the vocabulary \[0, 282\)/);
});

test("SentencePiece: ids, special tokens, end-of-generation tokens and the chat template come from the metadata", () => {
  const t = tokenizer(spmMetadata({ "tokenizer.ggml.eot_token_id": meta.u32(5) }));
  assert.equal(t.vocabSize, 282);
  assert.equal(t.bosTokenId, 1);
  // eos, eot, and the control token llama.cpp recognises by its text
  assert.deepEqual([...t.eosTokenIds].sort((a, b) => a - b), [2, 5, ID["<|im_end|>"]]);
  assert.deepEqual(t.specialTokens, { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" });
  assert.equal(t.chatTemplate, "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}");
});

test("SentencePiece: add_space_prefix = false and add_bos_token = false are honoured", () => {
  const t = tokenizer(spmMetadata({ "tokenizer.ggml.add_space_prefix": meta.bool(false), "tokenizer.ggml.add_bos_token": meta.bool(false) }));
  // "hello": ll(-1), he(-3), llo(-4); "he"+"llo" is no piece
  assert.deepEqual(t.encode("hello", { addSpecialTokens: true }), [ID["he"], ID["llo"]]);
  assert.equal(t.decode([ID["\u2581hello"]]), " hello");
});

test("SentencePiece: without bos/eos keys llama.cpp's defaults (1, 2, unk 0) apply", () => {
  const m = spmMetadata();
  delete m["tokenizer.ggml.bos_token_id"];
  delete m["tokenizer.ggml.eos_token_id"];
  delete m["tokenizer.ggml.unknown_token_id"];
  const t = tokenizer(m);
  assert.equal(t.bosTokenId, 1);
  assert.ok(t.eosTokenIds.includes(2));
});

test("the synthetic vocabulary of make-random-gguf round-trips text, newlines and non-ASCII through byte fallback", () => {
  const t = tokenizer(spmVocabMetadata(syntheticSpmVocab(2000)));
  for (const text of ["the quick brown fox", "Hello, World!\nSecond line: 42.", "naïve café 🙂", "  two  spaces"]) {
    const ids = t.encode(text, { addSpecialTokens: true });
    assert.equal(ids[0], 1);
    assert.ok(ids.every((id) => id >= 0 && id < 2000));
    assert.equal(t.decode(ids), text, JSON.stringify(text));
  }
  // multi-letter pieces are actually used
  assert.ok(t.encode("the tea").length < "the tea".length);
});

// ---------------------------------------------------------------------------------------------
// byte-level BPE ("gpt2")

const BPE_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "h", "e", "l", "o", "\u0120", "w", "r", "d", "he", "ll", "hell", "hello", "\u0120w", "or", "\u0120wor", "\u0120worl", "\u0120world", "1", "2", "3", "4", "12", "123", "x", "y", "z", "xyz", "!", "\u010a"];
const B = Object.fromEntries(BPE_TOKENS.map((t, i) => [t, i])) as Record<string, number>;
const BPE_MERGES = ["h e", "l l", "he ll", "hell o", "\u0120 w", "o r", "\u0120w or", "\u0120wor l", "\u0120worl d", "1 2", "12 3"];

function bpeMetadata(pre: string, extra: Record<string, GgufWriteValue> = {}): Record<string, GgufWriteValue> {
  return {
    "tokenizer.ggml.model": meta.str("gpt2"),
    "tokenizer.ggml.pre": meta.str(pre),
    "tokenizer.ggml.tokens": meta.strings(BPE_TOKENS),
    "tokenizer.ggml.token_type": meta.i32s(BPE_TOKENS.map((_, i) => (i < 3 ? 3 : 1))),
    "tokenizer.ggml.merges": meta.strings(BPE_MERGES),
    "tokenizer.ggml.bos_token_id": meta.u32(0),
    "tokenizer.ggml.eos_token_id": meta.u32(0),
    ...extra,
  };
}

test("byte-level BPE (qwen2): words split by the regex, merged by rank; digits one by one", () => {
  const t = tokenizer(bpeMetadata("qwen2"));
  assert.deepEqual(t.encode("hello world"), [B["hello"], B["\u0120world"]]);
  assert.deepEqual(t.encode("hello world", { addSpecialTokens: true }), [B["hello"], B["\u0120world"]]); // qwen2 adds no BOS
  assert.equal(t.bosTokenId, undefined); // so Model.chat does not prepend one either, as llama.cpp does not
  assert.deepEqual(t.encode("1234"), [B["1"], B["2"], B["3"], B["4"]]);
  assert.deepEqual(t.encode("xyz"), [B["x"], B["y"], B["z"]]);
  assert.deepEqual(t.encode("<|im_start|>hello<|im_end|>\n"), [1, B["hello"], 2, B["\u010a"]]);
  assert.equal(t.decode([1, B["hello"], B["\u0120world"], B["!"], 2]), "hello world!");
  assert.equal(t.decode([1, B["hello"], 2], { keepSpecial: true }), "<|im_start|>hello<|im_end|>");
  assert.deepEqual([...t.eosTokenIds].sort(), [0, 2]);
});

test("byte-level BPE (llama-bpe): up to three digits together, whole-word vocabulary hits skip merges, BOS by default", () => {
  const t = tokenizer(bpeMetadata("llama-bpe"));
  assert.deepEqual(t.encode("1234"), [B["123"], B["4"]]);
  assert.deepEqual(t.encode("xyz"), [B["xyz"]]);
  assert.deepEqual(t.encode("hello", { addSpecialTokens: true }), [0, B["hello"]]);
  assert.equal(t.bosTokenId, 0);
  const off = tokenizer(bpeMetadata("llama-bpe", { "tokenizer.ggml.add_bos_token": meta.bool(false) }));
  assert.deepEqual(off.encode("hello", { addSpecialTokens: true }), [B["hello"]]);
});

test("refuses unknown tokenizer models and pre-tokenizers, and malformed vocabularies, by key", () => {
  const refuses = (m: Record<string, GgufWriteValue>, pattern: RegExp) =>
    assert.throws(() => tokenizer(m), (e: unknown) => e instanceof FormatError && /^vocab\.gguf: /.test(e.message) && pattern.test(e.message));
  refuses(bpeMetadata("chatglm-bpe"), /tokenizer\.ggml\.pre = "chatglm-bpe" is not a pre-tokenizer this engine knows/);
  refuses({ ...bpeMetadata("qwen2"), "tokenizer.ggml.model": meta.str("t5") }, /tokenizer\.ggml\.model = "t5" is not supported/);
  const noMerges = bpeMetadata("qwen2");
  delete noMerges["tokenizer.ggml.merges"];
  refuses(noMerges, /missing metadata key tokenizer\.ggml\.merges/);
  refuses({ ...bpeMetadata("qwen2"), "tokenizer.ggml.merges": meta.strings(["nospace"]) }, /tokenizer\.ggml\.merges\[0\] = "nospace" is not two tokens/);
  refuses({ ...spmMetadata(), "tokenizer.ggml.scores": meta.f32s([1, 2]) }, /tokenizer\.ggml\.scores has 2 entries for 282 tokens/);
  refuses({ ...spmMetadata(), "tokenizer.ggml.tokens": meta.u32(3) }, /metadata tokenizer\.ggml\.tokens should be an array of strings/);
});
