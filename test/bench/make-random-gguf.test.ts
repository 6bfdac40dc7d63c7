import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGgufHeader, type GgufHeader, type GgufTensorInfo } from "../../src/io/gguf.js";
import { loadModel } from "../../src/load.js";

const run = promisify(execFile);
const SHAPE = ["--fast", "--dim", "64", "--layers", "1", "--hidden", "128", "--heads", "2", "--kv-heads", "1", "--vocab", "300"];
const make = (out: string, type: string) => run(process.execPath, [join(process.cwd(), "dist/bench/make-random-gguf.js"), "--out", out, "--type", type, ...SHAPE]);

async function bytesOf(path: string, t: GgufTensorInfo, length: number): Promise<Buffer> {
  const f = await open(path, "r");
  try {
    const b = Buffer.alloc(length);
    await f.read(b, 0, length, t.offset);
    return b;
  } finally {
    await f.close();
  }
}

// llama.cpp's IQ4_NL blocks are q4_0's size (f16 scale + 16 bytes of nibbles), so the IQ4_NL file is the
// q4_0 file's bytes under type 20 (file type 25): llama.cpp reads it, Frugal refuses it by name
test("make-random-gguf --type iq4_nl writes q4_0's bytes under IQ4_NL's tensor and file types", async () => {
  const dir = await mkdtemp(join(tmpdir(), "frugal-iq4nl-"));
  try {
    const [q4, iq4] = [join(dir, "q4.gguf"), join(dir, "iq4.gguf")];
    await make(q4, "q4_0");
    await make(iq4, "iq4_nl");
    const [hq, hi]: GgufHeader[] = [await readGgufHeader(q4), await readGgufHeader(iq4)];
    assert.equal(hi.metadata.get("general.file_type")?.value, 25);
    assert.equal(hq.metadata.get("general.file_type")?.value, 2);
    assert.equal(hi.tensors.length, hq.tensors.length);
    let matrices = 0;
    for (const [i, tq] of hq.tensors.entries()) {
      const ti = hi.tensors[i]!;
      assert.equal(ti.name, tq.name);
      assert.deepEqual(ti.dims, tq.dims);
      assert.equal(ti.offset - hi.dataOffset, tq.offset - hq.dataOffset, ti.name);
      if (tq.ggmlType === 2) {
        matrices++;
        assert.equal(ti.ggmlType, 20, ti.name);
        const length = (tq.dims.reduce((a, b) => a * b, 1) / 32) * 18;
        assert.deepEqual(await bytesOf(iq4, ti, length), await bytesOf(q4, tq, length), ti.name);
      } else assert.equal(ti.ggmlType, tq.ggmlType, ti.name);
    }
    assert.ok(matrices >= 7, `${matrices} q4_0 matrices`);
    await assert.rejects(loadModel(iq4), /IQ4_NL \(ggml type 20\), which this engine cannot read/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
