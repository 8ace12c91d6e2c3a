/**
 * The one inference contract: what generation, the batch scheduler, the server and every CLI command need of a
 * model, whatever backend runs it. The CPU decoders (DeepseekModel, LlamaModel on an Ops kernel set) and the WebGPU
 * decoder (GpuModel) implement it; a CPU step is computed at once and returned as a resolved promise, a GPU step
 * resolves when its read-back arrives (so a server keeps serving sockets while the GPU works).
 */
import type { MlaMode } from "../attention/mla.js";
import type { ModelConfig } from "./config.js";
import type { LoadProgress } from "./weights.js";

/** One sequence's run state: its caches on the backend. Only the model that made a state can use it. */
export interface SequenceState {
  /** Tokens in the caches (the next token's position). */
  readonly position: number;
  /** Bytes the caches hold now. */
  readonly cacheBytes: number;
}

/** One sequence's share of a step: its new tokens (one when decoding, a prompt chunk when prefilling). */
export interface StepItem<S extends SequenceState = SequenceState> {
  readonly ids: ArrayLike<number>;
  readonly state: S;
}

export interface StepOptions {
  /**
   * MLA form: `auto` (the default) lets the backend choose per item (the CPU prefills naive and decodes absorbed);
   * `naive` or `absorb` force one, and a backend that has only one form refuses the other with an MlaError.
   */
  readonly mode?: MlaMode;
  /** With one item: logits for every new position ([T, V]) instead of the last one. */
  readonly allLogits?: boolean;
}

export interface InferenceModel<S extends SequenceState = SequenceState> {
  readonly config: ModelConfig;
  /** The kernels it runs on, for reports ("wasm-simd-relaxed, 2 threads", the GPU adapter). */
  readonly backendName: string;
  /** Exact cache bytes one token takes in a state (all layers). */
  readonly cacheBytesPerToken: number;
  /** A fresh sequence; capacity reserves cache rows up front (they grow as needed, up to the context). */
  newState(capacity?: number): S;
  /**
   * One forward pass over several sequences (continuous batching): each item's tokens are appended to its state.
   * Logits [B, V]: row b is items[b]'s last new position (or [T, V] for one item with allLogits).
   */
  step(items: readonly StepItem<S>[], opts?: StepOptions): Promise<Float32Array>;
  /**
   * Greedy shortcut: the argmax of each item's last row, computed where the logits are, so only token ids come
   * back (a GPU's read-back of 4 bytes instead of V floats). Optional: callers fall back to step.
   */
  stepArgmax?(items: readonly StepItem<S>[], opts?: StepOptions): Promise<Int32Array>;
  /**
   * A new state (capacity rows reserved, default n) whose first n positions are a copy of src's first n cache rows:
   * how a sequence starts from a cached prefix (the prefix cache, n > 1 choices) without recomputing it. The rows
   * are copied as stored (a memcpy on the CPU, copyBufferToBuffer on the GPU, queued after the work that wrote
   * them), so both states stay independent. Optional: the scheduler caches no prefixes without it.
   */
  forkState?(src: S, n: number, capacity?: number): S;
  /** Free a state's backend memory (GPU buffers, once the work already queued is done); CPU states are garbage-collected and this does nothing. */
  releaseState(state: S): void;
  /** Fill a fresh state's first n positions with random cache rows: what a long context costs to read, without its prefill. */
  fillContext(state: S, n: number, rand: () => number): void;
  /** Bytes of device memory the backend holds (GPU buffers), when it has its own. */
  readonly deviceBytes?: number;
}

/** Where models run: loads any supported checkpoint folder onto one backend. */
export interface Runtime {
  /** "cpu", "cpu-scalar", "webgpu". */
  readonly kind: string;
  /** The kernels, for reports. */
  readonly name: string;
  readonly threads: number;
  load(dir: string, opts?: { readonly onProgress?: LoadProgress }): InferenceModel;
  /** Release the backend (worker threads, the device). */
  close(): Promise<void>;
}
