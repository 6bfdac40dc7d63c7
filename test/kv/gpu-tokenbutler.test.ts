/**
 * TokenButler on WebGPU (SwiftShader in CI) against the CPU TokenButler, on frugal-ar-base with its shipped
 * predictor (trained for its 8 layers x 8 heads): the device predictor's importance keys, query and
 * selection scores equal the CPU PredictorState's within f32 drift; per decode step, layer >= 1 and head,
 * the device's lists equal the CPU policy's except where a position's predicted score ties the list's
 * boundary within that drift; logits agree; keep = 1 is dense bit for bit; the first generated token is
 * dense's; `--kv tokenbutler:keep=F --device webgpu` works from the CLI.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { GpuSelectState } from "../../src/backend/webgpu/select-ops.js";
import type { WebGpuBackend } from "../../src/backend/webgpu/webgpu-backend.js";
import type { KVCache } from "../../src/backend/backend.js";
import { kvStoreFactory } from "../../src/kv/spec.js";
import { KvSelection } from "../../src/kv/selection.js";
import type { LayerKv } from "../../src/kv/host-attention.js";
import { createHostStore, type SelectionPolicy } from "../../src/kv/host-store.js";
import { ButlerPolicy, DEFAULT_PREDICTOR } from "../../src/kv/tokenbutler/tokenbutler-store.js";
import { DeviceTokenButlerStore } from "../../src/kv/tokenbutler/device-tokenbutler.js";
import { PredictorState, readPredictor } from "../../src/kv/tokenbutler/predictor.js";
import { loadModel } from "../../src/load.js";
import { ROOT } from "../paths.js";
import { assertClose, openOrSkip } from "../backend/webgpu/helpers.js";

const { gpu, reason } = await openOrSkip();
gpu?.dispose(); // only the probe: the tests load their own models

const BASE = join(ROOT, "models/frugal-ar-base");
const TEXT = "The kernel is the core of the operating system. It manages memory, processes and devices, and it schedules the work of every program that runs on the machine, so that each one sees a computer of its own.";

/**
 * Bound on |device − CPU| of a predicted logit S̃, relative to the largest |S̃| of the head: both backends
 * compute the predictor in f32 (the CPU accumulates dot products in f64), so S̃ drifts by a few f32 ulps of
 * the largest logit; measured on this model ~2e-7. Positions whose logits lie this close to the list's
 * boundary may fall on either side of it.
 */
const DRIFT = 1e-5;

/** The CPU rule with the predictor fed from layer 0 (as TokenButlerStore does), recording lists and scores. */
class RecordingButler implements SelectionPolicy {
  readonly wantsProbs = false;
  readonly evicts = false;
  readonly lists = new Map<number, KvSelection>();
  readonly scores = new Map<number, Float64Array[]>();
  private readonly policy: ButlerPolicy;
  constructor(keep: number, readonly predictor: PredictorState) {
    this.policy = new ButlerPolicy(keep, predictor);
  }
  reset(): void {}
  input(layer: number, pos0: number, rows: number, h: Float32Array): void {
    if (layer !== 0) return;
    if (pos0 === 0) this.predictor.reset();
    this.predictor.append(pos0, rows, h);
  }
  select(layer: number, pos: number, q: Float32Array, kv: LayerKv, sel: KvSelection): boolean {
    const used = this.policy.select(layer, pos, q, kv, sel);
    const copy = new KvSelection(sel.heads, sel.stride);
    copy.positions.set(sel.positions);
    copy.counts.set(sel.counts);
    this.lists.set(layer, copy);
    this.scores.set(layer, Array.from({ length: sel.heads }, (_, h) => {
      const s = new Float64Array(pos + 1);
      this.predictor.scores(layer, h, pos, s);
      return s;
    }));
    return used;
  }
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>, n = a.length) => {
  let d = 0, s = 0;
  for (let i = 0; i < n; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return { d, s };
};

test("WebGPU tokenbutler:keep=0.25 = CPU: predictor state, lists (up to near-ties) and logits, frugal-ar-base, 32 decode steps", { skip: !gpu && reason }, async (tc) => {
  const CAP = 64, PROMPT = 8, STEPS = 32, KEEP = 0.25, spec = `tokenbutler:keep=${KEEP}`;
  const gm = await loadModel(BASE, { device: "webgpu" });
  const cm = await loadModel(BASE);
  try {
    const ids = Int32Array.from(cm.tokenizer.encode(TEXT, { addSpecialTokens: true }).slice(0, PROMPT + STEPS));
    assert.equal(ids.length, PROMPT + STEPS);
    const gs = kvStoreFactory(spec)(gm.network.kvContext(CAP));
    assert.ok(gs instanceof DeviceTokenButlerStore, "WebGPU gets the device store");
    const cctx = cm.network.kvContext(CAP);
    const cp = new PredictorState(readPredictor(DEFAULT_PREDICTOR), CAP);
    const rec = new RecordingButler(KEEP, cp);
    const cs = createHostStore(cctx, spec, rec);
    const { layers, heads } = cctx;
    const width = cp.slots * gs.predictor.dPrime;
    let gl = await gm.backend.read(gm.network.forward(ids.subarray(0, PROMPT), 0, gs));
    let cl = await cm.backend.read(cm.network.forward(ids.subarray(0, PROMPT), 0, cs));
    assertClose(gl, cl, "prefill logits", 1e-3, 1e-3);
    let lists = 0, nearTies = 0, shorter = 0, worstKeys = 0, worstScore = 0;
    for (let t = PROMPT; t < PROMPT + STEPS; t++) {
      gl = await gm.backend.read(gm.network.forward(ids.subarray(t, t + 1), t, gs));
      cl = await cm.backend.read(cm.network.forward(ids.subarray(t, t + 1), t, cs));
      assertClose(gl, cl, `${spec} step ${t} logits`, 1e-3, 1e-3);
      // the predictor's state: importance keys of every position, the decode row's importance query
      const keys = maxAbs(await gm.backend.read(gs.predictor.keys, 0, t + 1), cp.keys, (t + 1) * width);
      worstKeys = Math.max(worstKeys, keys.d / keys.s);
      // the selection scores left in the state's keys by the last layer
      const st = gs.state as GpuSelectState;
      const dev = new Float32Array(await (gm.backend as WebGpuBackend).recorder.read(st.keys.buffer, 0, heads * CAP * 4));
      const cpuScores = rec.scores.get(layers - 1)!;
      for (let h = 0; h < heads; h++) {
        const s = maxAbs(dev.subarray(h * CAP, h * CAP + t + 1), cpuScores[h]!);
        worstScore = Math.max(worstScore, s.d / s.s);
      }
      for (let l = 1; l < layers; l++) {
        const want = rec.lists.get(l)!;
        const got = await gm.backend.selectOps!.readSelection(gs.state, l);
        const scores = rec.scores.get(l)!;
        for (let h = 0; h < heads; h++) {
          lists++;
          if (want.counts[h]! < t + 1) shorter++;
          const a = new Set(want.positions.subarray(h * CAP, h * CAP + want.counts[h]!));
          const b = new Set(got.positions.subarray(h * CAP, h * CAP + got.counts[h]!));
          assert.equal(b.size, a.size, `step ${t} layer ${l} head ${h}: list length`);
          const diff = [...a].filter((x) => !b.has(x)).concat([...b].filter((x) => !a.has(x)));
          if (diff.length === 0) continue;
          const r = scores[h]!;
          const edge = Math.min(...[...a].filter((x) => x >= 4).map((x) => r[x]!));
          const scale = Math.max(...Array.from(r, Math.abs));
          for (const x of diff) assert.ok(Math.abs(r[x]! - edge) <= DRIFT * scale, `step ${t} layer ${l} head ${h}: position ${x} (S̃ ${r[x]}, boundary ${edge}) differs`);
          nearTies++;
        }
      }
    }
    tc.diagnostic(`drift: keys ${worstKeys.toExponential(2)}, scores ${worstScore.toExponential(2)}; ${nearTies} of ${lists} lists differ at near-ties, ${shorter} leave positions out`);
    assert.ok(worstKeys <= DRIFT, `importance keys drift ${worstKeys} of the largest |K̃|`);
    assert.ok(worstScore <= DRIFT, `selection scores drift ${worstScore} of the largest |S̃|`);
    assert.ok(shorter > lists / 2, `most lists leave positions out (${shorter} of ${lists})`);
    assert.ok(nearTies <= lists * 0.02, `${nearTies} of ${lists} lists differ at near-ties`);
    assert.ok(gs.usage.selectedSteps > 0, "selection ran");
    assert.equal(gs.bytes(), cs.bytes() + cp.bytes(), "bytes: the f32 cache and the predictor's caches, as the CPU store counts them");
  } finally {
    gm.dispose();
    cm.dispose();
  }
});

test("WebGPU tokenbutler: keep = 1 is dense bit for bit; keep = 0.25: the first generated token is dense's, later logits differ", { skip: !gpu && reason }, async () => {
  const gm = await loadModel(BASE, { device: "webgpu" });
  try {
    const net = gm.network;
    const ids = Int32Array.from(gm.tokenizer.encode(TEXT, { addSpecialTokens: true }).slice(0, 20));
    const run = async (cache: KVCache) => {
      const rows = [await gm.backend.read(net.forward(ids.subarray(0, 8), 0, cache))];
      for (let t = 8; t < ids.length; t++) rows.push(await gm.backend.read(net.forward(ids.subarray(t, t + 1), t, cache)));
      return rows;
    };
    const dense = await run(net.newCache(32));
    assert.deepEqual(await run(kvStoreFactory("tokenbutler:keep=1")(net.kvContext(32))), dense, "keep = 1");
    const sparse = await run(kvStoreFactory("tokenbutler:keep=0.25")(net.kvContext(32)));
    assert.deepEqual(sparse[0], dense[0], "the prefill (the first generated token's logits) is dense");
    assert.ok(sparse.some((row, r) => row.some((x, i) => x !== dense[r]![i])), "selection changes later logits");
  } finally {
    gm.dispose();
  }
});

test("CLI: generate --device webgpu --kv tokenbutler:keep=0.5 gives the CPU run's greedy tokens", { skip: !gpu && reason }, () => {
  const gen = (...extra: string[]) => {
    const r = spawnSync(process.execPath, [join(ROOT, "bin/frugal.js"), "generate", "--model", BASE, "--prompt", TEXT.slice(0, 120), "--max-tokens", "12", "--temperature", "0", "--kv", "tokenbutler:keep=0.5", ...extra], { encoding: "utf8", timeout: 300_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.trim().length > 0, "text was generated");
    return r.stdout;
  };
  assert.equal(gen("--device", "webgpu"), gen());
});
