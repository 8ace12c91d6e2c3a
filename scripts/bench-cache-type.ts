/**
 * Decode ms/token at a synthetic context with F32, F16 and BF16 latent caches, one step of each in turn
 * (A B C A B C ...) in one process on the same weights, so a shared machine's load hits all three alike.
 *   node --import tsx scripts/bench-cache-type.ts [CONTEXT=8192] [STEPS=24] [THREADS=2] [MODEL=bench-out/small-f32] [q8]
 */
import { DeepseekModel } from "../src/model/deepseek-model.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { mulberry32 } from "../src/tensor/rng.js";
const CTX = Number(process.argv[2] ?? 8192), STEPS = Number(process.argv[3] ?? 24), threads = Number(process.argv[4] ?? 2);
const ops = await WasmOps.create({ threads, quantize: process.argv[6] === "q8" ? "q8" : undefined });
const base = DeepseekModel.load(process.argv[5] ?? "bench-out/small-f32", { ops });
const types = ["F32", "F16", "BF16"] as const;
const runs = types.map((dt) => {
  const m = new DeepseekModel(base.config, base.weights, ops, dt), s = m.newState(CTX + STEPS + 2);
  m.fillContext(s, CTX, mulberry32(0));
  m.forward([1], s); // warm-up
  return { dt, m, s, ms: [] as number[] };
});
for (let i = 0; i < STEPS; i++) {
  for (const r of runs) {
    const t = performance.now();
    r.m.forward([(i * 7 + 3) % base.config.vocabSize], r.s);
    r.ms.push(performance.now() - t);
  }
}
const med = (x: number[]) => [...x].sort((a, b) => a - b)[x.length >> 1];
for (const r of runs) {
  const ratio = med(r.ms.map((v, i) => v / runs[0].ms[i]));
  console.log(`${r.dt}: decode median ${med(r.ms).toFixed(1)} ms/token, min ${Math.min(...r.ms).toFixed(1)}, per-round ratio to F32 ${ratio.toFixed(3)}, cache ${(r.s.cacheBytes / 2 ** 20).toFixed(1)} MiB (${ops.name})`);
}
await ops.close();
