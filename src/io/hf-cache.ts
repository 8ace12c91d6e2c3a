/**
 * The Hugging Face hub cache on disk, laid out as Python's huggingface_hub lays it, so that files fetched here
 * and files fetched by transformers, `hf download` or llama.cpp are the same files:
 *
 *   <cache>/models--ORG--NAME/
 *     blobs/<etag>                      the bytes; etag = the LFS sha256 for LFS files, the git blob sha1 otherwise
 *     blobs/<etag>.incomplete           a download in progress (resumed from its length)
 *     snapshots/<commit>/<path>         relative symlink to ../../blobs/<etag> (one more ../ per folder in <path>)
 *     refs/<revision>                   the commit a branch or tag pointed at when last fetched (no newline)
 *
 * No network here: hub.ts fetches, this file only names and links.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as nodePath from "node:path";
import { MlaError } from "../errors.js";

/** A 40-hex-digit git commit id: a revision that needs no ref to resolve. */
export const COMMIT_RE = /^[0-9a-f]{40}$/;

function expandHome(p: string): string {
  return p === "~" || p.startsWith("~/") ? nodePath.join(os.homedir(), p.slice(1)) : p;
}

/**
 * The hub cache folder, by huggingface_hub's precedence: $HF_HUB_CACHE (or its older name $HUGGINGFACE_HUB_CACHE),
 * else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
 */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const direct = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  if (direct) return expandHome(direct);
  if (env.HF_HOME) return nodePath.join(expandHome(env.HF_HOME), "hub");
  const xdg = env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : nodePath.join(os.homedir(), ".cache");
  return nodePath.join(xdg, "huggingface", "hub");
}

/** "ORG/NAME" -> <cache>/models--ORG--NAME (huggingface_hub's repo_folder_name for model repos). */
export function repoCacheDir(cacheDir: string, repo: string): string {
  return nodePath.join(cacheDir, ["models", ...repo.split("/")].join("--"));
}

/**
 * A path inside a repository that is safe to join onto the cache: relative, no `..`, no empty parts. The paths
 * come from the hub's tree listing, so a hostile server could otherwise write outside the cache.
 */
export function checkRepoPath(p: string): string {
  const parts = p.split("/");
  if (p.startsWith("/") || p.includes("\\") || parts.some((s) => s === "" || s === "." || s === "..")) {
    throw new MlaError(`refusing the repository path "${p}": not a plain relative path`);
  }
  return p;
}

/** A revision name used as a path under refs/ (branches may hold "/", e.g. refs/pr/1; never ".."). */
function refFile(repoDir: string, revision: string): string {
  if (revision.split("/").some((s) => s === "" || s === "." || s === "..") || revision.includes("\\")) {
    throw new MlaError(`--revision "${revision}" is not a valid branch, tag or commit name`);
  }
  return nodePath.join(repoDir, "refs", revision);
}

/** The commit a revision names in the cache: itself when it is a commit id, else refs/<revision>; undefined when not cached. */
export function cachedCommit(repoDir: string, revision: string): string | undefined {
  if (COMMIT_RE.test(revision)) return revision;
  try {
    const c = fs.readFileSync(refFile(repoDir, revision), "utf8").trim();
    return COMMIT_RE.test(c) ? c : undefined;
  } catch {
    return undefined;
  }
}

/** Write refs/<revision> = commit (atomically: a reader never sees half a hash). A commit id needs no ref. */
export function writeRef(repoDir: string, revision: string, commit: string): void {
  if (revision === commit) return;
  const file = refFile(repoDir, revision);
  fs.mkdirSync(nodePath.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, commit);
  fs.renameSync(tmp, file);
}

export function blobPath(repoDir: string, etag: string): string {
  if (!/^[0-9A-Za-z_-]+$/.test(etag)) throw new MlaError(`refusing the blob name "${etag}" from the hub: not a hash`);
  return nodePath.join(repoDir, "blobs", etag);
}

export function snapshotDir(repoDir: string, commit: string): string {
  return nodePath.join(repoDir, "snapshots", commit);
}

/**
 * Point snapshots/<commit>/<path> at blobs/<etag> with a relative symlink (as huggingface_hub's _create_symlink:
 * relative links survive moving the cache). Where symlinks are refused (Windows without developer mode), the blob
 * is copied, as huggingface_hub does.
 */
export function linkSnapshotFile(repoDir: string, commit: string, path: string, etag: string): string {
  const dst = nodePath.join(snapshotDir(repoDir, commit), checkRepoPath(path));
  const src = blobPath(repoDir, etag);
  fs.mkdirSync(nodePath.dirname(dst), { recursive: true });
  fs.rmSync(dst, { force: true });
  try {
    fs.symlinkSync(nodePath.relative(nodePath.dirname(dst), src), dst);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EACCES") throw e;
    fs.copyFileSync(src, dst);
  }
  return dst;
}

/** A file of a cached snapshot: its repository path and size (the blob's, through the link). */
export interface CachedFile {
  readonly path: string;
  readonly size: number;
}

/** The files of snapshots/<commit> whose blobs are present (a dangling link is not a file). */
export function listSnapshot(repoDir: string, commit: string): CachedFile[] {
  const root = snapshotDir(repoDir, commit);
  const out: CachedFile[] = [];
  const walk = (dir: string, prefix: string): void => {
    for (const name of fs.readdirSync(dir).sort()) {
      const full = nodePath.join(dir, name);
      let st: fs.Stats;
      try {
        st = fs.statSync(full);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(full, `${prefix}${name}/`);
      else if (st.isFile()) out.push({ path: `${prefix}${name}`, size: st.size });
    }
  };
  if (fs.existsSync(root)) walk(root, "");
  return out;
}
