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

/** A lookup of URL paths in `dir` (/ is index.html); paths outside it, and missing files, give undefined. */
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
    if (!(await stat(file).catch(() => undefined))?.isFile()) return undefined;
    return { body: await readFile(file), type: TYPES[extname(file)] ?? "application/octet-stream" };
  };
}

/** Whether the page has been built. */
export async function pageBuilt(dir: string = PAGE_DIR): Promise<boolean> {
  return (await stat(join(dir, "index.html")).catch(() => undefined))?.isFile() ?? false;
}
