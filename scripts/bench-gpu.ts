/**
 * npm run bench:gpu [-- --quick] [-- --model DIR]
 *
 * WebGPU ceilings and kernels on this machine's adapter: streaming-read bandwidth (vec4 loads), copyBufferToBuffer
 * bandwidth, the tiled f32 matrix product (TFLOP/s), decode products (T = 1) of BF16 and GGML block weights (bytes
 * read per second), and the fused absorbed-MLA decode attention at DeepSeek-V3 shapes (128 heads, d_c 512, d_h^R 64)
 * over 4k- and 32k-token latent caches, as effective bandwidth against the streaming read. With --model, also
 * `mla bench --backend webgpu` on that checkpoint. --quick shrinks everything (SwiftShader). Prints one table.
 */
import { WebGpuBackend, kernels as K, type Pass } from "../src/backends/webgpu/backend.js";
import { runBench } from "../src/cli/commands/bench.js";
import { webgpuRuntime } from "../src/model/gpu/model.js";
import { kernel, layout } from "../src/backends/webgpu/params.js";

const quick = process.argv.includes("--quick");
const mi = process.argv.indexOf("--model");
const modelDir = mi > 0 ? process.argv[mi + 1] : null;
const gpu = await WebGpuBackend.create();

/** Median seconds of `reps` submissions of `record` (each waited for). */
async function time(record: (p: Pass) => void, reps: number, inner: number): Promise<number> {
  const ts: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const p = gpu.pass();
    for (let i = 0; i < inner; i++) record(p);
    const t0 = performance.now();
    p.submit();
    await gpu.device.queue.onSubmittedWorkDone();
    if (r > 0) ts.push((performance.now() - t0) / 1000 / inner); // first run compiles pipelines
  }
  await gpu.read(gpu.empty, 4); // surfaces any device error (a kernel that failed to compile would time as free)
  ts.sort((a, b) => a - b);
  return ts[ts.length >> 1];
}

/** Streaming read: each invocation sums every (workgroups x 64)-th vec4 of A. */
const READ = kernel(layout({ total: "u32" }), () => `
@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) n: vec3u) {
  let total = P.total; let stride = n.x * 64u;
  var s = vec4<f32>(0.0);
  for (var i = g.x; i < total; i += stride) { s += A[i]; }
  O[g.x] = s.x + s.y + s.z + s.w;
}`);

const rows: [string, string, string][] = [];
// 1. streaming read
const bytes = quick ? 64 * 2 ** 20 : 1024 * 2 ** 20;
const big = gpu.buffer(bytes, "read"), sink = gpu.buffer(4 * 64 * 4096);
const readS = await time((p) => p.dispatch("readbw", READ, [big, sink], { total: bytes / 16 }, [4096, 1, 1]), 5, 4);
const readBw = bytes / readS;
rows.push(["streaming read (vec4)", `${(bytes / 2 ** 20).toFixed(0)} MiB`, `${(readBw / 1e9).toFixed(1)} GB/s`]);
gpu.release(big);

// 2. tiled matmul
const n = quick ? 512 : 4096;
const a = gpu.buffer(n * n * 4), o = gpu.buffer(n * n * 4);
const w = { dtype: "F32" as const, shape: [n, n], parts: [{ buffer: gpu.buffer(n * n * 4), row0: 0, rows: n }] };
const mmS = await time((p) => K.linear(p, o, a, n, n, w, n), 3, 2);
rows.push([`f32 matmul ${n}x${n}x${n}`, "tiled 32x32", `${((2 * n ** 3) / mmS / 1e12).toFixed(2)} TFLOP/s`]);

// 2b. decode products (T = 1) by weight type at DeepSeek-V3's expert-MLP shape, as weight bytes read per second
const [mvN, mvK] = quick ? [2048, 2048] : [18432, 7168];
const mvX = gpu.buffer(mvK * 4), mvO = gpu.buffer(mvN * 4);
for (const [dtype, bpw] of [["BF16", 2], ["Q8_0", 34 / 32], ["Q6_K", 210 / 256], ["Q4_K", 144 / 256], ["Q4_0", 18 / 32]] as const) {
  const wBytes = mvN * mvK * bpw;
  const mw = { dtype, shape: [mvN, mvK], parts: [{ buffer: gpu.buffer(wBytes, "matvec"), row0: 0, rows: mvN }] };
  const s = await time((p) => K.linear(p, mvO, mvX, 1, mvK, mw, mvN), 5, 4);
  rows.push([`${dtype} decode product ${mvN}x${mvK}`, `${(wBytes / 2 ** 20).toFixed(0)} MiB`,
    `${(s * 1e3).toFixed(3)} ms, ${(wBytes / s / 1e9).toFixed(1)} GB/s = ${((100 * wBytes) / s / readBw).toFixed(0)}% of streaming read`]);
  gpu.release(mw.parts[0].buffer);
}

// 3. copyBufferToBuffer, the "copy bandwidth" the attention is also compared with (bytes read + written)
{
  const bytesC = quick ? 64 * 2 ** 20 : 1024 * 2 ** 20, src = gpu.buffer(bytesC, "copy.src"), dst = gpu.buffer(bytesC, "copy.dst");
  const copyS = await time((p) => p.copy(src, dst, bytesC), 5, 4);
  rows.push(["copyBufferToBuffer", `${(bytesC / 2 ** 20).toFixed(0)} MiB`, `${((2 * bytesC) / copyS / 1e9).toFixed(1)} GB/s read + write (${(bytesC / copyS / 1e9).toFixed(1)} GB/s copied)`]);
  gpu.release(src);
  gpu.release(dst);
}

// 4. fused absorbed-MLA decode attention, DeepSeek-V3 shapes, at 4k and 32k tokens (quick: 16 heads, 2k)
const H = quick ? 16 : 128, dc = 512, dr = 64, dn = 128, dqk = dn + dr;
for (const L of quick ? [2048] : [4096, 32768]) {
  const nSplit = Math.min(32, Math.ceil(L / 256)), chunk = Math.ceil(L / nSplit);
  const cache = gpu.buffer(L * (dc + dr) * 4), q = gpu.buffer(H * dqk * 4), qc = gpu.buffer(H * dc * 4);
  const part = gpu.buffer(nSplit * H * dc * 4), ml = gpu.buffer(nSplit * H * 2 * 4), lat = gpu.buffer(H * dc * 4);
  const attS = await time((p) => {
    K.latentAttend(p, part, ml, qc, q, cache, 1, H, dc, dr, dqk, dn, L - 1, chunk, nSplit, 0.1);
    K.latentCombine(p, lat, part, ml, 1, H, dc, nSplit);
  }, 5, 4);
  const cacheBytes = L * (dc + dr) * 4;
  rows.push([`MLA decode attention, ${H} heads, ${L} tokens`, `${(cacheBytes / 2 ** 20).toFixed(0)} MiB f32 cache, ${nSplit} splits`,
    `${(attS * 1e3).toFixed(3)} ms, ${(cacheBytes / attS / 1e9).toFixed(1)} GB/s = ${((100 * cacheBytes) / attS / readBw).toFixed(0)}% of streaming read`]);
  for (const b of [cache, q, qc, part, ml, lat]) gpu.release(b);
}

if (modelDir) {
  const r = await runBench({ model: modelDir, prompt: quick ? 16 : 512, decode: quick ? 8 : 64, backend: "webgpu", attention: "auto" }, webgpuRuntime(gpu));
  rows.push([`mla bench ${modelDir}`, `prompt ${r.promptTokens}, decode ${r.decodeTokens}`,
    `prefill ${r.prefillTokensPerSecond.toFixed(0)} tok/s, decode ${r.decodeMsPerToken.toFixed(2)} ms/token (${r.decodeTokensPerSecond.toFixed(1)} tok/s), GPU ${((r.gpuBytes ?? 0) / 2 ** 20).toFixed(0)} MiB`]);
}

process.stdout.write(`adapter: ${gpu.name}; ${new Date().toISOString()}\n\n| measurement | size | result |\n|---|---|---|\n`);
for (const r of rows) process.stdout.write(`| ${r.join(" | ")} |\n`);
process.exit(0);
