/**
 * GQA/MHA -> MLA: turn a llama / qwen2 / mistral checkpoint into a dense deepseek_v3 checkpoint whose KV cache is
 * one latent of R numbers plus one shared RoPE key of r numbers per token and layer. The method and its choices
 * are in docs/conversion.md; in short, per layer (source: H query heads, G KV heads of width d, hidden D):
 *
 *   RoPE     keep r/2 of the d/2 rotated pairs (./rope-select.ts) as the decoupled RoPE key, one key shared by all
 *            heads, formed per pair as the principal combination of the G heads' pair keys (./shared-rope.ts);
 *   NoPE     every other key dim (the unkept pairs, and what the shared key misses of the kept ones) becomes a
 *            non-rotated key dim: qk_nope_head_dim = d, with the query's matching rows, turned by the rotation
 *            the head sees on average (./nope-rotation.ts);
 *   latent   keys (NoPE part) and values of all G heads, 2 G d rows, factor through an R-dim latent fitted to
 *            activations (./latent.ts): kv_a_proj_with_mqa = [Q diag(1/gamma); shared RoPE rows],
 *            kv_b_proj = the up-projection of each head's KV group;
 *   queries  q_proj = per head [the d NoPE rows | u-weighted RoPE rows], times sqrt((d + r) / d) because
 *            deepseek_v3 scales scores by 1/sqrt(d + r) where the source used 1/sqrt(d);
 *   the rest (o_proj, norms, MLP, embeddings, lm_head) is copied.
 *
 * RoPE by halves (llama: dim j with j + d/2) becomes deepseek's interleaved RoPE (dims 2i, 2i+1) by writing the two
 * rows of a pair next to each other, so no rope_interleave switch is needed; rope_theta is chosen so the kept pairs
 * keep their frequencies. Exact (to float rounding) when R = D and the shared key holds every rotated key component:
 * G = 1 (MQA) with r = d, or heads whose pair keys are proportional. Otherwise the errors are the latent truncation
 * and the rotated components moved to NoPE; the report measures both before and after a short fine-tune.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { MlaError } from "../errors.js";
import { type ModelConfig } from "../model/config.js";
import { Checkpoint } from "../model/checkpoint.js";

import { toF32, f32Tensor, type Tensor } from "../tensor/tensor.js";
import { writeSafetensors } from "../io/safetensors.js";
import { denseMlaConfig } from "../model/families/writers.js";
import type { Json } from "../model/config.js";
import { COVARIANCE_SHRINK, covariance, fitLatent } from "./latent.js";
import { sharedRopeKey } from "./shared-rope.js";
import { checkRopeDim, checkRopeFrequencies, selectRope, type RopeChoice, type RopeSelect } from "./rope-select.js";
import type { Calibration } from "./calibrate.js";
import { NOPE_ROTATIONS, attentionDistances, meanRotation, type NopeRotation } from "./nope-rotation.js";
import { ropeInvFreq } from "../attention/rope.js";
import { expectedTensors, loadConfig } from "../model/families/index.js";

/**
 * How the decoupled RoPE key is formed from the G KV heads:
 *   shared   one key for all heads (r/2 pairs, each the principal combination of the G heads' pair keys), plain
 *            RoPE at a chosen rope_theta: what the rest of the ecosystem loads, exact only when G = 1
 *   grouped  every KV group keeps its own r/(2G) pairs side by side in the key (each head's query uses its group's
 *            slots), rotated at the source's own frequencies through a longrope table (one factor per pair): exact
 *            at full rank for any GQA/MHA, at r = G d for full RoPE; loads in the engine and in transformers, but
 *            not in the PyTorch peer of ../shared/peers, which implements only default and YaRN RoPE
 */
export type RopeKey = "shared" | "grouped";
export const ROPE_KEYS: readonly RopeKey[] = ["shared", "grouped"];

export interface ConvertOptions {
  /** Latent width d_c = kv_lora_rank (1..hidden_size). */
  readonly kvRank: number;
  /** Decoupled RoPE width d_h^R = qk_rope_head_dim (even, 2..head_dim; grouped: a multiple of 2G up to G head_dim). */
  readonly ropeDim: number;
  /** How the RoPE key is formed (default "shared"). */
  readonly ropeKey?: RopeKey;
  /** Which rotated pairs to keep (default "high"). */
  readonly ropeSelect?: RopeSelect;
  /** How rotated components without a RoPE slot enter the scores (./nope-rotation.ts; default "mean" with
   *  calibration, else "plain"). */
  readonly nope?: NopeRotation;
  /** Activations of the source (./calibrate.ts); without them the factorizations use the weights alone. */
  readonly calibration?: Calibration | null;
}

/** A llama-family checkpoint in memory (F32). */
export interface SourceModel {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly tensors: Map<string, Float32Array>;
  /** Attention biases the conversion leaves out (readSource with dropBiases; see there). */
  readonly droppedBiases: readonly string[];
}

export interface ReadOptions {
  /**
   * Convert a checkpoint with attention biases (qwen2's q/k/v) by leaving them out. deepseek_v3 has no bias on
   * q_proj, kv_a_proj_with_mqa or kv_b_proj (without attention_bias, which the engine and the peer do not implement),
   * so this is approximate: a k bias on NoPE dims shifts every score of a query equally and cancels in the softmax,
   * but q biases, k biases on the kept RoPE pairs and v biases (a constant added to each attention output) are lost.
   * The fine-tune recovers what it can; the logit error measures the rest.
   */
  readonly dropBiases?: boolean;
}

export interface LayerReport {
  /** Fraction of the key (NoPE part) and value energy inside the latent (1: nothing truncated). */
  readonly latentEnergy: number;
  /** Latent dims that carry keys/values (the rest steady the latent norm). */
  readonly informative: number;
  /** Mean over kept pairs of the rotated key energy the shared key holds (1: exact). */
  readonly ropeCaptured: number;
}

export interface ConversionSummary {
  readonly source: { readonly modelType: string; readonly numHeads: number; readonly numKvHeads: number; readonly headDim: number; readonly kvPerTokenPerLayer: number };
  readonly target: { readonly kvLoraRank: number; readonly qkRopeHeadDim: number; readonly qkNopeHeadDim: number; readonly kvPerTokenPerLayer: number };
  /** Converted cache / source cache. */
  readonly cacheRatio: number;
  readonly rope: RopeChoice & { readonly select: RopeSelect; readonly nope: NopeRotation; readonly key: RopeKey };
  readonly calibrationTokens: number;
  readonly layers: readonly LayerReport[];
  readonly notes: readonly string[];
}

export interface ConvertedModel {
  readonly configJson: Json;
  readonly tensors: Map<string, { shape: number[]; data: Float32Array }>;
  readonly summary: ConversionSummary;
}

/** Read and check a llama/qwen2/mistral checkpoint for conversion. */
export function readSource(dir: string, opts: ReadOptions = {}): SourceModel {
  const config = loadConfig(dir);
  if (config.attention !== "gqa") {
    throw new MlaError(`convert: ${dir} is ${config.modelType}, which already uses MLA; convert reads llama, qwen2 and mistral checkpoints (MHA or GQA)`);
  }
  const droppedBiases = [...(config.qkvBias ? ["q_proj", "k_proj", "v_proj"] : []), ...(config.oBias ? ["o_proj"] : [])];
  if (droppedBiases.length && !opts.dropBiases) {
    throw new MlaError(
      `convert: ${dir} has attention biases (${config.modelType}: ${droppedBiases.map((b) => `${b}.bias`).join(", ")}); ` +
      `deepseek_v3's q_proj and kv projections have none, so the layout cannot hold them exactly ` +
      `(--biases drop converts without them: approximate, fine-tune to recover)`,
    );
  }
  const ckpt = Checkpoint.open(dir);
  try {
    const expected = expectedTensors(config);
    const missing = ckpt.missing([...expected.keys()]);
    if (missing.length) {
      throw new MlaError(`convert: checkpoint ${dir} is missing ${missing.length} tensor(s): ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ` and ${missing.length - 5} more` : ""}`);
    }
    const tensors = new Map<string, Float32Array>();
    for (const [name, shape] of expected) {
      const t = ckpt.load(name);
      if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
        throw new MlaError(`convert: tensor ${name} has shape [${t.shape.join(", ")}] but config.json implies [${shape.join(", ")}]`);
      }
      tensors.set(name, toF32(t));
    }
    return { dir, config, tensors, droppedBiases };
  } finally {
    ckpt.close();
  }
}

/** Numbers cached per token and layer: K and V of every KV head. */
export function sourceCachePerLayer(c: ModelConfig): number {
  return 2 * c.numKvHeads * c.headDim;
}

/** Sigma_x = diag(gamma) Sigma_z diag(gamma). */
function scaleCov(sz: Float64Array, gamma: Float32Array, D: number): Float64Array {
  const sx = new Float64Array(D * D);
  for (let a = 0; a < D; a++) for (let b = 0; b < D; b++) sx[a * D + b] = gamma[a] * sz[a * D + b] * gamma[b];
  return sx;
}

/** w^T S w of row `row` of w [*, D]. */
function quad(w: Float32Array, row: number, s: Float64Array, D: number): number {
  let out = 0;
  const o = row * D;
  for (let a = 0; a < D; a++) {
    let t = 0;
    for (let b = 0; b < D; b++) t += s[a * D + b] * w[o + b];
    out += w[o + a] * t;
  }
  return out;
}

/** The RoPE pairs to keep, for all layers at once (one rope_theta per model). */
function chooseRope(src: SourceModel, r: number, how: RopeSelect, sigmaX: (layer: number) => Float64Array, plainRope: boolean): RopeChoice {
  const c = src.config, d = c.headDim, half = d / 2, D = c.hiddenSize, H = c.numHeads, G = c.numKvHeads;
  let choice: RopeChoice;
  if (how === "norm") {
    // MHA2MLA's 2-norm score per pair, summed over heads and layers: E||q_{h,j}|| E||k_{g(h),j}||
    const scores = new Float64Array(half);
    for (let i = 0; i < c.numLayers; i++) {
      const a = `model.layers.${i}.self_attn.`, s = sigmaX(i);
      const wq = src.tensors.get(`${a}q_proj.weight`)!, wk = src.tensors.get(`${a}k_proj.weight`)!;
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / (H / G));
        for (let j = 0; j < half; j++) {
          const qn = quad(wq, h * d + j, s, D) + quad(wq, h * d + j + half, s, D);
          const kn = quad(wk, g * d + j, s, D) + quad(wk, g * d + j + half, s, D);
          scores[j] += Math.sqrt(Math.max(qn, 0) * Math.max(kn, 0));
        }
      }
    }
    choice = selectRope(c.rope.theta, d, r, how, scores);
  } else {
    choice = selectRope(c.rope.theta, d, r, how);
  }
  // plain RoPE must reproduce the kept frequencies through rope_theta alone; a longrope table sets each one
  if (plainRope) checkRopeFrequencies(c.rope, d, r, choice);
  return choice;
}

/** r for a grouped key: a multiple of 2G (whole pairs per group) of at most G head_dim. */
function checkGroupedRopeDim(d: number, G: number, r: number): void {
  if (!Number.isInteger(r) || r < 2 * G || r % (2 * G) || r > G * d) {
    throw new MlaError(`--rope-key grouped: --rope-dim must be a multiple of ${2 * G} (whole RoPE pairs for each of the ${G} KV groups) between ${2 * G} and ${G * d}, got ${r}`);
  }
}

/**
 * longrope factors that make deepseek_v3's RoPE of width r (pairs i = 0..r/2-1 at 1 / (f_i base^(2i/r))) rotate
 * slot i at the source frequency freqs[i].
 */
function longropeFactors(base: number, r: number, freqs: readonly number[]): number[] {
  return freqs.map((f, i) => 1 / (f * base ** ((2 * i) / r)));
}

/** Convert a source model in memory. */
export function convertModel(src: SourceModel, opts: ConvertOptions): ConvertedModel {
  const c = src.config, D = c.hiddenSize, H = c.numHeads, G = c.numKvHeads, d = c.headDim, half = d / 2;
  const R = opts.kvRank, r = opts.ropeDim, how = opts.ropeSelect ?? "high", key = opts.ropeKey ?? "shared";
  if (!ROPE_KEYS.includes(key)) throw new MlaError(`--rope-key must be one of ${ROPE_KEYS.join(", ")}, got "${String(key)}"`);
  const grouped = key === "grouped";
  // pairs kept per KV group (grouped) or in the one shared key
  const rKept = grouped ? r / G : r;
  if (grouped) checkGroupedRopeDim(d, G, r);
  else checkRopeDim(d, r);
  if (!Number.isInteger(R) || R < 1) throw new MlaError(`--kv-rank must be a positive integer, got ${R}`);
  if (R > D) {
    throw new MlaError(
      `--kv-rank ${R} is larger than possible: the latent is a linear function of the layer's ${D}-dim input (hidden_size), ` +
      `so at most ${D} latent dims are independent (full rank: --kv-rank ${D})`,
    );
  }
  const cal = opts.calibration ?? null;
  const nope = opts.nope ?? (cal ? "mean" : "plain");
  if (!NOPE_ROTATIONS.includes(nope)) throw new MlaError(`--nope must be one of ${NOPE_ROTATIONS.join(", ")}, got "${String(nope)}"`);
  if (nope === "mean" && !cal) throw new MlaError(`--nope mean needs calibration text (--calibration): it averages each head's rotation over the distances it attends to`);
  if (cal && (cal.layers.length !== c.numLayers || cal.layers.some((z) => z.length !== cal.n * D))) {
    throw new MlaError(`calibration activations do not match the model (${c.numLayers} layers of [${cal.n}, ${D}])`);
  }
  const notes: string[] = [];
  if (src.droppedBiases.length) {
    notes.push(`attention biases left out (${src.droppedBiases.map((b) => `${b}.bias`).join(", ")}): the conversion is approximate even at full rank; k biases on NoPE dims cancel in the softmax, the rest is lost`);
  }
  if (c.slidingWindow !== null) {
    notes.push(`the source uses sliding-window attention (${c.slidingWindow} tokens); the converted model attends to the whole context, so the two agree on sequences up to ${c.slidingWindow} tokens`);
  }
  const sigmaZ = (i: number) => covariance(cal?.layers[i] ?? null, cal?.n ?? 0, D, COVARIANCE_SHRINK);
  const gammaOf = (i: number) => src.tensors.get(`model.layers.${i}.input_layernorm.weight`)!;
  const choice = chooseRope(src, rKept, how, (i) => scaleCov(sigmaZ(i), gammaOf(i), D), !grouped);
  const pairIndex = new Map(choice.pairs.map((j, i) => [j, i]));
  const alpha = Math.sqrt((d + r) / d);
  const invFreq = ropeInvFreq(c.rope, d);
  const groupOf = (h: number) => Math.floor(h / (H / G));
  const P = choice.pairs.length;
  // RoPE slot (a pair of interleaved dims of the key) of kept pair pi for group g
  const slot = (pi: number, g: number) => (grouped ? g * P + pi : pi);

  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  const copy = (name: string, to = name) => {
    const data = src.tensors.get(name)!;
    const shape = expectedTensors(c).get(name)!;
    out.set(to, { shape, data });
  };
  copy("model.embed_tokens.weight");
  const layers: LayerReport[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`, a = `${p}self_attn.`;
    const wq = src.tensors.get(`${a}q_proj.weight`)!, wk = src.tensors.get(`${a}k_proj.weight`)!, wv = src.tensors.get(`${a}v_proj.weight`)!;
    const gamma = gammaOf(i);
    const sz = sigmaZ(i);
    // shared: each group's weight in the one key per pair; grouped: every group has its own slot, weight 1
    const shared = grouped ? null : sharedRopeKey(wk, scaleCov(sz, gamma, D), G, d, D, choice.pairs);
    const u = (pi: number, g: number) => (shared ? shared.u[pi * G + g] : 1);

    // keys without rotation (per KV group, the head's d dims in source order) and values: M [2 G d, D] in z-space
    const rows = 2 * G * d;
    const m = new Float64Array(rows * D);
    for (let g = 0; g < G; g++) {
      for (let dim = 0; dim < d; dim++) {
        const pi = pairIndex.get(dim % half);
        const o = (g * d + dim) * D;
        for (let x = 0; x < D; x++) {
          let w = wk[o + x];
          if (pi !== undefined) {
            // the part of a kept pair the RoPE key misses (none when every group has its own slot)
            let sk = 0;
            if (!grouped) for (let g2 = 0; g2 < G; g2++) sk += u(pi, g2) * wk[(g2 * d + dim) * D + x];
            w = grouped ? 0 : w - u(pi, g) * sk;
          }
          m[o + x] = w * gamma[x];
          m[(G * d + g * d + dim) * D + x] = wv[o + x] * gamma[x];
        }
      }
    }
    const lat = fitLatent({ m, rows, dim: D, rank: R, z: cal?.layers[i] ?? null, n: cal?.n ?? 0 });

    // kv_a_proj_with_mqa [R + r, D]: latent rows Q diag(1/gamma), then the shared RoPE key's pairs interleaved
    const kva = new Float32Array((R + r) * D);
    for (let k = 0; k < R; k++) for (let x = 0; x < D; x++) kva[k * D + x] = gamma[x] === 0 ? 0 : lat.q[k * D + x] / gamma[x];
    choice.pairs.forEach((j, pi) => {
      for (let s = 0; s < 2; s++) {
        for (let g = 0; g < G; g++) {
          const o = (R + 2 * slot(pi, g) + s) * D, src0 = (g * d + j + s * half) * D, ug = u(pi, g);
          for (let x = 0; x < D; x++) kva[o + x] += ug * wk[src0 + x];
        }
      }
    });
    // kv_b_proj [H (d + d), R]: per head, its KV group's key rows then value rows
    const kvb = new Float32Array(H * 2 * d * R);
    for (let h = 0; h < H; h++) {
      const g = groupOf(h);
      for (let dim = 0; dim < d; dim++) {
        for (let k = 0; k < R; k++) {
          kvb[(h * 2 * d + dim) * R + k] = lat.b[(g * d + dim) * R + k];
          kvb[(h * 2 * d + d + dim) * R + k] = lat.b[(G * d + g * d + dim) * R + k];
        }
      }
    }
    // q_proj [H (d + r), D]: per head the NoPE rows (source order, each pair turned by its mean rotation under
    // --nope mean), then the RoPE pairs interleaved, all times alpha
    const q = new Float32Array(H * (d + r) * D);
    const dist = nope === "mean"
      ? attentionDistances({ wq, wk, gamma, z: cal!.layers[i], windows: cal!.windows, H, G, d, D, rope: c.rope })
      : null;
    for (let h = 0; h < H; h++) {
      const g = groupOf(h), o = h * (d + r);
      for (let j = 0; j < half; j++) {
        const pi = pairIndex.get(j);
        if (pi !== undefined && (G === 1 || grouped)) continue; // nothing missed: the NoPE key rows are zero
        const { c: mc, s: ms } = dist ? meanRotation(dist.dist, h * dist.maxLen, dist.maxLen, invFreq[j]) : { c: 1, s: 0 };
        const ra = (h * d + j) * D, rb = (h * d + j + half) * D, qa = (o + j) * D, qb = (o + j + half) * D;
        for (let x = 0; x < D; x++) {
          q[qa + x] = alpha * (mc * wq[ra + x] - ms * wq[rb + x]);
          q[qb + x] = alpha * (ms * wq[ra + x] + mc * wq[rb + x]);
        }
      }
      choice.pairs.forEach((j, pi) => {
        for (let s = 0; s < 2; s++) {
          const f = alpha * u(pi, g), srcRow = (h * d + j + s * half) * D, dst = (o + d + 2 * slot(pi, g) + s) * D;
          for (let x = 0; x < D; x++) q[dst + x] = f * wq[srcRow + x];
        }
      });
    }
    copy(`${p}input_layernorm.weight`);
    copy(`${p}post_attention_layernorm.weight`);
    out.set(`${a}q_proj.weight`, { shape: [H * (d + r), D], data: q });
    out.set(`${a}kv_a_proj_with_mqa.weight`, { shape: [R + r, D], data: kva });
    out.set(`${a}kv_a_layernorm.weight`, { shape: [R], data: new Float32Array(R).fill(1) });
    out.set(`${a}kv_b_proj.weight`, { shape: [H * 2 * d, R], data: kvb });
    copy(`${a}o_proj.weight`);
    for (const w of ["gate_proj", "up_proj", "down_proj"]) copy(`${p}mlp.${w}.weight`);
    let cap = 0;
    if (shared) for (const x of shared.captured) cap += x;
    layers.push({ latentEnergy: lat.energy, informative: lat.informative, ropeCaptured: shared ? cap / shared.captured.length : 1 });
  }
  copy("model.norm.weight");
  if (c.tieWordEmbeddings) {
    out.set("lm_head.weight", { shape: [c.vocabSize, D], data: src.tensors.get("model.embed_tokens.weight")! });
    notes.push("tied embeddings were written as a separate lm_head (deepseek_v3 layout, as mla train expects)");
  } else {
    copy("lm_head.weight");
  }

  const configJson: Json = {
    ...denseMlaConfig({
      vocabSize: c.vocabSize, hiddenSize: D, intermediateSize: c.intermediateSize, numLayers: c.numLayers, numHeads: H,
      kvLoraRank: R, qLoraRank: null, qkNopeHeadDim: d, qkRopeHeadDim: r, vHeadDim: d,
      maxPositionEmbeddings: c.maxPositionEmbeddings, rmsNormEps: c.rmsNormEps, ropeTheta: grouped ? c.rope.theta : choice.theta,
      bosTokenId: c.bosTokenId,
    }),
    eos_token_id: c.eosTokenIds.length === 0 ? null : c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : [...c.eosTokenIds],
  };
  if (grouped) {
    // slot g P + pi rotates at the source frequency of pair pairs[pi]; equal short and long factors and an explicit
    // attention factor of 1 keep transformers' longrope independent of the sequence length
    const freqs = Array.from({ length: G * P }, (_, sl) => invFreq[choice.pairs[sl % P]]);
    const factors = longropeFactors(c.rope.theta, r, freqs);
    configJson.rope_scaling = {
      rope_type: "longrope", short_factor: factors, long_factor: [...factors], factor: 1.0, attention_factor: 1.0,
      original_max_position_embeddings: c.maxPositionEmbeddings,
    };
  }
  const srcCache = sourceCachePerLayer(c);
  const summary: ConversionSummary = {
    source: { modelType: c.modelType, numHeads: H, numKvHeads: G, headDim: d, kvPerTokenPerLayer: srcCache },
    target: { kvLoraRank: R, qkRopeHeadDim: r, qkNopeHeadDim: d, kvPerTokenPerLayer: R + r },
    cacheRatio: (R + r) / srcCache,
    rope: { ...choice, ...(grouped ? { theta: c.rope.theta } : {}), select: how, nope, key },
    calibrationTokens: cal?.n ?? 0,
    layers,
    notes,
  };
  return { configJson, tensors: out, summary };
}

/** Files of a model folder that describe its tokenizer (copied next to the converted weights). */
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

/**
 * Write a converted model: config.json, model.safetensors (F32, checkpoint order of the deepseek_v3 layout),
 * conversion.json (the summary) and the source's tokenizer files.
 */
export function writeConverted(dir: string, conv: ConvertedModel, sourceDir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors: Record<string, Tensor> = {};
  for (const [name, t] of conv.tensors) tensors[name] = f32Tensor(t.shape, t.data);
  writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt", converted_from: sourceDir });
  fs.writeFileSync(join(dir, "config.json"), JSON.stringify(conv.configJson, null, 2) + "\n");
  fs.writeFileSync(join(dir, "conversion.json"), JSON.stringify(conv.summary, null, 2) + "\n");
  for (const f of TOKENIZER_FILES) if (fs.existsSync(join(sourceDir, f))) fs.copyFileSync(join(sourceDir, f), join(dir, f));
}
