/**
 * A Hugging Face hub on 127.0.0.1 for tests: the endpoints mla-ts's hub client (and huggingface_hub) call, with
 * the headers the real hub sends.
 *
 * - GET /api/models/ORG/NAME/revision/REV: {id, sha, private, siblings}
 * - GET /api/models/ORG/NAME/tree/REV?recursive=true: [{type, oid, size, path, lfs?: {oid, size, pointerSize}}],
 *   paged with a Link: <...>; rel="next" header when `pageSize` is set
 * - HEAD/GET /ORG/NAME/resolve/REV/PATH: small files directly (ETag = git blob sha1); LFS files (*.safetensors,
 *   *.gguf, ...) as a 302 to a second server, the "CDN" (on host name localhost, another host: a token must not follow), with
 *   X-Linked-Etag (sha256) and X-Linked-Size; X-Repo-Commit on both
 * - Range requests (206 + Content-Range), on the hub and the CDN
 * - private repositories answer 401 without `Authorization: Bearer <token>`; unknown repos 401, unknown
 *   revisions 404 with X-Error-Code, as the hub does
 * - switches: cut the connection once mid-body (`cutOnce`), serve a file with one byte flipped (`corrupt`)
 * - CORS on every route, so a web page can be pointed at it
 *
 * Every request is logged (method, path, Range, whether it carried a token, which server answered).
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export interface MockCommit {
  /** Repository path -> content. */
  readonly files: Readonly<Record<string, Uint8Array | string>>;
  /** Branch or tag names that point here (the last commit is always "main" unless another commit names it). */
  readonly refs?: readonly string[];
}

export interface MockRepo {
  /** "ORG/NAME" */
  readonly id: string;
  readonly private?: boolean;
  /** Oldest first. */
  readonly commits: readonly MockCommit[];
}

export interface MockHubOptions {
  readonly repos: readonly MockRepo[];
  /** The token private repositories accept. */
  readonly token?: string;
  /** Entries per page of the tree API (default: all on one page). */
  readonly pageSize?: number;
}

export interface MockRequest {
  readonly server: "hub" | "cdn";
  readonly method: string;
  /** Path without the query. */
  readonly path: string;
  readonly range?: string;
  readonly auth: boolean;
  status: number;
}

export interface MockHub {
  /** The endpoint (HF_ENDPOINT). */
  readonly url: string;
  readonly requests: MockRequest[];
  /** Commit ids per repository, oldest first. */
  commits(repo: string): string[];
  /** The next transfer of this repository path stops after byte `at` (absolute offset) and the socket is destroyed. */
  cutOnce(path: string, at: number): void;
  /** Serve this repository path with one byte changed (same size) until `corrupt(path, false)`. */
  corrupt(path: string, on?: boolean): void;
  close(): Promise<void>;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** git's object id of a blob: sha1 of "blob <size>\0" + content (the hub's ETag of a non-LFS file). */
export function gitBlobSha1(data: Uint8Array): string {
  return createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
}

/** The files of a folder (recursively) as a commit's file map, with optional renames (from -> to). */
export function filesFromDir(dir: string, rename: Record<string, string> = {}): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  const walk = (d: string, prefix: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p, `${prefix}${n}/`);
      else out[rename[`${prefix}${n}`] ?? `${prefix}${n}`] = readFileSync(p);
    }
  };
  walk(dir, "");
  return out;
}

const LFS_RE = /\.(safetensors|gguf|bin|pth|pt|onnx|msgpack|h5)$/;

interface Blob {
  readonly data: Uint8Array;
  readonly oid: string;
  readonly sha256?: string;
}

interface Snapshot {
  readonly sha: string;
  readonly files: Map<string, Blob>;
}

function blobOf(path: string, content: Uint8Array | string): Blob {
  const data = typeof content === "string" ? new TextEncoder().encode(content) : content;
  if (!LFS_RE.test(path) && data.length < 1 << 20) return { data, oid: gitBlobSha1(data) };
  const sha256 = sha256Hex(data);
  // in git, an LFS file is its pointer: the tree's oid is the pointer's blob id
  const pointer = new TextEncoder().encode(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${data.length}\n`);
  return { data, oid: gitBlobSha1(pointer), sha256 };
}

function treeEntries(s: Snapshot): object[] {
  const dirs = new Set<string>();
  for (const p of s.files.keys()) {
    const parts = p.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  const entries: { path: string; e: object }[] = [...dirs].map((d) => ({ path: d, e: { type: "directory", oid: createHash("sha1").update(d).digest("hex"), size: 0, path: d } }));
  for (const [path, b] of s.files) {
    entries.push({
      path,
      e: { type: "file", oid: b.oid, size: b.data.length, path, ...(b.sha256 ? { lfs: { oid: b.sha256, size: b.data.length, pointerSize: 130 } } : {}) },
    });
  }
  return entries.sort((a, b) => a.path.localeCompare(b.path)).map((x) => x.e);
}

const CORS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "Authorization, Range, Content-Type",
  "Access-Control-Expose-Headers": "ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, Content-Range, Content-Length, Accept-Ranges, Link, Location, X-Error-Code",
};

export async function startMockHub(opts: MockHubOptions): Promise<MockHub> {
  const repos = new Map<string, { repo: MockRepo; snaps: Snapshot[]; refs: Map<string, string> }>();
  for (const repo of opts.repos) {
    const snaps = repo.commits.map((c, i) => ({
      sha: createHash("sha1").update(`${repo.id}#${i}`).digest("hex"),
      files: new Map(Object.entries(c.files).map(([p, d]) => [p, blobOf(p, d)])),
    }));
    const refs = new Map<string, string>([["main", snaps[snaps.length - 1].sha]]);
    repo.commits.forEach((c, i) => c.refs?.forEach((r) => refs.set(r, snaps[i].sha)));
    repos.set(repo.id, { repo, snaps, refs });
  }
  const requests: MockRequest[] = [];
  const cuts = new Map<string, number>();
  const corrupted = new Set<string>();

  const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { ...CORS, "Content-Type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };

  /** The bytes of a file, honouring Range, the cut and the corruption switches. */
  const sendBytes = (req: http.IncomingMessage, res: http.ServerResponse, log: MockRequest, path: string, blob: Blob, headers: Record<string, string>) => {
    let data = blob.data;
    if (corrupted.has(path)) {
      data = Uint8Array.from(data);
      data[data.length >> 1] ^= 0xff;
    }
    let start = 0, end = data.length - 1, status = 200;
    const range = req.headers.range;
    const h: Record<string, string> = { ...CORS, ...headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream" };
    if (range) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (!m || Number(m[1]) >= data.length) {
        log.status = 416;
        res.writeHead(416, { ...h, "Content-Range": `bytes */${data.length}` });
        return res.end();
      }
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), end) : end;
      status = 206;
      h["Content-Range"] = `bytes ${start}-${end}/${data.length}`;
    }
    h["Content-Length"] = String(end - start + 1);
    log.status = status;
    res.writeHead(status, h);
    if (req.method === "HEAD") return res.end();
    const cut = cuts.get(path);
    if (cut !== undefined && cut > start && cut <= end) {
      cuts.delete(path);
      res.write(data.subarray(start, cut), () => res.socket?.destroy());
      return;
    }
    res.end(data.subarray(start, end + 1));
  };

  let cdnUrl = "";
  const lfsBlobs = new Map<string, { path: string; blob: Blob }>();

  const hub = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const log: MockRequest = { server: "hub", method: req.method ?? "", path: url.pathname, range: req.headers.range, auth: !!req.headers.authorization, status: 0 };
    requests.push(log);
    if (req.method === "OPTIONS") {
      log.status = 204;
      res.writeHead(204, CORS);
      return res.end();
    }
    const fail = (status: number, error: string, code?: string) => {
      log.status = status;
      json(res, status, { error }, code ? { "X-Error-Code": code } : {});
    };
    const m = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)$/.exec(url.pathname) ?? /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) return fail(404, "Not Found");
    const api = url.pathname.startsWith("/api/");
    const id = decodeURIComponent(m[1]);
    const entry = repos.get(id);
    const authorized = req.headers.authorization === `Bearer ${opts.token}`;
    if (!entry || (entry.repo.private && !(opts.token && authorized))) {
      return fail(401, "Invalid username or password.", "RepoNotFound");
    }
    const rev = decodeURIComponent(api ? m[3] : m[2]);
    const sha = entry.refs.get(rev) ?? entry.snaps.find((s) => s.sha === rev)?.sha;
    const snap = entry.snaps.find((s) => s.sha === sha);
    if (!snap) return fail(404, `Invalid rev id: ${rev}`, "RevisionNotFound");
    if (api && m[2] === "revision") {
      log.status = 200;
      return json(res, 200, {
        _id: id, id, sha: snap.sha, private: !!entry.repo.private, gated: false, likes: 0, downloads: 0,
        lastModified: "2025-01-01T00:00:00.000Z", siblings: [...snap.files.keys()].map((rfilename) => ({ rfilename })),
      });
    }
    if (api) {
      const all = treeEntries(snap);
      const size = opts.pageSize ?? all.length;
      const from = Number(url.searchParams.get("cursor") ?? 0);
      const page = all.slice(from, from + size);
      const headers: Record<string, string> = {};
      if (from + size < all.length) {
        const next = new URL(url.pathname, `http://${req.headers.host}`);
        url.searchParams.forEach((v, k) => next.searchParams.set(k, v));
        next.searchParams.set("cursor", String(from + size));
        headers.Link = `<${next.href}>; rel="next"`;
      }
      log.status = 200;
      return json(res, 200, page, headers);
    }
    const path = decodeURIComponent(m[3]);
    const blob = snap.files.get(path);
    if (!blob) return fail(404, `Entry not found: ${path}`, "EntryNotFound");
    const common = { "X-Repo-Commit": snap.sha, ETag: `"${blob.sha256 ?? blob.oid}"` };
    if (!blob.sha256) return sendBytes(req, res, log, path, blob, { ...common, ETag: `"${blob.oid}"` });
    lfsBlobs.set(blob.sha256, { path, blob });
    log.status = 302;
    res.writeHead(302, {
      ...CORS, ...common, "X-Linked-Etag": `"${blob.sha256}"`, "X-Linked-Size": String(blob.data.length),
      Location: `${cdnUrl}/lfs/${blob.sha256}?signature=test`, "Content-Length": "0",
    });
    res.end();
  });

  const cdn = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const log: MockRequest = { server: "cdn", method: req.method ?? "", path: url.pathname, range: req.headers.range, auth: !!req.headers.authorization, status: 0 };
    requests.push(log);
    if (req.method === "OPTIONS") {
      log.status = 204;
      res.writeHead(204, CORS);
      return res.end();
    }
    const found = lfsBlobs.get(url.pathname.replace(/^\/lfs\//, ""));
    if (!found || url.searchParams.get("signature") !== "test") {
      log.status = 403;
      res.writeHead(403, CORS);
      return res.end();
    }
    sendBytes(req, res, log, found.path, found.blob, { ETag: `"${found.blob.sha256}"` });
  });

  const listen = (s: http.Server, host: string) => new Promise<number>((resolve) => s.listen(0, host, () => resolve((s.address() as AddressInfo).port)));
  const hubPort = await listen(hub, "127.0.0.1");
  // another host name, as a real CDN is: clients (ours, huggingface_hub) keep the token to the hub's host
  cdnUrl = `http://localhost:${await listen(cdn, "localhost")}`;
  const close = (s: http.Server) => new Promise<void>((resolve) => {
    s.closeAllConnections();
    s.close(() => resolve());
  });
  return {
    url: `http://127.0.0.1:${hubPort}`,
    requests,
    commits: (repo) => repos.get(repo)?.snaps.map((s) => s.sha) ?? [],
    cutOnce: (path, at) => void cuts.set(path, at),
    corrupt: (path, on = true) => void (on ? corrupted.add(path) : corrupted.delete(path)),
    close: async () => {
      await Promise.all([close(hub), close(cdn)]);
    },
  };
}
