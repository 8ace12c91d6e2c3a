import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { MlaError } from "../errors.js";
import { BusyError } from "../generate/batch.js";
import type { TextEngine, TextJob, TextResult } from "../generate/text.js";
import { ApiError, parseChat, parseCompletion, type SamplingRequest } from "./openai.js";

export interface ServerOptions {
  /** Largest request body accepted (default 1 MiB); larger ones get 413. */
  readonly maxBodyBytes?: number;
  /** One line per finished request (method, path, status, duration, tokens). */
  readonly log?: (line: string) => void;
}

/** Legacy completions default to 16 new tokens, as OpenAI's; chat defaults to the rest of the context. */
const COMPLETION_DEFAULT_MAX_TOKENS = 16;

type Kind = "completion" | "chat";

/**
 * An OpenAI-compatible HTTP server (node:http) over a TextEngine: POST /v1/completions and /v1/chat/completions
 * (JSON, or server-sent events with `stream: true`), GET /v1/models, GET /health. Every error is an OpenAI error
 * object with its status code; a client that disconnects has its sequence cancelled and its cache freed.
 */
export class ApiServer {
  readonly server: Server;
  private readonly maxBodyBytes: number;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly jobs = new Set<TextJob>();

  constructor(readonly engine: TextEngine, private readonly opts: ServerOptions = {}) {
    this.maxBodyBytes = opts.maxBodyBytes ?? 1 << 20;
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 5000;
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

  /** Stop: cancel every running request, close all connections. */
  close(): Promise<void> {
    for (const j of this.jobs) j.cancel();
    this.engine.scheduler.close();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    let tokens = 0;
    res.on("finish", () => this.opts.log?.(`${req.method} ${req.url} ${res.statusCode} ${(performance.now() - t0).toFixed(0)} ms${tokens ? ` ${tokens} tokens` : ""}`));
    try {
      const path = new URL(req.url ?? "/", "http://localhost").pathname.replace(/\/+$/, "") || "/";
      const route = (method: string): boolean => {
        if (req.method === method) return true;
        throw new ApiError(405, `${req.method} is not allowed on ${path}; use ${method}`, "invalid_request_error", null, "method_not_allowed", { Allow: method });
      };
      if (path === "/health" && route("GET")) {
        return sendJson(res, 200, { status: "ok", model: this.engine.name, ...this.engine.scheduler.stats() });
      }
      if (path === "/v1/models" && route("GET")) {
        return sendJson(res, 200, { object: "list", data: [this.modelCard()] });
      }
      if (path.startsWith("/v1/models/") && route("GET")) {
        this.checkModel(decodeURIComponent(path.slice("/v1/models/".length)));
        return sendJson(res, 200, this.modelCard());
      }
      if ((path === "/v1/completions" || path === "/v1/chat/completions") && route("POST")) {
        const kind: Kind = path === "/v1/completions" ? "completion" : "chat";
        const body = parseJson(await readBody(req, this.maxBodyBytes));
        const r = await this.generate(kind, body, req, res);
        tokens = r?.completionTokens ?? 0;
        return;
      }
      throw new ApiError(404, `no route ${req.method} ${path}`, "invalid_request_error", null, "not_found");
    } catch (e) {
      this.fail(res, e);
    }
  }

  private modelCard(): object {
    return { id: this.engine.name, object: "model", created: this.created, owned_by: "mla-ts", max_model_len: this.engine.contextLength };
  }

  private checkModel(model: string | undefined): void {
    if (model !== undefined && model !== this.engine.name) {
      throw new ApiError(404, `the model '${model}' does not exist; this server runs '${this.engine.name}'`, "invalid_request_error", "model", "model_not_found");
    }
  }

  /** Validate, queue, and answer (JSON or SSE). Resolves when the response is complete. */
  private async generate(kind: Kind, body: unknown, req: IncomingMessage, res: ServerResponse): Promise<TextResult | undefined> {
    const r = kind === "chat" ? parseChat(body) : parseCompletion(body);
    this.checkModel(r.model);
    const engine = this.engine, ctx = engine.contextLength, V = engine.model.config.vocabSize;
    let prompt: number[];
    if ("messages" in r) prompt = engine.encodeChat(r.messages);
    else if (typeof r.prompt === "string") prompt = engine.encode(r.prompt);
    else {
      const bad = r.prompt.find((t) => t < 0 || t >= V);
      if (bad !== undefined) throw new ApiError(400, `token id ${bad} in 'prompt' is out of range (vocabulary of ${V})`, "invalid_request_error", "prompt", "invalid_value");
      prompt = r.prompt;
    }
    if (prompt.length === 0) throw new ApiError(400, "the prompt encodes to no tokens", "invalid_request_error", "prompt", "invalid_value");
    const maxTokens = this.maxTokens(kind, r, prompt.length);
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomBytes(12).toString("hex")}`;
    const created = Math.floor(Date.now() / 1000);
    const sse = r.stream ? new EventStream(res) : null;
    let job: TextJob;
    try {
      job = engine.start({
        prompt, maxTokens, stop: r.stop, temperature: r.temperature, topP: r.topP, topK: r.topK, seed: r.seed,
        onText: sse ? (delta) => sse.send(chunk(kind, id, created, engine.name, kind === "chat" ? { content: delta } : delta, null)) : undefined,
      });
    } catch (e) {
      if (e instanceof BusyError) throw new ApiError(429, e.message, "rate_limit_error", null, "server_busy", { "Retry-After": String(e.retryAfterSeconds) });
      if (e instanceof MlaError) throw new ApiError(400, e.message, "invalid_request_error", null, "invalid_value");
      throw e;
    }
    this.jobs.add(job);
    // a client that goes away (closed socket, aborted fetch) is cancelled: its cache returns to the budget
    res.on("close", () => {
      if (!res.writableFinished) job.cancel();
    });
    if (sse) {
      sse.open();
      if (kind === "chat") sse.send(chunk(kind, id, created, engine.name, { role: "assistant", content: "" }, null));
    }
    let result: TextResult;
    try {
      result = await job.done;
    } catch (e) {
      if (!sse) throw e;
      sse.send(new ApiError(500, `generation failed: ${(e as Error).message}`, "server_error").body());
      sse.end();
      return undefined;
    } finally {
      this.jobs.delete(job);
    }
    if (result.finishReason === "cancelled") {
      if (!res.writableEnded) res.destroy();
      return result;
    }
    const usage = { prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, total_tokens: result.promptTokens + result.completionTokens };
    if (sse) {
      sse.send(chunk(kind, id, created, engine.name, kind === "chat" ? {} : "", result.finishReason));
      if (r.includeUsage) sse.send({ id, object: kind === "chat" ? "chat.completion.chunk" : "text_completion", created, model: engine.name, choices: [], usage });
      sse.end();
      return result;
    }
    const choice = kind === "chat"
      ? { index: 0, message: { role: "assistant", content: result.text }, logprobs: null, finish_reason: result.finishReason }
      : { index: 0, text: result.text, logprobs: null, finish_reason: result.finishReason };
    sendJson(res, 200, { id, object: kind === "chat" ? "chat.completion" : "text_completion", created, model: engine.name, choices: [choice], usage });
    return result;
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
    return kind === "completion" ? Math.min(COMPLETION_DEFAULT_MAX_TOKENS, rest) : rest;
  }

  private fail(res: ServerResponse, e: unknown): void {
    const err = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, "server_error", null, "internal_error");
    if (!(e instanceof ApiError)) this.opts.log?.(`internal error: ${(e as Error)?.stack ?? String(e)}`);
    if (res.headersSent) {
      if (!res.writableEnded) res.end();
      return;
    }
    sendJson(res, err.status, err.body(), err.headers);
  }
}

/** Server-sent events: one `data: JSON` event per chunk, ending with `data: [DONE]`. */
class EventStream {
  constructor(private readonly res: ServerResponse) {}

  open(): void {
    this.res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", Connection: "keep-alive", "X-Accel-Buffering": "no" });
    this.res.flushHeaders();
  }

  send(obj: object): void {
    if (!this.res.writableEnded && !this.res.destroyed) this.res.write(`data: ${JSON.stringify(obj)}\n\n`);
  }

  end(): void {
    if (!this.res.writableEnded && !this.res.destroyed) this.res.end("data: [DONE]\n\n");
  }
}

function chunk(kind: Kind, id: string, created: number, model: string, delta: string | object, finish: string | null): object {
  return kind === "chat"
    ? { id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] }
    : { id, object: "text_completion", created, model, choices: [{ index: 0, text: delta, logprobs: null, finish_reason: finish }] };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data), ...headers });
  res.end(data);
}

/** The body as text, at most `limit` bytes (413 past it: the rest is read and dropped, so the reply still arrives). */
function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => new ApiError(413, `the request body is larger than ${limit} bytes`, "invalid_request_error", null, "request_too_large");
    const declared = Number(req.headers["content-length"]);
    if (declared > limit) {
      req.resume();
      return reject(tooLarge());
    }
    const chunks: Buffer[] = [];
    let n = 0, failed = false;
    req.on("data", (c: Buffer) => {
      if (failed) return;
      n += c.length;
      if (n > limit) {
        failed = true;
        chunks.length = 0;
        reject(tooLarge());
      } else chunks.push(c);
    });
    req.on("end", () => {
      if (!failed) resolve(Buffer.concat(chunks).toString("utf8"));
    });
    req.on("error", reject);
  });
}

function parseJson(text: string): unknown {
  if (text.trim() === "") throw new ApiError(400, "the request body is empty; send a JSON object", "invalid_request_error", null, "invalid_json");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, "invalid_request_error", null, "invalid_json");
  }
}
