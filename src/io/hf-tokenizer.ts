/**
 * Hugging Face tokenizers (tokenizer.json + tokenizer_config.json) behind our Tokenizer interface,
 * through @huggingface/tokenizers. Special tokens added at encode time are whatever the tokenizer's
 * post-processor adds (a TemplateProcessing with BOS for Llama 3, none for Qwen), as in transformers;
 * for the Llama tokenizer classes (Llama 2, TinyLlama, ...) the add_bos_token / add_eos_token flags of
 * tokenizer_config.json decide instead, as LlamaTokenizerFast does.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer as HfTokenizerImpl } from "@huggingface/tokenizers";
import type { Tokenizer } from "./tokenizer.js";
import { FormatError } from "./errors.js";
import { parseJsonObject } from "./hf-config.js";

type Json = Record<string, unknown>;

/** The special-token fields of tokenizer_config.json that chat templates refer to. */
const SPECIAL_TOKEN_FIELDS = ["bos_token", "eos_token", "unk_token", "pad_token"] as const;

/** A token field of tokenizer_config.json: a string, or an AddedToken object {content, ...}. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return undefined;
}

/** The template to use from tokenizer_config.json's chat_template: a string, or named templates of which "default" wins. */
function chatTemplateOf(v: unknown, source: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const named = v as { name?: unknown; template?: unknown }[];
    const pick = named.find((t) => t?.name === "default") ?? named[0];
    if (pick && typeof pick.template === "string") return pick.template;
  }
  throw new FormatError(source, "chat_template is neither a string nor a list of {name, template}");
}

/** A Hugging Face tokenizer folder's tokenizer, as the engine's Tokenizer. */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId?: number;
  readonly eosTokenIds: readonly number[];
  readonly chatTemplate?: string;
  readonly specialTokens: Readonly<Record<string, string>>;
  private readonly impl: HfTokenizerImpl;
  /** Set for Llama tokenizer classes, whose add_bos_token/add_eos_token replace the file's post-processor. */
  private readonly llamaTemplate?: { bos: boolean; eos: boolean };

  /**
   * Builds a tokenizer from parsed tokenizer.json and tokenizer_config.json; `chatTemplate` (a
   * chat_template.jinja file) overrides the config's, as in transformers. `source` names the folder in errors.
   */
  constructor(tokenizerJson: Json, tokenizerConfig: Json, source: string, chatTemplate?: string) {
    const special: Record<string, string> = {};
    for (const field of SPECIAL_TOKEN_FIELDS) {
      const s = tokenString(tokenizerConfig[field]);
      if (s !== undefined) special[field] = s;
    }
    const additional = Array.isArray(tokenizerConfig["additional_special_tokens"])
      ? (tokenizerConfig["additional_special_tokens"] as unknown[]).map(tokenString).filter((s): s is string => s !== undefined)
      : undefined;
    try {
      this.impl = new HfTokenizerImpl(tokenizerJson, {
        ...tokenizerConfig,
        ...special,
        ...(additional ? { additional_special_tokens: additional } : {}),
        // transformers has defaulted this to false since 4.45; the library still defaults to true
        clean_up_tokenization_spaces: tokenizerConfig["clean_up_tokenization_spaces"] === true,
      });
    } catch (e) {
      throw new FormatError(join(source, "tokenizer.json"), `cannot build the tokenizer: ${(e as Error).message}`);
    }
    const model = this.impl.model;
    if (!model) throw new FormatError(join(source, "tokenizer.json"), "has no model");
    let maxId = -1;
    for (const id of model.tokens_to_ids.values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;
    this.specialTokens = special;
    const idOf = (token: string | undefined) => (token === undefined ? undefined : this.impl.token_to_id(token));
    const bos = idOf(special["bos_token"]);
    if (bos !== undefined) this.bosTokenId = bos;
    const eos = idOf(special["eos_token"]);
    this.eosTokenIds = eos !== undefined ? [eos] : [];
    // transformers' LlamaTokenizerFast rebuilds the post-processor from these flags when it loads
    const cls = tokenizerConfig["tokenizer_class"];
    if (typeof cls === "string" && /^(Code)?LlamaTokenizer(Fast)?$/.test(cls)) {
      const flag = (key: string, fallback: boolean) => (typeof tokenizerConfig[key] === "boolean" ? (tokenizerConfig[key] as boolean) : fallback);
      this.llamaTemplate = { bos: flag("add_bos_token", true), eos: flag("add_eos_token", false) };
    }
    const template = chatTemplate ?? chatTemplateOf(tokenizerConfig["chat_template"], join(source, "tokenizer_config.json"));
    if (template !== undefined) this.chatTemplate = template;
  }

  /** Token ids of `text`; with addSpecialTokens, whatever the post-processor adds (usually BOS). */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const special = options.addSpecialTokens ?? false;
    const t = this.llamaTemplate;
    if (!t || !special) return this.impl.encode(text, { add_special_tokens: special }).ids;
    const ids = this.impl.encode(text, { add_special_tokens: false }).ids;
    const eos = this.eosTokenIds[0];
    return [...(t.bos && this.bosTokenId !== undefined ? [this.bosTokenId] : []), ...ids, ...(t.eos && eos !== undefined ? [eos] : [])];
  }

  /** Text of `ids`; special tokens are dropped unless `keepSpecial`, and ids outside the vocabulary decode to nothing. */
  decode(ids: readonly number[], options: { keepSpecial?: boolean } = {}): string {
    // a model's embedding may be padded past the tokenizer: such ids have no text
    const known = ids.filter((id) => Number.isInteger(id) && id >= 0 && id < this.vocabSize && this.impl.id_to_token(id) !== undefined);
    if (known.length === 0) return "";
    return this.impl.decode(known, { skip_special_tokens: !options.keepSpecial });
  }
}

async function readJson(path: string, required: boolean): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new FormatError(path, `cannot be read: ${(e as Error).message}`);
  }
  return parseJsonObject(text, path);
}

/** The tokenizer of a Hugging Face model folder: tokenizer.json (required), tokenizer_config.json and chat_template.jinja (optional). */
export async function loadHfTokenizer(dir: string): Promise<HfTokenizer> {
  const tokenizerJson = (await readJson(join(dir, "tokenizer.json"), true))!;
  const tokenizerConfig = (await readJson(join(dir, "tokenizer_config.json"), false)) ?? {};
  const jinja = await readFile(join(dir, "chat_template.jinja"), "utf8").catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw new FormatError(join(dir, "chat_template.jinja"), `cannot be read: ${e.message}`);
  });
  return new HfTokenizer(tokenizerJson, tokenizerConfig, dir, jinja);
}
