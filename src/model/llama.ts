import { MlaError } from "../errors.js";
import { cpuOps, type Ops } from "../backends/ops.js";
import { KvCache, type CacheAlloc, type CacheData, type RowCache } from "../attention/cache.js";
import { GroupedQueryAttention } from "../attention/gqa.js";
import type { MlaMode } from "../attention/mla.js";
import { RotaryEmbedding } from "../attention/rope.js";
import { openCheckpoint } from "./checkpoint.js";
import { type ModelConfig } from "./config.js";
import { mlpForward } from "./mlp.js";
import { type LlamaWeights } from "./weights.js";
import {
  checkBatch, lastRowLogits, lmHeadLogits, residualStack,
  CpuDecoder, type BatchForwardOptions, type BatchItem, type ForwardOptions, type LoadOptions, type ModelState,
} from "./causal-lm.js";
import { loadConfig, loadLlamaWeights } from "./families/index.js";

/** Per-sequence state of a GQA model: one K/V cache per layer (n_kv heads of head_dim each, K and V). */
export class KvRunState implements ModelState {
  readonly caches: KvCache[];

  constructor(c: ModelConfig, capacity = 64, alloc?: CacheAlloc) {
    const rows = Math.min(capacity, c.maxPositionEmbeddings);
    this.caches = Array.from({ length: c.numLayers }, () =>
      new KvCache(c.numKvHeads, c.headDim, c.headDim, rows, c.maxPositionEmbeddings, alloc));
  }

  get position(): number {
    return this.caches[0].length;
  }

  get cacheBytes(): number {
    return this.caches.reduce((s, c) => s + c.bytes, 0);
  }

  get rowCaches(): readonly RowCache<CacheData>[] {
    return this.caches.flatMap((c) => [c.k, c.v]);
  }

  truncate(n: number): void {
    for (const c of this.caches) c.truncate(n);
  }
}

/**
 * A Llama-layout decoder (llama, qwen2, mistral): embeddings, then per layer RMSNorm, GQA with RoPE by halves
 * (optional q/k/v/o biases, optional sliding window), RMSNorm, dense SwiGLU; final norm, lm_head.
 */
export class LlamaModel extends CpuDecoder<KvRunState> {
  readonly attention: GroupedQueryAttention[];

  constructor(readonly config: ModelConfig, readonly weights: LlamaWeights, readonly ops: Ops = cpuOps) {
    super();
    const c = config;
    if (c.attention !== "gqa") throw new MlaError(`LlamaModel runs llama, qwen2 and mistral checkpoints; ${c.modelType} is an MLA model (load it with loadModel)`);
    const rope = new RotaryEmbedding(c.rope, c.headDim);
    const dims = {
      hidden: c.hiddenSize, nHeads: c.numHeads, nKvHeads: c.numKvHeads, headDim: c.headDim,
      ropeStyle: "halves" as const, window: c.slidingWindow ?? undefined,
    };
    // transformers' LlamaAttention scales by head_dim^-0.5 whatever the rope type
    this.attention = weights.layers.map((l) => new GroupedQueryAttention(dims, l.attn, rope, 1 / Math.sqrt(c.headDim), ops));
  }

  static load(dir: string, opts: LoadOptions = {}): LlamaModel {
    const config = loadConfig(dir);
    if (config.attention !== "gqa") throw new MlaError(`LlamaModel loads llama, qwen2 and mistral checkpoints; ${dir} is ${config.modelType} (use loadModel)`);
    if ((opts.cacheType ?? "F32") !== "F32") throw new MlaError(`--cache-type ${opts.cacheType?.toLowerCase()} applies to MLA models only (${config.modelType} keeps its K/V cache in f32)`);
    const ckpt = openCheckpoint(dir);
    try {
      const ops = opts.ops ?? cpuOps;
      return new LlamaModel(config, loadLlamaWeights(config, ckpt, opts.onProgress, (w) => ops.prepare(w)), ops);
    } finally {
      ckpt.close();
    }
  }

  newState(capacity?: number): KvRunState {
    return new KvRunState(this.config, capacity, (n) => this.ops.allocCache(n));
  }

  /** Run T new tokens at positions state.position.., appending to the caches. `opts.mode` (MLA only) is ignored. */
  forward(ids: ArrayLike<number>, state: KvRunState, opts: ForwardOptions = {}): Float32Array {
    const item = [{ ids, state }];
    this.checkStates(item);
    const T = checkBatch(this.config, item);
    const h = this.hidden(item, T, opts.mode, opts.hiddenStates);
    return lmHeadLogits(this.config, this.weights, this.ops, h, T, opts.allLogits ? T : 1);
  }

  /** Several sequences in one pass (see CausalLM.forwardBatch): logits [B, V] of each item's last new position. */
  forwardBatch(items: readonly BatchItem<KvRunState>[], opts: BatchForwardOptions = {}): Float32Array {
    this.checkStates(items);
    const N = checkBatch(this.config, items);
    return lastRowLogits(this.config, this.weights, this.ops, this.hidden(items, N, opts.mode), items);
  }

  private checkStates(items: readonly BatchItem<KvRunState>[]): void {
    for (const it of items) if (!(it.state instanceof KvRunState)) throw new MlaError("this run state was made by another kind of model (use model.newState())");
  }

  /** The decoder stack over the N rows of all items (already checked): final hidden states [N, D]. */
  private hidden(items: readonly BatchItem<KvRunState>[], N: number, _mode?: MlaMode, hiddenStates?: Float32Array[]): Float32Array {
    return residualStack(this.config, this.ops, this.weights, items, N,
      (i, x) => this.attention[i].forwardBatch(x, items.map((it) => ({ T: it.ids.length, cache: it.state.caches[i] }))),
      (_i, l, x) => mlpForward(l.mlp, x, N, this.ops),
      hiddenStates);
  }
}
