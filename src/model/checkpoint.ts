/**
 * A Hugging Face model folder's weights: one or more safetensors shards seen as one name -> tensor map.
 * Only headers are read on open; tensor bytes are read on demand.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { MlaError } from "../errors.js";
import type { Tensor } from "../tensor/tensor.js";
import { type ReadOptions, type TensorInfo, readHeader, readTensor } from "../io/safetensors.js";
import type { TensorStore } from "./tensor-store.js";
import { GgufCheckpoint, isGgufPath } from "./gguf/checkpoint.js";

/** A model by path: a GGUF file, split set or folder holding one (./gguf/), else a safetensors folder. */
export function openCheckpoint(path: string): TensorStore {
  return isGgufPath(path) ? GgufCheckpoint.open(path) : Checkpoint.open(path);
}

export interface LoadManyOptions {
  alloc?: ReadOptions["alloc"];
  /** Called after each tensor; bytes are on-disk bytes, so the last call has doneBytes === totalBytes. */
  onProgress?: (doneBytes: number, totalBytes: number, name: string) => void;
}

const INDEX_FILE = "model.safetensors.index.json";
const SINGLE_FILE = "model.safetensors";
const SHARD_RE = /^model-(\d+)-of-(\d+)\.safetensors$/;

export class Checkpoint implements TensorStore {
  readonly dir: string;
  readonly files: string[];
  private readonly tensors: Map<string, TensorInfo>;
  private closed = false;

  private constructor(dir: string, files: string[], tensors: Map<string, TensorInfo>) {
    this.dir = dir;
    this.files = files;
    this.tensors = tensors;
  }

  static open(dir: string): Checkpoint {
    if (!isDir(dir)) throw new MlaError(`model directory not found: ${dir}`);
    const { files, weightMap } = findWeightFiles(dir);
    const tensors = mergeHeaders(files);
    if (weightMap) checkWeightMap(dir, weightMap, tensors);
    return new Checkpoint(dir, files, tensors);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    if (this.closed) throw new MlaError(`checkpoint ${this.dir} was closed`);
    const i = this.tensors.get(name);
    if (!i) throw new MlaError(`missing tensor ${name} in ${this.dir}`);
    return i;
  }

  load(name: string, opts?: ReadOptions): Tensor {
    return readTensor(this.info(name), opts);
  }

  /** On-disk bytes of the given tensors (all of them by default); unknown names count as 0. */
  totalBytes(names?: string[]): number {
    let sum = 0;
    for (const n of names ?? this.tensors.keys()) {
      const i = this.tensors.get(n);
      if (i) sum += i.end - i.begin;
    }
    return sum;
  }

  loadMany(names: string[], opts?: LoadManyOptions): Map<string, Tensor> {
    const missing = this.missing(names);
    if (missing.length) throw new MlaError(missingMessage(missing, this.dir));
    const unique = [...new Set(names)];
    const total = this.totalBytes(unique);
    const out = new Map<string, Tensor>();
    let done = 0;
    for (const name of unique) {
      const info = this.info(name);
      out.set(name, readTensor(info, { alloc: opts?.alloc }));
      done += info.end - info.begin;
      opts?.onProgress?.(done, total, name);
    }
    return out;
  }

  missing(names: string[]): string[] {
    return names.filter((n) => !this.tensors.has(n));
  }

  /** Reads hold no descriptors between calls, so closing only stops further loads. */
  close(): void {
    this.closed = true;
  }
}

function missingMessage(missing: string[], dir: string): string {
  const shown = missing.slice(0, 5).join(", ");
  const more = missing.length > 5 ? ` (and ${missing.length - 5} more)` : "";
  return `missing tensor${missing.length > 1 ? "s" : ""} ${shown}${more} in ${dir}`;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The index is authoritative when present; otherwise a lone model.safetensors, then numbered shards. */
function findWeightFiles(dir: string): { files: string[]; weightMap?: Record<string, string> } {
  const indexPath = nodePath.join(dir, INDEX_FILE);
  if (isFile(indexPath)) {
    const weightMap = readWeightMap(indexPath);
    return { files: shardsFromIndex(dir, weightMap), weightMap };
  }
  const single = nodePath.join(dir, SINGLE_FILE);
  if (isFile(single)) return { files: [single] };
  const shards = numberedShards(dir);
  if (shards.length) return { files: shards };
  throw new MlaError(`no model.safetensors or model.safetensors.index.json in ${dir}`);
}

function readWeightMap(indexPath: string): Record<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(indexPath, "utf8"));
  } catch (e) {
    throw new MlaError(`${indexPath}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const map = isRecord(json) ? json.weight_map : undefined;
  if (!isRecord(map)) throw new MlaError(`${indexPath}: no "weight_map" object`);
  const out: Record<string, string> = {};
  for (const [name, shard] of Object.entries(map)) {
    // Shard names come from a downloaded file: never let them point outside the model folder.
    if (typeof shard !== "string" || shard !== nodePath.basename(shard) || shard === "." || shard === "..") {
      throw new MlaError(`${indexPath}: weight_map entry for ${name} is not a plain file name: ${JSON.stringify(shard)}`);
    }
    out[name] = shard;
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function shardsFromIndex(dir: string, weightMap: Record<string, string>): string[] {
  const shards = [...new Set(Object.values(weightMap))];
  for (const s of shards) {
    if (!isFile(nodePath.join(dir, s))) {
      throw new MlaError(`shard ${s} named in ${INDEX_FILE} is missing from ${dir} (incomplete download?)`);
    }
  }
  return shards.map((s) => nodePath.join(dir, s));
}

/** `model-0000i-of-0000N.safetensors` without an index: all N must be there, or weights would go silently missing. */
function numberedShards(dir: string): string[] {
  const found = fs.readdirSync(dir).filter((f) => SHARD_RE.test(f)).sort();
  if (!found.length) return [];
  const m = SHARD_RE.exec(found[0]) as RegExpExecArray;
  const totalStr = m[2];
  const total = Number(totalStr);
  const width = m[1].length;
  const expected: string[] = [];
  for (let i = 1; i <= total; i++) expected.push(`model-${String(i).padStart(width, "0")}-of-${totalStr}.safetensors`);
  const have = new Set(found);
  const absent = expected.filter((f) => !have.has(f));
  if (absent.length) throw new MlaError(`shard ${absent[0]} is missing from ${dir} (incomplete download?)`);
  const stray = found.filter((f) => !expected.includes(f));
  if (stray.length) throw new MlaError(`shard ${stray[0]} in ${dir} does not belong to the ${total}-shard set`);
  return expected.map((f) => nodePath.join(dir, f));
}

function mergeHeaders(files: string[]): Map<string, TensorInfo> {
  const all = new Map<string, TensorInfo>();
  for (const f of files) {
    for (const [name, info] of readHeader(f).tensors) {
      const prev = all.get(name);
      if (prev) {
        throw new MlaError(`tensor ${name} appears in both ${nodePath.basename(prev.file)} and ${nodePath.basename(f)}`);
      }
      all.set(name, info);
    }
  }
  return all;
}

/** An index that disagrees with its shards means a mixed-up download; catch it before loading weights. */
function checkWeightMap(dir: string, weightMap: Record<string, string>, tensors: Map<string, TensorInfo>): void {
  for (const [name, shard] of Object.entries(weightMap)) {
    const info = tensors.get(name);
    if (!info || nodePath.basename(info.file) !== shard) {
      throw new MlaError(`${INDEX_FILE} in ${dir} puts ${name} in ${shard}, but that shard does not contain it`);
    }
  }
}
