/** Files of the browser page (web/, built by `npm run web:build` into dist/web), served by `frugal serve` at /. */
import { readFile, stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** Where `npm run web:build` puts the page. */
export const PAGE_DIR = fileURLToPath(new URL("../../web/", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".svg": "image/svg+xml",
};

/** What / shows while the page is not built: how to build it (the API works without it). */
const NOT_BUILT = new TextEncoder().encode(
  `<!doctype html><meta charset="utf-8"><title>Frugal: the chat page is not built</title>
<p>This is <code>frugal serve</code>: its API (<code>/v1/chat/completions</code>, <code>/v1/completions</code>,
<code>/v1/models</code>) works, but the chat page is not built. Run <code>npm run web:build</code> in the Frugal
repository (it writes <code>dist/web</code>) and reload.</p>\n`,
);

/**
 * A lookup of URL paths in `dir` (/ is index.html); paths outside it, and missing files, give undefined,
 * except / while the page is not built, which gives a page saying how to build it.
 */
export function pageFiles(dir: string = PAGE_DIR): (path: string) => Promise<{ body: Uint8Array; type: string } | undefined> {
  const root = resolve(dir);
  return async (path) => {
    let rel: string;
    try {
      rel = decodeURIComponent(path);
    } catch {
      return undefined;
    }
    const file = resolve(root, "." + (rel.endsWith("/") ? rel + "index.html" : rel));
    if (!file.startsWith(root + sep)) return undefined;
    if (!(await stat(file).catch(() => undefined))?.isFile()) {
      return rel === "/" && !(await pageBuilt(dir)) ? { body: NOT_BUILT, type: TYPES[".html"]! } : undefined;
    }
    return { body: await readFile(file), type: TYPES[extname(file)] ?? "application/octet-stream" };
  };
}

/** Whether the page has been built. */
export async function pageBuilt(dir: string = PAGE_DIR): Promise<boolean> {
  return (await stat(join(dir, "index.html")).catch(() => undefined))?.isFile() ?? false;
}
