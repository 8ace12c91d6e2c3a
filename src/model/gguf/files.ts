/**
 * Which files a GGUF model is: one .gguf file, a split set (`name-00001-of-00003.gguf`, as llama.cpp's gguf-split
 * writes it: the first part holds the metadata, each part some tensors), or a folder holding one of these. The
 * headers of all parts are read into one tensor directory; tensor data stays on disk.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { MlaError } from "../../errors.js";
import { readGguf, type GgufFile, type GgufTensorInfo, type GgufValue } from "../../io/gguf.js";

const SPLIT_RE = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;

function stat(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
}

function ggufIn(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith(".gguf")).sort();
}

/** A path that names a GGUF model: a .gguf path, or a folder without config.json that holds .gguf files. */
export function isGgufPath(path: string): boolean {
  if (path.endsWith(".gguf")) return true;
  if (!stat(path)?.isDirectory() || stat(nodePath.join(path, "config.json"))) return false;
  return ggufIn(path).length > 0;
}

/** All parts of the split set that `file` (any part) belongs to, in order; [file] when it is not split. */
function splitParts(file: string): string[] {
  const m = SPLIT_RE.exec(nodePath.basename(file));
  if (!m) return [file];
  const dir = nodePath.dirname(file), n = Number(m[3]);
  const parts = Array.from({ length: n }, (_, i) => nodePath.join(dir, `${m[1]}-${String(i + 1).padStart(5, "0")}-of-${m[3]}.gguf`));
  const absent = parts.find((p) => !stat(p)?.isFile());
  if (absent) throw new MlaError(`GGUF split part ${nodePath.basename(absent)} is missing from ${dir} (incomplete download?)`);
  return parts;
}

/** The GGUF files of a model path (see the file comment). */
export function ggufFiles(path: string): string[] {
  const s = stat(path);
  if (!s) throw new MlaError(`GGUF model not found: ${path}`);
  if (s.isFile()) return splitParts(path);
  const found = ggufIn(path);
  if (!found.length) throw new MlaError(`no .gguf file in ${path}`);
  const first = found.find((f) => !SPLIT_RE.test(f) || SPLIT_RE.exec(f)![2] === "00001") ?? found[0];
  const parts = splitParts(nodePath.join(path, first));
  if (parts.length !== found.length) {
    throw new MlaError(`${path} holds ${found.length} .gguf files (${found.slice(0, 3).join(", ")}${found.length > 3 ? ", ..." : ""}): name the model file`);
  }
  return parts;
}

/** A GGUF model's parts seen as one: the first part's metadata, every part's tensors. */
export interface GgufModel {
  readonly path: string;
  readonly files: readonly GgufFile[];
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** Tensor name -> its part and directory entry. */
  readonly tensors: ReadonlyMap<string, { readonly file: GgufFile; readonly info: GgufTensorInfo }>;
}

/** Read the headers of every part (tensor data is not read). */
export function openGgufModel(path: string): GgufModel {
  const files = ggufFiles(path).map((f) => readGguf(f));
  const metadata = files[0].metadata;
  const count = metadata.get("split.count");
  if (typeof count === "number" && count !== files.length) {
    throw new MlaError(`${files[0].path}: split.count says ${count} parts, found ${files.length}`);
  }
  const tensors = new Map<string, { file: GgufFile; info: GgufTensorInfo }>();
  for (const file of files) {
    for (const info of file.tensors.values()) {
      if (tensors.has(info.name)) throw new MlaError(`GGUF tensor ${info.name} appears in two parts (${nodePath.basename(tensors.get(info.name)!.file.path)}, ${nodePath.basename(file.path)})`);
      tensors.set(info.name, { file, info });
    }
  }
  return { path, files, metadata, tensors };
}
