#!/usr/bin/env node
// The package's command: runs the compiled CLI (npm ci builds dist/ through the prepare script).
import { main } from "../dist/src/cli/main.js";

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    process.stderr.write(`frugal: ${err instanceof Error ? err.message : String(err)}\n`);
    if (process.env.FRUGAL_DEBUG) console.error(err);
    process.exitCode = 1;
  },
);
