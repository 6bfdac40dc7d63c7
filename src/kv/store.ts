/**
 * The KV-cache interface every attention goes through. How a method plugs in:
 *
 * 1. A method is a `KvMethod` registered by name in src/kv/methods.ts (one line). `--kv SPEC` strings
 *    ("name:key=value,...") are parsed strictly by src/kv/spec.ts against the parameters the method
 *    declares; the method's `create` turns the parsed parameters into a `KvStore` factory.
 * 2. A `KvStore` is one sequence's cache. It implements the backend's `KVCache` shape, so every caller of
 *    `LlamaModel.newCache()` / `forward()` is unchanged; `LlamaModel.forward` hands each layer's
 *    position-dependent work to `store.step(s)` instead of calling rope/kvWrite/attention itself.
 * 3. In `step`, the store sees, for rows at positions s.pos0 .. s.pos0 + n - 1 of layer s.layer:
 *      s.h   the layer input after its input RMSNorm (TokenButler's predictor reads layer 0's),
 *      s.q   queries, ALREADY rotated (RoPE at their absolute positions),
 *      s.k   keys BEFORE RoPE (xKV / SVD compress these), rotated in place by `s.rope(s.k)`,
 *      s.v   values (exact),
 *      s.att the output [n, heads * headDim] the store must fill.
 *    A multi-row step (n > 1) is prefill (possibly one chunk of it, pos0 > 0); a one-row step is a decode
 *    step. Stores MUST compute prefill attention over the exact K/V (the identity "first generated token
 *    equals dense at any budget" depends on it) and may compress what they keep afterwards. pos0 = 0
 *    starts a new sequence: the store forgets everything it held (perplexity reuses caches).
 * 4. Storage: a store keeps whatever it wants (backend caches from `backend.kvCache`, host arrays, factor
 *    matrices) and reports it with `bytes()`: the K/V bytes resident now (codes, scales, factors, recent
 *    buffers included; transient per-step scratch excluded). `kvStats()` in src/kv/bytes.ts turns that into
 *    bytes per token for the tables.
 * 5. Attention: `DenseStore` (src/kv/dense.ts) calls the backend's rope, kvWrite and attention ops, so
 *    dense through the interface is bit-identical to the pre-interface path on every backend. A method
 *    that only changes WHICH positions each head attends to expresses that as a `KvSelection` (per QUERY
 *    head, a list of positions, src/kv/selection.ts) and calls `attendSelected` (src/kv/host-attention.ts):
 *    on the CPU it reads the backend's cache rows through `backend.kvView` and the query/output through
 *    `backend.hostView` (both synchronous views of host memory). The WebGPU backend has neither: tensors
 *    live on the GPU and reading them back is asynchronous while `forward` records synchronously, so a
 *    store that needs host data throws a clear error on WebGPU (see docs/kv-cache.md, "Backends"), except
 *    position-only selections: StreamingLLM runs the backend's `attentionWindow` (window-store.ts), and
 *    oracle/H2O/SnapKV/Quest, whose rules also exist as device work (device-policies.ts, run by
 *    device-select-store.ts through `backend.selectOps`: scores, top-K and attention in the step's one
 *    submission), TokenButler, whose predictor also runs as backend ops (tokenbutler/device-*.ts), and
 *    xKV/SVD (xkv/xkv-device-store.ts through `backend.xkvOps`: the prompt is read back and factorized
 *    once, in `settle`, then decode attention runs from the factors on the device). A
 *    selection method implements `SelectionPolicy` (host-store.ts: select, optional prefill/observe/input
 *    hooks) and inherits exact prefill, quantized formats, bytes() and the keep = 1 identity.
 *    Quantized formats (`ctx.format`): a backend listing the format in `kvFormats` stores it natively
 *    (`backend.kvCache(..., format)`, WebGPU int8); otherwise codes live on the host (src/kv/format.ts).
 * 6. Everything is per sequence: stores share nothing, so the server's per-sequence fallback is always
 *    correct. `forwardBatch` (batched decode) accepts only stores whose `batchable` is true (dense in a
 *    backend-native format); it drives their `backendCache` directly, so their `length`/`bytes()` are not
 *    updated by batched steps.
 */
import type { Backend, KVCache, RopeTable, Tensor } from "../backend/backend.js";

/** What a store needs to know about the model it serves. */
export interface KvContext {
  readonly backend: Backend;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Positions this cache holds at most. */
  readonly capacity: number;
  /** The model's RoPE table (a store that re-applies RoPE to reconstructed keys uses backend.rope with it). */
  readonly rope: RopeTable;
  /**
   * The KV number format (`--kv-format`), "f32" when unquantized, or keys, values and layer 0 apart
   * ("k=F,v=F[,k0=F][,v0=F]", host stores only); see src/kv/format.ts `parseKvFormat`.
   */
  readonly format: string;
}

/** One layer's position-dependent work for rows at positions pos0 .. pos0 + rows - 1 (see the file comment). */
export interface KvStep {
  readonly layer: number;
  readonly pos0: number;
  readonly rows: number;
  readonly heads: number;
  /** Layer input after the input RMSNorm [rows, hidden]. */
  readonly h: Tensor;
  /** Post-RoPE queries [rows, heads * headDim]. */
  readonly q: Tensor;
  /** PRE-RoPE keys [rows, kvHeads * headDim]; `rope(k)` rotates them in place. */
  readonly k: Tensor;
  readonly v: Tensor;
  /** Output [rows, heads * headDim]. */
  readonly att: Tensor;
  /** Rotates each head of t in place, row r at position pos0 + r. */
  rope(t: Tensor): void;
}

/** One sequence's KV cache under some method. */
export interface KvStore extends KVCache {
  /** The spec string that made it (e.g. "h2o:keep=0.5"), for tables and errors. */
  readonly spec: string;
  /** Whether forwardBatch may run it (per-row rope/kvWrite/attention on the backend's own cache). */
  readonly batchable: boolean;
  /** Positions written so far (the sequence length the cache holds). */
  readonly length: number;
  step(s: KvStep): void;
  /** K/V bytes resident now (everything the method keeps for the sequence). */
  bytes(): number;
  /** The backend cache underneath, for stores that have one (forwardBatch's dense path). */
  readonly backendCache?: KVCache;
  /**
   * Optional asynchronous end of the prompt: drivers await it (through `settleKv`) after a prefill and
   * before the next one-row step. A store whose compression needs host work on a device backend (xKV/SVD on
   * WebGPU: read the prompt back, factorize it on the host) does it here, since `step` is recorded
   * synchronously; the positions written so far are then the prompt.
   */
  settle?(): Promise<void>;
}

/** Awaits `cache.settle()` where the cache is a store that has one (a no-op for every other cache). */
export async function settleKv(cache: KVCache): Promise<void> {
  if (isKvStore(cache) && cache.settle) await cache.settle();
}

/** A registered method: parsed parameters in, a store factory out. */
export interface KvMethod {
  readonly name: string;
  /** One line for `--help` and errors. */
  readonly summary: string;
  readonly params: readonly KvParam[];
  /** Checks parameter combinations (the parser already checked each one) and returns the factory. */
  create(params: Readonly<Record<string, number>>, spec: string): (ctx: KvContext) => KvStore;
}

/** A numeric parameter of a method. */
export interface KvParam {
  readonly name: string;
  readonly summary: string;
  /** fraction: (0, 1]; share: [0, 1] (0 allowed); signed: [-1, 1]; int: an integer >= min. */
  readonly kind: "fraction" | "share" | "signed" | "int";
  /** Absent: the parameter is required. */
  readonly default?: number;
  /** Smallest accepted value for "int" (default 1). */
  readonly min?: number;
}

export function isKvStore(c: KVCache): c is KvStore {
  return typeof (c as Partial<KvStore>).step === "function";
}
