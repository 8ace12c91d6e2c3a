/**
 * The tool-call formats this server reads, and how it picks one for a model: from its chat template's text (the
 * template writes past calls into the history in the model's own syntax), else from the marker tokens of its
 * tokenizer. Each format knows its parser, its markers, how to start a call when the request requires one, where
 * one call ends (parallel_tool_calls: false), and how to describe the tools to a template that does not.
 */
import { MlaError } from "../../errors.js";
import type { ChatTemplate } from "../../tokenizer/chat.js";
import type { TextTokenizer } from "../../tokenizer/tokenizer.js";
import { DS, DeepSeekParser, GLM, GlmParser, KIMI, KimiParser, type ParseContext } from "./parsers.js";
import type { CallParser } from "./stream.js";
import { THINK_CLOSE, THINK_OPEN } from "./stream.js";
import type { ToolSpec } from "./request.js";

export type ToolFormatName = "deepseek_v3" | "deepseek_v31" | "glm45" | "kimi_k2";

export interface ToolFormat {
  readonly name: ToolFormatName;
  /** The models that write it, for messages. */
  readonly models: string;
  /** The strings the parser reads: kept in the decoded text even where they are special tokens. */
  readonly markers: readonly string[];
  parser(ctx: ParseContext): CallParser;
  /** The start of a reply that must call a tool (that function, when named), for the model to go on from. */
  prefill(name?: string): string;
  /** The end of one call: a stop string when parallel_tool_calls is false. */
  readonly callEnd: string;
  /**
   * Where the arguments are one JSON object: the text after it that ends a lone call and the reply's calls (the
   * constraint of a named tool_choice writes it). Absent for formats whose arguments are not JSON (GLM's key/value
   * pairs).
   */
  readonly argsEnd?: string;
  /** The tools and the call syntax, as a system-prompt section, for a template that does not write `tools`. */
  describe(tools: readonly ToolSpec[]): string;
}

const json = (v: unknown): string => JSON.stringify(v);
const signature = (t: ToolSpec): string =>
  `### ${t.function.name}\nDescription: ${t.function.description ?? ""}\n\nParameters: ${json(t.function.parameters ?? { type: "object", properties: {} })}`;

/** DeepSeek-V3 and R1: the call's type, the name on its own line, the arguments in a ```json fence. */
const DEEPSEEK_V3: ToolFormat = {
  name: "deepseek_v3",
  models: "DeepSeek-V3, DeepSeek-R1",
  markers: [DS.callsBegin, DS.callsEnd, DS.callBegin, DS.callEnd, DS.sep],
  parser: (ctx) => new DeepSeekParser(ctx, false),
  prefill: (name) => `${DS.callsBegin}${DS.callBegin}function${DS.sep}${name === undefined ? "" : `${name}\n\`\`\`json\n`}`,
  callEnd: DS.callEnd,
  argsEnd: `\n\`\`\`${DS.callEnd}${DS.callsEnd}`,
  describe: (tools) =>
    `## Tools\n\nYou can call these functions:\n\n${tools.map(signature).join("\n\n")}\n\n` +
    `To call functions, reply with the calls alone, in exactly this form (one ${DS.callBegin}...${DS.callEnd} for each call):\n` +
    `${DS.callsBegin}${DS.callBegin}function${DS.sep}FUNCTION_NAME\n\`\`\`json\n{"ARGUMENT": "VALUE"}\n\`\`\`${DS.callEnd}${DS.callsEnd}\n` +
    "The arguments are one JSON object that follows the function's parameters schema.",
};

/** DeepSeek-V3.1: the name, the separator, the arguments (no type, no fence). */
const DEEPSEEK_V31: ToolFormat = {
  name: "deepseek_v31",
  models: "DeepSeek-V3.1",
  markers: DEEPSEEK_V3.markers,
  parser: (ctx) => new DeepSeekParser(ctx, true),
  prefill: (name) => `${DS.callsBegin}${DS.callBegin}${name === undefined ? "" : `${name}${DS.sep}`}`,
  callEnd: DS.callEnd,
  argsEnd: `${DS.callEnd}${DS.callsEnd}`,
  // the layout of DeepSeek-V3.1's documented tool prompt: "## Tools", then a section per function
  describe: (tools) =>
    `## Tools\nYou can use these tools:\n\n${tools.map(signature).join("\n\n")}\n\n` +
    `To use tools, always write exactly:\n${DS.callsBegin}${DS.callBegin}TOOL_NAME${DS.sep}TOOL_ARGUMENTS${DS.callEnd}...${DS.callsEnd}\n\n` +
    "TOOL_NAME is one of the tools above, TOOL_ARGUMENTS a JSON object that follows its parameters schema; several calls " +
    "follow each other with nothing between them.",
};

const GLM45: ToolFormat = {
  name: "glm45",
  models: "GLM-4.5, GLM-4.6, GLM-4.7",
  markers: [GLM.call, GLM.callEnd, GLM.key, GLM.keyEnd, GLM.value, GLM.valueEnd],
  parser: (ctx) => new GlmParser(ctx),
  prefill: (name) => `${GLM.call}${name ?? ""}`,
  callEnd: GLM.callEnd,
  describe: (tools) =>
    `# Tools\n\nYou can call these functions, given as JSON in <tools></tools>:\n<tools>\n${tools.map(json).join("\n")}\n</tools>\n\n` +
    `To call one, write the name and each argument as:\n${GLM.call}FUNCTION_NAME${GLM.key}KEY${GLM.keyEnd}${GLM.value}VALUE${GLM.valueEnd}...${GLM.callEnd}`,
};

const KIMI_K2: ToolFormat = {
  name: "kimi_k2",
  models: "Kimi-K2",
  markers: [KIMI.sectionBegin, KIMI.sectionEnd, KIMI.callBegin, KIMI.argBegin, KIMI.callEnd, "<|tool_call_section_begin|>", "<|tool_call_section_end|>"],
  parser: (ctx) => new KimiParser(ctx),
  prefill: (name) => `${KIMI.sectionBegin}${KIMI.callBegin}functions.${name === undefined ? "" : `${name}:0${KIMI.argBegin}`}`,
  callEnd: KIMI.callEnd,
  argsEnd: `${KIMI.callEnd}${KIMI.sectionEnd}`,
  describe: (tools) =>
    `# Tools\n${json(tools)}\n\nTo call functions, write ${KIMI.sectionBegin}, then for each call ` +
    `${KIMI.callBegin}functions.FUNCTION_NAME:INDEX${KIMI.argBegin}JSON_ARGUMENTS${KIMI.callEnd}, then ${KIMI.sectionEnd}.`,
};

export const TOOL_FORMATS: Readonly<Record<ToolFormatName, ToolFormat>> = {
  deepseek_v3: DEEPSEEK_V3, deepseek_v31: DEEPSEEK_V31, glm45: GLM45, kimi_k2: KIMI_K2,
};

/** --tool-parser's values: a format, or vLLM's name for it. */
const TOOL_PARSER_NAMES: Readonly<Record<string, ToolFormatName>> = {
  deepseek_v3: "deepseek_v3", deepseek_r1: "deepseek_v3", deepseekv3: "deepseek_v3",
  deepseek_v31: "deepseek_v31", deepseekv31: "deepseek_v31",
  glm45: "glm45", glm47: "glm45", glm4_moe: "glm45",
  kimi_k2: "kimi_k2",
};

/** --reasoning-parser's values besides auto and none: all read the same `<think>…</think>` block. */
const REASONING_PARSER_NAMES = ["think", "deepseek_r1", "deepseek_v3", "glm45", "kimi_k2", "qwen3"];

/**
 * `auto`: the format its chat template writes calls in (DeepSeek's markers with a ```json fence: deepseek_v3;
 * without: deepseek_v31; GLM's <arg_key>: glm45; Kimi's tool section or tool_declare turn: kimi_k2), else the one
 * whose marker tokens its tokenizer has; null when neither tells (tools are then refused).
 */
export function detectToolFormat(chat: ChatTemplate, tok: TextTokenizer): ToolFormat | null {
  const src = chat.isDefault ? "" : chat.source;
  if (src.includes(DS.callsBegin)) return src.includes("```json") ? DEEPSEEK_V3 : DEEPSEEK_V31;
  if (src.includes(KIMI.sectionBegin) || src.includes("tool_declare")) return KIMI_K2;
  if (src.includes(GLM.key)) return GLM45;
  const has = (t: string): boolean => tok.tokenToId(t) !== undefined;
  if (has(DS.callsBegin)) return DEEPSEEK_V3;
  if (has(KIMI.sectionBegin)) return KIMI_K2;
  if (has(GLM.key)) return GLM45;
  return null;
}

/** `auto`: on when the chat template has `</think>` (or, with no template of its own, the vocabulary has both tags). */
export function detectReasoning(chat: ChatTemplate, tok: TextTokenizer): boolean {
  if (!chat.isDefault) return chat.source.includes(THINK_CLOSE);
  return tok.tokenToId(THINK_CLOSE) !== undefined && tok.tokenToId(THINK_OPEN) !== undefined;
}

/** --tool-parser's value checked: auto, none, or a format (vLLM's names accepted); MlaError otherwise. */
export function toolParserFlag(flag: string): ToolFormatName | "auto" | "none" {
  if (flag === "auto" || flag === "none") return flag;
  const name = TOOL_PARSER_NAMES[flag];
  if (!name) throw new MlaError(`--tool-parser must be auto, none or one of ${Object.keys(TOOL_PARSER_NAMES).join(", ")}; got "${flag}"`);
  return name;
}

/** --reasoning-parser's value checked: auto, none, or a parser name (all read `<think>` blocks); MlaError otherwise. */
export function reasoningParserFlag(flag: string): "auto" | "none" | "think" {
  if (flag === "auto" || flag === "none") return flag;
  if (!REASONING_PARSER_NAMES.includes(flag)) throw new MlaError(`--reasoning-parser must be auto, none or one of ${REASONING_PARSER_NAMES.join(", ")}; got "${flag}"`);
  return "think";
}

/** The tool format --tool-parser names: auto (detected), none, or a format. */
export function toolFormatFor(flag: string, chat: ChatTemplate, tok: TextTokenizer): ToolFormat | null {
  const f = toolParserFlag(flag);
  return f === "auto" ? detectToolFormat(chat, tok) : f === "none" ? null : TOOL_FORMATS[f];
}

/** Whether --reasoning-parser turns the `<think>` split on: auto (detected), none, or a parser name. */
export function reasoningFor(flag: string, chat: ChatTemplate, tok: TextTokenizer): boolean {
  const f = reasoningParserFlag(flag);
  return f === "auto" ? detectReasoning(chat, tok) : f === "think";
}
