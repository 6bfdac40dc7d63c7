/**
 * Perplexity of every weight format against the unquantized model, on stories260K and frugal-ar-base, over a
 * fixed number of tokens of models/corpus-val.txt (the first --tokens tokens, windows of --ctx). Every
 * format quantizes the linear projections of the transformer blocks (embedding and lm_head stay as stored);
 * RTN = round to nearest; "clip" = the per-group clipping search by output error on calibration inputs
 * (weight error with --no-calib); "AWQ" = activation-aware per-channel scaling (src/quant/awq.ts).
 * Calibration text: --calib-tokens tokens from the second half of corpus-val.txt (disjoint from the
 * evaluation tokens, which come from its start). Also reports each format's relative weight MSE
 * ‖Ŵ−W‖²/‖W‖² per projection (RTN), the spec's §8.3 per-layer check.
 *
 * Writes the tables between the quant-ppl markers of docs/quantization.md and an SVG chart.
 *
 *   node dist/bench/quant-ppl.js [--tokens 2048] [--ctx 512] [--calib-tokens 512] [--threads 2]
 *     [--models stories260K,frugal-ar-base] [--calibrated int4-asym,fp4,razer] [--doc docs/quantization.md]
 *     [--svg docs/quantization-ppl.svg] [--no-doc]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { createCpuBackend } from "../src/backend/cpu/cpu-backend.js";
import { readSource } from "../src/load.js";
import type { LoadedSource } from "../src/io/source.js";
import { assembleModel } from "../src/model/assemble.js";
import { score } from "./quant-score.js";
import { barChartSvg, markdownTable } from "../src/eval/plot.js";
import { QUANT_FORMATS, quantFormat } from "../src/quant/formats.js";
import { rawToPacked } from "../src/quant/packed-raw.js";
import { encodePrefix } from "../src/quant/calibrate.js";
import { quantizeSource, type RecipeOptions } from "../src/quant/quantize-calibrated.js";
import { LINEAR_WEIGHT, tensorToF32 } from "../src/quant/quantize-model.js";
import type { TensorMap } from "../src/tensor/raw.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const TOKENS = Number(arg("--tokens", "2048"));
const CTX = Number(arg("--ctx", "512"));
const CALIB_TOKENS = Number(arg("--calib-tokens", "512"));
const THREADS = Number(arg("--threads", "2"));
const MODELS = arg("--models", "stories260K,frugal-ar-base").split(",");
const CALIBRATED = arg("--calibrated", "int4-asym,fp4,razer").split(",").filter((s) => s !== "");
const DOC = arg("--doc", "docs/quantization.md");
const SVG = arg("--svg", "docs/quantization-ppl.svg");
const PATHS: Record<string, string> = {
  stories260K: "models/stories260K/stories260K.bin",
  "frugal-ar-base": "models/frugal-ar-base",
  "frugal-ar-small": "models/frugal-ar-small",
};

interface Variant { label: string; format?: string; recipe: RecipeOptions }

const text = readFileSync("models/corpus-val.txt", "utf8");
const calibText = text.slice(Math.floor(text.length / 2));

function variants(): Variant[] {
  const out: Variant[] = [{ label: "baseline (as stored)", recipe: {} }];
  for (const f of QUANT_FORMATS) out.push({ label: `${f.name} RTN`, format: f.name, recipe: {} });
  for (const name of CALIBRATED) {
    const f = quantFormat(name).name;
    out.push({ label: `${f} clip (weight MSE)`, format: f, recipe: { clip: true } });
    out.push({ label: `${f} clip (output error)`, format: f, recipe: { clip: true, calibText } });
    out.push({ label: `${f} AWQ`, format: f, recipe: { awq: true, calibText } });
    out.push({ label: `${f} AWQ + clip`, format: f, recipe: { awq: true, clip: true, calibText } });
  }
  return out;
}

function copySource(s: LoadedSource): LoadedSource {
  return { ...s, tensors: new Map(s.tensors) };
}

/** Relative weight MSE of each quantized linear against the original. */
function weightErrors(original: TensorMap, quantized: TensorMap): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, t] of quantized) {
    if (!LINEAR_WEIGHT.test(name)) continue;
    const w = tensorToF32(original.get(name)!).w;
    const p = rawToPacked(t);
    const q = quantFormat(p.format).unpack(p);
    let num = 0, den = 0;
    for (let i = 0; i < w.length; i++) {
      num += (q[i]! - w[i]!) ** 2;
      den += w[i]! ** 2;
    }
    out.set(name, num / den);
  }
  return out;
}

interface Row { model: string; label: string; format?: string; bits?: number; ppl: number; kl: number; top1: number; seconds: number }

const rows: Row[] = [];
const layerErrors = new Map<string, Map<string, Map<string, number>>>(); // model -> format -> tensor -> rel MSE
const t0 = Date.now();

for (const modelName of MODELS) {
  const path = PATHS[modelName] ?? modelName;
  const source = await readSource(path);
  const ids = encodePrefix(source.tokenizer, text, TOKENS);
  if (ids.length < TOKENS) throw new Error(`${modelName}: only ${ids.length} tokens in the text slice`);
  const errs = new Map<string, Map<string, number>>();
  layerErrors.set(modelName, errs);
  let base = NaN;
  const baseLogProbs: Float32Array[] = [];
  for (const v of variants()) {
    const t1 = Date.now();
    const loaded = copySource(source);
    if (v.format) await quantizeSource(loaded, v.format, { ...v.recipe, threads: THREADS, calibTokens: CALIB_TOKENS });
    if (v.format && Object.keys(v.recipe).length === 0) errs.set(v.format, weightErrors(source.tensors, loaded.tensors));
    const backend = await createCpuBackend({ threads: THREADS });
    const model = assembleModel(loaded, backend);
    try {
      const ctx = Math.min(CTX, model.network.contextLength);
      const r = await score(model, ids, ctx, baseLogProbs);
      if (!v.format) base = r.ppl;
      const f = v.format ? quantFormat(v.format) : undefined;
      const row: Row = { model: modelName, label: v.label, ppl: r.ppl, kl: r.kl, top1: r.top1, seconds: (Date.now() - t1) / 1000, ...(f ? { format: f.name, bits: f.bitsPerWeight(4096) } : {}) };
      rows.push(row);
      console.error(`${modelName.padEnd(15)} ${v.label.padEnd(32)} ppl ${r.ppl.toFixed(4)} (${(100 * (r.ppl / base - 1)).toFixed(2)}%) KL ${r.kl.toFixed(5)} top-1 ${(100 * r.top1).toFixed(1)}%  ${row.seconds.toFixed(1)} s`);
    } finally {
      model.dispose();
    }
  }
}

// ---- tables
const pct = (m: string, p: number) => {
  const b = rows.find((r) => r.model === m && r.format === undefined)!.ppl;
  return 100 * (p / b - 1);
};
const labels = [...new Set(rows.map((r) => r.label))];
const pplTable = markdownTable(
  ["weights", "bits/weight", ...MODELS.flatMap((m) => [`${m} ppl`, `${m} Δppl %`, `${m} KL ×10⁻³`, `${m} top-1 %`])],
  labels.map((label) => {
    const any = rows.find((r) => r.label === label)!;
    return [label, any.bits === undefined ? "as stored" : any.bits.toFixed(3), ...MODELS.flatMap((m) => {
      const r = rows.find((x) => x.model === m && x.label === label);
      return r
        ? [r.ppl.toFixed(3), r.format ? `${pct(m, r.ppl) >= 0 ? "+" : ""}${pct(m, r.ppl).toFixed(2)}` : "—", (1000 * r.kl).toFixed(2), (100 * r.top1).toFixed(1)]
        : ["", "", "", ""];
    })];
  }),
  [false, true, ...MODELS.flatMap(() => [true, true, true, true])],
);

const kinds = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
const mseTables: string[] = [];
const wins: string[] = [];
for (const [m, byFormat] of layerErrors) {
  const formats = [...byFormat.keys()];
  mseTables.push(`**${m}** (mean over layers of ‖Ŵ−W‖²/‖W‖², RTN, ×10⁻³):\n\n` + markdownTable(
    ["format", ...kinds],
    formats.map((f) => [f, ...kinds.map((k) => {
      const vals = [...byFormat.get(f)!].filter(([n]) => n.includes(k)).map(([, e]) => e);
      return ((1000 * vals.reduce((a, b) => a + b, 0)) / Math.max(1, vals.length)).toFixed(3);
    })]),
    [false, ...kinds.map(() => true)],
  ));
  const razer = byFormat.get("razer"), fp4 = byFormat.get("fp4"), int4 = byFormat.get("int4-asym");
  if (razer && fp4 && int4) {
    const names = [...razer.keys()];
    const beatFp4 = names.filter((n) => razer.get(n)! < fp4.get(n)!).length;
    const beatInt4 = names.filter((n) => razer.get(n)! < int4.get(n)!).length;
    wins.push(`${m}: RaZeR has the lower weight error than FP4 g128 on ${beatFp4}/${names.length} projections and than INT4-asym g128 on ${beatInt4}/${names.length}.`);
  }
}

const charted = labels.filter((l) => l !== "baseline (as stored)");
writeFileSync(SVG, barChartSvg({
  title: "Perplexity increase over the unquantized model (lower is better)",
  subtitle: `first ${TOKENS} tokens of models/corpus-val.txt, windows of ${CTX}; linear projections quantized, embedding/lm_head as stored`,
  yLabel: "Δ perplexity (%)",
  groups: charted,
  series: MODELS.map((m) => ({ name: m, values: charted.map((l) => {
    const r = rows.find((x) => x.model === m && x.label === l);
    return r ? Math.max(0, pct(m, r.ppl)) : undefined;
  }) })),
  width: 1600,
  height: 460,
}));

const section = [
  `<!-- quant-ppl:begin (generated by bench/quant-ppl.ts; edits here are overwritten) -->`,
  `First ${TOKENS} tokens of \`models/corpus-val.txt\` (windows of ${CTX}), CPU backend with the packed-format kernels, ` +
    `${THREADS} threads; calibration: ${CALIB_TOKENS} tokens from the second half of the same file. ` +
    `Whole run: ${((Date.now() - t0) / 1000).toFixed(0)} s.`,
  "",
  pplTable,
  "",
  `![Perplexity increase per format](${SVG.replace(/^docs\//, "")})`,
  "",
  ...wins.map((w) => `- ${w}`),
  "",
  ...mseTables.flatMap((t) => [t, ""]),
  `<!-- quant-ppl:end -->`,
].join("\n");
console.log(section);
if (!args.includes("--no-doc")) {
  const doc = readFileSync(DOC, "utf8");
  const re = /<!-- quant-ppl:begin[\s\S]*?<!-- quant-ppl:end -->/;
  if (!re.test(doc)) throw new Error(`${DOC} has no quant-ppl markers`);
  writeFileSync(DOC, doc.replace(re, section));
}
console.log(JSON.stringify({ tokens: TOKENS, ctx: CTX, rows }));
