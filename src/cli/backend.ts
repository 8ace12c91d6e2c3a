import { MlaError } from "../errors.js";
import { cpuOps, cpuOpsQ8, type Ops } from "../backends/ops.js";
import { WasmOps } from "../backends/wasm/ops.js";

export interface BackendChoice {
  /** `cpu`: WebAssembly SIMD kernels on worker threads; `cpu-scalar`: the plain-JS reference kernels. */
  readonly backend?: string;
  readonly threads?: number;
  readonly quantize?: string;
}

export const BACKENDS = ["cpu", "cpu-scalar", "webgpu"] as const;

/** The kernels for a CLI run, and how to release them (stops worker threads). */
export async function openBackend(c: BackendChoice): Promise<{ ops: Ops; close: () => Promise<void> }> {
  const backend = c.backend ?? "cpu";
  if (c.quantize !== undefined && c.quantize !== "q8") throw new MlaError(`--quantize must be q8, got "${c.quantize}"`);
  const scalar = { ops: c.quantize ? cpuOpsQ8 : cpuOps, close: async () => {} };
  if (backend === "cpu-scalar") return scalar;
  if (backend !== "cpu") throw new MlaError(`--backend must be one of ${BACKENDS.join(", ")}, got "${backend}"`);
  let ops: WasmOps;
  try {
    ops = await WasmOps.create({ threads: c.threads, quantize: c.quantize as "q8" | undefined });
  } catch (e) {
    // No SIMD/threads in this engine, or kernels not built: the scalar kernels give the same answers, slowly.
    if (!(e instanceof MlaError)) throw e;
    process.stderr.write(`warning: ${e.message}; falling back to --backend cpu-scalar\n`);
    return scalar;
  }
  return { ops, close: () => ops.close() };
}
