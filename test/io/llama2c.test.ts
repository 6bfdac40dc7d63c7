import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdtempSync, copyFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { parseLlama2cCheckpoint, Llama2cTokenizer, interleavedToHalfRows } from "../../src/io/llama2c.js";
import { loadModel } from "../../src/load.js";
import { STORIES, STORIES_TOKENIZER } from "../paths.js";

const checkpoint = new Uint8Array(readFileSync(STORIES));
const tokBytes = new Uint8Array(readFileSync(STORIES_TOKENIZER));

test("the stories260K header is read as its data card describes it", () => {
  const { config, tensors } = parseLlama2cCheckpoint(checkpoint, "stories260K.bin");
  assert.deepEqual(
    [config.hiddenSize, config.intermediateSize, config.numLayers, config.numHeads, config.numKvHeads, config.vocabSize, config.maxPositions],
    [64, 172, 5, 8, 4, 512, 512],
  );
  assert.equal(config.tieEmbeddings, true);
  assert.equal(tensors.get("model.layers.0.self_attn.k_proj.weight")?.shape.join(), "32,64");
});

test("q/k row permutation moves interleaved pair (2i, 2i+1) to (i, i + d/2) within each head", () => {
  const heads = 2, d = 4, rowBytes = 1;
  const rows = Uint8Array.from([0, 1, 2, 3, 10, 11, 12, 13]); // interleaved: pairs (0,1),(2,3) per head
  assert.deepEqual([...interleavedToHalfRows(rows, heads, d, rowBytes)], [0, 2, 1, 3, 10, 12, 11, 13]);
});

test("tokenizer: decode(encode(text)) is the identity, including bytes outside the vocabulary", () => {
  const tok = new Llama2cTokenizer(tokBytes, 512, "tok512.bin");
  for (const text of ["Once upon a time, there was a little girl.", "Zoë ate 3 π-shaped 🍪!", "a\nb  c"]) {
    const ids = tok.encode(text, { addSpecialTokens: true });
    assert.equal(ids[0], 1);
    assert.equal(tok.decode(ids), text);
  }
});

test("tokenizer: merges are applied (a common word is fewer tokens than its characters)", () => {
  const tok = new Llama2cTokenizer(tokBytes, 512, "tok512.bin");
  const ids = tok.encode("Once upon a time");
  assert.ok(ids.length < "Once upon a time".length / 2, `${ids.length} tokens`);
  assert.equal(tok.decode([1, ...ids]), "Once upon a time");
});

test("malformed llama2.c files give errors naming the file and problem", async () => {
  assert.throws(() => parseLlama2cCheckpoint(checkpoint.subarray(0, 20), "x.bin"), /x\.bin: .*too short/);
  assert.throws(() => parseLlama2cCheckpoint(checkpoint.subarray(0, checkpoint.length - 100), "x.bin"), /x\.bin: truncated: .*needs bytes/);
  const lying = checkpoint.slice();
  new DataView(lying.buffer).setInt32(0, 128, true); // dim 128: more tensor bytes than the file has
  assert.throws(() => parseLlama2cCheckpoint(lying, "x.bin"), /x\.bin: truncated/);
  const zero = checkpoint.slice();
  new DataView(zero.buffer).setInt32(8, 0, true);
  assert.throws(() => parseLlama2cCheckpoint(zero, "x.bin"), /n_layers = 0/);
  assert.throws(() => new Llama2cTokenizer(tokBytes, 600, "tok.bin"), /tok\.bin: .*does not match the model's vocabulary size/);
  assert.throws(() => new Llama2cTokenizer(tokBytes, 400, "tok.bin"), /tok\.bin: .*does not match the model's vocabulary size/);

  const dir = mkdtempSync(join(tmpdir(), "frugal-l2c-"));
  writeFileSync(join(dir, "model.bin"), checkpoint);
  await assert.rejects(loadModel(join(dir, "model.bin")), /no llama2\.c tokenizer beside it/);
  copyFileSync(STORIES_TOKENIZER, join(dir, "tokenizer.bin"));
  const model = await loadModel(join(dir, "model.bin"));
  model.dispose();
});
