/**
 * Each weight type's logit error against F32: the same checkpoint loaded with every --quantize type, one fixed
 * sequence of seeded random token ids, the logits at every position compared with the F32 run's
 * (||q - f32|| / ||f32|| over all positions) and how often the argmax agrees.
 *
 *   node --import tsx scripts/quant-error.ts [MODEL_DIR=bench-out/small-f32] [--tokens 64] [--threads 2]
 */
import { parseArgs } from "node:util";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { loadModel } from "../src/model/load.js";
import { mulberry32 } from "../src/tensor/rng.js";
import { argmax } from "../src/tensor/argmax.js";
import type { BlockDType } from "../src/tensor/dtype.js";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { tokens: { type: "string", default: "64" }, threads: { type: "string", default: "2" } } });
const dir = positionals[0] ?? "bench-out/small-f32";
const T = Number(values.tokens), threads = Number(values.threads);
const TYPES: (undefined | "q8" | BlockDType)[] = [undefined, "q8", "Q6_K", "Q5_K", "Q4_K", "Q4_0"];

async function logits(quantize: "q8" | BlockDType | undefined, ids: number[]): Promise<{ out: Float32Array; V: number; bytes: number }> {
  const ops = await WasmOps.create({ threads, quantize });
  try {
    const model = loadModel(dir, { ops });
    const out = model.forward(ids, model.newState(ids.length), { allLogits: true });
    return { out: out.slice(), V: model.config.vocabSize, bytes: ops.weightBytes() };
  } finally {
    await ops.close();
  }
}

const rand = mulberry32(1);
const probe = await logits(undefined, [0]);
const ids = Array.from({ length: T }, () => Math.floor(rand() * probe.V));
const ref = await logits(undefined, ids);
console.log(`${dir}: ${T} tokens, logits of every position against F32 (wasm, ${threads} threads)`);
console.log("| weights | weight bytes (MiB) | logit rel. error | argmax agrees |");
console.log("|---|---:|---:|---:|");
for (const q of TYPES) {
  const r = q === undefined ? ref : await logits(q, ids);
  let num = 0, den = 0, agree = 0;
  for (let i = 0; i < r.out.length; i++) num += (r.out[i] - ref.out[i]) ** 2, den += ref.out[i] ** 2;
  for (let t = 0; t < T; t++) {
    const a = r.out.subarray(t * r.V, (t + 1) * r.V), b = ref.out.subarray(t * r.V, (t + 1) * r.V);
    if (argmax(a) === argmax(b)) agree++;
  }
  console.log(`| ${q ?? "F32 (as stored)"} | ${(r.bytes / 2 ** 20).toFixed(0)} | ${Math.sqrt(num / den).toExponential(2)} | ${((100 * agree) / T).toFixed(0)}% |`);
}
