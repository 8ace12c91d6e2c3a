/**
 * A trainable dense decoder: token embedding, per layer pre-RMSNorm -> attention -> residual, pre-RMSNorm -> SwiGLU
 * MLP -> residual, final RMSNorm, untied lm_head; mean causal-LM cross-entropy over every position.
 *
 * The attention is MLA when config.json is a dense `deepseek_v3` (./attention-mla.ts, the engine's naive form) and
 * MHA / GQA / MQA when it is `llama` (./attention-gqa.ts); ./configs.ts builds both configs.
 *
 * Parameters live in a name -> array map under exactly the Hugging Face names of the checkpoint (expectedTensors
 * of src/model/weights.ts, or llamaTensors), so they can be written as a checkpoint the engine (and transformers)
 * loads.
 *
 * Precision: the default model stores Float32Array parameters and activations (sums in float64, as the engine's
 * reference kernels); `float64: true` makes every array a Float64Array, which the finite-difference test uses.
 *
 * Initialization (seeded, see ./random.ts): every matrix N(0, initStd^2) with initStd = 0.02 by default
 * (transformers' initializer_range); `initStd: "fan-in"` uses N(0, 1/in) instead (in = the matrix's last dim).
 * Every norm weight is 1.
 */
import { MlaError } from "../errors.js";
import { isMoeLayer } from "../model/config.js";

import {
  crossEntropyLoss, embeddingBackward, embeddingForward, rmsNormBackward, siluMulBackward, type Vec,
} from "./grad/index.js";
import { Rng } from "../tensor/rng.js";
import type { WasmBackend } from "../backends/wasm/index.js";
import { TrainMatmul, type MatmulOps } from "./wasm-matmul.js";
import { llamaTensors, parseLlamaSpec, type Json } from "./configs.js";
import type { TrainAttention, TrainCtx } from "./attention.js";
import { MlaTrainAttention } from "./attention-mla.js";
import { GqaTrainAttention } from "./attention-gqa.js";
import { rmsNorm } from "../backends/cpu/norm.js";
import { expectedTensors, parseConfig } from "../model/families/index.js";

export { denseMlaConfig, llamaConfig, type DenseMlaSpec, type LlamaSpec } from "../model/families/writers.js";
export type { Json } from "../model/config.js";

export interface TrainModelOptions {
  /** PRNG seed for initialization (default 0). */
  readonly seed?: number;
  /** Standard deviation of every matrix (default 0.02), or "fan-in" for 1/sqrt(in). */
  readonly initStd?: number | "fan-in";
  /** Keep parameters and activations in float64 (finite-difference tests). Default false (float32). */
  readonly float64?: boolean;
  /**
   * Run the matrix products (forward and both backward products of every linear layer, lm_head included) on this
   * WebAssembly SIMD backend (./wasm-matmul.ts); attention, norms, RoPE and the loss stay scalar. Float32 only. The
   * caller owns the backend (closes it). Default: scalar JS everywhere (the reference).
   */
  readonly backend?: WasmBackend | null;
  /** Run the products on these instead (e.g. GpuTrainMatmul, WebGPU); overrides `backend`. Float32 only. */
  readonly matmul?: MatmulOps;
}

/** The sizes every variant shares. */
export interface TrainDims {
  readonly kind: "mla" | "gqa";
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly rmsNormEps: number;
  readonly maxPositionEmbeddings: number;
}

/** Activations of one layer kept by the forward for the backward. */
interface LayerActs {
  hIn: Vec; //   [N, D] residual stream entering the layer
  attn: unknown; // the attention block's own
  hMid: Vec; //  [N, D] after the attention residual
  xn2: Vec; //   [N, D] post_attention_layernorm(hMid)
  g: Vec; //     [N, F] gate_proj
  u: Vec; //     [N, F] up_proj
  s: Vec; //     [N, F] silu(g) * u
}

interface Saved {
  ids: Int32Array;
  targets: Int32Array;
  B: number;
  T: number;
  layers: LayerActs[];
  hLast: Vec; // [N, D] before the final norm
  hf: Vec; //    [N, D] after it
  logits: Vec; // [N, V]
  count: number;
}

function architecture(configJson: Json): { dims: TrainDims; attention: TrainAttention<unknown>; shapes: Map<string, number[]> } {
  // the registry's family decides the attention: the MLA block for deepseek-layout families, GQA for llama
  const c = parseConfig(configJson);
  if (c.attention === "gqa") {
    const s = parseLlamaSpec(configJson);
    const dims: TrainDims = {
      kind: "gqa", vocabSize: s.vocabSize, hiddenSize: s.hiddenSize, intermediateSize: s.intermediateSize, numLayers: s.numLayers,
      rmsNormEps: s.rmsNormEps, maxPositionEmbeddings: s.maxPositionEmbeddings,
    };
    return { dims, attention: new GqaTrainAttention(s) as TrainAttention<unknown>, shapes: llamaTensors(s) };
  }
  if (c.tieWordEmbeddings) throw new MlaError("training: tie_word_embeddings is not supported (lm_head is untied)");
  // the trainable decoder rotates interleaved and has no MiniCPM3-style multipliers
  if (c.ropeStyle !== "interleaved") throw new MlaError(`training: ${c.modelType} rotates RoPE by halves (rope_interleave false); only interleaved MLA RoPE is supported`);
  if (c.embedScale !== 1 || c.residualScale !== 1 || c.logitScale !== 1) throw new MlaError(`training: ${c.modelType}'s embedding/residual/logit multipliers are not supported`);
  for (let i = 0; i < c.numLayers; i++) if (isMoeLayer(c, i)) throw new MlaError(`training: layer ${i} is a MoE layer; only dense models are supported`);
  const dims: TrainDims = {
    kind: "mla", vocabSize: c.vocabSize, hiddenSize: c.hiddenSize, intermediateSize: c.intermediateSize, numLayers: c.numLayers,
    rmsNormEps: c.rmsNormEps, maxPositionEmbeddings: c.maxPositionEmbeddings,
  };
  return { dims, attention: new MlaTrainAttention(c) as TrainAttention<unknown>, shapes: expectedTensors(c) };
}

/** A dense decoder with forward (loss) and backward (gradients of the mean loss). */
export class TrainModel {
  readonly dims: TrainDims;
  /** config.json as given (written next to the weights by save). */
  readonly configJson: Json;
  /** name -> parameter, Hugging Face names and row-major [out, in] layout. */
  readonly params: Map<string, Vec>;
  /** name -> gradient of the last backward (zeroed by zeroGrad; backward accumulates). */
  readonly grads: Map<string, Vec>;
  /** name -> shape, in checkpoint order. */
  readonly shapes: Map<string, number[]>;
  readonly attention: TrainAttention<unknown>;
  private readonly ctx: TrainCtx;
  private saved: Saved | null = null;

  constructor(configJson: Json, opts: TrainModelOptions = {}) {
    if ((opts.backend || opts.matmul) && opts.float64) throw new MlaError("training: a wasm or GPU backend needs float32 parameters (float64 is scalar only)");
    const arch = architecture(configJson);
    this.dims = arch.dims;
    this.attention = arch.attention;
    this.shapes = arch.shapes;
    this.configJson = configJson;
    this.params = new Map();
    this.grads = new Map();
    const alloc = opts.float64 ? (n: number): Vec => new Float64Array(n) : (n: number): Vec => new Float32Array(n);
    const rng = new Rng(opts.seed ?? 0);
    const initStd = opts.initStd ?? 0.02;
    for (const [name, shape] of this.shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const p = alloc(n);
      if (shape.length === 1) p.fill(1);
      else {
        const std = initStd === "fan-in" ? 1 / Math.sqrt(shape[shape.length - 1]) : initStd;
        for (let i = 0; i < n; i++) p[i] = rng.normal() * std;
      }
      this.params.set(name, p);
      this.grads.set(name, alloc(n));
    }
    const params = this.params, grads = this.grads;
    this.ctx = {
      mm: opts.matmul ?? new TrainMatmul(opts.backend ?? null),
      alloc,
      p(name) {
        const v = params.get(name);
        if (!v) throw new MlaError(`training: no parameter ${name}`);
        return v;
      },
      g: (name) => grads.get(name)!,
    };
  }

  /** Number of trainable scalars. */
  get numParams(): number {
    let n = 0;
    for (const p of this.params.values()) n += p.length;
    return n;
  }

  zeroGrad(): void {
    for (const g of this.grads.values()) g.fill(0);
  }

  /**
   * Mean cross-entropy of targets given ids, a batch of B sequences of equal length T (targets[b][t] is the token
   * after ids[b][t]; -100 is ignored). Keeps the activations for `backward`.
   */
  forward(ids: readonly (readonly number[])[], targets: readonly (readonly number[])[]): number {
    return this.run(ids, targets).loss;
  }

  /** Logits [B T, V] of the batch (no loss; keeps nothing). */
  logits(ids: readonly (readonly number[])[]): Vec {
    const targets = ids.map((r) => r.map(() => -100));
    const s = this.run(ids, targets, false);
    return s.logits;
  }

  private flatten(ids: readonly (readonly number[])[], targets: readonly (readonly number[])[]): { idv: Int32Array; tgv: Int32Array; B: number; T: number } {
    const c = this.dims, B = ids.length;
    if (B === 0 || targets.length !== B) throw new MlaError("training: ids and targets must be non-empty batches of the same size");
    const T = ids[0].length;
    if (T === 0) throw new MlaError("training: empty sequences");
    if (T > c.maxPositionEmbeddings) throw new MlaError(`training: sequence length ${T} exceeds max_position_embeddings ${c.maxPositionEmbeddings}`);
    const idv = new Int32Array(B * T), tgv = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      if (ids[b].length !== T || targets[b].length !== T) throw new MlaError("training: every sequence and its targets must have the same length");
      for (let t = 0; t < T; t++) {
        const id = ids[b][t];
        if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new MlaError(`training: token id ${id} is out of range (vocab_size ${c.vocabSize})`);
        idv[b * T + t] = id;
        tgv[b * T + t] = targets[b][t];
      }
    }
    return { idv, tgv, B, T };
  }

  private run(ids: readonly (readonly number[])[], targets: readonly (readonly number[])[], keep = true): Saved & { loss: number } {
    const { idv, tgv, B, T } = this.flatten(ids, targets);
    const c = this.dims, x = this.ctx, A = x.alloc;
    const N = B * T, D = c.hiddenSize, F = c.intermediateSize, eps = c.rmsNormEps;
    let h = A(N * D);
    embeddingForward(h, x.p("model.embed_tokens.weight"), idv, N, D);
    const layers: LayerActs[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      const pre = `model.layers.${i}.`;
      const hIn = h;
      const xn = A(N * D);
      rmsNorm(xn, hIn, N, D, x.p(`${pre}input_layernorm.weight`), eps);
      const { y, saved: attn } = this.attention.forward(x, `${pre}self_attn.`, xn, B, T);
      const hMid = A(N * D);
      for (let j = 0; j < N * D; j++) hMid[j] = hIn[j] + y[j];

      const xn2 = A(N * D);
      rmsNorm(xn2, hMid, N, D, x.p(`${pre}post_attention_layernorm.weight`), eps);
      const g = A(N * F), u = A(N * F), s = A(N * F);
      x.mm.forward(g, xn2, N, D, x.p(`${pre}mlp.gate_proj.weight`), F);
      x.mm.forward(u, xn2, N, D, x.p(`${pre}mlp.up_proj.weight`), F);
      for (let j = 0; j < N * F; j++) s[j] = (g[j] / (1 + Math.exp(-g[j]))) * u[j];
      const f = A(N * D);
      x.mm.forward(f, s, N, F, x.p(`${pre}mlp.down_proj.weight`), D);
      const hOut = A(N * D);
      for (let j = 0; j < N * D; j++) hOut[j] = hMid[j] + f[j];
      layers.push({ hIn, attn, hMid, xn2, g, u, s });
      h = hOut;
    }
    const hf = A(N * D);
    rmsNorm(hf, h, N, D, x.p("model.norm.weight"), eps);
    const V = c.vocabSize;
    const logits = A(N * V);
    x.mm.forward(logits, hf, N, D, x.p("lm_head.weight"), V);
    const { loss, count } = crossEntropyLoss(null, logits, tgv, N, V);
    const saved: Saved = { ids: idv, targets: tgv, B, T, layers, hLast: h, hf, logits, count };
    this.saved = keep ? saved : null;
    return { ...saved, loss };
  }

  /**
   * Gradients of the last forward's mean loss, added into `grads` (call zeroGrad first unless accumulating).
   * `divisor` replaces the forward's token count as the mean's denominator: pass the token count of a whole
   * accumulated batch so micro-batch gradients sum to the batch mean. Frees the stored activations.
   */
  backward(divisor?: number): void {
    const sv = this.saved;
    if (!sv) throw new MlaError("training: backward() needs a forward() first");
    this.saved = null;
    const c = this.dims, x = this.ctx, A = x.alloc;
    const { B, T } = sv, N = B * T;
    const D = c.hiddenSize, F = c.intermediateSize, V = c.vocabSize, eps = c.rmsNormEps;

    const dlogits = A(N * V);
    crossEntropyLoss(dlogits, sv.logits, sv.targets, N, V, -100, divisor ?? sv.count);
    const dhf = A(N * D);
    x.mm.backwardInput(dhf, dlogits, N, V, x.p("lm_head.weight"), D);
    x.mm.backwardWeight(x.g("lm_head.weight"), dlogits, sv.hf, N, V, D);
    const dh = A(N * D);
    rmsNormBackward(dh, x.g("model.norm.weight"), sv.hLast, x.p("model.norm.weight"), dhf, N, D, eps);

    for (let i = c.numLayers - 1; i >= 0; i--) {
      const L = sv.layers[i];
      const pre = `model.layers.${i}.`;
      // MLP: h_out = h_mid + down(silu(gate xn2) * up xn2)
      const ds = A(N * F);
      x.mm.backwardInput(ds, dh, N, D, x.p(`${pre}mlp.down_proj.weight`), F);
      x.mm.backwardWeight(x.g(`${pre}mlp.down_proj.weight`), dh, L.s, N, D, F);
      const dg = A(N * F), du = A(N * F);
      siluMulBackward(dg, du, L.g, L.u, ds, N * F);
      const dxn2 = A(N * D);
      x.mm.backwardInput(dxn2, dg, N, F, x.p(`${pre}mlp.gate_proj.weight`), D);
      x.mm.backwardInput(dxn2, du, N, F, x.p(`${pre}mlp.up_proj.weight`), D, true);
      x.mm.backwardWeight(x.g(`${pre}mlp.gate_proj.weight`), dg, L.xn2, N, F, D);
      x.mm.backwardWeight(x.g(`${pre}mlp.up_proj.weight`), du, L.xn2, N, F, D);
      rmsNormBackward(dh, x.g(`${pre}post_attention_layernorm.weight`), L.hMid, x.p(`${pre}post_attention_layernorm.weight`), dxn2, N, D, eps, true);
      // attention: h_mid = h_in + attn(input_layernorm(h_in))
      const dxn = this.attention.backward(x, `${pre}self_attn.`, L.attn, dh, B, T);
      rmsNormBackward(dh, x.g(`${pre}input_layernorm.weight`), L.hIn, x.p(`${pre}input_layernorm.weight`), dxn, N, D, eps, true);
    }
    embeddingBackward(x.g("model.embed_tokens.weight"), sv.ids, dh, N, D);
  }
}
