/**
 * Δppl of chosen kv-eval rows on several sets of windows (docs/kv-cache.md, "Session 7"): one series per row,
 * x = the set's first window (kv-eval --offset), with the issue's +3% as a line. It shows how far a row
 * picked on one set moves on the others.
 *
 *   node dist/bench/kv-heldout-plot.js --title T --svg OUT.svg --rows "[name@]kv|format;[name@]kv|format" \
 *        --set 0:a.json,b.json --set 4:c.json ...
 *
 * Every file of a set must share its dense perplexity (same windows); a row missing from a set is left out there.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { lineChartSvg } from "../src/eval/plot.js";

interface Result { label: string; kv: string; format: string; ppl: number }

const args = process.argv.slice(2);
const one = (name: string) => {
  const i = args.indexOf(name);
  if (i < 0 || i + 1 >= args.length) throw new Error(`${name} is required`);
  return args[i + 1]!;
};
const sets = args.flatMap((a, i) => (a === "--set" ? [args[i + 1]!] : [])).map((spec) => {
  const colon = spec.indexOf(":");
  const offset = Number(spec.slice(0, colon));
  if (colon <= 0 || !Number.isInteger(offset)) throw new Error(`--set ${spec}: expected OFFSET:file.json,file.json`);
  let dense: number | undefined;
  const rows = new Map<string, number>();
  for (const file of spec.slice(colon + 1).split(",")) {
    const results = JSON.parse(readFileSync(file, "utf8")) as Result[];
    const d = results.find((r) => r.label === "dense");
    if (!d) throw new Error(`${file}: no dense row`);
    if (dense !== undefined && Math.abs(d.ppl - dense) > 1e-9 * dense) throw new Error(`${file}: dense ppl ${d.ppl}, the set's other files ${dense} (other windows)`);
    dense = d.ppl;
    for (const r of results) rows.set(`${r.kv}|${r.format}`, (100 * (r.ppl - d.ppl)) / d.ppl);
  }
  return { offset, rows };
});
if (!sets.length) throw new Error("no --set given");
const wanted = one("--rows").split(";");
const series = wanted.map((entry) => {
  // "name@kv|format": the legend says name (a mixed format's spec is too long for it)
  const at = entry.indexOf("@");
  const key = entry.slice(at + 1);
  const points = sets.filter((s) => s.rows.has(key)).map((s) => ({ x: s.offset, y: s.rows.get(key)! }));
  if (!points.length) throw new Error(`--rows: "${key}" is in none of the sets (rows are "kv|format")`);
  return { name: at > 0 ? entry.slice(0, at) : key.replace("|", " + "), points };
});
const xs = sets.map((s) => s.offset);
writeFileSync(one("--svg"), lineChartSvg({
  title: one("--title"),
  subtitle: "frugal-ar-base, CPU, 4 windows × 512 tokens (prefill 384) a set; x = the set's first window (kv-eval --offset)",
  xLabel: "first window of the set",
  yLabel: "perplexity increase over dense (%)",
  yFromZero: true,
  width: 960,
  height: 460,
  series: [...series, { name: "+3%", points: [{ x: Math.min(...xs), y: 3 }, { x: Math.max(...xs), y: 3 }] }],
}));
process.stdout.write(`wrote ${one("--svg")}: ${series.length} rows over ${sets.length} sets\n`);
