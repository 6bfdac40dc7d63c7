/**
 * The whole quantization recipe of `frugal quantize` and bench/quant-ppl.ts, over a model read into memory:
 * - no calibration text: round-to-nearest, with the per-group clipping search by weight error when `clip`;
 * - calibration text: capture every linear's inputs (calibrate.ts), optionally AWQ scaling (awq.ts), then
 *   round-to-nearest with the per-group clipping search by output error when `clip` (q/k keep plain RTN).
 */
import type { LoadedSource } from "../io/source.js";
import { applyAwq } from "./awq.js";
import { captureCalibration, quantizeWithOutputClip } from "./calibrate.js";
import { quantFormat } from "./formats.js";
import { packedToRaw } from "./packed-raw.js";
import { quantizeTensors } from "./quantize-model.js";

export interface RecipeOptions {
  /** Per-group clipping search (output error with calibration text, weight error without). */
  clip?: boolean;
  /** AWQ scaling; needs calibration text. */
  awq?: boolean;
  /** Calibration text (e.g. a file's contents). */
  calibText?: string;
  /** Calibration tokens (default 512). */
  calibTokens?: number;
  lmHead?: boolean;
  threads?: number;
  onProgress?: (what: string, done: number, total: number) => void;
}

/** Quantizes `loaded.tensors` in place (they stay in memory, ready for assembleModel or a writer). */
export async function quantizeSource(loaded: LoadedSource, formatName: string, options: RecipeOptions = {}): Promise<void> {
  const format = quantFormat(formatName);
  if (options.calibText === undefined) {
    if (options.awq) throw new Error("AWQ scaling needs calibration text (--calib FILE)");
    quantizeTensors(loaded.tensors, format.name, { pack: { clip: options.clip ?? false }, lmHead: options.lmHead, onProgress: options.onProgress });
    return;
  }
  const calib = await captureCalibration(loaded, options.calibText, { tokens: options.calibTokens, threads: options.threads, onProgress: options.onProgress });
  if (options.awq) applyAwq(loaded.tensors, loaded.config, format, calib, options.onProgress);
  quantizeTensors(loaded.tensors, format.name, {
    lmHead: options.lmHead,
    onProgress: options.onProgress,
    quantizer: (name, w, rows, cols) => {
      const x = calib.get(name);
      const clip = options.clip && x !== undefined && !/\.(q|k)_proj\.weight$/.test(name);
      return packedToRaw(name, clip ? quantizeWithOutputClip(format, w, rows, cols, x) : format.pack(w, rows, cols), [rows, cols]);
    },
  });
}
