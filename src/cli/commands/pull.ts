import { MlaError } from "../../errors.js";
import { isHubModel } from "../../io/hub.js";
import { pullModel, type PullPlan, type PullResult } from "../../io/hub-pull.js";
import { fmtBytes, table } from "../format.js";
import { loadingBar } from "../progress.js";

export interface PullOptions {
  /** ORG/NAME or ORG/NAME:QUANT (an hf: prefix allowed). */
  readonly ref: string;
  readonly revision?: string;
  readonly json?: boolean;
}

/** The plan as a few lines: what, where from, which files and how much is left to fetch. */
export function planText(p: PullPlan): string {
  const what = p.kind === "gguf" ? `GGUF ${p.quant ?? ""}`.trim() : "safetensors checkpoint";
  const head = `${p.repo} at ${p.revision}${p.revision === p.commit ? "" : ` (commit ${p.commit.slice(0, 12)})`}: ${what}, ` +
    `${p.files.length} file${p.files.length === 1 ? "" : "s"}, ${fmtBytes(p.totalBytes)}` +
    (p.fetchBytes < p.totalBytes ? `, ${fmtBytes(p.fetchBytes)} to fetch` : "");
  const rows = table(p.files.map((f) => [`  ${f.path}`, fmtBytes(f.size), f.cached ? "cached" : ""]));
  return `${head}\n${rows.split("\n").map((l) => l.trimEnd()).join("\n")}`;
}

/** Fetch with the plan and the warnings on stderr and a progress bar on a terminal (stdout stays the command's). */
async function fetchModel(ref: string, revision: string | undefined, showPlan: (p: PullPlan) => boolean, cacheFallback: boolean): Promise<PullResult> {
  const bar = loadingBar("downloading");
  try {
    return await pullModel(ref, {
      revision, cacheFallback,
      onPlan: (p) => {
        if (showPlan(p)) process.stderr.write(planText(p) + "\n");
      },
      onProgress: bar.onProgress,
      // on a terminal the line first clears the progress bar's line
      log: (line) => process.stderr.write(`${process.stderr.isTTY ? "\r\x1b[2K" : ""}warning: ${line}\n`),
    });
  } finally {
    bar.stop();
  }
}

/** `mla pull ORG/NAME[:QUANT]`: the model into the Hugging Face cache; prints the path the loaders open. */
export async function pullCommand(o: PullOptions): Promise<void> {
  const t0 = performance.now();
  const r = await fetchModel(o.ref, o.revision, () => !o.json, false);
  const seconds = (performance.now() - t0) / 1000;
  if (o.json) {
    const { repo, revision, commit, kind, quant, snapshot, modelPath, totalBytes, fetchBytes } = r;
    process.stdout.write(JSON.stringify({ repo, revision, commit, kind, quant, snapshot, path: modelPath, totalBytes, fetchedBytes: fetchBytes, files: r.files.map(({ path, size, cached }) => ({ path, size, cached })), seconds }) + "\n");
    return;
  }
  if (r.fetchBytes > 0) process.stderr.write(`fetched ${fmtBytes(r.fetchBytes)} in ${seconds.toFixed(1)} s (${fmtBytes(r.fetchBytes / Math.max(seconds, 1e-3))}/s)\n`);
  else process.stderr.write("all files were in the cache\n");
  process.stdout.write(r.modelPath + "\n");
}

/**
 * `--model hf:ORG/NAME[:QUANT]`: the local path of the model, fetched first if the cache lacks files (the plan
 * is shown only then). If the hub cannot be reached, the cached copy of the revision is used, with a warning.
 */
export async function resolveHubModel(model: string, revision: string | undefined): Promise<string> {
  if (!isHubModel(model)) {
    if (revision !== undefined) throw new MlaError(`--revision applies to hub models (--model hf:ORG/NAME), not to the local path ${model}`);
    return model;
  }
  const r = await fetchModel(model, revision, (p) => p.fetchBytes > 0, true);
  return r.modelPath;
}
