import type { ChatMessage } from "../tokenizer/chat.js";

/** An error the API reports as OpenAI does: HTTP status and {error: {message, type, param, code}}. */
export class ApiError extends Error {
  constructor(
    readonly status: number, message: string, readonly type = "invalid_request_error",
    readonly param: string | null = null, readonly code: string | null = null, readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const bad = (param: string, message: string, code: string | null = "invalid_type") => new ApiError(400, message, "invalid_request_error", param, code);

type Json = Record<string, unknown>;

/** What both endpoints share once validated. */
export interface SamplingRequest {
  readonly model?: string;
  readonly maxTokens?: number;
  readonly temperature?: number;
  readonly topP?: number;
  readonly topK?: number;
  readonly seed?: number;
  readonly stop: string[];
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

export interface CompletionRequest extends SamplingRequest {
  /** Text, or token ids. */
  readonly prompt: string | number[];
}

export interface ChatRequest extends SamplingRequest {
  readonly messages: ChatMessage[];
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function optNumber(b: Json, key: string, min: number, max: number, integer = false): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw bad(key, `'${key}' must be a number, got ${describe(v)}`);
  if (integer && !Number.isInteger(v)) throw bad(key, `'${key}' must be an integer, got ${v}`);
  if (v < min || v > max) throw bad(key, `'${key}' must be between ${min} and ${max}, got ${v}`, "invalid_value");
  return v;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `a string`;
  return `${typeof v === "object" ? "an object" : `a ${typeof v}`}`;
}

/** Reject features this server does not have, rather than ignoring them and answering something else. */
function unsupported(b: Json, key: string, ok: (v: unknown) => boolean, what: string): void {
  const v = b[key];
  if (v !== undefined && v !== null && !ok(v)) throw new ApiError(400, `'${key}' ${what}`, "invalid_request_error", key, "unsupported_value");
}

function sampling(b: Json): SamplingRequest {
  if (b.model !== undefined && typeof b.model !== "string") throw bad("model", `'model' must be a string, got ${describe(b.model)}`);
  const maxTokens = optNumber(b, "max_tokens", 1, Number.MAX_SAFE_INTEGER, true) ?? optNumber(b, "max_completion_tokens", 1, Number.MAX_SAFE_INTEGER, true);
  const temperature = optNumber(b, "temperature", 0, 2);
  const topP = optNumber(b, "top_p", 0, 1);
  if (topP === 0) throw bad("top_p", "'top_p' must be greater than 0", "invalid_value");
  const topK = optNumber(b, "top_k", -1, Number.MAX_SAFE_INTEGER, true);
  const seed = optNumber(b, "seed", Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true);
  let stop: string[] = [];
  if (typeof b.stop === "string") stop = [b.stop];
  else if (Array.isArray(b.stop)) {
    if (b.stop.length > 4) throw bad("stop", `'stop' takes at most 4 strings, got ${b.stop.length}`, "invalid_value");
    if (!b.stop.every((s) => typeof s === "string")) throw bad("stop", "'stop' must be a string or an array of strings");
    stop = b.stop as string[];
  } else if (b.stop !== undefined && b.stop !== null) throw bad("stop", `'stop' must be a string or an array of strings, got ${describe(b.stop)}`);
  stop = stop.filter((s) => s.length > 0);
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== "boolean") throw bad("stream", `'stream' must be a boolean, got ${describe(b.stream)}`);
  let includeUsage = false;
  if (b.stream_options !== undefined && b.stream_options !== null) {
    if (!isObject(b.stream_options)) throw bad("stream_options", `'stream_options' must be an object, got ${describe(b.stream_options)}`);
    const u = b.stream_options.include_usage;
    if (u !== undefined && u !== null && typeof u !== "boolean") throw bad("stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
    includeUsage = u === true;
  }
  unsupported(b, "n", (v) => v === 1, "must be 1: this server returns one choice per request");
  unsupported(b, "best_of", (v) => v === 1, "must be 1");
  unsupported(b, "echo", (v) => v === false, "is not supported");
  unsupported(b, "logprobs", (v) => v === false, "is not supported");
  unsupported(b, "top_logprobs", (v) => v === 0, "is not supported");
  unsupported(b, "presence_penalty", (v) => v === 0, "is not supported (only 0)");
  unsupported(b, "frequency_penalty", (v) => v === 0, "is not supported (only 0)");
  unsupported(b, "logit_bias", (v) => isObject(v) && Object.keys(v).length === 0, "is not supported");
  unsupported(b, "tools", (v) => Array.isArray(v) && v.length === 0, "are not supported");
  unsupported(b, "response_format", (v) => isObject(v) && v.type === "text", "is not supported (only {type: \"text\"})");
  return {
    model: b.model as string | undefined, maxTokens, temperature, topP, topK: topK !== undefined && topK > 0 ? topK : undefined, seed,
    stop, stream: b.stream === true, includeUsage,
  };
}

/** Validate a /v1/completions body. */
export function parseCompletion(body: unknown): CompletionRequest {
  if (!isObject(body)) throw bad("", `the request body must be a JSON object, got ${describe(body)}`);
  const s = sampling(body);
  let p = body.prompt;
  if (p === undefined || p === null) throw bad("prompt", "'prompt' is required", "missing_required_parameter");
  // one prompt only; a list of one (text or ids) is accepted as the client libraries send it
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === "string" || Array.isArray(p[0]))) p = p[0];
  if (typeof p === "string") {
    if (p.length === 0) throw bad("prompt", "'prompt' must not be empty", "invalid_value");
    return { ...s, prompt: p };
  }
  if (Array.isArray(p) && p.length > 0 && p.every((t) => typeof t === "number")) {
    if (!p.every((t) => Number.isInteger(t))) throw bad("prompt", "token ids in 'prompt' must be integers");
    return { ...s, prompt: p as number[] };
  }
  if (Array.isArray(p) && p.length === 0) throw bad("prompt", "'prompt' must not be empty", "invalid_value");
  if (Array.isArray(p)) throw bad("prompt", "'prompt' must be a string, an array of token ids, or an array of one of these (one prompt per request)");
  throw bad("prompt", `'prompt' must be a string or an array of token ids, got ${describe(p)}`);
}

const ROLES = new Set(["system", "developer", "user", "assistant"]);

/** Validate a /v1/chat/completions body. */
export function parseChat(body: unknown): ChatRequest {
  if (!isObject(body)) throw bad("", `the request body must be a JSON object, got ${describe(body)}`);
  const s = sampling(body);
  const m = body.messages;
  if (m === undefined || m === null) throw bad("messages", "'messages' is required", "missing_required_parameter");
  if (!Array.isArray(m)) throw bad("messages", `'messages' must be an array, got ${describe(m)}`);
  if (m.length === 0) throw bad("messages", "'messages' must not be empty", "invalid_value");
  const messages = m.map((x, i): ChatMessage => {
    const param = `messages[${i}]`;
    if (!isObject(x)) throw bad(param, `${param} must be an object, got ${describe(x)}`);
    if (typeof x.role !== "string") throw bad(`${param}.role`, `${param}.role must be a string, got ${describe(x.role)}`);
    if (!ROLES.has(x.role)) throw bad(`${param}.role`, `${param}.role must be one of ${[...ROLES].join(", ")}, got "${x.role}"`, "invalid_value");
    return { role: x.role, content: content(x.content, `${param}.content`, x.role === "assistant") };
  });
  return { ...s, messages };
}

/** A message's content: a string, or an array of {type: "text", text} parts (joined). */
function content(c: unknown, param: string, mayBeNull: boolean): string {
  if (typeof c === "string") return c;
  if ((c === null || c === undefined) && mayBeNull) return "";
  if (Array.isArray(c)) {
    return c.map((part, j) => {
      if (isObject(part) && part.type === "text" && typeof part.text === "string") return part.text;
      throw new ApiError(400, `${param}[${j}] must be a text part {type: "text", text: string}: this model reads text only`, "invalid_request_error", `${param}[${j}]`, "unsupported_value");
    }).join("");
  }
  throw bad(param, `${param} must be a string or an array of text parts, got ${describe(c)}`);
}
