/**
 * Benchmark of the WebAssembly CPU kernels (src/backends/wasm) on decode- and prefill-shaped products.
 *
 *   npm run asbuild
 *   node --import tsx scripts/bench-kernels.ts [--threads 1,2] [--ms 400] [--hot] [--no-scalar] [--spin 50]
 *                                              [--only decode,scalar,prefill,attention,misc]
 *                                              [--dtypes F32,BF16,F16,Q8,Q4_0,Q4_K,Q5_K,Q6_K,Q5_0] [--reps 3] [--wasm-dir DIR]
 *   node --experimental-wasm-relaxed-simd --import tsx scripts/bench-kernels.ts     # relaxed-SIMD (FMA) build
 *
 * Shapes are those of the `small` preset (hidden 1024, intermediate 2816, vocab 32000). Decode matvecs cycle through
 * enough copies of the weights to exceed the last-level cache (unless --hot), so GB/s is the real memory stream.
 * Decode rows report the best of --reps timings (other processes on a small VM only ever make a run slower);
 * --wasm-dir compares another build of the kernels (a directory holding kernels.wasm).
 */
import { availableParallelism, cpus, loadavg } from "node:os";
import { WasmBackend, quantizeQ8Data, type Q8Data, type WasmDType, type WasmWeight } from "../src/backends/wasm/index.js";
import { KERNEL } from "../src/backends/wasm/kernels.js";
import { linear as scalarLinear } from "../src/backends/cpu/matmul.js";
import { fromF32, tensor, type Tensor } from "../src/tensor/tensor.js";
import { isBlockDType, type BlockDType } from "../src/tensor/dtype.js";
import { GGML_BLOCK, ggmlRowBytes } from "../src/tensor/ggml.js";
import { randn } from "../test/helpers.js";

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const has = (name: string): boolean => process.argv.includes(`--${name}`);

const THREADS = arg("threads", [1, Math.min(availableParallelism(), 8)].filter((v, i, a) => a.indexOf(v) === i).join(",")).split(",").map(Number);
const MS = Number(arg("ms", "400"));
const HOT = has("hot");
const SPIN = process.argv.includes("--spin") ? Number(arg("spin", "50")) : undefined;
const COLD_BYTES = 160 << 20; // > L3 (32 MiB here) with margin
const DTYPES = arg("dtypes", "F32,BF16,F16,Q8").split(",") as WasmDType[];
const REPS = Math.max(1, Number(arg("reps", "3")));
const WASM_DIR = process.argv.includes("--wasm-dir") ? arg("wasm-dir", "") : undefined;
const ONLY = arg("only", "decode,scalar,prefill,attention,misc").split(",");
const want = (section: string): boolean => ONLY.includes(section) && !(section === "scalar" && has("no-scalar"));

/** Time fn: warm up (V8 tiers wasm up from Liftoff to TurboFan), then run for ~MS milliseconds; microseconds per call. */
function time(fn: (i: number) => void): number {
  const warm = performance.now();
  let i = 0;
  while (performance.now() - warm < Math.min(150, MS / 2) || i < 3) fn(i++);
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < MS || n < 3) fn(n++);
  return ((performance.now() - t0) * 1000) / n;
}

function weightBytes(dt: WasmDType, N: number, K: number): number {
  if (isBlockDType(dt)) return N * ggmlRowBytes(dt, K);
  return dt === "F32" ? 4 * N * K : dt === "Q8" ? N * K + 4 * N * (K / 32) : 2 * N * K;
}

/**
 * Random GGML blocks [N, K]: random bytes with every f16 scale field set to a small normal value (the kernels' speed
 * does not depend on the values; quantizing 32M weights in JS would take minutes).
 */
function randomBlocks(dt: BlockDType, N: number, K: number): Tensor {
  const [, size] = GGML_BLOCK[dt];
  const data = new Uint8Array(N * ggmlRowBytes(dt, K));
  let a = N * 7919 + K;
  for (let i = 0; i < data.length; i++) {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0;
    data[i] = a >>> 24;
  }
  const halves = dt === "Q6_K" ? [208] : dt === "Q4_0" || dt === "Q5_0" ? [0] : [0, 2];
  for (let b = 0; b < data.length; b += size) for (const h of halves) { data[b + h] = 0x00; data[b + h + 1] = 0x20; }
  return tensor(dt, [N, K], data);
}

const sources = new Map<string, Tensor | Q8Data>();
/** A copy of an [N, K] random weight in wasm memory (the host-side data is made once per dtype and shape). */
function uploadWeight(be: WasmBackend, dt: WasmDType, N: number, K: number): WasmWeight {
  const key = `${dt}:${N}x${K}`;
  let src = sources.get(key);
  if (!src) {
    const wf = isBlockDType(dt) ? new Float32Array(0) : randn(N * K, N + K, 0.05);
    src = dt === "Q8" ? quantizeQ8Data(wf, N, K) : isBlockDType(dt) ? randomBlocks(dt, N, K) : fromF32(wf, dt, [N, K]);
    sources.set(key, src);
  }
  return "q" in src ? be.uploadQ8Data(src, N, K) : be.upload(src);
}

interface Row { [k: string]: string | number }
function table(rows: Row[]): void {
  if (!rows.length) return;
  const cols = Object.keys(rows[0]);
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: string[]): string => "| " + cells.map((c, i) => c.padStart(w[i])).join(" | ") + " |";
  console.log(line(cols));
  console.log("|" + w.map((n) => "-".repeat(n + 2)).join("|") + "|");
  for (const r of rows) console.log(line(cols.map((c) => String(r[c]))));
  console.log();
}

const fmt = (v: number, d = 1): string => v.toFixed(d);

async function main(): Promise<void> {
  const cpu = cpus()[0]?.model ?? "?";
  console.log(`# wasm kernel benchmark — ${cpu}, ${availableParallelism()} cores, Node ${process.version}`);
  console.log(`# load average ${loadavg().map((v) => v.toFixed(2)).join(" ")} (other processes competing for the cores distort the multi-thread rows)`);
  console.log(`# decode weights ${HOT ? "HOT (same copy every call: cache-resident when it fits)" : `COLD (rotating copies, >= ${COLD_BYTES >> 20} MiB)`}\n`);

  const backends: WasmBackend[] = [];
  for (const t of THREADS) backends.push(await WasmBackend.create({ threads: t, spinMicros: SPIN, wasmDir: WASM_DIR }));
  console.log(`relaxed SIMD (FMA): ${backends[0].relaxed ? "yes" : "no (plain SIMD build)"}\n`);

  // --- decode matvecs --------------------------------------------------------------------------
  const decode: Row[] = [];
  const shapes: [string, number, number][] = [["up/gate", 2816, 1024], ["down", 1024, 2816], ["lm_head", 32000, 1024]];
  for (const [name, N, K] of want("decode") ? shapes : []) {
    for (const dt of DTYPES) {
      for (const be of backends) {
        const mark = be.heap.mark();
        const bytes = weightBytes(dt, N, K);
        const copies = HOT ? 1 : Math.max(1, Math.ceil(COLD_BYTES / bytes));
        const ws: WasmWeight[] = [];
        for (let c = 0; c < copies; c++) ws.push(uploadWeight(be, dt, N, K));
        const x = be.heap.putF32(randn(K, 3));
        const out = be.heap.allocF32(N).ptr;
        let us = Infinity;
        for (let r = 0; r < REPS; r++) us = Math.min(us, time((i) => be.linear(out, x, 1, K, ws[i % copies], N)));
        decode.push({
          matvec: `${name} ${N}x${K}`, dtype: dt, threads: be.threads, "us/call": fmt(us, 0),
          "GB/s": fmt(bytes / us / 1e3), "G weights/s": fmt((N * K) / us / 1e3, 2), "GFLOP/s": fmt((2 * N * K) / us / 1e3),
        });
        be.heap.release(mark);
      }
    }
  }
  if (decode.length) {
    console.log("## decode (T=1): weight stream");
    table(decode);
  }

  // scalar JS reference for scale
  if (want("scalar")) {
    const N = 2816, K = 1024;
    const rows: Row[] = [];
    for (const dt of ["F32", "BF16"] as const) {
      const w = fromF32(randn(N * K, 1, 0.05), dt, [N, K]);
      const x = randn(K, 2);
      const out = new Float32Array(N);
      const us = time(() => scalarLinear(out, x, 1, K, w, N));
      rows.push({ kernel: "cpu/matmul.ts linear (scalar JS)", shape: `${N}x${K}`, dtype: dt, "us/call": fmt(us, 0), "GFLOP/s": fmt((2 * N * K) / us / 1e3, 2) });
    }
    console.log("## scalar JS reference (decode 2816x1024)");
    table(rows);
  }

  // --- prefill -------------------------------------------------------------------------------
  const prefill: Row[] = [];
  for (const [N, K, T] of want("prefill") ? ([[2816, 1024, 8], [2816, 1024, 64], [1024, 2816, 64], [2816, 1024, 512]] as const) : []) {
    for (const dt of DTYPES) {
      for (const be of backends) {
        const mark = be.heap.mark();
        const w = uploadWeight(be, dt, N, K);
        const x = be.heap.putF32(randn(T * K, 4));
        const out = be.heap.allocF32(T * N).ptr;
        const us = time(() => be.linear(out, x, T, K, w, N));
        prefill.push({ matmul: `T=${T} ${N}x${K}`, dtype: dt, threads: be.threads, "us/call": fmt(us, 0), "GFLOP/s": fmt((2 * N * K * T) / us / 1e3) });
        be.heap.release(mark);
      }
    }
  }
  if (prefill.length) {
    console.log("## batched decode (T=8) and prefill (T=64, 512): weight rows reused across tokens");
    table(prefill);
  }

  // --- attention -----------------------------------------------------------------------------
  const att: Row[] = [];
  for (const [H, dc, dr] of want("attention") ? ([[16, 512, 64]] as const) : []) {
    const w = dc + dr;
    for (const L of [256, 1024, 4096]) {
      for (const be of backends) {
        const mark = be.heap.mark();
        const q = be.heap.putF32(randn(H * w, 5, 0.1));
        const cache = be.heap.putF32(randn(L * w, 6));
        const out = be.heap.allocF32(H * dc).ptr;
        const us = time(() => be.attendLatent(out, q, H, cache, L, w, dc, 1 / Math.sqrt(w)));
        att.push({
          attend_latent: `H=${H} dc=${dc} dr=${dr} L=${L}`, threads: be.threads, "us/call": fmt(us, 0),
          "GFLOP/s": fmt((2 * H * L * (w + dc)) / us / 1e3), "cache GB/s": fmt((4 * L * w) / us / 1e3),
        });
        be.heap.release(mark);
      }
    }
  }
  if (att.length) {
    console.log("## absorbed-MLA decode attention (one token, f32 latent cache)");
    table(att);
  }

  // --- small kernels and dispatch overhead ---------------------------------------------------
  const misc: Row[] = [];
  for (const be of want("misc") ? backends : []) {
    const mark = be.heap.mark();
    const D = 1024;
    const x = be.heap.putF32(randn(D, 8)), g = be.heap.putF32(randn(D, 9));
    const o = be.heap.allocF32(2816).ptr;
    const gate = be.heap.putF32(randn(2816, 10)), up = be.heap.putF32(randn(2816, 11));
    misc.push({ op: "rmsnorm D=1024", threads: be.threads, "us/call": fmt(time(() => be.rmsnorm(o, x, 1, D, g, 1e-6)), 2) });
    misc.push({ op: "silu_mul n=2816", threads: be.threads, "us/call": fmt(time(() => be.siluMul(o, gate, up, 2816)), 2) });
    const sm = be.heap.putF32(randn(4096, 12));
    misc.push({ op: "softmax n=4096", threads: be.threads, "us/call": fmt(time(() => be.softmax(sm, 4096)), 2) });
    // a tiny job forced onto every thread: the cost of one pool round trip
    const wt = uploadWeight(be, "F32", 16 * be.threads, 8);
    const xx = be.heap.putF32(randn(8, 14));
    const oo = be.heap.allocF32(16 * be.threads).ptr;
    misc.push({
      op: `pool round trip (tiny linear on ${be.threads} thread${be.threads > 1 ? "s" : ""})`, threads: be.threads,
      "us/call": fmt(time(() => be.pool.run(KERNEL.linear_f32, { out: oo, x: xx, T: 1, K: 8, w: wt.ptr, xStride: 8, outStride: 16 * be.threads }, 16 * be.threads, 16)), 2),
    });
    be.heap.release(mark);
  }
  if (misc.length) {
    console.log("## small kernels");
    table(misc);
  }

  for (const be of backends) await be.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
