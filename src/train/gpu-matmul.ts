/**
 * Training's three matrix products (see ./wasm-matmul.ts) on WebGPU. Training is synchronous and a GPU read-back is not,
 * so the GPU lives in a worker thread: each product's operands go into shared memory, the main thread blocks on
 * Atomics.wait while the worker uploads them, runs the tiled product (src/backends/webgpu) and copies the result
 * back. Node only (browsers forbid Atomics.wait on the main thread).
 *
 * Operands cross the bus on every call, so this pays off only when products are large next to the transfers; on
 * CPU-only machines (SwiftShader) it is much slower than the CPU kernels and exists for correctness.
 */
import { Worker } from "node:worker_threads";
import { MlaError } from "../errors.js";
import type { Vec } from "./grad/index.js";
import type { MatmulOps } from "./wasm-matmul.js";

const IDLE = 0, REQUEST = 1, DONE = 2, FAILED = 3;

/** The worker: waits for requests without blocking its event loop (the GPU's callbacks need it). */
function workerSource(backendUrl: string): string {
  return `
const { parentPort, workerData } = require("node:worker_threads");
(async () => {
  // running from TypeScript sources (tests, tsx): eval'd workers do not inherit tsx's loader, so register it here
  if (${JSON.stringify(backendUrl)}.endsWith(".ts")) (await import("tsx/esm/api")).register();
  const { WebGpuBackend, kernels } = await import(${JSON.stringify(backendUrl)});
  let gpu;
  try { gpu = await WebGpuBackend.create(); } catch (e) { parentPort.postMessage({ error: e.message }); return; }
  parentPort.postMessage({ ready: gpu.name });
  const ctrl = new Int32Array(workerData.ctrl);
  let data = new Float32Array(workerData.data);
  parentPort.on("message", (m) => { if (m.data) { data = new Float32Array(m.data); Atomics.store(ctrl, 4, 1); Atomics.notify(ctrl, 4); } });
  const bufs = {};
  const get = (name, floats) => {
    const bytes = Math.max(16, floats * 4);
    if (!bufs[name] || bufs[name].size < bytes) { if (bufs[name]) gpu.release(bufs[name]); bufs[name] = gpu.buffer(bytes); }
    return bufs[name];
  };
  for (;;) {
    const s = Atomics.load(ctrl, 0);
    if (s !== ${REQUEST}) { await Atomics.waitAsync(ctrl, 0, s).value; continue; }
    try {
      const T = ctrl[1], K = ctrl[2], N = ctrl[3];
      const x = get("x", T * K), w = get("w", N * K), o = get("o", T * N);
      // slice: Dawn reads ArrayBuffers, not shared memory
      gpu.write(x, data.slice(0, T * K));
      gpu.write(w, data.slice(T * K, T * K + N * K));
      const p = gpu.pass();
      kernels.linear(p, o, x, T, K, { dtype: "F32", shape: [N, K], parts: [{ buffer: w, row0: 0, rows: N }] }, N);
      p.submit();
      data.set(await gpu.readF32(o, T * N), T * K + N * K);
      Atomics.store(ctrl, 0, ${DONE});
    } catch (e) {
      parentPort.postMessage({ error: e.message });
      Atomics.store(ctrl, 0, ${FAILED});
    }
    Atomics.notify(ctrl, 0);
  }
})();
`;
}

export class GpuTrainMatmul implements MatmulOps {
  private lastError = "";

  private constructor(private readonly worker: Worker, readonly adapter: string, private readonly ctrl: Int32Array, private data: Float32Array) {
    worker.on("message", (m: { error?: string }) => {
      if (m.error) this.lastError = m.error;
    });
  }

  /** Start the worker and its device; fails with the device's error when no adapter is found. */
  static async create(): Promise<GpuTrainMatmul> {
    const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
    const backendUrl = new URL(`../backends/webgpu/backend${ext}`, import.meta.url).href;
    const ctrl = new SharedArrayBuffer(32), data = new SharedArrayBuffer(4 << 20);
    const worker = new Worker(workerSource(backendUrl), { eval: true, workerData: { ctrl, data } });
    const ready = await new Promise<string>((resolve, reject) => {
      worker.once("message", (m: { ready?: string; error?: string }) => (m.ready ? resolve(m.ready) : reject(new MlaError(`webgpu training: ${m.error}`))));
      worker.once("error", (e) => reject(e));
    });
    return new GpuTrainMatmul(worker, ready, new Int32Array(ctrl), new Float32Array(data));
  }

  /** out [T, N] = x [T, K] W[N, K]^T on the GPU (blocking). */
  private linear(x: Float32Array, T: number, K: number, W: Float32Array, N: number): Float32Array {
    const need = T * K + N * K + T * N;
    if (need > this.data.length) this.grow(need);
    this.data.set(x.subarray(0, T * K), 0);
    this.data.set(W.subarray(0, N * K), T * K);
    const c = this.ctrl;
    c[1] = T;
    c[2] = K;
    c[3] = N;
    Atomics.store(c, 0, REQUEST);
    Atomics.notify(c, 0);
    while (Atomics.load(c, 0) === REQUEST) Atomics.wait(c, 0, REQUEST, 60_000);
    const state = Atomics.load(c, 0);
    Atomics.store(c, 0, IDLE);
    if (state !== DONE) throw new MlaError(`webgpu training: the product failed${this.lastError ? `: ${this.lastError}` : ""}`);
    return this.data.slice(T * K + N * K, need);
  }

  /** A larger shared buffer, handed to the worker before the next request (it acknowledges in ctrl[4]). */
  private grow(floats: number): void {
    const sab = new SharedArrayBuffer(Math.max(floats, this.data.length * 2) * 4);
    Atomics.store(this.ctrl, 4, 0);
    this.worker.postMessage({ data: sab });
    while (Atomics.load(this.ctrl, 4) === 0) Atomics.wait(this.ctrl, 4, 0, 60_000);
    this.data = new Float32Array(sab);
  }

  forward(out: Vec, x: Vec, T: number, K: number, W: Vec, N: number, xs = K, os = N): void {
    const xc = new Float32Array(T * K);
    for (let t = 0; t < T; t++) xc.set(x.subarray(t * xs, t * xs + K), t * K);
    const o = this.linear(xc, T, K, Float32Array.from(W.subarray(0, N * K)), N);
    for (let t = 0; t < T; t++) out.set(o.subarray(t * N, (t + 1) * N), t * os);
  }

  backwardInput(dx: Vec, dy: Vec, T: number, N: number, W: Vec, K: number, accumulate = false): void {
    const o = this.linear(Float32Array.from(dy.subarray(0, T * N)), T, N, transpose(W, N, K), K);
    if (accumulate) for (let i = 0; i < T * K; i++) dx[i] += o[i];
    else dx.set(o);
  }

  backwardWeight(dW: Vec, dy: Vec, x: Vec, T: number, N: number, K: number): void {
    const o = this.linear(transpose(dy, T, N), N, T, transpose(x, T, K), K);
    for (let i = 0; i < N * K; i++) dW[i] += o[i];
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/** [rows, cols] -> [cols, rows] */
function transpose(a: Vec, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}
