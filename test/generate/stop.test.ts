import { test } from "node:test";
import assert from "node:assert/strict";
import { StopMatcher } from "../../src/generate/stop.js";

test("a stop string split across pieces is never released and ends the stream", () => {
  const m = new StopMatcher(["\nUser:"]);
  const out = ["Hello", " there\nUs", "er: more"].map((p) => m.push(p));
  assert.deepEqual(out, ["Hello", " there", ""]);
  assert.equal(m.stopped, true);
  assert.equal(m.flush(), "");
});

test("text that only looked like a stop prefix is released once it diverges, and at the end", () => {
  const m = new StopMatcher(["END"]);
  assert.equal(m.push("the E"), "the ");
  assert.equal(m.push("ND"), "");
  assert.equal(m.stopped, true);
  const n = new StopMatcher(["END"]);
  assert.equal(n.push("EN"), "");
  assert.equal(n.push("D?"), "");
  const k = new StopMatcher(["END"]);
  assert.equal(k.push("EN"), "");
  assert.equal(k.push("X"), "ENX");
  assert.equal(k.push("E"), "");
  assert.equal(k.flush(), "E");
});

test("the earliest of several stop strings wins", () => {
  assert.equal(new StopMatcher(["b", "abc"]).push("xxabc"), "xx");
  assert.equal(new StopMatcher(["c", "ab"]).push("xxabc"), "xx");
});
