/**
 * The GGUF reader and writer against each other and against @huggingface/gguf (an independent parser),
 * and the reader's refusals of malformed files.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { gguf as hfGguf } from "@huggingface/gguf";
import { FormatError } from "../../src/io/errors.js";
import { GgufType, parseGgufHeader, readGgufHeader, readGgufTensors } from "../../src/io/gguf.js";
import { encodeGguf, halfToInterleavedRows, meta, writeGguf, type GgufWriteTensor } from "../../src/io/gguf-writer.js";
import { interleavedToHalfRows } from "../../src/io/llama2c.js";
import { tempPath } from "./gguf-fixture.js";

const METADATA = {
  "general.architecture": meta.str("llama"),
  "test.u8": meta.u8(250),
  "test.i8": meta.i8(-100),
  "test.u16": meta.u16(65000),
  "test.i16": meta.i16(-32000),
  "test.u32": meta.u32(4000000000),
  "test.i32": meta.i32(-2000000000),
  "test.f32": meta.f32(0.1),
  "test.f64": meta.f64(0.1),
  "test.bool": meta.bool(true),
  "test.string": meta.str("héllo ▁wörld 🙂"),
  "test.u64.small": meta.u64(12345),
  "test.u64.big": meta.u64(2n ** 63n + 5n),
  "test.i64": meta.i64(-(2n ** 40n)),
  "test.strings": meta.strings(["a", "", "<0x0A>", "▁the"]),
  "test.f32s": meta.f32s([1.5, -2, 0.25]),
  "test.i32s": meta.i32s([1, -2, 3]),
  "test.empty": meta.array("uint8", []),
};

const EXPECTED_VALUES: Record<string, unknown> = {
  "general.architecture": "llama",
  "test.u8": 250, "test.i8": -100, "test.u16": 65000, "test.i16": -32000, "test.u32": 4000000000, "test.i32": -2000000000,
  "test.f32": Math.fround(0.1), "test.f64": 0.1, "test.bool": true, "test.string": "héllo ▁wörld 🙂",
  "test.u64.small": 12345, "test.u64.big": 2n ** 63n + 5n, "test.i64": -(2 ** 40),
  "test.strings": ["a", "", "<0x0A>", "▁the"], "test.f32s": [1.5, -2, 0.25], "test.i32s": [1, -2, 3], "test.empty": [],
};

/** Three tensors of different formats and ranks, with data that differs byte by byte. */
function tensors(): GgufWriteTensor[] {
  const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);
  return [
    { name: "a.weight", dtype: "f32", shape: [3, 5], data: bytes(60, 1) },
    { name: "b.weight", dtype: "q8_0", shape: [2, 64], data: bytes(2 * 2 * 34, 2) },
    { name: "c.bias", dtype: "f16", shape: [7], data: bytes(14, 3) },
    { name: "d.weight", dtype: "q4_0", shape: [2, 1, 32], data: bytes(2 * 18, 4) },
  ];
}

for (const version of [2, 3] as const) {
  for (const alignment of [32, 64]) {
    test(`v${version}, alignment ${alignment}: metadata and tensors round-trip, and @huggingface/gguf reads the same file`, async () => {
      const path = tempPath("rt.gguf");
      const ts = tensors();
      await writeGguf(path, METADATA, ts, { version, alignment });
      const h = await readGgufHeader(path);
      assert.equal(h.version, version);
      assert.equal(h.alignment, alignment);
      for (const [k, want] of Object.entries(EXPECTED_VALUES)) assert.deepEqual(h.metadata.get(k)?.value, want, k);
      assert.equal(h.metadata.get("test.strings")?.type, GgufType.ARRAY);
      assert.equal(h.metadata.get("test.strings")?.itemType, GgufType.STRING);
      assert.equal(h.metadata.get("test.u32")?.type, GgufType.UINT32);
      assert.equal(h.dataOffset % alignment, 0);
      assert.deepEqual(h.tensors.map((t) => t.name), ts.map((t) => t.name));
      assert.deepEqual(h.tensors.map((t) => t.dims), [[5, 3], [64, 2], [7], [32, 1, 2]]);
      assert.deepEqual(h.tensors.map((t) => t.ggmlType), [0, 8, 1, 2]);
      for (const t of h.tensors) assert.equal((t.offset - h.dataOffset) % alignment, 0, t.name);
      const got = new Map<string, Uint8Array>();
      await readGgufTensors(h, h.tensors, (info, data) => got.set(info.name, data));
      for (const t of ts) assert.deepEqual(got.get(t.name), t.data, t.name);

      const lib = await hfGguf(path, { allowLocalFile: true });
      assert.equal(Number(lib.tensorDataOffset), h.dataOffset);
      assert.deepEqual(lib.metadata["version"], version);
      for (const [k, want] of Object.entries(EXPECTED_VALUES)) {
        const v = lib.metadata[k as keyof typeof lib.metadata] as unknown;
        assert.deepEqual(typeof v === "bigint" && typeof want === "number" ? Number(v) : v, want, `library's ${k}`);
      }
      lib.tensorInfos.forEach((info, i) => {
        const mine = h.tensors[i]!;
        assert.equal(info.name, mine.name);
        assert.deepEqual(info.shape.map(Number), mine.dims);
        assert.equal(info.dtype as number, mine.ggmlType);
        assert.equal(Number(lib.tensorDataOffset + info.offset), mine.offset);
      });
    });
  }
}

test("encodeGguf and writeGguf produce the same bytes", async () => {
  const path = tempPath("same.gguf");
  await writeGguf(path, METADATA, tensors());
  const { readFile } = await import("node:fs/promises");
  assert.deepEqual(new Uint8Array(await readFile(path)), encodeGguf(METADATA, tensors()));
});

test("a header larger than the first read (a 400k-token vocabulary) is read whole", async () => {
  const tokens = Array.from({ length: 400_000 }, (_, i) => `tok${i}`);
  const path = tempPath("big.gguf");
  await writeGguf(path, { "tokenizer.ggml.tokens": meta.strings(tokens) }, tensors());
  const h = await readGgufHeader(path);
  const got = h.metadata.get("tokenizer.ggml.tokens")!.value as string[];
  assert.equal(got.length, tokens.length);
  assert.equal(got[399_999], "tok399999");
});

test("llama.cpp's q/k permutation, by hand: one head of 4 rows [r0 r1 r2 r3] is stored as [r0 r2 r1 r3]", () => {
  // convert_hf_to_gguf: w.reshape(n_head, 2, d/2, ...).swapaxes(1, 2): stored row 2i + j is HF row j * d/2 + i
  const oneHead = Uint8Array.from([0, 0, 1, 1, 2, 2, 3, 3]); // 4 rows of 2 bytes
  assert.deepEqual(Array.from(halfToInterleavedRows(oneHead, 1, 4, 2)), [0, 0, 2, 2, 1, 1, 3, 3]);
  // two heads of 4 rows, one byte each: each head permuted on its own
  assert.deepEqual(Array.from(halfToInterleavedRows(Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 2, 4, 1)), [0, 2, 1, 3, 4, 6, 5, 7]);
  // and it is the inverse of the loaders' un-permutation, for wider heads
  const rows = Uint8Array.from({ length: 3 * 8 * 5 }, (_, i) => i);
  assert.deepEqual(interleavedToHalfRows(halfToInterleavedRows(rows, 3, 8, 5), 3, 8, 5), rows);
});

// ---------------------------------------------------------------------------------------------
// malformed files

/** Byte position of the u64 data offset in the tensor info of `name`. */
function offsetFieldOf(bytes: Uint8Array, name: string): number {
  const h = parseGgufHeader(bytes);
  const info = h.tensors.find((t) => t.name === name)!;
  const needle = new TextEncoder().encode(name);
  for (let p = 0; p < h.dataOffset; p++) {
    if (needle.every((b, i) => bytes[p + i] === b)) return p + needle.length + 4 + 8 * info.dims.length + 4;
  }
  throw new Error(`no tensor info for ${name}`);
}

function refuses(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(() => parseGgufHeader(bytes, "bad.gguf"), (e: unknown) => {
    assert.ok(e instanceof FormatError, `not a FormatError: ${String(e)}`);
    assert.match(e.message, /^bad\.gguf: /);
    assert.match(e.message, pattern);
    return true;
  });
}

test("refuses a file that is not GGUF", () => {
  refuses(new TextEncoder().encode("PK\x03\x04 not a model at all"), /not a GGUF file: it starts with bytes 50 4b 03 04/);
  refuses(new Uint8Array(2), /too short/);
});

test("refuses versions other than 2 and 3, and big-endian files", () => {
  const good = encodeGguf(METADATA, tensors());
  for (const [version, pattern] of [[1, /version 1 is not supported/], [4, /version 4 is not supported/], [0x03000000, /big-endian/]] as const) {
    const bad = good.slice();
    new DataView(bad.buffer).setUint32(4, version, true);
    refuses(bad, pattern);
  }
});

test("refuses a file truncated anywhere: in the header, between header and data, in the data", () => {
  const good = encodeGguf(METADATA, tensors());
  const h = parseGgufHeader(good);
  const last = h.tensors[h.tensors.length - 1]!;
  // (a cut in the padding after the last tensor loses nothing, so it is not among these)
  const cuts = [6, 20, 100, 300, h.dataOffset - 40, h.dataOffset - 1, h.dataOffset + 10, last.offset + last.byteLength! - 1];
  for (const cut of cuts) {
    const pattern = cut < h.dataOffset - 20 ? /truncated: .* needs bytes \d+\.\.\d+, the file has \d+|cannot fit in \d+ bytes/ : /truncated|lies outside the file/;
    refuses(good.slice(0, cut), pattern);
  }
});

test("refuses tensor offsets that point outside the file or off the alignment", () => {
  const good = encodeGguf(METADATA, tensors());
  const lying = good.slice();
  new DataView(lying.buffer).setBigUint64(offsetFieldOf(lying, "b.weight"), 1n << 40n, true);
  refuses(lying, /tensor b\.weight: its data \(bytes \d+\.\.\d+\) lies outside the file of \d+ bytes/);
  const past = good.slice();
  new DataView(past.buffer).setBigUint64(offsetFieldOf(past, "c.bias"), BigInt(good.byteLength), true);
  refuses(past, /tensor c\.bias: its data .* lies outside the file/);
  const unaligned = good.slice();
  new DataView(unaligned.buffer).setBigUint64(offsetFieldOf(unaligned, "a.weight"), 8n, true);
  refuses(unaligned, /tensor a\.weight: data offset 8 is not a multiple of the alignment 32/);
});

test("refuses duplicate keys, unknown value types, bad alignment, too many dimensions", () => {
  const dup = encodeGguf({ "x.a": meta.u32(1), "x.b": meta.u32(2) }, []);
  // rename x.b to x.a in place
  const at = dup.findIndex((_, i) => dup[i] === 0x78 && dup[i + 1] === 0x2e && dup[i + 2] === 0x62);
  dup[at + 2] = 0x61;
  refuses(dup, /metadata x\.a appears twice/);

  const unknown = encodeGguf({ "x.a": meta.u32(1) }, []);
  new DataView(unknown.buffer).setUint32(24 + 8 + 3, 13, true);
  refuses(unknown, /metadata x\.a: unknown value type 13/);

  refuses(encodeGguf({ "general.alignment": meta.u32(48) }, []), /general\.alignment must be a power-of-two uint32, got 48/);

  const dims = encodeGguf({}, [{ name: "t", dtype: "f32", shape: [1], data: new Uint8Array(4) }]);
  new DataView(dims.buffer).setUint32(24 + 8 + 1, 5, true);
  refuses(dims, /tensor t has 5 dimensions/);
});

test("a missing file is an error naming it", async () => {
  await assert.rejects(readGgufHeader("/nonexistent/model.gguf"), /nonexistent\/model\.gguf/);
});

test("writeFileSync'd bytes of a v2 file parse with the same tensors as v3", () => {
  const v2 = encodeGguf(METADATA, tensors(), { version: 2 });
  const path = tempPath("v2.gguf");
  writeFileSync(path, v2);
  const a = parseGgufHeader(v2);
  const b = parseGgufHeader(encodeGguf(METADATA, tensors(), { version: 3 }));
  assert.equal(a.version, 2);
  assert.deepEqual(a.tensors, b.tensors);
});
