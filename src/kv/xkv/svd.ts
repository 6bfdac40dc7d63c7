/**
 * Truncated SVD in f64 for xKV (spec xkv.md §3.2). The engine's path is the eigendecomposition of the
 * smaller Gram matrix (XᵀX when T ≥ D, XXᵀ otherwise) by Householder tridiagonalisation + implicit QL
 * (EISPACK tred2/tql2, as JAMA ports them): exact, deterministic, O(n³) with a small constant. One-sided
 * Jacobi on X itself is the independent reference the tests compare against.
 */

export interface TruncatedSvd {
  /** Kept rank r (≤ min(T, D)). */
  rank: number;
  /** A = U_r Σ_r, [T][r] row-major. */
  a: Float64Array;
  /** B = V_rᵀ, [r][D] row-major, orthonormal rows (up to rank deficiency). */
  b: Float64Array;
  /** Every singular value of X, descending, length min(T, D). */
  sigma: Float64Array;
}

/** Eigenvalues (ascending) and eigenvectors (columns of `vectors`, [n][n] row-major) of a symmetric matrix. */
export function symmetricEigen(m: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  if (m.length !== n * n) throw new RangeError(`symmetricEigen: matrix has ${m.length} entries, expected ${n}x${n}`);
  const V = Float64Array.from(m);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  if (n === 1) return { values: Float64Array.of(m[0]!), vectors: Float64Array.of(1) };
  tred2(V, d, e, n);
  // QL rotates pairs of eigenvector columns; on the transpose those are contiguous rows (5-10x faster)
  const W = transpose(V, n);
  tql2(W, d, e, n);
  return { values: d, vectors: transpose(W, n) };
}

function tred2(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j]!;
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] = d[k]! / scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        V[j * n + i] = f;
        g = e[j]! + V[j * n + j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j]! * d[k]!;
          e[k] = e[k]! + V[k * n + j]! * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] = e[j]! / h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] = e[j]! - hh * d[j]!;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        g = e[j]!;
        for (let k = j; k <= i - 1; k++) V[k * n + j] = V[k * n + j]! - (f * e[k]! + g * d[k]!);
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i]!;
    V[i * n + i] = 1;
    const h = d[i + 1]!;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1]! / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1]! * V[k * n + j]!;
        for (let k = 0; k <= i; k++) V[k * n + j] = V[k * n + j]! - g * d[k]!;
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j]!;
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

function transpose(m: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = m[i * n + j]!;
  return t;
}

/** Implicit QL on the tridiagonal (d, e); W holds the eigenvectors as ROWS (the transpose of JAMA's V). */
function tql2(W: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]!) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 200) throw new Error("symmetricEigen: QL iteration did not converge");
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i] = d[i]! - h;
        f += h;
        p = d[m]!;
        let c = 1, c2 = 1, c3 = 1;
        const el1 = e[l + 1]!;
        let s = 0, s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          const ri = i * n, rj = (i + 1) * n;
          for (let k = 0; k < n; k++) {
            h = W[rj + k]!;
            W[rj + k] = s * W[ri + k]! + c * h;
            W[ri + k] = c * W[ri + k]! - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
  // ascending order, vectors moved with their values
  for (let i = 0; i < n - 1; i++) {
    let k = i;
    let p = d[i]!;
    for (let j = i + 1; j < n; j++) {
      if (d[j]! < p) {
        k = j;
        p = d[j]!;
      }
    }
    if (k !== i) {
      d[k] = d[i]!;
      d[i] = p;
      for (let j = 0; j < n; j++) {
        const t = W[i * n + j]!;
        W[i * n + j] = W[k * n + j]!;
        W[k * n + j] = t;
      }
    }
  }
}

/**
 * Best rank-`rank` approximation X ≈ A·B of X [T][D] (row-major, f32 or f64), A = U_r Σ_r, B = V_rᵀ. The
 * rank is clamped to min(T, D), where A·B reproduces X. Each pair's sign is fixed so that the largest-|·|
 * entry of its B row is positive (deterministic output).
 */
export function truncatedSvd(x: Float32Array | Float64Array, T: number, D: number, rank: number): TruncatedSvd {
  if (x.length !== T * D) throw new RangeError(`truncatedSvd: matrix has ${x.length} entries, expected ${T}x${D}`);
  if (!Number.isInteger(rank) || rank < 1) throw new RangeError(`truncatedSvd: rank must be an integer >= 1, got ${rank}`);
  const r = Math.min(rank, T, D);
  const n = Math.min(T, D);
  const a = new Float64Array(T * r);
  const b = new Float64Array(r * D);
  const sigma = new Float64Array(n);
  if (T >= D) {
    const { values, vectors } = symmetricEigen(gramColumns(x, T, D), D);
    for (let i = 0; i < n; i++) sigma[i] = Math.sqrt(Math.max(0, values[D - 1 - i]!));
    for (let j = 0; j < r; j++) {
      const col = D - 1 - j;
      for (let c = 0; c < D; c++) b[j * D + c] = vectors[c * D + col]!;
    }
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < r; j++) {
        let s = 0;
        for (let c = 0; c < D; c++) s += x[t * D + c]! * b[j * D + c]!;
        a[t * r + j] = s;
      }
    }
  } else {
    const { values, vectors } = symmetricEigen(gramRows(x, T, D), T);
    for (let i = 0; i < n; i++) sigma[i] = Math.sqrt(Math.max(0, values[T - 1 - i]!));
    const tiny = (sigma[0] ?? 0) * 1e-13;
    for (let j = 0; j < r; j++) {
      const col = T - 1 - j;
      const s = sigma[j]!;
      if (s <= tiny) continue; // a null direction: A column and B row stay zero, the product is unchanged
      for (let c = 0; c < D; c++) {
        let acc = 0;
        for (let t = 0; t < T; t++) acc += vectors[t * T + col]! * x[t * D + c]!;
        b[j * D + c] = acc / s;
      }
      for (let t = 0; t < T; t++) a[t * r + j] = vectors[t * T + col]! * s;
    }
  }
  fixSigns(a, b, T, D, r);
  return { rank: r, a, b, sigma };
}

function gramColumns(x: Float32Array | Float64Array, T: number, D: number): Float64Array {
  const m = new Float64Array(D * D);
  for (let t = 0; t < T; t++) {
    const row = t * D;
    for (let i = 0; i < D; i++) {
      const xi = x[row + i]!;
      if (xi === 0) continue;
      const mi = i * D;
      for (let j = i; j < D; j++) m[mi + j] = m[mi + j]! + xi * x[row + j]!;
    }
  }
  for (let i = 0; i < D; i++) for (let j = 0; j < i; j++) m[i * D + j] = m[j * D + i]!;
  return m;
}

function gramRows(x: Float32Array | Float64Array, T: number, D: number): Float64Array {
  const m = new Float64Array(T * T);
  for (let i = 0; i < T; i++) {
    for (let j = i; j < T; j++) {
      let s = 0;
      for (let c = 0; c < D; c++) s += x[i * D + c]! * x[j * D + c]!;
      m[i * T + j] = s;
      m[j * T + i] = s;
    }
  }
  return m;
}

function fixSigns(a: Float64Array, b: Float64Array, T: number, D: number, r: number): void {
  for (let j = 0; j < r; j++) {
    let best = 0;
    for (let c = 0; c < D; c++) if (Math.abs(b[j * D + c]!) > Math.abs(best)) best = b[j * D + c]!;
    if (best >= 0) continue;
    for (let c = 0; c < D; c++) b[j * D + c] = -b[j * D + c]!;
    for (let t = 0; t < T; t++) a[t * r + j] = -a[t * r + j]!;
  }
}

/**
 * The reference: singular values of X [T][D] by one-sided Jacobi (Hestenes) on its columns, in f64.
 * Slow (O(sweeps · D² · T)); tests only.
 */
export function jacobiSingularValues(x: Float32Array | Float64Array, T: number, D: number): Float64Array {
  // work on the thinner orientation so that the columns are the short side
  const [rows, cols, at] = T >= D ? [T, D, (t: number, c: number) => x[t * D + c]!] : [D, T, (t: number, c: number) => x[c * D + t]!];
  const u = new Float64Array(rows * cols); // column-major: column c at [c * rows, (c + 1) * rows)
  for (let c = 0; c < cols; c++) for (let t = 0; t < rows; t++) u[c * rows + t] = at(t, c);
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < cols - 1; p++) {
      for (let q = p + 1; q < cols; q++) {
        let alpha = 0, beta = 0, gamma = 0;
        for (let t = 0; t < rows; t++) {
          const up = u[p * rows + t]!, uq = u[q * rows + t]!;
          alpha += up * up;
          beta += uq * uq;
          gamma += up * uq;
        }
        if (gamma === 0 || Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        off = Math.max(off, Math.abs(gamma) / Math.sqrt(alpha * beta));
        const zeta = (beta - alpha) / (2 * gamma);
        const tan = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const cos = 1 / Math.sqrt(1 + tan * tan);
        const sin = cos * tan;
        for (let t = 0; t < rows; t++) {
          const up = u[p * rows + t]!, uq = u[q * rows + t]!;
          u[p * rows + t] = cos * up - sin * uq;
          u[q * rows + t] = sin * up + cos * uq;
        }
      }
    }
    if (off < 1e-14) break;
  }
  const s = new Float64Array(cols);
  for (let c = 0; c < cols; c++) {
    let acc = 0;
    for (let t = 0; t < rows; t++) acc += u[c * rows + t]! ** 2;
    s[c] = Math.sqrt(acc);
  }
  return s.sort().reverse();
}
