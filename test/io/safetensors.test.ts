import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors, readSafetensorsFolder, readSafetensorsIndex } from "../../src/io/safetensors.js";
import { FormatError } from "../../src/io/errors.js";
import { decodeRow } from "../../src/backend/cpu/reference.js";
import { assemble, randomTensor, rng, safetensorsBytes, tempDir, type StTensor } from "../fixtures/hf/tiny-hf.js";

const dir = tempDir();
let fileNo = 0;
function file(bytes: Uint8Array): string {
  const path = join(dir, `t${fileNo++}.safetensors`);
  writeFileSync(path, bytes);
  return path;
}

/** Rejects with a FormatError whose message contains every one of `parts`. */
async function rejects(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${e.name}: ${e.message}`);
    for (const part of parts) {
      if (typeof part === "string") assert.ok(e.message.includes(part), `"${e.message}" lacks "${part}"`);
      else assert.match(e.message, part);
    }
    return true;
  });
}

const u8 = (...b: number[]) => Uint8Array.from(b);
const f32s = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

test("round trip: every tensor comes back with its name, dtype, shape and exact bytes", async () => {
  const next = rng(7);
  const written: StTensor[] = [
    randomTensor("model.embed_tokens.weight", "F32", [5, 3], next).st,
    randomTensor("model.layers.0.self_attn.q_proj.weight", "BF16", [4, 3], next).st,
    randomTensor("model.norm.weight", "F16", [3], next).st,
    randomTensor("scalar", "F32", [], next).st,
    { name: "empty", dtype: "F32", shape: [0, 4], data: new Uint8Array(0) },
  ];
  const path = file(safetensorsBytes(written, { format: "pt" }));
  const read = await readSafetensors(path);
  assert.deepEqual([...read.keys()].sort(), written.map((t) => t.name).sort());
  const dtypes: Record<string, string> = { F32: "f32", F16: "f16", BF16: "bf16" };
  for (const t of written) {
    const r = read.get(t.name)!;
    assert.equal(r.name, t.name);
    assert.equal(r.dtype, dtypes[t.dtype]);
    assert.deepEqual(r.shape, t.shape);
    assert.deepEqual(r.data, t.data);
  }
});

test("f16 and bf16 bytes decode to the values their bit patterns mean (little-endian)", async () => {
  // f16: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), 0.333251953125 (0x3555), -0
  const f16bits = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555, 0x8000];
  const f16want = [1, -2, 65504, 2 ** -24, 0.333251953125, -0];
  // bf16: 1, -3.140625 (0xC049), 2^-126 (0x0080), largest finite 0x7F7F
  const bf16bits = [0x3f80, 0xc049, 0x0080, 0x7f7f];
  const bf16want = [1, -3.140625, 2 ** -126, (2 - 2 ** -7) * 2 ** 127];
  const le = (bits: number[]) => Uint8Array.from(bits.flatMap((b) => [b & 0xff, b >> 8]));
  const path = file(
    safetensorsBytes([
      { name: "h", dtype: "F16", shape: [6], data: le(f16bits) },
      { name: "b", dtype: "BF16", shape: [2, 2], data: le(bf16bits) },
    ]),
  );
  const read = await readSafetensors(path);
  const decode = (name: string, n: number) => {
    const t = read.get(name)!;
    const out = new Float32Array(n);
    decodeRow(t.dtype, t.data, 0, n, out);
    return [...out];
  };
  assert.deepEqual(decode("h", 6), f16want.map(Math.fround));
  assert.ok(Object.is(decode("h", 6)[5], -0));
  assert.deepEqual(decode("b", 4), bf16want.map(Math.fround));
});

test("tensors stored out of name order and a padded header are read at their own offsets", async () => {
  const a = f32s(1, 2), b = f32s(3, 4, 5);
  // b is first in the data region although a is first in the header
  const header = { a: { dtype: "F32", shape: [2], data_offsets: [12, 20] }, b: { dtype: "F32", shape: [3], data_offsets: [0, 12] } };
  const read = await readSafetensors(file(assemble(header, [b, a])));
  assert.deepEqual(read.get("a")!.data, a);
  assert.deepEqual(read.get("b")!.data, b);
});

test("truncated files are refused with a message saying so", async () => {
  const whole = safetensorsBytes([{ name: "w", dtype: "F32", shape: [4], data: f32s(1, 2, 3, 4) }]);
  const headerEnd = 8 + Number(new DataView(whole.buffer).getBigUint64(0, true));
  await rejects(readSafetensors(file(whole.slice(0, 5))), "too short", "truncated");
  await rejects(readSafetensors(file(whole.slice(0, headerEnd - 3))), "header", "truncated");
  await rejects(readSafetensors(file(whole.slice(0, whole.length - 1))), "tensor w", "truncated");
});

test("headers whose offsets lie are refused, naming the tensors", async () => {
  const data = f32s(1, 2, 3, 4);
  const t = (begin: number, end: number, shape = [2]) => ({ dtype: "F32", shape, data_offsets: [begin, end] });
  await rejects(readSafetensors(file(assemble({ a: t(0, 8), b: t(4, 12) }, [data]))), "a", "b", "overlap");
  await rejects(readSafetensors(file(assemble({ a: t(0, 8), b: t(8, 16), c: t(16, 24) }, [data]))), "tensor c", "truncated");
  await rejects(readSafetensors(file(assemble({ a: t(0, 12) }, [data]))), "tensor a", "needs 8 bytes", "span 12");
  await rejects(readSafetensors(file(assemble({ a: t(8, 0) }, [data]))), "tensor a", "end before they begin");
  await rejects(readSafetensors(file(assemble({ a: t(8, 16) }, [data]))), "[0, 8)", "before tensor a");
  await rejects(readSafetensors(file(assemble({ a: t(0, 8) }, [data]))), "16 bytes", "end at byte 8");
  await rejects(readSafetensors(file(assemble({ a: { dtype: "F32", shape: [2], data_offsets: [0] } }, [data]))), "tensor a", "data_offsets");
  await rejects(readSafetensors(file(assemble({ a: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, [data]))), "tensor a", "shape");
});

test("unsupported dtypes are refused naming tensor and dtype", async () => {
  await rejects(readSafetensors(file(safetensorsBytes([{ name: "q.weight", dtype: "I8", shape: [4], data: u8(1, 2, 3, 4) }]))), "q.weight", "I8");
  await rejects(readSafetensors(file(safetensorsBytes([{ name: "x", dtype: "F64", shape: [1], data: new Uint8Array(8) }]))), "tensor x", "F64");
});

test("a header that is not JSON, or not an object, is refused", async () => {
  const raw = (text: string) => {
    const head = new TextEncoder().encode(text);
    const out = new Uint8Array(8 + head.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
    out.set(head, 8);
    return out;
  };
  await rejects(readSafetensors(file(raw("{not json"))), "not valid JSON");
  await rejects(readSafetensors(file(raw("[1, 2]"))), "not a JSON object");
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
  await rejects(readSafetensors(file(huge)), "header length");
});

test("sharded checkpoints: the index assembles tensors from every shard", async () => {
  const shardDir = tempDir();
  const next = rng(3);
  const a = randomTensor("a", "F32", [2, 2], next).st;
  const b = randomTensor("b", "BF16", [3], next).st;
  const c = randomTensor("c", "F16", [1, 4], next).st;
  writeFileSync(join(shardDir, "model-00001-of-00002.safetensors"), safetensorsBytes([a, b]));
  writeFileSync(join(shardDir, "model-00002-of-00002.safetensors"), safetensorsBytes([c]));
  const index = { metadata: {}, weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00001-of-00002.safetensors", c: "model-00002-of-00002.safetensors" } };
  writeFileSync(join(shardDir, "model.safetensors.index.json"), JSON.stringify(index));
  const read = await readSafetensorsFolder(shardDir);
  assert.deepEqual([...read.keys()].sort(), ["a", "b", "c"]);
  for (const t of [a, b, c]) assert.deepEqual(read.get(t.name)!.data, t.data);
});

test("a shard index naming a missing file, or misplacing a tensor, is refused", async () => {
  const shardDir = tempDir();
  const a = randomTensor("a", "F32", [2], rng(1)).st;
  writeFileSync(join(shardDir, "one.safetensors"), safetensorsBytes([a]));
  const indexPath = join(shardDir, "model.safetensors.index.json");
  writeFileSync(indexPath, JSON.stringify({ weight_map: { a: "one.safetensors", b: "two.safetensors" } }));
  await rejects(readSafetensorsIndex(indexPath), "two.safetensors", "missing");
  writeFileSync(indexPath, JSON.stringify({ weight_map: { a: "one.safetensors", b: "one.safetensors" } }));
  await rejects(readSafetensorsIndex(indexPath), "tensor b", "one.safetensors");
  writeFileSync(indexPath, JSON.stringify({ weight_map: { a: "../one.safetensors" } }));
  await rejects(readSafetensorsIndex(indexPath), "not a file name");
  writeFileSync(indexPath, "{");
  await rejects(readSafetensorsIndex(indexPath), "shard index");
});

test("a folder without weights is refused naming what was looked for", async () => {
  await rejects(readSafetensorsFolder(tempDir()), "model.safetensors");
});
