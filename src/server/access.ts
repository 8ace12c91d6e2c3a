import { createHash, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import type { IncomingMessage, ServerResponse } from "node:http";
import { ApiError } from "./openai.js";

/**
 * Who may talk to the server. A server on 127.0.0.1 is still reachable from every web page the user opens: a page
 * can POST to it cross-origin (a "simple" request with Content-Type text/plain needs no preflight), and through DNS
 * rebinding (evil.example resolving to 127.0.0.1) read the replies too. So, as llama.cpp's server and Ollama guard
 * themselves:
 * - Host: on a loopback address, only loopback names (localhost, *.localhost, 127.x.y.z, [::1]); a rebound name
 *   (Host: evil.example:8080) is refused.
 * - Origin: a request that carries one is refused unless it is the server's own origin or listed in --cors.
 * - Content-Type: bodies must be application/json, which no page can send cross-origin without a preflight.
 * - API key (--api-key): Bearer token on every route but /health.
 */
export interface AccessOptions {
  /** Origins allowed to call from web pages ("*": any); none by default. */
  readonly cors?: readonly string[];
  readonly apiKey?: string;
}

const LOOPBACK_NAMES = /^(localhost|[a-z0-9-]+(\.[a-z0-9-]+)*\.localhost)$/i;

export function isLoopbackAddress(address: string): boolean {
  const a = address.replace(/^\[|\]$/g, "").toLowerCase();
  if (a === "::1" || a === "0:0:0:0:0:0:0:1") return true;
  if (a.startsWith("::ffff:")) return isLoopbackAddress(a.slice(7));
  return isIP(a) === 4 && a.startsWith("127.");
}

/** The host name of a Host header ("[::1]:8080" -> "::1", "localhost:80" -> "localhost"). */
function hostName(host: string): string {
  const m = /^\[([^\]]*)\](?::\d*)?$/.exec(host);
  if (m) return m[1];
  const i = host.lastIndexOf(":");
  return i >= 0 && host.indexOf(":") === i ? host.slice(0, i) : host;
}

export class AccessPolicy {
  private readonly keyDigest: Buffer | null;
  private readonly anyOrigin: boolean;
  private readonly origins: ReadonlySet<string>;

  /** `loopback`: the server listens on a loopback address only, so Host names must be loopback names too. */
  constructor(private readonly opts: AccessOptions, private readonly loopback: () => boolean) {
    this.keyDigest = opts.apiKey ? digest(opts.apiKey) : null;
    const list = (opts.cors ?? []).map((o) => o.trim()).filter((o) => o.length > 0);
    this.anyOrigin = list.includes("*");
    this.origins = new Set(list.map((o) => o.replace(/\/$/, "").toLowerCase()));
  }

  get requiresKey(): boolean {
    return this.keyDigest !== null;
  }

  /**
   * Check Host and Origin, set the CORS headers of an allowed cross-origin request, and answer a preflight.
   * Returns true when the request was answered here (OPTIONS).
   */
  admit(req: IncomingMessage, res: ServerResponse): boolean {
    const host = req.headers.host;
    if (host !== undefined && this.loopback() && !isLoopbackAddress(hostName(host)) && !LOOPBACK_NAMES.test(hostName(host))) {
      throw new ApiError(403, `Host '${host.slice(0, 100)}' is not this server's: a server on a loopback address answers only to loopback names (localhost, 127.0.0.1, [::1])`, "invalid_request_error", null, "host_not_allowed");
    }
    const origin = req.headers.origin;
    const cross = origin !== undefined && !(host !== undefined && origin.toLowerCase() === `http://${host.toLowerCase()}`);
    if (cross) {
      if (!this.anyOrigin && !this.origins.has(origin.toLowerCase())) {
        throw new ApiError(403, `cross-origin requests from '${origin.slice(0, 100)}' are refused; start the server with --cors ${origin === "null" ? "'*'" : origin.slice(0, 100)} to allow them`, "invalid_request_error", null, "origin_not_allowed");
      }
      res.setHeader("Access-Control-Allow-Origin", this.anyOrigin ? "*" : origin);
      res.setHeader("Vary", "Origin");
      // headers a page's script may read beyond the CORS-safelisted ones: its request id, when to retry after a 429
      res.setHeader("Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
    }
    if (req.method !== "OPTIONS") return false;
    if (cross) {
      // the preflight: what the browser may send next. No credentials (cookies) are ever needed: auth is a header.
      const asked = String(req.headers["access-control-request-headers"] ?? "");
      res.setHeader("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS");
      res.setHeader("Access-Control-Allow-Headers", /^[\w-]+(\s*,\s*[\w-]+)*$/.test(asked) ? asked : "Authorization, Content-Type");
      res.setHeader("Access-Control-Max-Age", "600");
    }
    res.writeHead(204, { Allow: "GET, HEAD, POST, OPTIONS" });
    res.end();
    return true;
  }

  /** 401 unless the request carries the API key (when one is set). */
  authorize(req: IncomingMessage): void {
    if (!this.keyDigest) return;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
    if (!m) throw unauthorized("this server needs an API key: send it as 'Authorization: Bearer KEY'");
    if (!timingSafeEqual(digest(m[1]), this.keyDigest)) throw unauthorized("incorrect API key provided");
  }

  /** 415 unless the body is declared as JSON (a cross-origin page cannot send that without a preflight). */
  static requireJson(req: IncomingMessage): void {
    const type = String(req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    if (type !== "application/json") {
      throw new ApiError(415, `the request body must be sent as Content-Type: application/json${type ? `, not ${type.slice(0, 100)}` : " (the header is missing)"}`, "invalid_request_error", null, "unsupported_media_type");
    }
  }
}

/** Keys are compared as SHA-256 digests: equal length, constant time, whatever the client sends. */
function digest(key: string): Buffer {
  return createHash("sha256").update(key, "utf8").digest();
}

function unauthorized(message: string): ApiError {
  return new ApiError(401, message, "invalid_request_error", null, "invalid_api_key", { "WWW-Authenticate": "Bearer" });
}
