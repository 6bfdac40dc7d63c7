/**
 * The tokenizer stored in GGUF metadata (tokenizer.ggml.*), rebuilt as the equivalent tokenizer.json
 * and run by @huggingface/tokenizers, following llama.cpp's llama-vocab.cpp:
 *
 * - "llama": SentencePiece BPE with scores. llama.cpp merges the adjacent pair whose joined text is the
 *   highest-scoring piece; the equivalent BPE merge list ranks every (left, right) split of a piece by
 *   that piece's score (as transformers' SentencePiece converter does). A space is prepended to each
 *   run of text and spaces become "▁"; characters outside the vocabulary fall back to <0xXX> tokens.
 * - "gpt2": byte-level BPE with the stored merges and a pre-tokenizer regex chosen by tokenizer.ggml.pre.
 *
 * Control, user-defined and unknown tokens are matched whole in the input text (llama.cpp's
 * parse_special), so chat templates can spell them.
 */
import { Tokenizer as HfTokenizerImpl } from "@huggingface/tokenizers";
import type { Tokenizer } from "./tokenizer.js";
import { FormatError } from "./errors.js";
import { type GgufEntry, GgufMetadata } from "./gguf.js";

/** llama_token_type values of tokenizer.ggml.token_type. */
export const TokenType = { UNDEFINED: 0, NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

const SPACE = "\u2581";

/** Pre-tokenizer regexes of llama.cpp's BPE pre-tokenizer types (llama-vocab.cpp), in JavaScript syntax. */
const LLAMA3_REGEX = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

type Json = Record<string, unknown>;

const split = (regex: string): Json => ({ type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false });
const byteLevel = (useRegex: boolean): Json => ({ type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: useRegex });

/** tokenizer.ggml.pre values we know, with their pre-tokenizer and llama.cpp's defaults for them. */
const BPE_PRE: Record<string, { preTokenizer: Json; ignoreMerges?: boolean; addBos?: boolean }> = {
  // llama.cpp's "default" splits slightly differently (extra punctuation/number rules); GPT-2's regex is the closest
  default: { preTokenizer: byteLevel(true) },
  gpt2: { preTokenizer: byteLevel(true) },
  "gpt-2": { preTokenizer: byteLevel(true) },
  llama3: { preTokenizer: { type: "Sequence", pretokenizers: [split(LLAMA3_REGEX), byteLevel(false)] }, ignoreMerges: true, addBos: true },
  "llama-v3": { preTokenizer: { type: "Sequence", pretokenizers: [split(LLAMA3_REGEX), byteLevel(false)] }, ignoreMerges: true, addBos: true },
  "llama-bpe": { preTokenizer: { type: "Sequence", pretokenizers: [split(LLAMA3_REGEX), byteLevel(false)] }, ignoreMerges: true, addBos: true },
  qwen2: { preTokenizer: { type: "Sequence", pretokenizers: [split(QWEN2_REGEX), byteLevel(false)] } },
  "deepseek-r1-qwen": { preTokenizer: { type: "Sequence", pretokenizers: [split(QWEN2_REGEX), byteLevel(false)] } },
  smollm: { preTokenizer: { type: "Sequence", pretokenizers: [split("\\p{N}"), byteLevel(true)] } },
};

/** The special token ids of a GGUF vocabulary, with llama.cpp's defaults for SentencePiece vocabularies. */
export interface GgufSpecialIds {
  bos?: number;
  eos?: number;
  unk?: number;
  pad?: number;
  /** Every id that ends generation: eos, eot, eom and the control tokens llama.cpp recognises by text. */
  endOfGeneration: number[];
}

/** Token texts llama.cpp also treats as end of generation when they are control tokens. */
const EOG_TEXTS = new Set(["<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>"]);

/** Reads the special token ids of a vocabulary of `vocab` tokens. */
export function ggufSpecialIds(md: GgufMetadata, vocab: number): GgufSpecialIds {
  const spm = md.optString("tokenizer.ggml.model") === "llama";
  const id = (key: string, spmDefault?: number): number | undefined => {
    const v = md.optId(`tokenizer.ggml.${key}`, vocab);
    if (v !== undefined) return v;
    return spm && spmDefault !== undefined && spmDefault < vocab ? spmDefault : undefined;
  };
  const out: GgufSpecialIds = { endOfGeneration: [] };
  const bos = id("bos_token_id", 1);
  const eos = id("eos_token_id", 2);
  const unk = id("unknown_token_id", 0);
  const pad = id("padding_token_id");
  if (bos !== undefined) out.bos = bos;
  if (eos !== undefined) out.eos = eos;
  if (unk !== undefined) out.unk = unk;
  if (pad !== undefined) out.pad = pad;
  const eog = new Set<number>();
  for (const v of [eos, id("eot_token_id"), id("eom_token_id")]) if (v !== undefined) eog.add(v);
  const tokens = md.optStrings("tokenizer.ggml.tokens");
  const types = md.optNumbers("tokenizer.ggml.token_type");
  if (tokens && types) tokens.forEach((t, i) => types[i] === TokenType.CONTROL && EOG_TEXTS.has(t) && eog.add(i));
  out.endOfGeneration = [...eog];
  return out;
}

/**
 * Whether llama.cpp puts BOS before a prompt: tokenizer.ggml.add_bos_token, else its default for the
 * vocabulary type (SentencePiece: yes; BPE: only for Llama-3-style pre-tokenizers).
 */
export function ggufAddsBos(md: GgufMetadata): boolean {
  const explicit = md.optBool("tokenizer.ggml.add_bos_token");
  if (explicit !== undefined) return explicit;
  if (md.optString("tokenizer.ggml.model") === "llama") return true;
  return BPE_PRE[md.optString("tokenizer.ggml.pre") ?? "default"]?.addBos ?? false;
}

/** The tokenizer.json equivalent of a GGUF vocabulary, and the flags llama.cpp applies around it. */
export interface GgufTokenizerSpec {
  json: Json;
  addBos: boolean;
  addEos: boolean;
}

/** Builds the tokenizer.json equivalent of the GGUF metadata; errors name the offending key. */
export function ggufTokenizerSpec(md: GgufMetadata): GgufTokenizerSpec {
  const model = md.string("tokenizer.ggml.model");
  const tokens = md.optStrings("tokenizer.ggml.tokens") ?? missing(md, "tokenizer.ggml.tokens");
  const types = md.optNumbers("tokenizer.ggml.token_type") ?? tokens.map(() => TokenType.NORMAL);
  if (types.length !== tokens.length) throw new FormatError(md.source, `tokenizer.ggml.token_type has ${types.length} entries for ${tokens.length} tokens`);
  const ids = ggufSpecialIds(md, tokens.length);

  const addedTokens = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = types[i];
    if (t === TokenType.CONTROL || t === TokenType.USER_DEFINED || t === TokenType.UNKNOWN) {
      addedTokens.push({ id: i, content: tokens[i]!, special: t !== TokenType.USER_DEFINED, normalized: false, lstrip: false, rstrip: false, single_word: false });
    }
  }
  const vocab: Record<string, number> = Object.create(null);
  // llama.cpp's text-to-id map keeps the last of duplicate texts
  tokens.forEach((t, i) => (vocab[t] = i));
  const unkToken = ids.unk === undefined ? null : tokens[ids.unk]!;

  if (model === "llama") {
    const scores = md.optNumbers("tokenizer.ggml.scores") ?? tokens.map(() => 0);
    if (scores.length !== tokens.length) throw new FormatError(md.source, `tokenizer.ggml.scores has ${scores.length} entries for ${tokens.length} tokens`);
    const spacePrefix = md.optBool("tokenizer.ggml.add_space_prefix") ?? true;
    const escape = { type: "Replace", pattern: { String: " " }, content: SPACE };
    const json: Json = {
      version: "1.0",
      added_tokens: addedTokens,
      normalizer: spacePrefix ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: SPACE }, escape] } : escape,
      pre_tokenizer: null,
      post_processor: null,
      decoder: {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: SPACE }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
          ...(spacePrefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
        ],
      },
      model: { type: "BPE", vocab, merges: sentencePieceMerges(tokens, scores, types, vocab), byte_fallback: true, fuse_unk: true, unk_token: unkToken, ignore_merges: false },
    };
    return { json, addBos: ggufAddsBos(md), addEos: md.optBool("tokenizer.ggml.add_eos_token") ?? false };
  }
  if (model === "gpt2") {
    const pre = md.optString("tokenizer.ggml.pre") ?? "default";
    const kind = BPE_PRE[pre];
    if (!kind) throw new FormatError(md.source, `tokenizer.ggml.pre = "${pre}" is not a pre-tokenizer this engine knows (${Object.keys(BPE_PRE).join(", ")})`);
    const merges = (md.optStrings("tokenizer.ggml.merges") ?? missing(md, "tokenizer.ggml.merges")).map((m, i) => {
      const at = m.indexOf(" ", 1);
      if (at < 0) throw new FormatError(md.source, `tokenizer.ggml.merges[${i}] = ${JSON.stringify(m)} is not two tokens separated by a space`);
      return [m.slice(0, at), m.slice(at + 1)];
    });
    const json: Json = {
      version: "1.0",
      added_tokens: addedTokens,
      normalizer: null,
      pre_tokenizer: kind.preTokenizer,
      post_processor: null,
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: "BPE", vocab, merges, byte_fallback: false, unk_token: unkToken, ignore_merges: kind.ignoreMerges ?? false },
    };
    return { json, addBos: ggufAddsBos(md), addEos: md.optBool("tokenizer.ggml.add_eos_token") ?? false };
  }
  throw new FormatError(md.source, `tokenizer.ggml.model = "${model}" is not supported (llama, gpt2)`);
}

function missing(md: GgufMetadata, key: string): never {
  throw new FormatError(md.source, `missing metadata key ${key}`);
}

/**
 * BPE merges equivalent to SentencePiece's score-driven merging: every split of a piece into two parts
 * that can be symbols (vocabulary pieces or single characters), best piece score first, then lower id.
 */
function sentencePieceMerges(tokens: readonly string[], scores: readonly number[], types: readonly number[], vocab: Record<string, number>): [string, string][] {
  const found: { left: string; right: string; score: number; id: number }[] = [];
  const isSymbol = (s: string) => s in vocab || [...s].length === 1;
  tokens.forEach((piece, id) => {
    const t = types[id];
    if (t !== TokenType.NORMAL && t !== TokenType.USER_DEFINED && t !== TokenType.UNDEFINED) return;
    const chars = [...piece];
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join("");
      const right = chars.slice(k).join("");
      if (isSymbol(left) && isSymbol(right)) found.push({ left, right, score: scores[id]!, id });
    }
  });
  found.sort((a, b) => b.score - a.score || a.id - b.id);
  return found.map((m) => [m.left, m.right]);
}

/** A GGUF vocabulary behind the engine's Tokenizer interface. */
export class GgufTokenizer implements Tokenizer {
  readonly vocabSize: number;
  /** Set only when the file says BOS starts a prompt (add_bos), so callers that add BOS themselves agree with llama.cpp. */
  readonly bosTokenId?: number;
  readonly eosTokenIds: readonly number[];
  readonly chatTemplate?: string;
  readonly specialTokens: Readonly<Record<string, string>>;
  private readonly impl: HfTokenizerImpl;
  private readonly addBos: boolean;
  private readonly addEos: boolean;
  private readonly eosTokenId?: number;

  constructor(metadata: ReadonlyMap<string, GgufEntry>, source: string) {
    const md = new GgufMetadata(metadata, source);
    const spec = ggufTokenizerSpec(md);
    const tokens = md.optStrings("tokenizer.ggml.tokens")!;
    const ids = ggufSpecialIds(md, tokens.length);
    try {
      this.impl = new HfTokenizerImpl(spec.json, { clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new FormatError(source, `cannot build the tokenizer from tokenizer.ggml.*: ${(e as Error).message}`);
    }
    this.vocabSize = tokens.length;
    this.addBos = spec.addBos;
    this.addEos = spec.addEos;
    if (ids.bos !== undefined && spec.addBos) this.bosTokenId = ids.bos;
    if (ids.eos !== undefined) this.eosTokenId = ids.eos;
    this.eosTokenIds = ids.endOfGeneration;
    const special: Record<string, string> = {};
    if (ids.bos !== undefined) special["bos_token"] = tokens[ids.bos]!;
    if (ids.eos !== undefined) special["eos_token"] = tokens[ids.eos]!;
    if (ids.unk !== undefined) special["unk_token"] = tokens[ids.unk]!;
    if (ids.pad !== undefined) special["pad_token"] = tokens[ids.pad]!;
    this.specialTokens = special;
    const template = md.optString("tokenizer.chat_template");
    if (template !== undefined) this.chatTemplate = template;
  }

  /** Token ids of `text`; with addSpecialTokens, BOS and EOS as the file's add_bos/add_eos flags say. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const ids = text.length ? this.impl.encode(text, { add_special_tokens: false }).ids : [];
    if (!options.addSpecialTokens) return ids;
    const out = this.bosTokenId !== undefined ? [this.bosTokenId, ...ids] : ids;
    if (this.addEos && this.eosTokenId !== undefined) out.push(this.eosTokenId);
    return out;
  }

  /** Text of `ids`; special tokens are dropped unless `keepSpecial`. */
  decode(ids: readonly number[], options: { keepSpecial?: boolean } = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new Error(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
    }
    if (ids.length === 0) return "";
    return this.impl.decode([...ids], { skip_special_tokens: !options.keepSpecial });
  }
}

/** The tokenizer of a GGUF file's metadata. */
export function tokenizerFromGguf(metadata: ReadonlyMap<string, GgufEntry>, source: string): GgufTokenizer {
  return new GgufTokenizer(metadata, source);
}
