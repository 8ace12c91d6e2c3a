/**
 * A trainable dense DeepSeek-V3-style MLA decoder (no MoE): token embedding, per layer pre-RMSNorm -> MLA (naive
 * form) -> residual, pre-RMSNorm -> SwiGLU MLP -> residual, final RMSNorm, untied lm_head; mean causal-LM
 * cross-entropy over every position.
 *
 * Parameters live in a name -> array map under exactly the Hugging Face names of `expectedTensors(config)`
 * (src/model/weights.ts), so they can be written as a checkpoint the engine (and transformers' deepseek_v3) loads.
 * The MLA layer is the engine's naive form (src/attention/mla.ts):
 *   q      = RoPE_q(W^UQ|W^QR RMSNorm(W^DQ x))      (or q_proj x without query compression)
 *   [c|kr] = kv_a_proj_with_mqa x,  c_KV = RMSNorm(c) (eps 1e-6),  k_rope = RoPE(kr) shared by every head
 *   [k_nope|v] per head = kv_b_proj c_KV,  k = [k_nope | k_rope]
 *   out    = o_proj(causal softmax(scale q.k) v)
 * with interleaved RoPE on the last qk_rope_head_dim dims of each query head and on the shared key, positions
 * 0..T-1 within each sequence of the batch.
 *
 * Precision: the default model stores Float32Array parameters and activations (sums in float64, as the engine's
 * reference kernels); `float64: true` makes every array a Float64Array, which the finite-difference test uses.
 *
 * Initialization (seeded, see ./random.ts): every matrix N(0, initStd^2) with initStd = 0.02 by default
 * (transformers' initializer_range); `initStd: "fan-in"` uses N(0, 1/in) instead (in = the matrix's last dim).
 * Every norm weight is 1.
 */
import { MlaError } from "../errors.js";
import { LATENT_NORM_EPS } from "../attention/mla.js";
import { RotaryEmbedding, attentionScale } from "../attention/rope.js";
import { isMoeLayer, parseConfig, type ModelConfig } from "../model/config.js";
import { expectedTensors } from "../model/weights.js";
import { ropeInterleaved } from "../backends/cpu/rope.js";
import {
  attendBackward, crossEntropyLoss, embeddingBackward, embeddingForward, linearBackwardInput, linearBackwardWeight,
  rmsNormBackward, ropeInterleavedBackward, siluMulBackward, type Vec,
} from "./grad/index.js";
import { Rng } from "../generate/rng.js";
import type { WasmBackend } from "../backends/wasm/index.js";
import { TrainMatmul } from "./fast.js";

export type Json = Record<string, unknown>;

/** Sizes of a dense MLA model; the config.json it implies comes from `denseMlaConfig`. */
export interface DenseMlaSpec {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly kvLoraRank: number;
  readonly qLoraRank?: number | null;
  readonly qkNopeHeadDim: number;
  readonly qkRopeHeadDim: number;
  readonly vHeadDim: number;
  readonly maxPositionEmbeddings?: number;
  readonly rmsNormEps?: number;
  readonly ropeTheta?: number;
  readonly bosTokenId?: number | null;
  readonly eosTokenId?: number | null;
}

/**
 * config.json of a dense deepseek_v3 model in the hub spelling (top-level rope_theta, rope_scaling null,
 * n_routed_experts null and first_k_dense_replace = num_hidden_layers, so every layer is dense for both mla-ts
 * and transformers; rope_interleave true, which is how the engine and DeepSeek apply RoPE).
 */
export function denseMlaConfig(s: DenseMlaSpec): Json {
  return {
    architectures: ["DeepseekV3ForCausalLM"],
    model_type: "deepseek_v3",
    vocab_size: s.vocabSize,
    hidden_size: s.hiddenSize,
    intermediate_size: s.intermediateSize,
    moe_intermediate_size: s.intermediateSize,
    num_hidden_layers: s.numLayers,
    num_attention_heads: s.numHeads,
    num_key_value_heads: s.numHeads,
    n_shared_experts: null,
    n_routed_experts: null,
    num_experts_per_tok: null,
    first_k_dense_replace: s.numLayers,
    moe_layer_freq: 1,
    n_group: 1,
    topk_group: 1,
    routed_scaling_factor: 1.0,
    norm_topk_prob: true,
    kv_lora_rank: s.kvLoraRank,
    q_lora_rank: s.qLoraRank ?? null,
    qk_nope_head_dim: s.qkNopeHeadDim,
    qk_rope_head_dim: s.qkRopeHeadDim,
    v_head_dim: s.vHeadDim,
    hidden_act: "silu",
    max_position_embeddings: s.maxPositionEmbeddings ?? 2048,
    initializer_range: 0.02,
    rms_norm_eps: s.rmsNormEps ?? 1e-6,
    rope_theta: s.ropeTheta ?? 10000.0,
    rope_scaling: null,
    rope_interleave: true,
    attention_bias: false,
    attention_dropout: 0.0,
    tie_word_embeddings: false,
    use_cache: true,
    num_nextn_predict_layers: 0,
    bos_token_id: s.bosTokenId ?? null,
    eos_token_id: s.eosTokenId ?? null,
    torch_dtype: "float32",
  };
}

export interface TrainModelOptions {
  /** PRNG seed for initialization (default 0). */
  readonly seed?: number;
  /** Standard deviation of every matrix (default 0.02), or "fan-in" for 1/sqrt(in). */
  readonly initStd?: number | "fan-in";
  /** Keep parameters and activations in float64 (finite-difference tests). Default false (float32). */
  readonly float64?: boolean;
  /**
   * Run the matrix products (forward and both backward products of every linear layer, lm_head included) on this
   * WebAssembly SIMD backend (./fast.ts); attention, norms, RoPE and the loss stay scalar. Float32 only. The
   * caller owns the backend (closes it). Default: scalar JS everywhere (the reference).
   */
  readonly backend?: WasmBackend | null;
}

/** Activations of one layer kept by the forward for the backward. */
interface LayerActs {
  hIn: Vec; //   [N, D] residual stream entering the layer
  xn: Vec; //    [N, D] input_layernorm(hIn)
  cq: Vec | null; //  [N, qr] q_a_proj xn
  cqn: Vec | null; // [N, qr] q_a_layernorm(cq)
  q: Vec; //     [N, H, dqk] after RoPE
  a: Vec; //     [N, dc + dr] kv_a_proj_with_mqa xn (before norm/RoPE)
  ckv: Vec; //   [N, dc]
  k: Vec; //     [N, H, dqk]
  v: Vec; //     [N, H, dv]
  att: Vec; //   [N, H dv]
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

function rms(out: Vec, x: Vec, T: number, D: number, w: Vec, eps: number, xs = D, os = D): void {
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[t * xs + i] * x[t * xs + i];
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) out[t * os + i] = w[i] * (x[t * xs + i] * r);
  }
}

/** Causal attention over one sequence: q [T, H, dk], k [T, H, dk], v [T, H, dv] -> out [T, H, dv]. */
function attendCausal(out: Vec, q: Vec, k: Vec, v: Vec, T: number, H: number, dk: number, dv: number, scale: number): void {
  const p = new Float64Array(T), acc = new Float64Array(dv);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const qo = (t * H + h) * dk;
      let m = -Infinity;
      for (let s = 0; s <= t; s++) {
        const ko = (s * H + h) * dk;
        let dot = 0;
        for (let i = 0; i < dk; i++) dot += q[qo + i] * k[ko + i];
        p[s] = dot * scale;
        if (p[s] > m) m = p[s];
      }
      let sum = 0;
      for (let s = 0; s <= t; s++) sum += p[s] = Math.exp(p[s] - m);
      acc.fill(0);
      for (let s = 0; s <= t; s++) {
        const ps = p[s] / sum, vo = (s * H + h) * dv;
        for (let i = 0; i < dv; i++) acc[i] += ps * v[vo + i];
      }
      const oo = (t * H + h) * dv;
      for (let i = 0; i < dv; i++) out[oo + i] = acc[i];
    }
  }
}

/** A dense MLA decoder with forward (loss) and backward (gradients of the mean loss). */
export class TrainModel {
  readonly config: ModelConfig;
  /** config.json as given (written next to the weights by save). */
  readonly configJson: Json;
  /** name -> parameter, Hugging Face names and row-major [out, in] layout. */
  readonly params: Map<string, Vec>;
  /** name -> gradient of the last backward (zeroed by zeroGrad; backward accumulates). */
  readonly grads: Map<string, Vec>;
  /** name -> shape, in expectedTensors order. */
  readonly shapes: Map<string, number[]>;
  private readonly alloc: (n: number) => Vec;
  private readonly rope: RotaryEmbedding;
  private readonly scale: number;
  private saved: Saved | null = null;
  private readonly mm: TrainMatmul;

  constructor(configJson: Json, opts: TrainModelOptions = {}) {
    const c = parseConfig(configJson);
    if (c.tieWordEmbeddings) throw new MlaError("training: tie_word_embeddings is not supported (lm_head is untied)");
    for (let i = 0; i < c.numLayers; i++) if (isMoeLayer(c, i)) throw new MlaError(`training: layer ${i} is a MoE layer; only dense models are supported`);
    if (opts.backend && opts.float64) throw new MlaError("training: a wasm backend needs float32 parameters (float64 is scalar only)");
    this.mm = new TrainMatmul(opts.backend ?? null);
    this.config = c;
    this.configJson = configJson;
    this.alloc = opts.float64 ? (n) => new Float64Array(n) : (n) => new Float32Array(n);
    this.rope = new RotaryEmbedding(c.rope, c.qkRopeHeadDim);
    this.scale = attentionScale(c.qkNopeHeadDim + c.qkRopeHeadDim, c.rope);
    this.shapes = expectedTensors(c);
    this.params = new Map();
    this.grads = new Map();
    const rng = new Rng(opts.seed ?? 0);
    const initStd = opts.initStd ?? 0.02;
    for (const [name, shape] of this.shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const p = this.alloc(n);
      if (shape.length === 1) p.fill(1);
      else {
        const std = initStd === "fan-in" ? 1 / Math.sqrt(shape[shape.length - 1]) : initStd;
        for (let i = 0; i < n; i++) p[i] = rng.normal() * std;
      }
      this.params.set(name, p);
      this.grads.set(name, this.alloc(n));
    }
  }

  /** Number of trainable scalars. */
  get numParams(): number {
    let n = 0;
    for (const p of this.params.values()) n += p.length;
    return n;
  }

  private p(name: string): Vec {
    const v = this.params.get(name);
    if (!v) throw new MlaError(`training: no parameter ${name}`);
    return v;
  }

  private g(name: string): Vec {
    return this.grads.get(name)!;
  }

  zeroGrad(): void {
    for (const g of this.grads.values()) g.fill(0);
  }

  /** cos/sin tables for positions 0..T-1 repeated for each of B sequences ([B T, dr/2]). */
  private ropeTables(B: number, T: number): { cos: Float32Array; sin: Float32Array } {
    const { cos, sin } = this.rope.table(0, T);
    const half = this.config.qkRopeHeadDim / 2;
    const cn = new Float32Array(B * T * half), sn = new Float32Array(B * T * half);
    for (let b = 0; b < B; b++) {
      cn.set(cos, b * T * half);
      sn.set(sin, b * T * half);
    }
    return { cos: cn, sin: sn };
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

  private run(ids: readonly (readonly number[])[], targets: readonly (readonly number[])[], keep = true): Saved & { loss: number } {
    const c = this.config;
    const B = ids.length;
    if (B === 0 || targets.length !== B) throw new MlaError("training: ids and targets must be non-empty batches of the same size");
    const T = ids[0].length;
    if (T === 0) throw new MlaError("training: empty sequences");
    if (T > c.maxPositionEmbeddings) throw new MlaError(`training: sequence length ${T} exceeds max_position_embeddings ${c.maxPositionEmbeddings}`);
    const N = B * T;
    const idv = new Int32Array(N), tgv = new Int32Array(N);
    for (let b = 0; b < B; b++) {
      if (ids[b].length !== T || targets[b].length !== T) throw new MlaError("training: every sequence and its targets must have the same length");
      for (let t = 0; t < T; t++) {
        const id = ids[b][t];
        if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new MlaError(`training: token id ${id} is out of range (vocab_size ${c.vocabSize})`);
        idv[b * T + t] = id;
        tgv[b * T + t] = targets[b][t];
      }
    }
    const D = c.hiddenSize, H = c.numHeads, qr = c.qLoraRank, dc = c.kvLoraRank;
    const dn = c.qkNopeHeadDim, dr = c.qkRopeHeadDim, dv = c.vHeadDim, dqk = dn + dr, F = c.intermediateSize;
    const eps = c.rmsNormEps;
    const A = this.alloc;
    const { cos, sin } = this.ropeTables(B, T);

    let h = A(N * D);
    embeddingForward(h, this.p("model.embed_tokens.weight"), idv, N, D);
    const layers: LayerActs[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      const pre = `model.layers.${i}.`, at = `${pre}self_attn.`;
      const hIn = h;
      const xn = A(N * D);
      rms(xn, hIn, N, D, this.p(`${pre}input_layernorm.weight`), eps);
      let cq: Vec | null = null, cqn: Vec | null = null;
      const q = A(N * H * dqk);
      if (qr) {
        cq = A(N * qr);
        cqn = A(N * qr);
        this.mm.forward(cq, xn, N, D, this.p(`${at}q_a_proj.weight`), qr);
        rms(cqn, cq, N, qr, this.p(`${at}q_a_layernorm.weight`), LATENT_NORM_EPS);
        this.mm.forward(q, cqn, N, qr, this.p(`${at}q_b_proj.weight`), H * dqk);
      } else {
        this.mm.forward(q, xn, N, D, this.p(`${at}q_proj.weight`), H * dqk);
      }
      ropeInterleaved(q, N, H, dr, dn, H * dqk, dqk, cos, sin);
      const a = A(N * (dc + dr));
      this.mm.forward(a, xn, N, D, this.p(`${at}kv_a_proj_with_mqa.weight`), dc + dr);
      const ckv = A(N * dc);
      rms(ckv, a, N, dc, this.p(`${at}kv_a_layernorm.weight`), LATENT_NORM_EPS, dc + dr, dc);
      const kr = a.slice();
      ropeInterleaved(kr, N, 1, dr, dc, dc + dr, 0, cos, sin);
      const kv = A(N * H * (dn + dv));
      this.mm.forward(kv, ckv, N, dc, this.p(`${at}kv_b_proj.weight`), H * (dn + dv));
      const k = A(N * H * dqk), v = A(N * H * dv);
      for (let r = 0; r < N; r++) for (let hh = 0; hh < H; hh++) {
        const ko = (r * H + hh) * dqk, so = (r * H + hh) * (dn + dv);
        for (let j = 0; j < dn; j++) k[ko + j] = kv[so + j];
        for (let j = 0; j < dr; j++) k[ko + dn + j] = kr[r * (dc + dr) + dc + j];
        for (let j = 0; j < dv; j++) v[(r * H + hh) * dv + j] = kv[so + dn + j];
      }
      const att = A(N * H * dv);
      for (let b = 0; b < B; b++) {
        attendCausal(
          att.subarray(b * T * H * dv), q.subarray(b * T * H * dqk), k.subarray(b * T * H * dqk), v.subarray(b * T * H * dv),
          T, H, dqk, dv, this.scale,
        );
      }
      const y = A(N * D);
      this.mm.forward(y, att, N, H * dv, this.p(`${at}o_proj.weight`), D);
      const hMid = A(N * D);
      for (let j = 0; j < N * D; j++) hMid[j] = hIn[j] + y[j];

      const xn2 = A(N * D);
      rms(xn2, hMid, N, D, this.p(`${pre}post_attention_layernorm.weight`), eps);
      const g = A(N * F), u = A(N * F), s = A(N * F);
      this.mm.forward(g, xn2, N, D, this.p(`${pre}mlp.gate_proj.weight`), F);
      this.mm.forward(u, xn2, N, D, this.p(`${pre}mlp.up_proj.weight`), F);
      for (let j = 0; j < N * F; j++) s[j] = (g[j] / (1 + Math.exp(-g[j]))) * u[j];
      const f = A(N * D);
      this.mm.forward(f, s, N, F, this.p(`${pre}mlp.down_proj.weight`), D);
      const hOut = A(N * D);
      for (let j = 0; j < N * D; j++) hOut[j] = hMid[j] + f[j];
      layers.push({ hIn, xn, cq, cqn, q, a, ckv, k, v, att, hMid, xn2, g, u, s });
      h = hOut;
    }
    const hf = A(N * D);
    rms(hf, h, N, D, this.p("model.norm.weight"), eps);
    const V = c.vocabSize;
    const logits = A(N * V);
    this.mm.forward(logits, hf, N, D, this.p("lm_head.weight"), V);
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
    const c = this.config;
    const { B, T } = sv, N = B * T;
    const D = c.hiddenSize, H = c.numHeads, qr = c.qLoraRank, dc = c.kvLoraRank;
    const dn = c.qkNopeHeadDim, dr = c.qkRopeHeadDim, dv = c.vHeadDim, dqk = dn + dr, F = c.intermediateSize;
    const V = c.vocabSize, eps = c.rmsNormEps;
    const A = this.alloc;
    const { cos, sin } = this.ropeTables(B, T);

    const dlogits = A(N * V);
    crossEntropyLoss(dlogits, sv.logits, sv.targets, N, V, -100, divisor ?? sv.count);
    const dhf = A(N * D);
    this.mm.backwardInput(dhf, dlogits, N, V, this.p("lm_head.weight"), D);
    this.mm.backwardWeight(this.g("lm_head.weight"), dlogits, sv.hf, N, V, D);
    const dh = A(N * D);
    rmsNormBackward(dh, this.g("model.norm.weight"), sv.hLast, this.p("model.norm.weight"), dhf, N, D, eps);

    for (let i = c.numLayers - 1; i >= 0; i--) {
      const L = sv.layers[i];
      const pre = `model.layers.${i}.`, at = `${pre}self_attn.`;
      // MLP: h_out = h_mid + down(silu(gate xn2) * up xn2)
      const ds = A(N * F);
      this.mm.backwardInput(ds, dh, N, D, this.p(`${pre}mlp.down_proj.weight`), F);
      this.mm.backwardWeight(this.g(`${pre}mlp.down_proj.weight`), dh, L.s, N, D, F);
      const dg = A(N * F), du = A(N * F);
      siluMulBackward(dg, du, L.g, L.u, ds, N * F);
      const dxn2 = A(N * D);
      this.mm.backwardInput(dxn2, dg, N, F, this.p(`${pre}mlp.gate_proj.weight`), D);
      this.mm.backwardInput(dxn2, du, N, F, this.p(`${pre}mlp.up_proj.weight`), D, true);
      this.mm.backwardWeight(this.g(`${pre}mlp.gate_proj.weight`), dg, L.xn2, N, F, D);
      this.mm.backwardWeight(this.g(`${pre}mlp.up_proj.weight`), du, L.xn2, N, F, D);
      rmsNormBackward(dh, this.g(`${pre}post_attention_layernorm.weight`), L.hMid, this.p(`${pre}post_attention_layernorm.weight`), dxn2, N, D, eps, true);

      // attention: h_mid = h_in + o_proj(att)
      const datt = A(N * H * dv);
      this.mm.backwardInput(datt, dh, N, D, this.p(`${at}o_proj.weight`), H * dv);
      this.mm.backwardWeight(this.g(`${at}o_proj.weight`), dh, L.att, N, D, H * dv);
      const dq = A(N * H * dqk), dk = A(N * H * dqk), dvv = A(N * H * dv);
      for (let b = 0; b < B; b++) {
        const qo = b * T * H * dqk, vo = b * T * H * dv;
        attendBackward(
          dq.subarray(qo), dk.subarray(qo), dvv.subarray(vo),
          L.q.subarray(qo), L.k.subarray(qo), L.v.subarray(vo), datt.subarray(vo),
          T, H, H, dqk, dv, this.scale,
        );
      }
      // k = [kv_b(c_KV) nope rows | shared k_rope], v = kv_b value rows
      const dkv = A(N * H * (dn + dv)), da = A(N * (dc + dr));
      for (let r = 0; r < N; r++) for (let hh = 0; hh < H; hh++) {
        const ko = (r * H + hh) * dqk, so = (r * H + hh) * (dn + dv);
        for (let j = 0; j < dn; j++) dkv[so + j] = dk[ko + j];
        for (let j = 0; j < dv; j++) dkv[so + dn + j] = dvv[(r * H + hh) * dv + j];
        for (let j = 0; j < dr; j++) da[r * (dc + dr) + dc + j] += dk[ko + dn + j];
      }
      ropeInterleavedBackward(da, N, 1, dr, dc, dc + dr, 0, cos, sin);
      const dckv = A(N * dc);
      this.mm.backwardInput(dckv, dkv, N, H * (dn + dv), this.p(`${at}kv_b_proj.weight`), dc);
      this.mm.backwardWeight(this.g(`${at}kv_b_proj.weight`), dkv, L.ckv, N, H * (dn + dv), dc);
      rmsNormBackward(da, this.g(`${at}kv_a_layernorm.weight`), L.a, this.p(`${at}kv_a_layernorm.weight`), dckv, N, dc, LATENT_NORM_EPS, false, dc + dr, dc, dc + dr);

      ropeInterleavedBackward(dq, N, H, dr, dn, H * dqk, dqk, cos, sin);
      const dxn = A(N * D);
      if (qr) {
        const dcqn = A(N * qr), dcq = A(N * qr);
        this.mm.backwardInput(dcqn, dq, N, H * dqk, this.p(`${at}q_b_proj.weight`), qr);
        this.mm.backwardWeight(this.g(`${at}q_b_proj.weight`), dq, L.cqn!, N, H * dqk, qr);
        rmsNormBackward(dcq, this.g(`${at}q_a_layernorm.weight`), L.cq!, this.p(`${at}q_a_layernorm.weight`), dcqn, N, qr, LATENT_NORM_EPS);
        this.mm.backwardInput(dxn, dcq, N, qr, this.p(`${at}q_a_proj.weight`), D);
        this.mm.backwardWeight(this.g(`${at}q_a_proj.weight`), dcq, L.xn, N, qr, D);
      } else {
        this.mm.backwardInput(dxn, dq, N, H * dqk, this.p(`${at}q_proj.weight`), D);
        this.mm.backwardWeight(this.g(`${at}q_proj.weight`), dq, L.xn, N, H * dqk, D);
      }
      this.mm.backwardInput(dxn, da, N, dc + dr, this.p(`${at}kv_a_proj_with_mqa.weight`), D, true);
      this.mm.backwardWeight(this.g(`${at}kv_a_proj_with_mqa.weight`), da, L.xn, N, dc + dr, D);
      rmsNormBackward(dh, this.g(`${pre}input_layernorm.weight`), L.hIn, this.p(`${pre}input_layernorm.weight`), dxn, N, D, eps, true);
    }
    embeddingBackward(this.g("model.embed_tokens.weight"), sv.ids, dh, N, D);
  }
}
