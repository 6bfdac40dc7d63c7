/**
 * An OpenAI-compatible HTTP server over one loaded model, on node:http: /v1/models, /v1/completions,
 * /v1/chat/completions (streaming as server-sent events, or whole), /health and /metrics. Generation
 * goes through the Scheduler; this file only routes, authenticates, and turns results into responses.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { basename } from "node:path";
import type { Model } from "../model/model.js";
import { Metrics } from "./metrics.js";
import { QueueFullError, Scheduler, ShuttingDownError, type JobResult } from "./scheduler.js";
import * as wire from "./wire.js";
import { ApiError, type FinishReason, type GenerationRequest, type TokenLogprob } from "./wire.js";

export interface ServerOptions {
  /** The model id clients name; defaults to the source's base name. */
  modelId?: string;
  /** When set, /v1/ requests need `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  maxBatch?: number;
  maxQueue?: number;
  /** Largest request body accepted, in bytes. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Default max_tokens when a request gives none (clamped to the context). Default 256. */
  defaultMaxTokens?: number;
  /** Serves GET / and other static files (the chat page) when given. */
  staticFiles?: (path: string) => Promise<{ body: Uint8Array; type: string } | undefined>;
}

/** The model id of a source: its base name without a .bin/.gguf extension; hub ids stay whole. */
export function modelIdOf(source: string): string {
  if (/^[\w.-]+\/[\w.-]+$/.test(source) && !source.startsWith(".")) return source;
  return basename(source.replace(/\/+$/, "")).replace(/\.(bin|gguf)$/, "");
}

type Endpoint = "/v1/models" | "/v1/completions" | "/v1/chat/completions" | "/health" | "/metrics" | "static" | "other";

const ROUTES: Record<string, { methods: string[]; endpoint: Endpoint }> = {
  "/v1/models": { methods: ["GET"], endpoint: "/v1/models" },
  "/v1/completions": { methods: ["POST"], endpoint: "/v1/completions" },
  "/v1/chat/completions": { methods: ["POST"], endpoint: "/v1/chat/completions" },
  "/health": { methods: ["GET"], endpoint: "/health" },
  "/metrics": { methods: ["GET"], endpoint: "/metrics" },
};

/** A running (or ready to run) server. */
export class FrugalServer {
  readonly http: Server;
  readonly scheduler: Scheduler;
  readonly metrics = new Metrics();
  readonly modelId: string;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly streams = new Set<ServerResponse>();
  private closing = false;

  constructor(readonly model: Model, private readonly options: ServerOptions = {}) {
    this.modelId = options.modelId ?? modelIdOf(model.source.source);
    this.scheduler = new Scheduler(model, {
      maxBatch: options.maxBatch,
      maxQueue: options.maxQueue,
      onTick: (tokens, ms) => this.metrics.tick(tokens, ms),
    });
    this.http = createServer((req, res) => void this.handle(req, res));
  }

  /** Compiles the batched step's kernels (Scheduler.warmUp), then starts listening; resolves to the bound address (port 0 picks a free port). */
  async listen(port = 8080, host = "127.0.0.1"): Promise<AddressInfo> {
    await this.scheduler.warmUp();
    return new Promise((resolve, reject) => {
      this.http.once("error", reject);
      this.http.listen(port, host, () => {
        this.http.off("error", reject);
        resolve(this.http.address() as AddressInfo);
      });
    });
  }

  /**
   * Graceful shutdown: stops accepting connections and requests, lets running generations finish for up
   * to `graceMs`, then ends the rest (their streams get an error event and [DONE]) and closes every
   * connection.
   */
  async close(graceMs = 4000): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.http.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), graceMs)));
    if ((await Promise.race([this.scheduler.drain(), late])) === "late") this.scheduler.abortAll();
    clearTimeout(timer);
    await this.scheduler.drain();
    for (const res of this.streams) if (!res.writableEnded) res.end();
    this.http.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0]!;
    const route = ROUTES[path] ?? (path.startsWith("/v1/models/") ? { methods: ["GET"], endpoint: "/v1/models" as Endpoint } : undefined);
    const endpoint: Endpoint = route?.endpoint ?? (this.options.staticFiles && !path.startsWith("/v1/") ? "static" : "other");
    try {
      if (this.closing) {
        res.setHeader("Connection", "close");
        throw new ApiError(503, "the server is shutting down", null, "shutting_down", "server_error");
      }
      if (endpoint === "static") return await this.serveStatic(req, res, path);
      if (!route) throw new ApiError(404, `no route ${req.method} ${path}`, null, "unknown_url");
      if (!route.methods.includes(req.method ?? "")) {
        res.setHeader("Allow", route.methods.join(", "));
        throw new ApiError(405, `${req.method} is not allowed on ${path}; use ${route.methods.join(" or ")}`, null, "method_not_allowed");
      }
      if (path.startsWith("/v1/")) this.authenticate(req);
      switch (route.endpoint) {
        case "/health":
          return this.json(res, endpoint, 200, { status: "ok", model: this.modelId });
        case "/metrics":
          this.metrics.request(endpoint, 200);
          res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
          res.end(
            this.metrics.render({
              queueDepth: this.scheduler.queueDepth,
              activeSequences: this.scheduler.activeSequences,
              maxBatch: this.scheduler.maxBatch,
              maxQueue: this.scheduler.maxQueue,
              freeKvSlots: this.scheduler.freeSlots,
            }),
          );
          return;
        case "/v1/models": {
          if (path === "/v1/models") return this.json(res, endpoint, 200, wire.modelListBody(this.modelId, this.created));
          const id = decodeURIComponent(path.slice("/v1/models/".length));
          if (id !== this.modelId) throw this.unknownModel(id);
          return this.json(res, endpoint, 200, wire.modelBody(this.modelId, this.created));
        }
        case "/v1/chat/completions":
        case "/v1/completions":
          return await this.generate(req, res, route.endpoint);
      }
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, (e as Error).message ?? String(e), null, null, "server_error");
      if (res.headersSent) return this.endStreamWithError(res, err);
      if (err.status === 413) res.setHeader("Connection", "close");
      this.json(res, endpoint, err.status, wire.errorBody(err));
    }
  }

  private authenticate(req: IncomingMessage): void {
    const key = this.options.apiKey;
    if (key === undefined) return;
    const given = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "")?.[1]?.trim() ?? "";
    const a = Buffer.from(given), b = Buffer.from(key);
    if (a.length !== b.length || !timingSafeEqual(a, b)) {
      throw new ApiError(401, "missing or wrong API key: send Authorization: Bearer <key>", null, "invalid_api_key", "authentication_error");
    }
  }

  private unknownModel(id: string): ApiError {
    return new ApiError(404, `the model "${id}" does not exist; this server serves "${this.modelId}"`, "model", "model_not_found");
  }

  private json(res: ServerResponse, endpoint: Endpoint, status: number, body: object): void {
    this.metrics.request(endpoint, status);
    const text = JSON.stringify(body);
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
    res.end(text);
  }

  private readBody(req: IncomingMessage): Promise<string> {
    const limit = this.options.maxBodyBytes ?? 1 << 20;
    const declared = Number(req.headers["content-length"] ?? NaN);
    if (declared > limit) return Promise.reject(new ApiError(413, `the request body has ${declared} bytes; the limit is ${limit}`, null, "request_too_large"));
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > limit) {
          reject(new ApiError(413, `the request body exceeds ${limit} bytes`, null, "request_too_large"));
          req.removeAllListeners("data");
          req.resume();
        } else chunks.push(c);
      });
      req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      req.on("error", reject);
    });
  }

  private async generate(req: IncomingMessage, res: ServerResponse, endpoint: "/v1/chat/completions" | "/v1/completions"): Promise<void> {
    const body = wire.parseJsonBody(await this.readBody(req));
    const chat = endpoint === "/v1/chat/completions";
    const request: GenerationRequest & { messages?: wire.ChatRequest["messages"]; prompt?: string } = chat
      ? wire.parseChatRequest(body)
      : wire.parseCompletionRequest(body);
    if (request.model !== undefined && request.model !== this.modelId) throw this.unknownModel(request.model);

    const model = this.model;
    let promptIds: number[];
    try {
      promptIds = chat ? model.chatPromptIds(request.messages!) : model.tokenizer.encode(request.prompt!, { addSpecialTokens: true });
    } catch (e) {
      throw new ApiError(400, `the prompt could not be rendered: ${(e as Error).message}`, chat ? "messages" : "prompt", "invalid_value");
    }
    if (promptIds.length === 0) throw new ApiError(400, "the prompt is empty and the model has no BOS token", "prompt", "invalid_value");
    const context = model.network.contextLength;
    if (promptIds.length >= context) {
      throw new ApiError(400, `the prompt has ${promptIds.length} tokens; the context holds ${context}`, chat ? "messages" : "prompt", "context_length_exceeded");
    }
    const room = context - promptIds.length;
    if (request.maxTokens !== undefined && request.maxTokens > room) {
      throw new ApiError(
        400,
        `max_tokens is ${request.maxTokens}, but the prompt's ${promptIds.length} tokens leave room for ${room} in the context of ${context}`,
        "max_tokens",
        "context_length_exceeded",
      );
    }
    const maxTokens = request.maxTokens ?? Math.min(this.options.defaultMaxTokens ?? 256, room);

    const head: wire.ResponseHead = {
      id: `${chat ? "chatcmpl" : "cmpl"}-${randomBytes(12).toString("hex")}`,
      created: Math.floor(Date.now() / 1000),
      model: this.modelId,
    };
    const abort = new AbortController();
    // a client that goes away mid-generation frees its slot at the next tick
    res.on("close", () => {
      if (!res.writableFinished) abort.abort();
    });

    let text = "";
    const logprobs: TokenLogprob[] = [];
    const stream = request.stream;
    let offset = 0;
    const done = new Promise<JobResult>((resolve, reject) => {
      const job = {
        promptIds,
        maxTokens,
        temperature: request.temperature,
        topP: request.topP,
        seed: request.seed,
        stop: request.stop,
        topLogprobs: request.topLogprobs,
        signal: abort.signal,
        onPiece: (piece: string, lp?: TokenLogprob) => {
          if (!stream) {
            text += piece;
            if (lp) logprobs.push(lp);
            return;
          }
          if (!res.headersSent) this.startStream(res, endpoint, head, chat);
          const lps = lp ? [lp] : undefined;
          if (chat) this.send(res, wire.chatChunkBody(head, { content: piece }, null, lps));
          else this.send(res, wire.completionBody(head, piece, null, undefined, lps ? { tokens: lps, offset } : undefined));
          offset += piece.length;
        },
        onDone: resolve,
        onError: reject,
      };
      try {
        this.scheduler.submit(job);
      } catch (e) {
        if (e instanceof QueueFullError) reject(new ApiError(429, e.message, null, "queue_full", "rate_limit_error"));
        else if (e instanceof ShuttingDownError) reject(new ApiError(503, e.message, null, "shutting_down", "server_error"));
        else reject(e);
      }
    });
    let result: JobResult;
    try {
      result = await done;
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw new ApiError(500, `generation failed: ${(e as Error).message}`, null, "generation_failed", "server_error");
    }
    this.metrics.promptTokens += result.promptTokens;
    this.metrics.generatedTokens += result.completionTokens;
    if (result.timeToFirstTokenMs !== undefined) this.metrics.timeToFirstToken(result.timeToFirstTokenMs);
    const usage = { promptTokens: result.promptTokens, completionTokens: result.completionTokens };
    if (result.finishReason === "abort") {
      // the client left (nobody to answer) or the server is stopping (end the stream cleanly)
      if (res.destroyed || res.writableEnded) {
        // a stream was counted when it started; a request that never got an answer counts as 499
        if (!res.headersSent) this.metrics.request(endpoint, 499);
        return;
      }
      return this.endStreamWithError(res, new ApiError(503, "generation was cut short: the server is shutting down", null, "shutting_down", "server_error"));
    }
    const finish: FinishReason = result.finishReason;
    if (!stream) {
      const out = chat
        ? wire.chatCompletionBody(head, text, finish, usage, request.topLogprobs !== undefined ? logprobs : undefined)
        : wire.completionBody(head, text, finish, usage, request.topLogprobs !== undefined ? { tokens: logprobs, offset: 0 } : undefined);
      return this.json(res, endpoint, 200, out);
    }
    if (!res.headersSent) this.startStream(res, endpoint, head, chat);
    if (chat) this.send(res, wire.chatChunkBody(head, {}, finish));
    else this.send(res, wire.completionBody(head, "", finish));
    if (request.includeUsage) this.send(res, wire.usageChunkBody(head, chat ? "chat.completion.chunk" : "text_completion", usage));
    this.endStream(res);
  }

  private startStream(res: ServerResponse, endpoint: Endpoint, head: wire.ResponseHead, chat: boolean): void {
    this.metrics.request(endpoint, 200);
    res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", Connection: "keep-alive" });
    this.streams.add(res);
    res.on("close", () => this.streams.delete(res));
    if (chat) this.send(res, wire.chatChunkBody(head, { role: "assistant", content: "" }, null));
  }

  private send(res: ServerResponse, body: object): void {
    if (!res.writableEnded && !res.destroyed) res.write(`data: ${JSON.stringify(body)}\n\n`);
  }

  private endStream(res: ServerResponse): void {
    if (res.writableEnded || res.destroyed) return;
    res.end("data: [DONE]\n\n");
  }

  private endStreamWithError(res: ServerResponse, err: ApiError): void {
    this.send(res, wire.errorBody(err));
    this.endStream(res);
  }

  private async serveStatic(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      throw new ApiError(405, `${req.method} is not allowed on ${path}`, null, "method_not_allowed");
    }
    const file = await this.options.staticFiles!(path);
    if (!file) throw new ApiError(404, `no route GET ${path}`, null, "unknown_url");
    this.metrics.request("static", 200);
    res.writeHead(200, {
      "Content-Type": file.type,
      "Content-Length": file.body.byteLength,
      // the page's CPU backend needs shared memory (cross-origin isolation), as under Vite
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
      "Cross-Origin-Resource-Policy": "same-origin",
    });
    res.end(req.method === "HEAD" ? undefined : file.body);
  }
}
