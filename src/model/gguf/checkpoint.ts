/**
 * A GGUF model as a TensorStore: Hugging Face names and shapes over llama.cpp's tensors, read one tensor at a time
 * by positional reads (never the whole file).
 *
 * - F32, F16, BF16 load as they are; Q8_0 becomes the engine's Q8 (the same values, int8 and f32 scales held apart);
 *   Q4_0, Q4_K, Q5_K, Q6_K and Q5_0 stay packed as stored. Other GGML types are listed under their own name, so the
 *   loader refuses the tensor by name and type if the model needs it.
 * - A layer's stacked experts (blk.N.ffn_gate_exps [n_expert, rows, cols]) give each HF expert tensor as a row
 *   slice: its byte range alone is read.
 * - llama's attn_q/attn_k rows, permuted by the converter for llama.cpp's RoPE, are put back in HF order.
 * - deepseek2's current layout (attn_k_b [n_head, dc, dn], attn_v_b [n_head, dv, dc]) gives kv_b_proj rebuilt
 *   (see loadKvB), and also k_b_proj / v_b_proj as stored, which the MLA layer uses directly (attention/mla.ts).
 */
import { MlaError } from "../../errors.js";
import { readGgufRange, type GgufFile, type GgufTensorInfo } from "../../io/gguf.js";
import { f16Lut, isBlockDType } from "../../tensor/dtype.js";
import { GGML_BLOCK, READABLE_GGML_TYPES, dequantizeGgml, isReadableGgmlType } from "../../tensor/ggml.js";
import { Q8_BLOCK } from "../../tensor/quant.js";
import { numel, rowF32, tensor, type Tensor } from "../../tensor/tensor.js";
import type { StoredTensorInfo, TensorStore } from "../tensor-store.js";
import { openGgufModel, type GgufModel } from "./files.js";
import { GGUF_KEYS, checkGgufArch, expertHfName, ropePermutedHeads, tryHfTensorName, type GgufArch } from "./names.js";

export { isGgufPath } from "./files.js";

/** How one HF tensor is made from the file. */
type Entry =
  | { readonly kind: "plain"; readonly src: Src; readonly info: StoredTensorInfo; readonly permuteHeads: number | null }
  | { readonly kind: "kvb"; readonly kB: Src; readonly vB: Src; readonly info: StoredTensorInfo };

/** A byte range of one part: a whole tensor, or one expert's rows of a stacked one. */
interface Src {
  readonly file: GgufFile;
  readonly tensor: GgufTensorInfo;
  readonly shape: readonly number[]; // row-major, as presented
  readonly begin: number;
  readonly bytes: number;
}

/**
 * The Tensor dtype a GGML type loads as: Q8_0 as Q8 (the same values); Q4_1 and Q5_1 (a min offset Q8 cannot carry)
 * as F32, exactly; the block dtypes, Q5_0 included, as themselves; the GGML name for the ones mla-ts does not read.
 * The legacy types appear only where llama-quantize fell back from a K type. Q5_0 is kept packed (0.69 bytes a
 * weight, not Q8's 1.06) because a Q4_K file holds it in large tensors too: DeepSeek-V2-Lite's 1408-wide
 * ffn_down_exps, a third of the expert weights.
 */
function dtypeOf(ggmlType: string): string {
  if (ggmlType === "Q8_0") return "Q8";
  if (ggmlType === "Q4_1" || ggmlType === "Q5_1") return "F32";
  return ggmlType;
}

export class GgufCheckpoint implements TensorStore {
  private closed = false;

  private constructor(readonly dir: string, readonly model: GgufModel, readonly arch: GgufArch, private readonly entries: Map<string, Entry>) {}

  static open(path: string): GgufCheckpoint {
    const model = openGgufModel(path);
    const arch = checkGgufArch(model.metadata.get(GGUF_KEYS.architecture));
    return new GgufCheckpoint(path, model, arch, directory(model, arch));
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): StoredTensorInfo {
    return this.entry(name).info;
  }

  missing(names: string[]): string[] {
    return names.filter((n) => !this.entries.has(n));
  }

  totalBytes(names?: string[]): number {
    let sum = 0;
    for (const n of names ?? this.entries.keys()) {
      const i = this.entries.get(n)?.info;
      if (i) sum += i.end - i.begin;
    }
    return sum;
  }

  load(name: string): Tensor {
    const e = this.entry(name);
    if (e.kind === "kvb") return loadKvB(e.kB, e.vB);
    const t = readSrc(e.src, name);
    return e.permuteHeads ? unpermuteRows(t, e.permuteHeads) : t;
  }

  /** Reads hold no descriptors between calls, so closing only stops further loads. */
  close(): void {
    this.closed = true;
  }

  private entry(name: string): Entry {
    if (this.closed) throw new MlaError(`GGUF model ${this.dir} was closed`);
    const e = this.entries.get(name);
    if (!e) throw new MlaError(`missing tensor ${name} in ${this.dir}`);
    return e;
  }
}

/** Every HF tensor the file provides, by name (see the file comment). */
function directory(m: GgufModel, arch: GgufArch): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const heads = (key: string) => m.metadata.get(key.replace("{arch}", arch));
  const nHead = Number(heads("{arch}.attention.head_count") ?? 0), nKv = Number(heads("{arch}.attention.head_count_kv") ?? nHead);
  for (const [name, { file, info }] of m.tensors) {
    if (/\.ffn_(gate|up|down)_exps\.weight$/.test(name)) {
      addExperts(out, file, info);
      continue;
    }
    const hf = tryHfTensorName(arch, name);
    if (!hf) continue; // rope_freqs (read into the config), MTP layers' extras: nothing the decoder loads
    const src = whole(file, info);
    out.set(hf, { kind: "plain", src, info: infoOf(src), permuteHeads: ropePermutedHeads(arch, hf, nHead, nKv) });
  }
  for (const [hf, e] of [...out]) {
    const m2 = /^(model\.layers\.\d+\.self_attn\.)k_b_proj\.weight$/.exec(hf);
    const v = m2 && out.get(`${m2[1]}v_b_proj.weight`);
    if (!m2 || !v || e.kind !== "plain" || v.kind !== "plain" || out.has(`${m2[1]}kv_b_proj.weight`)) continue;
    const bytes = e.info.end - e.info.begin + v.info.end - v.info.begin;
    const [H, dc, dn] = e.src.tensor.shape, dv = v.src.tensor.shape[1];
    const dtype = kvBDtype(e.src.tensor.type, v.src.tensor.type);
    out.set(`${m2[1]}kv_b_proj.weight`, { kind: "kvb", kB: e.src, vB: v.src, info: { dtype, shape: [H * (dn + dv), dc], begin: e.info.begin, end: e.info.begin + bytes } });
  }
  return out;
}

/** The stacked tensor [n_expert, rows, cols] as one HF matrix per expert. */
function addExperts(out: Map<string, Entry>, file: GgufFile, info: GgufTensorInfo): void {
  if (info.shape.length !== 3) throw new MlaError(`GGUF tensor ${info.name} has shape [${info.shape.join(", ")}], expected [n_expert, rows, cols]`);
  const [E, rows, cols] = info.shape;
  const per = info.bytes / E;
  for (let e = 0; e < E; e++) {
    const src: Src = { file, tensor: info, shape: [rows, cols], begin: info.offset + e * per, bytes: per };
    out.set(expertHfName(info.name, e)!, { kind: "plain", src, info: infoOf(src), permuteHeads: null });
  }
}

/** A whole tensor; 3-D per-head tensors (attn_k_b, attn_v_b) are presented as the matrix of their rows. */
function whole(file: GgufFile, info: GgufTensorInfo): Src {
  const s = info.shape;
  const shape = s.length === 3 ? [s[0] * s[1], s[2]] : s;
  return { file, tensor: info, shape, begin: info.offset, bytes: info.bytes };
}

function infoOf(src: Src): StoredTensorInfo {
  return { dtype: dtypeOf(src.tensor.type), shape: src.shape, begin: src.begin, end: src.begin + src.bytes };
}

/** Read one range and view it as the Tensor of its dtype (Q8_0 split into int8 values and f32 scales). */
function readSrc(src: Src, name: string): Tensor {
  const type = src.tensor.type;
  if (!isReadableGgmlType(type)) {
    throw new MlaError(`GGUF tensor ${src.tensor.name} (${name}) has type ${type}, which mla-ts does not read (${READABLE_GGML_TYPES.join(", ")})`);
  }
  const bytes = readGgufRange(src.file.path, src.begin, src.bytes, src.tensor.name);
  if (type === "F32") return tensor("F32", src.shape, new Float32Array(bytes.buffer, 0, src.bytes / 4));
  if (type === "F16" || type === "BF16") return tensor(type, src.shape, new Uint16Array(bytes.buffer, 0, src.bytes / 2));
  if (type === "Q8_0") return q8FromQ8_0(bytes, src.shape);
  if (type === "Q4_1" || type === "Q5_1") return tensor("F32", src.shape, dequantizeGgml(type, bytes, 0, numel(src.shape), new Float32Array(numel(src.shape))));
  if (isBlockDType(type)) return tensor(type, src.shape, bytes);
  throw new MlaError(`GGUF tensor ${src.tensor.name}: type ${type} has no Tensor dtype`);
}

/** Q8_0 blocks (f16 d, 32 x int8) -> Q8: the same int8 values, the scale widened to f32 (exact). */
function q8FromQ8_0(bytes: Uint8Array, shape: readonly number[]): Tensor {
  const n = numel(shape), nb = n / Q8_BLOCK, [, blockBytes] = GGML_BLOCK.Q8_0;
  const q = new Int8Array(n), scales = new Float32Array(nb);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const src = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lut = f16Lut();
  for (let b = 0; b < nb; b++) {
    const at = b * blockBytes;
    scales[b] = lut[view.getUint16(at, true)];
    q.set(src.subarray(at + 2, at + 2 + Q8_BLOCK), b * Q8_BLOCK);
  }
  return tensor("Q8", shape, q, scales);
}

/**
 * Undo LlamaModel.permute: within each head, GGUF row 2i+j holds HF row j*half+i (./names.ts). A row permutation,
 * so it moves whole rows of any dtype (packed blocks and Q8 scales with them).
 */
function unpermuteRows(t: Tensor, nHead: number): Tensor {
  const rows = t.shape[0];
  const hd = rows / nHead, half = hd / 2;
  if (!Number.isInteger(half)) throw new MlaError(`cannot undo the RoPE permutation of ${rows} rows over ${nHead} heads`);
  const out = tensor(t.dtype, t.shape);
  const stride = t.data.length / rows;
  const sStride = t.scales ? t.scales.length / rows : 0;
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = h * hd + 2 * i + j, to = h * hd + j * half + i;
        (out.data as Uint8Array).set((t.data as Uint8Array).subarray(from * stride, (from + 1) * stride), to * stride);
        if (t.scales && out.scales) out.scales.set(t.scales.subarray(from * sStride, (from + 1) * sStride), to * sStride);
      }
    }
  }
  return out;
}

/**
 * kv_b_proj [H (dn + dv), dc] rebuilt from attn_k_b (per head [dc, dn], transposed) and attn_v_b (per head
 * [dv, dc]), for the naive MLA form and every consumer that reads kv_b_proj (WebGPU, info). Elements are moved, not
 * rounded, when both parts have the same float dtype; otherwise (quantized parts, whose blocks run along the other
 * axis in k_b) it is F32: kv_b_proj is small (H (dn + dv) dc, about 1% of a DeepSeek layer), and the absorbed form
 * multiplies with the stored k_b_proj / v_b_proj themselves (see attention/mla.ts), so the decode path keeps the
 * file's quantization.
 */
function loadKvB(kB: Src, vB: Src): Tensor {
  const k = readSrc(kB, kB.tensor.name), v = readSrc(vB, vB.tensor.name);
  const [H, dc, dn] = kB.tensor.shape, dv = vB.tensor.shape[1];
  const same = k.dtype === v.dtype && (k.dtype === "F32" || k.dtype === "F16" || k.dtype === "BF16");
  const shape = [H * (dn + dv), dc];
  if (same) {
    const out = tensor(k.dtype, shape), o = out.data as Float32Array | Uint16Array;
    const ks = k.data as Float32Array | Uint16Array, vs = v.data as Float32Array | Uint16Array;
    for (let h = 0; h < H; h++) {
      for (let d = 0; d < dn; d++) for (let c = 0; c < dc; c++) o[(h * (dn + dv) + d) * dc + c] = ks[(h * dc + c) * dn + d];
      o.set(vs.subarray(h * dv * dc, (h + 1) * dv * dc), (h * (dn + dv) + dn) * dc);
    }
    return out;
  }
  const o = new Float32Array(H * (dn + dv) * dc), kr = new Float32Array(dn), vr = new Float32Array(dc);
  for (let h = 0; h < H; h++) {
    for (let c = 0; c < dc; c++) {
      const row = rowF32(k, h * dc + c, dn, kr);
      for (let d = 0; d < dn; d++) o[(h * (dn + dv) + d) * dc + c] = row[d];
    }
    for (let j = 0; j < dv; j++) o.set(rowF32(v, h * dv + j, dc, vr), (h * (dn + dv) + dn + j) * dc);
  }
  return tensor("F32", shape, o);
}

function kvBDtype(kType: string, vType: string): string {
  return kType === vType && (kType === "F32" || kType === "F16" || kType === "BF16") ? kType : "F32";
}
