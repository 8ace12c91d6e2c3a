// Tools and tool turns through copies of the real chat templates (test/fixtures/chat-templates/): @huggingface/jinja
// renders each one as transformers' jinja2 does (expected.json, from render_reference.py), the probes find what each
// template reads, the format is detected from the template, and a request's plan renders its OpenAI-style messages
// exactly as the template's own form of them renders.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { ChatFormat, ToolRequestError, templateCaps, detectToolFormat, detectReasoning, TOOL_FORMATS, type ToolSpec } from "../src/server/tools/index.js";
import { toolFormatFor, reasoningFor } from "../src/server/tools/formats.js";
import { ChatTemplate, type ChatMessage, type TemplateMessage } from "../src/tokenizer/chat.js";
import { TextTokenizer } from "../src/tokenizer/tokenizer.js";
import { MlaError } from "../src/errors.js";
import { CASES, EXPECTED, FORMAT_TOKENS, HERE, TEMPLATES, template, tokenizerWith } from "./fixtures/chat-templates/fixtures.js";

const BROWN = join(HERE, "../../../models/mla-brown");
const TOOLS: ToolSpec[] = CASES.tools;
const plain = tokenizerWith([]);

/** A case's messages in the form template `name` reads (as render_reference.py makes them). */
function templateForm(name: string, messages: Record<string, unknown>[]): TemplateMessage[] {
  const t = TEMPLATES[name];
  return messages.map((m) => {
    if (!m.tool_calls) return m as unknown as TemplateMessage;
    const calls = m.tool_calls as { function: { name: string; arguments: string } }[];
    return {
      ...m,
      content: t.null_content ? null : (m.content ?? ""),
      tool_calls: calls.map((c) => (t.object_arguments ? { ...c, function: { ...c.function, arguments: JSON.parse(c.function.arguments) } } : c)),
    } as unknown as TemplateMessage;
  });
}

/** A case's messages as the server has them after parseChat: content "" for null. */
function openaiForm(messages: Record<string, unknown>[]): ChatMessage[] {
  return messages.map((m) => ({ ...m, content: (m.content as string | null) ?? "" }) as ChatMessage);
}

for (const name of Object.keys(TEMPLATES)) {
  const info = TEMPLATES[name];

  test(`${name}: @huggingface/jinja renders every case as transformers' jinja2 does`, () => {
    const chat = template(name);
    for (const [c, k] of Object.entries<{ tools: boolean; vars?: Record<string, unknown>; messages: Record<string, unknown>[] }>(CASES.cases)) {
      const text = chat.render(templateForm(name, k.messages), true, { ...k.vars, ...(k.tools ? { tools: TOOLS } : {}) });
      assert.equal(text, EXPECTED[name][c], `case ${c}`);
    }
  });

  test(`${name}: the probes find what the template reads, and the format is detected from it`, () => {
    const chat = template(name);
    assert.deepEqual(templateCaps(chat), { tools: info.native_tools, calls: { nullContent: info.null_content, objectArguments: info.object_arguments } }, "caps");
    assert.equal(detectToolFormat(chat, plain)?.name, info.format, "tool-call format from the template's text");
    assert.equal(detectReasoning(chat, plain), info.reasoning, "reasoning split from the template's text");
  });

  test(`${name}: a tool loop's OpenAI-style messages render as the template's own form of them`, () => {
    const chat = template(name);
    const f = new ChatFormat(chat, tokenizerWith(FORMAT_TOKENS[info.format]));
    const loop = CASES.cases.loop;
    const plan = f.plan({ messages: openaiForm(loop.messages), tools: TOOLS, toolChoice: "auto" });
    let want = EXPECTED[name].loop;
    if (!info.native_tools) {
      // the template does not write `tools`: they go into the system prompt in the format's syntax
      const section = TOOL_FORMATS[info.format].describe(TOOLS);
      want = want.replace("You are terse.", `You are terse.\n\n${section}`);
      assert.ok(section.includes('"city"') && section.includes("get_time"), "the section has the functions and their parameters");
    }
    assert.equal(plan.prompt, want, "prompt");
    assert.equal(plan.prefill, "", "auto: nothing written for the model");
    assert.deepEqual(plan.stops, [], "parallel calls allowed: no stop string");
    assert.ok(plan.parsesTools, "the reply is parsed for calls");
    // tool_choice none: no tools in the prompt, no parsing
    const none = f.plan({ messages: openaiForm(CASES.cases.first.messages), tools: TOOLS, toolChoice: "none" });
    assert.ok(!none.prompt.includes("get_weather"), "no tools rendered");
    assert.ok(!none.parsesTools, "not parsed");
  });

  test(`${name}: tool_choice required / a named function starts the call; parallel_tool_calls false stops after one`, () => {
    const chat = template(name);
    const tok = tokenizerWith(FORMAT_TOKENS[info.format]);
    const f = new ChatFormat(chat, tok);
    const messages = openaiForm(CASES.cases.first.messages);
    const base = f.plan({ messages, tools: TOOLS, toolChoice: "auto" });
    const named = f.plan({ messages, tools: TOOLS, toolChoice: { type: "function", function: { name: "get_time" } }, parallelToolCalls: false });
    const format = TOOL_FORMATS[info.format];
    const close = base.thinking ? "</think>" : "";
    assert.equal(named.prompt, base.prompt + close + format.prefill("get_time"), "the prompt, then the call begun");
    assert.ok(named.prefill.includes("get_time"), "the prefill names the function");
    assert.deepEqual(named.stops, [format.callEnd], "stop after the first call");
    const required = f.plan({ messages, tools: TOOLS, toolChoice: "required" });
    assert.equal(required.prompt, base.prompt + close + format.prefill(), "required: the call begun, the name left to the model");
    // the prefill's deltas: a named call's header comes out before any generated text
    const { deltas } = named.start();
    if (info.format !== "glm45") assert.deepEqual(deltas.filter((d) => d.kind === "call").map((d) => d.kind === "call" && d.name), ["get_time"], "the call's name at once");
    // the markers the parsers read are kept by decoding
    for (const m of format.markers) {
      const id = tok.tokenToId(m);
      if (id !== undefined) assert.ok(named.keepSpecial.has(id), `${m} kept`);
    }
  });
}

test("reasoning: the plan starts inside <think> where the generation prompt opens it", () => {
  const messages: ChatMessage[] = [{ role: "user", content: "Why?" }];
  const r1 = new ChatFormat(template("deepseek-r1"), tokenizerWith(FORMAT_TOKENS.deepseek_v3)).plan({ messages });
  assert.ok(r1.thinking, "R1 opens <think> in its generation prompt");
  const v31 = new ChatFormat(template("deepseek-v3.1"), tokenizerWith(FORMAT_TOKENS.deepseek_v3));
  assert.ok(!v31.plan({ messages }).thinking, "V3.1 closes it by default");
  assert.ok(v31.plan({ messages, templateVars: { thinking: true } }).thinking, "chat_template_kwargs {thinking: true} opens it");
  const glm = new ChatFormat(template("glm-4.7"), tokenizerWith(FORMAT_TOKENS.glm45));
  assert.ok(glm.plan({ messages }).thinking, "GLM-4.7 opens it");
  assert.ok(!glm.plan({ messages, templateVars: { enable_thinking: false } }).thinking, "enable_thinking false closes it");
  const v3 = new ChatFormat(template("deepseek-v3"), tokenizerWith(FORMAT_TOKENS.deepseek_v3));
  assert.equal(v3.reasoning, false, "DeepSeek-V3's template has no </think>: no split");
  assert.equal(v3.plan({ messages }).keepSpecial.size, 0, "nothing to keep without tools or reasoning");
});

test("a model with no known format refuses tools with a clear error, and tool turns its template drops", () => {
  const tok = TextTokenizer.load(BROWN)!;
  const f = new ChatFormat(ChatTemplate.load(BROWN, tok), tok);
  assert.equal(f.tools, null, "mla-brown: default template, no marker tokens");
  assert.match(f.describe(), /tool calls: none/, "the banner says so");
  const messages: ChatMessage[] = [{ role: "user", content: "hi" }];
  assert.throws(() => f.plan({ messages, tools: TOOLS }), (e: unknown) => e instanceof ToolRequestError && e.param === "tools" && /no tool-call format/.test(e.message) && /--tool-parser/.test(e.message));
  assert.doesNotThrow(() => f.plan({ messages, tools: TOOLS, toolChoice: "none" }), "tool_choice none needs no format");
  const withCall: ChatMessage[] = [...messages, { role: "assistant", content: "", tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }] }];
  assert.throws(() => f.plan({ messages: withCall }), (e: unknown) => e instanceof ToolRequestError && e.param === "messages[1].tool_calls", "a template that drops calls: 400, not a silent loss");
  assert.doesNotThrow(() => f.plan({ messages: [...messages, { role: "tool", content: "42", tool_call_id: "c1" }] }), "a tool result renders as its role's line");
  // --tool-parser names a format for such a model: the tools then go into the system prompt
  const forced = new ChatFormat(ChatTemplate.load(BROWN, tok), tok, { toolParser: "deepseek_v3" });
  assert.match(forced.plan({ messages, tools: TOOLS }).prompt, /^<bos>system: ## Tools/, "described in a system message");
});

test("the template's form of a call: arguments that are not a JSON object are refused where the template reads them", () => {
  const f = new ChatFormat(template("glm-4.7"), tokenizerWith(FORMAT_TOKENS.glm45));
  const messages: ChatMessage[] = [{ role: "user", content: "x" }, { role: "assistant", content: "", tool_calls: [{ id: "c1", type: "function", function: { name: "get_time", arguments: "not json" } }] }];
  assert.throws(() => f.plan({ messages }), (e: unknown) => e instanceof ToolRequestError && e.param === "messages[1].tool_calls[0].function.arguments");
});

test("--tool-parser and --reasoning-parser values", () => {
  const chat = template("glm-4.7");
  assert.equal(toolFormatFor("glm47", chat, plain)?.name, "glm45", "vLLM's names");
  assert.equal(toolFormatFor("deepseek_r1", chat, plain)?.name, "deepseek_v3");
  assert.equal(toolFormatFor("none", chat, plain), null);
  assert.throws(() => toolFormatFor("hermes", chat, plain), (e: unknown) => e instanceof MlaError && /--tool-parser must be auto, none or one of/.test(e.message));
  assert.equal(reasoningFor("none", chat, plain), false);
  assert.equal(reasoningFor("deepseek_r1", template("deepseek-v3"), plain), true, "forced on");
  assert.throws(() => reasoningFor("nope", chat, plain), (e: unknown) => e instanceof MlaError && /--reasoning-parser/.test(e.message));
  // detection from the vocabulary when the template says nothing
  const tok = TextTokenizer.load(BROWN)!;
  const dflt = ChatTemplate.load(BROWN, tok);
  assert.equal(detectToolFormat(dflt, tokenizerWith(["<|tool_calls_section_begin|>"])) ?.name, "kimi_k2", "Kimi's marker token");
  assert.equal(detectToolFormat(dflt, tokenizerWith(["<｜tool▁calls▁begin｜>"]))?.name, "deepseek_v3", "DeepSeek's marker token");
  assert.equal(detectReasoning(dflt, tokenizerWith(["<think>", "</think>"])), true, "think tokens");
});
