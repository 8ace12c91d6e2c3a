/**
 * `mla serve` against llama.cpp's `llama-server` on the same GGUF, the same threads and the same number of slots:
 * N concurrent streaming clients (a worker thread) send completions of token-id prompts (so both servers see the
 * same tokens whatever their tokenizers) with ignore_eos, for a fixed time per level. Prints aggregate tokens/s,
 * time to first token and inter-token gaps p50 per server and level, and mla-ts / llama.cpp.
 *
 *   node --import tsx scripts/bench-serve-llama.ts [--model bench-out/small-q8_0.gguf] [--clients 1,8]
 *     [--seconds 20] [--max-tokens 64] [--prompt 32] [--threads 2] [--slots 8] [--only mla|llama] [--extra "..."]
 *
 * llama-server comes from scripts/build-llama.sh (.cache/llama.cpp/build/bin/llama-server; LLAMA_SERVER overrides).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { pct } from "./stats.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
};
const model = arg("model", join(ROOT, "bench-out/small-q8_0.gguf"));
const levels = arg("clients", "1,8").split(",").map(Number);
const seconds = Number(arg("seconds", "20"));
const maxTokens = Number(arg("max-tokens", "64"));
const promptLen = Number(arg("prompt", "32"));
const threads = Number(arg("threads", "2"));
const slots = Number(arg("slots", "8"));
const only = arg("only", "");
const extra = arg("extra", "").split(" ").filter(Boolean);
const LLAMA = process.env.LLAMA_SERVER ?? join(ROOT, ".cache/llama.cpp/build/bin/llama-server");

const CLIENT = `
const { parentPort, workerData } = require("node:worker_threads");
const { url, n, seconds, maxTokens, promptLen } = workerData;
const now = () => performance.now();
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
async function one() {
  const prompt = Array.from({ length: promptLen }, () => 3 + Math.floor(rand() * 200));
  const t0 = now();
  const res = await fetch(url + "/v1/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true,
      stream_options: { include_usage: true } }),
  });
  if (res.status !== 200) return { error: "HTTP " + res.status + " " + (await res.text()).slice(0, 200) };
  const dec = new TextDecoder(); let buf = "", first = 0, last = 0, chunks = 0, usage = 0; const gaps = [];
  for await (const part of res.body) {
    buf += dec.decode(part, { stream: true });
    let e;
    while ((e = buf.indexOf("\\n\\n")) >= 0) {
      const ev = buf.slice(0, e).trim(); buf = buf.slice(e + 2);
      if (!ev.startsWith("data: {")) continue;
      const c = JSON.parse(ev.slice(6));
      if (c.error) return { error: JSON.stringify(c.error) };
      if (c.usage && c.usage.completion_tokens) usage = c.usage.completion_tokens;
      if (c.choices && c.choices[0] && typeof c.choices[0].text === "string" && !c.choices[0].finish_reason) {
        const t = now(); chunks++;
        if (!first) first = t; else gaps.push(t - last);
        last = t;
      }
    }
  }
  return { ttft: first - t0, gaps, tokens: usage || chunks, end: now() };
}
(async () => {
  const start = now(), deadline = start + seconds * 1000, results = [];
  await Promise.all(Array.from({ length: n }, async () => {
    while (now() < deadline) { try { results.push(await one()); } catch (e) { results.push({ error: String(e) }); } }
  }));
  parentPort.postMessage({ results, start, end: now() });
})();
`;

interface Result { error?: string; ttft: number; gaps: number[]; tokens: number }

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitHealthy(url: string, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`server exited: ${log().slice(-2000)}`);
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`server did not become healthy: ${log().slice(-2000)}`);
}

async function load(url: string, n: number): Promise<Record<string, number>> {
  const w = new Worker(CLIENT, { eval: true, workerData: { url, n, seconds, maxTokens, promptLen } });
  const { results, start, end } = await new Promise<{ results: Result[]; start: number; end: number }>((resolve, reject) => {
    w.once("message", resolve);
    w.once("error", reject);
  });
  await w.terminate();
  const ok = results.filter((r) => !r.error);
  const bad = results.find((r) => r.error);
  if (bad) process.stderr.write(`  ${results.length - ok.length} errors, first: ${bad.error}\n`);
  const tokens = ok.reduce((s, r) => s + r.tokens, 0), wall = (end - start) / 1000;
  return {
    requests: ok.length, errors: results.length - ok.length, tokensPerSecond: tokens / wall,
    ttftP50: pct(ok.map((r) => r.ttft), 50), gapP50: pct(ok.flatMap((r) => r.gaps), 50),
  };
}

async function bench(name: string, cmd: string, args: string[]): Promise<Map<number, Record<string, number>>> {
  const port = await freePort(), url = `http://127.0.0.1:${port}`;
  const child = spawn(cmd, args.map((a) => a.replace("{PORT}", String(port))), { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const rows = new Map<number, Record<string, number>>();
  try {
    await waitHealthy(url, child, () => out);
    await load(url, 1); // warm-up, not recorded
    for (const n of levels) {
      const r = await load(url, n);
      rows.set(n, r);
      process.stderr.write(`${name} ${n} clients: ${r.tokensPerSecond.toFixed(1)} tok/s\n`);
    }
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)));
  }
  return rows;
}

if (!existsSync(model)) throw new Error(`no model at ${model} (make one with npm run make-random and mla export)`);
const ctx = slots * (promptLen + maxTokens + 64);
const mla = only === "llama" ? null : await bench("mla-ts", process.execPath, [
  "--import", "tsx", join(ROOT, "src/cli/main.ts"), "serve", "--model", model, "--port", "{PORT}", "--threads", String(threads),
  "--max-batch", String(slots), "--quiet", ...extra,
]);
const llama = only === "mla" ? null : await bench("llama.cpp", LLAMA, [
  "-m", model, "--port", "{PORT}", "-t", String(threads), "-tb", String(threads), "-np", String(slots), "-c", String(ctx),
  // completions only: no chat parsing of the (random) output, which llama-server otherwise rejects now and then
  "--no-webui", "--log-disable", "--reasoning-format", "none",
]);

console.log(`${model}: ${promptLen}-token prompts, ${maxTokens} tokens each (ignore_eos), ${threads} threads, ${slots} slots, ${seconds} s per level`);
console.log("| clients | mla-ts tok/s | llama.cpp tok/s | mla / llama | mla TTFT p50 ms | llama TTFT p50 ms | mla gap p50 ms | llama gap p50 ms |");
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|");
const f = (v: number | undefined, d = 1) => (v === undefined ? "-" : v.toFixed(d));
for (const n of levels) {
  const a = mla?.get(n), b = llama?.get(n);
  console.log(`| ${n} | ${f(a?.tokensPerSecond)} | ${f(b?.tokensPerSecond)} | ${a && b ? (a.tokensPerSecond / b.tokensPerSecond).toFixed(2) : "-"} | ${f(a?.ttftP50)} | ${f(b?.ttftP50)} | ${f(a?.gapP50, 2)} | ${f(b?.gapP50, 2)} |`);
}
for (const [name, rows] of [["mla-ts", mla], ["llama.cpp", llama]] as const) {
  if (!rows || !rows.has(1) || levels.length < 2) continue;
  const top = levels[levels.length - 1];
  console.log(`${name}: ${top} clients give ${(rows.get(top)!.tokensPerSecond / rows.get(1)!.tokensPerSecond).toFixed(2)}x one client's tokens/s`);
}
