/** Shared pieces of the packed-format WebGPU tests: packed random weights and the product bound. */
import assert from "node:assert/strict";
import { quantFormat } from "../../../src/quant/formats.js";
import { packedToRaw } from "../../../src/quant/packed-raw.js";
import type { PackedDType } from "../../../src/tensor/dtype.js";
import type { RawTensor } from "../../../src/tensor/raw.js";
import { Rng, randoms } from "./helpers.js";

/**
 * [N, K]: partial groups and tiles with K % 4 == 0 (guarded vec4 x), and K % 4 != 0 (scalar x). Whole tiles
 * only (unguarded x) are the variants' shape in packed-gemv.test.ts.
 */
export const SHAPES: [number, number][] = [[13, 2 * 1024 + 136], [7, 301]];

/** Random weights of mixed magnitudes (heavy tails pick every RaZeR special value), a zero run, packed by `format`. */
export function packedWeight(format: PackedDType, N: number, K: number, rng: Rng): { raw: RawTensor; w: Float32Array } {
  const f = randoms(N * K, rng);
  for (let i = 0; i < f.length; i++) {
    const r = rng.next();
    f[i] = f[i]! * (r < 0.02 ? 8 : r < 0.1 ? 3 : 1) * 0.05;
  }
  f.fill(0, K, K + Math.min(K, 160)); // row 1 starts with (at least) one all-zero group
  const fmt = quantFormat(format);
  const p = fmt.pack(f, N, K);
  if (format === "razer" || format === "nvfp4-razer") assertEverySpecialValue(format, p.scales);
  return { raw: packedToRaw(`w.${format}`, p), w: fmt.unpack(p) };
}

/** The test weights must pick all four special values (else the SV decoding would go untested). */
function assertEverySpecialValue(format: PackedDType, scales: Uint8Array): void {
  const seen = new Set<number>();
  if (format === "razer") for (let i = 1; i < scales.length; i += 2) seen.add(scales[i]! >> 6);
  else for (const b of scales) seen.add(b >> 6);
  assert.equal(seen.size, 4, `${format}: the test weights use special values ${[...seen].join(", ")} only`);
}

export function assertProduct(got: Float32Array, w: Float32Array, x: Float32Array, rows: number, N: number, K: number, what: string): void {
  const gamma = (K + 16) * 2 ** -24;
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < N; o++) {
      let exact = 0, mag = 0;
      for (let i = 0; i < K; i++) {
        const t = w[o * K + i]! * x[r * K + i]!;
        exact += t;
        mag += Math.abs(t);
      }
      const g = got[r * N + o]!;
      if (!(Math.abs(g - exact) <= gamma * mag)) assert.fail(`${what}: out[${r}][${o}] = ${g}, exact ${exact}, bound ${gamma * mag}`);
    }
  }
}

