/**
 * TokenButler on WebGPU (SwiftShader in CI) against the CPU TokenButler, on frugal-ar-base with its shipped
 * predictor (trained for its 8 layers x 8 heads): the device predictor's importance keys, query and
 * selection scores equal the CPU PredictorState's within f32 drift; per decode step, layer >= 1 and head,
 * the device's lists equal the CPU policy's except where a position's predicted score ties the list's
 * boundary within that drift; logits agree; keep = 1 is dense bit for bit; the first generated token is
 * dense's; `--kv tokenbutler:keep=F --device webgpu` works from the CLI. The predictor ops alone are
 * checked against f64 host formulas first.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { GpuSelectState } from "../../src/backend/webgpu/select-ops.js";
import type { WebGpuBackend } from "../../src/backend/webgpu/webgpu-backend.js";
import type { KVCache } from "../../src/backend/backend.js";
import { kvStoreFactory } from "../../src/kv/spec.js";
import { KvSelection, keepBudget, pinnedSplit } from "../../src/kv/selection.js";
import type { LayerKv } from "../../src/kv/host-attention.js";
import { createHostStore, type SelectionPolicy } from "../../src/kv/host-store.js";
import { ButlerPolicy, DEFAULT_PREDICTOR } from "../../src/kv/tokenbutler/tokenbutler-store.js";
import { DeviceTokenButlerStore } from "../../src/kv/tokenbutler/device-tokenbutler.js";
import { PredictorState, readPredictor } from "../../src/kv/tokenbutler/predictor.js";
import { loadModel } from "../../src/load.js";
import { ROOT } from "../paths.js";
import { Rng, assertClose, openOrSkip, randoms, tensorOf } from "../backend/webgpu/helpers.js";

const { gpu, reason } = await openOrSkip();
after(() => gpu?.dispose());

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
  constructor(keep: number, readonly predictor: PredictorState, window = 0, anchors = 4) {
    this.policy = new ButlerPolicy(keep, predictor, window, anchors);
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

test("predictor ops = host formulas: LayerNorm with bias, GELU (erf), SiLU, row append, per-head predicted logits", { skip: !gpu && reason }, async () => {
  const g = gpu!;
  const rng = new Rng(5);
  const f32 = (shape: number[], data: Float32Array) => g.upload({ name: "w", dtype: "f32", shape, data: new Uint8Array(data.buffer) });
  const ops = g.selectOps.predictor;
  // LayerNorm over rows of 70 (more than one workgroup stride, not a multiple of it), offset rows
  const R = 5, C = 70;
  const x = randoms(R * C, rng, 3).map((v, i) => v + (i % 7));
  const w = randoms(C, rng), bias = randoms(C, rng);
  const out = g.activation(R, C);
  ops.layerNorm(out, tensorOf(g, R, C, x), f32([C], w), f32([C], bias), 1e-5);
  const want = new Float32Array(R * C);
  for (let r = 0; r < R; r++) {
    let mean = 0, v = 0;
    for (let c = 0; c < C; c++) mean += x[r * C + c]!;
    mean /= C;
    for (let c = 0; c < C; c++) v += (x[r * C + c]! - mean) ** 2;
    const inv = 1 / Math.sqrt(v / C + 1e-5);
    for (let c = 0; c < C; c++) want[r * C + c] = (x[r * C + c]! - mean) * inv * w[c]! + bias[c]!;
  }
  assertClose(await g.read(out), want, "layerNorm", 1e-5, 1e-6);
  // GELU and SiLU in place, over [-6, 6]
  const y = randoms(1000, rng, 6);
  const gt = tensorOf(g, 1, 1000, y), st = tensorOf(g, 1, 1000, y);
  ops.gelu(gt);
  ops.silu(st);
  // erf by its Taylor series: exact to f64 for |x| <= 6 / √2 with enough terms
  const erf = (z: number) => {
    let sum = 0, term = z;
    for (let n = 0; n < 200; n++) {
      sum += term / (2 * n + 1);
      term *= (-z * z) / (n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  };
  assertClose(await g.read(gt), y.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2))), "gelu", 1e-5, 1e-6);
  assertClose(await g.read(st), y.map((v) => v / (1 + Math.exp(-v))), "silu", 1e-5, 1e-6);
  // row append and scores: 3 heads x 2 layers x d' 8, 100 positions written in two appends
  const H = 3, L = 2, DP = 8, W = H * L * DP, N = 100, CAP = 128;
  const kd = randoms(N * W, rng), qd = randoms(W, rng);
  const keys = g.activation(CAP, W);
  ops.writeRows(keys, tensorOf(g, 60, W, kd.subarray(0, 60 * W)), 0);
  ops.writeRows(keys, tensorOf(g, 40, W, kd.subarray(60 * W)), 60);
  assert.deepEqual(await g.read(keys, 0, N), kd, "rows appended");
  const state = g.selectOps.state(L, H, CAP, 8) as GpuSelectState;
  for (let layer = 0; layer < L; layer++) {
    ops.scores(state, tensorOf(g, 1, W, qd), keys, layer, L, N, DP);
    const got = new Float32Array(await g.recorder.read(state.keys.buffer, 0, H * CAP * 4));
    for (let h = 0; h < H; h++) {
      const o = (h * L + layer) * DP;
      const ref = new Float32Array(N);
      for (let t = 0; t < N; t++) {
        let s = 0;
        for (let i = 0; i < DP; i++) s += qd[o + i]! * kd[t * W + o + i]!;
        ref[t] = s / Math.sqrt(DP);
      }
      assertClose(got.subarray(h * CAP, h * CAP + N), ref, `scores layer ${layer} head ${h}`, 1e-5, 1e-6);
    }
  }
  // the window variant's pinned ranges: [0, 6) and [90, 100) get the largest finite f32, the rest is unchanged
  ops.scores(state, tensorOf(g, 1, W, qd), keys, 1, L, N, DP, 6, 90);
  const pinned = new Float32Array(await g.recorder.read(state.keys.buffer, 0, H * CAP * 4));
  ops.scores(state, tensorOf(g, 1, W, qd), keys, 1, L, N, DP);
  const plain = new Float32Array(await g.recorder.read(state.keys.buffer, 0, H * CAP * 4));
  for (let h = 0; h < H; h++) for (let t = 0; t < N; t++) {
    const want = t < 6 || t >= 90 ? 3.4028234663852886e38 : plain[h * CAP + t]!;
    assert.equal(pinned[h * CAP + t], want, `pinned scores head ${h} position ${t}`);
  }
  assert.throws(() => ops.scores(state, tensorOf(g, 1, W, qd), keys, 1, L, N, DP, 50, 40), /pinned ranges/);
});

for (const [KEEP, WINDOW, ANCHORS] of [[0.25, 0, 4], [0.5, 0.5, 6]] as const) {
const spec = WINDOW > 0 ? `tokenbutler:keep=${KEEP},window=${WINDOW},anchors=${ANCHORS}` : `tokenbutler:keep=${KEEP}`;
test(`WebGPU ${spec} = CPU: predictor state, lists (up to near-ties) and logits, frugal-ar-base, 32 decode steps`, { skip: !gpu && reason }, async (tc) => {
  const CAP = 64, PROMPT = 8, STEPS = 32;
  const gm = await loadModel(BASE, { device: "webgpu" });
  const cm = await loadModel(BASE);
  try {
    const ids = Int32Array.from(cm.tokenizer.encode(TEXT, { addSpecialTokens: true }).slice(0, PROMPT + STEPS));
    assert.equal(ids.length, PROMPT + STEPS);
    const gs = kvStoreFactory(spec)(gm.network.kvContext(CAP));
    assert.ok(gs instanceof DeviceTokenButlerStore, "WebGPU gets the device store");
    const cctx = cm.network.kvContext(CAP);
    const cp = new PredictorState(readPredictor(DEFAULT_PREDICTOR), CAP);
    const rec = new RecordingButler(KEEP, cp, WINDOW, ANCHORS);
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
      // the window variant's pinned positions hold the largest f32 instead of their logit
      const kLast = keepBudget(t + 1, KEEP), pinLast = WINDOW > 0 ? pinnedSplit(kLast, ANCHORS, WINDOW) : { anchors: 0, window: 0 };
      const pinned = (x: number) => x < pinLast.anchors || x >= t + 1 - pinLast.window;
      for (let h = 0; h < heads; h++) {
        const row = dev.slice(h * CAP, h * CAP + t + 1), want = Float64Array.from(cpuScores[h]!);
        for (let x = 0; x <= t; x++) if (pinned(x)) {
          assert.equal(row[x], 3.4028234663852886e38, `step ${t} head ${h}: pinned position ${x}`);
          row[x] = want[x] = 0;
        }
        const s = maxAbs(row, want);
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
          // the boundary: the lowest logit chosen by rank (not pinned as a sink, anchor or window position)
          const k = keepBudget(t + 1, KEEP), pin = WINDOW > 0 ? pinnedSplit(k, ANCHORS, WINDOW) : { anchors: 4, window: 0 };
          const edge = Math.min(...[...a].filter((x) => x >= Math.max(4, pin.anchors) && x < t + 1 - pin.window).map((x) => r[x]!));
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
}

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
    assert.deepEqual(await run(kvStoreFactory("tokenbutler:keep=1,window=0.5,anchors=8")(net.kvContext(32))), dense, "keep = 1 with a window");
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
