/**
 * A Hugging Face model folder's weights: one or more safetensors shards seen as one name -> tensor map.
 * Only headers are read on open; tensor bytes are read on demand.
 *
 * Block-scaled FP8 releases (DeepSeek-V3/R1/V3.1, Kimi-K2; config.json's quantization_config, ./quantization.ts) are
 * seen as BF16: `X.weight` (F8_E4M3) reads with `X.weight_scale_inv` and comes back dequantized, one tensor at a
 * time; the scales are consumed, so names() does not list them.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { MlaError } from "../errors.js";
import type { Tensor } from "../tensor/tensor.js";
import { type ReadOptions, type TensorInfo, fp8ScaleName, readFp8Tensor, readHeader, readTensor } from "../io/safetensors.js";
import type { TensorStore } from "./tensor-store.js";
import { GgufCheckpoint, isGgufPath } from "./gguf/checkpoint.js";
import { readConfigJson } from "./config.js";
import { checkQuantization } from "./quantization.js";

/** A tensor as the checkpoint presents it; `fileDtype` is the file's dtype where a load converts it (F8_E4M3 -> BF16). */
export interface CheckpointTensorInfo extends TensorInfo {
  readonly fileDtype?: string;
}

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
  /** FP8 weight -> its scale tensor (empty unless config.json says the release is block-scaled FP8). */
  private readonly fp8: Map<string, TensorInfo>;
  private readonly consumed: Set<string>;
  private readonly block: readonly [number, number] | null;
  private closed = false;

  private constructor(dir: string, files: string[], tensors: Map<string, TensorInfo>, block: readonly [number, number] | null) {
    this.dir = dir;
    this.files = files;
    this.tensors = tensors;
    this.block = block;
    this.fp8 = new Map();
    for (const [name, i] of tensors) {
      const scale = block && i.dtype === "F8_E4M3" ? tensors.get(fp8ScaleName(name)) : undefined;
      if (scale) this.fp8.set(name, scale);
    }
    this.consumed = new Set([...this.fp8.values()].map((s) => s.name));
  }

  static open(dir: string): Checkpoint {
    if (!isDir(dir)) throw new MlaError(`model directory not found: ${dir}`);
    const { files, weightMap } = findWeightFiles(dir);
    const tensors = mergeHeaders(files);
    if (weightMap) checkWeightMap(dir, weightMap, tensors);
    return new Checkpoint(dir, files, tensors, fp8BlockSize(dir, tensors));
  }

  /** Every tensor name but the FP8 scales (which come with their weights). */
  names(): string[] {
    return [...this.tensors.keys()].filter((n) => !this.consumed.has(n));
  }

  has(name: string): boolean {
    return this.tensors.has(name) && !this.consumed.has(name);
  }

  /** dtype and shape as load returns them: an FP8 weight is BF16 (fileDtype F8_E4M3); begin/end are its FP8 bytes. */
  info(name: string): CheckpointTensorInfo {
    if (this.closed) throw new MlaError(`checkpoint ${this.dir} was closed`);
    const i = this.has(name) ? this.tensors.get(name) : undefined;
    if (!i) throw new MlaError(`missing tensor ${name} in ${this.dir}`);
    return this.fp8.has(name) ? { ...i, dtype: "BF16", fileDtype: i.dtype } : i;
  }

  /** A tensor, read now (an FP8 weight dequantized to BF16, row-blocks at a time, as it is read). */
  load(name: string, opts?: ReadOptions): Tensor {
    const info = this.info(name), scale = this.fp8.get(name);
    return scale ? readFp8Tensor(this.tensors.get(name)!, scale, this.block!, { ...opts, dtype: "BF16" }) : readTensor(info, opts);
  }

  /**
   * File bytes of the given tensors (all of them by default) as info() reports them; unknown names count as 0. An
   * FP8 weight counts its FP8 bytes only: its scales are 4 bytes per block (128x128 in the releases), 0.02%.
   */
  totalBytes(names?: string[]): number {
    let sum = 0;
    for (const n of names ?? this.names()) {
      if (!this.has(n)) continue;
      const i = this.tensors.get(n)!;
      sum += i.end - i.begin;
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
      out.set(name, this.load(name, { alloc: opts?.alloc }));
      done += info.end - info.begin;
      opts?.onProgress?.(done, total, name);
    }
    return out;
  }

  missing(names: string[]): string[] {
    return names.filter((n) => !this.has(n));
  }

  /** Reads hold no descriptors between calls, so closing only stops further loads. */
  close(): void {
    this.closed = true;
  }
}

/**
 * The FP8 block size when the checkpoint has F8_E4M3 tensors and config.json describes them (checkQuantization
 * refuses other quantizations); null otherwise, and F8_E4M3 tensors then show as such, for the loader to refuse.
 */
function fp8BlockSize(dir: string, tensors: Map<string, TensorInfo>): readonly [number, number] | null {
  if (![...tensors.values()].some((i) => i.dtype === "F8_E4M3")) return null;
  if (!isFile(nodePath.join(dir, "config.json"))) return null;
  return checkQuantization(readConfigJson(dir))?.blockSize ?? null;
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
