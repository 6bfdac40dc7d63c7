/**
 * Selection rules of policies.ts as device work (WebGPU, device-select-store.ts), the same budget rule
 * K_i, sinks and tie order as their host versions.
 */
import type { DeviceSelectOps, KVCache, SelectState } from "../backend/backend.js";
import type { KvStep } from "./store.js";
import type { DevicePolicy } from "./device-select-store.js";
import { SINKS, keepBudget } from "./selection.js";

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
