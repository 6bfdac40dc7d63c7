import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { loadModel } from "../../src/load.js";
import { evaluatePerplexity } from "../../src/eval/perplexity.js";
import { parseMatrixConfig, readMatrixConfig, runMatrix, type MatrixResults } from "../../src/eval/matrix.js";
import { ROOT, STORIES, STORIES_EXPECTED } from "../paths.js";

const dir = mkdtempSync(join(tmpdir(), "frugal-matrix-"));
const CTX = 48;
const CHUNKS = 3;

/**
 * Checks that `svg` is well-formed XML as far as this writer's output goes: one root <svg> with the SVG
 * namespace, every tag closed in order, attributes quoted, no stray "<" or "&" in text.
 */
function assertWellFormedSvg(svg: string): void {
  const stack: string[] = [];
  let roots = 0;
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(svg); m; m = tag.exec(svg)) {
    const text = svg.slice(last, m.index);
    assert.ok(!/[<>]/.test(text) && !/&(?!(amp|lt|gt|quot|apos);)/.test(text), `stray markup in text: ${JSON.stringify(text)}`);
    last = tag.lastIndex;
    const [, close, name, , selfClose] = m;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    else if (!selfClose) {
      if (stack.length === 0) roots++;
      stack.push(name!);
    } else if (stack.length === 0) roots++;
  }
  assert.equal(svg.slice(last).trim(), "", "text after the last tag");
  assert.equal(stack.length, 0, `unclosed: ${stack.join(", ")}`);
  assert.equal(roots, 1);
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
}

test("two thread counts give the same perplexity; results.json, results.md and plot.svg say so", async () => {
  const data = join(dir, "text.txt");
  writeFileSync(data, readFileSync(STORIES_EXPECTED, "utf8"));
  const configFile = join(dir, "threads.json");
  // relative paths resolve against the config's folder
  writeFileSync(
    configFile,
    JSON.stringify({
      model: STORIES,
      task: { kind: "ppl", data: "text.txt", ctx: CTX, chunks: CHUNKS },
      optionSets: [
        { name: "1 thread", options: { threads: 1 } },
        { name: "2 threads", options: { threads: 2, futureOption: "future" } },
      ],
    }),
  );
  const out = join(dir, "out");
  const progress: string[] = [];
  const config = await readMatrixConfig(configFile);
  assert.deepEqual(config.optionSets[1]!.unchecked, ["futureOption"]);
  await runMatrix(config, out, { onProgress: (t) => progress.push(t) });

  const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as MatrixResults;
  assert.equal(results.mainMetric, "ppl");
  assert.deepEqual(results.rows.map((r) => r.name), ["1 thread", "2 threads"]);
  const [a, b] = results.rows.map((r) => r.metrics!);
  assert.equal(a!["tokens"], CHUNKS * (CTX - 1));
  assert.equal(b!["tokens"], a!["tokens"]);
  assert.ok(Math.abs(a!["nll"]! - b!["nll"]!) <= 1e-9, `${a!["nll"]} vs ${b!["nll"]}`);
  assert.ok(Math.abs(a!["ppl"]! - b!["ppl"]!) <= 1e-9 * a!["ppl"]!);
  assert.ok(Math.abs(results.rows[1]!.delta!["ppl"]!) <= 1e-9 * a!["ppl"]!);
  assert.equal(results.rows[0]!.delta, undefined);
  assert.deepEqual(results.rows[1]!.options, { threads: 2, futureOption: "future" });
  assert.ok(results.rows.every((r) => r.error === undefined && r.evalSeconds! > 0 && r.loadSeconds! >= 0));

  // the runner evaluates what `frugal eval ppl` evaluates with the same ctx and chunks
  const model = await loadModel(STORIES, { threads: 1 });
  try {
    const direct = await evaluatePerplexity(model, readFileSync(data, "utf8"), { ctx: CTX, chunks: CHUNKS });
    assert.equal(a!["tokens"], direct.tokens);
    assert.ok(Math.abs(a!["nll"]! - direct.nll) <= 1e-9);
  } finally {
    model.dispose();
  }

  const md = readFileSync(join(out, "results.md"), "utf8");
  const lines = md.split("\n").filter((l) => l.startsWith("|"));
  assert.equal(lines.length, 4, md);
  const cells = (l: string) => l.slice(1, -1).split("|").map((c) => c.trim());
  const header = cells(lines[0]!);
  assert.deepEqual(header.slice(0, 5), ["option set", "options", "ppl", "nll", "tokens"]);
  const row1 = cells(lines[2]!);
  const row2 = cells(lines[3]!);
  assert.equal(row1[0], "1 thread");
  assert.equal(row1[header.indexOf("Δ ppl")], "baseline");
  assert.equal(row2[0], "2 threads");
  assert.equal(Number(row2[2]), Number(a!["ppl"]!.toFixed(4)));
  assert.equal(Number(row2[header.indexOf("Δ ppl")]), 0);
  assert.match(row2[1]!, /futureOption=future†/);

  const svg = readFileSync(join(out, "plot.svg"), "utf8");
  assertWellFormedSvg(svg);
  const bars = [...svg.matchAll(/<rect class="bar"[^>]*data-group="([^"]*)"[^>]*data-value="([^"]*)"/g)];
  assert.deepEqual(bars.map((m) => m[1]), ["1 thread", "2 threads"]);
  assert.deepEqual(bars.map((m) => Number(m[2])), [a!["ppl"], b!["ppl"]]);

  for (const name of ["1 thread", "2 threads"]) assert.ok(progress.some((p) => p.includes(`${name}: ppl `)), progress.join(""));
});

test("a set that fails is recorded with its error and the others still run; the CLI exits non-zero", () => {
  const configFile = join(dir, "failing.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      model: STORIES,
      task: { kind: "lambada", data: join(dir, "tiny.jsonl"), limit: 2 },
      options: { threads: 1 },
      optionSets: [
        { name: "default", options: {} },
        { name: "no tokenizer", options: { tokenizer: "/no/such/tok.bin" } },
      ],
    }),
  );
  writeFileSync(join(dir, "tiny.jsonl"), ['{"text": "Tom had a red ball. He liked to play with his ball"}', '{"text": "The cat was hungry. It wanted to eat some food"}'].join("\n"));
  const out = join(dir, "failing");
  const r = spawnSync(process.execPath, [join(ROOT, "bin/frugal.js"), "eval", "matrix", "--config", configFile, "--out", out], { encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /\[1\/2\] default: accuracy/);
  assert.match(r.stderr, /\[2\/2\] no tokenizer: failed: .*\/no\/such\/tok\.bin/);
  const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as MatrixResults;
  assert.equal(results.mainMetric, "accuracy");
  assert.equal(results.rows[0]!.metrics!["examples"], 2);
  assert.equal(results.rows[1]!.metrics, undefined);
  assert.match(results.rows[1]!.error!, /\/no\/such\/tok\.bin/);
  assert.match(readFileSync(join(out, "results.md"), "utf8"), /\| no tokenizer \|.*\| failed: /);
  assertWellFormedSvg(readFileSync(join(out, "plot.svg"), "utf8"));
  assert.match(r.stdout, /\| option set \|/);
});

test("bad configs give clear errors naming the file and the field", async () => {
  const ok = { model: STORIES, task: { kind: "ppl", data: "x.txt" }, optionSets: [{ name: "a", options: {} }] };
  const cases: [unknown, RegExp][] = [
    [{ ...ok, task: { kind: "mmlu" } }, /cfg\.json: task\.kind "mmlu" is not a task; available: "ppl", "lambada"/],
    [{ task: ok.task, optionSets: ok.optionSets }, /cfg\.json: field "model" is missing/],
    [{ ...ok, model: "no/such/dir/model.bin" }, /no\/such\/dir\/model\.bin: no such file or folder/],
    [{ ...ok, task: undefined }, /cfg\.json: field "task" is missing/],
    [{ ...ok, task: { kind: "ppl" } }, /cfg\.json: task\.data is missing/],
    [{ ...ok, task: { kind: "ppl", data: "x", ctx: 1 } }, /task\.ctx must be an integer >= 2/],
    [{ ...ok, task: { kind: "lambada", chunks: 3 } }, /task\.chunks is not a field of a lambada task/],
    [{ ...ok, optionSets: [] }, /field "optionSets" must be a non-empty array/],
    [{ ...ok, optionSets: [{ name: "a" }, { name: "a" }] }, /optionSets\[1\]\.name "a" is used twice/],
    [{ ...ok, optionSets: [{ name: "a", options: { threads: "two" } }] }, /optionSets\[0\]\.options\.threads must be a positive integer, got "two"/],
    [{ ...ok, optionSets: [{ name: "a", options: { device: "tpu" } }] }, /optionSets\[0\]\.options\.device must be "cpu" or "webgpu"/],
    [{ ...ok, optionSets: [{ name: "a", threads: 2 }] }, /optionSets\[0\]: unknown field "threads" \(load options go inside "options"\)/],
    [{ ...ok, options: { contextLength: 0 } }, /options\.contextLength must be a positive integer/],
    [{ ...ok, modle: "x" }, /unknown field "modle"/],
    [[1, 2], /expected a JSON object/],
  ];
  for (const [json, message] of cases) {
    await assert.rejects(parseMatrixConfig(json, "/tmp/cfg.json"), message, JSON.stringify(json));
  }
  const notJson = join(dir, "broken.json");
  writeFileSync(notJson, "{ model: ");
  await assert.rejects(readMatrixConfig(notJson), /broken\.json: not valid JSON/);
});
