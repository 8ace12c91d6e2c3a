/**
 * Load benchmark of `mla serve`: an in-process server (the model on the main thread) and N concurrent streaming
 * clients in a worker thread (so parsing the streams does not run on the server's event loop), for a bounded time
 * per concurrency level. Reports aggregate tokens/s, time to first token and per-token latency p50/p99, peak RSS
 * and errors, and the throughput of the highest level relative to one client.
 *
 *   npm run bench:serve -- [--model DIR] [--concurrency 1,2,4,8] [--seconds 15] [--max-tokens 64]
 *                          [--backend cpu|cpu-scalar|webgpu] [--threads 1] [--json]
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
const json = process.argv.includes("--json");

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

const runtime = await openRuntime({ backend, threads });
const engine = TextEngine.open(model, { runtime, maxCacheBytes: 1 << 30, maxBatch: 64, maxQueue: 256, mode: "auto" });
const server = new ApiServer(engine);
const { port } = await server.listen(0);
const url = `http://127.0.0.1:${port}`;

let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);

const rows: Record<string, number | string>[] = [];
for (const n of levels) {
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

const base = Number(rows[0].tokensPerSecond);
const top = rows[rows.length - 1];
const summary = {
  model: basename(model), backend: m.backendName, cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version,
  secondsPerLevel: seconds, maxTokens, rows, engineOnly: engineRows,
  speedup: Number((Number(top.tokensPerSecond) / base).toFixed(2)),
  maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
};
if (json) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  console.log(`model ${summary.model}, ${summary.backend}, ${summary.cpus} cpus (${summary.cpu}), node ${summary.node}; ` +
    `${seconds} s per level, streaming completions of up to ${maxTokens} tokens (greedy, as vLLM's benchmark_serving)\n`);
  console.log("| clients | requests | errors | tokens/s | TTFT p50 / p99 (ms) | per-token p50 / p99 (ms) | mean batch | peak RSS (MiB) |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.clients} | ${r.requests} | ${r.errors} | ${r.tokensPerSecond} | ${r.ttftP50} / ${r.ttftP99} | ${r.tokenP50} / ${r.tokenP99} | ${r.meanBatch} | ${r.peakRssMiB} |`);
  }
  console.log(`\naggregate throughput at ${top.clients} clients: ${summary.speedup}x one client`);
  console.log("\nbatched forward alone (no HTTP), greedy decode steps, median of 7 alternating rounds:\n\n| sequences | ms/step | tokens/s |\n|---|---|---|");
  for (const r of engineRows) console.log(`| ${r.clients} | ${r.msPerStep} | ${r.tokensPerSecond} |`);
  const e0 = engineRows[0].tokensPerSecond, e1 = engineRows[engineRows.length - 1].tokensPerSecond;
  console.log(`\nbatched forward at ${engineRows[engineRows.length - 1].clients} sequences: ${(e1 / e0).toFixed(2)}x one sequence`);
}
