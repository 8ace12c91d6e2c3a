/**
 * Random-weight DeepSeek-V2/V3 checkpoints in the Hugging Face hub layout, for timing and tests.
 *
 * Same tensors and shapes as ../shared/peers/torch/make_random.py (its `small` and `v2lite-attn` presets),
 * plus tiny presets for tests. Norm weights are ones; every matrix is N(0,1)·in^-0.5 (in = its last dim)
 * from a seeded PRNG (sfc32 + Box–Muller; deterministic, but not torch's numbers). V3 router biases
 * (`e_score_correction_bias`) are N(0,1)·0.1 and always stored F32, as in DeepSeek-V3's own release.
 *
 * Writing streams: every header is computed from the shapes alone, then values are generated and written
 * in fixed-size chunks, so memory stays at a few MB whatever the preset's size.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { MlaError } from "../errors.js";
import { type DType, DTYPE_BYTES, f32ToF16, isDType } from "../tensor/dtype.js";
import { numel } from "../tensor/tensor.js";
import { Rng } from "../tensor/rng.js";

import { type ModelConfig } from "./config.js";
import { expectedTensors, parseConfig } from "./families/index.js";

export interface RandomPreset {
  readonly name: string;
  readonly description: string;
  /** config.json as written (hub spelling: snake_case, top-level rope_theta, rope_scaling). */
  readonly config: Readonly<Record<string, unknown>>;
}

export interface RandomCheckpointOptions {
  /** Storage dtype of the weights (default F32, as make_random.py). Router biases stay F32. */
  readonly dtype?: DType;
  /** Number of safetensors files (default 1: model.safetensors; N > 1: model-0000i-of-0000N + index). */
  readonly shards?: number;
  /** PRNG seed (default 0). */
  readonly seed?: number;
  /** Called after each tensor with tensor-data bytes written so far and in total. */
  readonly onProgress?: (done: number, total: number) => void;
}

export type RandomInit = "ones" | "normal" | "bias";

/** One tensor of a random checkpoint, in write order. */
export interface RandomTensorSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly init: RandomInit;
}

/** The keys make_random.py adds to every preset (its `main`). */
function makeRandomConfig(p: Record<string, unknown>): Record<string, unknown> {
  return {
    ...p,
    model_type: "deepseek_v3",
    architectures: ["DeepseekV3ForCausalLM"],
    num_key_value_heads: p.num_attention_heads,
    rms_norm_eps: 1e-6,
    rope_theta: 10000.0,
    rope_scaling: null,
    max_position_embeddings: 32768,
    first_k_dense_replace: 1_000_000,
    n_routed_experts: null,
    tie_word_embeddings: false,
    hidden_act: "silu",
    bos_token_id: 0,
    eos_token_id: 1,
  };
}

const TINY_ATTN = {
  vocab_size: 256, hidden_size: 64, intermediate_size: 128, num_attention_heads: 4,
  q_lora_rank: 32, kv_lora_rank: 32, qk_nope_head_dim: 16, qk_rope_head_dim: 8, v_head_dim: 16,
};

export const RANDOM_PRESETS: Readonly<Record<string, RandomPreset>> = {
  small: {
    name: "small",
    description: "~204M params, MLA with q compression, 12 dense layers (make_random.py `small`)",
    config: makeRandomConfig({
      vocab_size: 32000, hidden_size: 1024, intermediate_size: 2816, num_hidden_layers: 12, num_attention_heads: 16,
      q_lora_rank: 384, kv_lora_rank: 256, qk_nope_head_dim: 64, qk_rope_head_dim: 32, v_head_dim: 64,
    }),
  },
  "v2lite-attn": {
    name: "v2lite-attn",
    description: "DeepSeek-V2-Lite attention shapes, 4 dense layers (make_random.py `v2lite-attn`)",
    config: makeRandomConfig({
      vocab_size: 8192, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 4, num_attention_heads: 16,
      q_lora_rank: null, kv_lora_rank: 512, qk_nope_head_dim: 128, qk_rope_head_dim: 64, v_head_dim: 128,
    }),
  },
  tiny: {
    name: "tiny",
    description: "tests: 2 dense layers, hidden 64, 4 heads, q/kv lora 32",
    config: { ...makeRandomConfig({ ...TINY_ATTN, num_hidden_layers: 2 }), max_position_embeddings: 512 },
  },
  "tiny-moe": {
    name: "tiny-moe",
    description: "tests: deepseek_v3 MoE (8 experts, 4 groups, top-2 groups, k 2, 1 shared), YaRN, 3 layers (first dense)",
    config: {
      ...makeRandomConfig({ ...TINY_ATTN, num_hidden_layers: 3 }),
      max_position_embeddings: 512,
      rope_scaling: {
        type: "yarn", factor: 4.0, original_max_position_embeddings: 128,
        beta_fast: 32.0, beta_slow: 1.0, mscale: 1.0, mscale_all_dim: 1.0,
      },
      first_k_dense_replace: 1,
      n_routed_experts: 8,
      n_shared_experts: 1,
      num_experts_per_tok: 2,
      moe_intermediate_size: 32,
      n_group: 4,
      topk_group: 2,
      topk_method: "noaux_tc",
      scoring_func: "sigmoid",
      norm_topk_prob: true,
      routed_scaling_factor: 2.5,
      moe_layer_freq: 1,
      num_nextn_predict_layers: 0,
    },
  },
};

/** A preset by name (MlaError listing the known ones otherwise), or the preset itself. */
export function resolvePreset(preset: RandomPreset | string): RandomPreset {
  if (typeof preset !== "string") return preset;
  const p = Object.prototype.hasOwnProperty.call(RANDOM_PRESETS, preset) ? RANDOM_PRESETS[preset] : undefined;
  if (!p) throw new MlaError(`unknown preset "${preset}" (known: ${Object.keys(RANDOM_PRESETS).join(", ")})`);
  return p;
}

/** Every tensor of the preset's checkpoint (the names and shapes the loader expects). */
export function randomTensorSpecs(preset: RandomPreset | string): RandomTensorSpec[] {
  const c = parseConfig({ ...resolvePreset(preset).config });
  return tensorSpecs(c);
}

/** Number of parameters (elements) the preset's checkpoint holds. */
export function presetParams(preset: RandomPreset | string): number {
  return randomTensorSpecs(preset).reduce((s, t) => s + numel(t.shape), 0);
}

/** The tensors the loader expects for this config (one list for both), with how each is filled. */
function tensorSpecs(c: ModelConfig): RandomTensorSpec[] {
  return [...expectedTensors(c)].map(([name, shape]) => ({
    name, shape,
    init: name.endsWith("e_score_correction_bias") ? "bias" : shape.length === 1 ? "ones" : "normal",
  }));
}

// ---------------------------------------------------------------- PRNG

/** FNV-1a of the name mixed with the seed: each tensor's values depend only on (seed, name). */
function tensorSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

// ---------------------------------------------------------------- writer

const CHUNK = 1 << 20; // elements generated and written at a time
const SHARD_FILE_RE = /^model(-\d+-of-\d+)?\.safetensors$|^model\.safetensors\.index\.json$/;

interface Planned extends RandomTensorSpec {
  readonly dtype: DType;
  readonly bytes: number;
}

/** Greedy split by bytes into n non-empty consecutive groups. */
function splitByBytes(plan: Planned[], n: number): Planned[][] {
  if (!Number.isInteger(n) || n < 1) throw new MlaError(`shards must be a positive integer, got ${n}`);
  if (n > plan.length) throw new MlaError(`cannot split ${plan.length} tensors into ${n} shards`);
  const total = plan.reduce((s, t) => s + t.bytes, 0);
  const groups: Planned[][] = [[]];
  let cum = 0;
  plan.forEach((t, i) => {
    const s = groups.length - 1, cur = groups[s];
    const later = n - 1 - s; // shards still to open after the current one
    if (cur.length && later > 0 && (cum + t.bytes / 2 > ((s + 1) * total) / n || plan.length - i <= later)) groups.push([]);
    groups[groups.length - 1].push(t);
    cum += t.bytes;
  });
  return groups;
}

function headerBytes(group: Planned[]): Uint8Array {
  const json: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let off = 0;
  for (const t of group) {
    json[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [off, off + t.bytes] };
    off += t.bytes;
  }
  const raw = new TextEncoder().encode(JSON.stringify(json));
  const padded = new Uint8Array(Math.ceil(raw.length / 8) * 8).fill(0x20); // 8-byte aligned data section
  padded.set(raw);
  return padded;
}

function writeAll(fd: number, src: Uint8Array): void {
  let done = 0;
  while (done < src.length) done += fs.writeSync(fd, src, done, src.length - done);
}

/** F32 -> BF16 round-to-nearest-even over a chunk (NaN stays NaN). */
function toBf16(src: Float32Array, dst: Uint16Array): void {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const b = u[i];
    dst[i] = (b & 0x7fffffff) > 0x7f800000 ? ((b >>> 16) | 0x40) & 0xffff : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
}

function writeTensor(fd: number, t: Planned, seed: number, f32: Float32Array, u16: Uint16Array): void {
  const n = numel(t.shape);
  const rng = t.init === "ones" ? null : new Rng(tensorSeed(seed, t.name));
  const scale = t.init === "bias" ? 0.1 : t.shape[t.shape.length - 1] ** -0.5;
  for (let i = 0; i < n; i += CHUNK) {
    const m = Math.min(CHUNK, n - i);
    const x = f32.subarray(0, m);
    if (rng) for (let j = 0; j < m; j++) x[j] = rng.normal() * scale;
    else x.fill(1);
    let out: Uint8Array;
    if (t.dtype === "F32") out = new Uint8Array(x.buffer, x.byteOffset, m * 4);
    else {
      const h = u16.subarray(0, m);
      if (t.dtype === "BF16") toBf16(x, h);
      else for (let j = 0; j < m; j++) h[j] = f32ToF16(x[j]);
      out = new Uint8Array(h.buffer, h.byteOffset, m * 2);
    }
    writeAll(fd, out);
  }
}

/**
 * Write config.json and the weights of a random checkpoint into dir (created if needed; stale
 * model*.safetensors / index files there are removed first so the folder is one consistent checkpoint).
 * Returns the parameter count and the bytes of safetensors files written (headers included).
 */
export function writeRandomCheckpoint(
  dir: string,
  preset: RandomPreset | string,
  opts: RandomCheckpointOptions = {},
): { params: number; bytes: number } {
  const p = resolvePreset(preset);
  const dtype = opts.dtype ?? "F32";
  if (!isDType(dtype)) throw new MlaError(`unsupported dtype ${String(dtype)} (supported: F32, BF16, F16)`);
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed)) throw new MlaError(`seed must be an integer, got ${seed}`);
  const shards = opts.shards ?? 1;
  const specs = randomTensorSpecs(p);
  const plan: Planned[] = specs.map((s) => {
    const dt: DType = s.init === "bias" ? "F32" : dtype;
    return { ...s, dtype: dt, bytes: numel(s.shape) * DTYPE_BYTES[dt] };
  });
  const groups = splitByBytes(plan, shards);
  const total = plan.reduce((s, t) => s + t.bytes, 0);

  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(dir)) if (SHARD_FILE_RE.test(f)) fs.rmSync(nodePath.join(dir, f), { force: true });
  const torchDtype = { F32: "float32", BF16: "bfloat16", F16: "float16" }[dtype];
  fs.writeFileSync(nodePath.join(dir, "config.json"), JSON.stringify({ ...p.config, torch_dtype: torchDtype }, null, 1) + "\n");

  const width = 5;
  const names = groups.length === 1
    ? ["model.safetensors"]
    : groups.map((_, i) => `model-${String(i + 1).padStart(width, "0")}-of-${String(groups.length).padStart(width, "0")}.safetensors`);
  const f32 = new Float32Array(CHUNK), u16 = new Uint16Array(CHUNK);
  let bytes = 0, done = 0;
  groups.forEach((group, gi) => {
    const header = headerBytes(group);
    const fd = fs.openSync(nodePath.join(dir, names[gi]), "w");
    try {
      const len = new Uint8Array(8);
      new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
      writeAll(fd, len);
      writeAll(fd, header);
      bytes += 8 + header.length;
      for (const t of group) {
        writeTensor(fd, t, seed, f32, u16);
        bytes += t.bytes;
        done += t.bytes;
        opts.onProgress?.(done, total);
      }
    } finally {
      fs.closeSync(fd);
    }
  });
  if (groups.length > 1) {
    const weightMap: Record<string, string> = {};
    groups.forEach((g, gi) => g.forEach((t) => (weightMap[t.name] = names[gi])));
    const index = { metadata: { total_size: total }, weight_map: weightMap };
    fs.writeFileSync(nodePath.join(dir, "model.safetensors.index.json"), JSON.stringify(index, null, 2) + "\n");
  }
  return { params: specs.reduce((s, t) => s + numel(t.shape), 0), bytes };
}
