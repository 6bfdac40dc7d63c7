/**
 * Hugging Face Hub ids ("org/name") -> a local snapshot folder, in the cache layout the Python
 * huggingface_hub library uses, so that both share downloads:
 *   <cache>/models--org--name/blobs/<etag>              file contents
 *   <cache>/models--org--name/snapshots/<commit>/<file>  symlinks into blobs
 *   <cache>/models--org--name/refs/<revision>            the commit a branch or tag pointed to
 * Only the files a safetensors model needs are fetched. Offline, the cache alone answers.
 */
import { createWriteStream } from "node:fs";
import { copyFile, mkdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";

export interface HubOptions {
  /** Branch, tag or commit; defaults to "main". */
  revision?: string;
  /** Never touch the network (also when HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** The hub cache folder; defaults to HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Reports bytes downloaded of the total still missing from the cache. */
  onProgress?: (what: string, done: number, total: number) => void;
  /** Replaces the global fetch (proxies, tests). */
  fetch?: typeof fetch;
  /** The hub's address; defaults to HF_ENDPOINT, else https://huggingface.co. */
  hubUrl?: string;
  /** For gated or private models; defaults to HF_TOKEN. */
  accessToken?: string;
}

/** Files of a model folder beside the weights; the ones that are absent from a repository are skipped. */
const SIDE_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"];
const INDEX = "model.safetensors.index.json";
const COMMIT = /^[0-9a-f]{40}$/;

/** The hub cache folder that the environment selects, as huggingface_hub resolves it. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env["HF_HUB_CACHE"]) return env["HF_HUB_CACHE"];
  if (env["HUGGINGFACE_HUB_CACHE"]) return env["HUGGINGFACE_HUB_CACHE"];
  if (env["HF_HOME"]) return join(env["HF_HOME"], "hub");
  return join(env["XDG_CACHE_HOME"] || join(homedir(), ".cache"), "huggingface", "hub");
}

/** Whether `s` has the shape of a hub model id: "org/name" (letters, digits, '-', '_', '.'). */
export function isHubId(s: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(s) && !s.includes("..") && !s.includes("--");
}

/** The cache folder of model `id`: <cacheDir>/models--org--name. */
export function repoCacheDir(cacheDir: string, id: string): string {
  return join(cacheDir, `models--${id.split("/").join("--")}`);
}

function isOfflineEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return ["1", "true", "yes", "on"].includes((env["HF_HUB_OFFLINE"] ?? "").toLowerCase());
}

const exists = (p: string) => stat(p).then(() => true, () => false);

/** The cached snapshot folder of `revision` of the repo at `repoDir`, if it holds a config.json. */
export async function cachedSnapshot(repoDir: string, revision: string): Promise<string | undefined> {
  let commit = revision;
  if (!COMMIT.test(revision)) {
    const ref = await readFile(join(repoDir, "refs", revision), "utf8").catch(() => undefined);
    commit = ref?.trim() ?? "";
    if (!COMMIT.test(commit)) return undefined;
  }
  const snapshot = join(repoDir, "snapshots", commit);
  return (await exists(join(snapshot, "config.json"))) ? snapshot : undefined;
}

/**
 * The local folder of hub model `id` at `options.revision`: downloaded into the cache when needed, or
 * taken from the cache when offline or when the hub cannot be reached.
 */
export async function resolveHub(id: string, options: HubOptions = {}): Promise<string> {
  if (!isHubId(id)) throw new Error(`${JSON.stringify(id)} is not a Hugging Face model id (org/name)`);
  const revision = options.revision ?? "main";
  const cacheDir = options.cacheDir ?? hubCacheDir();
  const repoDir = repoCacheDir(cacheDir, id);
  if (options.offline ?? isOfflineEnv()) {
    const snapshot = await cachedSnapshot(repoDir, revision);
    if (snapshot) return snapshot;
    throw new Error(`${id}: offline, and no cached copy of revision ${revision} in ${repoDir} (looked in the hub cache ${cacheDir})`);
  }
  try {
    return await download(id, revision, repoDir, options);
  } catch (e) {
    const status = (e as { statusCode?: unknown }).statusCode;
    if (typeof status === "number") {
      const hint = status === 401 || status === 403 ? " (a gated or private model needs HF_TOKEN)" : status === 404 ? " (no such model or revision)" : "";
      throw new Error(`${id}: the Hugging Face Hub answered ${status}${hint}: ${(e as Error).message}`);
    }
    // like huggingface_hub, a hub that cannot be reached falls back to what the cache holds
    const snapshot = await cachedSnapshot(repoDir, revision);
    if (snapshot) return snapshot;
    // fetch's own message is just "fetch failed"; the reason (ENOTFOUND, ECONNREFUSED, ...) is in its cause
    const cause = (e as { cause?: { message?: string; code?: string } }).cause;
    const why = `${(e as Error).message}${cause ? `: ${cause.message ?? cause.code}` : ""}`;
    throw new Error(
      `${id}: cannot download from the Hugging Face Hub (${why}), and there is no cached copy of revision ${revision} in ${repoDir} (looked in the hub cache ${cacheDir})`,
    );
  }
}

interface FileEntry {
  path: string;
  size: number;
  etag: string;
}

async function download(id: string, revision: string, repoDir: string, options: HubOptions): Promise<string> {
  const hub = await import("@huggingface/hub");
  const token = options.accessToken ?? process.env["HF_TOKEN"];
  const common = {
    fetch: options.fetch,
    hubUrl: options.hubUrl ?? process.env["HF_ENDPOINT"] ?? "https://huggingface.co",
    ...(token ? { accessToken: token } : {}),
  };
  const repo = { type: "model" as const, name: id };
  const info = await hub.modelInfo({ ...common, name: id, revision, additionalFields: ["sha"] });
  const commit = info.sha;
  if (typeof commit !== "string" || !COMMIT.test(commit)) throw new Error(`the hub gave no commit for revision ${revision}`);

  const files = new Map<string, FileEntry>();
  for await (const e of hub.listFiles({ ...common, repo, revision: commit })) {
    if (e.type !== "file") continue;
    const etag = e.lfs?.oid ?? e.oid;
    if (!etag) throw new Error(`the hub listed ${e.path} without an etag`);
    files.set(e.path, { path: e.path, size: e.lfs?.size ?? e.size, etag });
  }
  const snapshot = join(repoDir, "snapshots", commit);
  const fetchFile = async (f: FileEntry, onBytes: (n: number) => void) => {
    const pointer = join(snapshot, f.path);
    if (await exists(pointer)) return;
    const blob = join(repoDir, "blobs", f.etag);
    if (!(await exists(blob))) {
      const body = await hub.downloadFile({ ...common, repo, path: f.path, revision: commit });
      if (!body) throw new Error(`${f.path} is listed but cannot be downloaded`);
      await saveStream(body.stream() as NodeReadableStream<Uint8Array>, blob, f, onBytes);
    }
    await mkdir(dirname(pointer), { recursive: true });
    // Python's cache links snapshots to blobs relatively; where links are not allowed, a copy serves
    await symlink(relative(dirname(pointer), blob), pointer).catch(() => copyFile(blob, pointer));
  };

  let weights: string[];
  const index = files.get(INDEX);
  // the index decides which shards to fetch, so it comes first; its bytes still count in the progress
  let done = 0;
  if (index) {
    await fetchFile(index, (n) => (done += n));
    const map = (JSON.parse(await readFile(join(snapshot, INDEX), "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {};
    weights = [...new Set(Object.values(map))];
  } else if (files.has("model.safetensors")) {
    weights = ["model.safetensors"];
  } else {
    const names = [...files.keys()].filter((p) => !p.includes("/")).join(", ");
    throw new Error(`${id} has no model.safetensors or ${INDEX} (files: ${names}); this engine reads safetensors folders and GGUF files`);
  }
  const missing = weights.filter((w) => !files.has(w));
  if (missing.length > 0) throw new Error(`${id}: ${INDEX} names ${missing.join(", ")}, which the repository lacks`);

  const wanted = [...SIDE_FILES.filter((p) => files.has(p)), ...weights].map((p) => files.get(p)!);
  const todo: FileEntry[] = [];
  for (const f of wanted) if (!(await exists(join(snapshot, f.path)))) todo.push(f);
  const total = done + todo.reduce((sum, f) => sum + f.size, 0);
  for (const f of todo) {
    await fetchFile(f, (n) => {
      done += n;
      options.onProgress?.(id, done, total);
    });
  }

  if (revision !== commit) {
    const ref = join(repoDir, "refs", revision);
    await mkdir(dirname(ref), { recursive: true });
    await writeFile(ref, commit);
  }
  return snapshot;
}

/** Streams a download into blobs/<etag> through a .incomplete file, so that a broken download never looks finished. */
async function saveStream(body: NodeReadableStream<Uint8Array>, blob: string, f: FileEntry, onBytes: (n: number) => void): Promise<void> {
  await mkdir(dirname(blob), { recursive: true });
  const partial = `${blob}.incomplete`;
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      onBytes(chunk.length);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(body), count, createWriteStream(partial));
    if (bytes !== f.size) throw new Error(`${f.path}: received ${bytes} bytes, expected ${f.size}`);
    await rename(partial, blob);
  } catch (e) {
    await rm(partial, { force: true });
    throw e;
  }
}
