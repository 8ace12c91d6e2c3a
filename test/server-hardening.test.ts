// mla serve as a hostile or careless client meets it: huge prompts, web pages on other origins, rebound host
// names, malformed request targets, parameters it may not ignore, clients that vanish, slow clients, too many
// connections, shutdown while requests run, and a short load of mixed clients.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { connect } from "node:net";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { cpuOps } from "../src/backends/ops.js";
import { TextEngine } from "../src/generate/text.js";
import { ApiServer, type ServerOptions } from "../src/server/server.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BROWN = join(ROOT, "models/mla-brown");
const JSON_TYPE = { "Content-Type": "application/json" };

const engine = TextEngine.open(BROWN, { ops: cpuOps, maxCacheBytes: 256 << 20, maxBatch: 32, maxQueue: 128 });
const logs: string[] = [];
const server = new ApiServer(engine, { maxBodyBytes: 4 << 20, log: (l) => logs.push(l) });
const { port } = await server.listen(0, "127.0.0.1");
const BASE = `http://127.0.0.1:${port}`;
const open: ApiServer[] = [];
after(async () => {
  for (const s of open) await s.close();
  await server.close();
});

/** Another server over the same model (its own scheduler, so closing it leaves the main one alone). */
async function another(opts: ServerOptions, sched: { maxBatch?: number; maxQueue?: number } = {}): Promise<{ srv: ApiServer; url: string; eng: TextEngine }> {
  const eng = new TextEngine("mla-brown", engine.model, engine.tokenizer, engine.chat, engine.stopIds, { maxCacheBytes: 64 << 20, maxBatch: 16, maxQueue: 32, ...sched });
  const srv = new ApiServer(eng, opts);
  open.push(srv);
  const a = await srv.listen(0, "127.0.0.1");
  return { srv, url: `http://127.0.0.1:${a.port}`, eng };
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

/** One request through node:http, which (unlike fetch) lets a test set Host and Origin. */
function http1(url: string, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: opts.method ?? (opts.body === undefined ? "GET" : "POST"), headers: opts.headers, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        let body: unknown = null;
        try {
          body = text ? JSON.parse(text) : null;
        } catch {
          body = null;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, body });
      });
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** Raw bytes to the server; everything it sends back until it closes the connection (or `ms` pass). */
function raw(p: number, data: string, ms = 3000): Promise<{ text: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const s = connect(p, "127.0.0.1");
    let text = "";
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text, closedByServer: false });
    }, ms);
    s.on("data", (d) => (text += d));
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ text, closedByServer: true });
    });
    s.on("error", (e) => (text ? undefined : reject(e)));
    s.write(data);
  });
}

function assertError(r: { status: number; body: Reply["body"] }, status: number, code: string, type = "invalid_request_error"): void {
  assert.equal(r.status, status, `status ${status}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body?.error?.code, code, `error.code: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.error.type, type, "error.type");
  assert.ok(typeof r.body.error.message === "string" && r.body.error.message.length > 0, "a message");
}

const post = (url: string, path: string, body: unknown, headers: Record<string, string> = JSON_TYPE) =>
  http1(url, path, { body: typeof body === "string" ? body : JSON.stringify(body), headers });

async function waitIdle(eng: TextEngine = engine): Promise<ReturnType<TextEngine["scheduler"]["stats"]>> {
  for (;;) {
    const s = eng.scheduler.stats();
    if (s.active === 0 && s.waiting === 0) return s;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The longest gap between ticks of a 5 ms timer while `f` runs: how long the event loop was blocked. */
async function loopBlockedMs<T>(f: () => Promise<T>): Promise<{ value: T; blocked: number }> {
  let last = performance.now(), blocked = 0;
  const t = setInterval(() => {
    const now = performance.now();
    blocked = Math.max(blocked, now - last);
    last = now;
  }, 5);
  try {
    const value = await f();
    return { value, blocked };
  } finally {
    clearInterval(t);
  }
}

/** Count the main thread's calls to the tokenizer while f runs. */
async function mainThreadEncodes<T>(f: () => Promise<T>): Promise<{ value: T; calls: number }> {
  const tok = engine.tokenizer, orig = tok.encode;
  let calls = 0;
  tok.encode = (text: string, add?: boolean) => {
    calls++;
    return orig.call(tok, text, add);
  };
  try {
    return { value: await f(), calls };
  } finally {
    tok.encode = orig;
  }
}

test("a prompt too long for the context is refused by its length, before tokenizing; long prompts are tokenized off the event loop", async () => {
  const bound = engine.tokenizer.maxCharsPerToken;
  assert.equal(bound, 12, "the byte-level BPE's longest vocabulary entry (' development', 12 bytes)");
  const huge = "€".repeat(340_000); // 1 MB of UTF-8
  const { value: r, calls, blocked } = await mainThreadEncodes(async () => {
    const x = await loopBlockedMs(() => post(BASE, "/v1/completions", { prompt: huge, max_tokens: 1 }));
    return { ...x.value, blocked: x.blocked };
  }).then(({ value, calls }) => ({ value, calls, blocked: value.blocked }));
  assertError(r, 400, "context_length_exceeded");
  assert.match(r.body.error.message, /340000 characters/, r.body.error.message);
  assert.equal(calls, 0, "never tokenized");
  // parsing 1 MB of JSON takes a few ms; tokenizing it on the loop took about a second
  assert.ok(blocked < 400, `the event loop was blocked for ${blocked.toFixed(0)} ms`);
  const chat = await post(BASE, "/v1/chat/completions", { messages: [{ role: "user", content: huge }] });
  assertError(chat, 400, "context_length_exceeded");

  // between the bound and the context: tokenized on the worker thread, and then too long by its tokens
  const words = "the jury ".repeat(2000);
  assert.ok(words.length < 12 * engine.contextLength, "passes the character check");
  const w = await mainThreadEncodes(() => post(BASE, "/v1/completions", { prompt: words, max_tokens: 1 }));
  assertError(w.value, 400, "context_length_exceeded");
  assert.equal(w.calls, 0, "tokenized on the worker");

  // a long prompt that fits: the worker's ids are the tokenizer's
  const long = " development".repeat(900);
  const ids = engine.encode(long);
  assert.ok(long.length > 8192 && ids.length < engine.contextLength - 8, `a long prompt that fits (${ids.length} tokens)`);
  const fits = await mainThreadEncodes(() => post(BASE, "/v1/completions", { prompt: long, max_tokens: 2, temperature: 0 }));
  assert.equal(fits.value.status, 200, fits.value.text);
  assert.equal(fits.value.body.usage.prompt_tokens, ids.length, "the same token count as in-process tokenizing");
  assert.equal(fits.calls, 0, "tokenized on the worker");
  const direct = await post(BASE, "/v1/completions", { prompt: ids, max_tokens: 2, temperature: 0 });
  assert.equal(fits.value.body.choices[0].text, direct.body.choices[0].text, "the same reply as from the token ids");
});

test("the character bound is only claimed where it is sound", async () => {
  const { charsPerTokenBound } = await import("../src/tokenizer/tokenizer.js");
  const bpe = (extra: object) => ({ model: { type: "BPE", vocab: { a: 0, abc: 1, "Ġdevelopment": 2 } }, added_tokens: [{ id: 3, content: "<|a long special token|>" }], ...extra });
  assert.equal(charsPerTokenBound(bpe({ pre_tokenizer: { type: "ByteLevel" } })), 24, "the longest special token");
  assert.equal(charsPerTokenBound(bpe({ pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "Split", behavior: "Isolated" }, { type: "ByteLevel" }] } })), 24);
  assert.equal(charsPerTokenBound(bpe({ pre_tokenizer: { type: "WhitespaceSplit" } })), null, "drops whitespace");
  assert.equal(charsPerTokenBound(bpe({ pre_tokenizer: { type: "ByteLevel" }, normalizer: { type: "NFC" } })), null, "composition shortens text");
  assert.equal(charsPerTokenBound(bpe({ pre_tokenizer: { type: "ByteLevel" }, normalizer: { type: "Strip" } })), null);
  assert.equal(charsPerTokenBound({ ...bpe({ pre_tokenizer: { type: "Metaspace" } }), model: { type: "BPE", vocab: { a: 0 }, fuse_unk: true } }), null, "fused unknowns");
  assert.equal(charsPerTokenBound({ ...bpe({ pre_tokenizer: { type: "Metaspace" } }), model: { type: "BPE", vocab: { a: 0 }, fuse_unk: true, byte_fallback: true } }), 24);
  assert.equal(charsPerTokenBound({ model: { type: "WordPiece", vocab: {} } }), null, "one [UNK] per word");
});

test("drain: new connections are refused, short requests finish, long ones end with an error event or a 503", async () => {
  const { srv, url, eng } = await another({});
  const stream = await fetch(`${url}/v1/completions`, { method: "POST", headers: JSON_TYPE, body: JSON.stringify({ prompt: "The jury said", max_tokens: 1500, ignore_eos: true, stream: true }) });
  const reader = stream.body!.getReader();
  let streamed = new TextDecoder().decode((await reader.read()).value);
  const plain = post(url, "/v1/chat/completions", { messages: [{ role: "user", content: "Tell me everything" }], max_tokens: 1500, ignore_eos: true });
  while (eng.scheduler.stats().active < 2) await new Promise((r) => setTimeout(r, 5));
  const short = post(url, "/v1/completions", { prompt: "It was", max_tokens: 3 });
  while (eng.scheduler.stats().active + eng.scheduler.stats().waiting < 3) await new Promise((r) => setTimeout(r, 5));
  const done = srv.shutdown(600);
  await assert.rejects(fetch(`${url}/health`), "no new connections once draining");
  const s = await short;
  assert.equal(s.status, 200, `a short request finishes within the grace period: ${s.text}`);
  assert.equal(s.body.choices[0].finish_reason, "length");
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    streamed += new TextDecoder().decode(value);
  }
  const events = streamed.split("\n\n").filter(Boolean);
  assert.equal(events[events.length - 1], "data: [DONE]", "the stream still ends with [DONE]");
  const last = JSON.parse(events[events.length - 2].slice(6));
  assert.equal(last.error?.code, "server_shutting_down", `an error event says why: ${events[events.length - 2]}`);
  assertError(await plain, 503, "server_shutting_down", "server_error");
  await done;
  const st = eng.scheduler.stats();
  assert.equal(st.active + st.waiting, 0, "nothing left running");
});

test("web pages: foreign Origin and Host are refused, bodies must be JSON; --cors allows listed origins with a preflight", async () => {
  const body = JSON.stringify({ prompt: "The jury", max_tokens: 2 });
  // the "simple" cross-origin POST a page can send without a preflight
  assertError(await post(BASE, "/v1/completions", body, { "Content-Type": "text/plain", Origin: "http://evil.example" }), 403, "origin_not_allowed");
  assertError(await post(BASE, "/v1/completions", body, { ...JSON_TYPE, Origin: "http://evil.example" }), 403, "origin_not_allowed");
  assertError(await http1(BASE, "/v1/models", { headers: { Origin: "http://evil.example" } }), 403, "origin_not_allowed");
  assertError(await http1(BASE, "/v1/models", { headers: { Origin: "null" } }), 403, "origin_not_allowed");
  // DNS rebinding: the page's own name, resolved to 127.0.0.1
  assertError(await http1(BASE, "/v1/models", { headers: { Host: `evil.example:${port}` } }), 403, "host_not_allowed");
  assertError(await post(BASE, "/v1/completions", body, { ...JSON_TYPE, Host: `evil.example:${port}`, Origin: `http://evil.example:${port}` }), 403, "host_not_allowed");
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `app.localhost:${port}`, "localhost"]) {
    assert.equal((await http1(BASE, "/health", { headers: { Host: host } })).status, 200, `Host ${host}`);
  }
  // the server's own origin, and JSON without an Origin, are fine
  assert.equal((await post(BASE, "/v1/completions", body, { ...JSON_TYPE, Origin: BASE })).status, 200, "same origin");
  assertError(await post(BASE, "/v1/completions", body, { "Content-Type": "text/plain" }), 415, "unsupported_media_type");
  assertError(await post(BASE, "/v1/completions", body, { "Content-Type": "application/x-www-form-urlencoded" }), 415, "unsupported_media_type");
  assertError(await post(BASE, "/v1/completions", body, {}), 415, "unsupported_media_type");
  assert.equal((await post(BASE, "/v1/completions", body, { "Content-Type": "application/json; charset=utf-8" })).status, 200);
  assert.equal((await http1(BASE, "/v1/models", { method: "OPTIONS", headers: { Origin: "http://evil.example", "Access-Control-Request-Method": "POST" } })).status, 403, "no preflight for strangers");

  const { url } = await another({ cors: ["http://app.example", "https://other.example"] });
  const pre = await http1(url, "/v1/chat/completions", {
    method: "OPTIONS", headers: { Origin: "http://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization" },
  });
  assert.equal(pre.status, 204, "preflight");
  assert.equal(pre.headers["access-control-allow-origin"], "http://app.example");
  assert.match(String(pre.headers["access-control-allow-methods"]), /POST/);
  assert.equal(pre.headers["access-control-allow-headers"], "content-type,authorization");
  assert.equal(pre.headers.vary, "Origin");
  const ok = await post(url, "/v1/completions", body, { ...JSON_TYPE, Origin: "http://app.example" });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers["access-control-allow-origin"], "http://app.example", "the reply may be read by the page");
  const err = await post(url, "/v1/completions", { prompt: 5 }, { ...JSON_TYPE, Origin: "https://other.example" });
  assert.equal(err.status, 400);
  assert.equal(err.headers["access-control-allow-origin"], "https://other.example", "errors are readable too");
  assertError(await post(url, "/v1/completions", body, { ...JSON_TYPE, Origin: "http://evil.example" }), 403, "origin_not_allowed");
  const any = await another({ cors: ["*"] });
  const star = await post(any.url, "/v1/completions", body, { ...JSON_TYPE, Origin: "http://anyone.example" });
  assert.equal(star.status, 200);
  assert.equal(star.headers["access-control-allow-origin"], "*");
});

test("malformed request targets are 400 or 404, never 500", async () => {
  const get = (target: string) => raw(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  const status = (t: string) => Number(/^HTTP\/1\.1 (\d+)/.exec(t)?.[1]);
  const body = (t: string) => JSON.parse(t.slice(t.indexOf("\r\n\r\n") + 4));
  const bad = await get("/v1/models/%ff");
  assert.equal(status(bad.text), 400, bad.text);
  assert.equal(body(bad.text).error.code, "invalid_url");
  assert.equal(status((await get("//[")).text), 404, "no route, and no URL parser throwing on it");
  const star = await get("*");
  assert.equal(status(star.text), 400, star.text);
  assert.equal(status((await get("v1/models")).text), 400);
  assert.equal(status((await get("//v1/models")).text), 404, "//v1/models is no route (not /models)");
  assert.equal(status((await get("/v1/models/")).text), 200, "a trailing slash is fine");
  assert.equal(status((await get("/v1/models/mla-brown?x=%ff")).text), 200, "the query is not the path");
  assert.equal(status((await get(`http://127.0.0.1:${port}/v1/models`)).text), 200, "absolute-form");
  assert.equal(status((await get("/v1/models/%6dla-brown")).text), 200, "percent-encoded id");
  assert.ok(!logs.some((l) => l.startsWith("internal error")), "no internal errors logged");
});

test("sampling parameters take effect: logit_bias, ignore_eos, min_tokens, min_p, penalties", async () => {
  const eos = engine.stopIds[0];
  const complete = async (extra: object) => {
    const r = await post(BASE, "/v1/completions", { prompt: "The jury said that the", max_tokens: 24, temperature: 0, ...extra });
    assert.equal(r.status, 200, r.text);
    return r.body as { choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number } };
  };
  const plain = await complete({});
  // logit_bias: +100 on one token makes it every token; -100 on EOS is the default's way of banning it
  const the = engine.tokenizer.encode(" the", false);
  assert.equal(the.length, 1);
  const forced = await complete({ logit_bias: { [the[0]]: 100 }, max_tokens: 5 });
  assert.equal(forced.choices[0].text, " the the the the the");
  // EOS forced: the reply ends at once, unless ignore_eos, or until min_tokens
  const ended = await complete({ logit_bias: { [eos]: 100 } });
  assert.equal(ended.usage.completion_tokens, 1);
  assert.equal(ended.choices[0].finish_reason, "stop");
  const ignored = await complete({ logit_bias: { [eos]: 100 }, ignore_eos: true, max_tokens: 6 });
  assert.equal(ignored.usage.completion_tokens, 6, "went on past EOS");
  assert.equal(ignored.choices[0].finish_reason, "length");
  const atLeast = await complete({ logit_bias: { [eos]: 100 }, min_tokens: 4 });
  assert.equal(atLeast.usage.completion_tokens, 5, "four tokens, then EOS");
  assert.equal(atLeast.choices[0].finish_reason, "stop");
  // min_p = 1 keeps only the most likely token: sampling at any temperature is then greedy
  const minP = await complete({ temperature: 1.5, min_p: 1, seed: 3 });
  assert.equal(minP.choices[0].text, plain.choices[0].text, "min_p 1 == greedy");
  const sampled = await complete({ temperature: 1.5, seed: 3 });
  assert.notEqual(sampled.choices[0].text, plain.choices[0].text, "the check can fail: sampling without min_p differs");
  // penalties change greedy text (this prompt's greedy reply repeats words); 1 / 0 change nothing
  assert.equal((await complete({ repetition_penalty: 1, presence_penalty: 0, frequency_penalty: 0 })).choices[0].text, plain.choices[0].text);
  for (const p of [{ repetition_penalty: 1.5 }, { presence_penalty: 2 }, { frequency_penalty: 2 }]) {
    assert.notEqual((await complete(p)).choices[0].text, plain.choices[0].text, JSON.stringify(p));
  }
  // validation
  assertError(await post(BASE, "/v1/completions", { prompt: "x", logit_bias: { "99999": 5 } }), 400, "invalid_value");
  assertError(await post(BASE, "/v1/completions", { prompt: "x", logit_bias: { abc: 5 } }), 400, "invalid_value");
  assertError(await post(BASE, "/v1/completions", { prompt: "x", logit_bias: { "5": 101 } }), 400, "invalid_value");
  assertError(await post(BASE, "/v1/completions", { prompt: "x", min_p: 2 }), 400, "invalid_value");
  assertError(await post(BASE, "/v1/completions", { prompt: "x", repetition_penalty: 0 }), 400, "invalid_value");
  assertError(await post(BASE, "/v1/completions", { prompt: "x", presence_penalty: 3 }), 400, "invalid_value");
  assertError(await post(BASE, "/v1/completions", { prompt: "x", max_tokens: 2, min_tokens: 3 }), 400, "invalid_value");
  assertError(await post(BASE, "/v1/completions", { prompt: "x", ignore_eos: "yes" }), 400, "invalid_type");
});

test("parameters the server does not implement, and unknown ones, are refused by name", async () => {
  const refuse = async (path: string, extra: object, names: string[], code: string) => {
    const base = path === "/v1/completions" ? { prompt: "x" } : { messages: [{ role: "user", content: "x" }] };
    const r = await post(BASE, path, { ...base, ...extra });
    assertError(r, 400, code);
    for (const n of names) assert.ok(r.body.error.message.includes(`'${n}'`), `names ${n}: ${r.body.error.message}`);
    assert.equal(r.body.error.param, names[0]);
  };
  await refuse("/v1/completions", { suffix: "end" }, ["suffix"], "unsupported_parameter");
  await refuse("/v1/completions", { best_of: 3 }, ["best_of"], "unsupported_parameter");
  await refuse("/v1/chat/completions", { functions: [{ name: "f" }] }, ["functions"], "unsupported_parameter");
  await refuse("/v1/chat/completions", { tool_choice: "auto" }, ["tool_choice"], "invalid_value"); // a choice among no tools
  await refuse("/v1/completions", { temprature: 0.5 }, ["temprature"], "unrecognized_parameter");
  await refuse("/v1/completions", { messages: [] }, ["messages"], "unrecognized_parameter");
  await refuse("/v1/chat/completions", { prompt: "x", suffix: "y" }, ["prompt", "suffix"], "unrecognized_parameter");
  // the values that mean "off" are accepted, as clients send them
  const r = await post(BASE, "/v1/chat/completions", {
    messages: [{ role: "user", content: "x" }], max_tokens: 2, n: 1, logprobs: false, tools: [], tool_choice: "none",
    response_format: { type: "text" }, user: "u1", store: false, parallel_tool_calls: true, presence_penalty: 0,
  });
  assert.equal(r.status, 200, r.text);
  // 1e400 is a JSON number that no double holds
  const inf = await post(BASE, "/v1/completions", '{"prompt": "x", "max_tokens": 1e400}');
  assertError(inf, 400, "invalid_value");
  assert.doesNotMatch(inf.body.error.message, /got a number/);
  assert.match(inf.body.error.message, /finite/);
});

test("HEAD where GET works; include_usage puts usage: null on every chunk but the last", async () => {
  for (const path of ["/health", "/v1/models", "/v1/models/mla-brown"]) {
    const h = await http1(BASE, path, { method: "HEAD" });
    const g = await http1(BASE, path);
    assert.equal(h.status, 200, path);
    assert.equal(h.text, "", "no body");
    assert.equal(h.headers["content-type"], "application/json");
    if (path !== "/health") assert.equal(h.headers["content-length"], g.headers["content-length"], "the GET's length");
  }
  const wrong = await http1(BASE, "/v1/models", { method: "PUT" });
  assertError(wrong, 405, "method_not_allowed");
  assert.equal(wrong.headers.allow, "GET, HEAD");
  for (const [path, body] of [["/v1/completions", { prompt: "The jury" }], ["/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }] }]] as const) {
    const r = await post(BASE, path, { ...body, max_tokens: 4, stream: true, stream_options: { include_usage: true } });
    const chunks = r.text.split("\n\n").filter((e) => e && e !== "data: [DONE]").map((e) => JSON.parse(e.slice(6)));
    assert.ok(chunks.length >= 3);
    for (const c of chunks.slice(0, -1)) assert.ok("usage" in c && c.usage === null, `usage: null in ${JSON.stringify(c)}`);
    assert.equal(chunks[chunks.length - 1].usage.completion_tokens, 4, "the last chunk has the usage");
    const plain = await post(BASE, path, { ...body, max_tokens: 2, stream: true });
    assert.ok(plain.text.split("\n\n").filter((e) => e.startsWith("data: {")).every((e) => !("usage" in JSON.parse(e.slice(6)))), "no usage key without include_usage");
  }
});

test("every request is logged once with its outcome: vanished clients and aborted uploads too", async () => {
  const lines: string[] = [];
  const { url, eng } = await another({ log: (l) => lines.push(l) });
  const p = Number(new URL(url).port);
  // a stream whose client leaves
  const ctl = new AbortController();
  const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: JSON_TYPE, body: JSON.stringify({ prompt: "The jury", max_tokens: 1500, ignore_eos: true, stream: true }), signal: ctl.signal });
  const reader = res.body!.getReader();
  await reader.read();
  await reader.read();
  ctl.abort();
  await reader.cancel().catch(() => {});
  // an upload that stops half-way
  const s = connect(p, "127.0.0.1");
  await new Promise((r) => s.on("connect", r));
  s.write(`POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt": "The`);
  await new Promise((r) => setTimeout(r, 100));
  s.destroy();
  // and an ordinary one
  await post(url, "/v1/completions", { prompt: "It", max_tokens: 2 });
  for (let i = 0; i < 200 && lines.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
  await waitIdle(eng);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(lines.length, 3, `one line per request: ${JSON.stringify(lines)}`);
  assert.match(lines[0], /^POST \/v1\/completions 200 \d+ ms \d+ tokens \(the client closed the connection after \d+ tokens\)$/, lines[0]);
  assert.match(lines[1], /^POST \/v1\/completions 499 \d+ ms \(the client closed the connection during the upload\)$/, lines[1]);
  assert.match(lines[2], /^POST \/v1\/completions 200 \d+ ms 2 tokens$/, lines[2]);
  assert.ok(!lines.some((l) => /internal error|\n\s+at /.test(l)), "no stack traces");
});

test("timeouts: slow headers and bodies are cut, long streams are not; a request timeout ends generation", async () => {
  const { url } = await another({ headersTimeoutMs: 300, bodyTimeoutMs: 300 });
  const p = Number(new URL(url).port);
  // headers that never finish: node answers 408 and closes
  const slowHead = await raw(p, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", 5000);
  assert.ok(slowHead.closedByServer, "the server closed the connection");
  assert.match(slowHead.text, /^HTTP\/1\.1 408/);
  // a body that never finishes: an OpenAI-shaped 408
  const slowBody = await raw(p, `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt"`, 5000);
  assert.match(slowBody.text, /^HTTP\/1\.1 408/);
  assert.equal(JSON.parse(slowBody.text.slice(slowBody.text.indexOf("\r\n\r\n") + 4)).error.code, "request_timeout");
  assert.ok(slowBody.closedByServer, "and closes the connection (the rest of the body cannot be skipped)");
  // a stream that runs longer than the header and body limits together is not cut by them
  const t0 = performance.now();
  const ctl = new AbortController();
  const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: JSON_TYPE, body: JSON.stringify({ prompt: "The jury", max_tokens: 1900, ignore_eos: true, stream: true }), signal: ctl.signal });
  const reader = res.body!.getReader();
  let got = 0;
  while (performance.now() - t0 < 2500) {
    const { done } = await reader.read();
    assert.ok(!done, `the stream was cut after ${(performance.now() - t0).toFixed(0)} ms`);
    got++;
  }
  ctl.abort();
  await reader.cancel().catch(() => {});
  assert.ok(got > 10);

  const limited = await another({ requestTimeoutMs: 400 });
  const r = await post(limited.url, "/v1/completions", { prompt: "The jury", max_tokens: 1900, ignore_eos: true });
  assertError(r, 504, "request_timeout", "server_error");
  const sse = await post(limited.url, "/v1/completions", { prompt: "The jury", max_tokens: 1900, ignore_eos: true, stream: true });
  const events = sse.text.split("\n\n").filter(Boolean);
  assert.equal(events[events.length - 1], "data: [DONE]");
  assert.equal(JSON.parse(events[events.length - 2].slice(6)).error.code, "request_timeout");
  const st = await waitIdle(limited.eng);
  assert.equal(st.reservedBytes, 0, "their caches were freed");
});

test("a connection cap: connections past it are closed, the server goes on", async () => {
  const { url } = await another({ maxConnections: 3 });
  const p = Number(new URL(url).port);
  const held = await Promise.all([0, 1, 2].map(() => new Promise<ReturnType<typeof connect>>((resolve) => {
    const s = connect(p, "127.0.0.1", () => resolve(s));
    s.on("error", () => {});
  })));
  await new Promise((r) => setTimeout(r, 50));
  const extra = await raw(p, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 3000);
  assert.ok(extra.closedByServer && extra.text === "", "the fourth connection was closed unanswered");
  for (const s of held) s.destroy();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal((await http1(url, "/health")).status, 200, "served again");
});

test("--api-key: Bearer auth on every route but /health", async () => {
  const { url } = await another({ apiKey: "sekrit-key" });
  assertError(await http1(url, "/v1/models"), 401, "invalid_api_key");
  const wrong = await http1(url, "/v1/models", { headers: { Authorization: "Bearer nope" } });
  assertError(wrong, 401, "invalid_api_key");
  assert.equal(wrong.headers["www-authenticate"], "Bearer");
  assertError(await post(url, "/v1/completions", { prompt: "x" }, { ...JSON_TYPE, Authorization: "sekrit-key" }), 401, "invalid_api_key");
  assert.equal((await http1(url, "/health")).status, 200, "health needs no key");
  assert.equal((await http1(url, "/v1/models", { headers: { Authorization: "Bearer sekrit-key" } })).status, 200);
  const good = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sekrit-key", maxRetries: 0 });
  assert.equal((await good.completions.create({ model: "mla-brown", prompt: "The", max_tokens: 2 })).choices.length, 1);
  const bad = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sekrit-kez", maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError);
});

test("load: 24 clients of mixed prompt lengths, a tenth of them vanishing mid-stream: no 5xx, none hung, caches freed", async () => {
  const { url, eng } = await another({}, { maxBatch: 32, maxQueue: 64 });
  const deadline = performance.now() + 4000;
  const prompts = ["The jury", "It was a cold morning when", " development".repeat(400), "the court said ".repeat(60), "He"];
  const tally = { ok: 0, vanished: 0, busy: 0, fivexx: 0, hung: 0, other: 0 };
  const one = async (i: number, k: number): Promise<void> => {
    const vanish = (i * 7 + k) % 10 === 0;
    const ctl = new AbortController();
    const hang = setTimeout(() => ctl.abort(), 60_000);
    try {
      const res = await fetch(`${url}/v1/completions`, {
        method: "POST", headers: JSON_TYPE, signal: ctl.signal,
        body: JSON.stringify({ prompt: prompts[(i + k) % prompts.length], max_tokens: 8 + ((i * 5 + k) % 24), temperature: k % 2 ? 0 : 0.8, seed: i, stream: true }),
      });
      if (res.status >= 500) tally.fivexx++;
      if (res.status === 429) tally.busy++;
      if (res.status !== 200) return void (await res.text());
      const reader = res.body!.getReader();
      let text = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
        if (vanish) {
          ctl.abort();
          await reader.cancel().catch(() => {});
          tally.vanished++;
          return;
        }
      }
      if (text.endsWith("data: [DONE]\n\n") && !text.includes('"error"')) tally.ok++;
      else tally.other++;
    } catch (e) {
      if ((e as Error).name === "AbortError" && !vanish) tally.hung++;
      else if (!vanish) tally.other++;
    } finally {
      clearTimeout(hang);
    }
  };
  await Promise.all(Array.from({ length: 24 }, async (_, i) => {
    for (let k = 0; performance.now() < deadline; k++) await one(i, k);
  }));
  assert.equal(tally.fivexx, 0, JSON.stringify(tally));
  assert.equal(tally.hung, 0, JSON.stringify(tally));
  assert.equal(tally.other, 0, JSON.stringify(tally));
  assert.ok(tally.ok > 5 && tally.vanished > 0, JSON.stringify(tally));
  const st = await waitIdle(eng);
  assert.equal(st.reservedBytes, 0, "no cache reserved after");
  assert.equal(st.cacheBytes, 0, "no cache held after");
});
