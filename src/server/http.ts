import type { IncomingMessage, ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import { ApiError } from "./openai.js";

/** The client went away (closed the connection, aborted the upload): nobody is left to answer. */
export class ClientGone extends Error {
  constructor(readonly during: string) {
    super(`the client closed the connection during ${during}`);
    this.name = "ClientGone";
  }
}

/**
 * The path of a request target, never throwing: origin-form ("/v1/models?x") as it is, absolute-form
 * ("http://host/v1/models", which HTTP/1.1 servers must accept) by its path. Anything else ("//[", "*", "v1") is a
 * 400. Paths are matched as sent: "//v1/models" is not "/v1/models" (a URL parser would read "v1" as a host there).
 * A trailing slash is dropped.
 */
export function targetPath(target: string | undefined): string {
  let t = target ?? "";
  if (/^https?:\/\//i.test(t)) {
    const slash = t.indexOf("/", t.indexOf("//") + 2);
    t = slash < 0 ? "/" : t.slice(slash);
  }
  if (!t.startsWith("/")) throw new ApiError(400, "the request target must be a path starting with '/'", "invalid_request_error", null, "invalid_url");
  const end = t.search(/[?#]/);
  const path = end < 0 ? t : t.slice(0, end);
  return path.length > 1 ? path.replace(/\/$/, "") : path;
}

/** A path segment percent-decoded (400 for malformed escapes such as %ff, which are not UTF-8). */
export function decodeSegment(s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ApiError(400, `${what} is not valid percent-encoded UTF-8`, "invalid_request_error", null, "invalid_url");
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data), ...headers });
  res.end(data);
}

/**
 * The body as text: at most `limit` bytes (413 past it; the rest is read and dropped, so the reply still arrives),
 * within `timeoutMs` (408, and the connection closes: the unread rest cannot be skipped). A client that aborts the
 * upload rejects with ClientGone.
 */
export function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => new ApiError(413, `the request body is larger than ${limit} bytes`, "invalid_request_error", null, "request_too_large");
    const declared = Number(req.headers["content-length"]);
    if (declared > limit) {
      req.resume();
      return reject(tooLarge());
    }
    const chunks: Buffer[] = [];
    let n = 0, settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const timer = timeoutMs > 0 ? setTimeout(() => {
      settle(() => reject(new ApiError(408, `the request body did not arrive within ${timeoutMs / 1000} s`, "invalid_request_error", null, "request_timeout", { Connection: "close" })));
    }, timeoutMs) : undefined;
    req.on("data", (c: Buffer) => {
      if (settled) return;
      n += c.length;
      if (n > limit) {
        chunks.length = 0;
        settle(() => reject(tooLarge()));
      } else chunks.push(c);
    });
    req.on("end", () => settle(() => resolve(Buffer.concat(chunks).toString("utf8"))));
    req.on("error", () => settle(() => reject(new ClientGone("the upload"))));
    req.on("close", () => {
      if (!req.complete) settle(() => reject(new ClientGone("the upload")));
    });
  });
}

/** Server-sent events: one `data: JSON` event per chunk, ending with `data: [DONE]`. */
export class EventStream {
  constructor(private readonly res: ServerResponse) {}

  open(): void {
    this.res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", Connection: "keep-alive", "X-Accel-Buffering": "no" });
    this.res.flushHeaders();
  }

  get writable(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  send(obj: object): void {
    if (this.writable) this.res.write(`data: ${JSON.stringify(obj)}\n\n`);
  }

  end(): void {
    if (this.writable) this.res.end("data: [DONE]\n\n");
  }
}

/** A request target or header for a log line: printable ASCII, at most 200 characters. */
export function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
  return clean.length > 200 ? `${clean.slice(0, 200)}...` : clean;
}

/** Longest client-sent x-request-id kept (vLLM and proxies send UUIDs: 36 characters). */
export const MAX_REQUEST_ID = 128;

/**
 * The request's id: the client's `x-request-id` when it is 1 to 128 visible ASCII characters (no spaces, no control
 * characters, so it is safe in a header, a log line and a completion id), else a fresh one (24 hex digits). One
 * header only: a repeated header arrives joined as "a, b", which has a space and is replaced.
 */
export function requestId(req: IncomingMessage): string {
  const given = req.headers["x-request-id"];
  if (typeof given === "string" && given.length <= MAX_REQUEST_ID && /^[\x21-\x7e]+$/.test(given)) return given;
  return randomBytes(12).toString("hex");
}
