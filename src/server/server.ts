import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { MlaError } from "../errors.js";
import { BusyError } from "../generate/batch.js";
import { LogprobsWriter, TokenBytes, type TokenLogprob } from "../generate/logprobs.js";
import type { TextEngine, TextJob, TextRequest, TextResult } from "../generate/text.js";
import { SchemaError, jsonSchemaGrammar, type JsonGrammar } from "../generate/grammar/schema.js";
import { AccessPolicy, isLoopbackAddress } from "./access.js";
import { ClientGone, EventStream, decodeSegment, printable, readBody, requestId, sendJson, targetPath } from "./http.js";
import { ServerMetrics, endpointOf, jsonErrorLine, jsonLogLine, type LogFormat, type RequestRecord } from "./metrics.js";
import { ApiError, parseChat, parseCompletion, type ChatRequest, type CompletionRequest, type SamplingRequest } from "./openai.js";
import { ChatFormat, ToolRequestError, foldDeltas, type ChatDelta, type ChatOutput, type ChatPlan } from "./tools/index.js";

export interface ServerOptions {
  /** Largest request body accepted (default 1 MiB); larger ones get 413. */
  readonly maxBodyBytes?: number;
  /** One line per request, written once it is over: method, path, status, duration, tokens, how it ended. */
  readonly log?: (line: string) => void;
  /** "text" (default): the line above; "json": one JSON object per line with the request id, tokens and timings. */
  readonly logFormat?: LogFormat;
  /** Bearer key every route but /health requires (none by default). */
  readonly apiKey?: string;
  /** Origins web pages may call from (CORS; "*" for any). None by default: cross-origin requests get 403. */
  readonly cors?: readonly string[];
  /** Time for a client to send the request headers (default 10 s). */
  readonly headersTimeoutMs?: number;
  /** Time for a client to send the request body once the headers are in (default 30 s); 408 past it. */
  readonly bodyTimeoutMs?: number;
  /** Time a generation may take, queueing included (default 0: no limit); 504 (or an error event) past it. */
  readonly requestTimeoutMs?: number;
  /** Open connections at most (default 512); more are closed as they arrive. */
  readonly maxConnections?: number;
  /** Tool-call format: auto (from the chat template, else the tokenizer; the default), none, or a format name (src/server/tools/formats.ts). */
  readonly toolParser?: string;
  /** `<think>` split into reasoning_content: auto (when the chat template has `</think>`; the default), none, or a parser name. */
  readonly reasoningParser?: string;
}

/** Legacy completions default to 16 new tokens, as OpenAI's; chat defaults to the rest of the context. */
const COMPLETION_DEFAULT_MAX_TOKENS = 16;

type Kind = "completion" | "chat";

/** Why the server, not the client, ended a generation early. */
type ServerStop = "shutdown" | "timeout";

/** A request from its arrival until its response is over (or its connection gone). */
interface Exchange {
  readonly t0: number;
  /** x-request-id: the client's (sanitised) or a new one; echoed in the reply's headers. */
  readonly id: string;
  /** What the log line and the metrics report (set as the request goes). */
  ops: ExchangeOps;
  tokens: number;
  /** How it ended, when not simply answered: for the log line. */
  note: string;
  /** The connection closed (the response is over, or the client left). */
  closed: boolean;
  /** The handler returned (so tokens and note are final). */
  handled: boolean;
  /** Ends the running generation with an error reply (set while one runs). */
  stop?: (why: ServerStop) => void;
}

/** A request's generation, for its log line and the metrics. */
interface ExchangeOps {
  /** The peer's address, taken on arrival (a closed socket no longer has one). */
  client?: string;
  path?: string;
  model?: string;
  promptTokens?: number;
  cachedTokens?: number;
  /** When the first text was generated, and when the whole result was (performance.now()). */
  firstAt?: number;
  doneAt?: number;
  finishReason?: string;
  /** The error code of a failure (also one sent as an event in a stream that had begun). */
  error?: string;
}

/**
 * An OpenAI-compatible HTTP server (node:http) over a TextEngine: POST /v1/completions and /v1/chat/completions
 * (JSON, or server-sent events with `stream: true`), GET (and HEAD) /v1/models, /health and /metrics (Prometheus).
 * Every reply carries X-Request-Id; each request is logged (text or JSON lines) and counted once it is over.
 * Every error is an OpenAI error object with its status code; a client that disconnects has its sequence cancelled
 * and its cache freed. Requests are checked by an AccessPolicy (Host, Origin, Content-Type, API key) before they are routed;
 * shutdown() drains: running requests finish within a grace period, then end with an error.
 */
export class ApiServer {
  readonly server: Server;
  private readonly maxBodyBytes: number;
  private readonly bodyTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly access: AccessPolicy;
  private readonly inflight = new Set<Exchange>();
  private idleWaiters: (() => void)[] = [];
  private draining = false;
  private closing: Promise<void> | null = null;
  private endGrace: (() => void) | null = null;
  /** Prometheus metrics (GET /metrics), in a registry of this server's own. */
  readonly metrics: ServerMetrics;
  /** How chat prompts take tools and how replies are read back (tool calls, reasoning). */
  readonly chatFormat: ChatFormat;
  private tokenBytesMemo: TokenBytes | null = null;

  constructor(readonly engine: TextEngine, private readonly opts: ServerOptions = {}) {
    this.maxBodyBytes = opts.maxBodyBytes ?? 1 << 20;
    this.bodyTimeoutMs = opts.bodyTimeoutMs ?? 30_000;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 0;
    const headersTimeout = opts.headersTimeoutMs ?? 10_000;
    // node enforces the header and whole-request receive timeouts itself, checking every connectionsCheckingInterval
    this.server = createServer({ connectionsCheckingInterval: Math.min(1000, Math.max(100, headersTimeout / 2)) }, (req, res) => void this.handle(req, res));
    this.server.headersTimeout = headersTimeout;
    this.server.requestTimeout = this.bodyTimeoutMs > 0 ? headersTimeout + this.bodyTimeoutMs + 1000 : 0;
    this.server.keepAliveTimeout = 5000;
    this.server.maxConnections = opts.maxConnections ?? 512;
    this.access = new AccessPolicy({ cors: opts.cors, apiKey: opts.apiKey }, () => this.loopbackOnly());
    this.metrics = new ServerMetrics({ model: engine.name, backend: engine.model.backendName, stats: () => engine.scheduler.stats(), inFlight: () => this.inflight.size });
    this.chatFormat = new ChatFormat(engine.chat, engine.tokenizer, { toolParser: opts.toolParser, reasoningParser: opts.reasoningParser });
  }

  /** Listen (port 0: any free port); resolves to the address. */
  listen(port = 8080, host = "127.0.0.1"): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Listening on a loopback address only (so only loopback Host names are this server's). */
  private loopbackOnly(): boolean {
    const a = this.server.address();
    return a !== null && typeof a === "object" && isLoopbackAddress(a.address);
  }

  /** Whether a request needs the API key (for the banner). */
  get requiresKey(): boolean {
    return this.access.requiresKey;
  }

  /**
   * Drain and stop: no new connections or requests (503), running requests go on for up to `graceMs`, then end
   * with an error (a stream gets an error event and [DONE], a JSON request a 503); the model's caches are freed.
   * Calling it again returns the same promise.
   */
  shutdown(graceMs = 10_000): Promise<void> {
    if (this.closing) {
      if (graceMs === 0) this.endGrace?.(); // e.g. a second Ctrl-C: stop now
      return this.closing;
    }
    this.draining = true;
    if (this.server.listening) this.server.close();
    this.server.closeIdleConnections();
    this.closing = (async () => {
      await new Promise<void>((resolve) => {
        this.endGrace = resolve;
        void this.whenIdle(graceMs).then(resolve);
      });
      for (const x of this.inflight) x.stop?.("shutdown");
      await this.whenIdle(2000); // the stopped ones answer with their error now
      await this.engine.close();
      this.server.closeAllConnections();
    })();
    return this.closing;
  }

  /** Stop now: shutdown without a grace period (or cut a running shutdown's grace short). */
  close(): Promise<void> {
    return this.shutdown(0);
  }

  /** Running requests, for drain reports. */
  get inFlight(): number {
    return this.inflight.size;
  }

  private whenIdle(ms: number): Promise<void> {
    if (this.inflight.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.idleWaiters.push(done);
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const x: Exchange = { t0: performance.now(), id: requestId(req), ops: { client: req.socket.remoteAddress }, tokens: 0, note: "", closed: false, handled: false };
    res.setHeader("X-Request-Id", x.id); // on every reply: errors, preflights and streams too
    this.inflight.add(x);
    // one log line once both the connection is done and the handler has its outcome (a vanished client's
    // sequence is cancelled after its socket closes)
    res.on("close", () => {
      x.closed = true;
      if (x.handled) this.logRequest(req, res, x);
      this.inflight.delete(x);
      if (this.inflight.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    });
    await this.dispatch(req, res, x);
    x.handled = true;
    if (x.closed) this.logRequest(req, res, x);
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, x: Exchange): Promise<void> {
    try {
      if (this.draining) {
        res.setHeader("Connection", "close");
        throw new ApiError(503, "the server is shutting down", "server_error", null, "server_shutting_down");
      }
      const path = targetPath(req.url);
      x.ops.path = path;
      if (this.access.admit(req, res)) return;
      if (path !== "/health") this.access.authorize(req);
      const route = (method: "GET" | "POST"): boolean => {
        if (req.method === method || (method === "GET" && req.method === "HEAD")) return true;
        const allow = method === "GET" ? "GET, HEAD" : "POST";
        throw new ApiError(405, `${req.method} is not allowed on ${printable(path)}; use ${allow}`, "invalid_request_error", null, "method_not_allowed", { Allow: allow });
      };
      if (path === "/health" && route("GET")) {
        return sendJson(res, 200, { status: "ok", model: this.engine.name, ...this.engine.scheduler.stats() });
      }
      if (path === "/metrics" && route("GET")) return await this.metrics.serve(res); // behind the API key, as llama-server's
      if (path === "/v1/models" && route("GET")) {
        return sendJson(res, 200, { object: "list", data: [this.modelCard()] });
      }
      if (path.startsWith("/v1/models/") && route("GET")) {
        this.checkModel(decodeSegment(path.slice("/v1/models/".length), "the model id"));
        return sendJson(res, 200, this.modelCard());
      }
      if ((path === "/v1/completions" || path === "/v1/chat/completions") && route("POST")) {
        AccessPolicy.requireJson(req);
        const body = parseJson(await readBody(req, this.maxBodyBytes, this.bodyTimeoutMs));
        await this.generate(path === "/v1/completions" ? "completion" : "chat", body, res, x);
        return;
      }
      throw new ApiError(404, `no route ${req.method} ${printable(path)}`, "invalid_request_error", null, "not_found");
    } catch (e) {
      this.fail(res, x, e);
    }
  }

  private logRequest(req: IncomingMessage, res: ServerResponse, x: Exchange): void {
    // 499 (nginx's "client closed request"): the client left before any reply
    const status = res.headersSent ? res.statusCode : 499;
    const note = x.note || (!res.writableFinished ? "the connection closed before the reply was complete" : "");
    const record = this.record(req, x, status, note);
    this.metrics.observe(record);
    if (!this.opts.log) return;
    if (this.opts.logFormat === "json") return this.opts.log(jsonLogLine(record));
    const tokens = x.tokens ? ` ${x.tokens} tokens` : "";
    this.opts.log(`${req.method} ${printable(req.url ?? "")} ${status} ${record.totalMs.toFixed(0)} ms${tokens}${note ? ` (${note})` : ""}`);
  }

  private record(req: IncomingMessage, x: Exchange, status: number, note: string): RequestRecord {
    const o = x.ops, end = performance.now(), gen = o.doneAt !== undefined;
    const first = o.firstAt ?? (gen && x.tokens > 0 ? o.doneAt : undefined); // no text at all (e.g. only EOS): the end
    return {
      requestId: x.id, method: req.method ?? "", path: printable(req.url ?? ""), endpoint: endpointOf(o.path ?? null), status,
      model: o.model ?? null, promptTokens: o.promptTokens ?? null, completionTokens: gen ? x.tokens : null, cachedTokens: o.cachedTokens ?? null,
      ttftMs: first === undefined ? null : first - x.t0,
      tpotMs: first !== undefined && o.doneAt !== undefined && x.tokens > 1 ? (o.doneAt - first) / (x.tokens - 1) : null,
      totalMs: end - x.t0, finishReason: o.finishReason ?? null, client: o.client ?? null,
      error: o.error ?? (status === 499 || note.startsWith("the client closed") ? "client_closed" : null), note: note || null,
    };
  }

  /** An internal failure's stack, on the log (as one JSON line in the JSON format). */
  private logError(x: Exchange, e: unknown): void {
    if (this.opts.logFormat === "json") this.opts.log?.(jsonErrorLine(x.id, e));
    else this.opts.log?.(`internal error: ${(e as Error)?.stack ?? String(e)}`);
  }

  private modelCard(): object {
    return { id: this.engine.name, object: "model", created: this.created, owned_by: "mla-ts", max_model_len: this.engine.contextLength };
  }

  private checkModel(model: string | undefined): void {
    if (model !== undefined && model !== this.engine.name) {
      throw new ApiError(404, `the model '${model.slice(0, 200)}' does not exist; this server runs '${this.engine.name}'`, "invalid_request_error", "model", "model_not_found");
    }
  }

  /** Token ids of the request's prompt: refused by its length in characters first, long texts encoded off the loop. */
  private async promptIds(r: ChatRequest | CompletionRequest, x: Exchange, chatText?: string): Promise<number[]> {
    const engine = this.engine, V = engine.model.config.vocabSize;
    if (!("messages" in r) && typeof r.prompt !== "string") {
      const bad = r.prompt.find((t) => t < 0 || t >= V);
      if (bad !== undefined) throw new ApiError(400, `token id ${bad} in 'prompt' is out of range (vocabulary of ${V})`, "invalid_request_error", "prompt", "invalid_value");
      return r.prompt;
    }
    const text = "messages" in r ? (chatText ?? engine.renderChat(r.messages)) : (r.prompt as string);
    const least = engine.tokenizer.minTokens(text.length), ctx = engine.contextLength;
    if (least >= ctx) {
      throw new ApiError(400, `this model's context length is ${ctx} tokens; the prompt has ${text.length} characters, which are at least ${least} tokens ` +
        `(no token of this tokenizer spans more than ${engine.tokenizer.maxCharsPerToken} characters)`, "invalid_request_error", "messages" in r ? "messages" : "prompt", "context_length_exceeded");
    }
    const ids = await engine.encodeAsync(text, !("messages" in r));
    if (x.closed) throw new ClientGone("tokenizing");
    return ids;
  }

  /** Validate, queue, and answer (JSON or SSE). Resolves when the response is complete. */
  private async generate(kind: Kind, body: unknown, res: ServerResponse, x: Exchange): Promise<void> {
    const r = kind === "chat" ? parseChat(body) : parseCompletion(body);
    this.checkModel(r.model);
    const engine = this.engine, V = engine.model.config.vocabSize;
    for (const id of r.logitBias?.keys() ?? []) {
      if (id >= V) throw new ApiError(400, `token id ${id} in 'logit_bias' is out of range (vocabulary of ${V})`, "invalid_request_error", "logit_bias", "invalid_value");
    }
    // chat: the prompt with the request's tools, and a reader of each choice's reply (tool calls, reasoning)
    const plan = "messages" in r ? this.chatPlan(r) : null;
    const args = plan?.arguments ? this.argumentsGrammar(plan.arguments, r.json) : undefined;
    const prompt = await this.promptIds(r, x, plan?.prompt);
    if (prompt.length === 0) throw new ApiError(400, "the prompt encodes to no tokens", "invalid_request_error", "prompt", "invalid_value");
    const maxTokens = this.maxTokens(kind, r, prompt.length);
    if (r.minTokens !== undefined && r.minTokens > maxTokens) {
      throw new ApiError(400, `'min_tokens' (${r.minTokens}) is more than the ${maxTokens} new tokens this request may have`, "invalid_request_error", "min_tokens", "invalid_value");
    }
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${x.id}`; // as vLLM's: the request id in the completion id
    x.ops.model = engine.name;
    x.ops.promptTokens = prompt.length;
    const created = Math.floor(Date.now() / 1000);
    const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
    // with include_usage, OpenAI's chunks all carry "usage": null but the last one, which has only the usage
    const usageField = r.includeUsage ? { usage: null } : {};
    const chunk = (delta: string | object, finish: string | null, logprobs: object | null = null, index = 0): object => ({
      id, object, created, model: engine.name,
      choices: [kind === "chat" ? { index, delta, logprobs, finish_reason: finish } : { index, text: delta, logprobs, finish_reason: finish }],
      ...usageField,
    });
    // echo (completions): the prompt's text before the completion's, scored with logprobs (lm-evaluation-harness'
    // loglikelihood sends echo, logprobs and max_tokens 0 or 1)
    const echo = "echo" in r && r.echo ? (typeof r.prompt === "string" ? r.prompt : engine.tokenizer.decode(prompt)) : null;
    // n choices: one sequence each (its own sampler; seed + i), all from the one prompt, whose rows the later ones
    // copy from the first as soon as they are prefilled (cache: true) instead of computing them again
    const n = r.n;
    // each choice is a sequence: more than the queue holds could never be admitted, so a retry (429) cannot help
    if (n > engine.scheduler.maxQueue) throw new ApiError(400, `n ${n} exceeds the server's queue of ${engine.scheduler.maxQueue} requests (--max-queue)`, "invalid_request_error", "n", "invalid_value");
    const writers = Array.from({ length: n }, () => (r.logprobs !== undefined ? new LogprobsWriter(this.tokenBytes, kind) : null));
    const streamedCounts = new Array<number>(n).fill(0); // new tokens of each choice whose scores went out in chunks
    const sse = r.stream ? new EventStream(res) : null;
    const replies = plan ? Array.from({ length: n }, () => plan.start()) : [];
    const held = Array.from({ length: n }, (): TokenLogprob[] => []); // scores of text a reader holds back
    /** A chat choice's deltas as chunks; the scores of the text so far ride on the first. */
    const sendDeltas = (i: number, deltas: readonly ChatDelta[], lps?: Parameters<OnText>[1]): void => {
      if (lps) held[i].push(...lps);
      for (const d of deltas) {
        const lp = writers[i] && held[i].length > 0 ? writers[i]!.next(held[i]) : null;
        streamedCounts[i] += lp ? held[i].length : 0;
        if (lp) held[i] = [];
        sse!.send(chunk(chatDelta(d), null, lp, i));
      }
    };
    // aborted when the client goes away, the request times out or the server shuts down: every choice stops at once
    const abort = new AbortController();
    const jobs: TextJob[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const scores = writers[i];
        jobs.push(engine.start({
          signal: abort.signal, cache: n > 1 ? true : undefined,
          prompt, maxTokens, stop: plan?.stops.length ? [...r.stop, ...plan.stops] : r.stop, keepSpecial: plan?.keepSpecial, temperature: r.temperature, topP: r.topP, topK: r.topK, minP: r.minP, seed: r.seed === undefined ? undefined : r.seed + i,
          repetitionPenalty: r.repetitionPenalty, presencePenalty: r.presencePenalty, frequencyPenalty: r.frequencyPenalty,
          logitBias: r.logitBias, minTokens: r.minTokens, ignoreEos: r.ignoreEos, json: args?.json ?? r.json, jsonTail: args?.tail,
          logprobs: r.logprobs, promptLogprobs: echo !== null && (scores !== null || maxTokens === 0),
          onPromptLogprobs: sse && echo !== null && scores ? (lps) => sse.send(chunk(echo, null, scores.prompt(lps, echo), i)) : undefined,
          onText: firstText(x, sse ? (delta, lps) => {
            if (plan) return sendDeltas(i, replies[i].output.push(delta), lps);
            streamedCounts[i] += lps?.length ?? 0;
            sse.send(chunk(kind === "chat" ? { content: delta } : delta, null, scores && lps ? scores.next(lps) : null, i));
          } : undefined),
        }));
      }
    } catch (e) {
      abort.abort(); // the choices already queued
      if (e instanceof BusyError) throw new ApiError(429, e.message, "rate_limit_error", null, "server_busy", { "Retry-After": String(e.retryAfterSeconds) });
      if (e instanceof MlaError) throw new ApiError(400, e.message, "invalid_request_error", null, "invalid_value");
      throw e;
    }
    let stopped: ServerStop | null = null;
    x.stop = (why) => {
      stopped ??= why;
      abort.abort();
    };
    const timer = this.requestTimeoutMs > 0 ? setTimeout(() => x.stop?.("timeout"), this.requestTimeoutMs) : undefined;
    // a client that goes away (closed socket, aborted fetch) is cancelled: its cache returns to the budget
    res.on("close", () => {
      if (!res.writableFinished) abort.abort();
    });
    if (sse) {
      sse.open();
      for (let i = 0; i < n; i++) {
        if (kind === "chat") sse.send(chunk({ role: "assistant", content: "" }, null, null, i));
        if (plan) sendDeltas(i, replies[i].deltas); // a required call's start, written for the model
        if (echo !== null && !writers[i]) sse.send(chunk(echo, null, null, i)); // scored, it goes once the prompt is (onPromptLogprobs)
      }
    }
    // a streamed choice's last chunk goes out as soon as that choice ends, not when the slowest of the n does
    const ended = new Array<boolean>(n).fill(false);
    const endChoice = (i: number, q: TextResult): void => {
      if (ended[i] || !sse || q.finishReason === "cancelled" || stopped) return;
      ended[i] = true;
      if (plan) sendDeltas(i, replies[i].output.finish()); // text the reader held back
      const scores = writers[i], streamed = streamedCounts[i];
      const rest = scores && q.logprobs && q.logprobs.length > streamed ? scores.next(q.logprobs.slice(streamed)) : null; // EOS, held-back text
      sse.send(chunk(kind === "chat" ? {} : "", plan ? chatFinish(q.finishReason, replies[i].output) : q.finishReason, rest, i));
    };
    if (sse && n > 1) jobs.forEach((j, i) => j.done.then((q) => endChoice(i, q), () => undefined));
    let results: TextResult[];
    try {
      results = await Promise.all(jobs.map((j) => j.done));
    } catch (e) {
      abort.abort();
      if (!sse) throw e;
      this.logError(x, e);
      x.note = "generation failed";
      x.ops.error = "internal_error";
      sse.send(new ApiError(500, `generation failed: ${(e as Error).message}`, "server_error").body());
      sse.end();
      return;
    } finally {
      clearTimeout(timer);
      x.stop = undefined;
    }
    // the prompt counts once; its cached tokens are those of the choice that computed the most of it
    const result = { ...results[0], completionTokens: results.reduce((a, q) => a + q.completionTokens, 0), cachedTokens: Math.min(...results.map((q) => q.cachedTokens)) };
    if (results.some((q) => q.finishReason === "cancelled")) result.finishReason = "cancelled";
    x.tokens = result.completionTokens;
    x.ops.doneAt = performance.now();
    x.ops.finishReason = result.finishReason;
    x.ops.cachedTokens = result.cachedTokens;
    if (result.finishReason === "cancelled") {
      if (stopped) {
        const err = stopped === "shutdown"
          ? new ApiError(503, `the server is shutting down; the request was stopped after ${result.completionTokens} tokens`, "server_error", null, "server_shutting_down")
          : new ApiError(504, `the request ran past the server's limit of ${this.requestTimeoutMs / 1000} s; it was stopped after ${result.completionTokens} tokens`, "server_error", null, "request_timeout");
        x.note = stopped === "shutdown" ? "stopped by the shutdown" : "stopped by the request timeout";
        x.ops.error = err.code ?? undefined;
        if (!sse) throw err;
        sse.send(err.body());
        sse.end();
        return;
      }
      x.note = `the client closed the connection after ${result.completionTokens} tokens`;
      if (!res.writableEnded) res.destroy();
      return;
    }
    const usage = {
      prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, total_tokens: result.promptTokens + result.completionTokens,
      // OpenAI's field; given where prompts can be cached (the prefix cache is on, or n > 1 shared the prompt)
      ...(engine.scheduler.prefixCaching || result.cachedTokens > 0 ? { prompt_tokens_details: { cached_tokens: result.cachedTokens } } : {}),
    };
    if (sse) {
      results.forEach((q, i) => endChoice(i, q));
      if (r.includeUsage) sse.send({ id, object, created, model: engine.name, choices: [], usage });
      sse.end();
      return;
    }
    const choices = results.map((q, index) => {
      const echoed = echo !== null && q.promptLogprobs ? { entries: q.promptLogprobs, text: echo } : undefined;
      const logprobs = writers[index]?.choice(q.logprobs ?? [], echoed) ?? null;
      if (!plan) return { index, text: (echo ?? "") + q.text, logprobs, finish_reason: q.finishReason };
      const message = chatMessage(replies[index], q.text); // reads the reply: its calls decide the finish reason
      return { index, message, logprobs, finish_reason: chatFinish(q.finishReason, replies[index].output) };
    });
    sendJson(res, 200, { id, object: kind === "chat" ? "chat.completion" : "text_completion", created, model: engine.name, choices, usage });
  }

  /**
   * The grammar of a forced call's arguments (a named tool_choice): the tool's parameters schema, then the markers that
   * close the call. With response_format too, the reply could not be both: a 400.
   */
  private argumentsGrammar(a: NonNullable<ChatPlan["arguments"]>, json: JsonGrammar | undefined): { json: JsonGrammar; tail: string } {
    const param = `tools[${a.tool}].function.parameters`;
    if (json) throw new ApiError(400, "'response_format' cannot constrain a reply that tool_choice makes a tool call (its arguments follow the tool's parameters schema)", "invalid_request_error", "response_format", "invalid_value");
    try {
      return { json: jsonSchemaGrammar(a.schema), tail: a.end };
    } catch (e) {
      if (e instanceof SchemaError) throw new ApiError(400, `'${param}': ${e.message}`, "invalid_request_error", param, "invalid_value");
      throw e;
    }
  }

  /** A chat request's prompt and reply readers; a request this model cannot serve (tools without a format) is a 400. */
  private chatPlan(r: ChatRequest): ChatPlan {
    try {
      return this.chatFormat.plan({ messages: r.messages, tools: r.tools, toolChoice: r.toolChoice, parallelToolCalls: r.parallelToolCalls, templateVars: r.templateVars });
    } catch (e) {
      if (e instanceof ToolRequestError) throw new ApiError(400, e.message, "invalid_request_error", e.param, e.code);
      throw e;
    }
  }

  /** Each token's bytes and text, for logprobs: made on first use (a pass over the vocabulary). */
  private get tokenBytes(): TokenBytes {
    return (this.tokenBytesMemo ??= new TokenBytes(this.engine.tokenizer));
  }

  /** max_tokens as asked (400 past the context), or the default: 16 (completions) or what the context and budget leave. */
  private maxTokens(kind: Kind, r: SamplingRequest, promptTokens: number): number {
    const ctx = this.engine.contextLength, s = this.engine.scheduler;
    const tooLong = (asked: string) =>
      new ApiError(400, `this model's context length is ${ctx} tokens; the prompt has ${promptTokens}${asked}`, "invalid_request_error", "messages" in r ? "messages" : "prompt", "context_length_exceeded");
    if (promptTokens >= ctx) throw tooLong(", which leaves no room for a new token");
    if (r.maxTokens !== undefined) {
      if (promptTokens + r.maxTokens > ctx) throw new ApiError(400, `this model's context length is ${ctx} tokens; you asked for ${promptTokens + r.maxTokens} (${promptTokens} in the prompt, ${r.maxTokens} new)`, "invalid_request_error", "max_tokens", "context_length_exceeded");
      return r.maxTokens;
    }
    const fit = Math.floor(s.maxCacheBytes / s.cacheBytesPerToken) - promptTokens; // the whole budget for one sequence
    const rest = Math.min(ctx - promptTokens, Math.max(1, fit));
    const byDefault = kind === "completion" ? Math.min(COMPLETION_DEFAULT_MAX_TOKENS, rest) : rest;
    return Math.max(byDefault, Math.min(r.minTokens ?? 0, rest));
  }

  private fail(res: ServerResponse, x: Exchange, e: unknown): void {
    if (e instanceof ClientGone) {
      // not a server failure: nobody is left to answer
      x.note = e.message;
      if (!res.writableEnded) res.destroy();
      return;
    }
    const err = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, "server_error", null, "internal_error");
    if (!(e instanceof ApiError)) this.logError(x, e);
    x.ops.error = err.code ?? err.type;
    if (res.headersSent) {
      if (!res.writableEnded) res.end();
      return;
    }
    sendJson(res, err.status, err.body(), err.headers);
    // a body that was not read (413 before reading, 408 mid-way) cannot be skipped on this connection
    if (err.headers.Connection === "close") res.once("finish", () => res.socket?.destroySoon());
  }
}

type OnText = NonNullable<TextRequest["onText"]>;

/** A reply piece as OpenAI's chat chunk delta: content, reasoning_content (DeepSeek's and vLLM's name) or a tool call's. */
function chatDelta(d: ChatDelta): object {
  switch (d.kind) {
    case "content": return { content: d.text };
    case "reasoning": return { reasoning_content: d.text };
    case "call": return { tool_calls: [{ index: d.index, id: d.id, type: "function", function: { name: d.name, arguments: "" } }] };
    case "args": return { tool_calls: [{ index: d.index, function: { arguments: d.text } }] };
  }
}

/** A whole chat reply as OpenAI's message: content null when the reply only calls tools. */
function chatMessage(reply: { readonly output: ChatOutput; readonly deltas: readonly ChatDelta[] }, text: string): object {
  const r = foldDeltas([...reply.deltas, ...reply.output.push(text), ...reply.output.finish()]);
  const calls = r.calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
  return {
    role: "assistant", content: calls.length > 0 && r.content === "" ? null : r.content,
    ...(r.reasoning ? { reasoning_content: r.reasoning } : {}),
    ...(calls.length > 0 ? { tool_calls: calls } : {}),
  };
}

/** "tool_calls" for a reply that called tools and ended by itself (EOS or a stop string); "length" stays. */
function chatFinish(reason: string, output: ChatOutput): string {
  return reason === "stop" && output.toolCalls > 0 ? "tool_calls" : reason;
}

/** Wraps a request's onText to note when its first text came (time to first token). */
function firstText(x: Exchange, onText?: OnText): OnText {
  return (...args) => {
    x.ops.firstAt ??= performance.now();
    onText?.(...args);
  };
}

function parseJson(text: string): unknown {
  if (text.trim() === "") throw new ApiError(400, "the request body is empty; send a JSON object", "invalid_request_error", null, "invalid_json");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, "invalid_request_error", null, "invalid_json");
  }
}
