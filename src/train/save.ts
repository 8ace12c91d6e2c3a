/**
 * Saving a trained model as a Hugging Face checkpoint directory: config.json (deepseek_v3, dense; see
 * denseMlaConfig in ./model.ts) and model.safetensors (F32, Hugging Face names), which DeepseekModel.load and
 * transformers load unchanged.
 *
 * Every file is written atomically: to a temporary file in the same directory, fsync'd, then renamed over the
 * target (and the directory fsync'd), so a run killed mid-save leaves the previous checkpoint intact. The weights
 * are renamed before config.json; a reader that finds both always finds a complete pair once the second rename
 * lands (shapes only change when the config does, which a training run never does).
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { writeSafetensors } from "../io/safetensors.js";
import { f32Tensor, type Tensor } from "../tensor/tensor.js";
import type { Vec } from "./grad/index.js";
import type { Json } from "./model.js";

/** What save needs of a model (TrainModel has all three). */
export interface SavableModel {
  readonly configJson: Json;
  readonly params: Map<string, Vec>;
  readonly shapes: Map<string, readonly number[]>;
}

function fsyncPath(path: string, flags = "r"): void {
  const fd = fs.openSync(path, flags);
  try {
    fs.fsyncSync(fd);
  } catch (e) {
    // some platforms/filesystems refuse fsync on directories; the file data itself was synced
    if (flags !== "r" || !fs.statSync(path).isDirectory()) throw e;
  } finally {
    fs.closeSync(fd);
  }
}

function tempPath(path: string): string {
  return `${path}.tmp-${process.pid}-${Date.now().toString(36)}`;
}

/** Write via `write(tmp)`, fsync tmp, rename it to `path`, fsync the directory. The temp file is removed on failure. */
export function atomicWrite(path: string, write: (tmp: string) => void): void {
  const tmp = tempPath(path);
  try {
    write(tmp);
    fsyncPath(tmp, "r+");
    fs.renameSync(tmp, path);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  try {
    fsyncPath(join(path, ".."));
  } catch {
    // directory fsync is best-effort (not supported everywhere)
  }
}

/** Atomically write a text or binary file. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  atomicWrite(path, (tmp) => fs.writeFileSync(tmp, data));
}

/**
 * Save `model` into `dir` (created if needed) as config.json + model.safetensors. Tensors are written in the
 * model's name order as F32 (float64 parameters are rounded). `metadata` goes into the safetensors header
 * (format: "pt" is always set, as transformers expects).
 */
export function saveCheckpoint(dir: string, model: SavableModel, metadata: Record<string, string> = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors: Record<string, Tensor> = {};
  for (const [name, p] of model.params) {
    const shape = model.shapes.get(name);
    if (!shape) throw new Error(`saveCheckpoint: no shape for ${name}`);
    tensors[name] = f32Tensor(shape, p instanceof Float32Array ? p : Float32Array.from(p));
  }
  atomicWrite(join(dir, "model.safetensors"), (tmp) => writeSafetensors(tmp, tensors, { format: "pt", ...metadata }));
  writeFileAtomic(join(dir, "config.json"), JSON.stringify(model.configJson, null, 2) + "\n");
}
