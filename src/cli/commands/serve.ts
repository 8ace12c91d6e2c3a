import type { TextEngine } from "../../generate/text.js";
import { ApiServer } from "../../server/server.js";
import type { MlaMode } from "../../attention/mla.js";
import { openTextEngine, textBackendName, type TextBackend } from "../text-backend.js";
import { loadingBar } from "../progress.js";
import { fmtBytes } from "../format.js";

export interface ServeOptions {
  readonly model: string;
  readonly host: string;
  readonly port: number;
  readonly name?: string;
  readonly maxCacheMb: number;
  readonly maxBatch: number;
  readonly maxQueue: number;
  readonly maxBodyKb: number;
  readonly attention: MlaMode;
  readonly quiet?: boolean;
}

/** Serve until SIGINT/SIGTERM; resolves after a clean shutdown. */
export async function serveCommand(opts: ServeOptions, backend: TextBackend): Promise<void> {
  const bar = loadingBar("loading weights");
  let engine: TextEngine;
  try {
    engine = await openTextEngine(opts.model, backend, {
      name: opts.name, onProgress: bar.onProgress, mode: opts.attention,
      maxCacheBytes: opts.maxCacheMb * 2 ** 20, maxBatch: opts.maxBatch, maxQueue: opts.maxQueue,
    });
  } finally {
    bar.stop();
  }
  const log = opts.quiet ? undefined : (line: string) => process.stderr.write(`${line}\n`);
  const server = new ApiServer(engine, { maxBodyBytes: opts.maxBodyKb * 1024, log });
  const addr = await server.listen(opts.port, opts.host);
  const s = engine.scheduler;
  const c = engine.model.config;
  process.stderr.write(
    `serving ${engine.name} (${c.modelType}, ${c.attention}, ${textBackendName(backend)}) on http://${addr.address}:${addr.port}/v1\n` +
      `cache: ${s.cacheBytesPerToken} bytes/token, budget ${fmtBytes(s.maxCacheBytes)} (${Math.floor(s.maxCacheBytes / s.cacheBytesPerToken)} tokens); ` +
      `batch <= ${opts.maxBatch}, queue <= ${opts.maxQueue}; context ${engine.contextLength}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      process.stderr.write("shutting down\n");
      void server.close().then(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
