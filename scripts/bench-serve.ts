/**
 * Load benchmark of `mla serve`: an in-process server (the model on the main thread) and N concurrent streaming
 * clients in a worker thread (so parsing the streams does not run on the server's event loop), for a bounded time
 * per concurrency level. Reports aggregate tokens/s, time to first token and per-token latency p50/p99, peak RSS
 * and errors, and the throughput of the highest level relative to one client.
 *
 * Then a chat's second turn (the prefix cache): a first turn whose prompt is a long history (--chat-history tokens
 * of Brown text), then a second turn that adds a short message; time to first token of each, the second with the
 * prefix cache on (the server's default) and off. The target is turn 2 <= 10% of turn 1.
 *
 *   npm run bench:serve -- [--model DIR] [--concurrency 1,2,4,8] [--seconds 15] [--max-tokens 64]
 *                          [--backend cpu|cpu-scalar|webgpu] [--threads 1] [--quantize q8] [--json]
 *                          [--chat-history 2000] [--chat-rounds 3] [--only load|chat]
 *
 * With --backend webgpu the model is the GPU decoder (continuous batching through GpuModel.step).
 */
import { Worker } from "node:worker_threads";
import { basename, join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { cpus } from "node:os";
import { openRuntime } from "../src/cli/backend.js";
import { TextEngine } from "../src/generate/text.js";
import type { InferenceModel, SequenceState } from "../src/model/inference.js";
import { ApiServer } from "../src/server/server.js";
import { pct } from "./stats.js";
import { argmax } from "../src/generate/sampler.js";
import { loadBrown } from "../src/data/brown.js";
import type { ChatMessage } from "../src/tokenizer/chat.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const model = arg("model", join(ROOT, "models/mla-brown"));
const levels = arg("concurrency", "1,2,4,8").split(",").map(Number);
const seconds = Number(arg("seconds", "15"));
const maxTokens = Number(arg("max-tokens", "64"));
const backend = arg("backend", "cpu");
const threads = Number(arg("threads", "1"));
const quantize = arg("quantize", "") || undefined;
const json = process.argv.includes("--json");
const chatHistory = Number(arg("chat-history", "2000"));
const chatRounds = Number(arg("chat-rounds", "3"));
const only = arg("only", "");

const PROMPTS = [
  "The jury said", "It was a cold morning when", "In the evening the men", "She told the court that",
  "The president of the company", "After the war", "He looked at the", "The church was", "On the other hand,",
  "The first thing to do is", "They went to the", "According to the report,",
];

/** The clients: each loops sending streaming completions until the deadline; timings per request. */
const CLIENT = `
const { parentPort, workerData } = require("node:worker_threads");
const { url, n, seconds, maxTokens, prompts } = workerData;
const now = () => performance.now();
async function one(i, k) {
  const t0 = now();
  const res = await fetch(url + "/v1/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: prompts[(i * 7 + k) % prompts.length], max_tokens: maxTokens, temperature: 0,
      stream: true, stream_options: { include_usage: true } }),
  });
  if (res.status !== 200) { await res.text(); return { error: "HTTP " + res.status }; }
  const dec = new TextDecoder(); let buf = "", first = 0, last = 0, tokens = 0; const gaps = []; let done = false;
  for await (const part of res.body) {
    buf += dec.decode(part, { stream: true });
    let e;
    while ((e = buf.indexOf("\\n\\n")) >= 0) {
      const ev = buf.slice(0, e); buf = buf.slice(e + 2);
      if (ev === "data: [DONE]") { done = true; continue; }
      const c = JSON.parse(ev.slice(6));
      if (c.error) return { error: c.error.message };
      if (c.usage) tokens = c.usage.completion_tokens;
      if (c.choices && c.choices[0] && c.choices[0].text) {
        const t = now();
        if (!first) first = t; else gaps.push(t - last);
        last = t;
      }
    }
  }
  if (!done) return { error: "stream ended without [DONE]" };
  return { ttft: first - t0, gaps, tokens, start: t0, end: now() };
}
(async () => {
  const start = now(), deadline = start + seconds * 1000, results = [];
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    for (let k = 0; now() < deadline; k++) {
      try { results.push(await one(i, k)); } catch (e) { results.push({ error: String(e) }); }
    }
  }));
  parentPort.postMessage({ results, start, end: now() });
})();
`;

interface Result { error?: string; ttft: number; gaps: number[]; tokens: number; start: number; end: number }

const runtime = await openRuntime({ backend, threads, quantize });
const engine = TextEngine.open(model, { runtime, maxCacheBytes: 1 << 30, maxBatch: 64, maxQueue: 256, mode: "auto", prefixCache: true });
const server = new ApiServer(engine);
const { port } = await server.listen(0);
const url = `http://127.0.0.1:${port}`;

let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);

const rows: Record<string, number | string>[] = [];
for (const n of only === "chat" ? [] : levels) {
  const before = engine.scheduler.stats();
  const w = new Worker(CLIENT, { eval: true, workerData: { url, n, seconds, maxTokens, prompts: PROMPTS } });
  const { results, start, end } = await new Promise<{ results: Result[]; start: number; end: number }>((resolve, reject) => {
    w.once("message", resolve);
    w.once("error", reject);
  });
  await w.terminate();
  const after = engine.scheduler.stats();
  const ok = results.filter((r) => !r.error);
  const tokens = ok.reduce((s, r) => s + r.tokens, 0);
  const wall = (end - start) / 1000;
  const gaps = ok.flatMap((r) => r.gaps);
  const row = {
    clients: n,
    requests: ok.length,
    errors: results.length - ok.length,
    tokens,
    seconds: Number(wall.toFixed(1)),
    tokensPerSecond: Number((tokens / wall).toFixed(1)),
    ttftP50: Number(pct(ok.map((r) => r.ttft), 50).toFixed(1)),
    ttftP99: Number(pct(ok.map((r) => r.ttft), 99).toFixed(1)),
    tokenP50: Number(pct(gaps, 50).toFixed(2)),
    tokenP99: Number(pct(gaps, 99).toFixed(2)),
    meanBatch: Number(((after.tokens - before.tokens) / Math.max(1, after.steps - before.steps)).toFixed(2)),
    peakRssMiB: Number((peakRss / 2 ** 20).toFixed(0)),
  };
  rows.push(row);
  if (!json) process.stderr.write(`${n} clients: ${row.tokensPerSecond} tok/s, ${row.errors} errors\n`);
  const firstErr = results.find((r) => r.error);
  if (firstErr) process.stderr.write(`  first error: ${firstErr.error}\n`);
}
clearInterval(sampler);

/** One streamed chat turn: the time to its first text, the reply, and the prompt tokens the server found cached. */
async function chatTurn(base: string, messages: readonly ChatMessage[], maxTokens: number): Promise<{ ttft: number; text: string; promptTokens: number; cached: number }> {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  if (res.status !== 200) throw new Error(`chat turn: HTTP ${res.status}: ${await res.text()}`);
  const dec = new TextDecoder();
  let buf = "", ttft = NaN, text = "", promptTokens = 0, cached = 0;
  const reader = res.body!.getReader();
  for (let part = await reader.read(); !part.done; part = await reader.read()) {
    buf += dec.decode(part.value, { stream: true });
    for (let e = buf.indexOf("\n\n"); e >= 0; e = buf.indexOf("\n\n")) {
      const ev = buf.slice(0, e);
      buf = buf.slice(e + 2);
      if (!ev.startsWith("data: {")) continue;
      const c = JSON.parse(ev.slice(6));
      const delta = c.choices?.[0]?.delta?.content;
      if (delta) {
        if (Number.isNaN(ttft)) ttft = performance.now() - t0;
        text += delta;
      }
      if (c.usage) (promptTokens = c.usage.prompt_tokens), (cached = c.usage.prompt_tokens_details?.cached_tokens ?? 0);
    }
  }
  if (Number.isNaN(ttft)) ttft = performance.now() - t0; // no text (a lone EOS): the end of the reply
  return { ttft, text, promptTokens, cached };
}

/**
 * A chat's turns: turn 1's prompt is a long history (a user message of Brown text sized to --chat-history prompt
 * tokens), turn 2 adds turn 1's reply and a short question, as a client sends it. Both are timed to their first
 * text; turn 1 first with max_tokens 1 (nothing cached yet), then again for its reply.
 */
async function chatScenario(base: string, round: number): Promise<{ history: number; turn1: number; turn2: number; cached: number; prompt2: number }> {
  const docs = loadBrown().validation;
  const doc = docs.slice(round % docs.length).concat(docs).join("\n\n");
  const system: ChatMessage = { role: "system", content: "You are a careful reader. Answer in one sentence." };
  const ctx = engine.contextLength, target = Math.min(historyTokensFor(ctx), chatHistory);
  // the longest text whose rendered first turn stays within the target (binary search on characters)
  let lo = 0, hi = Math.min(doc.length, target * 12);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (engine.encodeChat([system, { role: "user", content: doc.slice(0, mid) }]).length <= target) lo = mid;
    else hi = mid - 1;
  }
  const turn1: ChatMessage[] = [system, { role: "user", content: doc.slice(0, lo) }];
  const first = await chatTurn(base, turn1, 1); // time to first token of the long prompt (nothing cached)
  const reply = await chatTurn(base, turn1, 16); // the real reply (turn 1 again, now from the cache)
  const turn2: ChatMessage[] = [...turn1, { role: "assistant", content: reply.text }, { role: "user", content: "And what happened after that?" }];
  const second = await chatTurn(base, turn2, 1);
  return { history: first.promptTokens, turn1: first.ttft, turn2: second.ttft, cached: second.cached, prompt2: second.promptTokens };
}

/** The longest first-turn prompt that leaves room for a 16-token reply and the second turn's question. */
function historyTokensFor(ctx: number): number {
  return ctx - 48;
}

const chatRows: Record<string, number>[] = [];
if (only !== "load") {
  // the same model with the cache off, for turn 2 computed in full
  const off = new TextEngine(engine.name, engine.model, engine.tokenizer, engine.chat, engine.stopIds, { maxCacheBytes: 1 << 30, mode: "auto" });
  const offServer = new ApiServer(off);
  const offUrl = `http://127.0.0.1:${(await offServer.listen(0)).port}`;
  for (let round = 0; round < chatRounds; round++) {
    const on = await chatScenario(url, round);
    const plain = await chatScenario(offUrl, round + 1000); // other text: nothing of it cached anywhere
    const row = {
      historyTokens: on.history, turn2PromptTokens: on.prompt2, cachedTokens: on.cached,
      turn1Ms: Number(on.turn1.toFixed(1)), turn2Ms: Number(on.turn2.toFixed(1)), turn2OffMs: Number(plain.turn2.toFixed(1)),
      ratio: Number((on.turn2 / on.turn1).toFixed(4)),
    };
    chatRows.push(row);
    if (!json) process.stderr.write(`chat round ${round}: turn 1 ${row.turn1Ms} ms, turn 2 ${row.turn2Ms} ms (${(100 * row.ratio).toFixed(1)}%), without the cache ${row.turn2OffMs} ms\n`);
  }
  await offServer.close();
}
await server.close();

// The same levels without HTTP: decode steps of the batched forward alone (prompts of 8 tokens, then greedy
// steps), to separate what the kernels allow from what the server adds. Levels alternate over 7 rounds of 64 steps
// and the median round counts (the VM's neighbours move single runs by 2x).
const m: InferenceModel = engine.model;
const V = m.config.vocabSize;
type Item = { ids: number[]; state: SequenceState };
/** One batched step of the engine's model, on whichever backend. */
const step = (items: Item[]): Promise<Float32Array> => m.step(items);
const perLevel: number[][] = levels.map(() => []);
for (let round = 0; round < 7; round++) {
  for (const [li, n] of levels.entries()) {
    const states: SequenceState[] = Array.from({ length: n }, () => m.newState(128));
    let logits = await step(states.map((state, i) => ({ ids: Array.from({ length: 8 }, (_, j) => (i * 13 + j * 7 + round + 2) % V), state })));
    const steps = 64, t0 = performance.now();
    for (let s = 0; s < steps; s++) {
      const next = states.map((_, b) => argmax(logits.subarray(b * V, (b + 1) * V)));
      logits = await step(states.map((state, b) => ({ ids: [next[b]], state })));
    }
    perLevel[li].push((performance.now() - t0) / steps);
    for (const st of states) m.releaseState(st);
  }
}
const engineRows = levels.map((n, li) => {
  const ms = pct(perLevel[li], 50);
  return { clients: n, msPerStep: Number(ms.toFixed(3)), tokensPerSecond: Number(((n * 1000) / ms).toFixed(0)) };
});
await runtime.close();

const base = rows.length ? Number(rows[0].tokensPerSecond) : NaN;
const top = rows.length ? rows[rows.length - 1] : null;
const summary = {
  model: basename(model), backend: m.backendName, cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version,
  secondsPerLevel: seconds, maxTokens, rows, engineOnly: engineRows, chat: chatRows,
  speedup: top ? Number((Number(top.tokensPerSecond) / base).toFixed(2)) : null,
  maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
};
if (json) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  console.log(`model ${summary.model}, ${summary.backend}, ${summary.cpus} cpus (${summary.cpu}), node ${summary.node}; ` +
    `${seconds} s per level, streaming completions of up to ${maxTokens} tokens (greedy, as vLLM's benchmark_serving)\n`);
  if (top) {
    console.log("| clients | requests | errors | tokens/s | TTFT p50 / p99 (ms) | per-token p50 / p99 (ms) | mean batch | peak RSS (MiB) |");
    console.log("|---|---|---|---|---|---|---|---|");
    for (const r of rows) {
      console.log(`| ${r.clients} | ${r.requests} | ${r.errors} | ${r.tokensPerSecond} | ${r.ttftP50} / ${r.ttftP99} | ${r.tokenP50} / ${r.tokenP99} | ${r.meanBatch} | ${r.peakRssMiB} |`);
    }
    console.log(`\naggregate throughput at ${top.clients} clients: ${summary.speedup}x one client`);
  }
  if (chatRows.length) {
    console.log("\na chat's second turn (prefix cache): time to first text, greedy, streamed over HTTP\n");
    console.log("| history tokens | turn 2 prompt | cached | turn 1 (ms) | turn 2 (ms) | turn 2 / turn 1 | turn 2, cache off (ms) |");
    console.log("|---|---|---|---|---|---|---|");
    for (const r of chatRows) {
      console.log(`| ${r.historyTokens} | ${r.turn2PromptTokens} | ${r.cachedTokens} | ${r.turn1Ms} | ${r.turn2Ms} | ${(100 * r.ratio).toFixed(1)}% | ${r.turn2OffMs} |`);
    }
  }
  console.log("\nbatched forward alone (no HTTP), greedy decode steps, median of 7 alternating rounds:\n\n| sequences | ms/step | tokens/s |\n|---|---|---|");
  for (const r of engineRows) console.log(`| ${r.clients} | ${r.msPerStep} | ${r.tokensPerSecond} |`);
  const e0 = engineRows[0].tokensPerSecond, e1 = engineRows[engineRows.length - 1].tokensPerSecond;
  console.log(`\nbatched forward at ${engineRows[engineRows.length - 1].clients} sequences: ${(e1 / e0).toFixed(2)}x one sequence`);
}
