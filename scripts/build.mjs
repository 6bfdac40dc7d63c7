// Compiles the TypeScript (src, test, bench) into dist/ and the hand-written WebAssembly text kernels
// (src/**/*.wat) into dist/ beside their importers. One script so that `npm ci` (prepare) and `npm test`
// build the same way.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { join, dirname, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);

execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", join(root, "tsconfig.json")], {
  stdio: "inherit",
});

function* walk(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else yield p;
  }
}

const wats = [...walk(join(root, "src"))].filter((p) => p.endsWith(".wat"));
if (wats.length > 0) {
  const wabt = await require("wabt")();
  for (const wat of wats) {
    const mod = wabt.parseWat(wat, readFileSync(wat, "utf8"), { simd: true, threads: true });
    const { buffer } = mod.toBinary({});
    mod.destroy();
    const out = join(root, "dist", relative(root, wat)).replace(/\.wat$/, ".wasm");
    if (!existsSync(dirname(out))) mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, buffer);
  }
}
