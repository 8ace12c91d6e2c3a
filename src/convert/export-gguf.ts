/**
 * Export any checkpoint mla-ts loads as a GGUF file that llama.cpp runs: DeepSeek-V2/V3 and the MLA models `mla
 * convert` and `mla train` write (llama.cpp architecture `deepseek2`), llama and mistral (`llama`), qwen2 (`qwen2`).
 *
 * What llama.cpp's converter does (convert_hf_to_gguf.py, conversion/deepseek.py, conversion/llama.py) and this file
 * does the same way, tensor by tensor so the model is never in memory at once:
 * - names and metadata keys from src/model/gguf/names.ts;
 * - deepseek2: kv_b_proj split per head into attn_k_b (W^UK transposed, [n_head, d_c, d_h]) and attn_v_b
 *   ([n_head, d_v, d_c]); routed experts stacked into one 3-D tensor per projection; MLA written as MQA over the
 *   latent (head_count_kv 1, key_length d_c + d_h^R, value_length d_c, key/value_length_mla the per-head sizes);
 * - llama: q_proj/k_proj rows (and biases) permuted for llama.cpp's adjacent-pair RoPE (LlamaModel.permute); the
 *   same for the RoPE rows of an MLA model that rotates by halves (rope_interleave false), which deepseek2 would
 *   otherwise rotate as adjacent pairs;
 *   llama3 RoPE scaling as the tensor rope_freqs.weight;
 * - 1-D tensors (norms, biases), the router gate and rope_freqs stay F32 (llama-quant.cpp); a K-quant row that is
 *   not a whole number of 256-blocks falls back as llama-quantize does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
 *   then F16 when even 32 does not divide); other types quantize every 2-D and 3-D weight ("pure").
 */
import { renameSync, rmSync, statSync } from "node:fs";
import { basename, resolve } from "node:path";
import { MlaError } from "../errors.js";
import { GgufWriter, ggufBlockSize, ggufTensorBytes, gv, type GgufTensorSpec, type GgufTypedValue, type GgufWriteType } from "../io/gguf-write.js";
import { Checkpoint } from "../model/checkpoint.js";
import { isMoeLayer, type ModelConfig } from "../model/config.js";
import { expectedTensors, loadConfig } from "../model/families/index.js";
import {
  EXPERT_GATING_FUNC, GGUF_KEYS, archKey, expertOf, ggufArchOf, ggufTensorName, ropePermutationOrder, ropePermutedHeads, type GgufArch,
} from "../model/gguf/names.js";
import { f32ToBf16, f32ToF16, isBlockDType, type BlockDType } from "../tensor/dtype.js";
import { quantizeRows } from "../tensor/ggml-quantize.js";
import { quantizeQ8, tensor, toF32 } from "../tensor/tensor.js";
import { ggufTokenizer } from "./export-tokenizer.js";

/** The weight types `mla export --type` offers. */
export const EXPORT_TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k"] as const;
export type ExportType = (typeof EXPORT_TYPES)[number];

/**
 * Where a K-quant row is not whole 256-blocks: "llama.cpp" (llama-quantize's Q5_0 / Q5_1 / Q8_0, the default) or
 * "q8_0" (always Q8_0: larger, but every reader of Q8_0 runs it; mla-ts reads both).
 */
export type KQuantFallback = "llama.cpp" | "q8_0";

export interface ExportOptions {
  readonly type?: ExportType;
  readonly fallback?: KQuantFallback;
  /** After each tensor: bytes written so far, bytes in all (the file's data section), the GGUF tensor name. */
  readonly onProgress?: (done: number, total: number, name: string) => void;
  /**
   * Quantizes F32 rows to a GGML block type, byte for byte as quantizeRows (the default): e.g. the WebAssembly
   * pool's `WasmBackend.quantizeBlocksToHost`, ~100x the JS reference's speed for the K-quants.
   */
  readonly quantizeBlocks?: (x: Float32Array, rows: number, cols: number, type: BlockDType) => Uint8Array;
}

export interface ExportSummary {
  readonly path: string;
  readonly arch: GgufArch;
  readonly tensors: number;
  readonly bytes: number;
  /** How many tensors of each GGML type the file holds. */
  readonly types: Readonly<Record<string, number>>;
  /** Where llama.cpp will not compute what mla-ts computes (one line each). */
  readonly warnings: readonly string[];
  readonly seconds: number;
}

/** One tensor to write: its GGUF name, row-major shape and how to make its values (as F32). */
interface Planned {
  readonly name: string;
  readonly shape: readonly number[];
  readonly values: () => Float32Array;
}

const TARGET: Record<ExportType, GgufWriteType> = {
  f32: "F32", f16: "F16", bf16: "BF16", q8_0: "Q8_0", q4_0: "Q4_0", q4_k: "Q4_K", q5_k: "Q5_K", q6_k: "Q6_K",
};

/** general.file_type (llama_ftype) of each export type: for the K-quants, what `llama-quantize --pure` writes for Q4_K_M, Q5_K_M, Q6_K. */
const FILE_TYPE: Record<ExportType, number> = { f32: 0, f16: 1, bf16: 32, q8_0: 7, q4_0: 2, q4_k: 15, q5_k: 17, q6_k: 18 };

/** Write `modelDir` (a checkpoint folder mla-ts loads) as the GGUF file `out`. */
export function exportGguf(modelDir: string, out: string, opts: ExportOptions = {}): ExportSummary {
  const t0 = performance.now();
  const type = opts.type ?? "f16";
  if (!(EXPORT_TYPES as readonly string[]).includes(type)) throw new MlaError(`--type must be one of ${EXPORT_TYPES.join(", ")}, got "${type}"`);
  if (resolve(out) === resolve(modelDir)) throw new MlaError("the GGUF file must not be the model folder");
  const c = loadConfig(modelDir);
  const arch = ggufArchOf(c.modelType);
  const warnings = checkSupported(c);
  const ckpt = Checkpoint.open(modelDir);
  const plan = planTensors(c, arch, ckpt);
  const specs: GgufTensorSpec[] = plan.map((p) => ({ name: p.name, shape: p.shape, type: tensorType(p.name, p.shape, TARGET[type], opts.fallback) }));
  const metadata = [...modelMetadata(c, arch, modelDir, type), ...ggufTokenizer(modelDir, c)];
  const tmp = `${out}.partial`;
  const w = GgufWriter.open(tmp, metadata, specs);
  try {
    writeTensors(w, plan, specs, opts);
  } catch (e) {
    w.abort();
    rmSync(tmp, { force: true });
    throw e;
  }
  renameSync(tmp, out); // a file at `out` is always a whole one
  const types: Record<string, number> = {};
  for (const s of specs) types[s.type] = (types[s.type] ?? 0) + 1;
  return { path: out, arch, tensors: specs.length, bytes: statSync(out).size, types, warnings, seconds: (performance.now() - t0) / 1000 };
}

/** Compute, encode and write each tensor in turn: one tensor in memory at a time. */
function writeTensors(w: GgufWriter, plan: readonly Planned[], specs: readonly GgufTensorSpec[], { onProgress, quantizeBlocks }: ExportOptions): void {
  const total = specs.reduce((s, t) => s + ggufTensorBytes(t), 0);
  let done = 0;
  for (let i = 0; i < plan.length; i++) {
    const bytes = encode(plan[i].values(), specs[i], quantizeBlocks);
    w.writeTensor(specs[i].name, bytes);
    done += bytes.byteLength;
    onProgress?.(done, total, specs[i].name);
  }
  w.close();
}

// ---------------------------------------------------------------------------------------------------------------
// What llama.cpp runs differently, or not at all

/** Refuse what llama.cpp cannot run; return warnings for what it runs differently. */
function checkSupported(c: ModelConfig): string[] {
  const warnings: string[] = [];
  if (c.rope.type === "longrope") throw new MlaError("longrope RoPE (MiniCPM3, or mla convert --rope-key grouped) has no llama.cpp equivalent for this architecture; convert with --rope-key shared to export");
  if (c.embedScale !== 1 || c.residualScale !== 1 || c.logitScale !== 1) throw new MlaError("embedding, residual or logit multipliers (MiniCPM3's scale_emb, scale_depth, dim_model_base) have no place in llama.cpp's deepseek2");
  if (c.nRoutedExperts > 0 && c.moeLayerFreq !== 1) throw new MlaError(`moe_layer_freq ${c.moeLayerFreq}: llama.cpp's deepseek2 runs MoE in every layer after first_k_dense_replace`);
  const first = firstMoeLayer(c);
  for (let i = 0; i < c.numLayers; i++) {
    if (isMoeLayer(c, i) !== i >= first) throw new MlaError(`MoE layers that do not all follow the dense ones (layer ${i}): llama.cpp's deepseek2 runs MoE in every layer after leading_dense_block_count`);
  }
  if (c.attention === "gqa" && c.rope.type === "yarn") throw new MlaError("YaRN RoPE on a llama-family model is not exported (mla-ts reads it for MLA models only)");
  const r = c.router;
  if (r && r.groupScore === "max" && r.topGroups < r.groups) {
    warnings.push("group_limited_greedy routing: llama.cpp ranks expert groups by the sum of their two best scores (DeepSeek-V3's rule), not by their best, so MoE outputs can differ");
  }
  if (c.slidingWindow !== null && c.slidingWindow < c.maxPositionEmbeddings) {
    warnings.push(`sliding window ${c.slidingWindow}: llama.cpp's llama and qwen2 architectures attend globally, so contexts longer than the window differ`);
  }
  return warnings;
}

// ---------------------------------------------------------------------------------------------------------------
// Tensors

/** The GGUF tensors in file order, each with how to compute its F32 values from the checkpoint. */
function planTensors(c: ModelConfig, arch: GgufArch, ckpt: Checkpoint): Planned[] {
  const plan: Planned[] = [];
  const experts = new Map<string, { shape: number[]; hf: string[] }>();
  const load = (hf: string) => toF32(ckpt.load(hf));
  for (const [hf, shape] of expectedTensors(c)) {
    const e = expertOf(hf);
    if (e) {
      let group = experts.get(e.gguf);
      if (!group) {
        group = { shape: [c.nRoutedExperts, ...shape], hf: new Array<string>(c.nRoutedExperts) };
        experts.set(e.gguf, group);
        const g = group;
        plan.push({ name: e.gguf, shape: g.shape, values: () => stack(g.hf.map((n) => () => load(n))) });
      }
      group.hf[e.expert] = hf;
    } else if (hf.endsWith(".self_attn.kv_b_proj.weight")) {
      plan.push(...splitKvB(c, arch, hf, load));
    } else {
      const heads = ropePermutedHeads(arch, hf, c.numHeads, c.numKvHeads);
      const order = heads === null ? mlaHalvesOrder(c, arch, hf) : ropePermutationOrder(shape[0], heads);
      const values = order === null ? () => load(hf) : () => gatherRows(load(hf), shape, order);
      plan.push({ name: ggufTensorName(arch, hf), shape, values });
    }
  }
  const freqs = c.rope.type === "llama3" ? llama3RopeFreqs(c) : null;
  if (freqs) plan.push({ name: "rope_freqs.weight", shape: [freqs.length], values: () => freqs });
  return plan;
}

/** Stack same-shaped tensors along a new first dimension (the routed experts of a layer). */
function stack(parts: (() => Float32Array)[]): Float32Array {
  const first = parts[0]();
  const out = new Float32Array(first.length * parts.length);
  out.set(first);
  for (let i = 1; i < parts.length; i++) out.set(parts[i](), i * first.length);
  return out;
}

/**
 * kv_b_proj [n_head (d_h + d_v), d_c] as llama.cpp's MLA reads it: attn_k_b [n_head, d_c, d_h] (each head's W^UK
 * transposed, so the query's nope part is absorbed by one batched product) and attn_v_b [n_head, d_v, d_c].
 */
function splitKvB(c: ModelConfig, arch: GgufArch, hf: string, load: (hf: string) => Float32Array): Planned[] {
  const H = c.numHeads, dn = c.qkNopeHeadDim, dv = c.vHeadDim, dc = c.kvLoraRank;
  const kName = ggufTensorName(arch, hf.replace("kv_b_proj", "k_b_proj")), vName = ggufTensorName(arch, hf.replace("kv_b_proj", "v_b_proj"));
  let cached: Float32Array | null = null; // k_b and v_b are written one after the other: read kv_b once
  const kvb = () => (cached ??= load(hf));
  const k = (): Float32Array => {
    const w = kvb(), out = new Float32Array(H * dc * dn);
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < dn; i++) {
        const src = (h * (dn + dv) + i) * dc;
        for (let j = 0; j < dc; j++) out[(h * dc + j) * dn + i] = w[src + j];
      }
    }
    return out;
  };
  const v = (): Float32Array => {
    const w = kvb(), out = new Float32Array(H * dv * dc);
    for (let h = 0; h < H; h++) out.set(w.subarray((h * (dn + dv) + dn) * dc, (h + 1) * (dn + dv) * dc), h * dv * dc);
    cached = null;
    return out;
  };
  return [{ name: kName, shape: [H, dc, dn], values: k }, { name: vName, shape: [H, dv, dc], values: v }];
}

/**
 * An MLA model that rotates by halves (MiniCPM3-style pairs (j, j + d_h^R/2); rope_interleave false) for llama.cpp's
 * deepseek2, which rotates adjacent pairs: the RoPE rows of every query head (q_b_proj / q_proj) and of k_R
 * (kv_a_proj_with_mqa) reordered so that pair j sits at rows (2j, 2j + 1). Both sides of every score move alike, so
 * the scores are the same. null where no rows move.
 */
function mlaHalvesOrder(c: ModelConfig, arch: GgufArch, hf: string): Int32Array | null {
  if (arch !== "deepseek2" || c.ropeStyle !== "halves") return null;
  const dr = c.qkRopeHeadDim, dn = c.qkNopeHeadDim, dc = c.kvLoraRank, pairs = ropePermutationOrder(dr, 1);
  const blocks = (rows: number, stride: number, offset: number): Int32Array => {
    const order = Int32Array.from({ length: rows }, (_, r) => r);
    for (let s = offset; s < rows; s += stride) for (let r = 0; r < dr; r++) order[s + r] = s + pairs[r];
    return order;
  };
  if (/\.self_attn\.(q_b_proj|q_proj)\.weight$/.test(hf)) return blocks(c.numHeads * (dn + dr), dn + dr, dn);
  if (hf.endsWith(".self_attn.kv_a_proj_with_mqa.weight")) return blocks(dc + dr, dc + dr, dc);
  return null;
}

/** GGUF row r is HF row order[r] (a matrix's rows, or a bias's entries): LlamaModel.permute, mlaHalvesOrder. */
function gatherRows(w: Float32Array, shape: readonly number[], order: Int32Array): Float32Array {
  const rows = shape[0], cols = shape.length > 1 ? shape[1] : 1;
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) out.set(w.subarray(order[r] * cols, (order[r] + 1) * cols), r * cols);
  return out;
}

/** llama3 RoPE scaling as llama.cpp reads it: the divisor of each rotated pair's frequency (LlamaModel.generate_extra_tensors). */
function llama3RopeFreqs(c: ModelConfig): Float32Array {
  const r = c.rope, dim = c.headDim;
  const low = r.lowFreqFactor ?? 1, high = r.highFreqFactor ?? 4;
  const lowWavelen = r.originalMaxPositionEmbeddings / low, highWavelen = r.originalMaxPositionEmbeddings / high;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const freq = Math.fround(1 / Math.fround(r.theta ** Math.fround((2 * i) / dim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = r.factor;
    else {
      const smooth = (r.originalMaxPositionEmbeddings / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - smooth) / r.factor + smooth);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Types and encodings

/** The GGML type of one tensor under the file's target type (llama-quant.cpp's rules; see the header). */
export function tensorType(name: string, shape: readonly number[], target: GgufWriteType, fallback: KQuantFallback = "llama.cpp"): GgufWriteType {
  const keepF32 = shape.length < 2 || !name.endsWith(".weight") || name.endsWith("_norm.weight") || name.includes("ffn_gate_inp.weight");
  if (keepF32) return "F32";
  const cols = shape[shape.length - 1];
  let t = target;
  if (cols % ggufBlockSize(t) && t.endsWith("_K")) t = fallback === "q8_0" ? "Q8_0" : t === "Q4_K" ? "Q5_0" : t === "Q5_K" ? "Q5_1" : "Q8_0";
  return cols % ggufBlockSize(t) ? "F16" : t;
}

/** A tensor's F32 values as the bytes of its GGML type. */
function encode(x: Float32Array, spec: GgufTensorSpec, quantizeBlocks?: ExportOptions["quantizeBlocks"]): Uint8Array {
  const cols = spec.shape[spec.shape.length - 1], rows = x.length / cols;
  const t = spec.type;
  if (t === "F32") return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  if (t === "F16" || t === "BF16") {
    const conv = t === "F16" ? f32ToF16 : f32ToBf16, out = new Uint16Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = conv(x[i]);
    return new Uint8Array(out.buffer);
  }
  if (t === "Q8_0") return q8Blocks(x, rows, cols);
  if (t === "Q5_1") return q5_1Blocks(x);
  if (!isBlockDType(t)) throw new MlaError(`no encoder for GGML type ${t}`);
  if (quantizeBlocks) return quantizeBlocks(x, rows, cols, t);
  return quantizeRows(t, rows, cols, (r) => x.subarray(r * cols, (r + 1) * cols));
}

/** Q8 (int8 and f32 scales apart, each scale an f16 value) packed as Q8_0 blocks: f16 scale, 32 int8. Lossless. */
function q8Blocks(x: Float32Array, rows: number, cols: number): Uint8Array {
  const q = quantizeQ8(tensor("F32", [rows, cols], x));
  const data = q.data as Int8Array, scales = q.scales!;
  const out = new Uint8Array(scales.length * 34);
  for (let b = 0; b < scales.length; b++) {
    const h = f32ToF16(scales[b]);
    out[34 * b] = h & 255;
    out[34 * b + 1] = h >> 8;
    out.set(new Uint8Array(data.buffer, data.byteOffset + 32 * b, 32), 34 * b + 2);
  }
  return out;
}

/**
 * Q5_1 (quantize_row_q5_1_ref, in float32): the type llama-quantize falls back to for Q5_K rows that are not whole
 * 256-blocks (Q5_0, Q4_K's fallback, is a block dtype quantizeRows makes). Block: f16 d, f16 min, 4 bytes of fifth
 * bits, 16 of nibbles; w = d q + min.
 */
function q5_1Blocks(x: Float32Array): Uint8Array {
  const f = Math.fround, size = 24;
  const out = new Uint8Array((x.length / 32) * size), view = new DataView(out.buffer);
  for (let b = 0; b < x.length / 32; b++) {
    const o = 32 * b, at = size * b;
    let lo = Infinity, hi = -Infinity;
    for (let j = 0; j < 32; j++) { lo = Math.min(lo, x[o + j]); hi = Math.max(hi, x[o + j]); }
    const min = lo, d = f(f(hi - lo) / 31), id = d ? f(1 / d) : 0;
    view.setUint16(at, f32ToF16(d), true);
    view.setUint16(at + 2, f32ToF16(min), true);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const q = (v: number) => Math.trunc(f(f(f(v - min) * id) + 0.5)) & 255;
      const q0 = q(x[o + j]), q1 = q(x[o + 16 + j]);
      out[at + 8 + j] = (q0 & 15) | ((q1 & 15) << 4);
      qh |= ((q0 & 16) >> 4) << j;
      qh |= ((q1 & 16) >> 4) << (j + 16);
    }
    view.setUint32(at + 4, qh >>> 0, true);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Metadata

type Kv = readonly [string, GgufTypedValue];

/** general.* and the architecture's hyperparameters. */
export function modelMetadata(c: ModelConfig, arch: GgufArch, dir: string, type: ExportType): Kv[] {
  const k = (key: string) => archKey(arch, key);
  const kv: Kv[] = [
    [GGUF_KEYS.architecture, gv.str(arch)],
    [GGUF_KEYS.name, gv.str(basename(resolve(dir)))],
    ["general.file_type", gv.u32(FILE_TYPE[type])],
  ];
  if (type !== "f32" && type !== "f16" && type !== "bf16") kv.push(["general.quantization_version", gv.u32(2)]);
  kv.push(
    [k("{arch}.vocab_size"), gv.u32(c.vocabSize)],
    [k("{arch}.context_length"), gv.u32(c.maxPositionEmbeddings)],
    [k("{arch}.embedding_length"), gv.u32(c.hiddenSize)],
    [k("{arch}.feed_forward_length"), gv.u32(c.intermediateSize)],
    [k("{arch}.block_count"), gv.u32(c.numLayers)],
    [k("{arch}.attention.head_count"), gv.u32(c.numHeads)],
    [k("{arch}.attention.layer_norm_rms_epsilon"), gv.f32(c.rmsNormEps)],
    [k("{arch}.rope.freq_base"), gv.f32(c.rope.theta)],
  );
  kv.push(...(arch === "deepseek2" ? mlaMetadata(c, k) : gqaMetadata(c, k)), ...ropeScaling(c, arch, k));
  return kv;
}

/** deepseek2: MLA as MQA over the latent, the routed and shared experts, the router. */
function mlaMetadata(c: ModelConfig, k: (key: string) => string): Kv[] {
  const moe = c.nRoutedExperts > 0;
  // llama.cpp reads q_lora_rank unless the model has 26/27 layers (V2-Lite); 0 selects the direct q_proj
  const kv: Kv[] = [
    [k(GGUF_KEYS.headCountKv), gv.u32(1)],
    [k(GGUF_KEYS.qLoraRank), gv.u32(c.qLoraRank ?? 0)],
    [k("{arch}.attention.kv_lora_rank"), gv.u32(c.kvLoraRank)],
    [k(GGUF_KEYS.keyLength), gv.u32(c.kvLoraRank + c.qkRopeHeadDim)],
    [k(GGUF_KEYS.valueLength), gv.u32(c.kvLoraRank)],
    [k(GGUF_KEYS.keyLengthMla), gv.u32(c.qkNopeHeadDim + c.qkRopeHeadDim)],
    [k(GGUF_KEYS.valueLengthMla), gv.u32(c.vHeadDim)],
    [k(GGUF_KEYS.ropeDims), gv.u32(c.qkRopeHeadDim)],
    [k("{arch}.leading_dense_block_count"), gv.u32(firstMoeLayer(c))],
    [k("{arch}.expert_feed_forward_length"), gv.u32(moe ? c.moeIntermediateSize : c.intermediateSize)],
    [k("{arch}.expert_shared_count"), gv.u32(c.nSharedExperts)],
  ];
  const r = c.router;
  if (!moe || !r) return kv;
  kv.push(
    [k("{arch}.expert_count"), gv.u32(r.experts)],
    [k("{arch}.expert_used_count"), gv.u32(r.topK)],
    [k("{arch}.expert_group_count"), gv.u32(r.groups)],
    [k("{arch}.expert_group_used_count"), gv.u32(r.topGroups)],
    [k("{arch}.expert_weights_scale"), gv.f32(r.scaling)],
    [k(GGUF_KEYS.expertGatingFunc), gv.u32(EXPERT_GATING_FUNC[r.scoring])],
  );
  if (r.normalize) kv.push([k(GGUF_KEYS.expertWeightsNorm), gv.bool(true)]);
  return kv;
}

/** The first MoE layer (llama.cpp: every layer from there on is MoE); numLayers for a dense model. */
function firstMoeLayer(c: ModelConfig): number {
  for (let i = 0; i < c.numLayers; i++) if (isMoeLayer(c, i)) return i;
  return c.numLayers;
}

/** llama/qwen2: GQA head counts and sizes; mistral's sliding window (llama.cpp's llama ignores it, mla-ts reads it back). */
function gqaMetadata(c: ModelConfig, k: (key: string) => string): Kv[] {
  const kv: Kv[] = [
    [k(GGUF_KEYS.headCountKv), gv.u32(c.numKvHeads)],
    [k(GGUF_KEYS.keyLength), gv.u32(c.headDim)],
    [k(GGUF_KEYS.valueLength), gv.u32(c.headDim)],
    [k(GGUF_KEYS.ropeDims), gv.u32(c.headDim)],
  ];
  if (c.slidingWindow !== null) kv.push([k(GGUF_KEYS.slidingWindow), gv.u32(c.slidingWindow)]);
  return kv;
}

/** RoPE scaling keys (TextModel.set_gguf_parameters; deepseek2's yarn_log_multiplier from DeepseekV2Model). */
function ropeScaling(c: ModelConfig, arch: GgufArch, k: (key: string) => string): Kv[] {
  const r = c.rope;
  if (r.type === "linear") return [[k(GGUF_KEYS.ropeScalingType), gv.str("linear")], [k(GGUF_KEYS.ropeScalingFactor), gv.f32(r.factor)]];
  if (r.type !== "yarn") return []; // default; llama3 is the rope_freqs tensor
  const kv: Kv[] = [
    [k(GGUF_KEYS.ropeScalingType), gv.str("yarn")],
    [k(GGUF_KEYS.ropeScalingFactor), gv.f32(r.factor)],
    [k(GGUF_KEYS.ropeScalingOrigCtx), gv.u32(r.originalMaxPositionEmbeddings)],
    [k(GGUF_KEYS.ropeYarnBetaFast), gv.f32(r.betaFast)],
    [k(GGUF_KEYS.ropeYarnBetaSlow), gv.f32(r.betaSlow)],
  ];
  if (r.attentionFactor !== undefined) kv.push([k(GGUF_KEYS.ropeYarnAttnFactor), gv.f32(r.attentionFactor)]);
  // llama.cpp divides this by 0.1 again ([TAG_DEEPSEEK2_YARN_LOG_MUL_FIX])
  if (arch === "deepseek2" && r.mscaleAllDim) kv.push([k(GGUF_KEYS.ropeYarnLogMul), gv.f32(0.1 * r.mscaleAllDim)]);
  return kv;
}
