#!/usr/bin/env node
// The package's command: runs the compiled CLI (npm ci builds dist/ through the prepare script).
// Relaxed SIMD first (Node 20 has it behind a flag; the sparse kernels use it): it must be on before any
// WebAssembly module compiles, hence the dynamic import of the CLI.
import { enableRelaxedSimd } from "../dist/src/backend/cpu/relaxed-simd.js";

await enableRelaxedSimd();
const { main } = await import("../dist/src/cli/main.js");

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    process.stderr.write(`frugal: ${err instanceof Error ? err.message : String(err)}\n`);
    if (process.env.FRUGAL_DEBUG) console.error(err);
    process.exitCode = 1;
  },
);
