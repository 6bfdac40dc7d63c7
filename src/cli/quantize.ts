/**
 * `frugal quantize --model DIR --format NAME --out DIR [--calib FILE] [--awq] [--no-clip]`: writes a Hugging
 * Face folder whose linear projections are in a src/quant format (src/io/packed-safetensors.ts describes the
 * file), loadable by every Frugal command. Config and tokenizer files are copied unchanged.
 */
import { parseArgs } from "node:util";
import { copyFile, mkdir, readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { readSource } from "../load.js";
import { ProgressBar } from "./progress.js";
import { quantFormat } from "../quant/formats.js";
import { quantizeSource } from "../quant/quantize-calibrated.js";
import { writeSafetensors } from "../io/packed-safetensors.js";

export const QUANTIZE_USAGE = `  quantize   write a quantized copy       frugal quantize --model DIR --format NAME --out DIR [--calib FILE]
                                            [--awq] [--no-clip] [--calib-tokens N] [--threads N]
                                            (DIR: a Hugging Face folder; NAME: int8 int4-asym fp4 nf4 razer
                                            nvfp4 nvfp4-razer; clipping search on by default, by output error
                                            on the --calib text, else by weight error)`;

/** Files of a Hugging Face folder that travel unchanged. */
const COPIED = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

export async function quantizeCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" }, format: { type: "string" }, out: { type: "string" }, calib: { type: "string" },
      awq: { type: "boolean" }, "no-clip": { type: "boolean" }, "calib-tokens": { type: "string" }, threads: { type: "string" },
    },
    strict: true,
  });
  if (!values.model) throw new Error("quantize needs --model DIR (a Hugging Face folder)");
  if (!values.format) throw new Error("quantize needs --format NAME");
  if (!values.out) throw new Error("quantize needs --out DIR");
  const format = quantFormat(values.format).name;
  if (!(await stat(values.model).then((s) => s.isDirectory(), () => false))) {
    throw new Error(`--model ${values.model}: quantize writes Hugging Face folders and needs one as its source`);
  }
  const integer = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} needs a positive integer, got "${v}"`);
    return n;
  };
  const calibText = values.calib === undefined ? undefined : await readFile(values.calib, "utf8");
  const loaded = await readSource(values.model);
  const bar = new ProgressBar();
  const recipe = {
    clip: !values["no-clip"],
    awq: values.awq ?? false,
    ...(calibText !== undefined ? { calibText } : {}),
    calibTokens: integer("calib-tokens", values["calib-tokens"]) ?? 512,
  };
  await quantizeSource(loaded, format, { ...recipe, threads: integer("threads", values.threads), onProgress: bar.update });
  await mkdir(values.out, { recursive: true });
  for (const f of COPIED) {
    const from = join(values.model, f);
    if (await stat(from).then((s) => s.isFile(), () => false)) await copyFile(from, join(values.out, f));
  }
  const made = {
    format, clip: recipe.clip, awq: recipe.awq, calib: values.calib === undefined ? null : basename(values.calib),
    calibTokens: calibText === undefined ? 0 : recipe.calibTokens, source: basename(values.model),
  };
  await writeSafetensors(join(values.out, "model.safetensors"), [...loaded.tensors.values()], { "frugal.quantization": JSON.stringify(made) });
  process.stderr.write(`wrote ${values.out} (${format}${recipe.clip ? ", clip" : ""}${recipe.awq ? ", AWQ" : ""})\n`);
  return 0;
}
