/**
 * Load-time quantization cost, ns per weight: the wasm pool (WasmBackend.uploadBlocks / uploadQ8) against the JS
 * reference (quantizeTensor) on one BF16 matrix, in wall time and in CPU time (steady on a loaded machine). The JS runs on the first `jsRows` rows only (the K-quants cost
 * ~350 ns a weight there), which is enough for a per-weight figure.
 *
 *   node --import tsx scripts/bench-quantize.ts [--rows 2048] [--cols 2048] [--threads 2] [--js-rows 256]
 */
import { parseArgs } from "node:util";
import { WasmBackend } from "../src/backends/wasm/index.js";
import { quantizeTensor } from "../src/tensor/ggml-quantize.js";
import { fromF32, tensor, type Tensor } from "../src/tensor/tensor.js";

const { values } = parseArgs({
  options: { rows: { type: "string", default: "2048" }, cols: { type: "string", default: "2048" }, threads: { type: "string", default: "2" }, "js-rows": { type: "string", default: "256" } },
});
const rows = Number(values.rows), cols = Number(values.cols), jsRows = Math.min(rows, Number(values["js-rows"]));

/** Deterministic weights of N(0, 0.02)-like spread (sum of uniforms), as BF16. */
function weights(n: number, r: number): Tensor {
  const x = new Float32Array(n * cols);
  let s = 12345;
  const u = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < x.length; i++) x[i] = (u() + u() + u() - 1.5) * 0.04;
  return fromF32(x, "BF16", [r, cols]);
}

/** Best of `reps` runs, ns per weight of `n` weights: wall time, and this process's CPU time (all its threads). */
function time(n: number, reps: number, f: () => void): { wall: number; cpu: number } {
  let wall = Infinity, cpu = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
    f();
    const c = process.cpuUsage(c0);
    wall = Math.min(wall, Number(process.hrtime.bigint() - t0) / n);
    cpu = Math.min(cpu, ((c.user + c.system) * 1000) / n);
  }
  return { wall, cpu };
}

// CPU time as well as wall time: on a shared machine the wall time of a single thread is the load's, not the code's
const threads = Number(values.threads);
const be = await WasmBackend.create({ threads }), be1 = await WasmBackend.create({ threads: 1 });
const w = weights(rows, rows), wJs = tensor("BF16", [jsRows, cols], (w.data as Uint16Array).subarray(0, jsRows * cols));
console.log(`BF16 ${rows}x${cols} (JS on ${jsRows} rows); ns per weight`);
console.log(`type   wasm ${threads}T wall   wasm 1T cpu    JS wall    JS cpu   JS cpu / wasm 1T cpu`);
const upload = (b: WasmBackend, type: "Q8" | "Q4_0" | "Q4_K" | "Q5_K" | "Q6_K") => () => {
  const mark = b.heap.mark();
  if (type === "Q8") b.uploadQ8(w);
  else b.uploadBlocks(w, type);
  b.heap.release(mark);
};
for (const type of ["Q8", "Q4_0", "Q4_K", "Q5_K", "Q6_K"] as const) {
  const par = time(rows * cols, 3, upload(be, type)), one = time(rows * cols, 2, upload(be1, type));
  const js = time(jsRows * cols, 1, () => quantizeTensor(wJs, type));
  const cols6 = [par.wall, one.cpu, js.wall, js.cpu].map((v) => v.toFixed(1).padStart(12)).join("");
  console.log(`${type.padEnd(5)}${cols6} ${(js.cpu / one.cpu).toFixed(0).padStart(14)}x`);
}
await Promise.all([be.close(), be1.close()]);
