/**
 * Tools and tool turns through a model's own chat template. Templates differ in what they read: some write
 * `tools` into the prompt (GLM's, Kimi-K2's), some do not (DeepSeek's: the tools then go into the system prompt in
 * the model's syntax, as llama.cpp does for such templates); DeepSeek-V3's writes a turn's calls only when its
 * content is null; GLM's iterate over the arguments as an object. What a template needs is found by rendering
 * small probe conversations through it once (as llama.cpp's template capability checks do), not by its name.
 */
import { MlaError } from "../../errors.js";
import type { ChatMessage, ChatTemplate, TemplateMessage } from "../../tokenizer/chat.js";
import { ToolRequestError } from "./request.js";

export interface TemplateCaps {
  /** It writes the `tools` variable into the prompt. */
  readonly tools: boolean;
  /** How it takes an assistant turn that calls tools; null when it writes no calls at all. */
  readonly calls: { readonly nullContent: boolean; readonly objectArguments: boolean } | null;
}

const PROBE_TOOL = "mla_probe_tool", PROBE_CALL = "mla_probe_call", PROBE_ID = "mla_probe_id", PROBE_ARG = "mla_probe_arg";

const caps = new WeakMap<ChatTemplate, TemplateCaps>();

/** What `chat` reads (rendered once per template, then remembered). */
export function templateCaps(chat: ChatTemplate): TemplateCaps {
  let c = caps.get(chat);
  if (!c) caps.set(chat, (c = probe(chat)));
  return c;
}

function probe(chat: ChatTemplate): TemplateCaps {
  const user: TemplateMessage = { role: "user", content: "mla probe" };
  const tool = { type: "function", function: { name: PROBE_TOOL, description: "probe", parameters: { type: "object", properties: { [PROBE_ARG]: { type: "string" } } } } };
  const tools = tryRender(chat, [user], { tools: [tool] })?.includes(PROBE_TOOL) ?? false;
  let calls: TemplateCaps["calls"] = null;
  // "" before null: most templates print a null content as "None"; DeepSeek-V3's writes calls only for null
  for (const nullContent of [false, true]) {
    for (const objectArguments of [false, true]) {
      const args = objectArguments ? { [PROBE_ARG]: "x" } : JSON.stringify({ [PROBE_ARG]: "x" });
      const turn: TemplateMessage = {
        role: "assistant", content: nullContent ? null : "",
        tool_calls: [{ id: PROBE_ID, type: "function", function: { name: PROBE_CALL, arguments: args } }],
      };
      const text = tryRender(chat, [user, turn, { role: "tool", tool_call_id: PROBE_ID, content: "mla probe result" }], {});
      // a call is written when its arguments are, with its name (or, as Kimi-K2's templates write it, its id)
      if (text && (text.includes(PROBE_CALL) || text.includes(PROBE_ID)) && text.includes(PROBE_ARG)) {
        calls = { nullContent, objectArguments };
        break;
      }
    }
    if (calls) break;
  }
  return { tools, calls };
}

function tryRender(chat: ChatTemplate, messages: readonly TemplateMessage[], vars: Record<string, unknown>): string | null {
  try {
    return chat.render(messages, false, vars);
  } catch {
    return null;
  }
}

/**
 * The messages in the form `c` needs. A turn that calls tools gets content null where the template writes calls
 * only then (and loses its text: that template cannot write both), and its arguments parsed where the template
 * iterates over them.
 */
export function templateMessages(messages: readonly ChatMessage[], c: TemplateCaps): TemplateMessage[] {
  return messages.map((m, i): TemplateMessage => {
    if (!m.tool_calls) return m;
    if (!c.calls) {
      throw new ToolRequestError(`messages[${i}].tool_calls`, `messages[${i}] has tool_calls, but this model's chat template writes no tool calls`, "unsupported_value");
    }
    const objects = c.calls.objectArguments;
    return {
      ...m,
      content: c.calls.nullContent ? null : m.content,
      tool_calls: m.tool_calls.map((t, j) => (objects ? { ...t, function: { name: t.function.name, arguments: argumentsObject(t.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`) } } : t)),
    };
  });
}

function argumentsObject(text: string, param: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ToolRequestError(param, `${param} must be a JSON object (this model's template writes each argument), got ${JSON.stringify(text.slice(0, 60))}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ToolRequestError(param, `${param} must be a JSON object, got ${JSON.stringify(text.slice(0, 60))}`);
  return v as Record<string, unknown>;
}

/**
 * `section` added to the system prompt: appended to the last of the leading system messages (templates that keep
 * one system message keep it too), or as a system message of its own before the rest.
 */
export function withSystemSection(messages: readonly TemplateMessage[], section: string): TemplateMessage[] {
  let last = -1;
  while (last + 1 < messages.length && messages[last + 1].role === "system") last++;
  if (last < 0) return [{ role: "system", content: section }, ...messages];
  const out = [...messages];
  const prev = out[last].content ?? "";
  out[last] = { ...out[last], content: prev ? `${prev}\n\n${section}` : section };
  return out;
}

/** The template rendered for the assistant's turn; a template failure is the request's fault (its messages). */
export function renderFor(chat: ChatTemplate, messages: readonly TemplateMessage[], vars: Readonly<Record<string, unknown>>): string {
  try {
    return chat.render(messages, true, vars);
  } catch (e) {
    if (e instanceof MlaError) throw new ToolRequestError("messages", `${e.message.replace(/\s+/g, " ")}`);
    throw e;
  }
}
