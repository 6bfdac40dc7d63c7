/**
 * The small float formats of the 4-bit weight formats: FP4 E2M1 codes (OCP MX), E4M3 scales (OCP FP8, the
 * "FN" variant: no infinities, 0x7F/0xFF are NaN, max 448) and RaZeR's 6-bit E3M3 scale payload.
 */

/** Magnitude of the E2M1 code c (sign bit ignored): 0, 0.5, 1, 1.5, 2, 3, 4, 6. */
export function e2m1Magnitude(c: number): number {
  const m3 = c & 7;
  return m3 < 2 ? 0.5 * m3 : 2 ** ((m3 >> 1) - 1) * (1 + 0.5 * (m3 & 1));
}

/** Value of the E2M1 code c (0x8 is −0). */
export function e2m1Value(c: number): number {
  return c & 8 ? -e2m1Magnitude(c) : e2m1Magnitude(c);
}

/** The E2M1 code of an on-grid value (−0 and negative values get the sign bit); throws off the grid. */
export function e2m1Code(v: number): number {
  const a = Math.abs(v);
  for (let m = 0; m < 8; m++) if (e2m1Magnitude(m) === a) return m | (v < 0 || Object.is(v, -0) ? 8 : 0);
  throw new Error(`e2m1: ${v} is not on the grid`);
}

/** Value of an E4M3 byte: bias 7, subnormals m/8·2^-6, 0x7F and 0xFF are NaN. */
export function e4m3Value(b: number): number {
  const s = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 15;
  const m = b & 7;
  if (e === 15 && m === 7) return NaN;
  return e === 0 ? s * (m / 8) * 2 ** -6 : s * 2 ** (e - 7) * (1 + m / 8);
}

/** Positive finite E4M3 values by code 0..126 (ascending: codes order like their values). */
const E4M3_POSITIVE = Float64Array.from({ length: 127 }, (_, c) => e4m3Value(c));

/**
 * Rounds v to the nearest E4M3 byte, ties to the even code (IEEE round-to-nearest-even), saturating at
 * ±448 (the OCP "satfinite" conversion that scale computations use). NaN gives 0x7F.
 */
export function e4m3Round(v: number): number {
  if (Number.isNaN(v)) return 0x7f;
  const sign = v < 0 || Object.is(v, -0) ? 0x80 : 0;
  const a = Math.abs(v);
  if (a >= 448) return sign | 126;
  // binary search for the first code whose value is >= a
  let lo = 0, hi = 126;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (E4M3_POSITIVE[mid]! < a) lo = mid + 1;
    else hi = mid;
  }
  if (lo === 0 || E4M3_POSITIVE[lo] === a) return sign | lo;
  const below = E4M3_POSITIVE[lo - 1]!, above = E4M3_POSITIVE[lo]!;
  const code = a - below < above - a ? lo - 1 : a - below > above - a ? lo : (lo - 1) % 2 === 0 ? lo - 1 : lo;
  return sign | code;
}

/** Value of a 6-bit E3M3 payload p (spec §4.2): e = p>>3, m = p&7; e == 0 → m/32, else 2^(e−3)·(1 + m/8). */
export function e3m3Value(p: number): number {
  const e = (p >> 3) & 7;
  const m = p & 7;
  return e === 0 ? m / 32 : 2 ** (e - 3) * (1 + m / 8);
}

const E3M3_VALUES = Float64Array.from({ length: 64 }, (_, p) => e3m3Value(p));

/** The payload whose value is nearest to v ≥ 0 (nearest-of-64 search; ties keep the smaller payload). */
export function e3m3Round(v: number): number {
  let best = 0;
  for (let p = 1; p < 64; p++) if (Math.abs(E3M3_VALUES[p]! - v) < Math.abs(E3M3_VALUES[best]! - v)) best = p;
  return best;
}
