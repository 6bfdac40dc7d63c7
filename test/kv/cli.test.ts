import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { ROOT, STORIES_EXPECTED } from "../paths.js";

const frugal = (...args: string[]) =>
  spawnSync(process.execPath, [join(ROOT, "bin/frugal.js"), ...args], { encoding: "utf8", timeout: 60_000 });

test("--kv and --kv-format: bad values fail before loading, with the reason", () => {
  const a = frugal("generate", "--kv", "lru:keep=0.5", "--max-tokens", "2");
  assert.notEqual(a.status, 0);
  assert.match(a.stderr, /unknown KV method "lru" \(known: dense, oracle, h2o/);
  const b = frugal("generate", "--kv", "h2o:keep=2", "--max-tokens", "2");
  assert.match(b.stderr, /h2o:keep=2: keep=2 must be in \(0, 1\]/);
  const c = frugal("generate", "--kv-format", "int3", "--max-tokens", "2");
  assert.match(c.stderr, /unknown KV format "int3"/);
  const d = frugal("generate", "--kv-format", "k=int4,v=int3", "--max-tokens", "2");
  assert.match(d.stderr, /--kv-format k=int4,v=int3: unknown KV format "int3" for v/);
});

test("eval ppl: keep = 1 scores exactly as dense through the decode path; a small budget and int8 KV change the score", () => {
  const dir = mkdtempSync(join(tmpdir(), "frugal-kv-"));
  const data = join(dir, "text.txt");
  writeFileSync(data, readFileSync(STORIES_EXPECTED, "utf8"));
  const ppl = (...extra: string[]) => {
    const r = frugal("eval", "ppl", "--data", data, "--ctx", "64", "--json", ...extra);
    assert.equal(r.status, 0, r.stderr);
    return (JSON.parse(r.stdout.trim()) as { nll: number }).nll;
  };
  const dense = ppl("--decode-from", "16");
  assert.equal(ppl("--kv", "h2o:keep=1", "--decode-from", "16"), dense);
  assert.notEqual(ppl("--kv", "streaming:keep=0.25", "--decode-from", "16"), dense);
  const int8 = ppl("--kv-format", "int8", "--decode-from", "16");
  assert.notEqual(int8, dense);
  // keys and values apart: both int8 is int8; int8 keys over f32 values is neither
  assert.equal(ppl("--kv-format", "k=int8,v=int8", "--decode-from", "16"), int8);
  const mixed = ppl("--kv-format", "k=int8,v=f32", "--decode-from", "16");
  assert.ok(mixed !== int8 && mixed !== dense, `${mixed} ${int8} ${dense}`);
});
