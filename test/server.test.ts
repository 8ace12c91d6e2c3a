import { test, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { cpuOps } from "../src/backends/ops.js";
import { TextEngine } from "../src/generate/text.js";
import { ApiServer } from "../src/server/server.js";
import type { InferenceModel } from "../src/model/inference.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BROWN = join(ROOT, "models/mla-brown");

// The scalar kernels compute every row of a batch exactly as alone, so concurrent greedy outputs must equal
// sequential ones token for token.
const engine = TextEngine.open(BROWN, { ops: cpuOps, maxCacheBytes: 64 << 20, maxBatch: 16, maxQueue: 32 });
const server = new ApiServer(engine, { maxBodyBytes: 64 * 1024 });
const { port } = await server.listen(0, "127.0.0.1");
const BASE = `http://127.0.0.1:${port}`;
const client = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: "unused", maxRetries: 0 });
after(() => server.close());

interface Reply {
  status: number;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function call(path: string, body?: unknown, init: RequestInit = {}): Promise<Reply> {
  const r = await fetch(`${BASE}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, body: text ? JSON.parse(text) : null };
}

/** An OpenAI error object with this status, type and code. */
function assertError(r: Reply, status: number, code: string | null, type = "invalid_request_error"): void {
  assert.equal(r.status, status, `status ${status}: ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body?.error?.message, "string", "error.message");
  assert.ok(r.body.error.message.length > 0, "a message that says what is wrong");
  assert.equal(r.body.error.type, type, "error.type");
  assert.equal(r.body.error.code, code, "error.code");
  assert.ok("param" in r.body.error, "error.param is present");
}

async function waitIdle(): Promise<ReturnType<TextEngine["scheduler"]["stats"]>> {
  for (;;) {
    const s = engine.scheduler.stats();
    if (s.active === 0 && s.waiting === 0) return s;
    await new Promise((r) => setTimeout(r, 5));
  }
}

test("GET /health and /v1/models", async () => {
  const h = await call("/health");
  assert.equal(h.status, 200, "health ok");
  assert.equal(h.body.status, "ok", "status ok");
  assert.equal(h.body.model, "mla-brown", "model name");
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ["mla-brown"], "one model, named after its folder");
  const one = await client.models.retrieve("mla-brown");
  assert.equal(one.id, "mla-brown", "retrieve");
  assertError(await call("/v1/models/gpt-4"), 404, "model_not_found");
});

test("openai client: completions, non-streaming and streaming, with usage", async () => {
  const prompt = "The jury said";
  const r = await client.completions.create({ model: "mla-brown", prompt, max_tokens: 8, temperature: 0 });
  assert.equal(r.object, "text_completion", "object");
  assert.equal(r.choices.length, 1, "one choice");
  assert.equal(r.choices[0].finish_reason, "length", "ran to max_tokens");
  assert.ok(r.choices[0].text.length > 0, "some text");
  assert.deepEqual(r.usage, { prompt_tokens: engine.encode(prompt).length, completion_tokens: 8, total_tokens: engine.encode(prompt).length + 8 }, "usage");

  const stream = await client.completions.create({ model: "mla-brown", prompt, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = "", finish: string | null = null, usage: unknown = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.choices[0]) {
      text += c.choices[0].text;
      finish = c.choices[0].finish_reason ?? finish;
    }
    if (c.usage) usage = c.usage;
  }
  assert.equal(text, r.choices[0].text, "the streamed text equals the non-streamed one");
  assert.equal(finish, "length", "finish reason in the last chunk");
  assert.deepEqual(usage, r.usage, "usage chunk");
  assert.ok(chunks >= 3, `text arrived in several chunks (${chunks})`);
});

test("openai client: chat completions, non-streaming and streaming", async () => {
  const messages = [{ role: "system" as const, content: "You are terse." }, { role: "user" as const, content: "Tell me about the jury." }];
  const r = await client.chat.completions.create({ model: "mla-brown", messages, max_tokens: 10, temperature: 0 });
  assert.equal(r.object, "chat.completion", "object");
  assert.equal(r.choices[0].message.role, "assistant", "role");
  assert.equal(typeof r.choices[0].message.content, "string", "content");
  assert.equal(r.usage?.prompt_tokens, engine.encodeChat(messages).length, "prompt tokens: the rendered chat template");
  assert.ok(["length", "stop"].includes(r.choices[0].finish_reason), `finish reason ${r.choices[0].finish_reason}`);

  const stream = await client.chat.completions.create({ model: "mla-brown", messages, max_tokens: 10, temperature: 0, stream: true });
  let text = "", role: string | undefined, finish: string | null = null;
  for await (const c of stream) {
    role ??= c.choices[0]?.delta.role;
    text += c.choices[0]?.delta.content ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(role, "assistant", "the first delta carries the role");
  assert.equal(text, r.choices[0].message.content, "streamed = non-streamed");
  assert.equal(finish, r.choices[0].finish_reason, "same finish reason");
});

test("raw SSE: data: lines, ending with data: [DONE]", async () => {
  const res = await fetch(`${BASE}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: "It was", max_tokens: 3, stream: true }) });
  assert.equal(res.status, 200, "ok");
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/, "event stream");
  const events = (await res.text()).split("\n\n").filter((e) => e.length > 0);
  assert.ok(events.every((e) => e.startsWith("data: ")), "every event is a data line");
  assert.equal(events[events.length - 1], "data: [DONE]", "ends with [DONE]");
  const last = JSON.parse(events[events.length - 2].slice(6));
  assert.equal(last.choices[0].finish_reason, "length", "the last chunk has the finish reason");
});

test("stop strings cut the text (streaming too); the same seed gives the same sample", async () => {
  const base = await client.completions.create({ model: "mla-brown", prompt: "The jury said", max_tokens: 16, temperature: 0 });
  const full = base.choices[0].text;
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
  const cut = full.slice(0, full.indexOf(stop));
  const r = await client.completions.create({ model: "mla-brown", prompt: "The jury said", max_tokens: 16, temperature: 0, stop: [stop, "zzzz"] });
  assert.equal(r.choices[0].text, cut, `text ends before ${JSON.stringify(stop)}`);
  assert.equal(r.choices[0].finish_reason, "stop", "finish reason stop");
  const s = await client.completions.create({ model: "mla-brown", prompt: "The jury said", max_tokens: 16, temperature: 0, stop, stream: true });
  let text = "", finish: string | null = null;
  for await (const c of s) {
    text += c.choices[0]?.text ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, cut, "streamed text stops at the same place, the stop string never sent");
  assert.equal(finish, "stop", "streamed finish reason");

  const sample = () => client.completions.create({ model: "mla-brown", prompt: "The jury said", max_tokens: 12, temperature: 1, top_p: 0.9, seed: 42 });
  const [a, b] = [await sample(), await sample()];
  assert.equal(a.choices[0].text, b.choices[0].text, "seeded sampling is reproducible");
});

test("concurrent greedy requests are batched and equal the same requests run one at a time", async () => {
  const prompts = ["The jury said", "It was a", "In the morning", "He", "The man who", "She told the court that"];
  const ask = (p: string, i: number) =>
    i % 2 === 0
      ? call("/v1/completions", { prompt: p, max_tokens: 20, temperature: 0 }).then((r) => r.body.choices[0].text as string)
      : client.chat.completions.create({ model: "mla-brown", messages: [{ role: "user", content: p }], max_tokens: 20, temperature: 0 }).then((r) => r.choices[0].message.content as string);
  const one: string[] = [];
  for (const [i, p] of prompts.entries()) one.push(await ask(p, i));
  await waitIdle();
  const before = engine.scheduler.stats().maxBatchSeen;
  assert.equal(before, 1, "the sequential requests ran alone");
  const together = await Promise.all(prompts.map(ask));
  assert.deepEqual(together, one, "same text for every request");
  assert.ok(engine.scheduler.stats().maxBatchSeen >= 2, `requests shared decode steps (max batch ${engine.scheduler.stats().maxBatchSeen})`);
  const idle = await waitIdle();
  assert.equal(idle.reservedBytes, 0, "no cache reserved after");
});

test("a client that disconnects mid-stream is cancelled and its cache freed; others are served", async () => {
  const ctl = new AbortController();
  const res = await fetch(`${BASE}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: "The jury said", max_tokens: 1500, stream: true }), signal: ctl.signal });
  const reader = res.body!.getReader();
  let got = "";
  while ((got.match(/data: /g) ?? []).length < 3) got += new TextDecoder().decode((await reader.read()).value);
  const mid = engine.scheduler.stats();
  assert.equal(mid.active, 1, "running");
  assert.ok(mid.reservedBytes >= 1500 * engine.scheduler.cacheBytesPerToken, "its whole cache is reserved");
  ctl.abort();
  await reader.cancel().catch(() => {});
  const s = await waitIdle();
  assert.equal(s.reservedBytes, 0, "reservation returned");
  assert.equal(s.cacheBytes, 0, "no cache held");
  assert.ok(s.tokens - mid.tokens < 1000, "stopped long before max_tokens");
  const r = await client.completions.create({ model: "mla-brown", prompt: "Next", max_tokens: 2 });
  assert.equal(r.choices[0].finish_reason, "length", "the server goes on serving");
});

test("bad input: each gets an OpenAI error object with its status, and the server keeps serving", async () => {
  assertError(await call("/v1/completions", "{not json"), 400, "invalid_json");
  assertError(await call("/v1/completions", ""), 400, "invalid_json");
  assertError(await call("/v1/completions", [1, 2]), 400, "invalid_type");
  assertError(await call("/v1/completions", { prompt: 5 }), 400, "invalid_type");
  assertError(await call("/v1/completions", {}), 400, "missing_required_parameter");
  assertError(await call("/v1/completions", { prompt: "x", max_tokens: "5" }), 400, "invalid_type");
  assertError(await call("/v1/completions", { prompt: "x", max_tokens: 0 }), 400, "invalid_value");
  assertError(await call("/v1/completions", { prompt: "x", max_tokens: 2.5 }), 400, "invalid_type");
  assertError(await call("/v1/completions", { prompt: "x", temperature: "hot" }), 400, "invalid_type");
  assertError(await call("/v1/completions", { prompt: "x", temperature: 3 }), 400, "invalid_value");
  assertError(await call("/v1/completions", { prompt: "x", top_p: 0 }), 400, "invalid_value");
  assertError(await call("/v1/completions", { prompt: "x", seed: "s" }), 400, "invalid_type");
  assertError(await call("/v1/completions", { prompt: "x", stream: "yes" }), 400, "invalid_type");
  assertError(await call("/v1/completions", { prompt: "x", stop: ["a", "b", "c", "d", "e"] }), 400, "invalid_value");
  assertError(await call("/v1/completions", { prompt: "x", stop: 3 }), 400, "invalid_type");
  assertError(await call("/v1/completions", { prompt: "x", n: 0 }), 400, "invalid_value");
  assertError(await call("/v1/completions", { prompt: "x", n: 33 }), 400, "invalid_value"); // more choices than the queue of 32 holds
  assertError(await call("/v1/completions", { prompt: "x", best_of: 2 }), 400, "unsupported_parameter");
  assertError(await call("/v1/completions", { prompt: "x", model: 7 }), 400, "invalid_type");
  assertError(await call("/v1/completions", { prompt: [1, 99999] }), 400, "invalid_value");
  assertError(await call("/v1/completions", { prompt: ["a", "b"] }), 400, "invalid_type");
  assertError(await call("/v1/chat/completions", { messages: "hi" }), 400, "invalid_type");
  assertError(await call("/v1/chat/completions", { messages: [] }), 400, "invalid_value");
  assertError(await call("/v1/chat/completions", { messages: [{ role: "wizard", content: "x" }] }), 400, "invalid_value");
  assertError(await call("/v1/chat/completions", { messages: [{ role: "user", content: 5 }] }), 400, "invalid_type");
  assertError(await call("/v1/chat/completions", { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }), 400, "unsupported_value");
  // unknown model, unknown route, wrong method
  assertError(await call("/v1/completions", { prompt: "x", model: "gpt-4" }), 404, "model_not_found");
  assertError(await call("/v1/chat/completions", { messages: [{ role: "user", content: "x" }], model: "nope" }), 404, "model_not_found");
  assertError(await call("/v1/embeddings", { input: "x" }), 404, "not_found");
  const m = await call("/v1/completions");
  assertError(m, 405, "method_not_allowed");
  assert.equal(m.headers.get("allow"), "POST", "Allow header");
  // past the context: the prompt alone, or the prompt plus max_tokens
  const ctx = engine.contextLength;
  assertError(await call("/v1/completions", { prompt: Array(ctx).fill(5) }), 400, "context_length_exceeded");
  assertError(await call("/v1/completions", { prompt: [5, 6, 7], max_tokens: ctx }), 400, "context_length_exceeded");
  const longText = "the jury ".repeat(ctx);
  assertError(await call("/v1/chat/completions", { messages: [{ role: "user", content: longText }] }), 400, "context_length_exceeded");
  // over the body limit (64 KiB here)
  assertError(await call("/v1/completions", { prompt: "x".repeat(100_000) }), 413, "request_too_large");
  const chunked = await new Promise<Reply>((resolve, reject) => {
    // no Content-Length: the limit is enforced while reading
    const req = request(`${BASE}/v1/completions`, { method: "POST", headers: { "Transfer-Encoding": "chunked", "Content-Type": "application/json" } }, (res) => {
      let t = "";
      res.on("data", (d) => (t += d));
      res.on("end", () => resolve({ status: res.statusCode!, headers: new Headers(), body: JSON.parse(t) }));
    });
    req.on("error", reject);
    for (let i = 0; i < 20; i++) req.write("x".repeat(8192));
    req.end();
  });
  assertError(chunked, 413, "request_too_large");
  // the openai client raises its typed errors for these
  await assert.rejects(client.completions.create({ model: "gpt-4", prompt: "x" }), (e: unknown) => e instanceof OpenAI.NotFoundError, "NotFoundError");
  await assert.rejects(client.completions.create({ model: "mla-brown", prompt: "x", max_tokens: -1 }), (e: unknown) => e instanceof OpenAI.BadRequestError, "BadRequestError");
  const ok = await client.chat.completions.create({ model: "mla-brown", messages: [{ role: "user", content: "still there?" }], max_tokens: 2 });
  assert.equal(ok.choices.length, 1, "still serving");
  const s = await waitIdle();
  assert.equal(s.reservedBytes, 0, "no cache left behind by failed requests");
});

test("a full queue answers 429 with Retry-After; an internal failure answers 500 and others go on", async () => {
  // a server with room for one running and one waiting sequence; its model fails when asked for token id 3
  const m = engine.model;
  const flaky: InferenceModel = {
    config: m.config, backendName: m.backendName, cacheBytesPerToken: m.cacheBytesPerToken,
    newState: (c) => m.newState(c), releaseState: (s) => m.releaseState(s), fillContext: (s, n, r) => m.fillContext(s, n, r),
    step: (items, o) => {
      if (items.some((it) => Array.from(it.ids).includes(3))) return Promise.reject(new Error("kernel exploded"));
      return m.step(items, o);
    },
  };
  const small = new TextEngine("flaky", flaky, engine.tokenizer, engine.chat, engine.stopIds, { maxCacheBytes: 64 << 20, maxBatch: 1, maxQueue: 1, retryAfterSeconds: 2 });
  const srv = new ApiServer(small);
  const addr = await srv.listen(0);
  const url = `http://127.0.0.1:${addr.port}`;
  try {
    const ctl = new AbortController();
    const long = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: [10, 11], max_tokens: 1500, stream: true }), signal: ctl.signal });
    const reader = long.body!.getReader();
    await reader.read(); // running
    const queued = fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: [12], max_tokens: 2 }) });
    while (small.scheduler.stats().waiting === 0) await new Promise((r) => setTimeout(r, 5));
    const busy = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: "x", max_tokens: 2 }) });
    const body = await busy.json();
    assertError({ status: busy.status, headers: busy.headers, body }, 429, "server_busy", "rate_limit_error");
    assert.equal(busy.headers.get("retry-after"), "2", "Retry-After");
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
    await assert.rejects(c.completions.create({ model: "flaky", prompt: "x" }), (e: unknown) => e instanceof OpenAI.RateLimitError, "RateLimitError");
    ctl.abort();
    await reader.cancel().catch(() => {});
    const q = await queued;
    assert.equal(q.status, 200, "the waiting request ran once there was room");

    const boom = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: [3], max_tokens: 2 }) });
    assertError({ status: boom.status, headers: boom.headers, body: await boom.json() }, 500, "internal_error", "server_error");
    const boomStream = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: [3], max_tokens: 2, stream: true }) });
    const events = (await boomStream.text()).split("\n\n").filter(Boolean);
    assert.equal(JSON.parse(events[0].slice(6)).error.type, "server_error", "a streamed failure is an error event");
    assert.equal(events[events.length - 1], "data: [DONE]", "and the stream still ends");
    const fine = await c.completions.create({ model: "flaky", prompt: [12], max_tokens: 2 });
    assert.equal(fine.choices[0].finish_reason, "length", "others are still served");
  } finally {
    await srv.close();
  }
});
