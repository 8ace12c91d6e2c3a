/**
 * `npm run bench`: mla-ts against the PyTorch peer on random-weight checkpoints of the peer's presets, plus context
 * scaling of MLA (absorbed, naive) and MHA decode attention. Prints one table; record it in BENCHMARKS.md.
 *
 *   npm run bench                  # everything (about 10 minutes on the 2-core machine)
 *   npm run bench -- --quick       # fewer rows, shorter runs
 *   npm run bench -- --repeat 3    # run every row 3 times (mla-ts and the peer alternating), report medians
 *   npm run bench -- --llama-only  # only the llama.cpp tables (add --quick: 128-token prompt, 16 decoded, F32 and Q8_0)
 *   npm run bench -- --no-llama    # skip them
 * The llama.cpp tables (scripts/llama-peer.ts): the `small` preset exported to GGUF (F32, BF16, Q8_0, Q4_K), run by
 * mla-ts, node-llama-cpp and native llama-bench (scripts/build-llama.sh) on 2 threads each.
 * Env: BENCH_DIR (checkpoints, default ./bench-out), PEER (path to ../shared/peers/torch), PYTHON (/usr/bin/python3).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync, readdirSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { writeRandomCheckpoint } from "../src/model/random.js";
import { benchAttention, type AttentionBenchRow } from "./bench-attention.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { llamaTables } from "./llama-peer.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const quick = process.argv.includes("--quick");
const BENCH_DIR = process.env.BENCH_DIR ?? join(ROOT, "bench-out");
const PEER = process.env.PEER ?? resolve(ROOT, "../shared/peers/torch");
const PYTHON = process.env.PYTHON ?? "/usr/bin/python3";
const BANDWIDTH = 44e9; // streaming reads measured on the 2-core machines (bytes/s)
const PROMPT = quick ? 128 : 512;
const DECODE = quick ? 16 : 64;
const REPEAT = Number(process.argv[process.argv.indexOf("--repeat") + 1]) || 1;
const LLAMA_ONLY = process.argv.includes("--llama-only");
const WITH_LLAMA = !process.argv.includes("--no-llama");

/** Median of each numeric field over repeated runs (the machines drift by tens of percent over minutes). */
function medianOf<T extends Record<string, number>>(runs: T[]): T {
  const out: Record<string, number> = {};
  for (const k of Object.keys(runs[0])) {
    if (typeof runs[0][k] !== "number") {
      out[k] = runs[0][k]; // labels (model, kernels, ...) are the same in every run
      continue;
    }
    const v = runs.map((r) => r[k]).sort((a, b) => a - b);
    out[k] = v[v.length >> 1];
  }
  return out as T;
}

interface Row {
  readonly label: string;
  readonly ours?: Record<string, number>;
  readonly peer?: { prefill: number; decodeMs: number };
  readonly weightBytes: number;
}

function checkpoint(preset: string, dtype: "F32" | "BF16"): string {
  const dir = join(BENCH_DIR, `${preset}-${dtype.toLowerCase()}`);
  if (!existsSync(join(dir, "config.json"))) {
    process.stderr.write(`writing ${dir} ...\n`);
    writeRandomCheckpoint(dir, preset, { dtype, seed: 0 });
  }
  return dir;
}

function weightBytes(dir: string): number {
  return readdirSync(dir).filter((f) => f.endsWith(".safetensors")).reduce((s, f) => s + statSync(join(dir, f)).size, 0);
}

function ours(dir: string, extra: string[]): Record<string, number> {
  const args = [join(ROOT, "dist/cli/main.js"), "bench", "--model", dir, "--json", ...extra];
  process.stderr.write(`mla ${args.slice(1).join(" ")}\n`);
  return JSON.parse(execFileSync(process.execPath, args, { encoding: "utf8", maxBuffer: 1 << 20 }));
}

function peerAvailable(): boolean {
  return existsSync(join(PEER, "bench_ref.py")) && spawnSync(PYTHON, ["-c", "import torch"]).status === 0;
}

/** The peer at its fastest setting here: 1 torch thread, OpenBLAS with 2. */
function peer(dir: string, prompt: number, decode: number, dtype = "f32"): { prefill: number; decodeMs: number } | undefined {
  const env = { ...process.env, THREADS: "1", OPENBLAS_NUM_THREADS: "2", DTYPE: dtype };
  process.stderr.write(`torch bench_ref.py ${dir} ${prompt} ${decode} (${dtype})\n`);
  const r = spawnSync(PYTHON, [join(PEER, "bench_ref.py"), dir, String(prompt), String(decode), "absorb"], { env, encoding: "utf8" });
  const m = /prefill \d+ tok: ([\d.]+) tok\/s; decode median ([\d.]+) ms\/tok/.exec(r.stdout);
  if (!m) {
    process.stderr.write(`peer failed: ${r.stderr.slice(-500)}\n`);
    return undefined;
  }
  return { prefill: Number(m[1]), decodeMs: Number(m[2]) };
}

const f = (x: number | undefined, d = 1) => (x === undefined || Number.isNaN(x) ? "-" : x.toFixed(d));

function printTable(rows: Row[]): void {
  const head = ["config", "prefill tok/s", "torch", "ratio", "decode ms/tok", "torch", "speedup", "floor ms", "peak RSS MiB", "KV MiB"];
  const lines = [head];
  for (const r of rows) {
    const o = r.ours, p = r.peer;
    lines.push([
      r.label, f(o?.prefillTokensPerSecond), f(p?.prefill), o && p ? f(o.prefillTokensPerSecond / p.prefill, 2) : "-",
      f(o?.decodeMsPerToken, 2), f(p?.decodeMs, 1), o && p ? f(p.decodeMs / o.decodeMsPerToken, 2) : "-",
      f((r.weightBytes / BANDWIDTH) * 1000, 1), f(o ? o.peakRssBytes / 2 ** 20 : undefined, 0), f(o ? o.kvCacheBytes / 2 ** 20 : undefined, 2),
    ]);
  }
  const w = head.map((_, j) => Math.max(...lines.map((l) => l[j].length)));
  console.log(lines.map((l) => "| " + l.map((c, j) => c.padEnd(w[j])).join(" | ") + " |").join("\n"));
}

function printAttention(rows: AttentionBenchRow[], kernels: string): void {
  console.log(`\nDecode attention alone (${kernels}): one layer of the \`small\` shapes (16 heads, d_c 256, d_h^R 32, d_h 64, d_v 64), per token, synthetic cache:`);
  console.log("| context | MLA absorb ms | MLA naive ms | MHA ms | MLA cache MiB | MHA cache MiB |");
  for (const r of rows) {
    console.log(`| ${r.context} | ${f(r.absorbMs, 3)} | ${f(r.naiveMs, 2)} | ${f(r.mhaMs, 3)} | ${f(r.mlaBytes / 2 ** 20, 2)} | ${f(r.mhaBytes / 2 ** 20, 2)} |`);
  }
}

/** llama.cpp as the peer: one table per weight type on the same GGUF file, 2 threads each. */
function llamaPeerTables(small: string, smallBf16: string): void {
  const run = { prompt: quick ? 128 : 512, decode: quick ? 16 : 32, threads: 2, repetitions: quick ? 1 : 3 };
  llamaTables({ f32Dir: small, bf16Dir: smallBf16, outDir: BENCH_DIR, run, types: quick ? ["f32", "q8_0"] : undefined });
}

async function main(): Promise<void> {
  const small = checkpoint("small", "F32");
  const smallBf16 = checkpoint("small", "BF16");
  if (LLAMA_ONLY) return llamaPeerTables(small, smallBf16);
  if (!existsSync(join(ROOT, "dist/cli/main.js"))) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "inherit" });
  const v2 = checkpoint("v2lite-attn", "F32");
  const withPeer = peerAvailable();
  if (!withPeer) process.stderr.write(`no PyTorch peer (${PYTHON} with torch, ${PEER}): mla-ts rows only\n`);
  const base = ["--prompt", String(PROMPT), "--decode", String(DECODE)];
  const rows: Row[] = [];
  const add = (label: string, dir: string, extra: string[], peerRun?: () => Row["peer"]) => {
    const mine: Record<string, number>[] = [], theirs: NonNullable<Row["peer"]>[] = [];
    for (let i = 0; i < REPEAT; i++) {
      mine.push(ours(dir, [...base, ...extra]));
      const p = withPeer && peerRun ? peerRun() : undefined;
      if (p) theirs.push(p);
    }
    rows.push({ label, ours: medianOf(mine), peer: theirs.length ? medianOf(theirs) : undefined, weightBytes: weightBytes(dir) });
  };
  add(`small F32, ${PROMPT}-token prompt`, small, [], () => peer(small, PROMPT, DECODE));
  add(`small BF16`, smallBf16, [], () => peer(smallBf16, PROMPT, DECODE, "bf16"));
  add("small q8 (from F32)", small, ["--quantize", "q8"]);
  rows[rows.length - 1] = { ...rows[rows.length - 1], weightBytes: (weightBytes(small) / 4) * 1.125 };
  add(`v2lite-attn F32`, v2, [], () => peer(v2, PROMPT, DECODE));
  for (const ctx of quick ? [8192] : [512, 8192]) {
    for (const att of ["absorb", "naive"]) {
      rows.push({
        label: `small F32 decode at ${ctx} context (${att})`,
        ours: ours(small, ["--prompt", "1", "--context", String(ctx), "--decode", String(quick ? 8 : 16), "--attention", att]),
        weightBytes: weightBytes(small),
      });
    }
  }
  console.log(`\nmla-ts bench, ${new Date().toISOString().slice(0, 10)}, ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`);
  console.log(`prompt ${PROMPT} tokens, decode ${DECODE} tokens (median)${REPEAT > 1 ? `, medians of ${REPEAT} runs per row` : ""}; floor = weight bytes / ${BANDWIDTH / 1e9} GB/s; torch = ../shared/peers/torch/bench_ref.py (THREADS=1 OPENBLAS_NUM_THREADS=2, absorb)\n`);
  printTable(rows);
  const ops = await WasmOps.create();
  try {
    printAttention(benchAttention(quick ? [512, 8192] : [512, 8192, 32768], ops), ops.name);
  } finally {
    await ops.close();
  }
  if (WITH_LLAMA) llamaPeerTables(small, smallBf16);
}

await main();
