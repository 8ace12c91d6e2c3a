// Structured output end to end: 100 responses sampled from the bundled model at temperature 1 (different seeds,
// several schemas) all parse and validate; greedy decoding is constrained too; a max_tokens cut-off is "length"
// with a document prefix; and the server takes response_format on both endpoints (openai client, streaming) and
// refuses what it cannot honour with a 400 that names it.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { cpuRuntime } from "../src/model/load.js";
import { TextEngine, type TextResult } from "../src/generate/text.js";
import { jsonObjectGrammar, jsonSchemaGrammar } from "../src/generate/grammar/schema.js";
import { ApiServer } from "../src/server/server.js";
import { run, validate, SCHEMAS } from "./grammar-check.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BROWN = join(ROOT, "models/mla-brown");
const ops = await WasmOps.create({ threads: 1 });
const engine = TextEngine.open(BROWN, { runtime: cpuRuntime(ops), maxCacheBytes: 256 << 20, maxBatch: 32, maxQueue: 128 });
const server = new ApiServer(engine);
const { port } = await server.listen(0, "127.0.0.1");
const BASE = `http://127.0.0.1:${port}`;
const client = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: "unused", maxRetries: 0 });
after(async () => {
  await server.close();
  await ops.close();
});


const BACKSLASH = engine.tokenizer.tokenToId("\\")!;

test("100 responses sampled at temperature 1 all parse and validate against their schemas", async () => {
  const prompt = engine.encode("The jury said");
  const names = Object.keys(SCHEMAS);
  const jobs: { name: string; seed: number; done: Promise<TextResult> }[] = [];
  for (let seed = 0; seed < 100; seed++) {
    const name = names[seed % names.length];
    // the escapes schema pushes the backslash token up, so its strings are full of escapes the grammar must keep valid
    const logitBias = name === "escapes" ? new Map([[BACKSLASH, 15]]) : undefined;
    jobs.push({ name, seed, done: engine.start({ prompt, maxTokens: 1000, temperature: 1, seed, logitBias, json: jsonSchemaGrammar(SCHEMAS[name]) }).done });
  }
  let escapes = 0, tokens = 0;
  for (const j of jobs) {
    const r = await j.done;
    const what = `${j.name} seed ${j.seed}: ${JSON.stringify(r.text)}`;
    assert.equal(r.finishReason, "stop", `ended by the document: ${what}`);
    const doc = JSON.parse(r.text);
    assert.equal(validate(doc, SCHEMAS[j.name]), null, `validates: ${what}`);
    assert.deepEqual(run(jsonSchemaGrammar(SCHEMAS[j.name]), r.text), { prefix: true, complete: true }, `the automaton agrees: ${what}`);
    assert.ok(engine.stopIds.includes(r.tokens[r.tokens.length - 1]), "the last token is a stop token (EOS only once complete)");
    if (j.name === "escapes") escapes += (r.text.match(/\\/g) ?? []).length;
    tokens += r.completionTokens;
  }
  assert.ok(escapes > 50, `the escape schema's outputs hold escapes (${escapes} backslashes)`);
  assert.ok(tokens > 2000, `${tokens} tokens sampled`);
});

test("greedy decoding is constrained too; max_tokens cuts a document short with finish 'length'", async () => {
  const prompt = engine.encode("It was");
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    const r = await engine.start({ prompt, maxTokens: 1000, json: jsonSchemaGrammar(schema) }).done;
    assert.equal(r.finishReason, "stop", `${name}: greedy ends: ${r.text}`);
    assert.equal(validate(JSON.parse(r.text), schema), null, `${name}: greedy validates: ${r.text}`);
  }
  const cut = await engine.start({ prompt, maxTokens: 4, temperature: 1, seed: 1, json: jsonSchemaGrammar(SCHEMAS.person) }).done;
  assert.equal(cut.finishReason, "length", "cut off");
  assert.deepEqual(run(jsonSchemaGrammar(SCHEMAS.person), cut.text), { prefix: true, complete: false }, `an incomplete document: ${cut.text}`);
  // json_object: an object; this small model's free strings run long, so only the ones that ended must parse
  for (let seed = 0; seed < 8; seed++) {
    const r = await engine.start({ prompt, maxTokens: 60, temperature: 1, seed, json: jsonObjectGrammar() }).done;
    assert.ok(run(jsonObjectGrammar(), r.text).prefix, `a JSON object prefix: ${r.text}`);
    if (r.finishReason === "stop") {
      const v = JSON.parse(r.text);
      assert.ok(typeof v === "object" && v !== null && !Array.isArray(v), "an object");
    } else assert.equal(r.finishReason, "length");
  }
});

test("the server: response_format on chat and completions, streamed too, with the openai client", async () => {
  const schema = SCHEMAS.person;
  const messages = [{ role: "user" as const, content: "Describe a person as JSON." }];
  const r = await client.chat.completions.create({
    model: "mla-brown", messages, temperature: 1, seed: 7, max_tokens: 1000,
    response_format: { type: "json_schema", json_schema: { name: "person", schema: schema as Record<string, unknown>, strict: true } },
  });
  assert.equal(r.choices[0].finish_reason, "stop");
  const content = r.choices[0].message.content!;
  assert.equal(validate(JSON.parse(content), schema), null, `chat: ${content}`);

  const stream = await client.chat.completions.create({
    model: "mla-brown", messages, temperature: 1, seed: 7, max_tokens: 1000, stream: true,
    response_format: { type: "json_schema", json_schema: { name: "person", schema: schema as Record<string, unknown> } },
  });
  let text = "", finish: string | null = null;
  for await (const c of stream) {
    text += c.choices[0]?.delta.content ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, content, "streamed = non-streamed (same seed)");
  assert.equal(finish, "stop");

  const c = await client.completions.create({
    model: "mla-brown", prompt: "Data:", temperature: 1, seed: 3, max_tokens: 1000,
    // response_format on completions is this server's (and vLLM's) extension of OpenAI's API
    ...({ response_format: { type: "json_schema", json_schema: { name: "n", schema: SCHEMAS.nested } } } as object),
  });
  assert.equal(c.choices[0].finish_reason, "stop");
  assert.equal(validate(JSON.parse(c.choices[0].text), SCHEMAS.nested), null, `completion: ${c.choices[0].text}`);

  const o = await client.chat.completions.create({ model: "mla-brown", messages, temperature: 0, max_tokens: 40, response_format: { type: "json_object" } });
  const ot = o.choices[0].message.content!;
  assert.ok(run(jsonObjectGrammar(), ot).prefix, `json_object: ${ot}`);
  if (o.choices[0].finish_reason === "stop") assert.equal(typeof JSON.parse(ot), "object");
  else assert.equal(o.choices[0].finish_reason, "length", "an object cut at max_tokens");

  const t = await client.chat.completions.create({ model: "mla-brown", messages, temperature: 0, max_tokens: 5, response_format: { type: "text" } });
  assert.equal(t.choices[0].finish_reason, "length", "type text: unconstrained");
});

async function post(path: string, body: object): Promise<{ status: number; body: { error: { message: string; param: string | null; code: string | null; type: string } } }> {
  const r = await fetch(`${BASE}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}

test("the server refuses response formats it cannot honour with a 400 that names the keyword or field", async () => {
  const chat = (response_format: unknown, extra: object = {}) => post("/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], response_format, ...extra });
  const cases: [unknown, object, string, string][] = [
    [{ type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { e: { type: "string", pattern: "^a" } } } } }, {}, "response_format.json_schema.schema", "'pattern'"],
    [{ type: "json_schema", json_schema: { name: "x", schema: { type: "integer", minimum: 0 } } }, {}, "response_format.json_schema.schema", "'minimum'"],
    [{ type: "json_schema", json_schema: { name: "x", schema: { type: "string", fooBar: 1 } } }, {}, "response_format.json_schema.schema", "'fooBar'"],
    [{ type: "json_schema", json_schema: { schema: {} } }, {}, "response_format.json_schema.name", "name"],
    [{ type: "json_schema" }, {}, "response_format.json_schema", "json_schema"],
    [{ type: "json_schema", json_schema: { name: "x", schema: {}, extra: 1 } }, {}, "response_format.json_schema.extra", "extra"],
    [{ type: "xml" }, {}, "response_format.type", "json_object"],
    ["json", {}, "response_format", "object"],
    [{ type: "json_object" }, { min_tokens: 5 }, "min_tokens", "min_tokens"],
    [{ type: "json_object" }, { ignore_eos: true }, "ignore_eos", "ignore_eos"],
  ];
  for (const [rf, extra, param, says] of cases) {
    const r = await chat(rf, extra);
    assert.equal(r.status, 400, `${JSON.stringify(rf)}: 400`);
    assert.equal(r.body.error.type, "invalid_request_error");
    assert.equal(r.body.error.param, param, `${JSON.stringify(rf)}: param`);
    assert.ok(r.body.error.message.includes(says), `${JSON.stringify(rf)}: the message says ${says}: ${r.body.error.message}`);
  }
  const c = await post("/v1/completions", { prompt: "x", response_format: { type: "json_schema", json_schema: { name: "x", schema: { oneOf: [{}] } } } });
  assert.equal(c.status, 400, "completions too");
  assert.equal(c.body.error.code, "invalid_json_schema");
  assert.ok(c.body.error.message.includes("'oneOf'"), c.body.error.message);
});
