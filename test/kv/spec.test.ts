import { test } from "node:test";
import assert from "node:assert/strict";
import { parseKvSpec, kvStoreFactory } from "../../src/kv/spec.js";
import { checkKvFormat } from "../../src/kv/format.js";
import { keepBudget } from "../../src/kv/selection.js";

test("KV specs parse to canonical form with defaults", () => {
  assert.equal(parseKvSpec("dense").canonical, "dense");
  assert.equal(parseKvSpec("h2o:keep=0.5").canonical, "h2o:keep=0.5");
  assert.equal(parseKvSpec("quest:keep=0.25").canonical, "quest:keep=0.25,page=16");
  assert.equal(parseKvSpec("quest:page=4,keep=.5").canonical, "quest:keep=0.5,page=4");
  assert.equal(parseKvSpec("streaming:sink=4,window=64").canonical, "streaming:keep=0,sink=4,window=64,dense0=1,pyramid=0");
});

test("bad KV specs fail with errors naming the method and parameter", () => {
  const bad: [string, RegExp][] = [
    ["", /empty spec/],
    ["lru:keep=0.5", /unknown KV method "lru" \(known: dense,/],
    ["h2o", /h2o needs keep/],
    ["h2o:", /nothing after "h2o:"/],
    ["h2o:keep", /malformed parameter "keep"/],
    ["h2o:keep=", /malformed parameter/],
    ["h2o:keep=0.5,keep=0.6", /keep given twice/],
    ["h2o:keep=half", /keep=half is not a number/],
    ["h2o:keep=0", /must be in \(0, 1\]/],
    ["h2o:keep=1.5", /must be in \(0, 1\]/],
    ["h2o:budget=3", /unknown parameter "budget" for h2o \(allowed: keep\)/],
    ["dense:keep=1", /unknown parameter "keep" for dense \(it takes none\)/],
    ["quest:keep=0.5,page=2.5", /page=2.5 must be an integer >= 1/],
    ["quest:keep=0.5,page=0x10", /not a number/],
    ["streaming:keep=0.5,pyramid=-1.5", /pyramid=-1.5 must be in \[-1, 1\]/],
  ];
  for (const [spec, re] of bad) assert.throws(() => parseKvSpec(spec), re, spec);
  assert.throws(() => kvStoreFactory("streaming:sink=4"), /exactly one of keep=F or window=W/);
  assert.throws(() => kvStoreFactory("streaming:keep=0.5,window=8"), /exactly one of/);
  assert.throws(() => checkKvFormat("int3"), /unknown KV format "int3" \(known: f32, int8/);
});

test("the budget rule is the f32 formula, capped at n", () => {
  assert.equal(keepBudget(10, 0.5), 5);
  assert.equal(keepBudget(11, 0.5), 6);
  assert.equal(keepBudget(7, 1), 7);
  // the f32 product exceeds exact arithmetic for some n at keep 0.6 (TokenButler spec §3.2)
  let above = 0;
  for (let n = 1; n <= 2048; n++) if (keepBudget(n, 0.6) > Math.ceil((n * 6) / 10)) above++;
  assert.ok(above > 0);
});
