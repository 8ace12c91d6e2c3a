/**
 * What the weight loader (./weights.ts) reads from: named tensors with Hugging Face names and shapes, read one at a
 * time. Two implementations: a safetensors folder (./checkpoint.ts `Checkpoint`) and a GGUF file (./gguf/).
 */
import type { Tensor } from "../tensor/tensor.js";

/** A stored tensor: dtype (a Tensor dtype, or the file's own name for one mla-ts does not read), shape, bytes. */
export interface StoredTensorInfo {
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Byte range in its file (end - begin: the bytes a load reads, for progress). */
  readonly begin: number;
  readonly end: number;
  /** The file's dtype where a load converts it (an FP8 weight loads as BF16); absent when it loads as stored. */
  readonly fileDtype?: string;
}

export interface TensorStore {
  /** The path the store was opened from, for messages. */
  readonly dir: string;
  names(): string[];
  has(name: string): boolean;
  info(name: string): StoredTensorInfo;
  load(name: string): Tensor;
  missing(names: string[]): string[];
  /** Bytes of the given tensors (all by default); unknown names count as 0. */
  totalBytes(names?: string[]): number;
  close(): void;
}
