/**
 * Relaxed SIMD in Node 20: V8 11.3 has it behind `--experimental-wasm-relaxed-simd` (later V8s and Chrome
 * 114+ ship it). The CPU backend's sparse kernels run faster with it and give the same results
 * (kernels-relaxed.wasm, see wasm-matmul.ts), so the command line and the benchmarks turn it on. A V8 flag
 * is process-wide and only affects modules compiled after it is set: call this before the first matmul.
 */

/** A module whose one function uses i8x16.relaxed_swizzle. */
const PROBE = Uint8Array.of(0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 43, 1, 41, 0,
  253, 12, ...new Array<number>(16).fill(0), 253, 12, ...new Array<number>(16).fill(0), 253, 128, 2, 11);

export function hasRelaxedSimd(): boolean {
  return WebAssembly.validate(PROBE);
}

/** Turns relaxed SIMD on where this is Node and it is off; returns whether it is available now. */
export async function enableRelaxedSimd(): Promise<boolean> {
  if (hasRelaxedSimd()) return true;
  if (typeof process === "undefined" || !process.versions?.node) return false;
  const v8 = await import("node:v8");
  v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
  return hasRelaxedSimd();
}
