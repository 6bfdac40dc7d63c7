/**
 * Teacher-forced top-1 agreement of the WebGPU backend with the CPU backend (the f32 reference): the
 * same token windows run through both, and at every position the argmax of the logits is compared.
 * Reports the agreement, the largest logit difference, the mean KL divergence (CPU || WebGPU), and each
 * disagreeing position with the CPU's top-1/top-2 margin (a tiny margin is a near tie; a large one is a
 * bug). Two ways on the GPU: one batched prefill per window, and token-by-token decode through the KV
 * cache; both must agree with the CPU.
 *
 *   node dist/bench/gpu-agreement.js --model models/frugal-ar-base [--data models/corpus-val.txt]
 *        [--ctx 512] [--windows 4] [--decode-windows 1] [--out FILE.json]
 */
import { parseArgs } from "node:util";
import { readFileSync, writeFileSync } from "node:fs";
import { loadModel } from "../src/load.js";
import type { Model } from "../src/model/model.js";

const { values: a } = parseArgs({
  options: {
    model: { type: "string", default: "models/frugal-ar-base" },
    data: { type: "string", default: "models/corpus-val.txt" },
    ctx: { type: "string", default: "512" },
    windows: { type: "string", default: "4" },
    "decode-windows": { type: "string", default: "1" },
    out: { type: "string" },
  },
});
const ctx = Number(a.ctx);

async function windowLogits(model: Model, w: number[]): Promise<Float32Array> {
  return model.backend.read(model.network.forward(Int32Array.from(w), 0, model.network.newCache(w.length), true));
}

async function decodeLogits(model: Model, w: number[]): Promise<Float32Array> {
  const vocab = model.config.vocabSize;
  const out = new Float32Array(w.length * vocab);
  const cache = model.network.newCache(w.length);
  for (let t = 0; t < w.length; t++) out.set(await model.backend.read(model.network.forward(Int32Array.of(w[t]!), t, cache)), t * vocab);
  return out;
}

interface Comparison {
  positions: number;
  agree: number;
  maxAbsDiff: number;
  meanKl: number;
  disagreements: { window: number; position: number; cpuTop: number; gpuTop: number; cpuMargin: number }[];
}

function compare(ref: Float32Array, got: Float32Array, vocab: number, window: number, into: Comparison): void {
  for (let p = 0; p < ref.length / vocab; p++) {
    const r = ref.subarray(p * vocab, (p + 1) * vocab);
    const g = got.subarray(p * vocab, (p + 1) * vocab);
    let top = 0, second = -1, gTop = 0, rMax = -Infinity, gMax = -Infinity;
    for (let i = 0; i < vocab; i++) {
      into.maxAbsDiff = Math.max(into.maxAbsDiff, Math.abs(r[i]! - g[i]!));
      if (r[i]! > r[top]!) { second = top; top = i; } else if (i !== top && (second < 0 || r[i]! > r[second]!)) second = i;
      if (g[i]! > g[gTop]!) gTop = i;
      rMax = Math.max(rMax, r[i]!);
      gMax = Math.max(gMax, g[i]!);
    }
    let rz = 0, gz = 0;
    for (let i = 0; i < vocab; i++) { rz += Math.exp(r[i]! - rMax); gz += Math.exp(g[i]! - gMax); }
    let kl = 0;
    for (let i = 0; i < vocab; i++) {
      const lp = r[i]! - rMax - Math.log(rz);
      const lq = g[i]! - gMax - Math.log(gz);
      kl += Math.exp(lp) * (lp - lq);
    }
    into.meanKl += kl;
    into.positions++;
    if (top === gTop) into.agree++;
    else into.disagreements.push({ window, position: p, cpuTop: top, gpuTop: gTop, cpuMargin: r[top]! - r[second]! });
  }
}

const cpu = await loadModel(a.model!, { device: "cpu" });
const gpu = await loadModel(a.model!, { device: "webgpu" });
try {
  const ids = cpu.tokenizer.encode(readFileSync(a.data!, "utf8"), { addSpecialTokens: false });
  const windows = Array.from({ length: Number(a.windows) }, (_, i) => ids.slice(i * ctx, (i + 1) * ctx));
  const vocab = cpu.config.vocabSize;
  const blank = (): Comparison => ({ positions: 0, agree: 0, maxAbsDiff: 0, meanKl: 0, disagreements: [] });
  const prefill = blank();
  const decode = blank();
  for (const [i, w] of windows.entries()) {
    const ref = await windowLogits(cpu, w);
    compare(ref, await windowLogits(gpu, w), vocab, i, prefill);
    if (i < Number(a["decode-windows"])) compare(ref, await decodeLogits(gpu, w), vocab, i, decode);
    process.stderr.write(`window ${i + 1}/${windows.length}\n`);
  }
  const summary = (c: Comparison) => ({
    positions: c.positions,
    top1Agreement: c.agree / Math.max(1, c.positions),
    maxAbsLogitDiff: c.maxAbsDiff,
    meanKl: c.meanKl / Math.max(1, c.positions),
    disagreements: c.disagreements,
  });
  const result = { bench: "gpu-agreement", model: a.model, ctx, prefill: summary(prefill), decode: summary(decode) };
  for (const [name, s] of [["prefill", result.prefill], ["decode", result.decode]] as const) {
    console.log(`${name}: ${s.positions} positions, top-1 agreement ${(100 * s.top1Agreement).toFixed(3)}%, ` +
      `max |logit diff| ${s.maxAbsLogitDiff.toExponential(2)}, mean KL ${s.meanKl.toExponential(2)}, ${s.disagreements.length} disagreements` +
      s.disagreements.map((d) => `\n  window ${d.window} position ${d.position}: CPU ${d.cpuTop} vs GPU ${d.gpuTop}, CPU margin ${d.cpuMargin.toExponential(2)}`).join(""));
  }
  console.log(JSON.stringify(result));
  if (a.out) writeFileSync(a.out, JSON.stringify(result, null, 2) + "\n");
} finally {
  cpu.dispose();
  gpu.dispose();
}
