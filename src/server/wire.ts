/**
 * The OpenAI wire format, and nothing else: request bodies (snake_case JSON) are checked and turned into
 * the server's camelCase requests, and results are turned back into response objects and stream chunks.
 * Every bad field becomes an ApiError naming it, as OpenAI's own error objects do.
 */
import type { ChatMessage } from "../generate/chat-template.js";

/** An error the client caused (or a limit it hit), answered as {"error": {message, type, param, code}}. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type: string = status >= 500 ? "server_error" : "invalid_request_error",
  ) {
    super(message);
  }
}

/** The JSON body of an error response. */
export function errorBody(e: ApiError): object {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

/** Sampling and stopping, common to both endpoints. */
export interface GenerationRequest {
  model?: string;
  stream: boolean;
  /** Send a last chunk with usage (stream_options.include_usage). */
  includeUsage: boolean;
  maxTokens?: number;
  temperature: number;
  topP: number;
  seed?: number;
  stop: string[];
  /** How many alternatives per token to report; undefined: no logprobs at all. */
  topLogprobs?: number;
}

export interface ChatRequest extends GenerationRequest {
  messages: ChatMessage[];
}

export interface CompletionRequest extends GenerationRequest {
  prompt: string;
}

/** A generated token as the logprobs fields report it. */
export interface TokenLogprob {
  token: string;
  logprob: number;
  top: { token: string; logprob: number }[];
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export type FinishReason = "stop" | "length";

type Body = Record<string, unknown>;

/** Parses a request body; malformed JSON or a non-object is a 400. */
export function parseJsonBody(text: string): Body {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, null, "invalid_json");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ApiError(400, "the request body must be a JSON object", null, "invalid_json");
  }
  return value as Body;
}

function invalid(param: string, wants: string, got: unknown): ApiError {
  const shown = JSON.stringify(got);
  return new ApiError(400, `${param} must be ${wants}, got ${shown === undefined ? String(got) : shown.slice(0, 80)}`, param, "invalid_value");
}

function optNumber(b: Body, name: string, lo: number, hi: number, integer = false): number | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  const ok = typeof v === "number" && Number.isFinite(v) && v >= lo && v <= hi && (!integer || Number.isInteger(v));
  if (!ok) throw invalid(name, `${integer ? "an integer" : "a number"} in [${lo}, ${hi}]`, v);
  return v as number;
}

function optBoolean(b: Body, name: string): boolean | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw invalid(name, "a boolean", v);
  return v;
}

function parseStop(b: Body): string[] {
  const v = b["stop"];
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== "string" || s.length === 0)) {
    throw invalid("stop", "a non-empty string or an array of at most 4 non-empty strings", v);
  }
  return list as string[];
}

function parseCommon(b: Body): GenerationRequest {
  const model = b["model"];
  if (model !== undefined && typeof model !== "string") throw invalid("model", "a string", model);
  const n = optNumber(b, "n", 1, 1, true);
  void n; // only one choice per request is generated
  const maxCompletion = optNumber(b, "max_completion_tokens", 1, Number.MAX_SAFE_INTEGER, true);
  const max = optNumber(b, "max_tokens", 1, Number.MAX_SAFE_INTEGER, true);
  const options = b["stream_options"];
  if (options !== undefined && options !== null && (typeof options !== "object" || Array.isArray(options))) {
    throw invalid("stream_options", "an object", options);
  }
  const includeUsage = options ? optBoolean(options as Body, "include_usage") : undefined;
  return {
    model: model as string | undefined,
    stream: optBoolean(b, "stream") ?? false,
    includeUsage: includeUsage ?? false,
    maxTokens: maxCompletion ?? max,
    temperature: optNumber(b, "temperature", 0, 2) ?? 1,
    topP: optNumber(b, "top_p", 0, 1) ?? 1,
    seed: optNumber(b, "seed", -(2 ** 53), 2 ** 53, true),
    stop: parseStop(b),
  };
}

function messageContent(v: unknown, i: number): string {
  if (typeof v === "string") return v;
  // content parts: only text parts can be read by a text model
  if (Array.isArray(v)) {
    return v
      .map((part, j) => {
        const p = part as Body;
        if (typeof p !== "object" || p === null || p["type"] !== "text" || typeof p["text"] !== "string") {
          throw invalid(`messages[${i}].content[${j}]`, 'a text part {"type": "text", "text": ...}', part);
        }
        return p["text"] as string;
      })
      .join("");
  }
  if (v === null || v === undefined) return "";
  throw invalid(`messages[${i}].content`, "a string or an array of text parts", v);
}

/** A /v1/chat/completions body. */
export function parseChatRequest(b: Body): ChatRequest {
  const raw = b["messages"];
  if (raw === undefined) throw new ApiError(400, "messages is required", "messages", "missing_required_parameter");
  if (!Array.isArray(raw)) throw invalid("messages", "an array of messages", raw);
  if (raw.length === 0) throw new ApiError(400, "messages must hold at least one message", "messages", "invalid_value");
  const messages = raw.map((m, i): ChatMessage => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw invalid(`messages[${i}]`, "an object", m);
    const role = (m as Body)["role"];
    if (typeof role !== "string" || role.length === 0) throw invalid(`messages[${i}].role`, "a non-empty string", role);
    return { role, content: messageContent((m as Body)["content"], i) };
  });
  const logprobs = optBoolean(b, "logprobs") ?? false;
  const top = optNumber(b, "top_logprobs", 0, 20, true);
  if (top !== undefined && !logprobs) throw new ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs", "invalid_value");
  return { ...parseCommon(b), messages, topLogprobs: logprobs ? (top ?? 0) : undefined };
}

/** A /v1/completions body. */
export function parseCompletionRequest(b: Body): CompletionRequest {
  let prompt = b["prompt"];
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === "string") prompt = prompt[0];
  if (prompt === undefined) throw new ApiError(400, "prompt is required", "prompt", "missing_required_parameter");
  if (typeof prompt !== "string") throw invalid("prompt", "a string (or an array of one string)", prompt);
  if (optBoolean(b, "echo")) throw new ApiError(400, "echo is not supported", "echo", "unsupported_value");
  const top = optNumber(b, "logprobs", 0, 20, true);
  return { ...parseCommon(b), prompt, topLogprobs: top };
}

/** Usage in OpenAI's names. */
export function usageBody(u: Usage): object {
  return { prompt_tokens: u.promptTokens, completion_tokens: u.completionTokens, total_tokens: u.promptTokens + u.completionTokens };
}

const bytesOf = (s: string) => Array.from(new TextEncoder().encode(s));

/** Chat logprobs ({content: [...]}) of some tokens. */
export function chatLogprobsBody(tokens: readonly TokenLogprob[]): object {
  return {
    content: tokens.map((t) => ({
      token: t.token,
      logprob: t.logprob,
      bytes: bytesOf(t.token),
      top_logprobs: t.top.map((a) => ({ token: a.token, logprob: a.logprob, bytes: bytesOf(a.token) })),
    })),
    refusal: null,
  };
}

/** Legacy completions logprobs of some tokens; `offset` is the text length before the first of them. */
export function completionLogprobsBody(tokens: readonly TokenLogprob[], offset: number): object {
  const textOffset: number[] = [];
  for (const t of tokens) {
    textOffset.push(offset);
    offset += t.token.length;
  }
  return {
    tokens: tokens.map((t) => t.token),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => Object.fromEntries(t.top.map((a) => [a.token, a.logprob]))),
    text_offset: textOffset,
  };
}

/** Identity of one response, shared by all its chunks. */
export interface ResponseHead {
  id: string;
  created: number;
  model: string;
}

/** A whole chat.completion. */
export function chatCompletionBody(h: ResponseHead, text: string, finish: FinishReason, usage: Usage, logprobs?: readonly TokenLogprob[]): object {
  return {
    id: h.id,
    object: "chat.completion",
    created: h.created,
    model: h.model,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: text, refusal: null },
        logprobs: logprobs ? chatLogprobsBody(logprobs) : null,
        finish_reason: finish,
      },
    ],
    usage: usageBody(usage),
  };
}

/** One chat.completion.chunk; `delta` holds role and/or content. */
export function chatChunkBody(
  h: ResponseHead,
  delta: { role?: "assistant"; content?: string },
  finish: FinishReason | null,
  logprobs?: readonly TokenLogprob[],
): object {
  return {
    id: h.id,
    object: "chat.completion.chunk",
    created: h.created,
    model: h.model,
    choices: [{ index: 0, delta, logprobs: logprobs ? chatLogprobsBody(logprobs) : null, finish_reason: finish }],
  };
}

/** The closing usage chunk of a stream (stream_options.include_usage). */
export function usageChunkBody(h: ResponseHead, object: string, usage: Usage): object {
  return { id: h.id, object, created: h.created, model: h.model, choices: [], usage: usageBody(usage) };
}

/** A whole text_completion, or one chunk of a stream (same object, partial text, usage only at the end). */
export function completionBody(
  h: ResponseHead,
  text: string,
  finish: FinishReason | null,
  usage?: Usage,
  logprobs?: { tokens: readonly TokenLogprob[]; offset: number },
): object {
  return {
    id: h.id,
    object: "text_completion",
    created: h.created,
    model: h.model,
    choices: [{ index: 0, text, logprobs: logprobs ? completionLogprobsBody(logprobs.tokens, logprobs.offset) : null, finish_reason: finish }],
    ...(usage ? { usage: usageBody(usage) } : {}),
  };
}

/** GET /v1/models. */
export function modelListBody(id: string, created: number): object {
  return { object: "list", data: [modelBody(id, created)] };
}

/** One model object. */
export function modelBody(id: string, created: number): object {
  return { id, object: "model", created, owned_by: "frugal" };
}
