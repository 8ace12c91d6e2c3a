/**
 * Tool calling and reasoning for chat completions: what the server renders for a request with tools (through the
 * model's chat template), and how it reads the reply back into content, reasoning_content and tool_calls.
 */
import { randomBytes } from "node:crypto";
import type { ChatMessage, ChatTemplate } from "../../tokenizer/chat.js";
import type { TextTokenizer } from "../../tokenizer/tokenizer.js";
import { reasoningFor, toolFormatFor, type ToolFormat } from "./formats.js";
import { renderFor, templateCaps, templateMessages, withSystemSection } from "./render.js";
import { ToolRequestError, type ToolChoice, type ToolSpec } from "./request.js";
import { ChatOutput, THINK_CLOSE, THINK_OPEN, type ChatDelta } from "./stream.js";

export { ToolRequestError, parseMessageExtras, parseToolFields, type ToolChoice, type ToolFields, type ToolSpec } from "./request.js";
export { ChatOutput, foldDeltas, type ChatDelta, type ChatResult, type ToolCallResult } from "./stream.js";
export { TOOL_FORMATS, detectReasoning, detectToolFormat, reasoningParserFlag, toolParserFlag, type ToolFormat, type ToolFormatName } from "./formats.js";
export { templateCaps, type TemplateCaps } from "./render.js";

export interface ChatFormatOptions {
  /** auto (default): from the chat template, else the tokenizer; none; or a format (deepseek_v3, deepseek_v31, glm45, kimi_k2, or vLLM's names). */
  readonly toolParser?: string;
  /** auto (default): on when the chat template has `</think>`; none; or a parser name (all split `<think>…</think>`). */
  readonly reasoningParser?: string;
}

/** A chat request's parts that shape its prompt and the reading of its reply. */
export interface ChatInput {
  readonly messages: readonly ChatMessage[];
  readonly tools?: readonly ToolSpec[];
  readonly toolChoice?: ToolChoice;
  readonly parallelToolCalls?: boolean;
  readonly templateVars?: Readonly<Record<string, unknown>>;
}

/** What one chat request generates from, and how its reply is read. */
export interface ChatPlan {
  /** The prompt text: the rendered template, then `prefill`. */
  readonly prompt: string;
  /** The start of the reply written for the model (a call begun, when the request requires one). */
  readonly prefill: string;
  /** Stop strings the plan adds (the end of a call, when parallel_tool_calls is false). */
  readonly stops: readonly string[];
  /** Special tokens whose text the parsers read: decode must keep them. */
  readonly keepSpecial: ReadonlySet<number>;
  /** The request's tools are parsed out of the reply. */
  readonly parsesTools: boolean;
  /** The reply begins inside the `<think>` block. */
  readonly thinking: boolean;
  /**
   * The arguments the generation is constrained to: a named tool_choice (or "required" with one tool) in a format
   * whose arguments are JSON starts the call in `prefill`, so the model writes only the arguments (a document of the
   * tool's parameters schema) and then `end`, the text that closes the call and the reply's calls.
   */
  readonly arguments?: { readonly tool: number; readonly schema: unknown; readonly end: string };
  /** A reader for the reply, and the deltas of the prefill (to send before the generated ones). */
  start(): { readonly output: ChatOutput; readonly deltas: ChatDelta[] };
}

const newCallId = (): string => `call_${randomBytes(12).toString("hex")}`;

/** One model's tool-call format and reasoning split, as the server's flags and its chat template decide. */
export class ChatFormat {
  readonly tools: ToolFormat | null;
  readonly reasoning: boolean;

  constructor(readonly chat: ChatTemplate, private readonly tok: TextTokenizer, opts: ChatFormatOptions = {}, private readonly newId = newCallId) {
    this.tools = toolFormatFor(opts.toolParser ?? "auto", chat, tok);
    this.reasoning = reasoningFor(opts.reasoningParser ?? "auto", chat, tok);
  }

  /** One line for the server's banner. */
  describe(): string {
    const tools = this.tools ? `${this.tools.name} (${this.tools.models})` : "none (requests with tools get 400)";
    return `tool calls: ${tools}; reasoning: ${this.reasoning ? "<think> blocks go to reasoning_content" : "off"}`;
  }

  /** The prompt and reply reader of a request; ToolRequestError for a request this model cannot serve. */
  plan(input: ChatInput): ChatPlan {
    const tools = input.tools ?? [];
    const choice = input.toolChoice ?? (tools.length > 0 ? "auto" : "none");
    const parsesTools = tools.length > 0 && choice !== "none";
    const format = this.tools;
    if (parsesTools && !format) {
      throw new ToolRequestError("tools", "this model's chat template and tokenizer show no tool-call format this server reads (DeepSeek-V3/R1, DeepSeek-V3.1, GLM-4.5/4.6/4.7, Kimi-K2); " +
        "start the server with --tool-parser to name one", "unsupported_value");
    }
    const c = templateCaps(this.chat);
    let messages = templateMessages(input.messages, c);
    const vars: Record<string, unknown> = { ...input.templateVars };
    if (parsesTools && format) {
      if (c.tools) vars.tools = tools;
      else messages = withSystemSection(messages, format.describe(tools));
    }
    const rendered = renderFor(this.chat, messages, vars);
    const thinking = this.reasoning && rendered.trimEnd().endsWith(THINK_OPEN);
    let prefill = "";
    let args: ChatPlan["arguments"];
    if (parsesTools && format && (choice === "required" || typeof choice === "object")) {
      // a required call starts the reply (closing a reasoning block the prompt opened); one known function: by name
      const named = typeof choice === "object" ? choice.function.name : tools.length === 1 ? tools[0].function.name : undefined;
      prefill = (thinking ? THINK_CLOSE : "") + format.prefill(named);
      const tool = tools.findIndex((t) => t.function.name === named);
      if (tool >= 0 && format.argsEnd !== undefined) args = { tool, schema: tools[tool].function.parameters ?? { type: "object" }, end: format.argsEnd };
    }
    const markers = [...(parsesTools && format ? format.markers : []), ...(this.reasoning ? [THINK_OPEN, THINK_CLOSE] : [])];
    const keepSpecial = new Set(markers.map((m) => this.tok.tokenToId(m)).filter((id): id is number => id !== undefined));
    const reasoning = !this.reasoning ? "off" : thinking ? "open" : "detect";
    const parser = parsesTools && format ? () => format.parser({ tools, newId: this.newId }) : null;
    return {
      prompt: rendered + prefill, prefill, keepSpecial, parsesTools, thinking, arguments: args,
      stops: parsesTools && format && input.parallelToolCalls === false ? [format.callEnd] : [],
      start: () => {
        const output = new ChatOutput({ reasoning, calls: parser ? parser() : null });
        return { output, deltas: prefill ? output.push(prefill) : [] };
      },
    };
  }
}
