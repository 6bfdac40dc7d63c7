/**
 * The bookkeeping of a KV slot pool (Backend.kvPool): which slots are free, and the cache of each slot,
 * made on first use by the backend's `make` (the CPU allocates from its bump arena then; WebGPU returns
 * a view of its pooled buffers). Slots are handed out lowest first, so a pool that never runs full never
 * makes the caches of its upper slots.
 */
import type { KVCache, KVPool, KVSlot } from "../backend/backend.js";

export class SlotPool<C extends KVCache> implements KVPool {
  private readonly caches: (C | undefined)[];
  private readonly taken: boolean[];

  constructor(
    readonly slots: number,
    readonly capacity: number,
    private readonly make: (slot: KVSlot) => C,
  ) {
    if (!(Number.isInteger(slots) && slots >= 1)) throw new RangeError(`a KV pool needs a positive whole number of slots, got ${slots}`);
    this.caches = new Array<C | undefined>(slots).fill(undefined);
    this.taken = new Array<boolean>(slots).fill(false);
  }

  get available(): number {
    return this.taken.filter((t) => !t).length;
  }

  take(): C {
    const i = this.taken.indexOf(false);
    if (i < 0) throw new Error(`KV pool: all ${this.slots} slots are taken`);
    this.taken[i] = true;
    return (this.caches[i] ??= this.make({ pool: this, index: i }));
  }

  release(cache: KVCache): void {
    const slot = cache.slot;
    if (!slot || slot.pool !== this || this.caches[slot.index] !== cache) throw new Error("KV pool: this cache is not one of the pool's");
    if (!this.taken[slot.index]) throw new Error(`KV pool: slot ${slot.index} was already given back`);
    this.taken[slot.index] = false;
  }

  /** The cache of slot `index` if it was made (backends check a batch's caches against it). */
  cacheAt(index: number): C | undefined {
    return this.caches[index];
  }
}

/** The pool every cache of a batch comes from, or undefined when they do not all share one. */
export function commonPool(caches: readonly KVCache[]): KVPool | undefined {
  const pool = caches[0]?.slot?.pool;
  if (!pool) return undefined;
  return caches.every((c) => c.slot?.pool === pool) ? pool : undefined;
}
