/**
 * llama.cpp as the peer of `npm run bench`, on the same GGUF file and thread count as mla-ts:
 * - node-llama-cpp (what a Node user gets from npm: its prebuilt CPU binaries), measured through its API;
 * - native llama.cpp's llama-bench (.cache/llama.cpp/build/bin, built by scripts/build-llama.sh).
 *
 *   node --import tsx scripts/llama-peer.ts node MODEL.gguf [--prompt 512] [--decode 32] [--threads 2]
 *   node --import tsx scripts/llama-peer.ts native MODEL.gguf [--prompt 512] [--decode 32] [--threads 2]
 * Each prints one JSON line: {prefillTokensPerSecond, decodeMsPerToken, peakRssBytes}. bench.ts runs them as child
 * processes, so each peak RSS is that peer's own, and prints one table per weight type with `llamaTables`.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { readGguf } from "../src/io/gguf.js";
import { exportGguf, type ExportType } from "../src/convert/export-gguf.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const LLAMA_BENCH = process.env.LLAMA_BENCH ?? join(ROOT, ".cache/llama.cpp/build/bin/llama-bench");

export interface PeerResult {
  readonly prefillTokensPerSecond: number;
  readonly decodeMsPerToken: number;
  readonly peakRssBytes: number;
}

export interface PeerRun {
  readonly prompt: number;
  readonly decode: number;
  readonly threads: number;
  /** llama-bench's -r (it reports the mean); 1 when absent. */
  readonly repetitions?: number;
}

/** The result, or why there is none (printed in the table instead of numbers). */
export type PeerOutcome = { readonly ok: true; readonly result: PeerResult } | { readonly ok: false; readonly reason: string };

/** The vocabulary size a GGUF declares ({arch}.vocab_size, else the token list's length). */
export function vocabSize(gguf: string): number {
  const m = readGguf(gguf).metadata;
  const v = m.get(`${String(m.get("general.architecture"))}.vocab_size`) ?? (m.get("tokenizer.ggml.tokens") as unknown[] | undefined)?.length;
  if (typeof v !== "number") throw new Error(`${gguf}: no vocab_size and no token list`);
  return v;
}

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[v.length >> 1];

/** Seeded token ids in [2, vocab): the same prompt for every run (ids 0 and 1 are often bos/eos). */
function promptTokens(n: number, vocab: number): number[] {
  let s = 12345;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return 2 + (s % (vocab - 2));
  });
}

/** node-llama-cpp in this process: prefill of `prompt` tokens in one evaluation, then `decode` greedy steps. */
async function measureNode(gguf: string, r: PeerRun): Promise<PeerResult> {
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  type Item = import("node-llama-cpp").ControlledEvaluateInputItem;
  type Token = import("node-llama-cpp").Token;
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: r.prompt + r.decode + 16, batchSize: r.prompt, threads: r.threads, sequences: 1 });
  try {
    const seq = context.getSequence();
    const tokens = promptTokens(r.prompt, vocabSize(gguf)) as Token[];
    const t0 = performance.now();
    const input: Item[] = tokens.map((t, i) => (i === tokens.length - 1 ? [t, { generateNext: { token: true } }] : t));
    const out = await seq.controlledEvaluate(input);
    const prefillMs = performance.now() - t0;
    let next = out[tokens.length - 1]?.next.token ?? tokens[0];
    const steps: number[] = [];
    for (let i = 0; i < r.decode; i++) {
      const t = performance.now();
      const res = await seq.controlledEvaluate([[next, { generateNext: { token: true } }]]);
      steps.push(performance.now() - t);
      next = res[0]?.next.token ?? next; // a random model may pick EOS: keep feeding tokens regardless
    }
    return { prefillTokensPerSecond: (r.prompt * 1000) / prefillMs, decodeMsPerToken: median(steps), peakRssBytes: process.resourceUsage().maxRSS * 1024 };
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
}

export interface LlamaBenchRow {
  n_prompt: number;
  n_gen: number;
  n_depth?: number;
  avg_ts: number;
}

/** One llama-bench run under /usr/bin/time (`extra`: its tests, e.g. -p 512 -n 0): its JSON rows and peak RSS. */
export function llamaBench(gguf: string, r: Pick<PeerRun, "threads" | "repetitions">, extra: string[]): { ok: true; rows: LlamaBenchRow[]; rssKiB: number } | { ok: false; reason: string } {
  const args = ["-f", "%M", LLAMA_BENCH, "-m", gguf, "-t", String(r.threads), "-r", String(r.repetitions ?? 1), "-o", "json", ...extra];
  const p = spawnSync("/usr/bin/time", args, { encoding: "utf8", maxBuffer: 16 << 20 });
  if (p.status !== 0) return { ok: false, reason: `llama-bench failed (${p.status}): ${p.stderr.trim().split("\n").slice(-3).join(" | ")}` };
  try {
    return { ok: true, rows: JSON.parse(p.stdout) as LlamaBenchRow[], rssKiB: Number(p.stderr.trim().split("\n").pop()) };
  } catch {
    return { ok: false, reason: `llama-bench printed no JSON: ${p.stdout.slice(0, 200)}` };
  }
}

/**
 * llama-bench's prefill (`-p prompt -n 0`) and its decode at the same context as mla-ts and node-llama-cpp decode
 * (`-p 0 -n decode -d prompt`: the generated tokens attend to `prompt` cached positions; plain `-n` would time them
 * on an empty context, which favoured llama.cpp by the attention over the prompt). Peak RSS: the larger run's.
 */
function measureNative(gguf: string, r: PeerRun): PeerOutcome {
  if (!existsSync(LLAMA_BENCH)) return { ok: false, reason: `native llama.cpp not built (${LLAMA_BENCH} missing: run scripts/build-llama.sh)` };
  const a = llamaBench(gguf, r, ["-p", String(r.prompt), "-n", "0"]);
  if (!a.ok) return a;
  const b = llamaBench(gguf, r, ["-p", "0", "-n", String(r.decode), "-d", String(r.prompt)]);
  if (!b.ok) return b;
  const pp = a.rows.find((x) => x.n_prompt === r.prompt && x.n_gen === 0), tg = b.rows.find((x) => x.n_gen === r.decode && x.n_prompt === 0);
  if (!pp || !tg) return { ok: false, reason: "llama-bench JSON lacks the prompt or generation row" };
  return { ok: true, result: { prefillTokensPerSecond: pp.avg_ts, decodeMsPerToken: 1000 / tg.avg_ts, peakRssBytes: Math.max(a.rssKiB, b.rssKiB) * 1024 } };
}

/** Run a peer in a child process (its own peak RSS); bench.ts calls this. */
export function runPeer(kind: "node" | "native", gguf: string, r: PeerRun): PeerOutcome {
  if (kind === "native") return measureNative(gguf, r);
  const args = ["--import", "tsx", fileURLToPath(import.meta.url), "node", gguf, "--prompt", String(r.prompt), "--decode", String(r.decode), "--threads", String(r.threads)];
  const p = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8", maxBuffer: 16 << 20 });
  const line = p.stdout.trim().split("\n").pop() ?? "";
  if (p.status !== 0 || !line.startsWith("{")) return { ok: false, reason: `node-llama-cpp failed (${p.status}): ${p.stderr.trim().split("\n").slice(-3).join(" | ")}` };
  return { ok: true, result: JSON.parse(line) as PeerResult };
}

// ---------------------------------------------------------------------------------------------------------------
// The tables of `npm run bench`

/** The weight types of the tables, as `mla export --type` spells them. */
export const PEER_TYPES = ["f32", "bf16", "q8_0", "q4_k"] as const;
export type PeerType = (typeof PEER_TYPES)[number];

export interface LlamaTablesOptions {
  /** The `small` preset's F32 and BF16 safetensors folders (scripts/make-random.ts). */
  readonly f32Dir: string;
  readonly bf16Dir: string;
  /** Where the GGUF files go (bench-out/). */
  readonly outDir: string;
  readonly run: PeerRun;
  readonly types?: readonly PeerType[];
}

interface Measured {
  readonly label: string;
  readonly outcome: PeerOutcome;
}

/** The GGUF of one weight type, exported from the F32 checkpoint unless a fresh one is there already. */
function ggufOf(o: LlamaTablesOptions, type: PeerType): string {
  const out = join(o.outDir, `${basename(o.f32Dir)}-${type}.gguf`.replace("-f32-", "-"));
  const src = readdirSync(o.f32Dir).filter((f) => f.endsWith(".safetensors")).map((f) => statSync(join(o.f32Dir, f)).mtimeMs);
  if (!existsSync(out) || statSync(out).mtimeMs < Math.max(...src)) {
    process.stderr.write(`mla export --type ${type} ${o.f32Dir} ${out}\n`);
    // K-quant rows that are not whole 256-blocks fall back as llama-quantize does (Q4_K -> Q5_0, ...): both read them
    exportGguf(o.f32Dir, out, { type: type as ExportType });
  }
  return out;
}

/** `mla bench` as a child process (dist/ when built, else the sources through tsx), its JSON parsed. */
function mlaBench(model: string, r: PeerRun, extra: string[] = []): PeerOutcome {
  const dist = join(ROOT, "dist/cli/main.js");
  const entry = existsSync(dist) ? [dist] : ["--import", "tsx", join(ROOT, "src/cli/main.ts")];
  const args = [...entry, "bench", "--model", model, "--prompt", String(r.prompt), "--decode", String(r.decode), "--threads", String(r.threads), "--json", ...extra];
  process.stderr.write(`mla ${args.slice(entry.length).join(" ")}\n`);
  const p = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8", maxBuffer: 16 << 20 });
  const line = p.stdout.trim().split("\n").pop() ?? "";
  if (p.status !== 0 || !line.startsWith("{")) return { ok: false, reason: p.stderr.trim().split("\n").pop() ?? `exit ${p.status}` };
  const j = JSON.parse(line) as Record<string, number>;
  return { ok: true, result: { prefillTokensPerSecond: j.prefillTokensPerSecond, decodeMsPerToken: j.decodeMsPerToken, peakRssBytes: j.peakRssBytes } };
}

/**
 * mla-ts on the same GGUF when it loads GGUF files; otherwise the closest safetensors run (the F32 or BF16
 * checkpoint; Q8_0 as F32 quantized at load, which is Q8_0 bit for bit), labelled as such.
 */
function mlaOn(o: LlamaTablesOptions, type: PeerType, gguf: string): Measured {
  const same = mlaBench(gguf, o.run);
  if (same.ok) return { label: "mla-ts (same GGUF)", outcome: same };
  process.stderr.write(`mla-ts did not load ${gguf} (${same.reason}): measuring the safetensors instead\n`);
  if (type === "f32") return { label: "mla-ts (F32 safetensors)", outcome: mlaBench(o.f32Dir, o.run) };
  if (type === "bf16") return { label: "mla-ts (BF16 safetensors)", outcome: mlaBench(o.bf16Dir, o.run) };
  if (type === "q8_0") return { label: "mla-ts (F32 safetensors, --quantize q8)", outcome: mlaBench(o.f32Dir, o.run, ["--quantize", "q8"]) };
  return { label: "mla-ts", outcome: { ok: false, reason: `mla-ts loads ${type.toUpperCase()} only from a GGUF file (${same.reason})` } };
}

const fmt = (x: number | undefined, d: number) => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(d));

function printTable(type: PeerType, gguf: string, rows: Measured[], r: PeerRun): void {
  const ours = rows[0].outcome.ok ? rows[0].outcome.result : undefined;
  console.log(`\n${type.toUpperCase()}: ${basename(gguf)}, ${r.prompt}-token prompt, ${r.decode} decoded tokens, ${r.threads} threads`);
  console.log("| build | prefill tok/s | mla-ts / peer | decode ms/tok | mla-ts / peer | peak RSS MiB |");
  console.log("|---|---|---|---|---|---|");
  for (const [i, m] of rows.entries()) {
    if (!m.outcome.ok) {
      console.log(`| ${m.label} | ${m.outcome.reason} | | | | |`);
      continue;
    }
    const p = m.outcome.result, peer = i > 0 && ours;
    console.log(`| ${m.label} | ${fmt(p.prefillTokensPerSecond, 1)} | ${peer ? fmt(ours.prefillTokensPerSecond / p.prefillTokensPerSecond, 2) : "-"} | ${fmt(p.decodeMsPerToken, 2)} | ${peer ? fmt(ours.decodeMsPerToken / p.decodeMsPerToken, 2) : "-"} | ${fmt(p.peakRssBytes / 2 ** 20, 0)} |`);
  }
}

/** One table per weight type: mla-ts, node-llama-cpp and native llama.cpp on the same GGUF and thread count. */
export function llamaTables(o: LlamaTablesOptions): void {
  console.log(`\nllama.cpp peers (prefill ratio > 1: mla-ts faster; decode ratio > 1: mla-ts slower). node-llama-cpp ${nodeLlamaCppVersion()} prebuilt CPU binaries through its API; native = ${LLAMA_BENCH} -r ${o.run.repetitions ?? 1} (prefill -p ${o.run.prompt} -n 0; decode -p 0 -n ${o.run.decode} -d ${o.run.prompt}, at the context mla-ts and node-llama-cpp decode at). GGUFs by mla export, K-quant rows not whole 256-blocks as llama-quantize falls back (Q5_0 for Q4_K)`);
  for (const type of o.types ?? PEER_TYPES) {
    const gguf = ggufOf(o, type);
    const rows: Measured[] = [mlaOn(o, type, gguf)];
    process.stderr.write(`node-llama-cpp ${gguf}\n`);
    rows.push({ label: "node-llama-cpp", outcome: runPeer("node", gguf, o.run) });
    process.stderr.write(`llama-bench ${gguf}\n`);
    rows.push({ label: "llama.cpp native (llama-bench)", outcome: runPeer("native", gguf, o.run) });
    printTable(type, gguf, rows, o.run);
  }
}

function nodeLlamaCppVersion(): string {
  try {
    return String((JSON.parse(readFileSync(join(ROOT, "node_modules/node-llama-cpp/package.json"), "utf8")) as { version: unknown }).version);
  } catch {
    return "(not installed)";
  }
}

function flag(argv: string[], name: string, fallback: number): number {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
}

async function main(argv: string[]): Promise<void> {
  const [kind, gguf] = argv;
  if ((kind !== "node" && kind !== "native") || !gguf) {
    console.error("usage: llama-peer.ts node|native MODEL.gguf [--prompt 512] [--decode 32] [--threads 2]");
    process.exit(2);
  }
  const r = { prompt: flag(argv, "--prompt", 512), decode: flag(argv, "--decode", 32), threads: flag(argv, "--threads", 2) };
  if (kind === "node") {
    console.log(JSON.stringify(await measureNode(gguf, r)));
    return;
  }
  const o = measureNative(gguf, r);
  if (!o.ok) {
    console.error(o.reason);
    process.exit(1);
  }
  console.log(JSON.stringify(o.result));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main(process.argv.slice(2));
