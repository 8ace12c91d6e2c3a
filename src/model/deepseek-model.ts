import type { Tensor } from "../tensor/tensor.js";
import { MlaError } from "../errors.js";
import { cpuOps, type Ops } from "../backends/ops.js";
import { LatentCache, type CacheAlloc, type CacheData, type CacheDType, type RowCache } from "../attention/cache.js";
import { MultiHeadLatentAttention, type MlaMode } from "../attention/mla.js";
import { RotaryEmbedding, attentionScale } from "../attention/rope.js";
import { openCheckpoint } from "./checkpoint.js";
import type { ModelConfig } from "./config.js";
import { mlpForward } from "./mlp.js";
import { moeForward, prepareGate } from "./moe.js";
import { type ModelWeights } from "./weights.js";
import {
  checkBatch, lastRowLogits, lmHeadLogits, residualStack,
  CpuDecoder, type BatchForwardOptions, type BatchItem, type ForwardOptions, type LoadOptions, type ModelState,
} from "./causal-lm.js";
import { loadConfig, loadWeights } from "./families/index.js";

export type { ForwardOptions, LoadOptions } from "./causal-lm.js";

/** Per-sequence run state of an MLA model: one latent cache per layer; its length is the next token's position. */
export class RunState implements ModelState {
  readonly caches: LatentCache[];

  constructor(c: ModelConfig, capacity = 64, alloc?: CacheAlloc<CacheData>, dtype: CacheDType = "F32") {
    this.caches = Array.from({ length: c.numLayers }, () =>
      new LatentCache(c.kvLoraRank, c.qkRopeHeadDim, Math.min(capacity, c.maxPositionEmbeddings), c.maxPositionEmbeddings, alloc, dtype));
  }

  get position(): number {
    return this.caches[0].length;
  }

  /** Bytes held by the latent caches now. */
  get cacheBytes(): number {
    return this.caches.reduce((s, c) => s + c.bytes, 0);
  }

  get rowCaches(): readonly RowCache<CacheData>[] {
    return this.caches;
  }

  truncate(n: number): void {
    for (const c of this.caches) c.truncate(n);
  }
}

/** An MLA decoder (every family with attention "mla"): embeddings, MLA + (dense | MoE) layers, final norm, lm_head. */
export class DeepseekModel extends CpuDecoder<RunState> {
  readonly attention: MultiHeadLatentAttention[];
  /** Per layer, the MoE router's W_g as the backend prepared it (undefined: dense layer, or the scalar product). */
  private readonly gates: (Tensor | undefined)[];

  /** cacheType: how the latent caches store rows (F16/BF16 round each row once, when appended). */
  constructor(readonly config: ModelConfig, readonly weights: ModelWeights, readonly ops: Ops = cpuOps, readonly cacheType: CacheDType = "F32") {
    super();
    const c = config;
    if (c.attention !== "mla") throw new MlaError(`DeepseekModel runs MLA checkpoints; ${c.modelType} is a GQA model (load it with loadModel)`);
    const rope = new RotaryEmbedding(c.rope, c.qkRopeHeadDim);
    const scale = attentionScale(c.qkNopeHeadDim + c.qkRopeHeadDim, c.rope);
    const dims = {
      hidden: c.hiddenSize, nHeads: c.numHeads, qLoraRank: c.qLoraRank, kvLoraRank: c.kvLoraRank,
      qkNopeHeadDim: c.qkNopeHeadDim, qkRopeHeadDim: c.qkRopeHeadDim, vHeadDim: c.vHeadDim, ropeStyle: c.ropeStyle,
    };
    this.attention = weights.layers.map((l) => new MultiHeadLatentAttention(dims, l.attn, rope, scale, ops));
    this.gates = weights.layers.map((l) => (l.ffn.kind === "moe" ? prepareGate(l.ffn.moe, ops) : undefined));
  }

  static load(dir: string, opts: LoadOptions = {}): DeepseekModel {
    const config = loadConfig(dir);
    if (config.attention !== "mla") throw new MlaError(`DeepseekModel loads MLA checkpoints; ${dir} is ${config.modelType} (use loadModel)`);
    const ckpt = openCheckpoint(dir);
    try {
      const ops = opts.ops ?? cpuOps;
      return new DeepseekModel(config, loadWeights(config, ckpt, opts.onProgress, (w) => ops.prepare(w)), ops, opts.cacheType);
    } finally {
      ckpt.close();
    }
  }

  newState(capacity?: number): RunState {
    return new RunState(this.config, capacity, (n, dtype) => this.ops.allocCache(n, dtype), this.cacheType);
  }

  /** Run T new tokens at positions state.position.., appending to the caches. */
  forward(ids: ArrayLike<number>, state: RunState, opts: ForwardOptions = {}): Float32Array {
    const item = [{ ids, state }];
    this.checkStates(item);
    const T = checkBatch(this.config, item);
    const h = this.hidden(item, T, opts.mode ?? "auto", opts.hiddenStates);
    return lmHeadLogits(this.config, this.weights, this.ops, h, T, opts.allLogits ? T : 1);
  }

  /** Several sequences in one pass (see CausalLM.forwardBatch): logits [B, V] of each item's last new position. */
  forwardBatch(items: readonly BatchItem<RunState>[], opts: BatchForwardOptions = {}): Float32Array {
    this.checkStates(items);
    const N = checkBatch(this.config, items);
    return lastRowLogits(this.config, this.weights, this.ops, this.hidden(items, N, opts.mode ?? "auto"), items);
  }

  private checkStates(items: readonly BatchItem<RunState>[]): void {
    for (const it of items) if (!(it.state instanceof RunState)) throw new MlaError("this run state was made by another kind of model (use model.newState())");
  }

  /** The decoder stack over the N rows of all items (already checked): final hidden states [N, D]. */
  private hidden(items: readonly BatchItem<RunState>[], N: number, mode: MlaMode, hiddenStates?: Float32Array[]): Float32Array {
    const c = this.config;
    return residualStack(c, this.ops, this.weights, items, N,
      (i, x) => this.attention[i].forwardBatch(x, items.map((it) => ({ T: it.ids.length, cache: it.state.caches[i] })), mode),
      (i, l, x) => (l.ffn.kind === "moe" ? moeForward(c.router, l.ffn.moe, x, N, this.ops, this.gates[i]) : mlpForward(l.ffn.mlp, x, N, this.ops)),
      hiddenStates);
  }
}
