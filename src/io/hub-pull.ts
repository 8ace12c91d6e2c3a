/**
 * Models from the Hugging Face hub into the shared Hugging Face cache (hf-cache.ts), for Node: `ORG/NAME[:QUANT]`
 * -> the files a model folder needs (hub.ts selectModelFiles), fetched, verified, and returned as the local path
 * the loaders open.
 *
 * The hub's JSON API (which commit a revision is, the file tree with sizes and hashes) goes through
 * `@huggingface/hub` (modelInfo, listFiles: pagination, API errors). The file transfer is ours, because the
 * package's downloadFileToCacheDir (2.17) cannot do what a multi-GB download needs: it restarts an interrupted
 * download from byte 0, never checks a hash, has no progress or retry, and names the snapshot folder after the
 * file's last commit instead of the revision's commit (so refs/main and the snapshot disagree with huggingface_hub).
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { createHash, type Hash } from "node:crypto";
import { HubApiError, listFiles, modelInfo } from "@huggingface/hub";
import { MlaError } from "../errors.js";
import {
  COMMIT_RE, blobPath, cachedCommit, checkRepoPath, hubCacheDir, linkSnapshotFile, listSnapshot, repoCacheDir, snapshotDir, writeRef,
} from "./hf-cache.js";
import { DEFAULT_ENDPOINT, HUB_PREFIX, parseHubRef, selectModelFiles, type HubFile, type HubRef, type ModelFiles } from "./hub.js";

// ------------------------------------------------------------------------------------------- options

export interface HubOptions {
  /** The hub (default $HF_ENDPOINT, else https://huggingface.co). */
  readonly endpoint?: string;
  /** Access token for private and gated repositories (default $HF_TOKEN). Sent to the hub's own host only. */
  readonly token?: string;
  /** Branch, tag or commit (default main). */
  readonly revision?: string;
  /** The hub cache (default: hubCacheDir(), from $HF_HUB_CACHE / $HF_HOME). */
  readonly cacheDir?: string;
  /** Use the cache only, never the network (default $HF_HUB_OFFLINE). */
  readonly offline?: boolean;
  /** When the hub cannot be reached, use what the cache holds for the revision (with a warning through `log`). */
  readonly cacheFallback?: boolean;
  /** Tries without progress before giving up on a file (default 5), the first wait (default 1 s, doubling). */
  readonly retries?: number;
  readonly retryDelayMs?: number;
  /** Files fetched at the same time (default 4). */
  readonly concurrency?: number;
  /** A transfer that receives nothing for this long is cut and retried (default 60 s). */
  readonly idleTimeoutMs?: number;
  /** The plan, before any byte is fetched. */
  readonly onPlan?: (plan: PullPlan) => void;
  /** Bytes fetched so far of those to fetch (resumed bytes count as fetched). */
  readonly onProgress?: (done: number, total: number) => void;
  /** Warnings (a retry, a fallback to the cache). */
  readonly log?: (line: string) => void;
  readonly fetch?: typeof fetch;
}

/** huggingface_hub's truthy spellings of a boolean environment variable. */
function envTrue(v: string | undefined): boolean {
  return v !== undefined && ["1", "on", "yes", "true"].includes(v.trim().toLowerCase());
}

/** The options the environment sets: HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, the cache folder. */
export function hubOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): Pick<HubOptions, "endpoint" | "token" | "offline" | "cacheDir"> {
  return {
    endpoint: env.HF_ENDPOINT || undefined,
    token: env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined,
    offline: envTrue(env.HF_HUB_OFFLINE),
    cacheDir: hubCacheDir(env),
  };
}

export interface PlannedFile extends HubFile {
  /** Already in the cache (blob present with the right size): not fetched. */
  readonly cached: boolean;
}

export interface PullPlan {
  readonly repo: string;
  readonly revision: string;
  readonly commit: string;
  readonly kind: "safetensors" | "gguf";
  readonly quant?: string;
  readonly files: readonly PlannedFile[];
  /** Bytes of all files, and of those still to fetch. */
  readonly totalBytes: number;
  readonly fetchBytes: number;
}

export interface PullResult extends PullPlan {
  /** snapshots/<commit> in the cache. */
  readonly snapshot: string;
  /** What the loaders open: the snapshot folder, or the GGUF file in it. */
  readonly modelPath: string;
  /** True when nothing was asked of the network (offline, or the fallback to the cache). */
  readonly fromCache: boolean;
}

// ------------------------------------------------------------------------------------------- the hub's API

interface Ctx {
  readonly repo: string;
  readonly endpoint: string;
  readonly revision: string;
  readonly fetch: typeof fetch;
  readonly tokenSet: boolean;
}

/**
 * fetch with the token added for the hub's own host only: a redirect to a CDN (LFS files) carries signed URLs
 * and must not receive the user's token.
 */
function hubFetch(endpoint: string, token: string | undefined, base: typeof fetch): typeof fetch {
  const origin = new URL(endpoint).origin;
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = new Headers(init?.headers);
    if (token && url.origin === origin) headers.set("Authorization", `Bearer ${token}`);
    else headers.delete("Authorization");
    // the API calls (small JSON) get a deadline; transfers bring their own signal, reset while bytes arrive
    return base(url, { ...init, headers, signal: init?.signal ?? AbortSignal.timeout(API_TIMEOUT_MS) });
  };
}

const API_TIMEOUT_MS = 60_000;

/** A network failure (no answer at all, or none in time), as opposed to an HTTP error status. */
function isNetworkError(e: unknown): boolean {
  if (!(e instanceof Error) || e instanceof MlaError) return false;
  return e instanceof TypeError || e.name === "TimeoutError" || typeof (e as NodeJS.ErrnoException).code === "string";
}

/** Why a request failed, shortly: the system's error code where there is one (ECONNREFUSED, UND_ERR_SOCKET: cut). */
function causeText(e: unknown): string {
  const c = (e as { cause?: { code?: string; message?: string } }).cause;
  const code = c?.code ?? (e as NodeJS.ErrnoException).code;
  return code ? `the connection failed (${code})` : (c?.message ?? (e as Error).message);
}

/** An API or download error status as one line that says what to do. The token itself is never part of it. */
function statusError(ctx: Ctx, status: number, what: string, hubMessage?: string): MlaError {
  const where = `${ctx.repo}@${ctx.revision}`;
  if (status === 401) {
    return new MlaError(ctx.tokenSet
      ? `${where}: the hub refused HF_TOKEN (401): the token is invalid or has no access to this repository`
      : `${where}: the hub answered 401 (a private or gated repository, or none of that name): set HF_TOKEN to a token with access`);
  }
  if (status === 403) return new MlaError(`${where}: access denied (403)${hubMessage ? `: ${hubMessage}` : ""}; for a gated model, accept its terms on the hub with the account HF_TOKEN belongs to`);
  if (status === 404) return new MlaError(`${where}: ${what} not found (404)${hubMessage ? `: ${hubMessage}` : ""}`);
  return new MlaError(`${where}: ${what}: the hub answered ${status}${hubMessage ? `: ${hubMessage}` : ""}`);
}

/** Errors of the API calls, as MlaErrors. */
async function api<T>(ctx: Ctx, what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof HubApiError) {
      const msg = typeof e.data?.error === "string" ? e.data.error : undefined;
      throw statusError(ctx, e.statusCode, what, msg);
    }
    if (isNetworkError(e)) {
      const code = (e as { cause?: { code?: string } }).cause?.code ?? (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new NetworkError(`cannot reach ${ctx.endpoint} (${code})`, ": check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the cache");
    }
    if (e instanceof MlaError) throw e;
    // not the hub's JSON (a proxy's page, a wrong HF_ENDPOINT): one line, not a stack
    throw new MlaError(`${ctx.repo}@${ctx.revision}: unexpected answer from ${ctx.endpoint} for the ${what} (${(e as Error).message}): is HF_ENDPOINT a Hugging Face hub?`);
  }
}

/** The hub could not be reached (not an HTTP error): the one failure the cache may stand in for. */
class NetworkError extends MlaError {
  constructor(readonly what: string, advice: string) {
    super(what + advice);
  }
}

/** The commit a revision points at, and the repository's files at that commit. */
async function listRepo(ctx: Ctx): Promise<{ commit: string; files: HubFile[] }> {
  let commit = ctx.revision;
  if (!COMMIT_RE.test(commit)) {
    const info = await api(ctx, "revision", () => modelInfo({ name: ctx.repo, revision: ctx.revision, hubUrl: ctx.endpoint, additionalFields: ["sha"], fetch: ctx.fetch }));
    commit = String(info.sha);
    if (!COMMIT_RE.test(commit)) throw new MlaError(`${ctx.repo}@${ctx.revision}: the hub gave no commit id for the revision`);
  }
  const files: HubFile[] = [];
  await api(ctx, "revision", async () => {
    for await (const e of listFiles({ repo: { type: "model", name: ctx.repo }, revision: commit, recursive: true, hubUrl: ctx.endpoint, fetch: ctx.fetch })) {
      if (e.type === "file") files.push({ path: checkRepoPath(e.path), size: e.size, oid: e.oid, lfsOid: e.lfs?.oid });
    }
  });
  return { commit, files };
}

// ------------------------------------------------------------------------------------------- downloads

/** The cache's name for a file's bytes: the LFS sha256, else the git blob sha1 (huggingface_hub's normalised ETag). */
function etagOf(f: HubFile): string {
  const e = f.lfsOid ?? f.oid;
  if (!e) throw new MlaError(`the hub listed ${f.path} without a hash: cannot name or verify it`);
  return e;
}

interface Hasher {
  hash: Hash;
  readonly algo: string;
  readonly want: string;
}

/** The hash the hub gives for a file: sha256 of the content (LFS), or git's sha1 of "blob <size>\0" + content. */
function newHasher(f: HubFile): Hasher {
  if (f.lfsOid) return { hash: createHash("sha256"), algo: "sha256", want: f.lfsOid };
  const hash = createHash("sha1").update(`blob ${f.size}\0`);
  return { hash, algo: "git sha1", want: f.oid ?? "" };
}

function fileSize(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return -1;
  }
}

/** Hash the bytes already on disk (a resumed download's first part) so the hash covers the whole file. */
async function hashPrefix(hash: Hash, path: string, bytes: number): Promise<void> {
  if (bytes <= 0) return;
  for await (const chunk of fs.createReadStream(path, { start: 0, end: bytes - 1 })) hash.update(chunk as Buffer);
}

/** A lock beside huggingface_hub's own (.locks/), so two mla processes never append to one .incomplete file. */
function lockBlob(cacheDir: string, repoDir: string, etag: string): () => void {
  const dir = nodePath.join(cacheDir, ".locks", nodePath.basename(repoDir));
  fs.mkdirSync(dir, { recursive: true });
  const file = nodePath.join(dir, `${etag}.mla-lock`);
  for (let i = 0; i < 2; i++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: "wx" });
      return () => fs.rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(fs.readFileSync(file, "utf8"));
      if (pid > 0 && pid !== process.pid && isAlive(pid)) throw new MlaError(`another mla process (pid ${pid}) is downloading ${etag} into ${repoDir}: wait for it`);
      fs.rmSync(file, { force: true }); // left by a process that died
    }
  }
  throw new MlaError(`cannot lock ${file}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** GET with the redirects followed by hand, so the token goes to the hub's host only and the hub's headers can be read. */
async function getFollowing(ctx: Ctx, url: string, headers: Record<string, string>, signal: AbortSignal): Promise<{ res: Response; repoCommit: string | null }> {
  let repoCommit: string | null = null;
  for (let hop = 0; hop < 10; hop++) {
    const res = await ctx.fetch(url, { headers, redirect: "manual", signal });
    repoCommit ??= res.headers.get("x-repo-commit");
    const loc = res.headers.get("location");
    if (res.status >= 300 && res.status < 400 && loc) {
      await res.body?.cancel();
      url = new URL(loc, url).href;
      continue;
    }
    return { res, repoCommit };
  }
  throw new MlaError(`${ctx.repo}: too many redirects fetching ${url}`);
}

function resolveUrl(ctx: Ctx, commit: string, path: string): string {
  return `${ctx.endpoint}/${ctx.repo}/resolve/${commit}/${path.split("/").map(encodeURIComponent).join("/")}`;
}

interface Transfer {
  readonly ctx: Ctx;
  readonly commit: string;
  readonly retries: number;
  readonly retryDelayMs: number;
  readonly idleTimeoutMs: number;
  readonly log: (line: string) => void;
  /** Called with the number of new bytes on disk (negative when a file restarts from 0). */
  readonly progress: (delta: number) => void;
}

/** One attempt: append the rest of the file to `tmp` from byte `have`. Returns the bytes on disk after it. */
async function fetchRange(t: Transfer, f: HubFile, tmp: string, have: number, hasher: Hasher, restart: () => void): Promise<number> {
  const ac = new AbortController();
  let timer = setTimeout(() => ac.abort(new Error(`no data for ${t.idleTimeoutMs / 1000} s`)), t.idleTimeoutMs);
  const headers: Record<string, string> = { "Accept-Encoding": "identity" };
  if (have > 0) headers.Range = `bytes=${have}-`;
  try {
    const { res, repoCommit } = await getFollowing(t.ctx, resolveUrl(t.ctx, t.commit, f.path), headers, ac.signal);
    if (repoCommit && repoCommit !== t.commit) throw new MlaError(`${t.ctx.repo}: asked for ${f.path} at ${t.commit}, the hub answered for commit ${repoCommit}`);
    if (res.status === 200 && have > 0) {
      restart();
      have = 0;
    } else if (res.status === 206) {
      const start = Number(/^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "")?.[1]);
      if (start !== have) throw new MlaError(`${t.ctx.repo}: asked for ${f.path} from byte ${have}, the server sent from ${start}`);
    } else if (res.status !== 200) {
      const err = statusError(t.ctx, res.status, f.path);
      await res.body?.cancel();
      throw res.status >= 500 || res.status === 429 ? new RetryableError(err.message) : err;
    }
    if (!res.body) throw new RetryableError(`${f.path}: empty response`);
    const fd = fs.openSync(tmp, have > 0 ? "a" : "w");
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        clearTimeout(timer);
        timer = setTimeout(() => ac.abort(new Error(`no data for ${t.idleTimeoutMs / 1000} s`)), t.idleTimeoutMs);
        if (have + chunk.length > f.size) throw new MlaError(`${t.ctx.repo}: ${f.path} is longer than the ${f.size} bytes the hub listed`);
        for (let off = 0; off < chunk.length; ) off += fs.writeSync(fd, chunk, off, chunk.length - off);
        hasher.hash.update(chunk);
        have += chunk.length;
        t.progress(chunk.length);
      }
    } finally {
      fs.closeSync(fd);
    }
    return have;
  } finally {
    clearTimeout(timer);
  }
}

/** An HTTP status worth retrying (5xx, 429). */
class RetryableError extends MlaError {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Errors of the local disk (full, not writable): retrying cannot help, and a half-written chunk would spoil the hash. */
function isDiskError(e: unknown): boolean {
  const sys = (e as NodeJS.ErrnoException).syscall;
  return sys === "open" || sys === "write" || sys === "close" || sys === "ftruncate";
}

/**
 * Fetch one file into blobs/<etag>: resume `<blob>.incomplete` with an HTTP Range request, retry a cut or stalled
 * connection with backoff (a try that brought bytes resets the count), then check the size and the hash before
 * the blob takes its final name. A wrong hash deletes the download.
 */
async function fetchBlob(t: Transfer, f: HubFile, blob: string): Promise<void> {
  const tmp = `${blob}.incomplete`;
  if (f.size === 0) fs.writeFileSync(tmp, "");
  let have = Math.max(0, fileSize(tmp));
  if (have > f.size) {
    fs.rmSync(tmp);
    have = 0;
  }
  const hasher = newHasher(f);
  await hashPrefix(hasher.hash, tmp, have);
  t.progress(have);
  // the server ignored the range: the file starts over, and its hash with it
  const restart = (): void => {
    t.progress(-have);
    fs.truncateSync(tmp, 0);
    hasher.hash = newHasher(f).hash;
  };
  let fails = 0;
  while (have < f.size) {
    const before = have;
    try {
      have = await fetchRange(t, f, tmp, have, hasher, restart);
      if (have < f.size) throw new RetryableError(`the connection closed at byte ${have} of ${f.size}`);
    } catch (e) {
      if ((e instanceof MlaError && !(e instanceof RetryableError)) || isDiskError(e)) throw e;
      have = Math.max(0, fileSize(tmp));
      fails = have > before ? 1 : fails + 1;
      const why = e instanceof RetryableError ? e.message : causeText(e);
      if (fails > t.retries) throw new MlaError(`${t.ctx.repo}: downloading ${f.path} failed ${fails} times (${why}); run again to resume from byte ${have}`);
      const wait = t.retryDelayMs * 2 ** (fails - 1);
      t.log(`${f.path}: ${why}; retrying in ${(wait / 1000).toFixed(1)} s from byte ${have}`);
      await sleep(wait);
    }
  }
  const got = hasher.hash.digest("hex");
  if (got !== hasher.want) {
    fs.rmSync(tmp, { force: true });
    t.progress(-have);
    throw new MlaError(`${t.ctx.repo}: ${f.path} is corrupt: its ${hasher.algo} is ${got}, the hub lists ${hasher.want} (the download was deleted; run again to fetch it afresh)`);
  }
  fs.renameSync(tmp, blob);
}

// ------------------------------------------------------------------------------------------- pull

function plan(repo: string, revision: string, commit: string, chosen: ModelFiles, repoDir: string): PullPlan {
  const files = chosen.files.map((f) => ({ ...f, cached: fileSize(blobPath(repoDir, etagOf(f))) === f.size }));
  const totalBytes = files.reduce((s, f) => s + f.size, 0);
  const toFetch = new Map(files.filter((f) => !f.cached).map((f) => [etagOf(f), f.size])); // a blob two files share counts once
  return { repo, revision, commit, kind: chosen.kind, quant: chosen.quant, files, totalBytes, fetchBytes: [...toFetch.values()].reduce((s, n) => s + n, 0) };
}

function result(p: PullPlan, repoDir: string, entry: string, fromCache: boolean): PullResult {
  const snapshot = snapshotDir(repoDir, p.commit);
  return { ...p, snapshot, modelPath: entry ? nodePath.join(snapshot, entry) : snapshot, fromCache };
}

/** A sharded checkpoint's index names its shards: all of them must be in the snapshot. */
function checkShards(repo: string, snapshot: string, files: readonly HubFile[]): void {
  if (!files.some((f) => f.path === "model.safetensors.index.json")) return;
  const index = JSON.parse(fs.readFileSync(nodePath.join(snapshot, "model.safetensors.index.json"), "utf8")) as { weight_map?: Record<string, string> };
  const missing = [...new Set(Object.values(index.weight_map ?? {}))].filter((s) => !files.some((f) => f.path === s));
  if (missing.length) throw new MlaError(`${repo}: model.safetensors.index.json names ${missing[0]}${missing.length > 1 ? ` and ${missing.length - 1} more` : ""}, which the snapshot lacks`);
}

/** The model as the cache holds it, without the network. */
function fromCache(repo: string, quant: string | undefined, revision: string, cacheDir: string, why: string): PullResult {
  const repoDir = repoCacheDir(cacheDir, repo);
  const commit = cachedCommit(repoDir, revision);
  const listing = commit ? listSnapshot(repoDir, commit) : [];
  if (!commit || !listing.length) {
    throw new MlaError(`${HUB_PREFIX}${repo}${quant ? `:${quant}` : ""} (revision ${revision}) is not in the cache ${cacheDir} (${why}): fetch it first with \`mla pull ${repo}${quant ? `:${quant}` : ""}\` while online`);
  }
  let chosen: ModelFiles;
  try {
    chosen = selectModelFiles(repo, listing, quant);
  } catch (e) {
    if (!(e instanceof MlaError)) throw e;
    throw new MlaError(`${e.message} (in the cached snapshot ${commit.slice(0, 12)}, ${why}; \`mla pull\` fetches what is missing)`);
  }
  const p: PullPlan = {
    repo, revision, commit, kind: chosen.kind, quant: chosen.quant, files: chosen.files.map((f) => ({ ...f, cached: true })),
    totalBytes: chosen.files.reduce((s, f) => s + f.size, 0), fetchBytes: 0,
  };
  checkShards(repo, snapshotDir(repoDir, commit), chosen.files);
  return result(p, repoDir, chosen.entry, true);
}

/**
 * Fetch a model from the hub into the Hugging Face cache (only the files it needs; files already there are not
 * fetched again) and return where it is. Offline (HF_HUB_OFFLINE=1), the cache alone answers.
 */
export async function pullModel(ref: string | HubRef, options: HubOptions = {}): Promise<PullResult> {
  const { repo, quant } = typeof ref === "string" ? parseHubRef(ref) : ref;
  const env = hubOptionsFromEnv();
  const o = { ...env, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as HubOptions & typeof env;
  const revision = o.revision ?? "main";
  const cacheDir = o.cacheDir ?? hubCacheDir();
  if (o.offline) return fromCache(repo, quant, revision, cacheDir, "HF_HUB_OFFLINE is set");
  const endpoint = (o.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, "");
  const ctx: Ctx = { repo, endpoint, revision, fetch: hubFetch(endpoint, o.token, o.fetch ?? fetch), tokenSet: !!o.token };
  const log = o.log ?? (() => {});

  let listed: { commit: string; files: HubFile[] };
  try {
    listed = await listRepo(ctx);
  } catch (e) {
    if (!(e instanceof NetworkError) || !o.cacheFallback) throw e;
    const cached = fromCache(repo, quant, revision, cacheDir, e.message);
    log(`${e.what}; using the cached ${repo} at ${cached.commit.slice(0, 12)}`);
    return cached;
  }
  const repoDir = repoCacheDir(cacheDir, repo);
  const chosen = selectModelFiles(repo, listed.files, quant);
  const p = plan(repo, revision, listed.commit, chosen, repoDir);
  o.onPlan?.(p);

  let done = 0;
  const t: Transfer = {
    ctx, commit: listed.commit, log,
    retries: o.retries ?? 5, retryDelayMs: o.retryDelayMs ?? 1000, idleTimeoutMs: o.idleTimeoutMs ?? 60_000,
    progress: (d) => o.onProgress?.((done += d), p.fetchBytes),
  };
  fs.mkdirSync(nodePath.join(repoDir, "blobs"), { recursive: true });
  // files with the same content share one blob: it is fetched once (two transfers would append to one file)
  const inFlight = new Map<string, Promise<void>>();
  const fetchOnce = async (f: PlannedFile, etag: string): Promise<void> => {
    const unlock = lockBlob(cacheDir, repoDir, etag);
    try {
      const blob = blobPath(repoDir, etag);
      if (fileSize(blob) !== f.size) await fetchBlob(t, f, blob);
    } finally {
      unlock();
    }
  };
  const fetchOne = async (f: PlannedFile): Promise<void> => {
    const etag = etagOf(f);
    if (!f.cached) {
      if (!inFlight.has(etag)) inFlight.set(etag, fetchOnce(f, etag));
      await inFlight.get(etag);
    }
    linkSnapshotFile(repoDir, listed.commit, f.path, etag);
  };
  // a few files at a time (a sharded checkpoint is many files; one stream from a CDN is often slower than the
  // line). A failure lets the other transfers finish, so their bytes are kept, and is reported after them.
  const queue = [...p.files];
  const worker = async (): Promise<void> => {
    for (let f = queue.shift(); f; f = queue.shift()) await fetchOne(f);
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.max(1, o.concurrency ?? 4) }, worker));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  writeRef(repoDir, revision, listed.commit);
  checkShards(repo, snapshotDir(repoDir, listed.commit), p.files);
  return result(p, repoDir, chosen.entry, false);
}
