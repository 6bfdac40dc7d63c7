/**
 * Tokens of a long text, encoded line by line: some tokenizers' merges are quadratic in the input length
 * (llama2.c's), so encoding a 60 KB calibration text in one call takes minutes. Line boundaries are kept
 * (each line is encoded with its newline), which changes only merges across a newline.
 */
import type { Tokenizer } from "../io/tokenizer.js";

export function encodeLines(tokenizer: Tokenizer, text: string, maxTokens = Infinity): number[] {
  const out: number[] = [];
  let start = 0;
  while (start < text.length && out.length < maxTokens) {
    let end = text.indexOf("\n", start);
    end = end < 0 ? text.length : end + 1;
    // long lines go in pieces of at most 2,000 characters, cut at a space
    if (end - start > 2000) {
      const space = text.lastIndexOf(" ", start + 2000);
      end = space > start ? space + 1 : start + 2000;
    }
    for (const id of tokenizer.encode(text.slice(start, end), { addSpecialTokens: false })) out.push(id);
    start = end;
  }
  return out.slice(0, maxTokens);
}
