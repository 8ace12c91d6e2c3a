/**
 * Soak test of `mla serve`: N clients (default 32) for a fixed time (default 60 s) against an in-process server,
 * with mixed prompt lengths (a few tokens to ~1,500), streaming and non-streaming, completions and chat, and a
 * tenth of the requests vanishing mid-way (the client closes the connection). The clients run in a worker thread,
 * so their parsing does not run on the server's event loop. Reports every outcome (5xx and hung requests must be
 * zero), latency and time-to-first-token p50/p99, and the server's RSS at the start, peak and end.
 *
 *   npm run bench:soak -- [--model DIR] [--clients 32] [--seconds 60] [--backend cpu|cpu-scalar] [--threads 1] [--json]
 */
import { Worker } from "node:worker_threads";
import { basename, join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { cpus } from "node:os";
import { openRuntime } from "../src/cli/backend.js";
import { TextEngine } from "../src/generate/text.js";
import { ApiServer } from "../src/server/server.js";
import { pct } from "./stats.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const model = arg("model", join(ROOT, "models/mla-brown"));
const clients = Number(arg("clients", "32"));
const seconds = Number(arg("seconds", "60"));
const backend = arg("backend", "cpu");
const threads = Number(arg("threads", "1"));
const json = process.argv.includes("--json");

/** Prompts from a few tokens to ~1,500 (mla-brown's tokenizer): what chat histories and few-shot prompts look like. */
const BASE = "The jury said that the city had handled the election well, and the men of the court agreed. ";
const PROMPTS = ["He", "The jury said", "It was a cold morning when", BASE.repeat(4), BASE.repeat(20), BASE.repeat(58)];

/** The clients: each loops over requests until the deadline; one record per request. */
const CLIENT = `
const { parentPort, workerData } = require("node:worker_threads");
const { url, n, seconds, prompts } = workerData;
const now = () => performance.now();
const HUNG_MS = 120000;
async function one(i, k) {
  const pick = (i * 7 + k * 3) % 100;
  const vanish = pick % 10 === 0;                 // a tenth of requests: the client leaves mid-way
  const stream = pick % 10 < 7;                   // 70% streamed
  const chat = pick % 2 === 1;
  const prompt = prompts[(i + k * 5) % prompts.length];
  const body = chat
    ? { messages: [{ role: "user", content: prompt }], max_tokens: 16 + (pick % 48), temperature: k % 3 ? 0.8 : 0, seed: i * 1000 + k, stream }
    : { prompt, max_tokens: 16 + (pick % 48), temperature: k % 3 ? 0.8 : 0, seed: i * 1000 + k, stream };
  const ctl = new AbortController();
  const hung = setTimeout(() => ctl.abort(), HUNG_MS);
  const t0 = now();
  let first = 0;
  try {
    const res = await fetch(url + (chat ? "/v1/chat/completions" : "/v1/completions"), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: ctl.signal,
    });
    if (vanish && !stream) { setTimeout(() => ctl.abort(), 30); }
    if (res.status !== 200) { await res.text(); return { status: res.status, ms: now() - t0 }; }
    if (!stream) {
      const j = await res.json();
      return { status: 200, ok: !!j.choices, ms: now() - t0, ttft: now() - t0 };
    }
    const dec = new TextDecoder(); let text = "";
    for await (const part of res.body) {
      if (!first) first = now();
      text += dec.decode(part, { stream: true });
      if (vanish) { ctl.abort(); return { status: 200, vanished: true, ms: now() - t0 }; }
    }
    const ok = text.endsWith("data: [DONE]\\n\\n") && !text.includes('"error"');
    return { status: 200, ok, ms: now() - t0, ttft: first - t0, error: ok ? undefined : text.slice(-300) };
  } catch (e) {
    if (vanish) return { status: 200, vanished: true, ms: now() - t0 };
    if (e && e.name === "AbortError") return { status: 0, hung: true, ms: now() - t0 };
    return { status: 0, error: String(e), ms: now() - t0 };
  } finally {
    clearTimeout(hung);
  }
}
(async () => {
  const start = now(), deadline = start + seconds * 1000, results = [];
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    for (let k = 0; now() < deadline; k++) results.push(await one(i, k));
  }));
  parentPort.postMessage({ results, start, end: now() });
})();
`;

interface Result { status: number; ok?: boolean; vanished?: boolean; hung?: boolean; error?: string; ms: number; ttft?: number }

const runtime = await openRuntime({ backend, threads });
const engine = TextEngine.open(model, { runtime, maxCacheBytes: 1 << 30, maxBatch: 32, maxQueue: 256, mode: "auto" });
const server = new ApiServer(engine, { maxBodyBytes: 4 << 20 });
const { port } = await server.listen(0);
const url = `http://127.0.0.1:${port}`;

/**
 * Long prompts against a free event loop: /health polled every 10 ms while 4 clients each post a 1 MB prompt
 * (past the context, so every one is refused) and 4 more post 20,000 characters that must be tokenized (~4,400
 * tokens: refused after tokenizing). The longest /health round trip is how long the loop was blocked.
 */
async function longPromptProbe(): Promise<{ healthMaxMs: number; healthP50Ms: number; refused: number; ms: number }> {
  const t0 = performance.now();
  const big = (prompt: string) => fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt, max_tokens: 1 }) }).then((r) => r.status);
  const posts = Promise.all([...Array.from({ length: 4 }, () => big("€".repeat(340_000))), ...Array.from({ length: 4 }, () => big("the jury said ".repeat(1430)))]);
  let done = false;
  void posts.then(() => (done = true));
  const rtts: number[] = [];
  while (!done) {
    const s = performance.now();
    await fetch(`${url}/health`).then((r) => r.text());
    rtts.push(performance.now() - s);
    await new Promise((r) => setTimeout(r, 10));
  }
  const statuses = await posts;
  return { healthMaxMs: Math.round(Math.max(...rtts)), healthP50Ms: Number(pct(rtts, 50).toFixed(1)), refused: statuses.filter((s) => s === 400).length, ms: Math.round(performance.now() - t0) };
}
const probe = await longPromptProbe();

// warm up (kernels compiled, buffers grown) before the RSS baseline
for (const p of PROMPTS) {
  await fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: p, max_tokens: 4 }) }).then((r) => r.text());
}
const mib = (b: number) => Math.round(b / 2 ** 20);
const rssStart = process.memoryUsage().rss;
let rssPeak = rssStart;
const samples: number[] = [];
const sampler = setInterval(() => {
  const r = process.memoryUsage().rss;
  rssPeak = Math.max(rssPeak, r);
  samples.push(r);
}, 100);

const w = new Worker(CLIENT, { eval: true, workerData: { url, n: clients, seconds, prompts: PROMPTS } });
const { results, start, end } = await new Promise<{ results: Result[]; start: number; end: number }>((resolve, reject) => {
  w.once("message", resolve);
  w.once("error", reject);
});
await w.terminate();
clearInterval(sampler);
// settle: every sequence finished or cancelled, no cache left
for (let i = 0; i < 200 && (engine.scheduler.stats().active > 0 || engine.scheduler.stats().waiting > 0); i++) await new Promise((r) => setTimeout(r, 25));
const after = engine.scheduler.stats();
const rssEnd = process.memoryUsage().rss;
await server.close();
await runtime.close();

const completed = results.filter((r) => r.ok);
const row = {
  model: basename(model), backend: engine.model.backendName, cpus: cpus().length, node: process.version, clients, seconds: Number(((end - start) / 1000).toFixed(1)),
  requests: results.length,
  completed: completed.length,
  vanished: results.filter((r) => r.vanished).length,
  busy429: results.filter((r) => r.status === 429).length,
  other4xx: results.filter((r) => r.status >= 400 && r.status < 500 && r.status !== 429).length,
  fivexx: results.filter((r) => r.status >= 500).length,
  hung: results.filter((r) => r.hung).length,
  failed: results.filter((r) => !r.ok && !r.vanished && !r.hung && r.status === 200).length + results.filter((r) => r.status === 0 && !r.hung).length,
  latencyP50: Math.round(pct(completed.map((r) => r.ms), 50)),
  latencyP99: Math.round(pct(completed.map((r) => r.ms), 99)),
  ttftP50: Math.round(pct(completed.map((r) => r.ttft ?? r.ms), 50)),
  ttftP99: Math.round(pct(completed.map((r) => r.ttft ?? r.ms), 99)),
  rssStartMiB: mib(rssStart), rssPeakMiB: mib(rssPeak), rssEndMiB: mib(rssEnd),
  leftActive: after.active + after.waiting, leftReservedBytes: after.reservedBytes,
};
const firstError = results.find((r) => r.error)?.error;
if (json) {
  console.log(JSON.stringify({ ...row, firstError, longPrompts: probe }, null, 2));
} else {
  console.log(`long prompts: 4 x 1 MB and 4 x 20k characters posted at once: ${probe.refused} of 8 refused (400), in ${probe.ms} ms; ` +
    `/health round trip meanwhile p50 ${probe.healthP50Ms} ms, max ${probe.healthMaxMs} ms\n`);
  console.log(`soak: ${row.model}, ${row.backend}, ${row.cpus} cpus, node ${row.node}; ${clients} clients for ${seconds} s, prompts of 2 to ~1,500 tokens, ` +
    "70% streamed, half chat, a tenth vanishing mid-way\n");
  console.log("| requests | completed | vanished | 429 | other 4xx | 5xx | hung | failed | latency p50 / p99 (ms) | TTFT p50 / p99 (ms) | RSS start / peak / end (MiB) | left running |");
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
  console.log(`| ${row.requests} | ${row.completed} | ${row.vanished} | ${row.busy429} | ${row.other4xx} | ${row.fivexx} | ${row.hung} | ${row.failed} | ` +
    `${row.latencyP50} / ${row.latencyP99} | ${row.ttftP50} / ${row.ttftP99} | ${row.rssStartMiB} / ${row.rssPeakMiB} / ${row.rssEndMiB} | ${row.leftActive} (${row.leftReservedBytes} bytes reserved) |`);
  if (firstError) console.log(`\nfirst failure: ${firstError}`);
}
process.exitCode = row.fivexx + row.hung + row.failed + row.leftActive > 0 ? 1 : 0;
