import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { ROOT, STORIES_EXPECTED } from "../paths.js";

const frugal = (...args: string[]) =>
  spawnSync(process.execPath, [join(ROOT, "bin/frugal.js"), ...args], { encoding: "utf8", timeout: 60_000 });

test("generate with no model and no prompt at temperature 0 prints llama2.c's greedy text, and only that, on stdout", () => {
  const r = frugal("generate", "--temperature", "0", "--max-tokens", "200", "--stats");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, readFileSync(STORIES_EXPECTED, "utf8") + "\n");
  assert.match(r.stderr, /generated 200 tokens/);
});

test("the same seed gives the same sampled text", () => {
  const a = frugal("generate", "--prompt", "Once upon a time", "--max-tokens", "30", "--seed", "42");
  const b = frugal("generate", "--prompt", "Once upon a time", "--max-tokens", "30", "--seed", "42");
  assert.equal(a.status, 0, a.stderr);
  assert.equal(a.stdout, b.stdout);
  assert.ok(a.stdout.trim().length > 0);
});

test("eval ppl --json prints one line with tokens, nll and ppl = exp(nll)", () => {
  const dir = mkdtempSync(join(tmpdir(), "frugal-cli-"));
  const data = join(dir, "text.txt");
  writeFileSync(data, readFileSync(STORIES_EXPECTED, "utf8"));
  const r = frugal("eval", "ppl", "--data", data, "--ctx", "64", "--json");
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 1);
  const result = JSON.parse(lines[0]!) as { tokens: number; nll: number; ppl: number };
  assert.ok(result.tokens > 0 && result.nll > 0);
  assert.ok(Math.abs(result.ppl - Math.exp(result.nll)) < 1e-9 * result.ppl);
});

test("bad arguments give a clear error and a non-zero exit", () => {
  const cases: [string[], RegExp][] = [
    [["generate", "--max-tokens", "many"], /--max-tokens needs an integer/],
    [["generate", "--device", "tpu"], /--device must be cpu or webgpu/],
    [["generate", "--model", "/no/such/model.bin"], /\/no\/such\/model\.bin/],
    [["generate", "--top-p", "2"], /topP must be in \[0, 1\]/],
    [["eval", "ppl"], /needs --data/],
    [["frobnicate"], /unknown command "frobnicate"/],
  ];
  for (const [args, message] of cases) {
    const r = frugal(...args);
    assert.notEqual(r.status, 0, args.join(" "));
    assert.match(r.stderr, message);
    assert.equal(r.stdout, "");
  }
});

test("info describes the default model", () => {
  const r = frugal("info");
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /parameters +260,032/);
  assert.match(r.stdout, /8 heads, 4 key\/value heads, head dim 8/);
});

test("chat reads messages from stdin and streams the same reply as model.chat", async () => {
  const { loadModel } = await import("../../src/load.js");
  const model = await loadModel();
  let expected = "";
  try {
    for await (const p of model.chat([{ role: "user", content: "Tell me a story" }], { temperature: 0, maxTokens: 24 })) expected += p.text;
  } finally {
    model.dispose();
  }
  const r = spawnSync(process.execPath, [join(ROOT, "bin/frugal.js"), "chat", "--temperature", "0", "--max-tokens", "24"], {
    input: "Tell me a story\n\n",
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(expected.length > 0);
  assert.equal(r.stdout, expected + "\n");
});
