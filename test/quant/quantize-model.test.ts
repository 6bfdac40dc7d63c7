/**
 * Quantizing whole models: `frugal quantize` writes a folder that loads back to logits identical (bit for bit)
 * to quantizing the same model at load (--weights); bad quantization metadata fails naming the tensor and the
 * field; AWQ's folding is an exact identity before quantization; the output-error clipping search never
 * does worse than round-to-nearest on the error it minimizes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../paths.js";
import { loadModel, readSource } from "../../src/load.js";
import { main } from "../../src/cli/main.js";
import type { Model } from "../../src/model/model.js";
import { parseSafetensorsHeader, readSafetensorsHeader } from "../../src/io/safetensors.js";
import { createCpuBackend } from "../../src/backend/cpu/cpu-backend.js";
import { assembleModel } from "../../src/model/assemble.js";
import { applyAwq } from "../../src/quant/awq.js";
import { captureCalibration, quantizeWithOutputClip, type LayerInputs } from "../../src/quant/calibrate.js";
import { quantFormat } from "../../src/quant/formats.js";

const TINY = join(ROOT, "test/fixtures/tiny/llama");
const TOKENS = Int32Array.from([1, 15, 27, 3, 88, 41, 9, 100, 7, 64]);

async function logits(model: Model): Promise<Float32Array> {
  try {
    return await model.backend.read(model.network.forward(TOKENS, 0, model.network.newCache(32), true));
  } finally {
    model.dispose();
  }
}

for (const format of ["razer", "nvfp4-razer", "int8"]) {
  test(`${format}: frugal quantize -> load gives the logits of quantizing at load`, async () => {
    const out = await mkdtemp(join(tmpdir(), "frugal-quant-"));
    try {
      const code = await main(["quantize", "--model", TINY, "--format", format, "--out", out, "--no-clip"]);
      assert.equal(code, 0);
      const fromFile = await logits(await loadModel(out, { threads: 1 }));
      const atLoad = await logits(await loadModel(TINY, { threads: 1, weights: format }));
      const dense = await logits(await loadModel(TINY, { threads: 1 }));
      assert.deepEqual(fromFile, atLoad);
      assert.notDeepEqual(atLoad, dense, "quantization changed the model");
      const { metadata } = await readSafetensorsHeader(join(out, "model.safetensors"));
      assert.deepEqual(JSON.parse(metadata["frugal.quant.model.layers.0.self_attn.q_proj.weight"]!), { format, shape: [64, 64] });
      assert.equal(JSON.parse(metadata["frugal.quantization"]!).format, format);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
}

/** A header with one U8 tensor of `bytes` bytes and the given metadata. */
function header(bytes: number, metadata: Record<string, unknown>): () => unknown {
  const json = new TextEncoder().encode(JSON.stringify({ w: { dtype: "U8", shape: [bytes], data_offsets: [0, bytes] }, __metadata__: metadata }));
  return () => parseSafetensorsHeader(json, json.byteLength, 8 + json.byteLength + bytes, "x.safetensors");
}

test("bad quantization metadata fails naming the tensor and the field", () => {
  const bytes = quantFormat("razer").layout(4, 128).codeBytes + quantFormat("razer").layout(4, 128).scaleBytes + 4;
  const ok = header(bytes, { "frugal.quant.w": JSON.stringify({ format: "razer", shape: [4, 128] }) });
  assert.deepEqual((ok() as { entries: { dtype: string; shape: number[] }[] }).entries.map((e) => [e.dtype, e.shape]), [["razer", [4, 128]]]);
  assert.throws(header(bytes, {}), /tensor w is U8 but __metadata__ has no "frugal.quant.w"/);
  assert.throws(header(bytes, { "frugal.quant.w": "{nope" }), /tensor w: __metadata__\["frugal.quant.w"\] is not JSON/);
  assert.throws(header(bytes, { "frugal.quant.w": JSON.stringify({ format: "bogus", shape: [4, 128] }) }), /tensor w: quantization field "format" is "bogus"/);
  assert.throws(header(bytes, { "frugal.quant.w": JSON.stringify({ format: "razer", shape: [4, -1] }) }), /tensor w: quantization field "shape"/);
  assert.throws(header(bytes, { "frugal.quant.w": JSON.stringify({ format: "razer", shape: [5, 128] }) }), /tensor w: razer \[5, 128\] needs \d+ bytes, the file holds \d+/);
});

test("an unknown --weights name lists the known formats", async () => {
  await assert.rejects(loadModel(TINY, { threads: 1, weights: "int3" }), /unknown quantization format "int3" \(known: int8, int4-asym, fp4, nf4, razer, nvfp4, nvfp4-razer\)/);
});

test("AWQ scaling folded into the norms and up/v rows leaves the unquantized model's outputs unchanged", async () => {
  const source = await readSource(TINY);
  const text = await readFile(join(ROOT, "test/fixtures/tiny/eval.txt"), "utf8");
  const calib = await captureCalibration(source, text, { tokens: 64, threads: 1 });
  const scaled = { ...source, tensors: new Map(source.tensors) };
  const alphas = applyAwq(scaled.tensors, source.config, quantFormat("fp4"), calib);
  assert.ok([...alphas.values()].some((a) => a > 0), "the search picked a non-trivial scale somewhere");
  const a = await logits(assembleModel({ ...source, tensors: new Map(source.tensors) }, await createCpuBackend({ threads: 1 })));
  const b = await logits(assembleModel(scaled, await createCpuBackend({ threads: 1 })));
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  // f32 rounding of the rescaled weights, norms and activations: relative 1e-6 each, logits O(10)
  assert.ok(worst < 1e-3, `largest logit change ${worst}`);
});

test("the output-error clipping search is never worse than round-to-nearest on that error", () => {
  let s = 12345;
  const u = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const g = () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  const rows = 24, cols = 200, tokens = 40;
  const w = Float32Array.from({ length: rows * cols }, () => g() * (u() < 0.03 ? 8 : 1));
  // activations with a few loud channels, as real ones have
  const x: LayerInputs = { x: Float32Array.from({ length: tokens * cols }, (_, i) => g() * (i % cols < 5 ? 20 : 1)), tokens, cols };
  const outputError = (q: Float32Array) => {
    let e = 0;
    for (let t = 0; t < tokens; t++) for (let r = 0; r < rows; r++) {
      let y = 0;
      for (let k = 0; k < cols; k++) y += x.x[t * cols + k]! * (q[r * cols + k]! - w[r * cols + k]!);
      e += y * y;
    }
    return e;
  };
  for (const name of ["fp4", "int4-asym", "razer", "nf4"]) {
    const f = quantFormat(name);
    const rtn = outputError(f.unpack(f.pack(w, rows, cols)));
    const clipped = outputError(f.unpack(quantizeWithOutputClip(f, w, rows, cols, x)));
    assert.ok(clipped <= rtn * (1 + 1e-9), `${name}: clipped ${clipped} > RTN ${rtn}`);
    assert.ok(clipped < rtn, `${name}: the search found no better clip on outlier-heavy data`);
  }
});
