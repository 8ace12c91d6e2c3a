/**
 * node:fs in the browser bundle (web/vite.config.ts points `node:fs` imports here): a read-only file system over
 * Blobs (picked files, Cache Storage entries, fetched files), so the engine's own loaders run unchanged in the page:
 * safetensors folders and their index (src/model/checkpoint.ts), GGUF files and split sets (src/model/gguf/),
 * config.json and tokenizer.json.
 *
 * The loaders read synchronously; a Blob can only be read asynchronously on the page's thread. So a read whose bytes
 * are not in memory throws NeedBytes, and `withBytes(fn)` catches it, reads that range of the Blob, and runs fn again
 * (opening a checkpoint or loading one tensor has no side effect before its reads finish). A call keeps only the
 * ranges its fn read: a model is read one tensor at a time, and no file is ever held whole (a 2-30B model would not
 * fit in one ArrayBuffer). Small text files (config, tokenizer) are read whole when mounted, for readFileSync.
 */
import { basename, resolve } from "./path.js";

/** Files read whole at mount (what readFileSync serves): configs, tokenizers, templates, up to this size. */
const WHOLE_MAX = 64 * 1024 * 1024;
const WHOLE_RE = /\.(json|jinja|model|txt)$/i;
/** Smallest range read on a miss: headers are parsed in many small reads (a GGUF's metadata can be megabytes). */
const WINDOW = 4 * 1024 * 1024;

interface File {
  readonly blob: Blob;
  whole?: Uint8Array;
}

interface Range {
  readonly path: string;
  readonly pos: number;
  readonly bytes: Uint8Array;
}

const files = new Map<string, File>();
const fds = new Map<number, string>();
let nextFd = 3;
/** Bytes read for the running withBytes call. */
let ranges: Range[] = [];
let busy = false;

/** A read of bytes not yet in memory: withBytes reads them and runs its function again. */
export class NeedBytes extends Error {
  constructor(readonly path: string, readonly pos: number, readonly len: number) {
    super(`${path}: bytes ${pos}..${pos + len} are read only inside withBytes`);
  }
}

interface FsError extends Error {
  code: string;
}

function fsError(code: string, syscall: string, path: string): FsError {
  return Object.assign(new Error(`${code}: ${syscall} '${path}'`), { code });
}

export interface BlobStats {
  readonly size: number;
  readonly mtimeMs: number;
  isFile(): boolean;
  isDirectory(): boolean;
}

function stats(size: number, dir: boolean): BlobStats {
  return { size, mtimeMs: 0, isFile: () => !dir, isDirectory: () => dir };
}

function isDir(p: string): boolean {
  if (p === "/") return true;
  for (const f of files.keys()) if (f.startsWith(`${p}/`)) return true;
  return false;
}

/** Mount `entries` (relative path -> Blob) under the folder `dir`; small text files are read whole now. */
export async function mount(dir: string, entries: Iterable<readonly [string, Blob]>): Promise<void> {
  const root = resolve(dir);
  for (const [rel, blob] of entries) {
    const file: File = { blob };
    if (WHOLE_RE.test(rel) && blob.size <= WHOLE_MAX) file.whole = new Uint8Array(await blob.arrayBuffer());
    files.set(resolve(root, rel), file);
  }
}

/** Forget every file under `dir` (their Blobs can then be collected). */
export function unmount(dir: string): void {
  const root = resolve(dir);
  for (const f of [...files.keys()]) if (f.startsWith(`${root}/`)) files.delete(f);
}

/** Where fn is expected to read (a tensor's bytes): read before its first try, and the size of any miss. */
export interface Expected {
  /** The file, when known (a miss anywhere else still works). */
  readonly path?: string;
  readonly pos: number;
  readonly bytes: number;
}

/**
 * Run fn (which reads through this module synchronously) until its reads are satisfied: each try that needs bytes
 * not in memory reads them from the Blob and tries again. One call at a time.
 */
export async function withBytes<T>(fn: () => T, expect?: Expected): Promise<T> {
  if (busy) throw new Error("withBytes: another read is in progress");
  busy = true;
  const hint = expect?.bytes ?? 0;
  try {
    if (expect?.path !== undefined && expect.bytes > 0) {
      const path = resolve(expect.path);
      if (files.has(path) && !files.get(path)!.whole) await readRange(new NeedBytes(path, expect.pos, expect.bytes), hint);
    }
    for (;;) {
      try {
        return fn();
      } catch (e) {
        if (!(e instanceof NeedBytes)) throw e;
        await readRange(e, hint);
      }
    }
  } finally {
    ranges = [];
    busy = false;
  }
}

async function readRange(miss: NeedBytes, hint: number): Promise<void> {
  const f = files.get(miss.path);
  if (!f) throw fsError("ENOENT", "read", miss.path);
  // a known read (a tensor) is read as it is; header parsing, many small reads, a window at a time
  const end = Math.min(f.blob.size, miss.pos + Math.max(miss.len, hint || WINDOW));
  const bytes = new Uint8Array(await f.blob.slice(miss.pos, end).arrayBuffer());
  if (bytes.byteLength !== end - miss.pos) throw new Error(`${basename(miss.path)}: read ${bytes.byteLength} of ${end - miss.pos} bytes at ${miss.pos} (file changed?)`);
  ranges.push({ path: miss.path, pos: miss.pos, bytes });
}

function file(p: string, syscall: string): File {
  const f = files.get(resolve(p));
  if (!f) throw fsError(isDir(resolve(p)) ? "EISDIR" : "ENOENT", syscall, p);
  return f;
}

// ---- the node:fs functions the loaders call --------------------------------------------------------------------

export function existsSync(p: string): boolean {
  const r = resolve(p);
  return files.has(r) || isDir(r);
}

export function statSync(p: string): BlobStats {
  const r = resolve(p);
  const f = files.get(r);
  if (f) return stats(f.blob.size, false);
  if (isDir(r)) return stats(0, true);
  throw fsError("ENOENT", "stat", p);
}

/** Names in a folder (files and subfolders), sorted. */
export function readdirSync(p: string): string[] {
  const r = resolve(p);
  if (!isDir(r)) throw fsError(files.has(r) ? "ENOTDIR" : "ENOENT", "scandir", p);
  const prefix = r === "/" ? "/" : `${r}/`, names = new Set<string>();
  for (const f of files.keys()) if (f.startsWith(prefix)) names.add(f.slice(prefix.length).split("/")[0]);
  return [...names].sort();
}

export function readFileSync(p: string, options?: string | { encoding?: string | null }): string | Uint8Array {
  const f = file(p, "open");
  if (!f.whole) throw new Error(`${basename(p)} (${f.blob.size} bytes) is not read whole in the browser`);
  const encoding = typeof options === "string" ? options : options?.encoding;
  return encoding ? new TextDecoder().decode(f.whole) : f.whole.slice();
}

export function openSync(p: string, flags: string | number = "r"): number {
  if (flags !== "r" && flags !== 0) throw fsError("EROFS", "open", p);
  file(p, "open");
  const fd = nextFd++;
  fds.set(fd, resolve(p));
  return fd;
}

function pathOf(fd: number): string {
  const p = fds.get(fd);
  if (p === undefined) throw fsError("EBADF", "read", String(fd));
  return p;
}

export function fstatSync(fd: number): BlobStats {
  return statSync(pathOf(fd));
}

export function closeSync(fd: number): void {
  fds.delete(fd);
}

/** Positional reads only (every loader passes its position). */
export function readSync(fd: number, dst: Uint8Array, offset: number, length: number, position: number | null): number {
  const path = pathOf(fd), f = file(path, "read");
  if (position === null) throw new Error(`${basename(path)}: reads without a position are not supported in the browser`);
  const n = Math.max(0, Math.min(length, f.blob.size - position));
  if (!n) return 0;
  if (f.whole) {
    dst.set(f.whole.subarray(position, position + n), offset);
    return n;
  }
  const r = ranges.find((x) => x.path === path && x.pos <= position && position + n <= x.pos + x.bytes.byteLength);
  if (!r) throw new NeedBytes(path, position, n);
  dst.set(r.bytes.subarray(position - r.pos, position - r.pos + n), offset);
  return n;
}
