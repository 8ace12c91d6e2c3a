import { MlaError } from "../../errors.js";
import { EXPORT_TYPES, exportGguf, type ExportSummary, type ExportType } from "../../convert/export-gguf.js";
import { fmtBytes } from "../format.js";
import { loadingBar } from "../progress.js";

export interface ExportFlags {
  readonly format?: string;
  readonly type?: string;
  readonly fallback?: string;
  readonly json?: boolean;
}

/** mla export --format gguf [--type T] MODEL OUT.gguf: a checkpoint folder as a GGUF file llama.cpp runs. */
export function exportCommand(model: string, out: string, o: ExportFlags, log: (line: string) => void = console.log): ExportSummary {
  const format = o.format ?? "gguf";
  if (format !== "gguf") throw new MlaError(`--format must be gguf, got "${format}"`);
  const type = (o.type ?? "f16").toLowerCase();
  if (!(EXPORT_TYPES as readonly string[]).includes(type)) throw new MlaError(`--type must be one of ${EXPORT_TYPES.join(", ")}, got "${o.type}"`);
  const fallback = o.fallback ?? "llama.cpp";
  if (fallback !== "llama.cpp" && fallback !== "q8_0") throw new MlaError(`--fallback must be llama.cpp or q8_0, got "${fallback}"`);
  if (/\.gguf$/i.test(model)) throw new MlaError(`${model} is a GGUF file already; export takes a checkpoint folder (config.json + *.safetensors)`);
  const bar = loadingBar("exporting");
  let summary: ExportSummary;
  try {
    summary = exportGguf(model, out, { type: type as ExportType, fallback, onProgress: bar.onProgress });
  } finally {
    bar.stop();
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
