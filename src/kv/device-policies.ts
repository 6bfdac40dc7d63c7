/**
 * Selection rules of policies.ts as device work (WebGPU, device-select-store.ts), the same budget rule
 * K_i, sinks and tie order as their host versions.
 */
import type { DeviceSelectOps, KVCache, SelectState } from "../backend/backend.js";
import type { KvStep } from "./store.js";
import type { DevicePolicy } from "./device-select-store.js";
import { RECENT, SINKS, keepBudget } from "./selection.js";

/** Oracle: each head's top-K_i positions by the true score q·k/√d, plus the sinks. */
export class DeviceOracle implements DevicePolicy {
  constructor(private readonly keep: number) {}
  reset(): void {}
  select(s: KvStep, cache: KVCache, ops: DeviceSelectOps, state: SelectState): number {
    const n = s.pos0 + 1;
    const k = keepBudget(n, this.keep);
    if (k >= n) return 0;
    ops.trueScores(state, s.q, cache, s.layer, n, s.heads);
    ops.topK(state, s.layer, n, k, SINKS);
    return Math.min(n, k + SINKS);
  }
}

/**
 * H2O (original): per (layer, query head) the accumulated attention probability of every position (prefill
 * rows seed it, every selected decode attention adds to it) and evicted-for-good flags; over budget, the
 * lowest-scored positions outside the recent floor(K_i / 2) are evicted.
 */
export class DeviceH2o implements DevicePolicy {
  constructor(private readonly keep: number) {}
  reset(ops: DeviceSelectOps, state: SelectState): void {
    ops.h2oReset(state);
  }
  prefill(s: KvStep, cache: KVCache, ops: DeviceSelectOps, state: SelectState): void {
    if (s.layer > 0) ops.h2oPrefill(state, s.q, cache, s.layer, s.pos0, s.rows, s.heads);
  }
  select(s: KvStep, _cache: KVCache, ops: DeviceSelectOps, state: SelectState): number {
    if (this.keep >= 1) return 0;
    const n = s.pos0 + 1;
    const k = keepBudget(n, this.keep);
    ops.h2oSelect(state, s.layer, n, k, Math.floor(k / 2), SINKS);
    return Math.min(n, k + SINKS);
  }
  observe(s: KvStep, cache: KVCache, ops: DeviceSelectOps, state: SelectState): void {
    ops.h2oObserve(state, s.q, cache, s.layer, s.heads);
  }
}

/**
 * SnapKV (original): at each prefill chunk, prompt positions are scored by the last `window` rows' summed
 * attention, max-pooled over `pool` neighbours (the window itself and generated positions rank first, most
 * recent first); decode takes the top K_i of those scores.
 */
export class DeviceSnapKv implements DevicePolicy {
  private prompt = 0;
  constructor(private readonly keep: number, private readonly window: number, private readonly pool: number, private readonly layers: number) {}
  reset(): void {
    this.prompt = 0;
  }
  prefill(s: KvStep, cache: KVCache, ops: DeviceSelectOps, state: SelectState): void {
    if (s.layer === this.layers - 1) this.prompt = s.pos0 + s.rows;
    if (s.layer > 0) ops.snapPrefill(state, s.q, cache, s.layer, s.pos0, s.rows, s.heads, this.window, this.pool, RECENT);
  }
  select(s: KvStep, _cache: KVCache, ops: DeviceSelectOps, state: SelectState): number {
    const n = s.pos0 + 1;
    const k = keepBudget(n, this.keep);
    if (k >= n) return 0;
    ops.snapSelect(state, s.layer, n, this.prompt, k, SINKS, RECENT);
    return Math.min(n, k + SINKS);
  }
}

/**
 * Quest: per (layer, kv head, page) key bounds kept on the device, refreshed for the pages new positions
 * fall in; a head takes whole pages by their bound score while they fit in K_i, plus the sinks.
 */
export class DeviceQuest implements DevicePolicy {
  private readonly folded: Int32Array;
  constructor(private readonly keep: number, private readonly page: number, layers: number) {
    this.folded = new Int32Array(layers);
  }
  reset(): void {
    this.folded.fill(0);
  }
  select(s: KvStep, cache: KVCache, ops: DeviceSelectOps, state: SelectState): number {
    const n = s.pos0 + 1;
    // the page of the first unfolded position is recomputed whole (it may have been partial)
    ops.questFold(state, cache, s.layer, this.folded[s.layer]!, n, this.page);
    this.folded[s.layer] = n;
    const k = keepBudget(n, this.keep);
    if (k >= n) return 0;
    ops.questSelect(state, s.q, cache, s.layer, n, k, this.page, SINKS, s.heads);
    return Math.min(n, k + SINKS);
  }
}
