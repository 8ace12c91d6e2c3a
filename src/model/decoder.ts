import { MlaError } from "../errors.js";
import { weightRow } from "../backends/cpu/index.js";
import { cpuOps, type Ops } from "../backends/ops.js";
import { LatentCache, type CacheAlloc } from "../attention/cache.js";
import { MultiHeadLatentAttention, type MlaMode } from "../attention/mla.js";
import { RotaryEmbedding, attentionScale } from "../attention/rope.js";
import { Checkpoint } from "./checkpoint.js";
import { isMoeLayer, loadConfig, type ModelConfig } from "./config.js";
import { mlpForward } from "./mlp.js";
import { moeForward, type RouterKind } from "./moe.js";
import { loadWeights, type LoadProgress, type ModelWeights } from "./weights.js";

/** Per-sequence run state: one latent cache per layer; its length is the next token's position. */
export class RunState {
  readonly caches: LatentCache[];

  constructor(c: ModelConfig, capacity = 64, alloc?: CacheAlloc) {
    this.caches = Array.from({ length: c.numLayers }, () =>
      new LatentCache(c.kvLoraRank, c.qkRopeHeadDim, Math.min(capacity, c.maxPositionEmbeddings), c.maxPositionEmbeddings, alloc));
  }

  get position(): number {
    return this.caches[0].length;
  }

  /** Bytes held by the latent caches now. */
  get cacheBytes(): number {
    return this.caches.reduce((s, c) => s + c.bytes, 0);
  }

  truncate(n: number): void {
    for (const c of this.caches) c.truncate(n);
  }
}

export interface ForwardOptions {
  /** MLA form; `auto` = naive prefill, absorbed decode. */
  readonly mode?: MlaMode;
  /** Logits for every new position ([T, V]); default only the last ([1, V]). */
  readonly allLogits?: boolean;
  /** When given, receives the embedding output and each layer's output ([T, D] each), as transformers' hidden_states. */
  readonly hiddenStates?: Float32Array[];
}

export interface LoadOptions {
  readonly onProgress?: LoadProgress;
  /** Kernels to run on (default: the scalar CPU reference). Weights are prepared for them while loading. */
  readonly ops?: Ops;
}

/** A DeepSeek-V2/V3 decoder: embeddings, MLA + (dense | MoE) layers, final norm, lm_head. */
export class DeepseekModel {
  readonly attention: MultiHeadLatentAttention[];
  private readonly router: RouterKind;

  constructor(readonly config: ModelConfig, readonly weights: ModelWeights, readonly ops: Ops = cpuOps) {
    const c = config;
    const rope = new RotaryEmbedding(c.rope, c.qkRopeHeadDim);
    const scale = attentionScale(c.qkNopeHeadDim + c.qkRopeHeadDim, c.rope);
    const dims = {
      hidden: c.hiddenSize, nHeads: c.numHeads, qLoraRank: c.qLoraRank, kvLoraRank: c.kvLoraRank,
      qkNopeHeadDim: c.qkNopeHeadDim, qkRopeHeadDim: c.qkRopeHeadDim, vHeadDim: c.vHeadDim,
    };
    this.attention = weights.layers.map((l) => new MultiHeadLatentAttention(dims, l.attn, rope, scale, ops));
    this.router = c.modelType === "deepseek_v3" ? "sigmoid-grouped" : "softmax";
  }

  static load(dir: string, opts: LoadOptions = {}): DeepseekModel {
    const config = loadConfig(dir);
    const ckpt = Checkpoint.open(dir);
    try {
      const ops = opts.ops ?? cpuOps;
      return new DeepseekModel(config, loadWeights(config, ckpt, opts.onProgress, (w) => ops.prepare(w)), ops);
    } finally {
      ckpt.close();
    }
  }

  newState(capacity?: number): RunState {
    return new RunState(this.config, capacity, (n) => this.ops.allocCache(n));
  }

  /** Run T new tokens through the model at positions state.position.., appending to the caches. */
  forward(ids: ArrayLike<number>, state: RunState, opts: ForwardOptions = {}): Float32Array {
    const c = this.config, D = c.hiddenSize, T = ids.length;
    this.checkInput(ids, state);
    let h = this.embed(ids);
    opts.hiddenStates?.push(h.slice());
    const x = new Float32Array(T * D);
    for (let i = 0; i < c.numLayers; i++) {
      const l = this.weights.layers[i];
      this.ops.rmsNorm(x, h, T, D, l.inputNorm, c.rmsNormEps);
      const a = this.attention[i].forward(x, T, state.caches[i], opts.mode ?? "auto");
      for (let j = 0; j < T * D; j++) h[j] += a[j];
      this.ops.rmsNorm(x, h, T, D, l.postNorm, c.rmsNormEps);
      const f = isMoeLayer(c, i) ? moeForward(this.router, l.moe!, x, T, c, this.ops) : mlpForward(l.mlp!, x, T, this.ops);
      for (let j = 0; j < T * D; j++) h[j] += f[j];
      opts.hiddenStates?.push(h.slice());
    }
    const rows = opts.allLogits ? T : 1;
    const last = h.subarray((T - rows) * D);
    const hn = new Float32Array(rows * D);
    this.ops.rmsNorm(hn, last, rows, D, this.weights.norm, c.rmsNormEps);
    const logits = new Float32Array(rows * c.vocabSize);
    this.ops.linear(logits, hn, rows, D, this.weights.lmHead, c.vocabSize);
    return logits;
  }

  private checkInput(ids: ArrayLike<number>, state: RunState): void {
    const c = this.config;
    if (ids.length === 0) throw new MlaError("no input tokens");
    for (let i = 0; i < ids.length; i++) {
      const t = ids[i];
      if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) throw new MlaError(`token id ${t} is out of range (vocab_size ${c.vocabSize})`);
    }
    if (state.position + ids.length > c.maxPositionEmbeddings) {
      throw new MlaError(`sequence of ${state.position + ids.length} tokens exceeds the context length ${c.maxPositionEmbeddings} (max_position_embeddings)`);
    }
  }

  private embed(ids: ArrayLike<number>): Float32Array {
    const D = this.config.hiddenSize;
    const h = new Float32Array(ids.length * D), scratch = new Float32Array(D);
    for (let t = 0; t < ids.length; t++) h.set(weightRow(this.weights.embed, ids[t], D, scratch), t * D);
    return h;
  }
}
