/**
 * Sparsity evaluation, one command for docs/sparsity.md:
 *  1. perplexity vs sparsity (0/50/60/70/80/90%) for magnitude and Wanda pruning on stories260K,
 *     frugal-ar-small and frugal-ar-base: a fixed number of evaluation tokens from models/corpus-val.txt,
 *     Wanda calibrated on an earlier, disjoint part of the same file;
 *  2. CPU GEMV time sparse vs our own dense kernel of the same value type (bench/cpu-sparse.ts) on
 *     frugal-ar-base's shapes and a large one, 2 threads, interleaved;
 *  3. CPU decode tokens/s of frugal-ar-base (bf16): dense vs sparse kernels vs the same pruned weights on
 *     the dense kernels, at 50/70/90%, interleaved rounds, median;
 *  4. sparse KV (--kv sparse*): perplexity of tokens decoded one step at a time after a prefill.
 * Writes docs/sparsity-results.json, the SVG plots and the tables into docs/sparsity.md between
 * <!-- cpu-sparse:begin --> and <!-- cpu-sparse:end -->.
 *
 *   node dist/bench/sparse-eval.js [--quick] [--doc docs/sparsity.md] [--skip-ppl] [--skip-kv]
 */
import { readFile, writeFile } from "node:fs/promises";
import { loadModel } from "../src/load.js";
import type { Model } from "../src/model/model.js";
import { perplexityOfTokens } from "../src/eval/perplexity.js";
import { lineChartSvg, barChartSvg, markdownTable } from "../src/eval/plot.js";
import { sparseGemvSweep, type SparseGemvRow } from "./cpu-sparse.js";
import type { PruneMethod } from "../src/sparse/prune.js";
import { encodeLines } from "../src/sparse/tokens.js";
import { isKvStore } from "../src/kv/store.js";

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = args.includes("--quick");
const DOC = opt("--doc") ?? "docs/sparsity.md";
const THREADS = 2;
const SPARSITIES = quick ? [0, 0.5, 0.7] : [0, 0.5, 0.6, 0.7, 0.8, 0.9];
const MODELS = [
  { name: "stories260K", path: "models/stories260K/stories260K.bin", ctx: 256, evalTokens: quick ? 512 : 2048 },
  { name: "frugal-ar-small", path: "models/frugal-ar-small", ctx: 512, evalTokens: quick ? 512 : 2048 },
  { name: "frugal-ar-base", path: "models/frugal-ar-base", ctx: 512, evalTokens: quick ? 512 : 1024 },
];
/** Characters of corpus-val.txt used for calibration; evaluation starts after them. */
const CALIB_CHARS = 60_000;
const CALIB = { sequences: 4, seqLen: 128 };

const log = (s: string) => process.stderr.write(s + "\n");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

interface PplRow { model: string; method: PruneMethod | "dense"; sparsity: number; ppl: number; tokens: number }

async function pplSweep(text: string): Promise<PplRow[]> {
  const calib = text.slice(0, CALIB_CHARS);
  const evalText = text.slice(CALIB_CHARS);
  const rows: PplRow[] = [];
  for (const m of MODELS) {
    for (const method of ["magnitude", "wanda"] as PruneMethod[]) {
      for (const s of SPARSITIES) {
        if (s === 0 && method === "wanda") continue;
        const t0 = performance.now();
        const model = await loadModel(m.path, { threads: THREADS, sparse: s === 0 ? undefined : { sparsity: s, method, calibText: calib, kernels: false, ...CALIB } });
        try {
          // a prefix long enough for the token count (tokenizing the whole 2 MB file per run would dominate)
          const ids = encodeLines(model.tokenizer, evalText, m.evalTokens);
          if (ids.length < m.evalTokens) throw new Error(`${m.name}: ${ids.length} evaluation tokens, wanted ${m.evalTokens}`);
          const r = await perplexityOfTokens(model, ids, { ctx: m.ctx });
          rows.push({ model: m.name, method: s === 0 ? "dense" : method, sparsity: s, ppl: r.ppl, tokens: r.tokens });
          log(`${m.name} ${s === 0 ? "dense" : method} ${(s * 100).toFixed(0)}%: ppl ${r.ppl.toFixed(3)} (${r.tokens} tokens, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
        } finally {
          model.dispose();
        }
      }
    }
  }
  return rows;
}

interface DecodeRow { sparsity: number; denseTps: number; sparseTps: number; prunedDenseTps: number; ratio: number; ratioPrunedDense: number }

/** Decode tokens/s of one model: 16-token prefill, then `steps` one-token steps (greedy), median of rounds. */
async function decodeTps(model: Model, steps: number): Promise<number> {
  const cache = model.network.newCache(16 + steps + 1);
  const prompt = Int32Array.from({ length: 16 }, (_, i) => 5 + i);
  let tok = await model.backend.argmax!(model.network.forward(prompt, 0, cache));
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) tok = await model.backend.argmax!(model.network.forward(Int32Array.of(tok), 16 + i, cache));
  return steps / ((performance.now() - t0) / 1000);
}

async function decodeSweep(): Promise<DecodeRow[]> {
  const path = "models/frugal-ar-base";
  const levels = quick ? [0.5] : [0.5, 0.7, 0.9];
  const dense = await loadModel(path, { threads: THREADS });
  const out: DecodeRow[] = [];
  try {
    for (const s of levels) {
      const sparse = await loadModel(path, { threads: THREADS, sparse: { sparsity: s } });
      const pruned = await loadModel(path, { threads: THREADS, sparse: { sparsity: s, kernels: false } });
      const d: number[] = [], sp: number[] = [], pd: number[] = [];
      const steps = quick ? 16 : 48;
      for (let r = 0; r < (quick ? 3 : 7); r++) {
        d.push(await decodeTps(dense, steps));
        sp.push(await decodeTps(sparse, steps));
        pd.push(await decodeTps(pruned, steps));
      }
      const row = { sparsity: s, denseTps: median(d), sparseTps: median(sp), prunedDenseTps: median(pd), ratio: median(sp) / median(d), ratioPrunedDense: median(sp) / median(pd) };
      out.push(row);
      log(`decode frugal-ar-base ${(s * 100).toFixed(0)}%: dense ${row.denseTps.toFixed(1)} t/s, sparse ${row.sparseTps.toFixed(1)} t/s (x${row.ratio.toFixed(2)}), pruned on dense kernels ${row.prunedDenseTps.toFixed(1)} t/s`);
      sparse.dispose();
      pruned.dispose();
    }
  } finally {
    dense.dispose();
  }
  return out;
}

interface KvRow { spec: string; ppl: number; tokens: number; bytes: number; denseBytes: number }

async function kvSweep(text: string): Promise<KvRow[]> {
  const model = await loadModel("models/frugal-ar-base", { threads: THREADS });
  const rows: KvRow[] = [];
  try {
    const ids = encodeLines(model.tokenizer, text.slice(CALIB_CHARS), quick ? 256 : 512);
    const specs = quick ? ["dense", "sparse:k=50,v=50"] : ["dense", ...[30, 50, 70].flatMap((p) => [`sparse:k=${p},v=${p}`, `sparse-head:k=${p},v=${p}`, `sparse-row:k=${p},v=${p}`])];
    const cfg = model.config;
    for (const spec of specs) {
      model.setKv(spec);
      const r = await perplexityOfTokens(model, ids, { ctx: ids.length, decodeFrom: ids.length / 2 });
      const cache = model.network.newCache(ids.length);
      model.network.forward(Int32Array.from(ids), 0, cache);
      const denseBytes = ids.length * cfg.numLayers * 2 * cfg.numKvHeads * cfg.headDim * 4;
      // the dense method may hand out the backend's own cache, which has no bytes()
      const bytes = isKvStore(cache) ? cache.bytes() : denseBytes;
      rows.push({ spec, ppl: r.ppl, tokens: r.tokens, bytes, denseBytes });
      log(`kv ${spec}: ppl ${r.ppl.toFixed(3)}, cache ${(bytes / 2 ** 20).toFixed(2)} MiB`);
    }
  } finally {
    model.dispose();
  }
  return rows;
}

function pplSection(rows: PplRow[]): string {
  const parts: string[] = [];
  for (const m of MODELS) {
    const dense = rows.find((r) => r.model === m.name && r.method === "dense")!;
    const levels = SPARSITIES.filter((s) => s > 0);
    const cell = (method: PruneMethod, s: number) => rows.find((r) => r.model === m.name && r.method === method && r.sparsity === s)?.ppl;
    const table = markdownTable(
      ["sparsity", "magnitude ppl", "Wanda ppl", "Wanda vs magnitude"],
      [["0% (dense)", dense.ppl.toFixed(3), dense.ppl.toFixed(3), "-"], ...levels.map((s) => {
        const a = cell("magnitude", s)!, b = cell("wanda", s)!;
        return [`${(s * 100).toFixed(0)}%`, a.toFixed(3), b.toFixed(3), `${(((b - a) / a) * 100).toFixed(1)}%`];
      })],
      [false, true, true, true],
    );
    const svgName = `sparsity-ppl-${m.name}.svg`;
    parts.push(`### ${m.name} (${dense.tokens} evaluation tokens, windows of ${m.ctx})\n\n${table}\n![${m.name} perplexity vs sparsity](${svgName})\n`);
  }
  return parts.join("\n");
}

function pplSvg(rows: PplRow[], model: string): string {
  const dense = rows.find((r) => r.model === model && r.method === "dense")!;
  const series = (["magnitude", "wanda"] as PruneMethod[]).map((method) => ({
    name: method,
    points: [{ x: 0, y: dense.ppl }, ...rows.filter((r) => r.model === model && r.method === method).map((r) => ({ x: r.sparsity * 100, y: r.ppl }))],
  }));
  return lineChartSvg({ title: `${model}: perplexity vs unstructured sparsity`, subtitle: "models/corpus-val.txt; Wanda calibrated on a disjoint earlier part", xLabel: "sparsity of every linear layer (%)", yLabel: "perplexity", series });
}

const text = await readFile("models/corpus-val.txt", "utf8");
const started = new Date().toISOString();
const t0 = performance.now();
log("== perplexity vs sparsity");
const ppl = args.includes("--skip-ppl") ? [] : await pplSweep(text);
log("== CPU GEMV, sparse vs dense of the same value type");
const gemv: SparseGemvRow[] = await sparseGemvSweep(quick ? [[1376, 512]] : [[1376, 512], [512, 1376], [4096, 4096]], ["bf16", "f16", "f32"], quick ? [0.5] : [0.5, 0.7, 0.9], THREADS, quick ? 3 : 7, log);
log("== CPU decode, frugal-ar-base");
const decode = await decodeSweep();
const kv = args.includes("--skip-kv") ? [] : (log("== sparse KV"), await kvSweep(text));
const seconds = (performance.now() - t0) / 1000;

const results = quick ? "/tmp/sparsity-results-quick.json" : "docs/sparsity-results.json";
await writeFile(results, JSON.stringify({ started, seconds, quick, ppl, gemv, decode, kv }, null, 1) + "\n");
if (ppl.length) for (const m of MODELS) await writeFile(`docs/sparsity-ppl-${m.name}.svg`, pplSvg(ppl, m.name));
await writeFile("docs/sparsity-cpu-decode.svg", barChartSvg({
  title: "frugal-ar-base decode on this CPU (2 threads)", subtitle: "median of interleaved rounds, same run", yLabel: "tokens/s",
  groups: decode.map((d) => `${(d.sparsity * 100).toFixed(0)}%`),
  series: [
    { name: "dense bf16 (unpruned)", values: decode.map((d) => d.denseTps) },
    { name: "pruned, dense bf16 kernel", values: decode.map((d) => d.prunedDenseTps) },
    { name: "pruned, sparse-bf16 kernel", values: decode.map((d) => d.sparseTps) },
  ],
}));
const gemvTable = markdownTable(
  ["shape (out x in)", "values", "sparsity", "dense ms", "sparse ms", "sparse / dense speedup", "byte ceiling", "of ceiling"],
  gemv.map((r) => [`${r.outF} x ${r.inF}`, r.values, `${(r.sparsity * 100).toFixed(0)}%`, r.denseMs.toFixed(3), r.sparseMs.toFixed(3), r.speedup.toFixed(2), r.ceiling.toFixed(2), `${(r.ofCeiling * 100).toFixed(0)}%`]),
  [false, false, true, true, true, true, true, true],
);
const decodeTable = markdownTable(
  ["sparsity", "dense t/s", "pruned on dense kernel t/s", "pruned on sparse kernel t/s", "sparse / dense", "sparse / pruned-dense"],
  decode.map((d) => [`${(d.sparsity * 100).toFixed(0)}%`, d.denseTps.toFixed(1), d.prunedDenseTps.toFixed(1), d.sparseTps.toFixed(1), d.ratio.toFixed(2), d.ratioPrunedDense.toFixed(2)]),
  [false, true, true, true, true, true],
);
const kvTable = kv.length === 0 ? "(skipped)\n" : markdownTable(
  ["--kv", "ppl", "vs dense", "cache bytes", "of dense f32 cache"],
  kv.map((r) => [r.spec, r.ppl.toFixed(3), `${(((r.ppl - kv[0]!.ppl) / kv[0]!.ppl) * 100).toFixed(2)}%`, String(r.bytes), `${((r.bytes / r.denseBytes) * 100).toFixed(0)}%`]),
  [false, true, true, true, true],
);
const section = `Measured ${started} in ${seconds.toFixed(0)} s${quick ? " (--quick)" : ""}, ${THREADS} threads, on this project's shared 2-core machine
(under load from other jobs: ratios come from interleaved rounds in one run, absolute times are noisy).

### Perplexity vs sparsity

${ppl.length ? pplSection(ppl) : "(skipped)\n"}
### CPU GEMV: sparse-bitmap kernel vs our dense kernel of the same value type

${gemvTable}
### CPU decode, frugal-ar-base (bf16 weights), batch 1

${decodeTable}
![CPU decode tokens/s](sparsity-cpu-decode.svg)

### Sparse KV cache, frugal-ar-base

Perplexity of the second half of a ${kv[0]?.tokens !== undefined ? kv[0].tokens + 1 : "-"}-token window decoded one step at a time after an exact prefill of the first half.

${kvTable}`;
const doc = await readFile(DOC, "utf8");
const begin = "<!-- cpu-sparse:begin -->", end = "<!-- cpu-sparse:end -->";
const i = doc.indexOf(begin), j = doc.indexOf(end);
if (i < 0 || j < i) throw new Error(`${DOC}: no ${begin} ... ${end} section`);
await writeFile(DOC, doc.slice(0, i + begin.length) + "\n" + section + "\n" + doc.slice(j));
log(`updated ${DOC}, docs/sparsity-results.json and the SVGs in ${seconds.toFixed(0)} s`);
