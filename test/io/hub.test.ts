import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync, lstatSync, existsSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { homedir } from "node:os";
import { hubCacheDir, isHubId, repoCacheDir, resolveHub } from "../../src/io/hub.js";
import { loadHfFolder } from "../../src/io/load-hf.js";
import { fakeHubFetch, safetensorsBytes, tempDir, writeTinyModel, type HubFiles } from "../fixtures/hf/tiny-hf.js";

const SHA = "0123456789abcdef0123456789abcdef01234567";
const OTHER_SHA = "89abcdef0123456789abcdef0123456789abcdef";

/** A cache holding org/name at SHA with refs/main pointing to it, laid out as huggingface_hub writes it (snapshot files link into blobs). */
function handBuiltCache(): string {
  const cache = tempDir();
  const repo = join(cache, "models--org--name");
  mkdirSync(join(repo, "blobs"), { recursive: true });
  mkdirSync(join(repo, "refs"));
  mkdirSync(join(repo, "snapshots", SHA), { recursive: true });
  writeFileSync(join(repo, "blobs", "b1"), "{}");
  writeFileSync(join(repo, "refs", "main"), SHA);
  // a relative link, as Python's cache makes
  symlinkSync("../../blobs/b1", join(repo, "snapshots", SHA, "config.json"));
  return cache;
}

const unreachable: typeof fetch = async () => {
  throw new TypeError("fetch failed (network is unreachable)");
};

test("the cache folder follows HF_HUB_CACHE, then HF_HOME, then XDG_CACHE_HOME, then ~/.cache", () => {
  assert.equal(hubCacheDir({ HF_HUB_CACHE: "/a", HF_HOME: "/b" }), "/a");
  assert.equal(hubCacheDir({ HF_HOME: "/b", XDG_CACHE_HOME: "/c" }), join("/b", "hub"));
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: "/c" }), join("/c", "huggingface", "hub"));
  assert.equal(hubCacheDir({}), join(homedir(), ".cache", "huggingface", "hub"));
  assert.equal(repoCacheDir("/x", "Qwen/Qwen2.5-0.5B"), join("/x", "models--Qwen--Qwen2.5-0.5B"));
});

test("hub ids are org/name; paths and odd strings are not", () => {
  for (const id of ["Qwen/Qwen2.5-0.5B-Instruct", "meta-llama/Llama-3.2-1B", "HuggingFaceTB/SmolLM2-135M"]) assert.ok(isHubId(id), id);
  for (const s of ["model.gguf", "./org/name", "/abs/path", "a/b/c", "org/..", "org/", "../x", "org/na me"]) assert.ok(!isHubId(s), s);
});

test("offline: refs/main resolves to its snapshot; a commit id resolves directly", async () => {
  const cache = handBuiltCache();
  const snapshot = join(cache, "models--org--name", "snapshots", SHA);
  assert.equal(await resolveHub("org/name", { offline: true, cacheDir: cache }), snapshot);
  assert.equal(await resolveHub("org/name", { offline: true, cacheDir: cache, revision: SHA }), snapshot);
  assert.equal(readFileSync(join(snapshot, "config.json"), "utf8"), "{}");
});

test("offline via HF_HUB_OFFLINE and HF_HUB_CACHE from the environment", async () => {
  const cache = handBuiltCache();
  const saved = { c: process.env["HF_HUB_CACHE"], o: process.env["HF_HUB_OFFLINE"] };
  process.env["HF_HUB_CACHE"] = cache;
  process.env["HF_HUB_OFFLINE"] = "1";
  try {
    // a fetch that fails the test if touched: offline must not use the network
    const forbidden: typeof fetch = async () => assert.fail("offline resolution touched the network");
    assert.equal(await resolveHub("org/name", { fetch: forbidden }), join(cache, "models--org--name", "snapshots", SHA));
  } finally {
    for (const [k, v] of [["HF_HUB_CACHE", saved.c], ["HF_HUB_OFFLINE", saved.o]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test("offline without a cached copy: the error names the id and the cache folder looked in", async () => {
  const cache = tempDir();
  await assert.rejects(resolveHub("org/missing", { offline: true, cacheDir: cache }), (e: Error) => {
    assert.match(e.message, /org\/missing/);
    assert.ok(e.message.includes(join(cache, "models--org--missing")), e.message);
    assert.match(e.message, /no cached copy/);
    return true;
  });
  // a ref to a commit whose snapshot was never completed is no cached copy either
  const partial = handBuiltCache();
  writeFileSync(join(partial, "models--org--name", "refs", "main"), OTHER_SHA);
  await assert.rejects(resolveHub("org/name", { offline: true, cacheDir: partial }), /no cached copy/);
});

test("no network and no cache: the error says exactly that, naming the id and the cache folder", async () => {
  const cache = tempDir();
  await assert.rejects(resolveHub("org/name", { cacheDir: cache, fetch: unreachable }), (e: Error) => {
    assert.match(e.message, /^org\/name: cannot download from the Hugging Face Hub/);
    assert.match(e.message, /network is unreachable/);
    assert.match(e.message, /no cached copy of revision main/);
    assert.ok(e.message.includes(cache), e.message);
    return true;
  });
});

test("no network but a cached copy: the cache answers", async () => {
  const cache = handBuiltCache();
  assert.equal(await resolveHub("org/name", { cacheDir: cache, fetch: unreachable }), join(cache, "models--org--name", "snapshots", SHA));
});

test("download through a fake hub: the Python cache layout, only the needed files, progress to the last byte, then offline reuse", async () => {
  // the repository: a tiny sharded Qwen3 plus files a safetensors loader must not fetch
  const source = writeTinyModel(
    { architectures: ["Qwen3ForCausalLM"], hidden_size: 16, head_dim: 8, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 20, rms_norm_eps: 1e-6, rope_theta: 1e6 },
    { shards: 2, seed: 5 },
  );
  const files: HubFiles = new Map();
  for (const name of readdirSync(source.dir)) files.set(name, new Uint8Array(readFileSync(join(source.dir, name))));
  files.set("consolidated.safetensors", safetensorsBytes([]));
  files.set("README.md", new TextEncoder().encode("# tiny"));
  const log: string[] = [];
  const cache = tempDir();
  const progress: [string, number, number][] = [];
  const dir = await resolveHub("org/tiny", { cacheDir: cache, fetch: fakeHubFetch("org/tiny", SHA, files, log), onProgress: (w, d, t) => progress.push([w, d, t]) });

  const repo = join(cache, "models--org--tiny");
  assert.equal(dir, join(repo, "snapshots", SHA));
  assert.equal(readFileSync(join(repo, "refs", "main"), "utf8"), SHA);
  const fetched = readdirSync(dir).sort();
  assert.deepEqual(fetched, [...files.keys()].filter((f) => f !== "consolidated.safetensors" && f !== "README.md").sort());
  for (const f of fetched) {
    assert.ok(lstatSync(join(dir, f)).isSymbolicLink(), `${f} is a link into blobs`);
    assert.match(readlinkSync(join(dir, f)), /^\.\.\/\.\.\/blobs\/[0-9a-f]{40,64}$/);
    assert.deepEqual(new Uint8Array(readFileSync(join(dir, f))), files.get(f));
  }
  assert.ok(!log.some((p) => p.includes("consolidated") || p.includes("README")), "fetched a file it does not need");
  const total = fetched.reduce((n, f) => n + files.get(f)!.length, 0);
  assert.ok(progress.length > 0);
  assert.deepEqual(progress.at(-1), ["org/tiny", total, total]);
  assert.ok(progress.every(([, d], i) => i === 0 || d >= progress[i - 1]![1]), "progress never goes back");
  assert.ok(!existsSync(join(repo, "blobs")) || readdirSync(join(repo, "blobs")).every((b) => !b.endsWith(".incomplete")));

  const loaded = await loadHfFolder(dir, { name: "org/tiny" });
  const original = await loadHfFolder(source.dir);
  assert.deepEqual(loaded.config, original.config);
  assert.deepEqual([...loaded.tensors.keys()].sort(), [...original.tensors.keys()].sort());
  for (const [name, t] of original.tensors) assert.deepEqual(loaded.tensors.get(name)!.data, t.data, name);

  // a second resolve finds everything in place and downloads nothing; offline works from the same cache
  const before = log.length;
  assert.equal(await resolveHub("org/tiny", { cacheDir: cache, fetch: fakeHubFetch("org/tiny", SHA, files, log) }), dir);
  assert.ok(!log.slice(before).some((p) => p.includes("/resolve/")), "downloaded again");
  assert.equal(await resolveHub("org/tiny", { cacheDir: cache, offline: true }), dir);
});

test("a hub refusal (404) is reported as such, not as a network failure", async () => {
  const notFound: typeof fetch = async () => new Response(JSON.stringify({ error: "Repository not found" }), { status: 404, headers: { "Content-Type": "application/json" } });
  await assert.rejects(resolveHub("org/nope", { cacheDir: tempDir(), fetch: notFound }), /org\/nope: the Hugging Face Hub answered 404.*Repository not found/);
});
