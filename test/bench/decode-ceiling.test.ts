/**
 * bench/gpu-decode-ceiling.ts against independent references:
 * - its plan reads every weight group and KV block of a step exactly once in each configuration, the
 *   bytes equal the q4_0 sum of the Llama shapes computed here (and the roofline's bytes less the norm
 *   vectors and one embedding row), and the dispatch counts are the engine's (197 at 8B, 101 at 1B) and
 *   five a layer + 2;
 * - its "engine" plan is the engine's own step: the kernel names a real q4_0 Llama records for one
 *   pipelined decode step on WebGPU, in order, and the GEMVs' grids;
 * - on the device, every dispatch of every configuration adds up exactly the words it claims to read,
 *   and the check catches a kernel that skips some;
 * - the --smoke run's JSON is consistent: counts as planned, bytes as summed here, rates, shares of the
 *   roofline and per-dispatch figures as their definitions give from its own measurements.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../paths.js";
import { openOrSkip } from "../backend/webgpu/helpers.js";
import { loadModel } from "../../src/load.js";
import type { WebGpuBackend } from "../../src/backend/webgpu/webgpu-backend.js";
import { gemvTeam } from "../../src/backend/webgpu/kernels/matmul.js";
import { ggufModelMetadata, spmVocabMetadata, syntheticSpmVocab, writeGguf } from "../../src/io/gguf-writer.js";
import { fastRandomTensors, randomLlamaConfig } from "../../bench/make-random-gguf.js";
import { decodeWeightBytes, kvReadBytes } from "../../bench/roofline.js";
import { SHAPES, type Shape } from "../../bench/llama-shapes.js";
import { CEILING_CONFIGS, dispatchRegions, planBytes, stepMemory, stepPlan, type Region } from "../../bench/decode-ceiling-plan.js";
import { Step } from "../../bench/decode-ceiling-step.js";

const { gpu, reason } = await openOrSkip({ activations: "auto" });
const dir = mkdtempSync(join(tmpdir(), "frugal-ceiling-"));
after(() => {
  gpu?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const configOf = (s: Shape) => randomLlamaConfig({ ...s, hidden: s.ffn, ctx: 4096 });

/** q4_0 bytes of a step's matrices and f32 K and V at `depth`, from the shape alone. */
function expectedBytes(s: Shape, depth: number): { weights: number; kv: number } {
  const hd = s.dim / s.heads;
  const [q, kv] = [s.heads * hd, s.kvHeads * hd];
  const layer = q * s.dim + 2 * kv * s.dim + s.dim * q + 2 * s.ffn * s.dim + s.dim * s.ffn;
  return { weights: ((s.layers * layer + s.vocab * s.dim) / 32) * 18, kv: 2 * s.layers * depth * kv * 4 };
}

test("the plan reads each weight group and KV block once, the shapes' q4_0 bytes, in the engine's dispatch count", () => {
  const counts: Record<string, number> = { "llama-3.1-8b": 197, "llama-3.2-1b": 101 };
  for (const [name, s] of Object.entries(SHAPES)) {
    for (const depth of [0, 548]) {
      const c = configOf(s);
      const mem = stepMemory(c, depth);
      const { weights, kv } = expectedBytes(s, depth);
      for (const config of CEILING_CONFIGS) {
        const plan = stepPlan(config, mem);
        assert.equal(planBytes(plan, mem), weights + kv, `${name} ${config} depth ${depth}: bytes`);
        // every region once, none twice
        const seen = new Map<Region, number>();
        for (const d of plan) for (const r of dispatchRegions(d, mem)) seen.set(r, (seen.get(r) ?? 0) + 1);
        assert.deepEqual([...seen.values()].filter((n) => n !== 1), [], `${name} ${config}: a region read twice`);
        assert.equal(seen.size, mem.regions.length, `${name} ${config}: every region read`);
      }
      assert.equal(stepPlan("engine", mem).length, counts[name], `${name}: engine dispatches`);
      assert.equal(stepPlan("minimal", mem).length, 5 * s.layers + 2, `${name}: minimal dispatches`);
      assert.equal(stepPlan("one-pass", mem).length, 1);
      // the roofline's bytes (gpu-decode's) add the 2L + 1 f32 norm vectors and one q4_0 embedding row
      assert.equal(decodeWeightBytes(c, "q4_0") + kvReadBytes(c, depth, 4) - (weights + kv), (2 * s.layers + 1) * s.dim * 4 + (s.dim / 32) * 18, `${name}: roofline bytes`);
    }
  }
  assert.throws(() => stepMemory({ ...configOf(SHAPES["llama-3.2-1b"]!), hiddenSize: 2056 }, 4), /multiple of 256/);
});

test("the engine plan is the engine's q4_0 decode step: its kernels in order, its GEMV grids", { skip: !gpu && reason }, async () => {
  for (const tied of [false, true]) {
    // a vocabulary of 16384 takes the split argmax, as 128256 does
    const shape: Shape = { dim: 256, layers: 3, ffn: 512, heads: 4, kvHeads: 2, vocab: 16384, tied };
    const config = configOf(shape);
    const path = join(dir, `llama-${tied}.gguf`);
    await writeGguf(path, { ...ggufModelMetadata(config, "q4_0", "ceiling-test"), ...spmVocabMetadata(syntheticSpmVocab(config.vocabSize)) }, fastRandomTensors(config, "q4_0", 3));
    // the backend's defaults (int8 activations for q4_0, blocks layout, fused ops); the model disposes it
    const b = (await openOrSkip({ activations: "auto" })).gpu!;
    const model = await loadModel(path, { backend: b });
    const ids = [1, 7, 42];
    const cache = model.network.newCache(64);
    const first = b.pickAhead(model.prefill(ids, cache));
    await first.id;
    const recorded: { name: string; groups: readonly [number, number] }[] = [];
    const rec = b.recorder;
    const dispatch = rec.dispatch;
    rec.dispatch = (k, params, bufs, groups) => {
      recorded.push({ name: k.name, groups: [...groups] as [number, number] });
      dispatch.call(rec, k, params, bufs, groups);
    };
    try {
      await b.pickAhead(model.network.forward(first, ids.length, cache)).id;
    } finally {
      rec.dispatch = dispatch;
    }
    const mem = stepMemory(config, ids.length + 1);
    const plan = stepPlan("engine", mem);
    assert.deepEqual(recorded.map((r) => r.name), plan.map((d) => (d.kind === "all" ? d.kind : d.engineKernel)), `tied ${tied}: kernels of a step`);
    const step = await Step.create(b, mem, { cap: 1 << 22, team: gemvTeam(b.gpu.subgroupMinSize), check: false });
    try {
      const ops = step.ops.get("engine")!;
      plan.forEach((d, i) => {
        if (d.kind === "gemv") assert.deepEqual(ops[i]!.groups, recorded[i]!.groups, `tied ${tied}: grid of ${d.role} (${d.matrix.name})`);
      });
    } finally {
      await b.finish();
      step.destroy();
      model.dispose();
    }
  }
});

test("every dispatch reads exactly its bytes, and the check catches one that skips some", { skip: !gpu && reason }, async () => {
  const b = gpu!;
  // an odd vocabulary: the last GEMV team has a row past the end, and lm_head's quants end 128 bytes short
  // of a 256-byte boundary, a gap before its scales that one-pass reads too
  const shape: Shape = { dim: 256, layers: 2, ffn: 768, heads: 4, kvHeads: 2, vocab: 2047, tied: false };
  // small arenas: one-pass binds several; K/V of 24 positions are not whole workgroups of the stream
  const mem = stepMemory(configOf(shape), 24);
  const step = await Step.create(b, mem, { cap: 1 << 19, team: gemvTeam(b.gpu.subgroupMinSize), check: true });
  try {
    assert.ok(step.arenas.length >= 3, `${step.arenas.length} arenas`);
    assert.equal(step.bytes.get("one-pass")! - planBytes(stepPlan("one-pass", mem), mem), 128, "one-pass reads the gap");
    for (const config of CEILING_CONFIGS) await step.check(config);
    /** The first op of `config` running `kind` checks with `from` replaced by `to` everywhere in its code. */
    const tamper = (config: "engine" | "one-pass", kind: string, from: string, to: string) => {
      const ops = step.ops.get(config)!;
      const i = ops.findIndex((o) => o.checkKernel.name === kind);
      const original = ops[i]!;
      const k = original.checkKernel;
      assert.ok(k.code.includes(from), `${kind} has "${from}"`);
      ops[i] = { ...original, checkKernel: { ...k, key: `${k.key}.tampered`, code: k.code.replaceAll(from, to) } };
      return () => { ops[i] = original; };
    };
    // a GEMV that leaves out its scales, a stream that drops the last vec4 of every binding
    let restore = tamper("engine", "ceiling.gemv", "+ select(0u, s0_0,", "+ 0u * select(0u, s0_0,");
    await assert.rejects(step.check("engine"), /check engine: dispatch 1 \(norm \+ q\/k\/v \+ rope \+ kv write\)/);
    restore();
    restore = tamper("one-pass", "ceiling.stream", "u < n)", "u < n - 1u)");
    await assert.rejects(step.check("one-pass"), /check one-pass: dispatch 0/);
    restore();
    await step.check("one-pass");
  } finally {
    await b.finish();
    step.destroy();
  }
});

test("--smoke: counts, bytes and rates in the JSON agree with the plan and with each other", { skip: !gpu && reason }, () => {
  const out = join(dir, "smoke.json");
  execFileSync(process.execPath, [join(ROOT, "dist/bench/gpu-decode-ceiling.js"), "--smoke", "--json", out], { stdio: ["ignore", "ignore", "inherit"] });
  const rep = JSON.parse(readFileSync(out, "utf8"));
  assert.equal(rep.bench, "gpu-decode-ceiling");
  assert.equal(rep.complete, true);
  assert.equal(rep.shapes.length, 1);
  const s = rep.shapes[0];
  assert.equal(s.check, "passed");
  const depth = rep.settings.kvDepth;
  const { weights, kv } = expectedBytes(s.config, depth);
  const rooflineBytes = weights + kv + (2 * s.config.layers + 1) * s.config.dim * 4 + (s.config.dim / 32) * 18;
  assert.equal(s.rooflineBytes, rooflineBytes);
  assert.equal(s.planBytes, weights + kv);
  const close = (x: number, want: number, what: string) => assert.ok(Math.abs(x - want) <= 1e-9 * Math.abs(want), `${what}: ${x} against ${want}`);
  close(s.rooflineTokS, (rep.copy.gbs * 1e9) / rooflineBytes, "roofline t/s");
  const L = s.config.layers;
  const dispatches: Record<string, number> = { engine: 6 * L + 5, minimal: 5 * L + 2, "one-pass": 1 };
  assert.deepEqual(s.results.map((r: { config: string }) => r.config), [...CEILING_CONFIGS]);
  for (const r of s.results) {
    assert.equal(r.dispatches, dispatches[r.config], `${r.config}: dispatches`);
    // the smoke shape needs no padding between regions, so one-pass reads the same bytes
    assert.equal(r.bytes, weights + kv, `${r.config}: bytes`);
    for (const x of [r.tokS, r.hostMs, r.gpuMs]) assert.ok(x.min > 0 && x.min <= x.median && x.median <= x.max && Number.isFinite(x.max), `${r.config}: spread ${JSON.stringify(x)}`);
    close(r.msPerStep * r.tokS.median, 1000, `${r.config}: ms a step x t/s`);
    close(r.ofRoofline, r.tokS.median / s.rooflineTokS, `${r.config}: of roofline`);
    close(r.ofRooflineGpu, 1000 / r.gpuMs.median / s.rooflineTokS, `${r.config}: of roofline, no host`);
    close(r.usPerDispatchAboveDram, ((r.gpuMs.median - (r.bytes / (rep.copy.gbs * 1e9)) * 1000) * 1000) / r.dispatches, `${r.config}: µs a dispatch`);
  }
});
