/**
 * The whole forward pass of the default model (stories260K) on the WebAssembly engine (2 threads, every
 * job split, so the workers take part) against the reference engine: logits agree to f32 rounding and the
 * greedy continuations are the same wherever the reference's top two logits are not within that rounding.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { CpuBackend, createCpuBackend } from "../../../src/backend/cpu/cpu-backend.js";
import { DEFAULT_MODEL, readSource } from "../../../src/load.js";
import { LlamaModel } from "../../../src/model/llama.js";
import type { Backend } from "../../../src/backend/backend.js";

async function network(backend: Backend): Promise<LlamaModel> {
  const loaded = await readSource(DEFAULT_MODEL);
  return LlamaModel.create(loaded.config, loaded.tensors, backend, loaded.source, 128);
}

test("stories260K: WebAssembly engine logits match the reference engine over a prefill and 40 greedy steps", async () => {
  const wasm = await createCpuBackend({ threads: 2, parallelMin: 0, stallMs: Infinity });
  const ref = new CpuBackend();
  try {
    const a = await network(wasm);
    const b = await network(ref);
    const ca = a.newCache(64);
    const cb = b.newCache(64);
    const prompt = Int32Array.from([1, 403, 407, 261, 378, 430, 285, 359]);
    let la = await wasm.read(a.forward(prompt, 0, ca));
    let lb = await ref.read(b.forward(prompt, 0, cb));
    let pos = prompt.length;
    for (let step = 0; step < 40; step++) {
      let max = 0;
      for (let i = 0; i < lb.length; i++) max = Math.max(max, Math.abs(lb[i]!));
      const tol = 2e-4 * max;
      let top = 0;
      for (let i = 0; i < lb.length; i++) {
        assert.ok(Math.abs(la[i]! - lb[i]!) <= tol, `step ${step}: logit ${i} ${la[i]} vs ${lb[i]} (> ${tol})`);
        if (lb[i]! > lb[top]!) top = i;
      }
      let second = -Infinity;
      for (let i = 0; i < lb.length; i++) if (i !== top) second = Math.max(second, lb[i]!);
      let topA = 0;
      for (let i = 0; i < la.length; i++) if (la[i]! > la[topA]!) topA = i;
      if (lb[top]! - second > 2 * tol) assert.equal(topA, top, `step ${step}: greedy token`);
      // both continue with the reference's choice, so a near-tie cannot make them diverge
      la = await wasm.read(a.forward(Int32Array.of(top), pos, ca));
      lb = await ref.read(b.forward(Int32Array.of(top), pos, cb));
      pos++;
    }
  } finally {
    wasm.dispose();
    ref.dispose();
  }
});
