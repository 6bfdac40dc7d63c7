/**
 * xKV / per-layer SVD and TokenButler against dense and kv-core's selection baselines on frugal-ar-base
 * (spec xkv.md §7.2, tokenbutler.md §8.2), CPU:
 *
 * 1. perplexity vs KV compression: `--windows` consecutive 512-token windows of models/corpus-val.txt; the
 *    first `--prefill` tokens are prefilled exactly (xKV compresses them at the first decode step), the rest
 *    are teacher-forced one decode step at a time and only their predictions are scored;
 * 2. a needle probe: "The password of user <name> is <word>." hidden at 10/50/90% depth of ~300 tokens of
 *    validation text; the question (the needle's own words) and the answer come as decode steps; scored as
 *    the share of answer tokens that are the argmax and of examples with every answer token right;
 * 3. the co-reference task of tokenbutler.md §6 (small regenerated lists, Python-style seeded draws): the
 *    example up to the tie-back question is the prompt; the question and the name are decode steps;
 *    inaccuracy = % of the name's tokens whose argmax is wrong, miss = examples with any wrong token.
 *
 *   node dist/bench/kv-xkv-tokenbutler.js [--windows 4] [--prefill 384] [--needles 6] [--coref 8] [--only FAMILIES]
 *        [--md docs/kv-xkv-tokenbutler-results.md] [--svg docs/kv-xkv-tokenbutler.svg] [--json FILE]
 *
 * Compression: xKV/SVD rows report the prompt's compression (dense prompt bytes / factor bytes, measured)
 * and the resident ratio at the window's end (exact decode tokens included); selection rows are plotted
 * at 1/keep (positions attended; TokenButler and the oracle keep the whole cache resident).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { loadModel } from "../src/load.js";
import type { Model } from "../src/model/model.js";
import { isKvStore } from "../src/kv/store.js";
import type { KVCache } from "../src/backend/backend.js";
import { XkvStore } from "../src/kv/xkv/xkv-store.js";
import { formulaElements } from "../src/kv/xkv/xkv-factors.js";
import { lineChartSvg, markdownTable } from "../src/eval/plot.js";
import { ProgressBar } from "../src/cli/progress.js";
import { Rng } from "../src/generate/sampler.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const WINDOWS = Number(arg("--windows", "4"));
const CTX = 512;
const PREFILL = Number(arg("--prefill", "384"));
const NEEDLES = Number(arg("--needles", "6"));
const COREF = Number(arg("--coref", "8"));
const ONLY = arg("--only", "");

interface Row {
  readonly label: string;
  readonly kv: string;
  readonly family: string;
  readonly keep?: number;
  readonly group?: number;
  readonly rankK?: number;
  readonly rankV?: number;
}

/**
 * xKV ranks for a target prompt compression at T = PREFILL (exact equal memory, B included), K:V = 2:3.
 * Quality runs in the reference mode (dense reconstruction; test/kv/xkv proves the storage mode equal to it
 * within 1e-4 relative) because the storage mode's key rebuild costs T·r_k·H_kv·d MACs a layer and step
 * in plain TypeScript; the storage mode's bytes and decode time are measured separately below.
 */
function xkvRow(group: number, ratio: number): Row {
  const N = 8, width = 4 * 64, T = PREFILL;
  const s = (2 * N * width * T) / (ratio * (Math.ceil(N / group) * T + N * width));
  const rk = Math.max(1, Math.round(0.4 * s)), rv = Math.max(1, Math.round(0.6 * s));
  return group === 1
    ? { label: `svd ${ratio}x`, kv: `svd:rankK=${rk},rankV=${rv},reference=1`, family: "svd (G=1)", group, rankK: rk, rankV: rv }
    : { label: `xkv-${group} ${ratio}x`, kv: `xkv:group=${group},rankK=${rk},rankV=${rv},reference=1`, family: `xkv G=${group}`, group, rankK: rk, rankV: rv };
}
const sel = (name: string, keeps: number[], extra = "") => keeps.map((k): Row => ({ label: `${name} keep=${k}`, kv: `${name}:keep=${k}${extra}`, family: name, keep: k }));
const KEEPS = [0.5, 0.25];
const RATIOS = [4, 8];
/** TokenButler window variant: the share of K_i given to the most recent positions (0.5 = H2O's recent half). */
const WINDOW_SHARES = [0.25, 0.5, 0.625, 0.75, 0.875];

const PPL_ROWS: Row[] = [
  { label: "dense", kv: "dense", family: "dense" },
  ...RATIOS.map((r) => xkvRow(1, r)),
  ...RATIOS.map((r) => xkvRow(2, r)),
  ...RATIOS.map((r) => xkvRow(4, r)),
  // 8x of a 16-bit prompt with xKV v2's int4 A (groups of 32, f16 scale and zero) and a 16-bit B (spec xkv.md
  // §5): 4·T·r·0.625 + 8·r·256·2 bytes <= 2·8·T·256·2 / 8 gives r_k + r_v <= 77 at T = 384, G = 2. Run with
  // f32 factors, so its loss is what those ranks cost before A is quantized at all.
  { label: "xkv-2 r31/46", kv: "xkv:group=2,rankK=31,rankV=46,reference=1", family: "xkv G=2 ranks of 8x vs 16-bit", group: 2, rankK: 31, rankV: 46 },
  ...sel("oracle", KEEPS),
  ...sel("tokenbutler", KEEPS),
  // the labeled local-window variant (spec §2.3/§3.6): a share of K_i pinned to the most recent positions, inside the budget
  ...WINDOW_SHARES.flatMap((w) => sel("tokenbutler", KEEPS, `,window=${w}`).map((r) => ({ ...r, label: `${r.label} window=${w}`, family: `tokenbutler-w${w}` }))),
  { label: "tokenbutler keep=0.5 window=0.5 anchors=8", kv: "tokenbutler:keep=0.5,window=0.5,anchors=8", family: "tokenbutler-w0.5-a8", keep: 0.5 },
  ...sel("h2o", KEEPS),
  ...sel("snapkv", KEEPS),
  ...sel("quest", KEEPS),
  ...sel("streaming", KEEPS),
];
const PROBE_ROWS: Row[] = [
  { label: "dense", kv: "dense", family: "dense" },
  xkvRow(1, 8), xkvRow(4, 8),
  ...["oracle", "tokenbutler", "h2o", "snapkv"].flatMap((n) => sel(n, [0.5])),
  ...sel("quest", [0.5], ",page=4"),
];

function nll(row: Float32Array, target: number): number {
  let max = -Infinity;
  for (const x of row) if (x > max) max = x;
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  return max + Math.log(sum) - row[target]!;
}
function argmax(row: Float32Array): number {
  let b = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[b]!) b = i;
  return b;
}

/** Bytes of the storage mode's factors for the prompt (the formula; test/kv/xkv checks measured = formula). */
function factorBytes(model: Model, row: Row): number {
  const c = model.config;
  return 4 * formulaElements({ layers: c.numLayers, kvHeads: c.numKvHeads, headDim: c.headDim }, { group: row.group!, rankK: row.rankK!, rankV: row.rankV! }, PREFILL);
}

/**
 * Storage mode (factors, fused attention) against dense on the same steps: measured resident bytes after the
 * prompt and decode ms per step over `steps` teacher-forced steps of window w (interleaved, median of 3).
 */
async function storageSpeed(model: Model, w: number[], row: Row, steps: number): Promise<{ bytes: number; ratio: number; ms: number; denseMs: number; maxRelLogitDiff: number }> {
  const net = model.network;
  const time = async (kv: string) => {
    model.setKv(kv);
    const cache = net.newCache(CTX);
    await model.backend.read(net.forward(Int32Array.from(w.slice(0, PREFILL)), 0, cache));
    const logits: Float32Array[] = [];
    const t0 = performance.now();
    for (let t = PREFILL; t < PREFILL + steps; t++) logits.push(Float32Array.from(await model.backend.read(net.forward(Int32Array.of(w[t]!), t, cache))));
    return { ms: (performance.now() - t0) / steps, cache, logits };
  };
  const storageSpec = row.kv.replace(",reference=1", "");
  const ratios: number[] = [];
  let last: Awaited<ReturnType<typeof time>> | undefined, dense: Awaited<ReturnType<typeof time>> | undefined, ref: Awaited<ReturnType<typeof time>> | undefined;
  for (let rep = 0; rep < 3; rep++) {
    dense = await time("dense");
    last = await time(storageSpec);
    ratios.push(last.ms / dense.ms);
  }
  ref = await time(row.kv);
  let diff = 0;
  for (let s = 0; s < steps; s++) {
    let num = 0, den = 0;
    for (let i = 0; i < ref.logits[s]!.length; i++) { num = Math.max(num, Math.abs(last!.logits[s]![i]! - ref.logits[s]![i]!)); den = Math.max(den, Math.abs(ref.logits[s]![i]!)); }
    diff = Math.max(diff, num / den);
  }
  const bytes = (last!.cache as XkvStore).bytes();
  const rowBytes = model.config.numLayers * 2 * model.config.numKvHeads * model.config.headDim * 4;
  return { bytes, ratio: ((PREFILL + steps) * rowBytes) / bytes, ms: last!.ms, denseMs: dense!.ms, maxRelLogitDiff: diff };
}

interface PplResult { row: Row; ppl: number; bytesEnd: number; denseEnd: number; promptRatio?: number; attended: number; decodeMs: number; compressMs?: number }

async function perplexityRow(model: Model, windows: number[][], row: Row, tick: () => void): Promise<PplResult> {
  const net = model.network;
  model.setKv(row.kv);
  const cache: KVCache = net.newCache(CTX);
  const c = model.config;
  const rowBytes = c.numLayers * 2 * c.numKvHeads * c.headDim * 4;
  let total = 0, count = 0, bytes = 0, decodeMs = 0, steps = 0, compressMs = 0;
  for (const w of windows) {
    await model.backend.read(net.forward(Int32Array.from(w.slice(0, PREFILL)), 0, cache));
    for (let t = PREFILL; t + 1 < w.length; t++) {
      const t0 = performance.now();
      const logits = await model.backend.read(net.forward(Int32Array.of(w[t]!), t, cache));
      decodeMs += performance.now() - t0;
      steps++;
      total += nll(logits, w[t + 1]!);
      count++;
      if (t === PREFILL && cache instanceof XkvStore) compressMs += cache.compressMs;
      tick();
    }
    // reference mode stores the dense reconstruction: count what the storage mode keeps (formula = measured, tested)
    bytes += row.group ? factorBytes(model, row) + (w.length - 1 - PREFILL) * rowBytes : isKvStore(cache) ? cache.bytes() : (w.length - 1) * rowBytes;
  }
  const usage = (cache as { usage?: { attended: number; visible: number } }).usage;
  return {
    row, ppl: Math.exp(total / count), bytesEnd: bytes / windows.length, denseEnd: (CTX - 1) * rowBytes,
    promptRatio: row.group ? (PREFILL * rowBytes) / factorBytes(model, row) : undefined,
    compressMs: cache instanceof XkvStore ? compressMs / windows.length : undefined,
    attended: usage && usage.visible > 0 ? usage.attended / usage.visible : 1, decodeMs: decodeMs / steps,
  };
}

/** Teacher-forced: prompt prefilled, then `forced` tokens as decode steps; returns whether each of the last `answer` predictions was right. */
async function probe(model: Model, prompt: number[], forced: number[], answer: number): Promise<boolean[]> {
  const net = model.network;
  const cache = net.newCache(prompt.length + forced.length + 1);
  let logits = await model.backend.read(net.forward(Int32Array.from(prompt), 0, cache));
  const hits: boolean[] = [];
  const all = [...prompt, ...forced];
  for (let t = prompt.length; t < all.length; t++) {
    if (t >= all.length - answer) hits.push(argmax(logits) === all[t]);
    if (t + 1 < all.length) logits = await model.backend.read(net.forward(Int32Array.of(all[t]!), t, cache));
  }
  return hits;
}

// ------------------------------------------------------------------------------------------ needle probe
const NEEDLE_NAMES = ["velmora", "quistar", "brandolin", "tessavel", "orvanth", "kelidor", "mirrowen", "zanthor", "pelgrave"];
const NEEDLE_WORDS = ["tangerine", "marigold", "saxophone", "lighthouse", "porcupine", "watermelon", "avalanche", "cinnamon", "hurricane"];
function needleExamples(model: Model, text: string, n: number): { prompt: number[]; forced: number[]; answer: number }[] {
  const rng = new Rng(7);
  const out = [];
  for (let i = 0; i < n; i++) {
    const name = NEEDLE_NAMES[i % NEEDLE_NAMES.length]!;
    const code = NEEDLE_WORDS[Math.floor(rng.next() * NEEDLE_WORDS.length)]!;
    const start = 600_000 + i * 3000;
    const filler = model.tokenizer.encode(text.slice(start, start + 1500), { addSpecialTokens: false }).slice(0, 300);
    const depth = [0.1, 0.5, 0.9][i % 3]!;
    const at = Math.floor(filler.length * depth);
    const needle = model.tokenizer.encode(` The password of user ${name} is ${code}. `, { addSpecialTokens: false });
    const question = model.tokenizer.encode(` The password of user ${name} is`, { addSpecialTokens: false });
    const answer = model.tokenizer.encode(` ${code}`, { addSpecialTokens: false });
    out.push({ prompt: [...filler.slice(0, at), ...needle, ...filler.slice(at)], forced: [...question, ...answer], answer: answer.length });
  }
  return out;
}

// ------------------------------------------------------------------------------------- co-reference task
const PLACES = ["Velmora", "Quistar", "Brandolin,", "Tessavel", "Orvanth", "Kelidor", "Mirrowen", "Zanthor", "Pelgrave", "Ostrelle,", "Varnhold", "Lumesk", "Drevalon", "Ithrasca", "Caldwyn", "Velmora"];
const PAIRS: [string, string][] = [
  ["Snow-capped peaks rose above a valley of silver lakes and quiet pine forests. The place is:", "Which place had the snow-capped peaks and the silver lakes"],
  ["A narrow harbour town of red roofs looked out over a bay full of small fishing boats. The place is:", "Name the harbour town with the red roofs and the fishing boats"],
  ["Endless dunes of golden sand stretched to the horizon under a pale and burning sky. The place is:", "What was the place with the golden dunes under the burning sky"],
  ["An old stone bridge crossed a slow green river between two rows of leaning houses. The place is:", "Which place had the stone bridge over the slow green river"],
  ["Terraced hills of tea bushes climbed into the morning mist above a sleepy village. The place is:", "Name the village below the terraced tea hills in the mist"],
  ["A frozen lake lay silent under the northern lights, ringed by dark and ancient firs. The place is:", "What was the place with the frozen lake under the northern lights"],
];
const PHILOSOPHY = [
  "Some thinkers hold that a life is measured less by what it gathers than by what it gives away, and that the habit of attention to other people is the beginning of every virtue worth the name, since a mind turned only inward slowly forgets that the world is larger than its wishes and its fears",
  "It has often been argued that certainty is a comfort rather than a discovery, and that the honest inquirer must learn to live with questions that stay open for a lifetime, treating each answer as a place to rest for a while before the road continues toward problems that are harder and more interesting",
  "A recurring idea in moral philosophy is that character is built from small choices repeated until they become second nature, so that courage, patience and kindness are less like gifts we are born with and more like skills that anyone can practise, one ordinary day after another, until they hold",
];
const FOOD = [
  "The local kitchen is known for a slow stew of beans, smoked paprika and root vegetables, simmered for hours in a clay pot and served with thick slices of dark bread, while the bakers rise before dawn to make sweet rolls filled with honey, walnuts and a little cinnamon that visitors carry home in paper bags",
  "Markets there sell bright peppers, fresh herbs and wheels of sharp sheep cheese, and the favourite lunch is a flat bread baked on hot stones, folded around grilled vegetables and yoghurt with garlic, followed in the afternoon by tiny cups of strong coffee and a plate of almond biscuits dusted with sugar",
  "Families gather on holidays around a table of roasted fish with lemon and olive oil, rice cooked with saffron and peas, and salads of tomato and cucumber, and the meal ends with a cold custard flavoured with orange peel that every grandmother claims to make better than anyone else in the town",
];
function mathStatement(rng: Rng): string {
  const a = 2 + Math.floor(rng.next() * 40), b = 2 + Math.floor(rng.next() * 40);
  return `${a} plus ${b} equals ${a + b}, and ${a + b} minus ${b} gives back ${a}`;
}
function corefExamples(model: Model, n: number): { prompt: number[]; forced: number[]; answer: number }[] {
  const rng = new Rng(42);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rng.next() * xs.length)]!;
  const out = [];
  for (let i = 0; i < n; i++) {
    const [intro, tie] = pick(PAIRS);
    const name = pick(PLACES);
    const phil = pick(PHILOSOPHY), food = pick(FOOD), math = mathStatement(rng);
    const prompt = model.tokenizer.encode(`${intro} ${name}. ${phil}. ${food}. ${math}.`, { addSpecialTokens: false });
    const question = model.tokenizer.encode(` ${tie}:`, { addSpecialTokens: false });
    const answer = model.tokenizer.encode(` ${name}`, { addSpecialTokens: false });
    out.push({ prompt, forced: [...question, ...answer], answer: answer.length });
  }
  return out;
}

interface ProbeResult { row: Row; needleAcc: number; needleTokens: number; corefInacc: number; corefMiss: number }

async function main(): Promise<void> {
  const model = await loadModel("models/frugal-ar-base", { contextLength: CTX });
  const text = readFileSync("models/corpus-val.txt", "utf8");
  const ids = model.tokenizer.encode(text.slice(0, WINDOWS * CTX * 6), { addSpecialTokens: false });
  if (ids.length < WINDOWS * CTX) throw new Error(`corpus-val.txt gives ${ids.length} tokens, fewer than ${WINDOWS} windows of ${CTX}`);
  const windows = Array.from({ length: WINDOWS }, (_, i) => ids.slice(i * CTX, (i + 1) * CTX));
  const bar = new ProgressBar();
  const rows = PPL_ROWS.filter((r) => !ONLY || r.family === "dense" || ONLY.split(",").some((o) => r.family.startsWith(o)));
  const ppl: PplResult[] = [];
  let done = 0;
  const total = rows.length * WINDOWS * (CTX - PREFILL - 1);
  for (const row of rows) ppl.push(await perplexityRow(model, windows, row, () => bar.update(`perplexity ${row.label}`, ++done, total)));
  const storage: { row: Row; r: Awaited<ReturnType<typeof storageSpeed>> }[] = [];
  for (const row of rows.filter((r) => r.group && r.label.endsWith(" 8x"))) {
    bar.update(`storage mode ${row.label}`, storage.length, 3);
    storage.push({ row, r: await storageSpeed(model, windows[0]!, row, 16) });
  }
  const needles = needleExamples(model, text, NEEDLES);
  const corefs = corefExamples(model, COREF);
  const probes: ProbeResult[] = [];
  // --needles 0 --coref 0: no probes at all (perplexity rows only)
  const probeRows = NEEDLES + COREF === 0 ? [] : PROBE_ROWS.filter((r) => !ONLY || r.family === "dense" || ONLY.split(",").some((o) => r.family.startsWith(o)));
  done = 0;
  for (const row of probeRows) {
    model.setKv(row.kv);
    let ok = 0, wrong = 0, tokens = 0, miss = 0, nRight = 0, nTokens = 0;
    for (const ex of needles) {
      const hits = await probe(model, ex.prompt, ex.forced, ex.answer);
      if (hits.every(Boolean)) ok++;
      nRight += hits.filter(Boolean).length;
      nTokens += hits.length;
      bar.update(`probes ${row.label}`, ++done, probeRows.length * (NEEDLES + COREF));
    }
    for (const ex of corefs) {
      const hits = await probe(model, ex.prompt, ex.forced, ex.answer);
      tokens += hits.length;
      wrong += hits.filter((h) => !h).length;
      if (hits.some((h) => !h)) miss++;
      bar.update(`probes ${row.label}`, ++done, probeRows.length * (NEEDLES + COREF));
    }
    probes.push({ row, needleAcc: ok / NEEDLES, needleTokens: nRight / nTokens, corefInacc: (100 * wrong) / tokens, corefMiss: miss / COREF });
  }
  model.dispose();
  process.stderr.write("\n");

  const dense = ppl[0]!;
  const ratioOf = (r: PplResult) => r.row.keep !== undefined ? 1 / r.row.keep : r.promptRatio ?? 1;
  const pplTable = markdownTable(
    ["method", "--kv", "prompt compression ×", "resident at end ×", "attended %", "ppl", "Δ vs dense", "decode ms/step (ratio)", "compress ms"],
    ppl.map((r) => [
      r.row.label, r.row.kv, ratioOf(r).toFixed(2), (r.denseEnd / r.bytesEnd).toFixed(2), (100 * r.attended).toFixed(1), r.ppl.toFixed(3),
      `${r.ppl >= dense.ppl ? "+" : ""}${((100 * (r.ppl - dense.ppl)) / dense.ppl).toFixed(2)}%`,
      `${r.decodeMs.toFixed(1)} (${(r.decodeMs / dense.decodeMs).toFixed(2)}×)`, r.compressMs === undefined ? "" : r.compressMs.toFixed(0),
    ]),
    [false, false, true, true, true, true, true, true, true],
  );
  const probeTable = markdownTable(
    ["method", "--kv", "needle: answer tokens right", "needle: examples all right", "co-ref inaccuracy %", "co-ref miss rate"],
    probes.map((p) => [p.row.label, p.row.kv, `${(100 * p.needleTokens).toFixed(0)}%`, `${(100 * p.needleAcc).toFixed(0)}%`, p.corefInacc.toFixed(1), p.corefMiss.toFixed(2)]),
    [false, false, true, true, true, true],
  );
  const storageTable = markdownTable(
    ["method", "--kv (storage mode)", "measured bytes after prompt + 16 steps", "resident compression ×", "decode ms/step", "dense ms/step", "ratio", "max rel. logit diff vs reference mode"],
    storage.map(({ row, r }) => [row.label, row.kv.replace(",reference=1", ""), r.bytes, r.ratio.toFixed(2), r.ms.toFixed(1), r.denseMs.toFixed(1), `${(r.ms / r.denseMs).toFixed(2)}×`, r.maxRelLogitDiff.toExponential(1)]),
    [false, false, true, true, true, true, true, true],
  );
  const families = [...new Set(ppl.map((r) => r.row.family))].filter((f) => f !== "dense");
  const svg = lineChartSvg({
    title: "frugal-ar-base: perplexity vs KV compression (xKV, SVD, TokenButler, baselines)",
    subtitle: `${WINDOWS} windows of ${CTX}, exact prefill ${PREFILL}, ${CTX - PREFILL - 1} teacher-forced decode steps scored; dense ppl ${dense.ppl.toFixed(2)}`,
    xLabel: "compression × (xKV/SVD: prompt bytes; selection: 1/keep)",
    yLabel: "perplexity increase over dense (%)",
    series: families.map((f) => ({ name: f, points: ppl.filter((r) => r.row.family === f).map((r) => ({ x: ratioOf(r), y: (100 * (r.ppl - dense.ppl)) / dense.ppl })).sort((a, b) => a.x - b.x) })),
  });
  const svgPath = arg("--svg", "docs/kv-xkv-tokenbutler.svg");
  writeFileSync(svgPath, svg);
  const md = `Generated by \`node dist/bench/kv-xkv-tokenbutler.js ${args.join(" ")}\` (${new Date().toISOString().slice(0, 16)}Z, CPU under load from other jobs: times are indicative).\n\n` +
    `### Perplexity vs compression (frugal-ar-base, ${WINDOWS} × ${CTX}-token windows, prefill ${PREFILL})\n\n${pplTable}\n![perplexity vs compression](${svgPath.replace(/^docs\//, "")})\n\n` +
    `### xKV storage mode: measured bytes and decode time (window 0, ${PREFILL}-token prompt, 16 decode steps, median of 3 interleaved with dense)\n\n${storageTable}\n` +
    `### Needle (${NEEDLES} examples) and co-reference (${COREF} examples) probes\n\n${probeTable}`;
  writeFileSync(arg("--md", "docs/kv-xkv-tokenbutler-results.md"), md);
  if (args.includes("--json")) writeFileSync(arg("--json", "kv-xkv-tokenbutler.json"), JSON.stringify({ ppl, probes }, null, 1));
  process.stdout.write(md + "\n");
}

await main();
