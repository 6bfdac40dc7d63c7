/**
 * TokenButler's predictor (spec tokenbutler.md §2) on a device backend (WebGPU): the forward of
 * predictor.ts's `PredictorState.append` written with backend ops (matmul, addBias, rope, the backend's
 * own causal attention over a one-layer cache for the mini-attention, add) plus `DevicePredictorOps` for
 * LayerNorm, GELU, SiLU, the key append and the selection scores. The importance keys K̃ of every position
 * stay on the device ([capacity][slots·d′]); the importance query q̃ is made for decode rows only (prefill
 * attends densely, so no prefill row's query is ever used).
 */
import type { Backend, DevicePredictorOps, KVCache, RopeTable, SelectState, Tensor, Weight } from "../../backend/backend.js";
import { rawTensor } from "../../tensor/raw.js";
import { predictorInvFreq, predictorShapes, type PredictorWeights } from "./predictor.js";

/** The predictor's weights on one backend, uploaded once per (backend, weights): stores are per sequence. */
type Uploaded = ReadonlyMap<string, Weight>;
const uploads = new WeakMap<Backend, WeakMap<PredictorWeights, Uploaded>>();

function upload(b: Backend, w: PredictorWeights): Uploaded {
  let per = uploads.get(b);
  if (!per) uploads.set(b, (per = new WeakMap()));
  let up = per.get(w);
  if (!up) {
    const m = new Map<string, Weight>();
    for (const [name, shape] of predictorShapes(w.config)) {
      const t = w.t.get(name)!;
      m.set(name, b.upload(rawTensor(`tokenbutler.${name}`, "f32", shape, new Uint8Array(t.buffer, t.byteOffset, t.byteLength))));
    }
    per.set(w, (up = m));
  }
  return up;
}

/** Activations for `rows` rows; grown (never shrunk) as prefill chunks need. */
interface Scratch {
  rows: number;
  R: Tensor; q: Tensor; k: Tensor; v: Tensor; att: Tensor; normed: Tensor; hid: Tensor; z: Tensor; mid: Tensor; imp: Tensor;
}

export class DevicePredictor {
  readonly slots: number;
  readonly dPrime: number;
  /** Importance keys K̃ [capacity][slots·d′], RoPE'd at their positions. */
  readonly keys: Tensor;
  /** The importance query q̃ of the last decode row [1][slots·d′]. */
  readonly query: Tensor;
  private readonly r: number;
  private readonly e: number;
  private readonly w: Uploaded;
  private readonly mini: KVCache;
  private readonly ropeE: RopeTable;
  private readonly ropeD: RopeTable;
  private scratch?: Scratch;
  private written = 0;

  constructor(private readonly b: Backend, private readonly ops: DevicePredictorOps, readonly weights: PredictorWeights, readonly capacity: number) {
    const c = weights.config;
    this.r = c.hidden / c.reduce;
    this.e = this.r / c.heads;
    this.slots = c.layers * c.heads;
    this.dPrime = c.dPrime;
    this.w = upload(b, weights);
    this.mini = b.kvCache(1, c.heads, this.e, capacity);
    this.keys = b.activation(capacity, this.slots * c.dPrime);
    this.query = b.activation(1, this.slots * c.dPrime);
    this.ropeE = b.ropeTable(Float64Array.from(predictorInvFreq(c.ropeTheta, this.e)), capacity);
    this.ropeD = b.ropeTable(Float64Array.from(predictorInvFreq(c.ropeTheta, c.dPrime)), capacity);
  }

  get length(): number {
    return this.written;
  }

  /** Bytes kept per sequence: mini-attention K/V and the importance keys (f32), as PredictorState counts them. */
  bytes(): number {
    return this.written * (2 * this.r + this.slots * this.dPrime) * 4;
  }

  private rowsOf(rows: number): Scratch {
    if (!this.scratch || this.scratch.rows < rows) {
      const b = this.b, c = this.weights.config, r = this.r;
      this.scratch = {
        rows,
        R: b.activation(rows, r), q: b.activation(rows, r), k: b.activation(rows, r), v: b.activation(rows, r),
        att: b.activation(rows, r), normed: b.activation(rows, r), hid: b.activation(rows, 2 * r), z: b.activation(rows, c.hidden),
        mid: b.activation(rows, c.intDim), imp: b.activation(rows, this.slots * c.dPrime),
      };
    }
    const s = this.scratch, v = (t: Tensor) => (t.rows === rows ? t : this.b.view(t, rows));
    return { rows, R: v(s.R), q: v(s.q), k: v(s.k), v: v(s.v), att: v(s.att), normed: v(s.normed), hid: v(s.hid), z: v(s.z), mid: v(s.mid), imp: v(s.imp) };
  }

  /** Records the predictor over layer 0's normalised hidden states x [rows][E] at positions pos0.. (they follow on). */
  append(pos0: number, rows: number, x: Tensor): void {
    const b = this.b, w = this.w, c = this.weights.config;
    if (pos0 === 0) this.written = 0;
    if (pos0 !== this.written) throw new Error(`TokenButler predictor: position ${pos0} but ${this.written} are cached`);
    if (pos0 + rows > this.capacity) throw new Error(`TokenButler predictor: ${pos0 + rows} positions > capacity ${this.capacity}`);
    if (x.cols !== c.hidden) throw new Error(`TokenButler predictor: expects hidden size ${c.hidden}, the model has ${x.cols}`);
    const s = this.rowsOf(rows);
    const xin = x.rows === rows ? x : b.view(x, rows);
    b.matmul(s.R, xin, w.get("input_proj.weight")!);
    b.matmul(s.q, s.R, w.get("q_proj_attn.weight")!);
    b.matmul(s.k, s.R, w.get("k_proj_attn.weight")!);
    b.matmul(s.v, s.R, w.get("v_proj_attn.weight")!);
    b.rope(s.q, this.e, pos0, this.ropeE);
    b.rope(s.k, this.e, pos0, this.ropeE);
    b.kvWrite(this.mini, 0, s.k, s.v, pos0);
    b.attention(s.att, s.q, this.mini, 0, pos0, c.heads);
    this.ops.layerNorm(s.normed, s.att, w.get("norm1.weight")!, w.get("norm1.bias")!, 1e-5);
    b.matmul(s.hid, s.normed, w.get("ffn.0.weight")!);
    b.addBias(s.hid, w.get("ffn.0.bias")!);
    this.ops.gelu(s.hid);
    b.matmul(s.z, s.hid, w.get("ffn.2.weight")!);
    b.addBias(s.z, w.get("ffn.2.bias")!);
    b.add(s.z, s.z, xin);
    this.importance("k", s, pos0, s.imp);
    this.ops.writeRows(this.keys, s.imp, pos0);
    if (rows === 1) this.importance("q", s, pos0, this.query);
    this.written = pos0 + rows;
  }

  /** out = RoPE_d′(W2 · silu(W1 · z)) for the `which` projection. */
  private importance(which: "q" | "k", s: Scratch, pos0: number, out: Tensor): void {
    const b = this.b;
    b.matmul(s.mid, s.z, this.w.get(`${which}_proj_importance.0.weight`)!);
    this.ops.silu(s.mid);
    b.matmul(out, s.mid, this.w.get(`${which}_proj_importance.2.weight`)!);
    b.rope(out, this.dPrime, pos0, this.ropeD);
  }

  /**
   * Selection keys of layer `layer` for the last decode row at n − 1 into the state's keys (per query head);
   * positions below pinLo and from pinHi on are pinned (the largest f32 key).
   */
  scores(state: SelectState, layer: number, n: number, pinLo = 0, pinHi = n): void {
    if (n !== this.written) throw new Error(`TokenButler predictor: scores for ${n} positions but ${this.written} are cached`);
    this.ops.scores(state, this.query, this.keys, layer, this.weights.config.layers, n, this.dPrime, pinLo, pinHi);
  }
}
