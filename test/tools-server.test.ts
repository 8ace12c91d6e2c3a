// Tool calls and reasoning end to end: an ApiServer (the server `mla serve` runs) over a model whose "generation" is
// a scripted reply (test/fixtures/chat-templates/fixtures.ts), with copies of the real chat templates and
// vocabularies whose markers are special tokens, driven by the `openai` clients: Node's here, Python's when
// /tmp/gguf-venv has it (the last test).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { ApiServer } from "../src/server/server.js";
import { TextEngine } from "../src/generate/text.js";
import { ChatTemplate } from "../src/tokenizer/chat.js";
import { scriptedEngine, scriptedModel, tokenizerWith, HERE } from "./fixtures/chat-templates/fixtures.js";

const DS = { cs: "<｜tool▁calls▁begin｜>", ce: "<｜tool▁calls▁end｜>", b: "<｜tool▁call▁begin｜>", e: "<｜tool▁call▁end｜>", sep: "<｜tool▁sep｜>" };
const v3call = (name: string, args: string) => `${DS.b}function${DS.sep}${name}\n\`\`\`json\n${args}\n\`\`\`${DS.e}`;
const K = { sb: "<|tool_calls_section_begin|>", se: "<|tool_calls_section_end|>", b: "<|tool_call_begin|>", a: "<|tool_call_argument_begin|>", e: "<|tool_call_end|>" };

const TOOLS: OpenAI.Chat.Completions.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer" } }, required: ["city"] } } },
  { type: "function", function: { name: "get_time", description: "Local time", parameters: { type: "object", properties: { zone: { type: "string" } } } } },
];

const servers: ApiServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function serve(engine: TextEngine, opts: ConstructorParameters<typeof ApiServer>[1] = {}): Promise<{ client: OpenAI; url: string }> {
  const server = new ApiServer(engine, opts);
  servers.push(server);
  const { port } = await server.listen(0, "127.0.0.1");
  const url = `http://127.0.0.1:${port}/v1`;
  return { client: new OpenAI({ baseURL: url, apiKey: "unused", maxRetries: 0 }), url };
}

type Chunk = OpenAI.Chat.Completions.ChatCompletionChunk;
interface Streamed {
  role?: string;
  content: string;
  reasoning: string;
  calls: { id: string; name: string; arguments: string }[];
  finish: string | null;
  chunks: Chunk[];
}

/** A stream's deltas added up as a client does; every tool call's first delta must bring its id, type and name. */
async function collect(stream: AsyncIterable<Chunk>): Promise<Streamed> {
  const s: Streamed = { content: "", reasoning: "", calls: [], finish: null, chunks: [] };
  for await (const c of stream) {
    s.chunks.push(c);
    const ch = c.choices[0];
    if (!ch) continue;
    const d = ch.delta as Chunk["choices"][number]["delta"] & { reasoning_content?: string };
    s.role ??= d.role ?? undefined;
    s.content += d.content ?? "";
    s.reasoning += d.reasoning_content ?? "";
    for (const t of d.tool_calls ?? []) {
      if (!s.calls[t.index]) {
        assert.ok(t.id && t.type === "function" && t.function?.name, `the first delta of call ${t.index} has its id, type and name: ${JSON.stringify(t)}`);
        assert.equal(t.function?.arguments, "", "and no arguments yet");
        s.calls[t.index] = { id: t.id!, name: t.function!.name!, arguments: "" };
      } else {
        assert.equal(t.id, undefined, "later deltas carry only arguments");
        s.calls[t.index].arguments += t.function?.arguments ?? "";
      }
    }
    s.finish = ch.finish_reason ?? s.finish;
  }
  return s;
}

const r1 = scriptedEngine("deepseek-r1", {
  weather: `The user wants Paris.\nCall get_weather.\n</think>\n\n${DS.cs}${v3call("get_weather", '{"city": "Paris", "days": 2}')}\n${v3call("get_time", '{"zone": "Europe/Paris"}')}${DS.ce}`,
  // R1's template writes no generation prompt after tool results: the model opens <think> itself
  final: "<think>\nSummarise.\n</think>\n\nIt is 21 °C in Paris.",
  plain: "Nothing to do.\n</think>\n\nHello!",
});

test("DeepSeek-R1: tool calls and reasoning_content, whole and streamed; the next turn renders the calls and results", async () => {
  const { client } = await serve(r1);
  const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "system", content: "Be brief." }, { role: "user", content: "[[weather]] Weather and time in Paris?" }];
  const r = await client.chat.completions.create({ model: "deepseek-r1", messages, tools: TOOLS });
  const m = r.choices[0].message as typeof r.choices[0]["message"] & { reasoning_content?: string };
  assert.equal(r.choices[0].finish_reason, "tool_calls", "finish reason");
  assert.equal(m.content, null, "no content: the reply only calls tools");
  assert.equal(m.reasoning_content, "The user wants Paris.\nCall get_weather.", "reasoning_content");
  assert.deepEqual(m.tool_calls?.map((c) => c.type === "function" && [c.type, c.function.name, JSON.parse(c.function.arguments)]), [
    ["function", "get_weather", { city: "Paris", days: 2 }], ["function", "get_time", { zone: "Europe/Paris" }],
  ], "the calls");
  for (const c of m.tool_calls!) assert.match(c.id, /^call_[0-9a-f]{24}$/, "a call id");

  const s = await collect(await client.chat.completions.create({ model: "deepseek-r1", messages, tools: TOOLS, stream: true }));
  assert.equal(s.role, "assistant", "the first delta's role");
  assert.equal(s.reasoning, m.reasoning_content, "streamed reasoning = whole");
  assert.equal(s.content, "", "no streamed content");
  assert.deepEqual(s.calls.map((c) => [c.name, c.arguments]), m.tool_calls!.map((c) => c.type === "function" && [c.function.name, c.function.arguments]), "streamed calls = whole");
  assert.equal(s.finish, "tool_calls", "streamed finish reason");
  assert.ok(s.chunks.filter((c) => c.choices[0]?.delta.tool_calls).length >= 4, "the calls arrived in several chunks");

  // the loop's next turn: the assistant's calls and the tool results go through the template; the tool result
  // names the next script, so the reply proves it reached the prompt
  const next = await client.chat.completions.create({
    model: "deepseek-r1", tools: TOOLS,
    messages: [...messages, m as OpenAI.Chat.Completions.ChatCompletionMessageParam,
      { role: "tool", tool_call_id: m.tool_calls![0].id, content: '{"temp": 21} [[final]]' },
      { role: "tool", tool_call_id: m.tool_calls![1].id, content: '"14:05"' }],
  });
  const n = next.choices[0].message as typeof m;
  assert.equal(n.content, "It is 21 °C in Paris.", "the answer after the tool results");
  assert.equal(n.reasoning_content, "Summarise.", "its reasoning");
  assert.equal(next.choices[0].finish_reason, "stop", "a plain answer ends with stop");
  assert.equal(n.tool_calls, undefined, "no calls");
});

test("tools with n > 1 and logprobs: each choice is read on its own; every token's score is sent once", async () => {
  const { client } = await serve(r1);
  const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: "[[weather]] Paris?" }];
  const r = await client.chat.completions.create({ model: "deepseek-r1", messages, tools: TOOLS, n: 2, logprobs: true });
  assert.equal(r.choices.length, 2, "two choices");
  for (const c of r.choices) assert.deepEqual(c.message.tool_calls?.map((t) => t.type === "function" && t.function.name), ["get_weather", "get_time"], `choice ${c.index}`);
  const chunks: Chunk[] = [];
  for await (const c of await client.chat.completions.create({ model: "deepseek-r1", messages, tools: TOOLS, n: 2, logprobs: true, stream: true })) chunks.push(c);
  for (const i of [0, 1]) {
    const scored = chunks.flatMap((c) => c.choices.filter((ch) => ch.index === i).flatMap((ch) => ch.logprobs?.content ?? []));
    assert.equal(scored.length, r.choices[i].logprobs?.content?.length, `choice ${i}: as many scores streamed as in the whole reply`);
    const calls = chunks.flatMap((c) => c.choices.filter((ch) => ch.index === i).flatMap((ch) => ch.delta.tool_calls ?? []));
    assert.deepEqual(calls.filter((t) => t.function?.name).map((t) => t.function!.name), ["get_weather", "get_time"], `choice ${i}: its calls`);
  }
});

test("DeepSeek-R1 without tools: reasoning is still split off; tool_choice none renders no tools", async () => {
  const { client } = await serve(r1);
  const r = await client.chat.completions.create({ model: "deepseek-r1", messages: [{ role: "user", content: "Hi" }] });
  const m = r.choices[0].message as typeof r.choices[0]["message"] & { reasoning_content?: string };
  assert.equal(m.content, "Hello!");
  assert.equal(m.reasoning_content, "Nothing to do.");
  const none = await client.chat.completions.create({ model: "deepseek-r1", messages: [{ role: "user", content: "Hi" }], tools: TOOLS, tool_choice: "none" });
  assert.equal(none.usage?.prompt_tokens, r.usage?.prompt_tokens, "tool_choice none: the same prompt as without tools");
});

test("DeepSeek-V3: parallel_tool_calls false stops after the first call; the tools go into the system prompt", async () => {
  const engine = scriptedEngine("deepseek-v3", {
    plain: `${DS.cs}${v3call("get_weather", '{"city": "Rome"}')}\n${v3call("get_time", '{"zone": "Europe/Rome"}')}${DS.ce}`,
  });
  const { client } = await serve(engine);
  const r = await client.chat.completions.create({ model: "deepseek-v3", messages: [{ role: "user", content: "Rome?" }], tools: TOOLS, parallel_tool_calls: false });
  const calls = r.choices[0].message.tool_calls!;
  assert.equal(calls.length, 1, "one call");
  assert.equal(calls[0].type === "function" && calls[0].function.arguments, '{"city": "Rome"}', "whole arguments");
  assert.equal(r.choices[0].finish_reason, "tool_calls");
  assert.ok(r.usage!.completion_tokens < engine.tokenizer.encode(`${DS.cs}${v3call("get_weather", '{"city": "Rome"}')}\n${v3call("get_time", '{"zone": "Europe/Rome"}')}`, false).length, "generation stopped early");
  const both = await client.chat.completions.create({ model: "deepseek-v3", messages: [{ role: "user", content: "Rome?" }], tools: TOOLS });
  assert.equal(both.choices[0].message.tool_calls!.length, 2, "parallel (the default): both calls");
  assert.ok(both.usage!.prompt_tokens > 100, "DeepSeek-V3's template does not write tools: they are in the system prompt");
});

test("Kimi-K2-Thinking: markers that are special tokens are kept for the parser; the call ids are the model's", async () => {
  const engine = scriptedEngine("kimi-k2-thinking", {
    plain: `<think>Look it up.</think>Checking.${K.sb}${K.b}functions.get_weather:0${K.a}{"city": "東京"}${K.e}${K.b}functions.get_time:1${K.a}{"zone": "Asia/Tokyo"}${K.e}${K.se}`,
  });
  const special = engine.tokenizer.tokenToId(K.b)!;
  assert.equal(engine.tokenizer.decode([special], true), "", "with skip_special_tokens the marker would vanish");
  const { client } = await serve(engine);
  const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: "Tokyo?" }];
  const r = await client.chat.completions.create({ model: "kimi-k2-thinking", messages, tools: TOOLS });
  const m = r.choices[0].message as typeof r.choices[0]["message"] & { reasoning_content?: string };
  assert.equal(m.content, "Checking.", "content before the calls");
  assert.equal(m.reasoning_content, "Look it up.");
  assert.deepEqual(m.tool_calls!.map((c) => [c.id, c.type === "function" && c.function.name, c.type === "function" && JSON.parse(c.function.arguments)]), [
    ["functions.get_weather:0", "get_weather", { city: "東京" }], ["functions.get_time:1", "get_time", { zone: "Asia/Tokyo" }],
  ]);
  const s = await collect(await client.chat.completions.create({ model: "kimi-k2-thinking", messages, tools: TOOLS, stream: true }));
  assert.equal(s.content, m.content, "streamed content");
  assert.equal(s.reasoning, m.reasoning_content, "streamed reasoning");
  assert.deepEqual(s.calls, m.tool_calls!.map((c) => ({ id: c.id, name: c.type === "function" && c.function.name, arguments: c.type === "function" && c.function.arguments })), "streamed calls");
  // the history of the loop renders (Kimi writes the call ids back)
  const next = await client.chat.completions.create({ model: "kimi-k2-thinking", tools: TOOLS, messages: [...messages, m as OpenAI.Chat.Completions.ChatCompletionMessageParam, { role: "tool", tool_call_id: "functions.get_weather:0", content: "9 °C" }] });
  assert.equal(next.choices[0].finish_reason, "tool_calls", "rendered and answered");
});

test("GLM-4.7: a named tool_choice starts the call for the model; streamed arguments build one JSON object", async () => {
  const engine = scriptedEngine("glm-4.7", {
    // what the model writes after the prefill "</think><tool_call>get_weather"
    plain: "<arg_key>city</arg_key><arg_value>New York</arg_value><arg_key>days</arg_key><arg_value>3</arg_value></tool_call>",
  });
  const { client } = await serve(engine);
  const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: "NYC?" }];
  const tool_choice = { type: "function", function: { name: "get_weather" } } as const;
  const r = await client.chat.completions.create({ model: "glm-4.7", messages, tools: TOOLS, tool_choice });
  const call = r.choices[0].message.tool_calls![0];
  assert.equal(call.type === "function" && call.function.name, "get_weather");
  assert.equal(call.type === "function" && call.function.arguments, '{"city": "New York", "days": 3}', "string and integer parameters");
  const s = await collect(await client.chat.completions.create({ model: "glm-4.7", messages, tools: TOOLS, tool_choice, stream: true }));
  assert.equal(s.calls[0].arguments, '{"city": "New York", "days": 3}', "streamed arguments");
  assert.equal(s.reasoning, "", "the forced call closed the reasoning block");
});

test("DeepSeek-R1: a named tool_choice constrains the arguments to the tool's schema and closes the call with its markers", async () => {
  // the scripted model writes its JSON, then chatter where the call's closing markers belong: the constraint
  // forces "\n```" + the call and calls end markers after the document, then the end of the reply
  const engine = scriptedEngine("deepseek-r1", { plain: '{"city": "Paris"} Sure, that is done.' });
  const { client, url } = await serve(engine);
  const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: "Paris?" }];
  const tool_choice = { type: "function", function: { name: "get_weather" } } as const;
  const r = await client.chat.completions.create({ model: "deepseek-r1", messages, tools: TOOLS, tool_choice, max_tokens: 60 });
  assert.equal(r.choices[0].finish_reason, "tool_calls");
  assert.equal(r.choices[0].message.content, null, "no chatter after the call");
  assert.deepEqual(r.choices[0].message.tool_calls?.map((c) => c.type === "function" && [c.function.name, JSON.parse(c.function.arguments)]), [["get_weather", { city: "Paris" }]]);
  // "required" with one tool names it, so the same holds
  const q = await client.chat.completions.create({ model: "deepseek-r1", messages, tools: TOOLS.slice(0, 1), tool_choice: "required", max_tokens: 60 });
  assert.deepEqual(q.choices[0].message.tool_calls?.map((c) => c.type === "function" && [c.function.name, JSON.parse(c.function.arguments)]), [["get_weather", { city: "Paris" }]]);
  // a schema the constraint cannot follow, and response_format beside a forced call, are 400s naming the field
  const post = async (body: object) => {
    const res = await fetch(`${url}/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ messages, max_tokens: 4, ...body }) });
    return { status: res.status, body: await res.json() };
  };
  const bad = await post({ tools: [{ type: "function", function: { name: "f", parameters: { type: "object", patternProperties: { "^a": {} } } } }], tool_choice: "required" });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.param, "tools[0].function.parameters");
  const both = await post({ tools: TOOLS, tool_choice, response_format: { type: "json_object" } });
  assert.equal(both.status, 400);
  assert.equal(both.body.error.param, "response_format");
});

test("requests a model cannot serve, and malformed tool fields, are 400s that name the field", async () => {
  // a vocabulary and template that show no tool-call format (mla-brown's default template)
  const tok = tokenizerWith([]);
  const plainEngine = new TextEngine("plain", scriptedModel(tok, { plain: "hi" }, 1), tok, ChatTemplate.load(join(HERE, "../../../models/mla-brown"), tok), [1], { maxCacheBytes: 1 << 20, prefillChunk: 1 << 16 });
  const { client, url } = await serve(plainEngine);
  const err = await client.chat.completions.create({ model: "plain", messages: [{ role: "user", content: "x" }], tools: TOOLS }).catch((e: unknown) => e);
  assert.ok(err instanceof OpenAI.BadRequestError, "400");
  assert.equal((err as InstanceType<typeof OpenAI.BadRequestError>).param, "tools");
  assert.match((err as Error).message, /no tool-call format/);
  const post = async (body: object) => {
    const r = await fetch(`${url}/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ messages: [{ role: "user", content: "x" }], max_tokens: 2, ...body }) });
    return { status: r.status, body: await r.json() };
  };
  const cases: [object, string][] = [
    [{ tools: [{ type: "function", function: { name: "has space" } }] }, "tools[0].function.name"],
    [{ tools: [{ type: "retrieval" }] }, "tools[0].type"],
    [{ tools: TOOLS, tool_choice: { type: "function", function: { name: "nope" } } }, "tool_choice"],
    [{ tool_choice: "required" }, "tool_choice"],
    [{ tools: TOOLS, parallel_tool_calls: "yes" }, "parallel_tool_calls"],
    [{ chat_template_kwargs: "thinking" }, "chat_template_kwargs"],
    [{ messages: [{ role: "tool", content: "42" }] }, "messages[0].tool_call_id"],
    [{ messages: [{ role: "assistant", content: null, tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: 3 } }] }] }, "messages[0].tool_calls[0].function.arguments"],
  ];
  for (const [body, param] of cases) {
    const r = await post(body);
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.param, param, `param of ${JSON.stringify(body)}`);
    assert.equal(r.body.error.type, "invalid_request_error");
    assert.ok(!r.body.error.message.includes("\n"), "one line");
  }
  const ok = await post({ tools: TOOLS, tool_choice: "none" });
  assert.equal(ok.status, 200, "tool_choice none needs no format");
});

test("mla serve (the CLI): the format is read from the model's chat template, tools render, bad flags are one-line errors", async () => {
  const ROOT = join(HERE, "../../..");
  const BROWN = join(ROOT, "models/mla-brown");
  // mla-brown with DeepSeek-V3.1's chat template: its replies are random text, but the prompt path is the real one
  const dir = mkdtempSync(join(tmpdir(), "mla-tools-cli-"));
  try {
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(BROWN, f), join(dir, f));
    copyFileSync(join(HERE, "deepseek-v3.1.jinja"), join(dir, "chat_template.jinja"));
    const main = join(ROOT, "src/cli/main.ts");
    const bad = spawnSync(process.execPath, ["--import", "tsx", main, "serve", "--model", dir, "--backend", "cpu-scalar", "--tool-parser", "hermes"], { cwd: ROOT, encoding: "utf8" });
    assert.notEqual(bad.status, 0, "refused");
    assert.match(bad.stderr, /^error: --tool-parser must be auto, none or one of .*; got "hermes"\n$/, "one line that names the flag");
    const { spawn } = await import("node:child_process");
    const p = spawn(process.execPath, ["--import", "tsx", main, "serve", "--model", dir, "--name", "x", "--backend", "cpu-scalar", "--port", "0", "--quiet", "--max-cache-mb", "64"], { cwd: ROOT });
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    try {
      while (!/tool calls: .*\n/.test(err)) {
        if (p.exitCode !== null) assert.fail(`mla serve exited: ${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.match(err, /tool calls: deepseek_v31 \(DeepSeek-V3\.1\); reasoning: <think> blocks go to reasoning_content/, "the banner says what it read");
      const port = Number(/127\.0\.0\.1:(\d+)/.exec(err)![1]);
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0 });
      const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: "Weather in Oslo?" }];
      const without = await client.chat.completions.create({ model: "x", messages, max_tokens: 3, temperature: 0 });
      const withTools = await client.chat.completions.create({ model: "x", messages, tools: TOOLS, max_tokens: 3, temperature: 0 });
      assert.ok(withTools.usage!.prompt_tokens > without.usage!.prompt_tokens + 50, "the tools are in the prompt (V3.1's template does not write them: the system prompt does)");
      assert.equal(typeof withTools.choices[0].message.content, "string", "a random model's text comes back as content");
    } finally {
      p.kill("SIGTERM");
      await new Promise((r) => (p.exitCode !== null ? r(null) : p.on("exit", r)));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// .ci/run makes a venv with openai and names it in MLA_PYTHON: in CI the test must run; elsewhere it runs where a
// Python with openai is found and says why it cannot otherwise
const PYTHON = process.env.MLA_PYTHON ?? "/tmp/gguf-venv/bin/python";
const hasPythonClient = existsSync(PYTHON) && spawnSync(PYTHON, ["-c", "import openai"]).status === 0;
const noClient = process.env.CI ? false : `${PYTHON} with the openai package is not installed (set MLA_PYTHON)`;

test("the Python openai client: tool calls, streamed deltas and reasoning_content", { skip: hasPythonClient ? false : noClient }, async () => {
  assert.ok(hasPythonClient, `${PYTHON} has no openai package (.ci/run installs one and sets MLA_PYTHON)`);
  const { url } = await serve(r1);
  const dir = mkdtempSync(join(tmpdir(), "mla-tools-py-"));
  try {
    const script = join(dir, "client.py");
    writeFileSync(script, PY_CLIENT);
    // the client runs in a child process while this process serves: spawn asynchronously
    const { spawn } = await import("node:child_process");
    const child = spawn(PYTHON, [script, url, JSON.stringify(TOOLS)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "", errText = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (errText += d));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, `python client failed: ${errText}`);
    const r = JSON.parse(out);
    assert.equal(r.whole.finish_reason, "tool_calls");
    assert.equal(r.whole.content, null);
    assert.equal(r.whole.reasoning_content, "The user wants Paris.\nCall get_weather.");
    assert.deepEqual(r.whole.calls, [["get_weather", { city: "Paris", days: 2 }], ["get_time", { zone: "Europe/Paris" }]]);
    assert.deepEqual(r.streamed.calls, r.whole.calls, "streamed = whole");
    assert.equal(r.streamed.reasoning_content, r.whole.reasoning_content);
    assert.equal(r.streamed.finish_reason, "tool_calls");
    assert.equal(r.next.content, "It is 21 °C in Paris.", "the loop's next turn");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const PY_CLIENT = `
import json, sys
from openai import OpenAI

url, tools = sys.argv[1], json.loads(sys.argv[2])
client = OpenAI(base_url=url, api_key="unused", max_retries=0)
messages = [{"role": "user", "content": "[[weather]] Weather and time in Paris?"}]

r = client.chat.completions.create(model="deepseek-r1", messages=messages, tools=tools)
m = r.choices[0].message
whole = {
    "finish_reason": r.choices[0].finish_reason,
    "content": m.content,
    "reasoning_content": getattr(m, "reasoning_content", None),
    "calls": [[c.function.name, json.loads(c.function.arguments)] for c in m.tool_calls],
}

calls, reasoning, finish = {}, "", None
for chunk in client.chat.completions.create(model="deepseek-r1", messages=messages, tools=tools, stream=True):
    if not chunk.choices:
        continue
    d = chunk.choices[0].delta
    reasoning += getattr(d, "reasoning_content", None) or ""
    for t in d.tool_calls or []:
        c = calls.setdefault(t.index, {"name": t.function.name, "arguments": ""})
        c["arguments"] += t.function.arguments or ""
    finish = chunk.choices[0].finish_reason or finish
streamed = {
    "finish_reason": finish,
    "reasoning_content": reasoning,
    "calls": [[c["name"], json.loads(c["arguments"])] for _, c in sorted(calls.items())],
}

history = messages + [m.model_dump(exclude_none=True)] + [
    {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": '{"temp": 21} [[final]]'},
    {"role": "tool", "tool_call_id": m.tool_calls[1].id, "content": '"14:05"'},
]
n = client.chat.completions.create(model="deepseek-r1", messages=history, tools=tools)
print(json.dumps({"whole": whole, "streamed": streamed, "next": {"content": n.choices[0].message.content}}))
`;
