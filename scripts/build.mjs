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
    if (wat.endsWith(`${join("backend", "cpu", "kernels.wat")}`)) {
      // The same kernels with relaxed SIMD's swizzle (wasm-matmul.ts loads it where the engine validates
      // it). Every swizzle index in kernels.wat is < 16 or 0x80, for which relaxed_swizzle's result is
      // defined and equal to swizzle's; it compiles to a bare pshufb on x64 (swizzle adds a fix-up).
      const relaxed = wabt.parseWat(wat, readFileSync(wat, "utf8").replaceAll("i8x16.swizzle", "i8x16.relaxed_swizzle"),
        { simd: true, threads: true, relaxed_simd: true });
      writeFileSync(out.replace(/\.wasm$/, "-relaxed.wasm"), relaxed.toBinary({}).buffer);
      relaxed.destroy();
    }
  }
}
