import { MlaError } from "../../errors.js";
import { EXPORT_TYPES, exportGguf, type ExportOptions, type ExportSummary, type ExportType } from "../../convert/export-gguf.js";
import { WasmBackend } from "../../backends/wasm/index.js";
import { fmtBytes } from "../format.js";
import { loadingBar } from "../progress.js";

export interface ExportFlags {
  readonly format?: string;
  readonly type?: string;
  readonly fallback?: string;
  readonly json?: boolean;
}

/** mla export --format gguf [--type T] MODEL OUT.gguf: a checkpoint folder as a GGUF file llama.cpp runs. */
export async function exportCommand(model: string, out: string, o: ExportFlags, log: (line: string) => void = console.log): Promise<ExportSummary> {
  const format = o.format ?? "gguf";
  if (format !== "gguf") throw new MlaError(`--format must be gguf, got "${format}"`);
  const type = (o.type ?? "f16").toLowerCase();
  if (!(EXPORT_TYPES as readonly string[]).includes(type)) throw new MlaError(`--type must be one of ${EXPORT_TYPES.join(", ")}, got "${o.type}"`);
  const fallback = o.fallback ?? "llama.cpp";
  if (fallback !== "llama.cpp" && fallback !== "q8_0") throw new MlaError(`--fallback must be llama.cpp or q8_0, got "${fallback}"`);
  if (/\.gguf$/i.test(model)) throw new MlaError(`${model} is a GGUF file already; export takes a checkpoint folder (config.json + *.safetensors)`);
  const pool = /^q[0-9]_(k|0)$/.test(type) && type !== "q8_0" ? await blockQuantizer() : null;
  const bar = loadingBar("exporting");
  let summary: ExportSummary;
  try {
    summary = exportGguf(model, out, { type: type as ExportType, fallback, onProgress: bar.onProgress, quantizeBlocks: pool?.quantize });
  } finally {
    bar.stop();
    await pool?.close();
  }
  if (o.json) {
    log(JSON.stringify(summary));
    return summary;
  }
  const types = Object.entries(summary.types).map(([t, n]) => `${n} ${t}`).join(", ");
  for (const w of summary.warnings) log(`warning: ${w}`);
  log(`wrote ${summary.path}: ${summary.arch}, ${summary.tensors} tensors (${types}), ${fmtBytes(summary.bytes)} in ${summary.seconds.toFixed(1)} s`);
  return summary;
}

/**
 * The block quantizers on the WebAssembly worker pool (the same bytes as the JS reference, ~100x faster for the
 * K-quants); null, with a warning, where this engine lacks WebAssembly SIMD + threads.
 */
async function blockQuantizer(): Promise<{ quantize: NonNullable<ExportOptions["quantizeBlocks"]>; close: () => Promise<void> } | null> {
  try {
    const b = await WasmBackend.create();
    return { quantize: (x, rows, cols, t) => b.quantizeBlocksToHost(x, rows, cols, t), close: () => b.close() };
  } catch (e) {
    if (!(e instanceof MlaError)) throw e;
    process.stderr.write(`warning: ${e.message}; quantizing with the JavaScript reference (slower)\n`);
    return null;
  }
}
