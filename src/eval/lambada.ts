/**
 * LAMBADA last-word prediction, scored as lm-eval-harness's `lambada_openai` scores it.
 *
 * Each passage is split at its last space (U+0020): the context is the text before that space, the target
 * word is the text after it, and the model must continue the context with " " + word (so context + " " +
 * word is the passage, byte for byte; in 7 of the 5,153 test passages the "word" holds a newline, e.g.
 * "of\n\nPower", exactly as `text.rsplit(" ", 1)` gives it). Tokens:
 *
 *   contextIds = [BOS if the model adds one] + encode(context)
 *   wholeIds   = [BOS if the model adds one] + encode(context + " " + word)
 *   targetIds  = wholeIds[contextIds.length ..]
 *
 * and the model reads contextIds + targetIds (the last token dropped), teacher-forced. The passage counts
 * as correct when the argmax of the logits at every target position is that target token (greedy decoding
 * reproduces the whole continuation). The target's NLL is the sum over its tokens of -log softmax; `nll`
 * is its mean over passages (nats per word) and `ppl` = exp(nll), lm-eval's lambada perplexity. A passage
 * longer than the model's context keeps its last tokens (lm-eval truncates on the left the same way).
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Model } from "../model/model.js";
import type { Tokenizer } from "../io/tokenizer.js";
import { FormatError } from "../io/errors.js";

/** ../shared/data/eval/lambada-test.jsonl beside the repository (dist/src/eval/ is three levels down). */
export const DEFAULT_LAMBADA = fileURLToPath(new URL("../../../../shared/data/eval/lambada-test.jsonl", import.meta.url));

/** Where the data set comes from, for the message when the default file is missing. */
export const LAMBADA_SOURCE =
  "the LAMBADA test set as OpenAI preprocessed it (5,153 lines of {\"text\": ...}, the data of lm-eval-harness's lambada_openai): " +
  "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl, or the test split of the Hugging Face data set EleutherAI/lambada_openai (config \"en\") written as JSON lines";

export interface LambadaExample {
  /** 1-based line of the file, for messages. */
  readonly line: number;
  readonly context: string;
  /** The last word, without the space before it. */
  readonly word: string;
}

export interface LambadaOptions {
  /** Evaluate only the first `limit` examples. */
  limit?: number;
  /** Called after each example with (examples done, examples total, correct so far). */
  onProgress?: (done: number, total: number, correct: number) => void;
}

export interface LambadaResult {
  examples: number;
  correct: number;
  accuracy: number;
  /** Mean over examples of the target word's NLL (summed over its tokens), in nats. */
  nll: number;
  /** exp(nll): the perplexity of the target word. */
  ppl: number;
  /** Target tokens scored over all examples (the NLL per token is nll * examples / targetTokens). */
  targetTokens: number;
}

/** Splits a passage at its last space into context and word; undefined when there is no space. */
export function splitLastWord(text: string): { context: string; word: string } | undefined {
  const at = text.lastIndexOf(" ");
  if (at < 0) return undefined;
  return { context: text.slice(0, at), word: text.slice(at + 1) };
}

/**
 * The examples of a LAMBADA JSON-lines text (one {"text": "..."} per line; blank lines are skipped).
 * `file` names the source in errors, which also give the line number.
 */
export function parseLambada(jsonl: string, file: string): LambadaExample[] {
  const examples: LambadaExample[] = [];
  const lines = jsonl.split("\n");
  for (const [i, raw] of lines.entries()) {
    const line = i + 1;
    if (raw.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      throw new FormatError(file, `line ${line}: not valid JSON (${(e as Error).message})`);
    }
    const text = (value as { text?: unknown } | null)?.text;
    if (typeof value !== "object" || value === null || Array.isArray(value) || typeof text !== "string") {
      throw new FormatError(file, `line ${line}: expected an object with a string field "text"`);
    }
    const split = splitLastWord(text);
    if (!split) throw new FormatError(file, `line ${line}: the text has no space, so there is no last word to predict`);
    if (split.word === "") throw new FormatError(file, `line ${line}: the text ends in a space, so its last word is empty`);
    examples.push({ line, ...split });
  }
  if (examples.length === 0) throw new FormatError(file, "no examples (expected one {\"text\": ...} per line)");
  return examples;
}

/** Reads and parses a LAMBADA file; a missing file gets a message saying where the data comes from. */
export async function readLambada(file: string = DEFAULT_LAMBADA): Promise<LambadaExample[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw new Error(`${file}: no such file. Pass --data FILE with ${LAMBADA_SOURCE}`);
    }
    throw e;
  }
  return parseLambada(text, file);
}

/** The BOS id when `encode(..., { addSpecialTokens: true })` puts one first, else undefined. */
export function leadingBos(tokenizer: Tokenizer, bosTokenId: number | undefined): number | undefined {
  const bos = bosTokenId ?? tokenizer.bosTokenId;
  if (bos === undefined) return undefined;
  const withSpecial = tokenizer.encode("a", { addSpecialTokens: true });
  const plain = tokenizer.encode("a", { addSpecialTokens: false });
  return withSpecial[0] === bos && plain[0] !== bos ? bos : undefined;
}

/** Context and target token ids of one example, by the definition at the top of this file. */
export function lambadaTokens(tokenizer: Tokenizer, bos: number | undefined, example: LambadaExample): { context: number[]; target: number[] } {
  const prefix = bos === undefined ? [] : [bos];
  const context = [...prefix, ...tokenizer.encode(example.context)];
  const whole = [...prefix, ...tokenizer.encode(example.context + " " + example.word)];
  const target = whole.slice(context.length);
  if (context.length === 0) throw new Error(`line ${example.line}: the context is empty and the model adds no BOS token; nothing to condition on`);
  if (target.length === 0) throw new Error(`line ${example.line}: the word "${example.word}" adds no tokens after the context`);
  return { context, target };
}

/** Scores `examples` (or the first `limit`) on `model`; see the definition at the top of this file. */
export async function evaluateLambada(model: Model, examples: readonly LambadaExample[], options: LambadaOptions = {}): Promise<LambadaResult> {
  const limit = options.limit ?? examples.length;
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`);
  const chosen = examples.slice(0, limit);
  const bos = leadingBos(model.tokenizer, model.config.bosTokenId);
  const capacity = model.network.contextLength;
  const vocab = model.config.vocabSize;
  const cache = model.network.newCache(capacity);
  let correct = 0;
  let nllSum = 0;
  let targetTokens = 0;
  for (const [i, ex] of chosen.entries()) {
    const { context, target } = lambadaTokens(model.tokenizer, bos, ex);
    if (target.length > capacity) throw new RangeError(`line ${ex.line}: the target has ${target.length} tokens; the context holds ${capacity}`);
    // the model reads context + target minus the last target token, truncated on the left to fit
    const input = [...context, ...target.slice(0, -1)].slice(-capacity);
    const head = input.length - target.length; // tokens before the one whose logits predict target[0]
    if (head > 0) model.prefill(input.slice(0, head), cache);
    const out = model.network.forward(Int32Array.from(input.slice(head)), head, cache, true);
    const logits = await model.backend.read(out);
    let greedy = true;
    for (const [t, want] of target.entries()) {
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      const { argmax, logSumExp } = rowStats(row);
      if (argmax !== want) greedy = false;
      nllSum += logSumExp - row[want]!;
    }
    if (greedy) correct++;
    targetTokens += target.length;
    options.onProgress?.(i + 1, chosen.length, correct);
  }
  const nll = nllSum / chosen.length;
  return { examples: chosen.length, correct, accuracy: correct / chosen.length, nll, ppl: Math.exp(nll), targetTokens };
}

/** The first index of the largest value, and log(sum(exp(row))) in f64. */
function rowStats(row: Float32Array): { argmax: number; logSumExp: number } {
  let argmax = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[argmax]!) argmax = i;
  const max = row[argmax]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return { argmax, logSumExp: max + Math.log(sum) };
}
