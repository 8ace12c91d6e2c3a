import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { cpuOps } from "../src/backends/ops.js";
import { TextEngine } from "../src/generate/text.js";
import { ApiServer } from "../src/server/server.js";

// The server's side of the prefix cache: n > 1 choices from one prefilled prompt, usage.prompt_tokens_details,
// and a client that leaves stopping every choice.
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BROWN = join(ROOT, "models/mla-brown");
const engine = TextEngine.open(BROWN, { ops: cpuOps, maxCacheBytes: 64 << 20, maxBatch: 16, prefixCache: true });
const server = new ApiServer(engine);
const { port } = await server.listen(0, "127.0.0.1");
const BASE = `http://127.0.0.1:${port}`;
const client = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: "unused", maxRetries: 0 });
// the same model without the scheduler-wide cache
const plainEngine = new TextEngine("mla-brown", engine.model, engine.tokenizer, engine.chat, engine.stopIds, { maxCacheBytes: 64 << 20 });
const plain = new ApiServer(plainEngine);
const plainPort = (await plain.listen(0, "127.0.0.1")).port;
after(async () => {
  await server.close();
  await plain.close();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function post(path: string, body: unknown, base = BASE): Promise<{ status: number; body: any; text: string }> {
  const r = await fetch(`${base}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: r.headers.get("content-type")?.startsWith("application/json") ? JSON.parse(text) : null, text };
}

/** The JSON chunks of an SSE body, [DONE] checked. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function events(text: string): any[] {
  const ev = text.split("\n\n").filter(Boolean);
  assert.equal(ev[ev.length - 1], "data: [DONE]");
  return ev.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
}

async function idle(e: TextEngine): Promise<void> {
  while (e.scheduler.stats().active + e.scheduler.stats().waiting > 0) await new Promise((r) => setTimeout(r, 5));
}

test("usage.prompt_tokens_details.cached_tokens: a repeated prompt is served from the prefix cache, with the same text", async () => {
  const prompt = "The committee said that the report of the city's election showed that the voters had been told";
  const ids = engine.encode(prompt);
  const a = await client.completions.create({ model: "mla-brown", prompt, max_tokens: 8, temperature: 0 });
  const b = await client.completions.create({ model: "mla-brown", prompt, max_tokens: 8, temperature: 0 });
  // the openai client types omit the field on completions' usage
  const details = (u: unknown) => (u as { prompt_tokens_details?: { cached_tokens: number } }).prompt_tokens_details;
  assert.deepEqual(details(a.usage), { cached_tokens: 0 }, "first: nothing cached, the field is there (the cache is on)");
  assert.deepEqual(details(b.usage), { cached_tokens: ids.length - 1 }, "second: all but the last prompt token");
  assert.equal(b.choices[0].text, a.choices[0].text, "same greedy text");
  const c = await client.chat.completions.create({ model: "mla-brown", messages: [{ role: "user", content: prompt }], max_tokens: 4, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const ch of c) usage = ch.usage ?? usage;
  assert.equal(typeof usage?.prompt_tokens_details?.cached_tokens, "number", "the streamed usage chunk carries it");
  const st = engine.scheduler.stats();
  assert.ok(st.cachedPromptTokens >= ids.length - 1 && st.promptTokens > st.cachedPromptTokens, "the scheduler counts them");
  // without the cache (and n = 1) the field is left out, as before
  const p = await post("/v1/completions", { prompt, max_tokens: 2 }, `http://127.0.0.1:${plainPort}`);
  assert.equal(p.status, 200);
  assert.equal("prompt_tokens_details" in p.body.usage, false);
});

test("n choices: one prefill shared, choice i samples with seed + i, indices, usage summed; streamed too", async () => {
  const prompt = "In the evening the men of the village gathered to hear what the new minister would say about";
  const L = engine.encode(prompt).length;
  await idle(engine);
  const before = engine.scheduler.stats();
  const r = await post("/v1/completions", { prompt, max_tokens: 10, temperature: 1, seed: 11, n: 3 });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.body.choices.map((c: { index: number }) => c.index), [0, 1, 2]);
  const after1 = engine.scheduler.stats();
  // choice 0 computes the prompt (but a few tokens, e.g. BOS, that earlier requests left in the cache)
  const first = r.body.usage.prompt_tokens_details.cached_tokens;
  assert.ok(first < 3, `the request's prompt was computed by choice 0 (${first} cached)`);
  assert.equal(after1.cachedPromptTokens - before.cachedPromptTokens, first + 2 * (L - 1), "choices 1 and 2 copied the prompt's rows from choice 0");
  assert.equal(r.body.usage.prompt_tokens, L, "the prompt counts once");
  assert.equal(r.body.usage.completion_tokens, 30, "every choice's tokens");
  for (let i = 0; i < 3; i++) {
    const one = await post("/v1/completions", { prompt, max_tokens: 10, temperature: 1, seed: 11 + i });
    assert.equal(r.body.choices[i].text, one.body.choices[0].text, `choice ${i} = seed ${11 + i} alone`);
  }
  assert.notEqual(r.body.choices[0].text, r.body.choices[1].text, "different seeds, different samples");

  const messages = [{ role: "user" as const, content: "Tell me about the jury and the election." }];
  const s = await post("/v1/chat/completions", { messages, max_tokens: 8, temperature: 1, seed: 3, n: 2, stream: true, stream_options: { include_usage: true } });
  const chunks = events(s.text);
  const text = ["", ""], finish: (string | null)[] = [null, null];
  for (const c of chunks.slice(0, -1)) {
    assert.equal(c.choices.length, 1, "one choice per chunk");
    const { index, delta, finish_reason } = c.choices[0];
    text[index] += delta.content ?? "";
    finish[index] = finish_reason ?? finish[index];
  }
  const usage = chunks[chunks.length - 1].usage;
  assert.equal(usage.completion_tokens, 16, "both choices' tokens");
  assert.deepEqual(finish, ["length", "length"]);
  const whole = await client.chat.completions.create({ model: "mla-brown", messages, max_tokens: 8, temperature: 1, seed: 3, n: 2 });
  assert.deepEqual(whole.choices.map((c) => c.message.content), text, "streamed = non-streamed, choice by choice");
  // greedy choices are all the same
  const g = await client.completions.create({ model: "mla-brown", prompt: "He said", max_tokens: 6, temperature: 0, n: 4 });
  assert.equal(new Set(g.choices.map((c) => c.text)).size, 1);
  // n > 1 shares the prompt on a server without the scheduler-wide cache too
  const q = await post("/v1/completions", { prompt, max_tokens: 4, n: 2 }, `http://127.0.0.1:${plainPort}`);
  assert.equal(q.status, 200);
  assert.equal(plainEngine.scheduler.stats().cachedPromptTokens, L - 1, "choice 1 copied choice 0's rows");
});

test("n choices streamed: a choice that stops early sends its finish chunk then, not after the slowest choice", async () => {
  // choice i samples with seed 5 + i; a stop string ends one well before the other (seeds picked so they differ)
  const body = { prompt: "The jury said that the city", max_tokens: 40, temperature: 1, seed: 5, n: 2, stop: [" the "], stream: true };
  const chunks = events((await post("/v1/completions", body)).text);
  const lastText = [-1, -1], finishAt = [-1, -1];
  chunks.forEach((c, k) => {
    const { index, text, finish_reason } = c.choices[0];
    if (finish_reason) finishAt[index] = k;
    else if (text) lastText[index] = k;
  });
  assert.ok(finishAt.every((k) => k >= 0), "both choices finish");
  const early = finishAt[0] < finishAt[1] ? 0 : 1, late = 1 - early;
  assert.ok(lastText[late] > finishAt[early], `choice ${late} still streamed text after choice ${early}'s finish chunk (${JSON.stringify({ lastText, finishAt })})`);
  for (const i of [0, 1]) assert.ok(finishAt[i] > lastText[i], `choice ${i}'s finish chunk is its last`);
});

test("n: validation and refusals name the field", async () => {
  for (const [n, code] of [[0, "invalid_value"], [129, "invalid_value"], [1.5, "invalid_type"], ["2", "invalid_type"]] as const) {
    const r = await post("/v1/completions", { prompt: "x", n });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.param, "n");
    assert.equal(r.body.error.code, code);
    assert.match(r.body.error.message, /'n'/);
  }
  const b = await post("/v1/completions", { prompt: "x", n: 2, best_of: 2 });
  assert.equal(b.status, 400);
  assert.equal(b.body.error.param, "best_of", "best_of is still refused");
});

test("a client that disconnects stops every choice at once and frees their caches", async () => {
  await idle(engine);
  const ctl = new AbortController();
  const res = await fetch(`${BASE}/v1/completions`, {
    method: "POST", headers: { "Content-Type": "application/json" }, signal: ctl.signal,
    body: JSON.stringify({ prompt: "The jury", max_tokens: 1500, n: 3, stream: true }),
  });
  const reader = res.body!.getReader();
  let got = "";
  while ((got.match(/data: /g) ?? []).length < 9) got += new TextDecoder().decode((await reader.read()).value);
  const mid = engine.scheduler.stats();
  assert.equal(mid.active, 3, "three choices running");
  ctl.abort();
  await reader.cancel().catch(() => {});
  await idle(engine);
  const st = engine.scheduler.stats();
  assert.equal(st.reservedBytes, 0, "every reservation returned");
  assert.ok(st.tokens - mid.tokens < 300, "stopped long before max_tokens");
  assert.ok(st.prefixCacheBytes + st.reservedBytes <= st.maxCacheBytes);
});
