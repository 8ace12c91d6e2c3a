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
  readonly minP?: number;
  readonly seed?: number;
  readonly repetitionPenalty?: number;
  readonly presencePenalty?: number;
  readonly frequencyPenalty?: number;
  /** Token id -> bias; ids are checked against the vocabulary by the server. */
  readonly logitBias?: ReadonlyMap<number, number>;
  readonly minTokens?: number;
  readonly ignoreEos: boolean;
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
  if (typeof v !== "number") throw bad(key, `'${key}' must be a number, got ${describe(v)}`);
  // JSON.parse reads 1e400 as Infinity: a number, but none that fits a double
  if (!Number.isFinite(v)) throw bad(key, `'${key}' must be a finite number, got ${v} (out of a double's range)`, "invalid_value");
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

/**
 * The body keys each endpoint reads. Keys that OpenAI's API defines but this server does not implement are refused
 * with a 400 that names them (unless they hold the value that means "off"), and so are keys nobody defines (a typo
 * must not silently change nothing), as OpenAI's own API refuses unrecognized arguments.
 */
const COMMON_KEYS = [
  "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stream", "stream_options",
  "repetition_penalty", "presence_penalty", "frequency_penalty", "logit_bias", "min_tokens", "ignore_eos",
  "n", "logprobs", "user",
];
const COMPLETION_KEYS: ReadonlySet<string> = new Set([...COMMON_KEYS, "prompt", "best_of", "echo", "suffix"]);
const CHAT_KEYS: ReadonlySet<string> = new Set([
  ...COMMON_KEYS, "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls",
  "response_format", "functions", "function_call", "store", "metadata", "modalities",
]);

/** Values of known keys that ask for nothing this server lacks; any other value is refused. */
const OFF: Readonly<Record<string, (v: unknown) => boolean>> = {
  n: (v) => v === 1,
  best_of: (v) => v === 1,
  echo: (v) => v === false,
  logprobs: (v) => v === false || v === 0,
  top_logprobs: (v) => v === 0,
  suffix: (v) => v === "",
  tools: (v) => Array.isArray(v) && v.length === 0,
  functions: (v) => Array.isArray(v) && v.length === 0,
  tool_choice: (v) => v === "none",
  function_call: (v) => v === "none",
  parallel_tool_calls: (v) => typeof v === "boolean",
  response_format: (v) => isObject(v) && v.type === "text",
  store: (v) => v === false,
  metadata: (v) => isObject(v),
  modalities: (v) => Array.isArray(v) && v.length === 1 && v[0] === "text",
  user: (v) => typeof v === "string",
};

function checkKeys(b: Json, known: ReadonlySet<string>): void {
  const unknown = Object.keys(b).filter((k) => !known.has(k));
  if (unknown.length > 0) {
    throw new ApiError(400, `unrecognized request argument${unknown.length > 1 ? "s" : ""} ${quoted(unknown)}`, "invalid_request_error", unknown[0], "unrecognized_parameter");
  }
  const refused = Object.keys(OFF).filter((k) => known.has(k) && b[k] !== undefined && b[k] !== null && !OFF[k](b[k]));
  if (refused.length > 0) {
    throw new ApiError(400, `${quoted(refused)} ${refused.length > 1 ? "are" : "is"} not supported by this server (${refused.map(offHint).join("; ")})`, "invalid_request_error", refused[0], "unsupported_parameter");
  }
}

const quoted = (keys: readonly string[]): string => keys.map((k) => `'${k}'`).join(", ");

function offHint(k: string): string {
  switch (k) {
    case "n": case "best_of": return `${k}: one choice per request`;
    case "echo": case "logprobs": case "top_logprobs": return `${k}: no log-probabilities`;
    case "tools": case "functions": case "tool_choice": case "function_call": case "parallel_tool_calls": return `${k}: no tool calling`;
    case "response_format": return `${k}: only {"type": "text"}`;
    case "suffix": return `${k}: no insertion`;
    default: return `${k}: omit it`;
  }
}

/** logit_bias: {"token id": bias} with biases from -100 to 100, as OpenAI's. */
function logitBias(v: unknown): Map<number, number> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw bad("logit_bias", `'logit_bias' must be an object of token id -> bias, got ${describe(v)}`);
  const m = new Map<number, number>();
  for (const [k, b] of Object.entries(v)) {
    const id = Number(k);
    if (!/^\d+$/.test(k) || !Number.isSafeInteger(id)) throw bad("logit_bias", `'logit_bias' keys must be token ids (non-negative integers), got "${k}"`, "invalid_value");
    if (typeof b !== "number" || !Number.isFinite(b)) throw bad("logit_bias", `'logit_bias' of token ${k} must be a number, got ${describe(b)}`);
    if (b < -100 || b > 100) throw bad("logit_bias", `'logit_bias' of token ${k} must be between -100 and 100, got ${b}`, "invalid_value");
    m.set(id, b);
  }
  return m;
}

function optBoolean(b: Json, key: string): boolean | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw bad(key, `'${key}' must be a boolean, got ${describe(v)}`);
  return v;
}

function sampling(b: Json, known: ReadonlySet<string>): SamplingRequest {
  checkKeys(b, known);
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
  const minP = optNumber(b, "min_p", 0, 1);
  const repetitionPenalty = optNumber(b, "repetition_penalty", 0, Number.MAX_VALUE);
  if (repetitionPenalty === 0) throw bad("repetition_penalty", "'repetition_penalty' must be greater than 0 (1 is off)", "invalid_value");
  const presencePenalty = optNumber(b, "presence_penalty", -2, 2);
  const frequencyPenalty = optNumber(b, "frequency_penalty", -2, 2);
  const minTokens = optNumber(b, "min_tokens", 0, Number.MAX_SAFE_INTEGER, true);
  if (minTokens !== undefined && maxTokens !== undefined && minTokens > maxTokens) {
    throw bad("min_tokens", `'min_tokens' (${minTokens}) must not exceed 'max_tokens' (${maxTokens})`, "invalid_value");
  }
  return {
    model: b.model as string | undefined, maxTokens, temperature, topP, topK: topK !== undefined && topK > 0 ? topK : undefined, seed,
    minP, repetitionPenalty, presencePenalty, frequencyPenalty, logitBias: logitBias(b.logit_bias), minTokens,
    ignoreEos: optBoolean(b, "ignore_eos") === true, stop, stream: b.stream === true, includeUsage,
  };
}

/** Validate a /v1/completions body. */
export function parseCompletion(body: unknown): CompletionRequest {
  if (!isObject(body)) throw bad("", `the request body must be a JSON object, got ${describe(body)}`);
  const s = sampling(body, COMPLETION_KEYS);
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
  const s = sampling(body, CHAT_KEYS);
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
