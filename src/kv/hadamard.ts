/**
 * The orthonormal Walsh–Hadamard transform of a head row (QuaRot-style rotation before quantization): it spreads
 * a row's outlier channels over all channels, so a per-row scale fits the rotated values better. H/√n with n a
 * power of two is its own inverse, so encode and decode run the same transform.
 */

/** Throws unless n is a power of two (the fast transform's sizes). */
export function checkHadamardSize(format: string, n: number): void {
  if (!(Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0)) throw new Error(`--kv-format ${format}: head_dim ${n} is not a power of two (the Hadamard rotation needs one)`);
}

/** x[0..n) ← H·x/√n in place (f64 butterflies, natural order). */
export function hadamard(x: Float64Array, n: number): void {
  for (let h = 1; h < n; h <<= 1) {
    for (let i = 0; i < n; i += h << 1) {
      for (let j = i; j < i + h; j++) {
        const a = x[j]!, b = x[j + h]!;
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  const s = 1 / Math.sqrt(n);
  for (let i = 0; i < n; i++) x[i]! *= s;
}
