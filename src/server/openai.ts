import type { ChatMessage } from "../tokenizer/chat.js";
import { ToolRequestError, parseMessageExtras, parseToolFields, type ToolFields } from "./tools/request.js";
import { MAX_TOP_LOGPROBS } from "../generate/logprobs.js";
import { SchemaError, jsonObjectGrammar, jsonSchemaGrammar, type JsonGrammar } from "../generate/grammar/schema.js";

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

/** Most choices one request may ask for (`n`), as OpenAI's limit. */
export const MAX_CHOICES = 128;

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
  /** Choices to generate from the one prompt (1 to MAX_CHOICES); choice i samples with seed + i when a seed is given. */
  readonly n: number;
  /**
   * Score each generated token, with this many most likely alternatives per position (0 to 20): completions'
   * `logprobs` integer, chat's `top_logprobs` with `logprobs: true`. Undefined: no scores.
   */
  readonly logprobs?: number;
  /** response_format json_object / json_schema, compiled: the text is constrained to its documents. */
  readonly json?: JsonGrammar;
}

export interface CompletionRequest extends SamplingRequest {
  /** Text, or token ids. */
  readonly prompt: string | number[];
  /** The prompt comes back before the completion (and is scored, with `logprobs`). */
  readonly echo: boolean;
}

export interface ChatRequest extends SamplingRequest, ToolFields {
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
const COMPLETION_KEYS: ReadonlySet<string> = new Set([...COMMON_KEYS, "prompt", "best_of", "echo", "suffix", "response_format"]);
const CHAT_KEYS: ReadonlySet<string> = new Set([
  ...COMMON_KEYS, "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls",
  "response_format", "functions", "function_call", "store", "metadata", "modalities", "chat_template_kwargs",
]);

/** Values of known keys that ask for nothing this server lacks; any other value is refused. */
const OFF: Readonly<Record<string, (v: unknown) => boolean>> = {
  best_of: (v) => v === 1,
  suffix: (v) => v === "",
  functions: (v) => Array.isArray(v) && v.length === 0,
  function_call: (v) => v === "none",
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
    case "best_of": return `${k}: no server-side ranking of choices (use n)`;
    case "functions": case "function_call": return `${k}: the deprecated form of tool calling; use tools and tool_choice`;
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
  // max_tokens 0 scores a prompt without generating (completions with echo: lm-evaluation-harness' loglikelihood)
  const maxTokens = optNumber(b, "max_tokens", 0, Number.MAX_SAFE_INTEGER, true) ?? optNumber(b, "max_completion_tokens", 1, Number.MAX_SAFE_INTEGER, true);
  if (maxTokens === 0 && !(known.has("echo") && b.echo === true)) throw bad("max_tokens", "'max_tokens' must be at least 1 ('max_tokens': 0 is for scoring a prompt, with 'echo': true)", "invalid_value");
  const temperature = optNumber(b, "temperature", 0, 2);
  const topP = optNumber(b, "top_p", 0, 1);
  if (topP === 0) throw bad("top_p", "'top_p' must be greater than 0", "invalid_value");
  const topK = optNumber(b, "top_k", -1, Number.MAX_SAFE_INTEGER, true);
  const seed = optNumber(b, "seed", Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true);
  const n = optNumber(b, "n", 1, MAX_CHOICES, true) ?? 1;
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
    ignoreEos: optBoolean(b, "ignore_eos") === true, stop, stream: b.stream === true, includeUsage, n, json: responseFormat(b),
    logprobs: known.has("echo") ? completionLogprobs(b) : chatLogprobs(b),
  };
}

/**
 * response_format: {"type": "text"} (the default), {"type": "json_object"} (any JSON object), or {"type":
 * "json_schema", "json_schema": {"name", "schema", "description", "strict"}} (a document of the schema; no schema:
 * any JSON value). The schema is compiled here (once per distinct schema), so a keyword the server cannot honour
 * is a 400 that names it. With a format the document's end ends the text, so min_tokens and ignore_eos are refused.
 */
function responseFormat(b: Json): JsonGrammar | undefined {
  const v = b.response_format;
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw bad("response_format", `'response_format' must be an object, got ${describe(v)}`);
  const extra = Object.keys(v).find((k) => k !== "type" && k !== "json_schema");
  if (extra !== undefined) throw new ApiError(400, `unrecognized argument 'response_format.${extra}'`, "invalid_request_error", `response_format.${extra}`, "unrecognized_parameter");
  if (v.type === "text") {
    if (v.json_schema !== undefined) throw bad("response_format.json_schema", "'response_format.json_schema' goes with type \"json_schema\"", "invalid_value");
    return undefined;
  }
  for (const k of ["min_tokens", "ignore_eos"]) {
    if (b[k] !== undefined && b[k] !== null && b[k] !== 0 && b[k] !== false) {
      throw bad(k, `'${k}' cannot be combined with 'response_format' ${JSON.stringify(v.type)}: the document's end ends the text`, "invalid_value");
    }
  }
  if (v.type === "json_object") {
    if (v.json_schema !== undefined) throw bad("response_format.json_schema", "'response_format.json_schema' goes with type \"json_schema\"", "invalid_value");
    return jsonObjectGrammar();
  }
  if (v.type !== "json_schema") {
    throw bad("response_format.type", `'response_format.type' must be "text", "json_object" or "json_schema", got ${typeof v.type === "string" ? JSON.stringify(v.type.slice(0, 50)) : describe(v.type)}`, "invalid_value");
  }
  const js = v.json_schema;
  if (!isObject(js)) throw bad("response_format.json_schema", "'response_format.json_schema' must be an object {name, schema, strict}", js === undefined ? "missing_required_parameter" : "invalid_type");
  const unknown = Object.keys(js).find((k) => !["name", "schema", "description", "strict"].includes(k));
  if (unknown !== undefined) throw new ApiError(400, `unrecognized argument 'response_format.json_schema.${unknown}'`, "invalid_request_error", `response_format.json_schema.${unknown}`, "unrecognized_parameter");
  if (typeof js.name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(js.name)) {
    throw bad("response_format.json_schema.name", "'response_format.json_schema.name' must be 1 to 64 letters, digits, underscores or dashes", js.name === undefined ? "missing_required_parameter" : "invalid_value");
  }
  if (js.description !== undefined && typeof js.description !== "string") throw bad("response_format.json_schema.description", "'response_format.json_schema.description' must be a string");
  if (js.strict !== undefined && js.strict !== null && typeof js.strict !== "boolean") throw bad("response_format.json_schema.strict", "'response_format.json_schema.strict' must be a boolean");
  try {
    // strict or not, every token is constrained: the output always matches
    return jsonSchemaGrammar(js.schema === undefined || js.schema === null ? true : js.schema);
  } catch (e) {
    if (e instanceof SchemaError) throw new ApiError(400, e.message, "invalid_request_error", "response_format.json_schema.schema", "invalid_json_schema");
    throw e;
  }
}

/** Completions' `logprobs`: how many alternatives per position, 0 to 20 (null or false: no scores). */
function completionLogprobs(b: Json): number | undefined {
  if (b.logprobs === false) return undefined;
  if (b.logprobs === true) throw bad("logprobs", "'logprobs' of /v1/completions is an integer (how many alternatives per token, 0 to 20), got true", "invalid_value");
  return optNumber(b, "logprobs", 0, MAX_TOP_LOGPROBS, true);
}

/** Chat's `logprobs` (boolean) and `top_logprobs` (0 to 20, which needs logprobs: true). */
function chatLogprobs(b: Json): number | undefined {
  const on = optBoolean(b, "logprobs") === true;
  const top = optNumber(b, "top_logprobs", 0, MAX_TOP_LOGPROBS, true);
  if (!on && top !== undefined && top > 0) throw bad("top_logprobs", "'top_logprobs' needs 'logprobs': true", "invalid_value");
  return on ? top ?? 0 : undefined;
}

/** Validate a /v1/completions body. */
export function parseCompletion(body: unknown): CompletionRequest {
  if (!isObject(body)) throw bad("", `the request body must be a JSON object, got ${describe(body)}`);
  const s = sampling(body, COMPLETION_KEYS);
  let p = body.prompt;
  if (p === undefined || p === null) throw bad("prompt", "'prompt' is required", "missing_required_parameter");
  // one prompt only; a list of one (text or ids) is accepted as the client libraries send it
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === "string" || Array.isArray(p[0]))) p = p[0];
  const echo = optBoolean(body, "echo") === true;
  if (typeof p === "string") {
    if (p.length === 0) throw bad("prompt", "'prompt' must not be empty", "invalid_value");
    return { ...s, prompt: p, echo };
  }
  if (Array.isArray(p) && p.length > 0 && p.every((t) => typeof t === "number")) {
    if (!p.every((t) => Number.isInteger(t))) throw bad("prompt", "token ids in 'prompt' must be integers");
    return { ...s, prompt: p as number[], echo };
  }
  if (Array.isArray(p) && p.length === 0) throw bad("prompt", "'prompt' must not be empty", "invalid_value");
  if (Array.isArray(p)) throw bad("prompt", "'prompt' must be a string, an array of token ids, or an array of one of these (one prompt per request)");
  throw bad("prompt", `'prompt' must be a string or an array of token ids, got ${describe(p)}`);
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

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
    // an assistant turn that only calls tools has content null
    return { role: x.role, content: content(x.content, `${param}.content`, x.role === "assistant"), ...toolPart(() => parseMessageExtras(x, i)) };
  });
  return { ...s, messages, ...toolPart(() => parseToolFields(body)) };
}

/** tools, tool_choice, parallel_tool_calls, chat_template_kwargs and the tool parts of messages (./tools/request.ts), errors as 400s. */
function toolPart<T>(read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof ToolRequestError) throw bad(e.param, e.message, e.code);
    throw e;
  }
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
