import { MlaError } from "../errors.js";
import { cpuOps, type Ops } from "../backends/ops.js";
import { KvCache, type CacheAlloc, type RowCache } from "../attention/cache.js";
import { GroupedQueryAttention } from "../attention/gqa.js";
import { RotaryEmbedding } from "../attention/rope.js";
import { Checkpoint } from "./checkpoint.js";
import { loadConfig, type ModelConfig } from "./config.js";
import { mlpForward } from "./mlp.js";
import { loadLlamaWeights, type LlamaWeights } from "./weights.js";
import { checkInput, embedTokens, lmHeadLogits, type CausalLM, type ForwardOptions, type LoadOptions, type ModelState } from "./causal-lm.js";

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

  get rowCaches(): readonly RowCache[] {
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
export class LlamaModel implements CausalLM<KvRunState> {
  readonly attention: GroupedQueryAttention[];

  constructor(readonly config: ModelConfig, readonly weights: LlamaWeights, readonly ops: Ops = cpuOps) {
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
    const ckpt = Checkpoint.open(dir);
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

  /** Run T new tokens at positions state.position.., appending to the K/V caches. `opts.mode` (MLA only) is ignored. */
  forward(ids: ArrayLike<number>, state: KvRunState, opts: ForwardOptions = {}): Float32Array {
    const c = this.config, D = c.hiddenSize, T = ids.length;
    if (!(state instanceof KvRunState)) throw new MlaError("this run state was made by another kind of model (use model.newState())");
    checkInput(c, ids, state.position);
    const h = embedTokens(this.weights, D, ids);
    opts.hiddenStates?.push(h.slice());
    const x = new Float32Array(T * D);
    for (let i = 0; i < c.numLayers; i++) {
      const l = this.weights.layers[i];
      this.ops.rmsNorm(x, h, T, D, l.inputNorm, c.rmsNormEps);
      const a = this.attention[i].forward(x, T, state.caches[i]);
      for (let j = 0; j < T * D; j++) h[j] += a[j];
      this.ops.rmsNorm(x, h, T, D, l.postNorm, c.rmsNormEps);
      const f = mlpForward(l.mlp, x, T, this.ops);
      for (let j = 0; j < T * D; j++) h[j] += f[j];
      opts.hiddenStates?.push(h.slice());
    }
    return lmHeadLogits(c, this.weights, this.ops, h, T, opts.allLogits ? T : 1);
  }
}
