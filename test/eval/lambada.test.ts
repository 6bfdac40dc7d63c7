import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { loadModel } from "../../src/load.js";
import { evaluateLambada, parseLambada, readLambada, splitLastWord } from "../../src/eval/lambada.js";
import { FormatError } from "../../src/io/errors.js";
import type { Model } from "../../src/model/model.js";
import { ROOT } from "../paths.js";

const PASSAGES = [
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park",
  "Lily saw a big dog. The dog was very friendly. Lily said hello to the dog",
  "Tom had a red ball. He liked to play with his ball",
  "One day, a little boy named Tim went to the park with his mom",
  "The cat was hungry. It wanted to eat some food",
  "Sue and her mom went to the store. They bought some apples",
  "Ben was sad because he lost his toy. His friend helped him find the toy",
  "The sun was shining and the birds were singing. It was a beautiful day",
];
const JSONL = PASSAGES.map((text) => JSON.stringify({ text })).join("\n") + "\n";

/**
 * The protocol computed independently: tokens of context and context + " " + word with BOS (stories260K's
 * tokenizer adds one), the target as the suffix, then one token at a time through the KV cache; argmax and
 * log-softmax in f64 here. `capacity` keeps the last tokens of the input, as the definition says.
 */
async function reference(model: Model, passages: readonly string[], capacity = model.network.contextLength) {
  let correct = 0;
  let nll = 0;
  for (const text of passages) {
    const at = text.lastIndexOf(" ");
    const context = model.tokenizer.encode(text.slice(0, at), { addSpecialTokens: true });
    const whole = model.tokenizer.encode(text, { addSpecialTokens: true });
    assert.equal(context[0], 1, "stories260K's tokenizer puts BOS (1) first");
    const target = whole.slice(context.length);
    const input = [...context, ...target.slice(0, -1)].slice(-capacity);
    const cache = model.network.newCache(capacity);
    const rows: Float32Array[] = [];
    for (const [pos, id] of input.entries()) {
      const logits = await model.backend.read(model.network.forward(Int32Array.of(id), pos, cache));
      rows.push(Float32Array.from(logits));
    }
    let hit = true;
    for (const [t, want] of target.entries()) {
      const row = rows[input.length - target.length + t]!;
      const max = Math.max(...row);
      if (row.indexOf(max) !== want) hit = false;
      nll += max + Math.log(row.reduce((s, l) => s + Math.exp(l - max), 0)) - row[want]!;
    }
    if (hit) correct++;
  }
  return { correct, nll: nll / passages.length };
}

let model: Model;
before(async () => {
  model = await loadModel();
});
after(() => model?.dispose());

test("accuracy and target NLL equal a token-by-token teacher-forced computation", async () => {
  const examples = parseLambada(JSONL, "tiny.jsonl");
  const want = await reference(model, PASSAGES);
  // the comparison means something only if the model gets some right and some wrong
  assert.ok(want.correct > 0 && want.correct < PASSAGES.length, `reference correct ${want.correct}`);
  const got = await evaluateLambada(model, examples);
  assert.equal(got.examples, PASSAGES.length);
  assert.equal(got.correct, want.correct);
  assert.equal(got.accuracy, want.correct / PASSAGES.length);
  assert.ok(Math.abs(got.nll - want.nll) < 1e-5, `${got.nll} vs ${want.nll}`);
  assert.ok(Math.abs(got.ppl - Math.exp(got.nll)) < 1e-9 * got.ppl);
});

test("--limit takes the first examples; passages longer than the context keep their last tokens", async () => {
  const examples = parseLambada(JSONL, "tiny.jsonl");
  const first3 = await evaluateLambada(model, examples, { limit: 3 });
  const want3 = await reference(model, PASSAGES.slice(0, 3));
  assert.equal(first3.examples, 3);
  assert.equal(first3.correct, want3.correct);
  assert.ok(Math.abs(first3.nll - want3.nll) < 1e-5);

  const short = await loadModel(undefined, { contextLength: 12 });
  try {
    // every passage here is longer than 12 tokens, so each one is cut on the left
    assert.ok(PASSAGES.every((p) => short.tokenizer.encode(p, { addSpecialTokens: true }).length > 13));
    const got = await evaluateLambada(short, examples);
    const want = await reference(short, PASSAGES, 12);
    assert.equal(got.correct, want.correct);
    assert.ok(Math.abs(got.nll - want.nll) < 1e-5, `${got.nll} vs ${want.nll}`);
  } finally {
    short.dispose();
  }
});

test("the split is at the last space, as lm-eval's text.rsplit(' ', 1); context + ' ' + word is the text", () => {
  assert.deepEqual(splitLastWord("a b c"), { context: "a b", word: "c" });
  assert.deepEqual(splitLastWord("kind of\n\nPower"), { context: "kind", word: "of\n\nPower" });
  assert.equal(splitLastWord("alone"), undefined);
  const ex = parseLambada(JSONL, "x")[5]!;
  assert.equal(`${ex.context} ${ex.word}`, PASSAGES[5]);
});

test("bad lines give errors naming the file and line", async () => {
  const cases: [string, RegExp][] = [
    ['{"text": "a b"}\n{"text": "nospace"}\n', /bad\.jsonl: line 2: the text has no space/],
    ['{"text": "a b"}\n\n{"text": "a b"\n', /bad\.jsonl: line 3: not valid JSON/],
    ['{"txt": "a b"}\n', /bad\.jsonl: line 1: expected an object with a string field "text"/],
    ['{"text": "ends in space "}\n', /bad\.jsonl: line 1: the text ends in a space/],
    ["\n\n", /bad\.jsonl: no examples/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseLambada(text, "bad.jsonl"), (e: unknown) => e instanceof FormatError && message.test(e.message));
  }
  await assert.rejects(readLambada("/no/such/lambada.jsonl"), /\/no\/such\/lambada\.jsonl: no such file\. Pass --data FILE with the LAMBADA test set/);
  await assert.rejects(evaluateLambada(model, parseLambada(JSONL, "x"), { limit: 0 }), /limit must be a positive integer/);
});

test("frugal eval lambada --json prints one line with examples, accuracy, nll and ppl of the library's result", async () => {
  const dir = mkdtempSync(join(tmpdir(), "frugal-lambada-"));
  const data = join(dir, "tiny.jsonl");
  writeFileSync(data, JSONL);
  const r = spawnSync(process.execPath, [join(ROOT, "bin/frugal.js"), "eval", "lambada", "--data", data, "--limit", "5", "--json"], {
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 1);
  const printed = JSON.parse(lines[0]!) as Record<string, number>;
  assert.deepEqual(Object.keys(printed), ["examples", "accuracy", "nll", "ppl"]);
  const want = await evaluateLambada(model, parseLambada(JSONL, data), { limit: 5 });
  assert.equal(printed["examples"], 5);
  assert.equal(printed["accuracy"], want.accuracy);
  assert.ok(Math.abs(printed["nll"]! - want.nll) < 1e-9);
  assert.match(r.stderr, /example 5\/5/);

  const bad = spawnSync(process.execPath, [join(ROOT, "bin/frugal.js"), "eval", "lambada", "--data", join(dir, "missing.jsonl")], { encoding: "utf8", timeout: 60_000 });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /missing\.jsonl: no such file\. Pass --data FILE/);
  assert.equal(bad.stdout, "");
});
