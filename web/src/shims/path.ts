/**
 * node:path in the browser bundle (web/vite.config.ts points `node:path` imports here): POSIX paths over the page's
 * Blob file system (./fs.ts), whose root "/" stands in for the working directory. Only what the loaders use.
 */
export const sep = "/";

/** Collapse "//", "." and ".." (never above the root). */
export function normalize(p: string): string {
  const abs = p.startsWith("/");
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (!part || part === ".") continue;
    if (part === "..") {
      if (out.length && out[out.length - 1] !== "..") out.pop();
      else if (!abs) out.push("..");
    } else out.push(part);
  }
  const s = out.join("/");
  return abs ? `/${s}` : s || ".";
}

export function join(...parts: string[]): string {
  return normalize(parts.filter((p) => p).join("/"));
}

export function isAbsolute(p: string): boolean {
  return p.startsWith("/");
}

/** Absolute path of the parts, resolved against "/" (the page has no other working directory). */
export function resolve(...parts: string[]): string {
  let p = "";
  for (const part of parts) p = isAbsolute(part) ? part : `${p}/${part}`;
  return normalize(`/${p}`);
}

export function basename(p: string, ext?: string): string {
  const base = normalize(p).split("/").pop() ?? "";
  return ext && base.endsWith(ext) && base !== ext ? base.slice(0, -ext.length) : base;
}

export function dirname(p: string): string {
  const n = normalize(p), i = n.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : n.slice(0, i);
}

export function extname(p: string): string {
  const b = basename(p), i = b.lastIndexOf(".");
  return i > 0 ? b.slice(i) : "";
}

/** path.posix: the same functions (the page has only POSIX paths). */
export const posix = { sep, normalize, join, isAbsolute, resolve, basename, dirname, extname };
