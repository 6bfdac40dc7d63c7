/**
 * Nearest-level quantization onto a sorted set of levels (a "codebook"): the shared core of the FP4, NF4,
 * RaZeR and NVFP4 quantizers. Each level carries the 4-bit code that stores it.
 */

export interface Codebook {
  /** Levels in ascending order, distinct. */
  readonly levels: Float64Array;
  /** The code of each level. */
  readonly codes: Uint8Array;
  /** Midpoints between neighbouring levels. */
  readonly mids: Float64Array;
}

/** A codebook from (level, code) pairs in any order. */
export function makeCodebook(pairs: readonly (readonly [number, number])[]): Codebook {
  const sorted = [...pairs].sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < sorted.length; i++) if (sorted[i]![0] === sorted[i - 1]![0]) throw new Error(`codebook: level ${sorted[i]![0]} appears twice`);
  const levels = Float64Array.from(sorted, (p) => p[0]);
  return {
    levels,
    codes: Uint8Array.from(sorted, (p) => p[1]),
    mids: Float64Array.from({ length: levels.length - 1 }, (_, i) => (levels[i]! + levels[i + 1]!) / 2),
  };
}

/**
 * Index of the level nearest to t. An exact midpoint goes to the lower (more negative) level, the rule of the
 * RaZeR, FP4 and NF4 quantizers (spec §3.1, §6).
 */
export function nearestLower(cb: Codebook, t: number): number {
  // count the midpoints strictly below t
  const mids = cb.mids;
  let lo = 0, hi = mids.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (mids[m]! < t) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/**
 * Quantizes w[start, end), clamped to ±bound, with scale s onto the codebook: writes the level index of each
 * element into idx[0..] and returns Σ(level·s − w)² in f64 against the unclamped weights. A zero scale maps
 * everything to the level 0 (which the codebook must hold).
 */
export function quantizeGroup(cb: Codebook, w: Float32Array | Float64Array, start: number, end: number, s: number, bound: number, idx: Uint8Array): number {
  let err = 0;
  if (!(s > 0)) {
    const zero = cb.levels.indexOf(0);
    if (zero < 0) throw new Error("codebook: no zero level for a zero scale");
    for (let i = start; i < end; i++) {
      idx[i - start] = zero;
      err += w[i]! * w[i]!;
    }
    return err;
  }
  for (let i = start; i < end; i++) {
    const x = w[i]!;
    const c = x > bound ? bound : x < -bound ? -bound : x;
    const k = nearestLower(cb, c / s);
    idx[i - start] = k;
    const d = cb.levels[k]! * s - x;
    err += d * d;
  }
  return err;
}
