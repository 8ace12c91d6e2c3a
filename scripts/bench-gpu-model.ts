/**
 * A model on WebGPU, timed as llama-bench times one: prefill tok/s of a P-token prompt, decode ms/token at batch 1
 * (greedy, the argmax taken on the GPU), aggregate tok/s of B sequences decoded together, and the naive against the
 * absorbed MLA form on a long prompt. Prints one table (and JSON with --json).
 *
 *   node --import tsx scripts/bench-gpu-model.ts MODEL [MODEL...] [--prompt 512] [--decode 32] [--batch 8]
 *     [--forms 2048] [--quantize q4_k] [--cache-type f16] [--json]
 *
 * MODEL: a .gguf file or a checkpoint folder. --forms N (0: skip) times one N-token prefill in each form. On a
 * machine without a GPU this runs on SwiftShader (correct, and far too slow to mean anything).
 */
import { basename } from "node:path";
import { WebGpuBackend } from "../src/backends/webgpu/backend.js";
import { GpuModel, type GpuState } from "../src/model/gpu/model.js";
import type { BlockDType } from "../src/tensor/dtype.js";
import { mulberry32 } from "../src/tensor/rng.js";

const argv = process.argv.slice(2);
const flag = (name: string, dflt: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const valued = new Set(["--prompt", "--decode", "--batch", "--forms", "--quantize", "--cache-type"]);
const models = argv.filter((a, i) => !a.startsWith("--") && !valued.has(argv[i - 1]));
if (models.length === 0) {
  console.error("usage: bench-gpu-model.ts MODEL [MODEL...] [--prompt 512] [--decode 32] [--batch 8] [--forms 2048] [--quantize TYPE] [--cache-type f16] [--json]");
  process.exit(2);
}
const P = Number(flag("prompt", "512")), D = Number(flag("decode", "32")), B = Number(flag("batch", "8")), F = Number(flag("forms", "2048"));
const quantize = argv.includes("--quantize") ? (flag("quantize", "") === "q8" ? "q8" : (flag("quantize", "").toUpperCase() as BlockDType)) : undefined;
const cacheType = argv.includes("--cache-type") ? (flag("cache-type", "f32").toUpperCase() as "F32" | "F16" | "BF16") : undefined;

const gpu = await WebGpuBackend.create();
const rand = mulberry32(7);
const randomIds = (n: number, V: number): number[] => Array.from({ length: n }, () => Math.floor(rand() * V));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

interface Row {
  model: string;
  weightsGiB: number;
  loadS: number;
  prefillTokS: number;
  decodeMs: number;
  batchTokS: number;
  naiveTokS: number | null;
  absorbTokS: number | null;
}

async function prefillRate(m: GpuModel, n: number, mode: "auto" | "naive" | "absorb"): Promise<number> {
  const V = m.config.vocabSize;
  const s = m.newState(n + 1);
  await m.step([{ ids: randomIds(8, V), state: s }], { mode }); // compiles the pipelines of this form
  s.truncate(0);
  const t0 = performance.now();
  await m.step([{ ids: randomIds(n, V), state: s }], { mode });
  const sec = (performance.now() - t0) / 1000;
  m.releaseState(s);
  return n / sec;
}

async function bench(path: string): Promise<Row> {
  const t0 = performance.now();
  const m = GpuModel.load(path, gpu, { quantize, cacheDtype: cacheType });
  const loadS = (performance.now() - t0) / 1000;
  const V = m.config.vocabSize;
  const prefillTokS = await prefillRate(m, P, "auto");
  // decode at batch 1: the argmax comes back, 4 bytes a token
  const s = m.newState(P + D + 1);
  let next = (await m.stepArgmax([{ ids: randomIds(P, V), state: s }]))[0];
  const steps: number[] = [];
  for (let i = 0; i < D; i++) {
    const t = performance.now();
    next = (await m.stepArgmax([{ ids: [next], state: s }]))[0];
    steps.push(performance.now() - t);
  }
  m.releaseState(s);
  // B sequences decoded together after short prompts (logits come back, as the server samples on the CPU)
  const states: GpuState[] = Array.from({ length: B }, () => m.newState(32 + D + 1));
  await m.step(states.map((state) => ({ ids: randomIds(32, V), state })));
  await m.step(states.map((state) => ({ ids: randomIds(1, V), state })));
  const tb = performance.now();
  for (let i = 1; i < D; i++) await m.step(states.map((state) => ({ ids: randomIds(1, V), state })));
  const batchTokS = (B * (D - 1)) / ((performance.now() - tb) / 1000);
  for (const st of states) m.releaseState(st);
  let naiveTokS: number | null = null, absorbTokS: number | null = null;
  if (F > 0 && m.config.attention === "mla" && F <= m.config.maxPositionEmbeddings) {
    naiveTokS = await prefillRate(m, F, "naive");
    absorbTokS = await prefillRate(m, F, "absorb");
  }
  return { model: basename(path), weightsGiB: m.deviceBytes / 2 ** 30, loadS, prefillTokS, decodeMs: median(steps), batchTokS, naiveTokS, absorbTokS };
}

const rows: Row[] = [];
for (const path of models) {
  rows.push(await bench(path));
  const r = rows[rows.length - 1];
  console.error(`${r.model}: prefill ${r.prefillTokS.toFixed(1)} tok/s, decode ${r.decodeMs.toFixed(2)} ms/token`);
}
console.log(`\n${gpu.name}; prompt ${P}, decode ${D}, batch ${B}${quantize ? `, --quantize ${quantize}` : ""}${cacheType ? `, cache ${cacheType}` : ""}\n`);
console.log(`| model | GPU GiB | load s | prefill tok/s | decode ms/tok (B=1) | tok/s at B=${B} | ${F}-token prefill naive / absorbed tok/s |`);
console.log("|---|---:|---:|---:|---:|---:|---|");
for (const r of rows) {
  const forms = r.naiveTokS === null ? "-" : `${r.naiveTokS.toFixed(0)} / ${r.absorbTokS!.toFixed(0)} (${(r.naiveTokS / r.absorbTokS!).toFixed(2)}x)`;
  console.log(`| ${r.model} | ${r.weightsGiB.toFixed(2)} | ${r.loadS.toFixed(1)} | ${r.prefillTokS.toFixed(1)} | ${r.decodeMs.toFixed(2)} | ${r.batchTokS.toFixed(1)} | ${forms} |`);
}
if (argv.includes("--json")) console.log(JSON.stringify(rows));
gpu.destroy();
process.exit(0);
