/**
 * The TokenButler v1 predictor (spec tokenbutler.md §2), run incrementally: each new position's layer-0
 * normalised hidden state goes through a tiny attention (its own K/V cache, width E/ρ), a FFN residual, and
 * two low-rank projections whose d′-chunks, RoPE'd at the position, are the importance query Q̃ and key K̃
 * of every (layer, head) slot. Keys are rotated once, at their own absolute position (not the reference's
 * double rotation). Weights: the PyTorch export of training/tokenbutler/train_tokenbutler.py.
 */
import { FormatError } from "../../io/errors.js";
import { bf16ToF32, f16ToF32 } from "../../tensor/half.js";

export interface PredictorConfig {
  /** Host model: hidden size E, layers N, query heads H. */
  readonly hidden: number;
  readonly layers: number;
  readonly heads: number;
  /** attn_reduce_factor ρ, importance width d′ (dDash), intermediate width I (intdim). */
  readonly reduce: number;
  readonly dPrime: number;
  readonly intDim: number;
  readonly ropeTheta: number;
}

export interface PredictorWeights {
  readonly config: PredictorConfig;
  /** Every tensor as f32, [out][in] for linear layers. */
  readonly t: ReadonlyMap<string, Float32Array>;
  /** The export's JSON header (training facts). */
  readonly header: Readonly<Record<string, unknown>>;
}

/** Parameter count by the spec's formula (§2.2), unused second LayerNorm included. */
export function predictorParameters(c: PredictorConfig): number {
  const E = c.hidden, r = E / c.reduce, I = c.intDim;
  return E * r + 3 * r * r + 2 * r + 2 * E + r * 2 * r + 2 * r + 2 * r * E + E + 2 * (E * I + I * c.layers * c.heads * c.dPrime);
}

/** The tensor names and shapes a config needs (reference names, §2.3). */
export function predictorShapes(c: PredictorConfig): Map<string, number[]> {
  const E = c.hidden, r = E / c.reduce, I = c.intDim, out = c.layers * c.heads * c.dPrime;
  return new Map<string, number[]>([
    ["input_proj.weight", [r, E]], ["q_proj_attn.weight", [r, r]], ["k_proj_attn.weight", [r, r]], ["v_proj_attn.weight", [r, r]],
    ["norm1.weight", [r]], ["norm1.bias", [r]], ["ffn.0.weight", [2 * r, r]], ["ffn.0.bias", [2 * r]],
    ["ffn.2.weight", [E, 2 * r]], ["ffn.2.bias", [E]], ["norm2.weight", [E]], ["norm2.bias", [E]],
    ["q_proj_importance.0.weight", [I, E]], ["q_proj_importance.2.weight", [out, I]],
    ["k_proj_importance.0.weight", [I, E]], ["k_proj_importance.2.weight", [out, I]],
  ]);
}

interface Entry { name: string; dtype: string; shape: number[]; begin: number; end: number }

/**
 * The safetensors header: tensor entries and the metadata. A small parser of its own because this module is
 * in the browser's import graph (the KV method registry), where src/io/safetensors.ts's node: imports may not be.
 */
function parseHeader(bytes: Uint8Array, path: string): { dataStart: number; entries: Entry[]; metadata: Record<string, string> } {
  if (bytes.length < 8) throw new FormatError(path, "too short for a safetensors file");
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (8 + headerLength > bytes.length) throw new FormatError(path, `header length ${headerLength} runs past the end of the file`);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<string, unknown>;
  } catch (e) {
    throw new FormatError(path, `safetensors header is not valid JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + headerLength;
  const entries: Entry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json)) {
    if (name === "__metadata__") {
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const off = e.data_offsets as number[] | undefined;
    if (typeof e.dtype !== "string" || !Array.isArray(e.shape) || !Array.isArray(off) || off.length !== 2 || dataStart + off[1]! > bytes.length || off[0]! > off[1]!) {
      throw new FormatError(path, `tensor ${name}: malformed header entry`);
    }
    const dtype = ({ F32: "f32", F16: "f16", BF16: "bf16" } as Record<string, string>)[e.dtype] ?? e.dtype;
    entries.push({ name, dtype, shape: e.shape as number[], begin: off[0]!, end: off[1]! });
  }
  return { dataStart, entries, metadata };
}

/** Node's fs, looked up at run time (the browser has none: TokenButler runs in Node only). */
function readFile(path: string): Uint8Array {
  const fs = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule?.("node:fs") as
    | { readFileSync(p: string): Uint8Array }
    | undefined;
  if (!fs) throw new FormatError(path, "reading the TokenButler predictor needs Node (22+ or 20.16+)");
  return fs.readFileSync(path);
}

/** Reads an exported predictor (safetensors, f32/f16/bf16), checking every tensor's presence and shape. */
export function readPredictor(path: string): PredictorWeights {
  let bytes: Uint8Array;
  try {
    bytes = readFile(path);
  } catch (e) {
    if (e instanceof FormatError) throw e;
    throw new FormatError(path, `cannot read the TokenButler predictor (${(e as Error).message}); train one with training/tokenbutler/train_tokenbutler.py`);
  }
  const header = parseHeader(bytes, path);
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(header.metadata.tokenbutler ?? "") as Record<string, unknown>;
  } catch {
    throw new FormatError(path, "no tokenbutler JSON header in the safetensors metadata");
  }
  const num = (k: string): number => {
    const v = meta[k];
    if (typeof v !== "number" || !Number.isFinite(v)) throw new FormatError(path, `header field ${k} is missing or not a number`);
    return v;
  };
  const config: PredictorConfig = { hidden: num("E"), layers: num("N"), heads: num("H"), reduce: num("rho"), dPrime: num("dprime"), intDim: num("intdim"), ropeTheta: num("rope_theta") };
  if (meta.slot !== "sigma = head * N + layer") throw new FormatError(path, `unsupported slot mapping ${String(meta.slot)}`);
  const t = new Map<string, Float32Array>();
  for (const [name, shape] of predictorShapes(config)) {
    const e = header.entries.find((x) => x.name === name);
    if (!e) throw new FormatError(path, `missing tensor ${name}`);
    if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
      throw new FormatError(path, `tensor ${name} has shape [${e.shape.join(", ")}], the header's config needs [${shape.join(", ")}]`);
    }
    const raw = bytes.subarray(header.dataStart + e.begin, header.dataStart + e.end);
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const n = shape.reduce((a, b) => a * b, 1);
    const size = ({ f32: 4, f16: 2, bf16: 2 } as Record<string, number>)[e.dtype] ?? 0;
    if (raw.byteLength !== n * size) throw new FormatError(path, `tensor ${name}: ${raw.byteLength} bytes for ${e.dtype} [${shape.join(", ")}]`);
    const out = new Float32Array(n);
    if (e.dtype === "f32") for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
    else if (e.dtype === "f16") for (let i = 0; i < n; i++) out[i] = f16ToF32(dv.getUint16(2 * i, true));
    else if (e.dtype === "bf16") for (let i = 0; i < n; i++) out[i] = bf16ToF32(dv.getUint16(2 * i, true));
    else throw new FormatError(path, `tensor ${name}: dtype ${e.dtype} (expected f32, f16 or bf16)`);
    t.set(name, out);
  }
  return { config, t, header: meta };
}

/** Inverse frequencies of the predictor's RoPE: always llama3-style scaling (factor 32, 1, 4, 8192; §2.1). */
export function predictorInvFreq(base: number, dim: number): Float32Array {
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const inv = 1 / base ** ((2 * i) / dim);
    const lambda = (2 * Math.PI) / inv;
    if (lambda < 8192 / 4) out[i] = inv;
    else if (lambda > 8192) out[i] = inv / 32;
    else {
      const s = (8192 / lambda - 1) / 3;
      out[i] = (1 - s) * (inv / 32) + s * inv;
    }
  }
  return out;
}

/** Rotates x[o .. o + dim) at position p (half-split pairs), the angle formed in f32 as torch does. */
function rotate(x: Float32Array, o: number, dim: number, p: number, inv: Float32Array): void {
  const half = dim / 2;
  for (let i = 0; i < half; i++) {
    const angle = Math.fround(p * inv[i]!);
    const c = Math.fround(Math.cos(angle)), s = Math.fround(Math.sin(angle));
    const a = x[o + i]!, b = x[o + i + half]!;
    x[o + i] = a * c - b * s;
    x[o + i + half] = b * c + a * s;
  }
}

/** y = W x for W [out][in] (row-major), x at xo. */
function linear(w: Float32Array, out: number, inp: number, x: Float32Array, xo: number, y: Float32Array, bias?: Float32Array): void {
  for (let o = 0; o < out; o++) {
    let s = bias ? bias[o]! : 0;
    const wo = o * inp;
    for (let i = 0; i < inp; i++) s += w[wo + i]! * x[xo + i]!;
    y[o] = s;
  }
}

/** erf for the FFN's exact GELU: Numerical Recipes' erfc fit, relative error < 1.2e-7 (below f32's). */
function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

/** One sequence's predictor state: the mini-attention cache and the importance keys of every position. */
export class PredictorState {
  readonly slots: number;
  private readonly r: number;
  private readonly e: number;
  private readonly miniK: Float32Array;
  private readonly miniV: Float32Array;
  /** [position][slot * d′] importance keys, RoPE'd. */
  readonly keys: Float32Array;
  /** The importance queries of the last step's rows, [row][slot * d′]. */
  private queries: Float32Array;
  private queryPos0 = 0;
  private written = 0;
  private readonly invE: Float32Array;
  private readonly invD: Float32Array;
  // scratch
  private readonly R: Float32Array;
  private readonly qkv: Float32Array[];
  private readonly att: Float32Array;
  private readonly hid: Float32Array;
  private readonly z: Float32Array;
  private readonly mid: Float32Array;
  private readonly probs: Float64Array;

  constructor(readonly w: PredictorWeights, readonly capacity: number) {
    const c = w.config;
    this.r = c.hidden / c.reduce;
    this.e = this.r / c.heads;
    this.slots = c.layers * c.heads;
    this.miniK = new Float32Array(capacity * this.r);
    this.miniV = new Float32Array(capacity * this.r);
    this.keys = new Float32Array(capacity * this.slots * c.dPrime);
    this.queries = new Float32Array(this.slots * c.dPrime);
    this.invE = predictorInvFreq(c.ropeTheta, this.e);
    this.invD = predictorInvFreq(c.ropeTheta, c.dPrime);
    this.R = new Float32Array(this.r);
    this.qkv = [new Float32Array(this.r), new Float32Array(this.r), new Float32Array(this.r)];
    this.att = new Float32Array(this.r);
    this.hid = new Float32Array(2 * this.r);
    this.z = new Float32Array(c.hidden);
    this.mid = new Float32Array(c.intDim);
    this.probs = new Float64Array(capacity);
  }

  get length(): number {
    return this.written;
  }

  reset(): void {
    this.written = 0;
  }

  /** Bytes the predictor keeps per sequence: mini-attention K/V and the importance keys (f32). */
  bytes(): number {
    return this.written * (2 * this.r + this.slots * this.w.config.dPrime) * 4;
  }

  /** Consumes layer 0's normalised hidden states x [rows][E] of positions pos0.. (they must follow on). */
  append(pos0: number, rows: number, x: Float32Array): void {
    const c = this.w.config, t = this.w.t, E = c.hidden, r = this.r, e = this.e, H = c.heads, dp = c.dPrime, I = c.intDim;
    if (pos0 !== this.written) throw new Error(`TokenButler predictor: position ${pos0} but ${this.written} are cached`);
    if (pos0 + rows > this.capacity) throw new Error(`TokenButler predictor: ${pos0 + rows} positions > capacity ${this.capacity}`);
    if (this.queries.length < rows * this.slots * dp) this.queries = new Float32Array(rows * this.slots * dp);
    this.queryPos0 = pos0;
    const [q, k, v] = this.qkv as [Float32Array, Float32Array, Float32Array];
    const scale = 1 / Math.sqrt(e);
    for (let row = 0; row < rows; row++) {
      const p = pos0 + row;
      const xo = row * E;
      linear(t.get("input_proj.weight")!, r, E, x, xo, this.R);
      linear(t.get("q_proj_attn.weight")!, r, r, this.R, 0, q);
      linear(t.get("k_proj_attn.weight")!, r, r, this.R, 0, k);
      linear(t.get("v_proj_attn.weight")!, r, r, this.R, 0, v);
      for (let h = 0; h < H; h++) {
        rotate(q, h * e, e, p, this.invE);
        rotate(k, h * e, e, p, this.invE);
      }
      this.miniK.set(k, p * r);
      this.miniV.set(v, p * r);
      for (let h = 0; h < H; h++) {
        let max = -Infinity;
        for (let s = 0; s <= p; s++) {
          let dot = 0;
          for (let i = 0; i < e; i++) dot += q[h * e + i]! * this.miniK[s * r + h * e + i]!;
          this.probs[s] = dot * scale;
          if (this.probs[s]! > max) max = this.probs[s]!;
        }
        let sum = 0;
        for (let s = 0; s <= p; s++) sum += this.probs[s] = Math.exp(this.probs[s]! - max);
        for (let i = 0; i < e; i++) {
          let acc = 0;
          for (let s = 0; s <= p; s++) acc += this.probs[s]! * this.miniV[s * r + h * e + i]!;
          this.att[h * e + i] = acc / sum;
        }
      }
      // LayerNorm over r (eps 1e-5, biased variance)
      let mean = 0;
      for (let i = 0; i < r; i++) mean += this.att[i]!;
      mean /= r;
      let varc = 0;
      for (let i = 0; i < r; i++) varc += (this.att[i]! - mean) ** 2;
      const inv = 1 / Math.sqrt(varc / r + 1e-5);
      const nw = t.get("norm1.weight")!, nb = t.get("norm1.bias")!;
      for (let i = 0; i < r; i++) this.att[i] = (this.att[i]! - mean) * inv * nw[i]! + nb[i]!;
      linear(t.get("ffn.0.weight")!, 2 * r, r, this.att, 0, this.hid, t.get("ffn.0.bias"));
      for (let i = 0; i < 2 * r; i++) this.hid[i] = 0.5 * this.hid[i]! * (1 + erf(this.hid[i]! / Math.SQRT2));
      linear(t.get("ffn.2.weight")!, E, 2 * r, this.hid, 0, this.z, t.get("ffn.2.bias"));
      for (let i = 0; i < E; i++) this.z[i] = this.z[i]! + x[xo + i]!;
      for (const [which, dst, off] of [["q", this.queries, row * this.slots * dp], ["k", this.keys, p * this.slots * dp]] as const) {
        linear(t.get(`${which}_proj_importance.0.weight`)!, I, E, this.z, 0, this.mid);
        for (let i = 0; i < I; i++) this.mid[i] = this.mid[i]! / (1 + Math.exp(-this.mid[i]!));
        const w2 = t.get(`${which}_proj_importance.2.weight`)!;
        for (let o = 0; o < this.slots * dp; o++) {
          let s = 0;
          for (let i = 0; i < I; i++) s += w2[o * I + i]! * this.mid[i]!;
          dst[off + o] = s;
        }
        for (let sl = 0; sl < this.slots; sl++) rotate(dst, off + sl * dp, dp, p, this.invD);
      }
    }
    this.written = pos0 + rows;
  }

  /**
   * Predicted logits S̃ for consumer (layer, head) of the query at position `pos` (a row of the last
   * append) over positions [0, pos], into out. Slot σ = head·N + layer (§2.1).
   */
  scores(layer: number, head: number, pos: number, out: Float64Array): void {
    const c = this.w.config, dp = c.dPrime;
    const row = pos - this.queryPos0;
    if (row < 0 || pos >= this.written) throw new Error(`TokenButler predictor: no query for position ${pos}`);
    const sigma = head * c.layers + layer;
    const qo = row * this.slots * dp + sigma * dp;
    const scale = 1 / Math.sqrt(dp);
    for (let t = 0; t <= pos; t++) {
      const ko = t * this.slots * dp + sigma * dp;
      let s = 0;
      for (let i = 0; i < dp; i++) s += this.queries[qo + i]! * this.keys[ko + i]!;
      out[t] = s * scale;
    }
  }
}
