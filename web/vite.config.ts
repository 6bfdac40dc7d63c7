/**
 * Vite configuration of the browser page (web/): `npm run web:dev` serves it, `npm run web:build` builds
 * it into dist/web. Two things the engine needs beyond plain bundling:
 *  - the CPU backend's WebAssembly kernels (src/backend/cpu/kernels.wat), compiled here with wabt, as
 *    scripts/build.mjs does for Node;
 *  - the shipped stories260K model under models/, the page's default, served at models/stories260K/.
 * Pages are served cross-origin isolated (COOP/COEP), which browsers other than Chromium require for
 * the CPU backend's shared WebAssembly memory.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { ServerResponse } from "node:http";
import { defineConfig, type Connect, type Plugin } from "vite";

const webDir = fileURLToPath(new URL(".", import.meta.url));
const repoDir = resolve(webDir, "..");
const modelsDir = join(repoDir, "models");
/** The model folder copied into a build: the page's default. */
const DEFAULT_MODEL_DIR = "stories260K";
const ASSETS_DIR = "assets";

const ISOLATION_HEADERS = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

function send(res: ServerResponse, body: Uint8Array, type: string): void {
  res.statusCode = 200;
  for (const [k, v] of Object.entries(ISOLATION_HEADERS)) res.setHeader(k, v);
  res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
  res.setHeader("Content-Type", type);
  res.setHeader("Content-Length", body.byteLength);
  res.end(body);
}

const compiledWat = new Map<string, Promise<Uint8Array>>();

/** A src/backend/cpu .wat file compiled to WebAssembly (SIMD and threads), once per process. */
function compileKernels(name = "kernels"): Promise<Uint8Array> {
  let bytes = compiledWat.get(name);
  if (bytes) return bytes;
  bytes = (async () => {
    const wat = join(repoDir, `src/backend/cpu/${name}.wat`);
    const wabt = await (createRequire(import.meta.url)("wabt") as () => Promise<WabtModule>)();
    const mod = wabt.parseWat(wat, readFileSync(wat, "utf8"), { simd: true, threads: true });
    try {
      return new Uint8Array(mod.toBinary({}).buffer);
    } finally {
      mod.destroy();
    }
  })();
  compiledWat.set(name, bytes);
  return bytes;
}

interface WabtModule {
  parseWat(name: string, text: string, features: Record<string, boolean>): { toBinary(o: object): { buffer: Uint8Array }; destroy(): void };
}

/**
 * wasm-matmul.ts fetches `new URL("./kernels.wasm", import.meta.url)` (wasm-packed.ts `./packed-kernels.wasm`). In development that is the file
 * beside the source, which only exists compiled, so we serve it; in a build the URL stays relative to
 * the chunk, so we emit the kernels into the chunks' folder.
 */
function kernelsWasm(): Plugin {
  return {
    name: "frugal:kernels-wasm",
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        const match = /\/src\/backend\/cpu\/(kernels|packed-kernels)\.wasm$/.exec(req.url?.split("?")[0] ?? "");
        if (!match) return next();
        compileKernels(match[1]!).then((bytes) => send(res, bytes, "application/wasm"), next);
      });
    },
    async generateBundle(_, bundle) {
      this.emitFile({ type: "asset", fileName: `${ASSETS_DIR}/kernels.wasm`, source: await compileKernels() });
      // the packed weight formats' kernels (wasm-packed.ts fetches them the same way)
      this.emitFile({ type: "asset", fileName: `${ASSETS_DIR}/packed-kernels.wasm`, source: await compileKernels("packed-kernels") });
      // worker-pool.ts names its Node worker by URL too, and Vite copies the TypeScript source; the page
      // runs the CPU backend on one thread and never loads it
      for (const name of Object.keys(bundle)) if (/\/matmul-worker-[^/]*\.ts$/.test(name)) delete bundle[name];
    },
  };
}

/** Serves files under models/ at models/ (development), and copies the default model into a build. */
function shippedModels(): Plugin {
  const serve: Connect.NextHandleFunction = (req, res, next) => {
    const path = decodeURIComponent(req.url?.split("?")[0] ?? "");
    if (!path.startsWith("/models/")) return next();
    const file = resolve(modelsDir, "." + path.slice("/models".length));
    if (!file.startsWith(modelsDir + sep) || !statSync(file, { throwIfNoEntry: false })?.isFile()) return next();
    send(res, readFileSync(file), extname(file) === ".json" ? "application/json" : "application/octet-stream");
  };
  return {
    name: "frugal:shipped-models",
    configureServer(server) {
      server.middlewares.use(serve);
    },
    generateBundle() {
      const dir = join(modelsDir, DEFAULT_MODEL_DIR);
      for (const name of readdirSync(dir)) {
        this.emitFile({ type: "asset", fileName: `models/${DEFAULT_MODEL_DIR}/${name}`, source: readFileSync(join(dir, name)) });
      }
    },
  };
}

export default defineConfig({
  root: webDir,
  base: "./",
  // a missing model URL must answer 404, not the page (the single-page-app fallback)
  appType: "mpa",
  publicDir: false,
  plugins: [kernelsWasm(), shippedModels()],
  resolve: {
    // device.ts falls back to Dawn (the `webgpu` package) where navigator.gpu is missing; browsers cannot
    // load it, and browser.ts reports the missing navigator.gpu before that fallback is reached
    alias: { webgpu: join(webDir, "no-dawn.ts") },
  },
  server: {
    host: "127.0.0.1",
    headers: ISOLATION_HEADERS,
    fs: { allow: [repoDir] },
  },
  preview: { host: "127.0.0.1", headers: ISOLATION_HEADERS },
  build: {
    outDir: join(repoDir, "dist/web"),
    emptyOutDir: true,
    assetsDir: ASSETS_DIR,
    target: "es2022",
    // the kernels must stay a file: wasm-matmul.ts fetches them by URL
    assetsInlineLimit: 0,
  },
});
