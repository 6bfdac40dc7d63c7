/**
 * Why TokenButler trails H2O/SnapKV at keep 0.5 on frugal-ar-base (docs/kv-xkv-tokenbutler.md): on the
 * decode steps of the kv-xkv-tokenbutler protocol (windows of 512 tokens of models/corpus-val.txt, 384
 * prefilled, the rest teacher-forced), with DENSE attention so every method is judged on the same
 * contexts, per (step, layer >= 1, query head) with K_i = keepBudget(n, keep) and the 4 sinks:
 *
 * - the true attention mass (softmax of q·k/√d over all n positions) inside the set each rule would keep:
 *   the oracle's top-K_i, TokenButler's top-K_i by predicted logits (spec §3.2), StreamingLLM's most
 *   recent K_i − 4;
 * - TokenButler's recall of the oracle's top-K_i, split into the last `--recent` positions and older ones;
 * - where TokenButler's lost mass sits (recent vs older positions).
 *
 *   node dist/bench/tokenbutler-why.js [--windows 4] [--prefill 384] [--keep 0.5] [--recent 32]
 */
import { readFileSync } from "node:fs";
import { loadModel } from "../src/load.js";
import { createHostStore, type SelectionPolicy } from "../src/kv/host-store.js";
import { headScores, type LayerKv } from "../src/kv/host-attention.js";
import { KvSelection, SINKS, keepBudget, selectTopK } from "../src/kv/selection.js";
import { PredictorState, readPredictor } from "../src/kv/tokenbutler/predictor.js";
import { DEFAULT_PREDICTOR } from "../src/kv/tokenbutler/tokenbutler-store.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const WINDOWS = Number(arg("--windows", "4"));
const PREFILL = Number(arg("--prefill", "384"));
const KEEP = Number(arg("--keep", "0.5"));
const RECENT = Number(arg("--recent", "32"));
const CTX = 512;

const stats = {
  lists: 0,
  mass: { oracle: 0, tokenbutler: 0, streaming: 0 },
  /** Relative error ||o_set − o_dense|| / ||o_dense|| of the head's attention output (renormalised over the set). */
  err: { oracle: 0, tokenbutler: 0, streaming: 0 },
  oracleRecent: 0, oracleOld: 0, hitRecent: 0, hitOld: 0,
  lostRecent: 0, lostOld: 0,
  perLayerMass: new Map<number, { tb: number; stream: number; oracle: number; n: number }>(),
};

class Probe implements SelectionPolicy {
  readonly wantsProbs = false;
  readonly evicts = false;
  private readonly s: Float64Array;
  private readonly p: Float64Array;
  private readonly order: Int32Array;
  private readonly sel: KvSelection;
  constructor(private readonly pred: PredictorState, cap: number, heads: number) {
    this.s = new Float64Array(cap);
    this.p = new Float64Array(cap);
    this.order = new Int32Array(cap);
    this.sel = new KvSelection(3, cap);
  }
  reset(): void {
    this.pred.reset();
  }
  input(layer: number, pos0: number, rows: number, h: Float32Array): void {
    if (layer === 0) this.pred.append(pos0, rows, h);
  }
  select(layer: number, pos: number, q: Float32Array, kv: LayerKv, _sel: KvSelection): boolean {
    const n = pos + 1, k = keepBudget(n, KEEP), cap = this.sel.stride;
    const heads = q.length / kv.headDim;
    for (let h = 0; h < heads; h++) {
      headScores(q, 0, kv, heads, h, n, this.s);
      let max = -Infinity, sum = 0;
      for (let t = 0; t < n; t++) max = Math.max(max, this.s[t]!);
      for (let t = 0; t < n; t++) sum += this.p[t] = Math.exp(this.s[t]! - max);
      for (let t = 0; t < n; t++) this.p[t] = this.p[t]! / sum;
      selectTopK(this.sel, 0, this.s, n, k, this.order);
      const pred = new Float64Array(n);
      this.pred.scores(layer, h, pos, pred);
      selectTopK(this.sel, 1, pred, n, k, this.order);
      const mark = (row: number) => {
        const m = new Uint8Array(n);
        for (let j = 0; j < this.sel.counts[row]!; j++) m[this.sel.positions[row * cap + j]!] = 1;
        return m;
      };
      const o = mark(0), b = mark(1);
      const st = new Uint8Array(n);
      for (let t = 0; t < Math.min(SINKS, n); t++) st[t] = 1;
      for (let t = Math.max(0, n - Math.max(1, k - SINKS)); t < n; t++) st[t] = 1;
      let mo = 0, mb = 0, ms = 0;
      for (let t = 0; t < n; t++) {
        const pt = this.p[t]!;
        if (o[t]) mo += pt;
        if (b[t]) mb += pt;
        if (st[t]) ms += pt;
        const recent = t >= n - RECENT;
        if (o[t] && t >= SINKS) {
          if (recent) { stats.oracleRecent++; if (b[t]) stats.hitRecent++; } else { stats.oracleOld++; if (b[t]) stats.hitOld++; }
        }
        if (!b[t]) { if (recent) stats.lostRecent += pt; else stats.lostOld += pt; }
      }
      const d = kv.headDim, g = Math.floor(h / (heads / (kv.width / d))) * d;
      const outErr = (m: Uint8Array) => {
        let mass = 0;
        for (let t = 0; t < n; t++) if (m[t]) mass += this.p[t]!;
        let num = 0, den = 0;
        for (let i = 0; i < d; i++) {
          let full = 0, part = 0;
          for (let t = 0; t < n; t++) {
            const x = this.p[t]! * kv.v[t * kv.width + g + i]!;
            full += x;
            if (m[t]) part += x;
          }
          num += (part / mass - full) ** 2;
          den += full * full;
        }
        return Math.sqrt(num / den);
      };
      stats.err.oracle += outErr(o);
      stats.err.tokenbutler += outErr(b);
      stats.err.streaming += outErr(st);
      stats.lists++;
      stats.mass.oracle += mo;
      stats.mass.tokenbutler += mb;
      stats.mass.streaming += ms;
      const pl = stats.perLayerMass.get(layer) ?? { tb: 0, stream: 0, oracle: 0, n: 0 };
      pl.tb += mb; pl.stream += ms; pl.oracle += mo; pl.n++;
      stats.perLayerMass.set(layer, pl);
    }
    return false;
  }
}

const model = await loadModel("models/frugal-ar-base", { contextLength: CTX });
const text = readFileSync("models/corpus-val.txt", "utf8");
const ids = model.tokenizer.encode(text.slice(0, WINDOWS * CTX * 6), { addSpecialTokens: false });
const net = model.network;
const ctx = net.kvContext(CTX);
const pred = new PredictorState(readPredictor(DEFAULT_PREDICTOR), CTX);
for (let w = 0; w < WINDOWS; w++) {
  const win = ids.slice(w * CTX, (w + 1) * CTX);
  const store = createHostStore(ctx, "tokenbutler-why", new Probe(pred, CTX, ctx.heads));
  await model.backend.read(net.forward(Int32Array.from(win.slice(0, PREFILL)), 0, store));
  for (let t = PREFILL; t < CTX - 1; t++) await model.backend.read(net.forward(Int32Array.of(win[t]!), t, store));
  process.stderr.write(`window ${w + 1}/${WINDOWS}\n`);
}
const pc = (x: number) => `${(100 * x).toFixed(1)}%`;
const L = stats.lists;
console.log(`frugal-ar-base, ${WINDOWS} windows x ${CTX}, prefill ${PREFILL}, keep ${KEEP}, dense contexts; ${L} (step, layer, head) lists`);
console.log(`| set (K_i + 4 sinks) | true attention mass kept (mean) | attention output error (mean relative) |\n| --- | ---: | ---: |`);
console.log(`| oracle top-K_i | ${pc(stats.mass.oracle / L)} | ${pc(stats.err.oracle / L)} |\n| TokenButler top-K_i (predicted) | ${pc(stats.mass.tokenbutler / L)} | ${pc(stats.err.tokenbutler / L)} |\n| StreamingLLM (most recent K_i − 4) | ${pc(stats.mass.streaming / L)} | ${pc(stats.err.streaming / L)} |`);
console.log(`\nTokenButler recall of the oracle's top-K_i (sinks aside): last ${RECENT} positions ${pc(stats.hitRecent / stats.oracleRecent)} (${stats.oracleRecent} keys), older ${pc(stats.hitOld / stats.oracleOld)} (${stats.oracleOld} keys)`);
console.log(`TokenButler's lost mass per list: ${pc(stats.lostRecent / L)} in the last ${RECENT} positions, ${pc(stats.lostOld / L)} in older ones`);
console.log(`\n| layer | oracle mass | TokenButler mass | StreamingLLM mass |\n| ---: | ---: | ---: | ---: |`);
for (const [l, v] of [...stats.perLayerMass].sort((a, b) => a[0] - b[0])) console.log(`| ${l} | ${pc(v.oracle / v.n)} | ${pc(v.tb / v.n)} | ${pc(v.stream / v.n)} |`);
model.dispose();
