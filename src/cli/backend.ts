import { MlaError } from "../errors.js";
import { cpuOps, cpuOpsQuant, type Ops } from "../backends/ops.js";
import type { BlockDType } from "../tensor/dtype.js";
import { CACHE_DTYPES, type CacheDType } from "../backends/cpu/cache-dtype.js";
import { WasmOps } from "../backends/wasm/ops.js";
import type { MlaMode } from "../attention/mla.js";
import type { Runtime } from "../model/inference.js";
import { cpuRuntime } from "../model/load.js";

export interface BackendChoice {
  /** `cpu`: WebAssembly SIMD kernels on worker threads; `cpu-scalar`: the plain-JS reference kernels; `webgpu`. */
  readonly backend?: string;
  readonly threads?: number;
  readonly quantize?: string;
  /** --attention, checked against the backend before it is opened. */
  readonly attention?: MlaMode;
  /** --cache-type: f32, f16 or bf16 (the MLA latent cache's storage, cpu backends). */
  readonly cacheType?: string;
}

export const BACKENDS = ["cpu", "cpu-scalar", "webgpu"] as const;

/** The GPU decoder always runs MLA absorbed: any other --attention form is an error. */
export function checkGpuMode(mode: MlaMode): void {
  if (mode !== "auto") throw new MlaError(`--attention ${mode}: the webgpu backend always runs MLA absorbed (leave --attention at auto)`);
}

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
    checkGpuMode(c.attention ?? "auto");
    if (cacheType !== undefined) throw new MlaError("--cache-type applies to the cpu backends (the webgpu backend keeps its caches in f32)");
    if (c.quantize !== undefined) throw new MlaError("--quantize applies to the cpu backends (the webgpu backend keeps weights as stored: F32, BF16 or F16)");
    // GGUF files of block types are refused by the GPU loader itself, naming the type
    const { WebGpuBackend } = await import("../backends/webgpu/backend.js");
    const { webgpuRuntime } = await import("../model/gpu/model.js");
    return webgpuRuntime(await WebGpuBackend.create());
  }
  const { ops, close } = await openBackend(c);
  return cpuRuntime(ops, ops instanceof WasmOps ? "cpu" : "cpu-scalar", close, cacheType);
}
