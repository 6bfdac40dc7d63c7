/**
 * Δppl against dense with its paired bootstrap 95% interval, one vertical bar per kv-eval row (docs/kv-cache.md,
 * "Session 8"): each row is a series of three markers at x = its place (low end, pooled Δppl, high end) joined
 * by a line, with the issue's +3% as a horizontal line. Reads kv-eval --json files of one set of windows (a
 * run's FILE.partial too, whose intervals kv-eval had not yet computed), and prints the rows as a Markdown table.
 *
 *   node dist/bench/kv-interval-plot.js --title T --subtitle S --svg OUT.svg --rows "[name@]kv|format;..." a.json b.json
 *
 * Every file must share its dense per-window NLLs (same windows); a row missing from all files is an error.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { lineChartSvg, markdownTable } from "../src/eval/plot.js";
import { pairedDeltaPpl } from "../src/eval/paired-bootstrap.js";

interface Result { label: string; kv: string; format: string; ppl: number; bytesPerToken: number; windowNll: number[]; windowTokens: number[] }

const args = process.argv.slice(2);
const one = (name: string) => {
  const i = args.indexOf(name);
  if (i < 0 || i + 1 >= args.length) throw new Error(`${name} is required`);
  return args[i + 1]!;
};
const files = args.filter((a, i) => /\.json(\.partial)?$/.test(a) && !args[i - 1]?.startsWith("--"));
if (!files.length) throw new Error("no kv-eval JSON files given");
let dense: Result | undefined;
const rows = new Map<string, Result>();
for (const file of files) {
  const results = JSON.parse(readFileSync(file, "utf8")) as Result[];
  const d = results.find((r) => r.label === "dense");
  if (!d?.windowNll) throw new Error(`${file}: no dense row with per-window NLLs (kv-eval from session 8 on writes them)`);
  if (dense && (d.windowNll.length !== dense.windowNll.length || d.windowNll.some((x, i) => x !== dense!.windowNll[i]))) {
    throw new Error(`${file}: its dense per-window NLLs differ from ${files[0]}'s (other windows)`);
  }
  dense = d;
  for (const r of results) rows.set(`${r.kv}|${r.format}`, r);
}
const table: (string | number)[][] = [];
const pct = (v: number) => `${v >= 0 ? "+" : ""}${(100 * v).toFixed(2)}%`;
const series = one("--rows").split(";").map((entry, i) => {
  const at = entry.indexOf("@");
  const key = entry.slice(at + 1);
  const r = rows.get(key);
  if (!r) throw new Error(`--rows: "${key}" is in none of the files (rows are "kv|format")`);
  // the same statistic and seed as kv-eval's tables
  const ci = pairedDeltaPpl({ nll: r.windowNll, tokens: r.windowTokens }, { nll: dense!.windowNll, tokens: dense!.windowTokens }, { seed: 1 });
  const x = i + 1;
  table.push([x, at > 0 ? entry.slice(0, at) : "", r.kv, r.format, Math.round(r.bytesPerToken), (dense!.bytesPerToken / 2 / r.bytesPerToken).toFixed(2), r.ppl.toFixed(3), pct(ci.delta), `[${pct(ci.lo)}, ${pct(ci.hi)}]`]);
  return { name: `${x}: ${at > 0 ? entry.slice(0, at) : key.replace("|", " + ")}`, points: [ci.lo, ci.delta, ci.hi].map((v) => ({ x, y: 100 * v })) };
});
writeFileSync(one("--svg"), lineChartSvg({
  title: one("--title"),
  subtitle: one("--subtitle"),
  xLabel: "row (legend); bar: paired bootstrap 95% interval over windows, middle marker: pooled Δppl",
  yLabel: "perplexity increase over dense (%)",
  yFromZero: true,
  width: 1100,
  height: 520,
  series: [...series, { name: "+3%", points: [{ x: 0.5, y: 3 }, { x: series.length + 0.5, y: 3 }] }],
}));
const w = dense!.windowNll.length, tokens = dense!.windowTokens.reduce((a, b) => a + b, 0);
process.stdout.write(`dense ppl ${Math.exp(dense!.windowNll.reduce((a, b) => a + b, 0) / tokens).toFixed(3)} over ${w} windows, ${tokens} scored tokens\n\n`);
process.stdout.write(markdownTable(["#", "name", "--kv", "--kv-format", "KV bytes/token", "vs 16-bit ×", "ppl", "Δppl vs dense (pooled)", "95% interval (windows)"], table, [true, false, false, false, true, true, true, true, true]));
process.stdout.write(`\nwrote ${one("--svg")}: ${series.length} rows\n`);
