import { MlaError } from "../errors.js";
import { cpuOps, cpuOpsQuant, type Ops } from "../backends/ops.js";
import type { BlockDType } from "../tensor/dtype.js";
import { CACHE_DTYPES, type CacheDType } from "../backends/cpu/cache-dtype.js";
import { WasmOps } from "../backends/wasm/ops.js";
import { WasmBackend } from "../backends/wasm/index.js";
import type { BlockQuantizer } from "../model/gpu/load.js";
import type { MlaMode } from "../attention/mla.js";
import type { Runtime } from "../model/inference.js";
import { cpuRuntime } from "../model/load.js";

export interface BackendChoice {
  /** `cpu`: WebAssembly SIMD kernels on worker threads; `cpu-scalar`: the plain-JS reference kernels; `webgpu`. */
  readonly backend?: string;
  readonly threads?: number;
  readonly quantize?: string;
  /** --attention: every backend runs both MLA forms (checkAttentionForm refuses a form for GQA models). */
  readonly attention?: MlaMode;
  /** --cache-type: f32, f16 or bf16 (the MLA latent cache's storage; on webgpu also a GQA model's K/V caches). */
  readonly cacheType?: string;
  /** --gpu-memory: GiB of GPU memory the model may take (webgpu; WebGPU does not report the device's). */
  readonly gpuMemory?: string;
}

export const BACKENDS = ["cpu", "cpu-scalar", "webgpu"] as const;

/** --quantize's values: GGML's block types by llama.cpp's names (q8 is q8_0's older name here). */
export const QUANTIZE_TYPES = ["q8_0", "q8", "q4_0", "q4_k", "q5_k", "q6_k"] as const;

/** A --quantize value as the dtype it makes (undefined: keep the weights as stored). */
export function parseQuantize(q: string | undefined): "q8" | BlockDType | undefined {
  if (q === undefined) return undefined;
  const t = q.toLowerCase();
  if (t === "q8" || t === "q8_0") return "q8";
  if (t === "q4_0" || t === "q4_k" || t === "q5_k" || t === "q6_k") return t.toUpperCase() as BlockDType;
  throw new MlaError(`--quantize must be one of ${QUANTIZE_TYPES.join(", ")}, got "${q}"`);
}

/** A --cache-type value as the cache dtype (undefined: F32). */
export function parseCacheType(t: string | undefined): CacheDType | undefined {
  if (t === undefined) return undefined;
  const d = CACHE_DTYPES.find((x) => x === t.toUpperCase());
  if (!d) throw new MlaError(`--cache-type must be one of ${CACHE_DTYPES.map((x) => x.toLowerCase()).join(", ")}, got "${t}"`);
  return d;
}

/** A --gpu-memory value (GiB, decimals allowed) in bytes. */
export function parseGpuMemory(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const gib = Number(v);
  if (v.trim() === "" || !Number.isFinite(gib) || gib <= 0) throw new MlaError(`--gpu-memory needs a size in GiB greater than 0, got "${v}"`);
  return gib * 2 ** 30;
}

/**
 * The block quantizers on the WebAssembly worker pool (byte for byte the JS reference, ~100x faster for the
 * K-quants), for --quantize on the webgpu backend; null where this engine lacks WebAssembly SIMD + threads (the JS
 * reference then quantizes).
 */
async function blockQuantizer(threads?: number): Promise<{ quantize: BlockQuantizer; close: () => Promise<void> } | null> {
  try {
    const b = await WasmBackend.create({ threads });
    return { quantize: (x, rows, cols, t) => b.quantizeBlocksToHost(x, rows, cols, t), close: () => b.close() };
  } catch (e) {
    if (!(e instanceof MlaError)) throw e;
    process.stderr.write(`warning: ${e.message}; quantizing with the JavaScript reference (slower)\n`);
    return null;
  }
}

/** The CPU kernels for a run, and how to release them (stops worker threads). */
export async function openBackend(c: BackendChoice): Promise<{ ops: Ops; close: () => Promise<void> }> {
  const backend = c.backend ?? "cpu";
  const quantize = parseQuantize(c.quantize);
  const scalar = { ops: quantize ? cpuOpsQuant(quantize) : cpuOps, close: async () => {} };
  if (backend === "cpu-scalar") return scalar;
  if (backend !== "cpu") throw new MlaError(`--backend must be one of ${BACKENDS.join(", ")}, got "${backend}"`);
  let ops: WasmOps;
  try {
    ops = await WasmOps.create({ threads: c.threads, quantize });
  } catch (e) {
    // No SIMD/threads in this engine, or kernels not built: the scalar kernels give the same answers, slowly.
    if (!(e instanceof MlaError)) throw e;
    process.stderr.write(`warning: ${e.message}; falling back to --backend cpu-scalar\n`);
    return scalar;
  }
  return { ops, close: () => ops.close() };
}

/** The backend the flags choose, as a Runtime that loads any supported model onto it; flag errors come first. */
export async function openRuntime(c: BackendChoice): Promise<Runtime> {
  const cacheType = parseCacheType(c.cacheType);
  if (c.backend === "webgpu") {
    // float matrices are quantized on the host as each tensor is read (the pool's quantizers), then uploaded
    const quantize = parseQuantize(c.quantize), gpuMemoryBytes = parseGpuMemory(c.gpuMemory);
    const { WebGpuBackend } = await import("../backends/webgpu/backend.js");
    const { webgpuRuntime } = await import("../model/gpu/model.js");
    const gpu = await WebGpuBackend.create();
    const pool = quantize && quantize !== "q8" ? await blockQuantizer(c.threads) : null;
    const rt = webgpuRuntime(gpu, { cacheDtype: cacheType, quantize, quantizeBlocks: pool?.quantize, gpuMemoryBytes });
    return pool ? { ...rt, close: async () => (await pool.close(), await rt.close()) } : rt;
  }
  if (c.gpuMemory !== undefined) throw new MlaError("--gpu-memory applies to the webgpu backend (the cpu backends size their memory themselves)");
  const { ops, close } = await openBackend(c);
  return cpuRuntime(ops, ops instanceof WasmOps ? "cpu" : "cpu-scalar", close, cacheType);
}
