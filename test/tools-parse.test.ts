// The tool-call and reasoning parsers on fixture replies of each format: read whole, and streamed in random pieces,
// whose deltas must add up to the whole reading. The replies are written in the syntax the models' chat templates
// write past calls in (test/fixtures/chat-templates/) and vLLM's tool parsers read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChatOutput, foldDeltas, type ChatDelta, type ChatResult, type ToolSpec } from "../src/server/tools/index.js";
import { TOOL_FORMATS, type ToolFormatName } from "../src/server/tools/formats.js";
import { cut, holdTail } from "../src/server/tools/stream.js";
import { kimiName } from "../src/server/tools/parsers.js";

const TOOLS: ToolSpec[] = [
  { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer" }, opts: { type: "object" } } } } },
  { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { zone: { type: "string" } } } } },
];

interface Case {
  readonly name: string;
  readonly format: ToolFormatName | null;
  readonly reasoning: "off" | "open" | "detect";
  readonly text: string;
  readonly want: { content: string | null; reasoning?: string; calls: { id?: string; name: string; args: unknown }[] };
}

const DS = { cs: "<｜tool▁calls▁begin｜>", ce: "<｜tool▁calls▁end｜>", b: "<｜tool▁call▁begin｜>", e: "<｜tool▁call▁end｜>", sep: "<｜tool▁sep｜>" };
const K = { sb: "<|tool_calls_section_begin|>", se: "<|tool_calls_section_end|>", b: "<|tool_call_begin|>", a: "<|tool_call_argument_begin|>", e: "<|tool_call_end|>" };
const v3call = (name: string, args: string) => `${DS.b}function${DS.sep}${name}\n\`\`\`json\n${args}\n\`\`\`${DS.e}`;

const CASES: Case[] = [
  {
    name: "DeepSeek-V3: text, then two calls", format: "deepseek_v3", reasoning: "off",
    text: `I'll check both.${DS.cs}${v3call("get_weather", '{"city": "Paris", "days": 2}')}\n${v3call("get_time", '{"zone": "Europe/Paris"}')}${DS.ce}`,
    want: { content: "I'll check both.", calls: [{ name: "get_weather", args: { city: "Paris", days: 2 } }, { name: "get_time", args: { zone: "Europe/Paris" } }] },
  },
  {
    name: "DeepSeek-V3: no call; text that looks like the start of a marker stays text", format: "deepseek_v3", reasoning: "off",
    text: "Use <｜tool▁ with care: ```json\n{}\n``` is only text <｜tool▁call▁end｜> here.",
    want: { content: "Use <｜tool▁ with care: ```json\n{}\n``` is only text <｜tool▁call▁end｜> here.", calls: [] },
  },
  {
    name: "DeepSeek-R1: the reply starts inside <think> (the prompt opened it), then a call", format: "deepseek_v3", reasoning: "open",
    text: `The user wants the weather.\nCall the tool.\n</think>\n\n${DS.cs}${v3call("get_weather", '{"city": "Lyon"}')}${DS.ce}`,
    want: { content: null, reasoning: "The user wants the weather.\nCall the tool.", calls: [{ name: "get_weather", args: { city: "Lyon" } }] },
  },
  {
    name: "DeepSeek-R1: reasoning and an answer, no call", format: "deepseek_v3", reasoning: "open",
    text: "\nRayleigh scattering.\n</think>\n\nShort waves scatter more.",
    want: { content: "Short waves scatter more.", reasoning: "Rayleigh scattering.", calls: [] },
  },
  {
    name: "DeepSeek-V3.1: name<sep>arguments, no fence", format: "deepseek_v31", reasoning: "detect",
    text: `${DS.cs}${DS.b}get_weather${DS.sep}{"city": "Oslo"}${DS.e}${DS.b}get_time${DS.sep}{}${DS.e}${DS.ce}`,
    want: { content: null, calls: [{ name: "get_weather", args: { city: "Oslo" } }, { name: "get_time", args: {} }] },
  },
  {
    name: "GLM-4.5/4.6: reasoning block, content, two calls with newlines", format: "glm45", reasoning: "detect",
    text: "<think>The user asks for two things.</think>\nSure.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>New York</arg_value>\n" +
      "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>\n<tool_call>get_time\n<arg_key>zone</arg_key>\n<arg_value>America/New_York</arg_value>\n</tool_call>",
    want: { content: "Sure.", reasoning: "The user asks for two things.", calls: [{ name: "get_weather", args: { city: "New York", days: 3 } }, { name: "get_time", args: { zone: "America/New_York" } }] },
  },
  {
    name: "GLM-4.7: inside <think> from the prompt, a call without newlines; string values escaped, JSON values parsed", format: "glm45", reasoning: "open",
    text: 'Need weather.</think><tool_call>get_weather<arg_key>city</arg_key><arg_value> Saint "Malo"\n(FR) </arg_value>' +
      '<arg_key>opts</arg_key><arg_value>{"units": ["C", "F"], "alerts": True}</arg_value><arg_key>days</arg_key><arg_value>True</arg_value></tool_call>',
    want: { content: null, reasoning: "Need weather.", calls: [{ name: "get_weather", args: { city: 'Saint "Malo"\n(FR)', opts: { units: ["C", "F"], alerts: true }, days: true } }] },
  },
  {
    name: "GLM: a call without arguments, text after it", format: "glm45", reasoning: "off",
    text: "<tool_call>get_time</tool_call>\nDone?",
    want: { content: "Done?", calls: [{ name: "get_time", args: {} }] },
  },
  {
    name: "Kimi-K2: a section of two calls; the ids are the model's", format: "kimi_k2", reasoning: "off",
    text: `Let me see.${K.sb}${K.b}functions.get_weather:0${K.a}{"city": "Beijing"}${K.e}${K.b}functions.get_time:1${K.a} {"zone": "Asia/Shanghai"} ${K.e}${K.se}`,
    want: { content: "Let me see.", calls: [{ id: "functions.get_weather:0", name: "get_weather", args: { city: "Beijing" } }, { id: "functions.get_time:1", name: "get_time", args: { zone: "Asia/Shanghai" } }] },
  },
  {
    name: "Kimi-K2-Thinking: <think> block, then a call", format: "kimi_k2", reasoning: "detect",
    text: `<think>Look it up.</think>${K.sb}${K.b}functions.get_weather:0${K.a}{"city": "東京"}${K.e}${K.se}`,
    want: { content: null, reasoning: "Look it up.", calls: [{ id: "functions.get_weather:0", name: "get_weather", args: { city: "東京" } }] },
  },
  {
    name: "reasoning only (no tools): a reply that does not open with <think> is all content", format: null, reasoning: "detect",
    text: "  The answer is <think>not reasoning</think> 42.",
    want: { content: "  The answer is <think>not reasoning</think> 42.", calls: [] },
  },
  {
    name: "inside <think> from the prompt, the model writes <think> again: dropped", format: null, reasoning: "open",
    text: "\n<think>\nHmm.\n</think>\nYes.",
    want: { content: "Yes.", reasoning: "Hmm.", calls: [] },
  },
  {
    name: "reasoning cut short (max_tokens): all of it is reasoning", format: null, reasoning: "open",
    text: "Step one: 🎉 consider</th",
    want: { content: null, reasoning: "Step one: 🎉 consider</th", calls: [] },
  },
];

function output(c: Case): ChatOutput {
  let n = 0;
  const calls = c.format ? TOOL_FORMATS[c.format].parser({ tools: TOOLS, newId: () => `call_${n++}` }) : null;
  return new ChatOutput({ reasoning: c.reasoning, calls });
}

function run(c: Case, pieces: readonly string[]): ChatDelta[] {
  const out = output(c);
  return [...pieces.flatMap((p) => out.push(p)), ...out.finish()];
}

/** A reply's pieces: random lengths, cut between code points (as the engine's text deltas are). */
function pieces(text: string, seed: number): string[] {
  const chars = [...text], out: string[] = [];
  let s = seed;
  for (let i = 0; i < chars.length;) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const n = 1 + (s % 9);
    out.push(chars.slice(i, i + n).join(""));
    i += n;
  }
  return out;
}

function check(c: Case, r: ChatResult): void {
  assert.equal(r.content || null, c.want.content, "content");
  assert.equal(r.reasoning, c.want.reasoning ?? "", "reasoning");
  assert.equal(r.calls.length, c.want.calls.length, "number of calls");
  c.want.calls.forEach((w, i) => {
    assert.equal(r.calls[i].name, w.name, `call ${i} name`);
    assert.deepEqual(JSON.parse(r.calls[i].arguments), w.args, `call ${i} arguments ${r.calls[i].arguments}`);
    if (w.id) assert.equal(r.calls[i].id, w.id, `call ${i} id`);
    else assert.match(r.calls[i].id, /^call_\d+$/, `call ${i} id from the server`);
  });
}

for (const c of CASES) {
  test(`parse whole: ${c.name}`, () => {
    const deltas = run(c, [c.text]);
    check(c, foldDeltas(deltas));
    // what a client sees: a call's name before its arguments, no marker in the text
    const seen = new Set<number>();
    for (const d of deltas) {
      if (d.kind === "call") seen.add(d.index);
      if (d.kind === "args") assert.ok(seen.has(d.index), "arguments after their call's name");
    }
  });

  test(`parse streamed in random pieces adds up to the whole: ${c.name}`, () => {
    const whole = foldDeltas(run(c, [c.text]));
    for (let seed = 1; seed <= 60; seed++) {
      const deltas = run(c, pieces(c.text, seed));
      assert.deepEqual(foldDeltas(deltas), whole, `seed ${seed}`);
    }
    // one character at a time, the hardest split
    assert.deepEqual(foldDeltas(run(c, [...c.text])), whole, "one character a piece");
  });
}

test("streamed deltas come as the reply grows: a call's name before the call ends, its arguments in pieces", () => {
  const c = CASES[0];
  const out = output(c);
  const at = c.text.indexOf("Paris");
  const first = out.push(c.text.slice(0, at));
  assert.deepEqual(first.map((d) => d.kind), ["content", "call", "args"], "content, the name, the arguments so far");
  const last = first.at(-1);
  assert.equal(last?.kind === "args" ? last.text : null, '{"city": "', "arguments so far");
  const rest = out.push(c.text.slice(at));
  assert.ok(rest.some((d) => d.kind === "call" && d.name === "get_time"), "the second call");
});

test("GLM string values stream piece by piece as one JSON string", () => {
  const c = CASES[5];
  const out = output(c);
  const i = c.text.indexOf("New York");
  out.push(c.text.slice(0, i + 4));
  const d = out.push(c.text.slice(i + 4, i + 8));
  // "New " was sent as "New" (a space that ends a value so far is held back: values are trimmed)
  assert.deepEqual(d, [{ kind: "args", index: 0, text: " York" }], "the value's next piece as it comes");
});

test("a required call's prefill is read as the reply's start", () => {
  for (const name of ["deepseek_v3", "deepseek_v31", "glm45", "kimi_k2"] as const) {
    const f = TOOL_FORMATS[name];
    const out = new ChatOutput({ reasoning: "off", calls: f.parser({ tools: TOOLS, newId: () => "call_x" }) });
    const rest: Record<string, string> = {
      deepseek_v3: '{"zone": "UTC"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
      deepseek_v31: '{"zone": "UTC"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
      glm45: "<arg_key>zone</arg_key><arg_value>UTC</arg_value></tool_call>",
      kimi_k2: '{"zone": "UTC"}<|tool_call_end|><|tool_calls_section_end|>',
    };
    const deltas = [...out.push(f.prefill("get_time")), ...out.push(rest[name]), ...out.finish()];
    const r = foldDeltas(deltas);
    assert.equal(r.calls.length, 1, `${name}: one call`);
    assert.equal(r.calls[0].name, "get_time", `${name}: the named function`);
    assert.deepEqual(JSON.parse(r.calls[0].arguments), { zone: "UTC" }, `${name}: arguments`);
    assert.equal(r.content, "", `${name}: no content`);
  }
});

test("parallel_tool_calls false: a reply cut at the first call's end (its stop string) still gives the whole call", () => {
  for (const name of ["deepseek_v3", "deepseek_v31", "glm45", "kimi_k2"] as const) {
    const f = TOOL_FORMATS[name];
    const c = CASES.find((x) => x.format === name)!;
    const text = c.text.slice(0, c.text.indexOf(f.callEnd));
    const out = new ChatOutput({ reasoning: c.reasoning, calls: f.parser({ tools: TOOLS, newId: () => "call_x" }) });
    const r = foldDeltas([...out.push(text), ...out.finish()]);
    assert.equal(r.calls.length, 1, `${name}: one call`);
    assert.deepEqual(JSON.parse(r.calls[0].arguments), c.want.calls[0].args, `${name}: its arguments are whole`);
  }
});

test("cut and holdTail: markers split anywhere", () => {
  assert.deepEqual(cut("abc<x", ["<xy>"]), { before: "abc", marker: null, rest: "<x" }, "a marker's start is held back");
  assert.deepEqual(cut("a<xy>b", ["<xy>", "<x"]), { before: "a", marker: "<xy>", rest: "b" }, "the longer marker at the same place");
  assert.deepEqual(cut("a<b", ["<xy>"]), { before: "a<b", marker: null, rest: "" }, "not a marker's start");
  assert.deepEqual(holdTail('{"a": 1}\n``', /[\s`]+$/), { out: '{"a": 1}', held: "\n``" }, "a closing fence held back");
  assert.equal(kimiName("functions.get_weather:12"), "get_weather");
  assert.equal(kimiName("lookup"), "lookup");
});
