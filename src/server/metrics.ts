import type { ServerResponse } from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { SchedulerStats } from "../generate/batch.js";

/** What the server knows of one request once it is over: one log line and one set of metric observations. */
export interface RequestRecord {
  readonly requestId: string;
  readonly method: string;
  /** The request target as sent (printable, bounded). */
  readonly path: string;
  /** The route it matched ("/v1/models/{id}", "other"): a bounded label set, whatever clients send. */
  readonly endpoint: string;
  readonly status: number;
  /** The model that generated (generation requests only). */
  readonly model: string | null;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
  /** Prompt tokens found in the prefix cache, when the engine reports them. */
  readonly cachedTokens: number | null;
  /** From arrival to the first generated text. */
  readonly ttftMs: number | null;
  /** Mean time per new token after the first (requests with two or more new tokens). */
  readonly tpotMs: number | null;
  readonly totalMs: number;
  readonly finishReason: string | null;
  readonly client: string | null;
  /** The OpenAI error code (or type) of a failed request, "client_closed" for one whose client left. */
  readonly error: string | null;
  /** How it ended when not simply answered, in words (the text log's note). */
  readonly note: string | null;
}

export type LogFormat = "text" | "json";

/** One JSON line per request (JSON Lines: no newline inside), keys in snake_case as vLLM's and OpenAI's payloads. */
export function jsonLogLine(r: RequestRecord, time = new Date()): string {
  const ms = (v: number | null) => (v === null ? null : Math.round(v * 10) / 10);
  return JSON.stringify({
    time: time.toISOString(), level: r.status >= 500 ? "error" : r.status >= 400 ? "warn" : "info",
    request_id: r.requestId, method: r.method, path: r.path, status: r.status, model: r.model,
    prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, cached_tokens: r.cachedTokens,
    ttft_ms: ms(r.ttftMs), tpot_ms: ms(r.tpotMs), total_ms: ms(r.totalMs), finish_reason: r.finishReason,
    client: r.client, error: r.error, note: r.note,
  });
}

/** A failure inside the server (a stack trace) as one JSON line, so a JSON-lines log stays parseable. */
export function jsonErrorLine(requestId: string | null, e: unknown, time = new Date()): string {
  const err = e instanceof Error ? e : new Error(String(e));
  return JSON.stringify({ time: time.toISOString(), level: "error", request_id: requestId, message: `internal error: ${err.message}`, stack: err.stack ?? null });
}

/** A number the scheduler's stats may hold (0 when this scheduler does not report it). */
function num(s: Record<string, unknown>, key: string): number {
  const v = s[key];
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}

const ROUTES = new Set(["/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"]);

/** The route label of a request path: known routes as they are, model ids folded, everything else "other". */
export function endpointOf(path: string | null): string {
  if (path === null) return "other";
  if (ROUTES.has(path)) return path;
  return path.startsWith("/v1/models/") ? "/v1/models/{id}" : "other";
}

/** What the metrics read at scrape time. */
export interface MetricsSource {
  readonly model: string;
  readonly backend: string;
  /** The scheduler's counts now (prefix-cache fields are read when the scheduler reports them). */
  stats(): SchedulerStats;
  /** HTTP requests being handled now (the scrape included). */
  inFlight(): number;
}

// Buckets in seconds. A decode step of a small model on the CPU or a GPU takes 1-100 ms, so per-token latency is
// resolved from 1 ms; time to first token adds prefill and queueing; a whole request runs up to minutes.
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const TPOT_BUCKETS = [0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5];
const E2E_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600];

/**
 * The server's Prometheus metrics, in a Registry of its own (not prom-client's global one), so several servers in
 * one process (tests, a library user) each count their own requests. Names follow Prometheus' conventions
 * (base units: seconds and bytes; counters end in _total) under the prefix `mla_`; gauges of the scheduler are read
 * when scraped, never updated on the hot path.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"endpoint" | "status">;
  private readonly finished: Counter<"finish_reason">;
  private readonly promptTokens: Counter;
  private readonly completionTokens: Counter;
  private readonly cachedTokens: Counter;
  private readonly ttft: Histogram;
  private readonly tpot: Histogram;
  private readonly e2e: Histogram<"endpoint">;
  private promptSum = 0;
  private cachedSum = 0;

  constructor(source: MetricsSource, opts: { readonly processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    new Gauge({ name: "mla_info", help: "The model served and the backend it runs on (always 1).", labelNames: ["model", "backend"], registers })
      .set({ model: source.model, backend: source.backend }, 1);
    this.requests = new Counter({ name: "mla_requests_total", help: "HTTP requests answered, by route and status (499: the client left before any reply).", labelNames: ["endpoint", "status"], registers });
    this.finished = new Counter({ name: "mla_request_finish_total", help: "Generations ended, by finish_reason (cancelled: the client left, a timeout or the shutdown).", labelNames: ["finish_reason"], registers });
    this.promptTokens = new Counter({ name: "mla_prompt_tokens_total", help: "Prompt tokens of generation requests.", registers });
    this.completionTokens = new Counter({ name: "mla_completion_tokens_total", help: "Tokens generated.", registers });
    this.cachedTokens = new Counter({ name: "mla_prompt_tokens_cached_total", help: "Prompt tokens read from the prefix cache instead of computed.", registers });
    this.ttft = new Histogram({ name: "mla_time_to_first_token_seconds", help: "From a generation request's arrival to its first text (queueing and prefill included).", buckets: TTFT_BUCKETS, registers });
    this.tpot = new Histogram({ name: "mla_time_per_output_token_seconds", help: "A request's mean time per generated token after the first (requests with at least two).", buckets: TPOT_BUCKETS, registers });
    this.e2e = new Histogram({ name: "mla_request_duration_seconds", help: "From a request's arrival until its response is over, by route.", labelNames: ["endpoint"], buckets: E2E_BUCKETS, registers });
    // one snapshot per scrape, so its gauges agree (used <= reserved); collect functions all run within one turn
    let snapshot: (SchedulerStats & Record<string, unknown>) | null = null;
    const stats = (): SchedulerStats & Record<string, unknown> => {
      if (snapshot === null) {
        snapshot = source.stats() as SchedulerStats & Record<string, unknown>;
        setImmediate(() => (snapshot = null));
      }
      return snapshot;
    };
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({ name, help, registers, collect() { this.set(read()); } });
    gauge("mla_requests_running", "HTTP requests being handled now (this scrape included).", () => source.inFlight());
    gauge("mla_sequences_active", "Sequences in the running batch.", () => stats().active);
    gauge("mla_sequences_waiting", "Sequences queued for room in the batch or the cache budget.", () => stats().waiting);
    gauge("mla_cache_used_bytes", "Cache bytes the running sequences hold now.", () => stats().cacheBytes);
    gauge("mla_cache_reserved_bytes", "Cache bytes reserved for the running sequences (prompt + max_tokens each): what admission checks.", () => stats().reservedBytes);
    gauge("mla_cache_budget_bytes", "The cache budget (--max-cache-mb).", () => stats().maxCacheBytes);
    gauge("mla_prefix_cache_hit_ratio", "Prompt tokens read from the prefix cache / prompt tokens, since the server started.", () => this.hitRatio(stats()));
    gauge("mla_prefix_cache_bytes", "Cache bytes idle cached prefixes hold (they count against the budget; evicted when room is needed).", () => num(stats(), "prefixCacheBytes"));
    gauge("mla_prefix_cache_tokens", "Tokens whose rows idle cached prefixes hold.", () => num(stats(), "prefixCacheTokens"));
    gauge("mla_prefix_cache_entries", "Idle cached prefixes.", () => num(stats(), "prefixCacheEntries"));
    // the scheduler's own running counts, exposed as counters (set at scrape time)
    const counter = (name: string, help: string, read: () => number) =>
      new Counter({ name, help, registers, collect() { this.reset(); this.inc(read()); } });
    counter("mla_prefix_cache_hits_total", "Prompts that found at least one cached token.", () => num(stats(), "prefixCacheHits"));
    counter("mla_prefix_cache_evictions_total", "Cached prefixes evicted to make room.", () => num(stats(), "prefixCacheEvictions"));
    counter("mla_scheduler_steps_total", "Forward passes the scheduler ran (each one over the whole batch).", () => num(stats(), "steps"));
  }

  /** Count one finished request. */
  observe(r: RequestRecord): void {
    this.requests.inc({ endpoint: r.endpoint, status: String(r.status) });
    this.e2e.observe({ endpoint: r.endpoint }, r.totalMs / 1000);
    if (r.finishReason !== null) this.finished.inc({ finish_reason: r.finishReason });
    if (r.promptTokens !== null) {
      this.promptTokens.inc(r.promptTokens);
      this.promptSum += r.promptTokens;
    }
    if (r.cachedTokens !== null) {
      this.cachedTokens.inc(r.cachedTokens);
      this.cachedSum += r.cachedTokens;
    }
    if (r.completionTokens !== null) this.completionTokens.inc(r.completionTokens);
    if (r.ttftMs !== null) this.ttft.observe(r.ttftMs / 1000);
    if (r.tpotMs !== null) this.tpot.observe(r.tpotMs / 1000);
  }

  /** The scheduler's own counts when it keeps them (every sequence it started), else the finished requests'. */
  private hitRatio(s: Record<string, unknown>): number {
    const cached = s.cachedPromptTokens, prompt = s.promptTokens;
    if (typeof cached === "number" && typeof prompt === "number") return prompt > 0 ? cached / prompt : 0;
    return this.promptSum > 0 ? this.cachedSum / this.promptSum : 0;
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Answer a scrape. */
  async serve(res: ServerResponse): Promise<void> {
    const body = await this.text();
    res.writeHead(200, { "Content-Type": this.registry.contentType, "Content-Length": Buffer.byteLength(body) });
    res.end(body);
  }
}
