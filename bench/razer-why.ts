/**
 * Why RaZeR g128 does not beat FP4 / INT4-asym g128 on stories260K (bench/quant-ppl.ts): the same formats on
 * in-domain text (tokens sampled from the unquantized model itself, temperature 1, fixed seeds) as well as on
 * models/corpus-val.txt (Python documentation, far outside TinyStories), with weight error and output error
 * per projection, and an ablation that quantizes one projection kind at a time. KL = mean KL(p_base ‖ p_q).
 *
 *   node dist/bench/razer-why.js [--model models/stories260K/stories260K.bin] [--tokens 1024]
 */
import { readFileSync } from "node:fs";
import { createCpuBackend } from "../src/backend/cpu/cpu-backend.js";
import { readSource } from "../src/load.js";
import { assembleModel } from "../src/model/assemble.js";
import { markdownTable } from "../src/eval/plot.js";
import { captureCalibration, encodePrefix } from "../src/quant/calibrate.js";
import { quantFormat } from "../src/quant/formats.js";
import type { PackOptions } from "../src/quant/format.js";
import { LINEAR_WEIGHT, quantizeTensors, tensorToF32 } from "../src/quant/quantize-model.js";
import type { LoadedSource } from "../src/io/source.js";
import { score } from "./quant-score.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const MODEL = arg("--model", "models/stories260K/stories260K.bin");
const TOKENS = Number(arg("--tokens", "1024"));
const CTX = 256;

const source = await readSource(MODEL);
const copy = (): LoadedSource => ({ ...source, tensors: new Map(source.tensors) });

// in-domain tokens: the unquantized model's own samples
const base = assembleModel(copy(), await createCpuBackend({ threads: 1 }));
const sampled: number[] = [];
for (let seed = 1; sampled.length < TOKENS; seed++) {
  const ids = [1];
  for await (const p of base.generateFromTokens([1], { temperature: 1, seed, maxTokens: CTX - 1, stopAtEos: false })) if (p.tokenId !== undefined) ids.push(p.tokenId);
  sampled.push(...ids.slice(0, CTX));
}
base.dispose();
const inDomain = sampled.slice(0, TOKENS);
const corpus = encodePrefix(source.tokenizer, readFileSync("models/corpus-val.txt", "utf8"), TOKENS);

interface Variant { label: string; format: string; pack?: PackOptions; only?: RegExp }
const FORMATS: Variant[] = [
  { label: "int4-asym", format: "int4-asym" },
  { label: "fp4", format: "fp4" },
  { label: "razer", format: "razer" },
  { label: "razer absmax", format: "razer", pack: { scaleRule: "absmax" } },
  { label: "razer ±5 only", format: "razer", pack: { specialValues: [5, -5] } },
  { label: "nf4", format: "nf4" },
  { label: "nvfp4", format: "nvfp4" },
  { label: "nvfp4-razer", format: "nvfp4-razer" },
];

async function evaluate(v: Variant, ids: number[], baseLp: Float32Array[]): Promise<{ ppl: number; kl: number; top1: number }> {
  const s = copy();
  if (v.format !== "none") {
    const keep = new Map([...s.tensors].filter(([n]) => v.only && LINEAR_WEIGHT.test(n) && !v.only.test(n)));
    quantizeTensors(s.tensors, v.format, v.pack ? { pack: v.pack } : {});
    for (const [n, t] of keep) s.tensors.set(n, t);
  }
  const m = assembleModel(s, await createCpuBackend({ threads: 1 }));
  try {
    return await score(m, ids, CTX, baseLp);
  } finally {
    m.dispose();
  }
}

const baseIn: Float32Array[] = [], baseCorpus: Float32Array[] = [];
const none = { label: "baseline", format: "none" };
const b1 = await evaluate(none, inDomain, baseIn), b2 = await evaluate(none, corpus, baseCorpus);
const rows: (string | number)[][] = [["baseline (f32)", "", b1.ppl.toFixed(3), "0", "100.0", b2.ppl.toFixed(2), "0", "100.0"]];
for (const v of FORMATS) {
  const a = await evaluate(v, inDomain, baseIn), c = await evaluate(v, corpus, baseCorpus);
  rows.push([v.label, quantFormat(v.format).bitsPerWeight(4096).toFixed(3), a.ppl.toFixed(3), (1000 * a.kl).toFixed(1), (100 * a.top1).toFixed(1), c.ppl.toFixed(2), (1000 * c.kl).toFixed(1), (100 * c.top1).toFixed(1)]);
  console.error(`${v.label}: in-domain KL ${a.kl.toFixed(4)}, corpus KL ${c.kl.toFixed(4)}`);
}
console.log(`**${MODEL}**: ${TOKENS} sampled in-domain tokens and the first ${TOKENS} tokens of corpus-val.txt, windows of ${CTX}, all linear projections RTN.\n`);
console.log(markdownTable(["format", "bits", "in-domain ppl", "KL ×10⁻³", "top-1 %", "corpus-val ppl", "KL ×10⁻³", "top-1 %"], rows, [false, true, true, true, true, true, true, true]));

// one projection kind at a time (in-domain KL)
const kinds = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
const ablation: (string | number)[][] = [];
for (const f of ["int4-asym", "fp4", "razer"]) {
  const cells: string[] = [];
  for (const k of kinds) cells.push((1000 * (await evaluate({ label: f, format: f, only: new RegExp(`\\.${k}\\.`) }, inDomain, baseIn)).kl).toFixed(1));
  ablation.push([f, ...cells]);
}
console.log(`\nIn-domain KL ×10⁻³ when only one projection kind is quantized:\n`);
console.log(markdownTable(["format", ...kinds], ablation, [false, ...kinds.map(() => true)]));

// weight error and output error per projection kind, on in-domain activations
const text = source.tokenizer.decode(inDomain);
const calib = await captureCalibration(copy(), text, { tokens: 512, threads: 1 });
const errRows: (string | number)[][] = [];
for (const f of ["int4-asym", "fp4", "razer", "nvfp4-razer"]) {
  const fmt = quantFormat(f);
  const cells: string[] = [];
  for (const k of kinds) {
    let wNum = 0, wDen = 0, oNum = 0, oDen = 0;
    for (const [name, t] of source.tensors) {
      if (!LINEAR_WEIGHT.test(name) || !name.includes(`.${k}.`)) continue;
      const { w, rows, cols } = tensorToF32(t);
      const q = fmt.unpack(fmt.pack(w, rows, cols));
      for (let i = 0; i < w.length; i++) {
        wNum += (q[i]! - w[i]!) ** 2;
        wDen += w[i]! ** 2;
      }
      const x = calib.get(name)!;
      for (let tkn = 0; tkn < x.tokens; tkn++) {
        for (let r = 0; r < rows; r++) {
          let y = 0, e = 0;
          for (let c = 0; c < cols; c++) {
            y += x.x[tkn * cols + c]! * w[r * cols + c]!;
            e += x.x[tkn * cols + c]! * (q[r * cols + c]! - w[r * cols + c]!);
          }
          oNum += e * e;
          oDen += y * y;
        }
      }
    }
    cells.push(`${(1000 * wNum / wDen).toFixed(1)} / ${(1000 * oNum / oDen).toFixed(1)}`);
  }
  errRows.push([f, ...cells]);
}
console.log(`\nRelative weight error / relative output error (×10⁻³, in-domain activations) per projection kind:\n`);
console.log(markdownTable(["format", ...kinds], errRows, [false, ...kinds.map(() => true)]));
