/**
 * End to end: models loaded from GGUF files compute what llama.cpp's graph computes from the same file
 * (a naive float64 forward pass over the file's contents, interleaved RoPE on stored q/k for llama),
 * and exactly what the same weights give through another source (a llama2.c checkpoint in memory, or
 * an f32 file of the f16-rounded weights).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { loadModel, readSource } from "../../src/load.js";
import { CpuBackend, createCpuBackend } from "../../src/backend/cpu/cpu-backend.js";
import { LlamaModel } from "../../src/model/llama.js";
import type { ModelConfig } from "../../src/model/config.js";
import type { TensorMap } from "../../src/tensor/raw.js";
import { parseLlama2cCheckpoint } from "../../src/io/llama2c.js";
import { halfToInterleavedRows } from "../../src/io/gguf-writer.js";
import { f16ToF32, f32ToF16 } from "../../src/tensor/half.js";
import { naiveGgufLogits, randomHfTensors, tempPath, tinyConfig, tinyGguf } from "./gguf-fixture.js";

const TOKENS = [1, 57, 300 - 1, 4, 120, 33, 260, 2, 9];

function save(bytes: Uint8Array): string {
  const path = tempPath("m.gguf");
  writeFileSync(path, bytes);
  return path;
}

/** All positions' logits of `tokens` through the reference CPU backend (deterministic summation order). */
async function logitsOf(config: ModelConfig, tensors: TensorMap, tokens: number[]): Promise<Float32Array> {
  const backend = new CpuBackend();
  try {
    const net = LlamaModel.create(config, tensors, backend, "test");
    return await backend.read(net.forward(Int32Array.from(tokens), 0, net.newCache(tokens.length), true));
  } finally {
    backend.dispose();
  }
}

/**
 * f32 activations: the kernels compute what the naive f64 pass computes, to f32 rounding. int8
 * activations (the default for q8_0/q4_0 weights, as in llama.cpp) quantize each 32-value block of x
 * to int8 first: an error of at most half a step (amax/254) per activation, compounded over the layers;
 * on these unit-scale random models (logits of a few units) it stays near 0.065, so the bound is 0.1
 * (real llama.cpp, which does the same, differed from the f64 pass by 0.03 on a similar model). The
 * kernels' exactness for that path is tested in test/backend/cpu against a reference that quantizes x
 * the same way.
 */
const BOUNDS = { f32: 2e-4, int8: 0.1 } as const;

for (const arch of ["llama", "mistral", "qwen2", "qwen3"] as const) {
  for (const dtype of ["f32", "q8_0"] as const) {
    for (const activations of dtype === "f32" ? (["f32"] as const) : (["f32", "int8"] as const)) {
      test(`${arch} ${dtype} (${activations} activations): loadModel's logits match llama.cpp's computation on the file`, async () => {
        const config = tinyConfig(arch);
        const path = save(tinyGguf(config, randomHfTensors(config, 5), dtype));
        const want = naiveGgufLogits(path, TOKENS);
        const model = await loadModel(path, { backend: await createCpuBackend({ activations }) });
        try {
          const out = model.network.forward(Int32Array.from(TOKENS), 0, model.network.newCache(TOKENS.length), true);
          const got = await model.backend.read(out);
          let worst = 0;
          want.forEach((row, p) => row.forEach((w, v) => (worst = Math.max(worst, Math.abs(got[p * config.vocabSize + v]! - w)))));
          assert.ok(worst < BOUNDS[activations], `largest logit difference ${worst}`);
          if (activations === "int8") assert.ok(worst > 0, "int8 activations must differ from the f32 computation, or the path was not taken");
        } finally {
          model.dispose();
        }
      });
    }
  }
}

test("a GGUF F16 file gives exactly the logits of an F32 file of the f16-rounded weights", async () => {
  const config = tinyConfig("llama");
  const tensors = randomHfTensors(config, 6);
  const rounded = tensors.map((t) => ({ ...t, values: t.shape.length === 1 ? t.values : Float32Array.from(t.values, (v) => f16ToF32(f32ToF16(v))) }));
  const f16 = await readSource(save(tinyGguf(config, tensors, "f16")));
  const f32 = await readSource(save(tinyGguf(config, rounded, "f32")));
  assert.equal(f16.tensors.get("model.layers.0.self_attn.q_proj.weight")!.dtype, "f16");
  assert.deepEqual(f16.config, f32.config);
  assert.deepEqual(await logitsOf(f16.config, f16.tensors, TOKENS), await logitsOf(f32.config, f32.tensors, TOKENS));
});

/** The same weights as a llama2.c checkpoint (q/k interleaved, run.c's tensor order), built here from the format description. */
function llama2cBytes(c: ModelConfig, tensors: ReturnType<typeof randomHfTensors>): Uint8Array {
  const get = (n: string) => tensors.find((t) => t.name === n)!.values;
  const layers = (leaf: string, permuteHeads?: number) =>
    Array.from({ length: c.numLayers }, (_, l) => {
      const v = get(`model.layers.${l}.${leaf}`);
      if (!permuteHeads) return v;
      return new Float32Array(halfToInterleavedRows(new Uint8Array(v.slice().buffer), permuteHeads, c.headDim, c.hiddenSize * 4).buffer);
    });
  const ints = new Int32Array([c.hiddenSize, c.intermediateSize, c.numLayers, c.numHeads, c.numKvHeads, c.tieEmbeddings ? c.vocabSize : -c.vocabSize, c.maxPositions]);
  const parts: Float32Array[] = [
    get("model.embed_tokens.weight"),
    ...layers("input_layernorm.weight"),
    ...layers("self_attn.q_proj.weight", c.numHeads),
    ...layers("self_attn.k_proj.weight", c.numKvHeads),
    ...layers("self_attn.v_proj.weight"),
    ...layers("self_attn.o_proj.weight"),
    ...layers("post_attention_layernorm.weight"),
    ...layers("mlp.gate_proj.weight"),
    ...layers("mlp.down_proj.weight"),
    ...layers("mlp.up_proj.weight"),
    get("model.norm.weight"),
    new Float32Array((c.maxPositions * c.headDim) / 2),
    new Float32Array((c.maxPositions * c.headDim) / 2),
    ...(c.tieEmbeddings ? [] : [get("lm_head.weight")]),
  ];
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(28 + total * 4);
  out.set(new Uint8Array(ints.buffer), 0);
  let at = 28;
  for (const p of parts) {
    out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), at);
    at += p.byteLength;
  }
  return out;
}

test("a GGUF F32 llama file gives exactly the logits of the same weights as a llama2.c checkpoint", async () => {
  // llama2.c fixes eps = 1e-5 and theta = 10000; GGUF stores eps as f32, so the reference uses that value
  const config = tinyConfig("llama", { rmsNormEps: 1e-5 });
  const tensors = randomHfTensors(config, 8);
  const gguf = await readSource(save(tinyGguf(config, tensors, "f32")));
  const ref = parseLlama2cCheckpoint(llama2cBytes(config, tensors), "in-memory.bin");
  const refConfig: ModelConfig = { ...ref.config, rmsNormEps: Math.fround(1e-5) };
  const { architecture: _a, ...mine } = gguf.config;
  const { architecture: _b, ...theirs } = refConfig;
  assert.deepEqual(mine, theirs);
  for (const [name, t] of ref.tensors) assert.deepEqual(gguf.tensors.get(name)!.data, t.data, name);
  assert.deepEqual(await logitsOf(gguf.config, gguf.tensors, TOKENS), await logitsOf(refConfig, ref.tensors, TOKENS));
});
