/**
 * A Hugging Face model folder (config.json, generation_config.json, model.safetensors or shards,
 * tokenizer.json, tokenizer_config.json) -> LoadedSource.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { LoadedSource } from "./source.js";
import { FormatError } from "./errors.js";
import { parseGenerationConfig, parseHfConfig, parseJsonObject } from "./hf-config.js";
import { loadHfTokenizer } from "./hf-tokenizer.js";
import { readSafetensorsFolder } from "./safetensors.js";

export interface HfLoadOptions {
  /** The name reported as LoadedSource.source (e.g. the hub id the folder was resolved from); defaults to the folder. */
  name?: string;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new FormatError(path, `cannot be read: ${(e as Error).message}`);
  }
}

/** Reads the model folder `dir` into memory: config, every tensor under its Hugging Face name, tokenizer, sampling defaults. */
export async function loadHfFolder(dir: string, options: HfLoadOptions = {}): Promise<LoadedSource> {
  const configPath = join(dir, "config.json");
  const configText = await readText(configPath);
  if (configText === undefined) throw new FormatError(dir, "has no config.json; not a Hugging Face model folder");
  const config = parseHfConfig(parseJsonObject(configText, configPath), configPath);

  const generationPath = join(dir, "generation_config.json");
  const generationText = await readText(generationPath);
  const generation = generationText === undefined ? undefined : parseGenerationConfig(parseJsonObject(generationText, generationPath), generationPath);

  const tokenizer = await loadHfTokenizer(dir);
  // the model's embedding may be padded past the tokenizer, never the other way round
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new FormatError(
      dir,
      `tokenizer.json has ${tokenizer.vocabSize} tokens but config.json vocab_size is ${config.vocabSize}; they do not belong together`,
    );
  }

  const tensors = await readSafetensorsFolder(dir);
  // transformers ties lm_head to the embedding after loading, ignoring any lm_head.weight stored beside it
  if (config.tieEmbeddings) tensors.delete("lm_head.weight");

  return {
    source: options.name ?? dir,
    format: "safetensors",
    config,
    tensors,
    tokenizer,
    ...(generation ? { generation } : {}),
  };
}
