/** `frugal serve`: loads a model and serves it over HTTP until SIGTERM or SIGINT. */
import { parseArgs } from "node:util";
import { loadModel, DEFAULT_MODEL } from "../load.js";
import { FrugalServer } from "./server.js";
import { PAGE_DIR, pageBuilt, pageFiles } from "./static.js";

export const SERVE_USAGE = `  serve      OpenAI-compatible server    frugal serve [--model SRC] [--host 127.0.0.1] [--port 8080] [--api-key KEY]
                                            [--device cpu|webgpu] [--threads N] [--max-queue N] [--max-batch N]
                                            [--max-body BYTES] [--weights FORMAT] [--kv SPEC] [--kv-format F]
                                            (see docs/server.md)`;

function integer(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isInteger(n) || n < min) throw new Error(`--${name} needs an integer >= ${min}, got "${v}"`);
  return n;
}

/** Runs the server; resolves to the exit code once it has shut down. */
export async function serve(args: string[], log: (line: string) => void = (l) => process.stderr.write(l + "\n")): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      tokenizer: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      "api-key": { type: "string" },
      device: { type: "string" },
      threads: { type: "string" },
      "max-queue": { type: "string" },
      "max-batch": { type: "string" },
      "max-body": { type: "string" },
      offline: { type: "boolean" },
      kv: { type: "string" },
      "kv-format": { type: "string" },
      weights: { type: "string" },
    },
    strict: true,
  });
  if (values.device !== undefined && values.device !== "cpu" && values.device !== "webgpu") {
    throw new Error(`--device must be cpu or webgpu, got "${values.device}"`);
  }
  const port = integer("port", values.port, 0) ?? 8080;
  if (port > 65535) throw new Error(`--port must be at most 65535, got ${port}`);
  const host = values.host ?? "127.0.0.1";
  const apiKey = values["api-key"] ?? process.env["FRUGAL_API_KEY"];
  const model = await loadModel(values.model ?? DEFAULT_MODEL, {
    device: values.device as "cpu" | "webgpu" | undefined,
    threads: integer("threads", values.threads, 1),
    tokenizer: values.tokenizer,
    offline: values.offline,
    kv: values.kv,
    kvFormat: values["kv-format"],
    weights: values.weights,
  });
  const server = new FrugalServer(model, {
    apiKey,
    maxQueue: integer("max-queue", values["max-queue"], 0),
    maxBatch: integer("max-batch", values["max-batch"], 1),
    maxBodyBytes: integer("max-body", values["max-body"], 1),
    staticFiles: pageFiles(),
  });
  try {
    const address = await server.listen(port, host);
    log(
      `frugal: serving ${server.modelId} on http://${address.address}:${address.port}/ ` +
        `(${model.backend.kind}, ${server.scheduler.batched ? "batched" : "round-robin"} decoding of up to ${server.scheduler.maxBatch} sequences` +
        `${apiKey ? ", API key required" : ""})`,
    );
    // the page is built by Vite (npm run web:build), not by the TypeScript build, so it may be missing
    if (!(await pageBuilt())) {
      log(`frugal: no chat page at / (${PAGE_DIR} is not built): run \`npm run web:build\` in the Frugal repository for it; the API works without it`);
    }
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log(`frugal: ${signal}: finishing running requests, then exiting`);
        process.off("SIGTERM", onTerm);
        process.off("SIGINT", onInt);
        server.close(4000).then(resolve, resolve);
      };
      const onTerm = () => stop("SIGTERM");
      const onInt = () => stop("SIGINT");
      process.on("SIGTERM", onTerm);
      process.on("SIGINT", onInt);
    });
  } finally {
    model.dispose();
  }
  return 0;
}
