/**
 * The chat request's tool fields (tools, tool_choice, parallel_tool_calls, chat_template_kwargs) and the tool parts
 * of its messages (an assistant's tool_calls and reasoning_content, a tool message's tool_call_id), validated as
 * OpenAI's API does. Errors are ToolRequestErrors that name the field; openai.ts turns them into 400 replies.
 */
import type { ChatMessage, ChatToolCall } from "../../tokenizer/chat.js";

/** A function the model may call (OpenAI's {type: "function", function: {...}}). */
export interface ToolSpec {
  readonly type: "function";
  readonly function: {
    readonly name: string;
    readonly description?: string;
    /** A JSON schema of the arguments object. */
    readonly parameters?: Readonly<Record<string, unknown>>;
    readonly strict?: boolean;
  };
}

/** "auto": the model decides; "required": at least one call; a name: that function. */
export type ToolChoice = "none" | "auto" | "required" | { readonly type: "function"; readonly function: { readonly name: string } };

export interface ToolFields {
  readonly tools: readonly ToolSpec[];
  readonly toolChoice: ToolChoice;
  readonly parallelToolCalls: boolean;
  /** Extra chat-template variables (vLLM's and SGLang's chat_template_kwargs: enable_thinking, thinking, ...). */
  readonly templateVars: Readonly<Record<string, unknown>>;
}

/** A bad tool field: `param` names it, `code` is OpenAI's error code. */
export class ToolRequestError extends Error {
  constructor(readonly param: string, message: string, readonly code = "invalid_value") {
    super(message);
    this.name = "ToolRequestError";
  }
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const given = (v: unknown): boolean => v !== undefined && v !== null;
const kind = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "an array" : typeof v === "object" ? "an object" : `a ${typeof v}`);

/** OpenAI's rule for function names. */
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_TOOLS = 128;

/** tools, tool_choice, parallel_tool_calls and chat_template_kwargs of a chat body. */
export function parseToolFields(b: Json): ToolFields {
  const tools = parseTools(b.tools);
  const toolChoice = parseToolChoice(b.tool_choice, tools);
  let parallelToolCalls = true;
  if (given(b.parallel_tool_calls)) {
    if (typeof b.parallel_tool_calls !== "boolean") throw new ToolRequestError("parallel_tool_calls", `'parallel_tool_calls' must be a boolean, got ${kind(b.parallel_tool_calls)}`, "invalid_type");
    parallelToolCalls = b.parallel_tool_calls;
  }
  let templateVars: Json = {};
  if (given(b.chat_template_kwargs)) {
    if (!isObject(b.chat_template_kwargs)) throw new ToolRequestError("chat_template_kwargs", `'chat_template_kwargs' must be an object of template variables, got ${kind(b.chat_template_kwargs)}`, "invalid_type");
    templateVars = b.chat_template_kwargs;
  }
  return { tools, toolChoice, parallelToolCalls, templateVars };
}

function parseTools(v: unknown): ToolSpec[] {
  if (!given(v)) return [];
  if (!Array.isArray(v)) throw new ToolRequestError("tools", `'tools' must be an array of {type: "function", function: {...}}, got ${kind(v)}`, "invalid_type");
  if (v.length > MAX_TOOLS) throw new ToolRequestError("tools", `'tools' takes at most ${MAX_TOOLS} functions, got ${v.length}`);
  const names = new Set<string>();
  return v.map((t, i): ToolSpec => {
    const p = `tools[${i}]`;
    if (!isObject(t)) throw new ToolRequestError(p, `${p} must be an object, got ${kind(t)}`, "invalid_type");
    if (t.type !== "function") throw new ToolRequestError(`${p}.type`, `${p}.type must be "function", got ${JSON.stringify(t.type) ?? "nothing"}`);
    const f = t.function;
    if (!isObject(f)) throw new ToolRequestError(`${p}.function`, `${p}.function must be an object with a name, got ${kind(f)}`, "invalid_type");
    if (typeof f.name !== "string" || !NAME.test(f.name)) {
      throw new ToolRequestError(`${p}.function.name`, `${p}.function.name must be 1 to 64 letters, digits, underscores or dashes, got ${JSON.stringify(f.name) ?? "nothing"}`);
    }
    if (names.has(f.name)) throw new ToolRequestError(`${p}.function.name`, `${p}.function.name "${f.name}" is given twice`);
    names.add(f.name);
    if (given(f.description) && typeof f.description !== "string") throw new ToolRequestError(`${p}.function.description`, `${p}.function.description must be a string`, "invalid_type");
    if (given(f.parameters) && !isObject(f.parameters)) throw new ToolRequestError(`${p}.function.parameters`, `${p}.function.parameters must be a JSON schema object`, "invalid_type");
    if (given(f.strict) && typeof f.strict !== "boolean") throw new ToolRequestError(`${p}.function.strict`, `${p}.function.strict must be a boolean`, "invalid_type");
    const fn: ToolSpec["function"] = {
      name: f.name,
      ...(typeof f.description === "string" ? { description: f.description } : {}),
      ...(isObject(f.parameters) ? { parameters: f.parameters } : {}),
      ...(typeof f.strict === "boolean" ? { strict: f.strict } : {}),
    };
    return { type: "function", function: fn };
  });
}

function parseToolChoice(v: unknown, tools: readonly ToolSpec[]): ToolChoice {
  if (!given(v)) return tools.length > 0 ? "auto" : "none";
  if (v === "none") return v;
  // as OpenAI's API: a choice among no tools is an error, not "none"
  if (tools.length === 0) throw new ToolRequestError("tool_choice", `'tool_choice' is only allowed when 'tools' lists functions (got ${JSON.stringify(v)?.slice(0, 100)})`);
  if (v === "auto" || v === "required") return v;
  if (typeof v === "string") throw new ToolRequestError("tool_choice", `'tool_choice' must be "none", "auto", "required" or {type: "function", function: {name}}, got "${v.slice(0, 100)}"`);
  if (!isObject(v) || v.type !== "function" || !isObject(v.function) || typeof v.function.name !== "string") {
    throw new ToolRequestError("tool_choice", `'tool_choice' must be "none", "auto", "required" or {type: "function", function: {name}}, got ${kind(v)}`, "invalid_type");
  }
  const name = v.function.name;
  if (!tools.some((t) => t.function.name === name)) throw new ToolRequestError("tool_choice", `'tool_choice' names the function "${name.slice(0, 64)}", which 'tools' does not list`);
  return { type: "function", function: { name } };
}

/**
 * The tool parts of message `i` (already checked to be an object with a valid role): an assistant's tool_calls
 * (each {id, type: "function", function: {name, arguments}}; arguments as a JSON string, or an object, which is
 * written as one) and reasoning_content, a tool message's tool_call_id, and any message's name.
 */
export function parseMessageExtras(x: Json, i: number): Omit<ChatMessage, "role" | "content"> {
  const p = `messages[${i}]`;
  const out: { name?: string; tool_calls?: ChatToolCall[]; tool_call_id?: string; reasoning_content?: string } = {};
  if (given(x.name)) {
    if (typeof x.name !== "string") throw new ToolRequestError(`${p}.name`, `${p}.name must be a string, got ${kind(x.name)}`, "invalid_type");
    out.name = x.name;
  }
  if (x.role === "tool") {
    if (typeof x.tool_call_id !== "string") throw new ToolRequestError(`${p}.tool_call_id`, `${p}.tool_call_id is required for a tool message (the id of the call it answers)`, "missing_required_parameter");
    out.tool_call_id = x.tool_call_id;
  }
  if (x.role === "assistant") {
    if (given(x.reasoning_content)) {
      if (typeof x.reasoning_content !== "string") throw new ToolRequestError(`${p}.reasoning_content`, `${p}.reasoning_content must be a string, got ${kind(x.reasoning_content)}`, "invalid_type");
      out.reasoning_content = x.reasoning_content;
    }
    if (given(x.tool_calls)) {
      if (!Array.isArray(x.tool_calls)) throw new ToolRequestError(`${p}.tool_calls`, `${p}.tool_calls must be an array, got ${kind(x.tool_calls)}`, "invalid_type");
      if (x.tool_calls.length > 0) out.tool_calls = x.tool_calls.map((c, j) => toolCall(c, `${p}.tool_calls[${j}]`));
    }
  }
  return out;
}

function toolCall(c: unknown, p: string): ChatToolCall {
  if (!isObject(c)) throw new ToolRequestError(p, `${p} must be an object, got ${kind(c)}`, "invalid_type");
  if (typeof c.id !== "string") throw new ToolRequestError(`${p}.id`, `${p}.id must be a string (the id a tool message answers)`, "invalid_type");
  if (given(c.type) && c.type !== "function") throw new ToolRequestError(`${p}.type`, `${p}.type must be "function"`);
  const f = c.function;
  if (!isObject(f) || typeof f.name !== "string") throw new ToolRequestError(`${p}.function`, `${p}.function must be {name, arguments}`, "invalid_type");
  let args: string;
  if (typeof f.arguments === "string") args = f.arguments;
  else if (isObject(f.arguments)) args = JSON.stringify(f.arguments);
  else if (!given(f.arguments)) args = "{}";
  else throw new ToolRequestError(`${p}.function.arguments`, `${p}.function.arguments must be a JSON string, got ${kind(f.arguments)}`, "invalid_type");
  return { id: c.id, type: "function", function: { name: f.name, arguments: args } };
}
