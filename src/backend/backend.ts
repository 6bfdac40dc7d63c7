import type { RawTensor } from "../tensor/raw.js";
import type { DType } from "../tensor/dtype.js";

/**
 * The small op set a model's forward pass is written against. Ops are recorded in call order and take
 * effect before the next `read` resolves; a CPU backend may run each at once, a GPU backend batches them
 * into one submission. Activations are f32 row-major matrices; weights keep their stored format and
 * every op that takes a weight accepts every format the backend lists in `formats`.
 */
export interface Backend {
  readonly kind: "cpu" | "webgpu";
  /** Weight formats this backend computes with directly; a loader converts anything else to f32. */
  readonly formats: readonly DType[];

  /** Takes a weight in its stored format. The backend may keep or copy `raw.data`. */
  upload(raw: RawTensor): Weight;
  /** A zeroed f32 activation matrix [rows, cols]. */
  activation(rows: number, cols: number): Tensor;
  /** The first `rows` rows of t, sharing its storage. */
  view(t: Tensor, rows: number): Tensor;
  /**
   * Rows [row0, row0 + rows) of t, sharing its storage: batched decoding runs per-sequence ops (RoPE,
   * KV write, attention) on single rows of a multi-row activation. Optional; without it a model runs
   * sequences one forward at a time.
   */
  rowView?(t: Tensor, row0: number, rows: number): Tensor;
  /** Byte alignment a row view's start needs (WebGPU binds storage at multiples of it); 1 when absent. */
  readonly rowViewAlign?: number;
  /**
   * Synchronous access to t's storage, for backends whose tensors live in host memory (the CPU's): KV
   * methods that compute on the host (src/kv/host-store.ts) read q and write attention outputs through it.
   */
  hostView?(t: Tensor): Float32Array;
  /** Layer `layer` of a cache as host arrays [position][kvHeads * headDim] (host-memory backends only). */
  kvView?(cache: KVCache, layer: number): { k: Float32Array; v: Float32Array };
  /**
   * A key/value cache for `layers` layers of `kvHeads` heads of `headDim`, for `capacity` positions, stored
   * in `format` (default "f32"; others only where `kvFormats` lists them: kvWrite quantizes, attention
   * dequantizes, src/kv/format.ts defines the numbers).
   */
  kvCache(layers: number, kvHeads: number, headDim: number, capacity: number, format?: string): KVCache;
  /** KV formats other than f32 that kvCache stores natively (WebGPU: int8). */
  /**
   * StreamingLLM attention of ONE query row at position `pos` over positions [0, sinks) and the last
   * `window` ([pos + 1 - window, pos]), every head alike; sinks + window < pos + 1. Optional: a backend
   * without host views (WebGPU) runs `--kv streaming` with it.
   */
  attentionWindow?(out: Tensor, q: Tensor, cache: KVCache, layer: number, pos: number, heads: number, sinks: number, window: number): void;
  readonly kvFormats?: readonly string[];
  /**
   * KV selection computed on the device (WebGPU): ranking keys, per-head top-K lists and attention over
   * them, recorded into the step's submission. Optional; src/kv/device-select-store.ts uses it.
   */
  readonly selectOps?: DeviceSelectOps;
  /**
   * xKV / per-layer SVD on the device (WebGPU): the exact prefill cache, pre-RoPE key staging, the
   * factors and decode attention over them. Optional; src/kv/xkv/xkv-device-store.ts uses it.
   */
  readonly xkvOps?: DeviceXkvOps;

  /** out[r] = table[tokens[r]] (table [vocab, cols], any format). */
  embed(out: Tensor, table: Weight, tokens: Int32Array): void;
  /** out[r, o] = sum_i x[r, i] * w[o, i]; w is [outFeatures, inFeatures]. Only the first `rows` rows when given. */
  matmul(out: Tensor, x: Tensor, w: Weight, rows?: number): void;
  /** x[r, c] += bias[c]. */
  addBias(x: Tensor, bias: Weight): void;
  /** RMSNorm over each consecutive group of `group` columns of each row, times weight[0..group). */
  rmsnorm(out: Tensor, x: Tensor, weight: Weight, eps: number, group: number): void;
  /** RMSNorm of row `row` of x (all its columns) into the single-row tensor out. */
  rmsnormRow(out: Tensor, x: Tensor, row: number, weight: Weight, eps: number): void;
  /** Rotates each head of width `headDim` in x (row r is position pos0 + r), in place; half-split pairs (i, i + headDim/2). */
  rope(x: Tensor, headDim: number, pos0: number, table: RopeTable): void;
  /** Stores rows of k and v [n, kvHeads * headDim] at positions pos0.. of `layer`. */
  kvWrite(cache: KVCache, layer: number, k: Tensor, v: Tensor, pos0: number): void;
  /**
   * Causal attention of q [n, heads * headDim] (row r at position pos0 + r) over positions 0..pos0+r of
   * `layer`, scaled by 1/sqrt(headDim); grouped-query heads map head h to kv head floor(h / (heads / kvHeads)).
   */
  attention(out: Tensor, q: Tensor, cache: KVCache, layer: number, pos0: number, heads: number): void;

  /**
   * A pool of `slots` f32 caches of one shape (`kvCache`'s arguments): the batched ops below take caches
   * from one pool, which a backend may lay out side by side (WebGPU: one buffer per layer, slot s at a
   * fixed offset) so that one dispatch reaches every sequence's cache through a small (slot, position)
   * table. Optional, together with ropeRows, kvWriteRows and attentionRows. Returns undefined when the
   * pool cannot be made as one (a layer of it would exceed what the device binds at once).
   */
  kvPool?(layers: number, kvHeads: number, headDim: number, capacity: number, slots: number): KVPool | undefined;
  /** `rope` where row r of x is at position positions[r] (one dispatch whatever the rows). */
  ropeRows?(x: Tensor, headDim: number, positions: readonly number[], table: RopeTable): void;
  /** Row r of k and v into caches[r] at position positions[r]; the caches come from one `kvPool`. */
  kvWriteRows?(caches: readonly KVCache[], layer: number, k: Tensor, v: Tensor, positions: readonly number[]): void;
  /**
   * Attention of query row r of q against caches[r] over positions 0..positions[r] (as `attention` of
   * that one row with pos0 = positions[r]); the caches come from one `kvPool`.
   */
  attentionRows?(out: Tensor, q: Tensor, caches: readonly KVCache[], layer: number, positions: readonly number[], heads: number): void;
  /** out = a + b (elementwise; out may alias a). */
  add(out: Tensor, a: Tensor, b: Tensor): void;
  /** out = silu(gate) * up (elementwise; out may alias gate). */
  swiglu(out: Tensor, gate: Tensor, up: Tensor): void;
  /** A table of cos/sin for positions [0, maxPositions) and the given inverse frequencies. */
  ropeTable(inverseFrequencies: Float64Array, maxPositions: number): RopeTable;

  /**
   * Fused ops (optional; src/backend/webgpu/README.md, "Fusions"). Each does what the named sequence of
   * ops does, in fewer dispatches, or returns false having recorded nothing, and the caller then runs the
   * sequence itself; results agree with the sequence to f32 rounding.
   *
   * Uploads weights of one format and row length (q, k, v; gate, up) so that matmulStacked and
   * matmulSwiglu can read them as one matrix. Each returned Weight works with every op like upload's.
   */
  uploadStack?(raws: readonly RawTensor[]): Weight[];
  /** outs[i] = x · ws[i]ᵀ (matmul per weight), for weights uploaded together by uploadStack, in that order. */
  matmulStacked?(outs: readonly Tensor[], x: Tensor, ws: readonly Weight[]): boolean;
  /** out = silu(x · gateᵀ) * (x · upᵀ) (matmul, matmul, swiglu), for gate and up stacked in that order. */
  matmulSwiglu?(out: Tensor, x: Tensor, gate: Weight, up: Weight): boolean;
  /** out += x · wᵀ (matmul into a scratch row, then add): the residual add of a projection. */
  matmulAdd?(out: Tensor, x: Tensor, w: Weight): boolean;
  /**
   * normed = rmsnorm(x, norm, eps) over the whole row, then matmulStacked(outs, normed, ws): what the
   * separate ops would leave in `normed` and `outs`, in fewer dispatches.
   */
  normMatmulStacked?(outs: readonly Tensor[], normed: Tensor, x: Tensor, norm: Weight, eps: number, ws: readonly Weight[]): boolean;
  /** normed = rmsnorm(x, norm, eps), then matmulSwiglu(out, normed, gate, up), likewise. */
  normMatmulSwiglu?(out: Tensor, normed: Tensor, x: Tensor, norm: Weight, eps: number, gate: Weight, up: Weight): boolean;
  /**
   * rope(q), rope(k), kvWrite(cache, layer, k, v, pos0) with heads of `headDim`; k itself may be left
   * unrotated (nothing may read it afterwards).
   */
  ropeKvWrite?(q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: number, pos0: number, headDim: number, table: RopeTable): boolean;
  /**
   * normMatmulStacked(q, k, v) for one row, then rope(q) and ropeKvWrite at position `pos`: q is left
   * rotated, k and v go only to the cache (no k or v tensor is written).
   */
  normMatmulQkvRope?(q: Tensor, normed: Tensor, x: Tensor, norm: Weight, eps: number, ws: readonly [Weight, Weight, Weight], cache: KVCache, layer: number, pos: number, headDim: number, table: RopeTable): boolean;

  /** Rows [row, row + rows) of t, after every recorded op. */
  read(t: Tensor, row?: number, rows?: number): Promise<Float32Array>;
  /**
   * The index of the largest value in the last row of `logits` (ties go to the lowest index), after every
   * recorded op: greedy sampling that brings back only the token id. Optional; without it, `read` the
   * row and take the argmax on the CPU.
   */
  argmax?(logits: Tensor): Promise<number>;
  /**
   * Temperature sampling of the last row of `logits`, after every recorded op: the token id drawn from
   * the same kept set as the CPU's `keptTokens` (top-k, min-p, top-p; 0, 0, 1 disable them) by walking
   * the kept tokens in ascending id order until the running weight reaches `uniform` times their total
   * (`drawKept`). `uniform` in [0, 1) comes from the caller's seeded Rng, so both backends draw alike.
   * Optional; without it, `read` the row and sample on the CPU. No repetition penalty here: with one
   * the caller reads the logits.
   */
  sample?(logits: Tensor, params: SampleParams, uniform: number): Promise<number>;
  /**
   * One token per row of `logits`, picked on the device: argmax where picks[r] is undefined, else `sample`
   * of row r with picks[r] (the same kept set and draw as `sample`). Every row's id comes back in one
   * read, so a batched decode step costs one submission and one wait, not one per sequence. Optional.
   */
  pickRows?(logits: Tensor, picks: readonly ({ params: SampleParams; uniform: number } | undefined)[]): Promise<number[]>;
  /**
   * Pipelined batched decoding: `pickRows`, but the ids stay in a device buffer, what is recorded is
   * submitted, and the call returns at once; `embedPickedRows` feeds them to the next step on the device
   * (as pickAhead/embedPicked do for one sequence). Optional, together with embedPickedRows.
   */
  pickRowsAhead?(logits: Tensor, picks: readonly ({ params: SampleParams; uniform: number } | undefined)[]): PickedRows;
  /** out[i] = table[token of row rows[i] of `picked`], the tokens still on the device. */
  embedPickedRows?(out: Tensor, table: Weight, picked: PickedRows, rows: readonly number[]): void;
  /**
   * Pipelined decoding: picks the next token from the last row of `logits` on the device (argmax, or
   * `sample` as above when given) into a device-side slot, submits what is recorded, and returns at
   * once. The next step's `embedPicked` reads the slot on the device, so the host records step t + 1
   * while the device still runs step t; `id` resolves when the token id reaches the host. Optional, and
   * only together with `embedPicked`.
   */
  pickAhead?(logits: Tensor, sample?: { params: SampleParams; uniform: number }): PickedToken;
  /** out[0] = table[token] where token is a `pickAhead` result still on the device. */
  embedPicked?(out: Tensor, table: Weight, token: PickedToken): void;
  /** Frees every buffer this backend made. */
  dispose(): void;
}

/** Tokens chosen on the device by `pickRowsAhead`, one per row; `ids` brings them to the host. */
export interface PickedRows {
  readonly rows: number;
  readonly ids: Promise<number[]>;
}

/** A token chosen on the device by `pickAhead`; `id` brings it to the host. */
export interface PickedToken {
  readonly id: Promise<number>;
}

/** What a backend's `sample` needs of the sampling options (temperature > 0). */
export interface SampleParams {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
}

export interface Tensor {
  readonly rows: number;
  readonly cols: number;
}

export interface Weight {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export interface KVCache {
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
  /** Set on a cache taken from a `KVPool`: which pool, and which of its slots. */
  readonly slot?: KVSlot;
}

export interface KVSlot {
  readonly pool: KVPool;
  readonly index: number;
}

/**
 * Fixed-size caches handed out and taken back (`Backend.kvPool`). A slot's cache is made once and reused:
 * a sequence that takes it overwrites positions from 0 and attends only to what it wrote.
 */
export interface KVPool {
  readonly slots: number;
  readonly capacity: number;
  /** Slots not taken. */
  readonly available: number;
  /** A free slot's cache; throws when every slot is taken. */
  take(): KVCache;
  /** Gives a taken cache back; throws for a cache of another pool or one already given back. */
  release(cache: KVCache): void;
}

export interface RopeTable {
  readonly maxPositions: number;
  readonly half: number;
}

/** Per-store device buffers of `DeviceSelectOps` (opaque to callers). */
export interface SelectState {
  readonly layers: number;
  readonly heads: number;
  readonly capacity: number;
}

/**
 * Device-side selection for one decode query row (src/backend/webgpu/select-ops.ts). A step records
 * scores into the state's keys, `topK` turns them into layer `layer`'s per-head lists (sinks plus the k
 * best, ties to the lower position, ascending), and `attend` runs attention over those lists.
 */
export interface DeviceSelectOps {
  state(layers: number, heads: number, capacity: number, headDim: number): SelectState;
  /** keys[h][t] = q_h·k_t/√d for t < n (f32 cache). */
  trueScores(state: SelectState, q: Tensor, cache: KVCache, layer: number, n: number, heads: number): void;
  topK(state: SelectState, layer: number, n: number, k: number, sinks: number): void;
  /** Attention of the one query row over layer `layer`'s lists (at most maxCount positions a head). */
  attend(out: Tensor, q: Tensor, cache: KVCache, layer: number, state: SelectState, heads: number, maxCount: number): void;
  /** H2O (accumulated attention per layer, head, position; evicted flags): a new sequence starts. */
  h2oReset(state: SelectState): void;
  /** H2O: adds the prefill rows' causal softmax probabilities (positions pos0 .. pos0 + rows − 1) to the accumulators. */
  h2oPrefill(state: SelectState, q: Tensor, cache: KVCache, layer: number, pos0: number, rows: number, heads: number): void;
  /** H2O: evicts down to k active positions past the sinks (never the last `recent`), lists = sinks ∪ active. */
  h2oSelect(state: SelectState, layer: number, n: number, k: number, recent: number, sinks: number): void;
  /** H2O: adds the decode query's probabilities over layer `layer`'s lists to the accumulators. */
  h2oObserve(state: SelectState, q: Tensor, cache: KVCache, layer: number, heads: number): void;
  /** SnapKV: scores prompt positions 0 .. pos0 + rows − 1 by the last `window` rows' pooled attention. */
  snapPrefill(state: SelectState, q: Tensor, cache: KVCache, layer: number, pos0: number, rows: number, heads: number, window: number, pool: number, recent: number): void;
  /** SnapKV: lists = sinks + the k best by prompt score, generated positions (>= prompt) ranked recent + t. */
  snapSelect(state: SelectState, layer: number, n: number, prompt: number, k: number, sinks: number, recent: number): void;
  /** Quest: recomputes the key min/max bounds of the pages holding positions [from, n) of `layer`. */
  questFold(state: SelectState, cache: KVCache, layer: number, from: number, n: number, page: number): void;
  /** Quest: lists = sinks + whole pages by their bound score, in order, while they fit in k positions. */
  questSelect(state: SelectState, q: Tensor, cache: KVCache, layer: number, n: number, k: number, page: number, sinks: number, heads: number): void;
  /** Layer `layer`'s lists ([heads][capacity] and counts), read back (tests and tools). */
  readSelection(state: SelectState, layer: number): Promise<{ positions: Int32Array; counts: Int32Array }>;
  /** TokenButler's predictor ops (optional; src/kv/tokenbutler/device-predictor.ts). */
  readonly predictor?: DevicePredictorOps;
}

/**
 * What TokenButler's predictor forward needs beyond the model's op set (WebGPU:
 * src/backend/webgpu/predictor-ops.ts), recorded into the step's submission like every other op.
 */
export interface DevicePredictorOps {
  /** out = LayerNorm(x) per row (biased variance, eps) · weight + bias. */
  layerNorm(out: Tensor, x: Tensor, weight: Weight, bias: Weight, eps: number): void;
  /** x = gelu(x), the exact (erf) form, in place. */
  gelu(x: Tensor): void;
  /** x = silu(x) = x / (1 + exp(−x)), in place. */
  silu(x: Tensor): void;
  /** Rows of src into rows row0.. of dst (same width). */
  writeRows(dst: Tensor, src: Tensor, row0: number): void;
  /**
   * Selection keys of layer `layer` for the one query row q̃ [1, slots·d′] over the importance keys
   * [capacity, slots·d′]: keys[h][t] = q̃_σ·K̃_σ[t]/√d′ for t < n, σ = h·layers + layer (spec tokenbutler.md §2.1);
   * positions t < pinLo and t >= pinHi get the largest finite f32 instead (the window variant's pinned
   * anchors and window, taken first by any top-K that covers them; pinLo = 0, pinHi = n: none).
   */
  scores(state: SelectState, q: Tensor, keys: Tensor, layer: number, layers: number, n: number, dPrime: number, pinLo?: number, pinHi?: number): void;
}

/** Per-sequence device buffers of `DeviceXkvOps` (opaque to callers). */
export interface XkvDeviceState {
  readonly layers: number;
  readonly capacity: number;
}

/** One factor pair of an xKV group (src/kv/xkv/xkv-factors.ts's FactorPair fits). */
export interface XkvFactorPair {
  readonly rank: number;
  /** A [T][rank]. */
  readonly a: Float32Array;
  /** [layer in group][kv head] -> B's block [rank][headDim]. */
  readonly b: readonly (readonly Float32Array[])[];
}

/** A compressed prompt as the device takes it (src/kv/xkv/xkv-factors.ts's XkvPrompt fits). */
export interface XkvFactors {
  readonly tokens: number;
  readonly groups: readonly { readonly firstLayer: number; readonly size: number; readonly k: XkvFactorPair; readonly v: XkvFactorPair }[];
}

/**
 * xKV on the device for one sequence at a time (src/backend/webgpu/xkv-ops.ts). Prefill writes and attends
 * over `begin`'s exact cache with the ordinary kvWrite/attention and stashes pre-RoPE keys; `readPrompt`
 * brings the prompt back for the host factorization; `load` uploads the factors, frees the exact cache and
 * returns the cache of the rows after the prompt (position p at index p − T); `attend` is decode attention
 * over [factors ∪ those rows], recorded into the step's submission.
 */
export interface DeviceXkvOps {
  state(layers: number, kvHeads: number, headDim: number, capacity: number, rope: RopeTable): XkvDeviceState;
  /** A new sequence: drops any factors and returns the exact f32 cache for prefill (made on first use). */
  begin(state: XkvDeviceState): KVCache;
  /** Records a copy of pre-RoPE keys k (rows at positions pos0..) of `layer` into the staging. */
  stashKeys(state: XkvDeviceState, layer: number, k: Tensor, pos0: number): void;
  /** Submits what is recorded and reads back positions [0, tokens) of the staged keys and exact values, per layer. */
  readPrompt(state: XkvDeviceState, tokens: number): Promise<{ kPre: Float32Array[]; v: Float32Array[] }>;
  /** Uploads the factors, frees the exact cache and staging, and returns the cache of rows after the prompt. */
  load(state: XkvDeviceState, factors: XkvFactors): KVCache;
  /** Attention of q's rows (positions pos0.., all >= the prompt) over the factors and the rows after the prompt. */
  attend(out: Tensor, q: Tensor, state: XkvDeviceState, layer: number, pos0: number, heads: number): void;
  /** Bytes of the device buffers the state holds now (exact cache and staging, or factors and recent rows). */
  residentBytes(state: XkvDeviceState): number;
  /** Frees every buffer of the state. */
  release(state: XkvDeviceState): void;
}
