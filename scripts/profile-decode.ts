/**
 * Where a decode step's time goes on the wasm backend: time and achieved GB/s per weight shape, and the rest.
 *   node --import tsx scripts/profile-decode.ts MODEL_DIR [threads] [q8]
 */
import { loadModel } from "../src/model/load.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import type { WasmWeight } from "../src/backends/wasm/index.js";

async function main(): Promise<void> {
  const [dir, threads = "2", quant] = process.argv.slice(2);
  const ops = await WasmOps.create({ threads: Number(threads), quantize: quant === "q8" ? "q8" : undefined });
  const model = loadModel(dir, { ops });
  const stats = new Map<string, { n: number; ms: number; bytes: number }>();
  const bytesOf = (w: WasmWeight, rows: number) => rows * w.cols * (w.dtype === "F32" ? 4 : w.dtype === "Q8" ? 1.125 : 2);
  const record = (key: string, t0: number, bytes: number) => {
    const s = stats.get(key) ?? { n: 0, ms: 0, bytes: 0 };
    s.n++, (s.ms += performance.now() - t0), (s.bytes += bytes);
    stats.set(key, s);
  };
  const be = ops.be;
  const linear = be.linear.bind(be), grouped = be.linearGrouped.bind(be), attend = be.attendLatent.bind(be);
  be.linear = (out, x, T, K, w, N, ...rest) => {
    const t0 = performance.now();
    linear(out, x, T, K, w, N, ...rest);
    record(`linear ${N}x${K} ${w.dtype}`, t0, bytesOf(w, N));
  };
  be.linearGrouped = (out, x, G, K, w, N, ...rest) => {
    const t0 = performance.now();
    grouped(out, x, G, K, w, N, ...rest);
    record(`grouped ${G}x${N}x${K} ${w.dtype}`, t0, bytesOf(w, G * N));
  };
  be.attendLatent = (out, q, H, cache, L, w, dc, ...rest) => {
    const t0 = performance.now();
    attend(out, q, H, cache, L, w, dc, ...rest);
    record(`attend_latent H${H}`, t0, L * w * 4);
  };
  const state = model.newState(300);
  model.forward([1, 2, 3], state);
  stats.clear();
  const steps = 50, t0 = performance.now();
  for (let i = 0; i < steps; i++) model.forward([5 + i], state, { mode: "absorb" }); // GQA models ignore the mode
  const total = (performance.now() - t0) / steps;
  let kernels = 0;
  for (const [k, s] of [...stats].sort((a, b) => b[1].ms - a[1].ms)) {
    kernels += s.ms;
    console.log(`${k.padEnd(28)} ${(s.n / steps).toFixed(0).padStart(4)} calls/token ${(s.ms / steps).toFixed(3).padStart(8)} ms/token ${(s.bytes / s.ms / 1e6).toFixed(1).padStart(6)} GB/s`);
  }
  console.log(`decode ${total.toFixed(2)} ms/token: kernels ${(kernels / steps).toFixed(2)}, everything else ${(total - kernels / steps).toFixed(2)} (${ops.name})`);
  await ops.close();
}

main();
