import { readFile, access } from "node:fs/promises";
import { dirname, join, basename } from "node:path";
import { parseLlama2cCheckpoint, Llama2cTokenizer } from "./llama2c.js";
import type { LoadedSource } from "./source.js";
import { FormatError } from "./errors.js";

/** Tokenizer file names looked for beside a llama2.c checkpoint, in order. */
const TOKENIZER_NAMES = ["tokenizer.bin", "tok512.bin", "tok4096.bin"];

export async function loadLlama2c(path: string, tokenizerPath?: string): Promise<LoadedSource> {
  const bytes = new Uint8Array(await readFile(path));
  const { config, tensors } = parseLlama2cCheckpoint(bytes, path);
  let tok = tokenizerPath;
  if (!tok) {
    for (const name of [`${basename(path, ".bin")}.tokenizer.bin`, ...TOKENIZER_NAMES]) {
      const candidate = join(dirname(path), name);
      if (await access(candidate).then(() => true, () => false)) {
        tok = candidate;
        break;
      }
    }
  }
  if (!tok) throw new FormatError(path, `no llama2.c tokenizer beside it (looked for ${TOKENIZER_NAMES.join(", ")}); pass one with --tokenizer`);
  const tokenizer = new Llama2cTokenizer(new Uint8Array(await readFile(tok)), config.vocabSize, tok);
  return { source: path, format: "llama2.c", config, tensors, tokenizer };
}
