/**
 * mla-ts against native llama.cpp (llama-bench) on the same GGUF files, same thread count, runs alternating:
 * prefill tok/s, decode ms/token (at a context depth when --context is given), peak RSS. For the real-size rows of
 * BENCHMARKS.md (DeepSeek-V2-Lite shapes), which are too large for `npm run bench`.
 *
 *   node --import tsx scripts/bench-gguf.ts FILE.gguf... [--prompt 128] [--decode 16] [--context 0] [--threads 2] [--repeat 1]
 *
 * --context N: decode after N cached tokens. mla-ts fills its cache with synthetic rows (`mla bench --context`),
 * llama-bench prefills N real tokens first (`-d N`); both then time the decoded tokens only. Without it both decode
 * after the prompt (llama-bench `-d P` for its generation test).
 */
import { spawnSync } from "node:child_process";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { llamaBench } from "./llama-peer.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    prompt: { type: "string", default: "128" }, decode: { type: "string", default: "16" }, context: { type: "string", default: "0" },
    threads: { type: "string", default: "2" }, repeat: { type: "string", default: "1" }, extra: { type: "string", default: "" },
  },
});
const P = Number(values.prompt), D = Number(values.decode), C = Number(values.context), TH = Number(values.threads), R = Number(values.repeat);

interface Row { prefill: number; decodeMs: number; rssMiB: number }

function mla(file: string): Row {
  const args = ["--import", "tsx", join(ROOT, "src/cli/main.ts"), "bench", "--model", file, "--prompt", String(C ? 1 : P), "--decode", String(D),
    "--threads", String(TH), "--json", ...(C ? ["--context", String(C)] : []), ...(values.extra ? values.extra.split(" ") : [])];
  const p = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8", maxBuffer: 16 << 20 });
  const line = p.stdout.trim().split("\n").pop() ?? "";
  if (p.status !== 0 || !line.startsWith("{")) throw new Error(`mla bench ${file} failed: ${p.stderr.trim().split("\n").pop()}`);
  const j = JSON.parse(line) as Record<string, number>;
  return { prefill: j.prefillTokensPerSecond, decodeMs: j.decodeMsPerToken, rssMiB: j.peakRssBytes / 2 ** 20 };
}

/**
 * llama-bench: prefill `-p P -n 0`; decode `-p 0 -n D -d P`, after as many cached positions as mla-ts decodes after
 * (its prompt, or --context; a plain `-n D` would time the tokens on an empty context).
 */
function native(file: string): Row {
  const run = (extra: string[]) => {
    const r = llamaBench(file, { threads: TH, repetitions: 1 }, extra);
    if (!r.ok) throw new Error(`llama-bench ${file}: ${r.reason}`);
    return r;
  };
  const pre = C ? undefined : run(["-p", String(P), "-n", "0"]);
  const dec = run(["-p", "0", "-n", String(D), "-d", String(C || P)]);
  const pp = pre?.rows.find((x) => x.n_gen === 0), tg = dec.rows.find((x) => x.n_gen === D);
  return { prefill: pp?.avg_ts ?? NaN, decodeMs: tg ? 1000 / tg.avg_ts : NaN, rssMiB: Math.max(pre?.rssKiB ?? 0, dec.rssKiB) / 1024 };
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];
const med = (rows: Row[]): Row => ({ prefill: median(rows.map((r) => r.prefill)), decodeMs: median(rows.map((r) => r.decodeMs)), rssMiB: Math.max(...rows.map((r) => r.rssMiB)) });
const f = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : "-");

console.log(`${C ? `decode after ${C} cached tokens` : `${P}-token prompt`}, ${D} decoded, ${TH} threads, ${R} alternating run(s), medians${values.extra ? `; mla-ts ${values.extra}` : ""}`);
console.log("| file | mla-ts prefill tok/s | llama.cpp | ratio | mla-ts decode ms/tok | llama.cpp | llama / mla-ts | peak RSS MiB (mla / llama) |");
console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
for (const file of positionals) {
  const a: Row[] = [], b: Row[] = [];
  for (let i = 0; i < R; i++) {
    a.push(mla(file));
    b.push(native(file));
  }
  const m = med(a), n = med(b);
  console.log(`| ${basename(file)} | ${C ? "-" : f(m.prefill, 1)} | ${C ? "-" : f(n.prefill, 1)} | ${C ? "-" : f(m.prefill / n.prefill, 2)} | ${f(m.decodeMs, 2)} | ${f(n.decodeMs, 2)} | ${f(n.decodeMs / m.decodeMs, 2)} | ${f(m.rssMiB, 0)} / ${f(n.rssMiB, 0)} |`);
}
