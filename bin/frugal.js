#!/usr/bin/env node
// The package's command: runs the compiled CLI (npm ci builds dist/ through the prepare script).
import v8 from "node:v8";

// Relaxed SIMD (the sparse kernels' swizzles, kernels-relaxed.wasm: same results, faster) is behind a
// flag in Node 20 and on by default in later V8s; the flag must be set before any module compiles. A
// one-instruction probe (i8x16.relaxed_swizzle) decides, so runtimes that ship the feature are left alone.
const probe = Uint8Array.of(0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 43, 1, 41, 0,
  253, 12, ...new Array(16).fill(0), 253, 12, ...new Array(16).fill(0), 253, 128, 2, 11);
if (!WebAssembly.validate(probe)) v8.setFlagsFromString("--experimental-wasm-relaxed-simd");

const { main } = await import("../dist/src/cli/main.js");

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    process.stderr.write(`frugal: ${err instanceof Error ? err.message : String(err)}\n`);
    if (process.env.FRUGAL_DEBUG) console.error(err);
    process.exitCode = 1;
  },
);
