// Operations: x-request-id, /metrics (Prometheus text format, prom-client) and JSON-lines request logs.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { request } from "node:http";
import { connect } from "node:net";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { cpuOps } from "../src/backends/ops.js";
import { TextEngine } from "../src/generate/text.js";
import { ApiServer, type ServerOptions } from "../src/server/server.js";
import { endpointOf, jsonErrorLine } from "../src/server/metrics.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BROWN = join(ROOT, "models/mla-brown");
const JSON_TYPE = { "Content-Type": "application/json" };
const BUDGET = 64 << 20;

const engine = TextEngine.open(BROWN, { ops: cpuOps, maxCacheBytes: BUDGET, maxBatch: 8, maxQueue: 16 });
const logs: string[] = [];
const open: ApiServer[] = [];
const main = await start({ logFormat: "json", log: (l) => logs.push(l) }, engine);
after(async () => {
  for (const s of open) await s.close();
});

/** A server over the bundled model (its own scheduler unless `eng` is given). */
async function start(opts: ServerOptions, eng?: TextEngine): Promise<{ srv: ApiServer; url: string; eng: TextEngine }> {
  const e = eng ?? new TextEngine("mla-brown", engine.model, engine.tokenizer, engine.chat, engine.stopIds, { maxCacheBytes: BUDGET, maxBatch: 8, maxQueue: 16 });
  const srv = new ApiServer(e, opts);
  open.push(srv);
  const a = await srv.listen(0, "127.0.0.1");
  return { srv, url: `http://127.0.0.1:${a.port}`, eng: e };
}

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

async function post(url: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const r = await fetch(`${url}${path}`, { method: "POST", headers: { ...JSON_TYPE, ...headers }, body: JSON.stringify(body) });
  const text = await r.text();
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = null;
  }
  return { status: r.status, headers: r.headers, text, body: parsed };
}

/** The SSE events of a stream reply, [DONE] left out. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function events(text: string): any[] {
  return text.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)));
}

/** One scrape as sample name with labels (as written) -> value. */
async function scrape(url: string, headers: Record<string, string> = {}): Promise<Map<string, number>> {
  const r = await fetch(`${url}/metrics`, { headers });
  assert.equal(r.status, 200, "scrape ok");
  assert.match(r.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/, "Prometheus text format");
  const out = new Map<string, number>();
  for (const line of (await r.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^(\S+?(?:\{.*\})?) (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

/** Scrape until `ok` holds (a request is counted once its connection is closed, just after the client has the reply). */
async function scrapeUntil(url: string, ok: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  let m = await scrape(url);
  for (let i = 0; i < 100 && !ok(m); i++) {
    await new Promise((r) => setTimeout(r, 10));
    m = await scrape(url);
  }
  return m;
}

const v = (m: Map<string, number>, key: string): number => m.get(key) ?? 0;
const delta = (a: Map<string, number>, b: Map<string, number>, key: string): number => v(b, key) - v(a, key);

async function waitIdle(eng: TextEngine): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const s = eng.scheduler.stats();
    if (s.active === 0 && s.waiting === 0) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail("the scheduler did not go idle");
}

test("/metrics: requests, tokens and latency histograms move by what the requests did", async () => {
  const { url } = main;
  const before = await scrape(url);
  const comp = await post(url, "/v1/completions", { prompt: "The jury said", max_tokens: 5, ignore_eos: true });
  assert.equal(comp.status, 200);
  const chat = await post(url, "/v1/chat/completions", { messages: [{ role: "user", content: "Hello there" }], max_tokens: 3, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
  assert.equal(chat.status, 200);
  const usage = events(chat.text).at(-1).usage;
  assert.equal(usage.completion_tokens, 3);
  const bad = await post(url, "/v1/completions", { prompt: "x", temperature: -1 });
  assert.equal(bad.status, 400);
  const REQ = (endpoint: string, status: number) => `mla_requests_total{endpoint="${endpoint}",status="${status}"}`;
  const after = await scrapeUntil(url, (m) => delta(before, m, REQ("/v1/completions", 400)) >= 1 && delta(before, m, REQ("/v1/chat/completions", 200)) >= 1);

  assert.equal(delta(before, after, REQ("/v1/completions", 200)), 1, "one completion answered 200");
  assert.equal(delta(before, after, REQ("/v1/chat/completions", 200)), 1, "one chat answered 200");
  assert.equal(delta(before, after, REQ("/v1/completions", 400)), 1, "one completion refused with 400");
  assert.ok(v(after, REQ("/metrics", 200)) >= 1, "the scrapes are counted too");
  assert.equal(delta(before, after, "mla_prompt_tokens_total"), comp.body.usage.prompt_tokens + usage.prompt_tokens, "prompt tokens");
  assert.equal(delta(before, after, "mla_completion_tokens_total"), 5 + 3, "completion tokens");
  assert.equal(delta(before, after, 'mla_request_finish_total{finish_reason="length"}'), 2, "both ran to max_tokens");

  for (const h of ["mla_time_to_first_token_seconds", "mla_time_per_output_token_seconds"]) {
    assert.equal(delta(before, after, `${h}_count`), 2, `${h}: one observation per generation`);
    assert.equal(delta(before, after, `${h}_bucket{le="+Inf"}`), 2, `${h}: +Inf bucket = count`);
    assert.ok(delta(before, after, `${h}_sum`) > 0, `${h}: positive times`);
  }
  const e2e = (ep: string, s: string) => `mla_request_duration_seconds_${s}{endpoint="${ep}"}`;
  assert.equal(delta(before, after, e2e("/v1/completions", "count")), 2, "end-to-end latency: the 200 and the 400");
  assert.equal(delta(before, after, e2e("/v1/chat/completions", "count")), 1);
  const ttftSum = delta(before, after, "mla_time_to_first_token_seconds_sum");
  const genSum = delta(before, after, e2e("/v1/completions", "sum")) + delta(before, after, e2e("/v1/chat/completions", "sum"));
  assert.ok(ttftSum < genSum, `time to first token (${ttftSum} s) is part of the whole (${genSum} s)`);
  // buckets are cumulative and end at the count
  const buckets = [...after].filter(([k]) => k.startsWith("mla_time_per_output_token_seconds_bucket")).map(([, n]) => n);
  assert.ok(buckets.length >= 10 && buckets.every((n, i) => i === 0 || n >= buckets[i - 1]), "cumulative buckets");

  // gauges read at scrape time, and the rest of what a scrape holds
  await waitIdle(main.eng);
  const idle = await scrape(url);
  assert.equal(v(idle, "mla_cache_budget_bytes"), BUDGET, "cache budget");
  assert.equal(v(idle, "mla_sequences_active"), 0);
  assert.equal(v(idle, "mla_sequences_waiting"), 0);
  assert.equal(v(idle, "mla_cache_reserved_bytes"), 0);
  assert.equal(v(idle, "mla_requests_running"), 1, "the scrape itself");
  const ratio = v(idle, "mla_prefix_cache_hit_ratio");
  assert.ok(idle.has("mla_prefix_cache_hit_ratio") && ratio >= 0 && ratio <= 1, `prefix-cache hit ratio ${ratio}`);
  assert.equal(v(idle, `mla_info{model="mla-brown",backend="${engine.model.backendName}"}`), 1, "model info");
  for (const name of ["process_cpu_user_seconds_total", "process_resident_memory_bytes", "nodejs_heap_size_used_bytes", "nodejs_eventloop_lag_seconds"]) {
    assert.ok(idle.has(name), `process metric ${name}`);
  }
});

test("/metrics: queue depth, active sequences and cache bytes while a stream runs; a cancelled one is counted", async () => {
  const { url, eng } = await start({});
  const before = await scrape(url);
  const ctl = new AbortController();
  const prompt = "The jury said";
  const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: JSON_TYPE, body: JSON.stringify({ prompt, max_tokens: 600, ignore_eos: true, stream: true }), signal: ctl.signal });
  const reader = res.body!.getReader();
  await reader.read();
  const during = await scrape(url);
  assert.equal(v(during, "mla_sequences_active"), 1, "one sequence running");
  assert.equal(v(during, "mla_requests_running"), 2, "the stream and the scrape");
  const rows = engine.encode(prompt).length + 600;
  assert.equal(v(during, "mla_cache_reserved_bytes"), rows * eng.scheduler.cacheBytesPerToken, "its whole cache is reserved");
  const used = v(during, "mla_cache_used_bytes");
  assert.ok(used > 0 && used <= rows * eng.scheduler.cacheBytesPerToken, `cache bytes held now: ${used}`);
  ctl.abort();
  await reader.cancel().catch(() => {});
  await waitIdle(eng);
  const after = await scrapeUntil(url, (m) => delta(before, m, 'mla_request_finish_total{finish_reason="cancelled"}') >= 1);
  assert.equal(delta(before, after, 'mla_request_finish_total{finish_reason="cancelled"}'), 1, "the client's leaving is counted");
  assert.equal(v(after, "mla_cache_reserved_bytes"), 0, "and its cache is back");
  assert.ok(delta(before, after, "mla_completion_tokens_total") >= 1, "the tokens it had are counted");
});

test("/metrics: the prefix cache's hit ratio, hits and bytes are the scheduler's", async () => {
  const eng = new TextEngine("mla-brown", engine.model, engine.tokenizer, engine.chat, engine.stopIds, { maxCacheBytes: BUDGET, maxBatch: 8, maxQueue: 16, prefixCache: true });
  const lines: string[] = [];
  const { url } = await start({ logFormat: "json", log: (l) => lines.push(l) }, eng);
  const prompt = "The jury said that the city of Atlanta had a good election, and the grand jury";
  for (const id of ["pc-1", "pc-2"]) {
    assert.equal((await post(url, "/v1/completions", { prompt, max_tokens: 4, ignore_eos: true }, { "X-Request-Id": id })).status, 200);
    await waitIdle(eng);
  }
  const m = await scrapeUntil(url, () => lines.length >= 2);
  const st = eng.scheduler.stats();
  assert.ok(st.cachedPromptTokens > 0, "the second prompt was found in the cache");
  assert.equal(v(m, "mla_prefix_cache_hit_ratio"), st.cachedPromptTokens / st.promptTokens, "hit ratio: cached / prompt tokens");
  assert.equal(v(m, "mla_prefix_cache_hits_total"), st.prefixCacheHits);
  assert.ok(st.prefixCacheHits >= 1);
  assert.equal(v(m, "mla_prefix_cache_bytes"), st.prefixCacheBytes);
  assert.equal(v(m, "mla_prefix_cache_entries"), st.prefixCacheEntries);
  assert.ok(st.prefixCacheBytes > 0, "finished rows are held");
  assert.equal(v(m, "mla_scheduler_steps_total"), st.steps);
  // per request: the count of the engine's result, when it reports one
  const second = lines.map((l) => JSON.parse(l)).find((l) => l.request_id === "pc-2");
  assert.ok(second.cached_tokens === null || second.cached_tokens > 0, `cached_tokens ${second.cached_tokens}`);
  assert.equal(v(m, "mla_prompt_tokens_cached_total"), second.cached_tokens ?? 0);
});

test("/metrics: per server (several in one process count apart), behind the API key, HEAD", async () => {
  const a = await start({});
  const b = await start({ apiKey: "k3y" });
  const auth = { Authorization: "Bearer k3y" };
  const before = await scrape(b.url, auth);
  assert.equal((await post(a.url, "/v1/completions", { prompt: "It", max_tokens: 2 })).status, 200);
  await scrapeUntil(a.url, (m) => v(m, 'mla_requests_total{endpoint="/v1/completions",status="200"}') === 1);
  const afterB = await scrape(b.url, auth);
  assert.equal(delta(before, afterB, 'mla_requests_total{endpoint="/v1/completions",status="200"}'), 0, "b did not count a's request");
  const denied = await fetch(`${b.url}/metrics`);
  assert.equal(denied.status, 401, "no key, no metrics");
  assert.equal((await denied.json()).error.code, "invalid_api_key");
  const head = await fetch(`${a.url}/metrics`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "", "HEAD: headers only");
  const post405 = await fetch(`${a.url}/metrics`, { method: "POST", headers: JSON_TYPE, body: "{}" });
  assert.equal(post405.status, 405);
  // unknown paths are one label, whatever clients send
  await fetch(`${a.url}/nope-${Math.random()}`);
  const m = await scrapeUntil(a.url, (s) => v(s, 'mla_requests_total{endpoint="other",status="404"}') === 1);
  assert.equal(v(m, 'mla_requests_total{endpoint="other",status="404"}'), 1);
  assert.equal(endpointOf("/v1/models/x"), "/v1/models/{id}");
  assert.equal(endpointOf("/v1/completionsX"), "other");
});

test("x-request-id: the client's is echoed and names the completion, else one is made; on errors and streams too", async () => {
  const { url } = main;
  const given = await post(url, "/v1/completions", { prompt: "The jury", max_tokens: 2 }, { "X-Request-Id": "trace-42.a_b:c" });
  assert.equal(given.headers.get("x-request-id"), "trace-42.a_b:c", "echoed");
  assert.equal(given.body.id, "cmpl-trace-42.a_b:c", "the completion id carries it");

  const made = await post(url, "/v1/completions", { prompt: "The jury", max_tokens: 2 });
  const id = made.headers.get("x-request-id") ?? "";
  assert.match(id, /^[0-9a-f]{24}$/, "a fresh id");
  assert.equal(made.body.id, `cmpl-${id}`);
  const again = await post(url, "/v1/completions", { prompt: "The jury", max_tokens: 2 });
  assert.notEqual(again.headers.get("x-request-id"), id, "a new one each time");

  for (const bad of ["has space", "x".repeat(129), "tab\there", "caf\u00e9"]) {
    const r = await fetch(`${url}/health`, { headers: { "X-Request-Id": Buffer.from(bad, "utf8").toString("latin1") } });
    assert.match(r.headers.get("x-request-id") ?? "", /^[0-9a-f]{24}$/, `'${bad.slice(0, 20)}' is replaced`);
  }
  const longest = "y".repeat(128);
  assert.equal((await fetch(`${url}/health`, { headers: { "X-Request-Id": longest } })).headers.get("x-request-id"), longest, "128 characters are kept");

  const refused = await post(url, "/v1/chat/completions", { messages: [{ role: "user", content: "x" }], top_p: 7 }, { "X-Request-Id": "bad-req-1" });
  assert.equal(refused.status, 400);
  assert.equal(refused.headers.get("x-request-id"), "bad-req-1", "on a 400");
  const missing = await fetch(`${url}/v1/nothing`, { headers: { "X-Request-Id": "nf-1" } });
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get("x-request-id"), "nf-1", "on a 404");

  const stream = await post(url, "/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }], max_tokens: 3, stream: true }, { "X-Request-Id": "sse-7" });
  assert.equal(stream.headers.get("x-request-id"), "sse-7", "on a stream");
  const chunks = events(stream.text);
  assert.ok(chunks.length >= 2 && chunks.every((c) => c.id === "chatcmpl-sse-7"), "every chunk's id");

  // a web page (with --cors) may read it: node:http, as fetch may not set Origin
  const cors = await start({ cors: ["https://app.example"] });
  const exposed = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
    request(`${cors.url}/health`, { headers: { Origin: "https://app.example", "X-Request-Id": "page-1" }, agent: false }, (res) => {
      res.resume();
      resolve(res.headers);
    }).on("error", reject).end();
  });
  assert.equal(exposed["x-request-id"], "page-1");
  assert.match(String(exposed["access-control-expose-headers"]), /X-Request-Id/, "exposed to the page's script");

  const keyed = await start({ apiKey: "k" });
  const denied = await fetch(`${keyed.url}/v1/models`, { headers: { "X-Request-Id": "who-1" } });
  assert.equal(denied.status, 401);
  assert.equal(denied.headers.get("x-request-id"), "who-1", "on a 401");
});

test("JSON request logs: one parseable line per request with its id, tokens, timings and outcome", async () => {
  const { url } = main;
  await waitIdle(main.eng);
  await new Promise((r) => setTimeout(r, 50));
  logs.length = 0;
  const ok = await post(url, "/v1/completions", { prompt: "The jury said", max_tokens: 4, ignore_eos: true }, { "X-Request-Id": "log-ok" });
  const sse = await post(url, "/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }], max_tokens: 2, ignore_eos: true, stream: true }, { "X-Request-Id": "log-sse" });
  const bad = await post(url, "/v1/completions", { prompt: "x", max_tokens: -2 }, { "X-Request-Id": "log-bad" });
  assert.equal(bad.status, 400);
  const gone = await fetch(`${url}/v1/models/nope`, { headers: { "X-Request-Id": "log-404" } });
  assert.equal(gone.status, 404);
  // an upload that stops half-way: 499, and still the client's address
  const sock = connect(Number(new URL(url).port), "127.0.0.1");
  await new Promise((r) => sock.on("connect", r));
  sock.write(`POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: log-499\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt"`);
  await new Promise((r) => setTimeout(r, 50));
  sock.destroy();
  for (let i = 0; i < 200 && logs.length < 5; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(logs.length, 5, `one line per request: ${logs.join("\n")}`);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const lines: any[] = logs.map((l) => {
    assert.ok(!l.includes("\n"), "one line");
    return JSON.parse(l);
  });
  const by = new Map(lines.map((l) => [l.request_id, l]));
  const FIELDS = ["time", "level", "request_id", "method", "path", "status", "model", "prompt_tokens", "completion_tokens", "cached_tokens", "ttft_ms", "tpot_ms", "total_ms", "finish_reason", "client", "error", "note"];
  for (const l of lines) {
    assert.deepEqual(Object.keys(l), FIELDS, "every line has every field");
    assert.ok(!Number.isNaN(Date.parse(l.time)), "an ISO time");
    assert.equal(l.client, "127.0.0.1", "client address");
    assert.ok(l.total_ms >= 0);
  }
  const a = by.get("log-ok");
  assert.deepEqual(
    { method: a.method, path: a.path, status: a.status, model: a.model, prompt_tokens: a.prompt_tokens, completion_tokens: a.completion_tokens, finish_reason: a.finish_reason, error: a.error, level: a.level },
    { method: "POST", path: "/v1/completions", status: 200, model: "mla-brown", prompt_tokens: ok.body.usage.prompt_tokens, completion_tokens: 4, finish_reason: "length", error: null, level: "info" },
  );
  assert.ok(a.ttft_ms > 0 && a.ttft_ms <= a.total_ms, `ttft ${a.ttft_ms} <= total ${a.total_ms}`);
  assert.ok(a.tpot_ms > 0 && a.tpot_ms * 3 <= a.total_ms, `per-token ${a.tpot_ms} ms`);
  assert.ok(a.cached_tokens === null || (Number.isInteger(a.cached_tokens) && a.cached_tokens <= a.prompt_tokens), "cached tokens: a count when reported");
  const s = by.get("log-sse");
  assert.equal(s.path, "/v1/chat/completions");
  assert.equal(s.status, 200);
  assert.equal(s.completion_tokens, 2);
  assert.ok(s.ttft_ms > 0 && s.ttft_ms <= s.total_ms);
  assert.equal(events(sse.text)[0].id, "chatcmpl-log-sse");
  const b = by.get("log-bad");
  assert.deepEqual([b.status, b.level, b.error, b.model, b.prompt_tokens, b.ttft_ms, b.finish_reason], [400, "warn", bad.body.error.code, null, null, null, null]);
  const n = by.get("log-404");
  assert.deepEqual([n.method, n.path, n.status, n.error], ["GET", "/v1/models/nope", 404, "model_not_found"]);
  const left = by.get("log-499");
  assert.deepEqual([left.status, left.error, left.client, left.note], [499, "client_closed", "127.0.0.1", "the client closed the connection during the upload"]);

  const err = JSON.parse(jsonErrorLine("r-1", new Error("boom")));
  assert.deepEqual([err.level, err.request_id, err.message], ["error", "r-1", "internal error: boom"]);
  assert.match(err.stack, /boom/);
});

test("mla serve --log-format json: JSON lines on stderr; a bad format is a one-line error", async () => {
  const MAIN = join(ROOT, "src/cli/main.ts");
  const bad = spawnSync(process.execPath, ["--import", "tsx", MAIN, "serve", "--backend", "cpu-scalar", "--log-format", "xml"], { cwd: ROOT, encoding: "utf8" });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^error: --log-format must be text or json, got "xml"\n$/, bad.stderr);

  const p = spawn(process.execPath, ["--import", "tsx", MAIN, "serve", "--backend", "cpu-scalar", "--port", "0", "--log-format", "json"], { cwd: ROOT });
  let err = "";
  const exited = new Promise<number | null>((r) => p.on("exit", (c) => r(c)));
  const until = async (pred: () => boolean, what: string) => {
    for (let i = 0; i < 600 && !pred(); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(pred(), `${what}: ${err}`);
  };
  p.stderr.on("data", (d) => (err += d));
  try {
    await until(() => /on http:\/\/127\.0\.0\.1:\d+\/v1/.test(err), "listening");
    const port = Number(/127\.0\.0\.1:(\d+)/.exec(err)![1]);
    const r = await post(`http://127.0.0.1:${port}`, "/v1/completions", { prompt: "The jury", max_tokens: 3 }, { "X-Request-Id": "cli-1" });
    assert.equal(r.status, 200);
    await until(() => err.includes('"request_id":"cli-1"'), "a log line for the request");
    const line = JSON.parse(err.split("\n").find((l) => l.includes('"request_id":"cli-1"'))!);
    assert.deepEqual([line.status, line.path, line.completion_tokens, line.model], [200, "/v1/completions", r.body.usage.completion_tokens, "mla-brown"]);
  } finally {
    p.kill("SIGTERM");
  }
  assert.equal(await exited, 0, `clean exit: ${err}`);
});
