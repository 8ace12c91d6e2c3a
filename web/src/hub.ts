/**
 * Models from the Hugging Face hub, in the browser: the same API calls as `mla pull` (the commit a revision points
 * at, then the file tree with sizes), the same choice of files (src/io/hub.ts selectModelFiles: one GGUF quant, or
 * config + safetensors + tokenizer), and the files kept in the browser's Cache Storage, keyed by hub, repository,
 * commit and path. A manifest per (hub, repository, revision, quant) records the plan once every file is stored,
 * so a second visit loads without asking the network anything. Sizes are checked; hashes are not (hashing
 * gigabytes needs an incremental SHA-256 the browser lacks). The page sends no token: gated and private models are
 * refused with the hub's status.
 */
import { MlaError } from "../../src/errors.js";
import { DEFAULT_ENDPOINT, ggufQuantTag, parseHubRef, selectModelFiles, type HubFile } from "../../src/io/hub.js";

export { DEFAULT_ENDPOINT };
export const CACHE_NAME = "mla-ts-models";
const MANIFEST_PARAM = "mla-ts-manifest";

/** What the user asked for: a repository (and quant) on a hub, at a revision. */
export interface HubTarget {
  readonly endpoint: string;
  readonly repo: string;
  readonly quant?: string;
  readonly revision: string;
  /** A .gguf file at a plain URL (any server, not a hub): fetched and kept in the cache under that URL. */
  readonly url?: string;
}

/** The files to fetch, with their sizes, before anything is downloaded. */
export interface HubPlan extends HubTarget {
  readonly commit: string;
  readonly kind: "safetensors" | "gguf";
  /** The quant the choice settled on (the default one when none was asked for). */
  readonly chosenQuant?: string;
  readonly files: readonly HubFile[];
  readonly totalBytes: number;
  /** Of totalBytes, what Cache Storage already holds. */
  readonly cachedBytes: number;
  /** True when the plan came from the cache's manifest (no network was asked). */
  readonly fromManifest: boolean;
}

/** A model whose files are all in Cache Storage. */
export interface CachedModel {
  readonly key: string;
  readonly plan: HubPlan;
  readonly savedAt: string;
}

/**
 * `ORG/NAME[:QUANT]` (or `hf:ORG/NAME[:QUANT]`) on `endpoint`, or a hub URL: https://HOST/ORG/NAME, optionally
 * /tree/REV, or /blob|resolve/REV/FILE.gguf (which picks that file's quant). A URL names its own hub. Any other URL
 * of a .gguf file is a plain download (the server must allow the page's origin, and say the file's size).
 */
export function parseHubInput(text: string, endpoint = DEFAULT_ENDPOINT): HubTarget {
  const s = text.trim();
  const ep = cleanEndpoint(endpoint);
  if (!/^https?:\/\//i.test(s)) {
    const { repo, quant } = parseHubRef(s);
    return { endpoint: ep, repo, quant, revision: "main" };
  }
  const url = new URL(s);
  const [org, name, mode, rev, ...rest] = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (url.pathname.endsWith(".gguf") && mode !== "blob" && mode !== "resolve") {
    const file = decodeURIComponent(url.pathname.split("/").pop()!);
    return { endpoint: url.origin, repo: file, revision: "url", url: url.href };
  }
  const { repo, quant } = parseHubRef(`${org ?? ""}/${name ?? ""}`);
  const file = rest.join("/");
  const fileQuant = (mode === "blob" || mode === "resolve") && file.endsWith(".gguf") ? ggufQuantTag(file) : undefined;
  return { endpoint: url.origin, repo, quant: quant ?? fileQuant, revision: mode && rev ? rev : "main" };
}

export function cleanEndpoint(endpoint: string): string {
  const e = endpoint.trim().replace(/\/+$/, "") || DEFAULT_ENDPOINT;
  if (!/^https?:\/\/[^/]+/i.test(e)) throw new MlaError(`hub endpoint ${JSON.stringify(endpoint)} is not an http(s) URL`);
  return e;
}

// ---- keys -------------------------------------------------------------------------------------------------------

function repoPath(repo: string): string {
  return repo.split("/").map(encodeURIComponent).join("/");
}

/** The file's download URL at the commit, which is also its key in Cache Storage. */
export function fileUrl(p: { endpoint: string; repo: string; commit: string; url?: string }, path: string): string {
  if (p.url) return p.url;
  return `${p.endpoint}/${repoPath(p.repo)}/resolve/${p.commit}/${path.split("/").map(encodeURIComponent).join("/")}`;
}

function manifestKey(t: HubTarget): string {
  const q = new URLSearchParams({ [MANIFEST_PARAM]: t.quant?.toUpperCase() ?? "" });
  return `${t.endpoint}/api/models/${repoPath(t.repo)}/revision/${encodeURIComponent(t.revision)}?${q}`;
}

// ---- the hub's API ----------------------------------------------------------------------------------------------

function statusError(t: HubTarget, status: number, what: string): MlaError {
  if (t.url) return new MlaError(`${t.url}: the server answered ${status}`);
  const where = `${t.repo}@${t.revision} on ${t.endpoint}`;
  if (status === 401 || status === 403) return new MlaError(`${where}: the hub answered ${status} for the ${what} (a private or gated model; this page sends no token)`);
  if (status === 404) return new MlaError(`${where}: ${what} not found (404)`);
  return new MlaError(`${where}: the hub answered ${status} for the ${what}`);
}

async function hubFetch(t: HubTarget, url: string, what: string, signal?: AbortSignal): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { signal, headers: { accept: "application/json" } });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new MlaError(`cannot reach ${t.endpoint} for ${t.repo} (${(e as Error).message}); check the network and the hub endpoint`);
  }
  if (!res.ok) throw statusError(t, res.status, what);
  return res;
}

interface TreeEntry {
  readonly type?: string;
  readonly path?: string;
  readonly size?: number;
  readonly oid?: string;
  readonly lfs?: { readonly oid?: string; readonly size?: number };
}

/** The commit of the revision and the files at it (the tree API, recursive, pages followed by their Link). */
async function listRepo(t: HubTarget): Promise<{ commit: string; files: HubFile[] }> {
  let commit = t.revision;
  if (!/^[0-9a-f]{40}$/.test(commit)) {
    const info = (await (await hubFetch(t, `${t.endpoint}/api/models/${repoPath(t.repo)}/revision/${encodeURIComponent(t.revision)}?expand=sha`, "revision")).json()) as { sha?: unknown };
    if (typeof info.sha !== "string" || !/^[0-9a-f]{40}$/.test(info.sha)) throw new MlaError(`${t.repo}@${t.revision}: the hub gave no commit for the revision`);
    commit = info.sha;
  }
  const files: HubFile[] = [];
  let url: string | undefined = `${t.endpoint}/api/models/${repoPath(t.repo)}/tree/${commit}?recursive=true&expand=false`;
  while (url) {
    const res = await hubFetch(t, url, "file list");
    const entries = (await res.json()) as TreeEntry[];
    for (const e of entries) {
      if (e.type !== "file" || typeof e.path !== "string") continue;
      const size = e.lfs?.size ?? e.size;
      if (typeof size !== "number") throw new MlaError(`${t.repo}: the hub's file list gives no size for ${e.path}`);
      files.push({ path: e.path, size, oid: e.oid, lfsOid: e.lfs?.oid });
    }
    url = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get("link") ?? "")?.[1];
  }
  return { commit, files };
}

// ---- plans and the cache -----------------------------------------------------------------------------------------

async function storedSize(cache: Cache, url: string): Promise<number | null> {
  const r = await cache.match(url);
  return r ? (await r.blob()).size : null;
}

async function cachedOf(cache: Cache, p: { endpoint: string; repo: string; commit: string; files: readonly HubFile[] }): Promise<number> {
  let bytes = 0;
  for (const f of p.files) if ((await storedSize(cache, fileUrl(p, f.path))) === f.size) bytes += f.size;
  return bytes;
}

/**
 * What a download would fetch: from the cache's manifest when every file is stored (no network), else from the
 * hub's API. Nothing is downloaded.
 */
export async function planHub(t: HubTarget): Promise<HubPlan> {
  const cache = await caches.open(CACHE_NAME);
  const saved = await cache.match(manifestKey(t));
  if (saved) {
    const plan = ((await saved.json()) as { plan: HubPlan }).plan;
    if ((await cachedOf(cache, plan)) === plan.totalBytes) return { ...plan, cachedBytes: plan.totalBytes, fromManifest: true };
  }
  if (t.url) return planUrl(cache, t, t.url);
  const { commit, files } = await listRepo(t);
  const chosen = selectModelFiles(t.repo, files, t.quant);
  const p = { ...t, commit, kind: chosen.kind, chosenQuant: chosen.quant, files: chosen.files, totalBytes: chosen.files.reduce((s, f) => s + f.size, 0) };
  return { ...p, cachedBytes: await cachedOf(cache, p), fromManifest: false };
}

/** A .gguf file at a plain URL: its size from a HEAD request (nothing is downloaded). */
async function planUrl(cache: Cache, t: HubTarget, url: string): Promise<HubPlan> {
  let res: Response;
  try {
    res = await fetch(url, { method: "HEAD" });
  } catch (e) {
    throw new MlaError(`cannot reach ${url} (${(e as Error).message}); a server of another origin must allow this page (CORS)`);
  }
  if (!res.ok) throw statusError(t, res.status, "file");
  const size = Number(res.headers.get("content-length"));
  if (!Number.isSafeInteger(size) || size <= 0) throw new MlaError(`${url}: the server gives no size (Content-Length) for the file`);
  const p = { ...t, commit: "", kind: "gguf" as const, files: [{ path: t.repo, size }], totalBytes: size };
  return { ...p, cachedBytes: await cachedOf(cache, p), fromManifest: false };
}

/** Stream one file into the cache, counting bytes as they pass; its size is checked once stored. */
async function fetchFile(cache: Cache, plan: HubPlan, f: HubFile, onBytes: (n: number) => void, signal?: AbortSignal): Promise<void> {
  const url = fileUrl(plan, f.path);
  let res: Response;
  try {
    res = await fetch(url, { signal });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new MlaError(`${plan.repo}: downloading ${f.path} failed (${(e as Error).message})`);
  }
  if (!res.ok || !res.body) throw statusError(plan, res.status, f.path);
  let got = 0;
  const counted = res.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, out) {
      got += chunk.byteLength;
      onBytes(chunk.byteLength);
      out.enqueue(chunk);
    },
  }));
  await cache.put(url, new Response(counted, { headers: { "content-type": "application/octet-stream", "content-length": String(f.size) } }));
  const size = await storedSize(cache, url);
  if (size !== f.size) {
    await cache.delete(url);
    throw new MlaError(`${plan.repo}: ${f.path} arrived with ${size ?? got} bytes, the hub lists ${f.size} (the partial file was deleted)`);
  }
}

/**
 * Fetch the plan's files that the cache lacks (onProgress(bytes fetched, bytes to fetch)), record the manifest,
 * and return every file as a Blob read from the cache (disk-backed: nothing is held in memory whole).
 */
export async function downloadHub(plan: HubPlan, onProgress: (done: number, total: number) => void, signal?: AbortSignal): Promise<Map<string, Blob>> {
  const cache = await caches.open(CACHE_NAME);
  const missing: HubFile[] = [];
  for (const f of plan.files) if ((await storedSize(cache, fileUrl(plan, f.path))) !== f.size) missing.push(f);
  const total = missing.reduce((s, f) => s + f.size, 0);
  let done = 0;
  onProgress(0, total);
  for (const f of missing) await fetchFile(cache, plan, f, (n) => onProgress((done += n), total), signal);
  if (missing.length || !plan.fromManifest) {
    const body = JSON.stringify({ plan: { ...plan, cachedBytes: plan.totalBytes, fromManifest: true }, savedAt: new Date().toISOString() });
    await cache.put(manifestKey(plan), new Response(body, { headers: { "content-type": "application/json" } }));
  }
  return cachedBlobs(cache, plan);
}

async function cachedBlobs(cache: Cache, plan: HubPlan): Promise<Map<string, Blob>> {
  const out = new Map<string, Blob>();
  for (const f of plan.files) {
    const r = await cache.match(fileUrl(plan, f.path));
    if (!r) throw new MlaError(`${plan.repo}: ${f.path} is no longer in the browser's cache`);
    out.set(f.path, await r.blob());
  }
  return out;
}

/** The models whose manifest the cache holds. */
export async function listCached(): Promise<CachedModel[]> {
  const cache = await caches.open(CACHE_NAME);
  const out: CachedModel[] = [];
  for (const req of await cache.keys()) {
    if (!new URL(req.url).searchParams.has(MANIFEST_PARAM)) continue;
    const r = await cache.match(req);
    if (!r) continue;
    const { plan, savedAt } = (await r.json()) as { plan: HubPlan; savedAt: string };
    out.push({ key: req.url, plan, savedAt });
  }
  return out.sort((a, b) => a.plan.repo.localeCompare(b.plan.repo));
}

/** Bytes of every file the cache holds (each stored file once, manifests aside). */
export async function cachedTotal(): Promise<number> {
  const cache = await caches.open(CACHE_NAME);
  let bytes = 0;
  for (const req of await cache.keys()) {
    if (new URL(req.url).searchParams.has(MANIFEST_PARAM)) continue;
    bytes += (await storedSize(cache, req.url)) ?? 0;
  }
  return bytes;
}

/** Delete a cached model: its manifest, and its files that no other manifest names. */
export async function deleteCached(key: string): Promise<void> {
  const cache = await caches.open(CACHE_NAME);
  const all = await listCached();
  const gone = all.find((m) => m.key === key);
  if (!gone) return;
  const kept = new Set(all.filter((m) => m.key !== key).flatMap((m) => m.plan.files.map((f) => fileUrl(m.plan, f.path))));
  await cache.delete(key);
  for (const f of gone.plan.files) {
    const url = fileUrl(gone.plan, f.path);
    if (!kept.has(url)) await cache.delete(url);
  }
}
