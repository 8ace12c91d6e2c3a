import { TextEngine } from "../../generate/text.js";
import type { Runtime } from "../../model/inference.js";
import { ApiServer } from "../../server/server.js";
import { isLoopbackAddress } from "../../server/access.js";
import type { LogFormat } from "../../server/metrics.js";
import type { MlaMode } from "../../attention/mla.js";
import { loadingBar } from "../progress.js";
import { fmtBytes } from "../format.js";

export interface ServeOptions {
  readonly model: string;
  readonly host: string;
  readonly port: number;
  readonly name?: string;
  readonly maxCacheMb: number;
  /** Keep finished requests' cache rows for requests that share their prefix (--no-prefix-cache: off). */
  readonly prefixCache?: boolean;
  readonly maxBatch: number;
  readonly maxQueue: number;
  readonly maxBodyKb: number;
  readonly attention: MlaMode;
  readonly quiet?: boolean;
  /** Per-request log lines: the text line (default) or one JSON object per line. */
  readonly logFormat?: LogFormat;
  readonly apiKey?: string;
  readonly cors?: readonly string[];
  /** Seconds running requests may take to finish once SIGTERM/SIGINT arrives. */
  readonly shutdownTimeoutS: number;
  readonly headerTimeoutS: number;
  readonly bodyTimeoutS: number;
  /** 0: no limit. */
  readonly requestTimeoutS: number;
  readonly maxConnections: number;
  /** Tool-call format (auto, none, or a format name) and `<think>` split (auto, none, or a parser name). */
  readonly toolParser?: string;
  readonly reasoningParser?: string;
}

/** Serve until SIGINT/SIGTERM; resolves after a clean shutdown. */
export async function serveCommand(opts: ServeOptions, runtime: Runtime): Promise<void> {
  const bar = loadingBar("loading weights");
  let engine: TextEngine;
  try {
    engine = TextEngine.open(opts.model, {
      runtime,
      name: opts.name, onProgress: bar.onProgress, mode: opts.attention,
      maxCacheBytes: opts.maxCacheMb * 2 ** 20, maxBatch: opts.maxBatch, maxQueue: opts.maxQueue, prefixCache: opts.prefixCache ?? true,
    });
  } finally {
    bar.stop();
  }
  const log = opts.quiet ? undefined : (line: string) => process.stderr.write(`${line}\n`);
  const server = new ApiServer(engine, {
    maxBodyBytes: opts.maxBodyKb * 1024, log, logFormat: opts.logFormat, apiKey: opts.apiKey, cors: opts.cors, maxConnections: opts.maxConnections,
    headersTimeoutMs: opts.headerTimeoutS * 1000, bodyTimeoutMs: opts.bodyTimeoutS * 1000, requestTimeoutMs: opts.requestTimeoutS * 1000,
    toolParser: opts.toolParser, reasoningParser: opts.reasoningParser,
  });
  // The handlers go in before the address is printed: until process.on("SIGTERM") runs the default action
  // kills the process, and a client that reads the address may signal at once (a race seen in CI).
  // The first signal drains (running requests get --shutdown-timeout to finish); a second one stops at once.
  let signals = 0;
  let stopped!: () => void;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const stop = () => {
    if (++signals === 1) {
      const n = server.inFlight;
      process.stderr.write(`shutting down: ${n} request${n === 1 ? "" : "s"} in progress, up to ${opts.shutdownTimeoutS} s to finish (signal again to stop now)\n`);
      void server.shutdown(opts.shutdownTimeoutS * 1000).then(() => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        stopped();
      });
    } else {
      process.stderr.write("stopping now\n");
      void server.shutdown(0);
    }
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  const addr = await server.listen(opts.port, opts.host);
  if (signals > 0) {
    server.server.close(); // signalled while binding: shutdown() found nothing listening yet
    return done;
  }
  if (!isLoopbackAddress(addr.address) && !server.requiresKey) {
    process.stderr.write(`warning: listening on ${addr.address}, beyond this machine, with no API key: anyone who can reach it can use the model (set --api-key or MLA_API_KEY)\n`);
  }
  const s = engine.scheduler;
  const c = engine.model.config;
  process.stderr.write(
    `serving ${engine.name} (${c.modelType}, ${c.attention}, ${engine.model.backendName}) on http://${addr.address}:${addr.port}/v1\n` +
      `cache: ${s.cacheBytesPerToken} bytes/token, budget ${fmtBytes(s.maxCacheBytes)} (${Math.floor(s.maxCacheBytes / s.cacheBytesPerToken)} tokens), prefix cache ${s.prefixCaching ? "on" : "off"}; ` +
      `batch <= ${opts.maxBatch}, queue <= ${opts.maxQueue}; context ${engine.contextLength}\n` +
      `${server.chatFormat.describe()}\n`,
  );
  await done;
}
