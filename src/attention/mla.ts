import { rowF32, tensor, type Tensor } from "../tensor/tensor.js";
import { isBlockDType } from "../tensor/dtype.js";
import { MlaError } from "../errors.js";
import { ropeHalves, ropeInterleaved } from "../backends/cpu/index.js";
import { attendLatentRows, cpuOps, type Ops } from "../backends/ops.js";
import type { LatentCache } from "./cache.js";
import type { RopeStyle, RotaryEmbedding } from "./rope.js";

/**
 * The two ways to compute the same MLA attention:
 * - `naive`: up-project every cached c_KV into per-head keys (W^UK) and values (W^UV), then ordinary attention.
 * - `absorb`: fold W^UK into the query and W^UV after the softmax, so all heads read the latent cache directly.
 * - `auto` (the default): naive for prefill (many new tokens, few cached), absorbed for decode (one token, long cache)
 *   and for a short chunk after a long cache (see resolveMlaMode).
 */
export type MlaMode = "naive" | "absorb" | "auto";

/**
 * The form a segment of `newTokens` tokens runs in, its cache holding `cacheLength` rows once they are appended.
 * `auto` with the dims counts each form's multiply-adds per head: naive up-projects every cached row, L d_c (d_h +
 * d_v), then attends, T L (d_h + d_h^R + d_v); absorbed folds the queries and outputs through W^UK and W^UV, T d_c
 * (d_h + d_v), and attends over the latent rows, T L (2 d_c + d_h^R). A fresh prompt (L = T) is always cheaper
 * naive and one token absorbed; a short chunk after a long cache (the rest of a prompt whose prefix came from the
 * prefix cache, a chat's next turn) is cheaper absorbed. It depends on the segment alone, so a sequence takes the
 * same form alone or batched.
 */
export function resolveMlaMode(mode: MlaMode, newTokens: number, cacheLength = newTokens, dims?: Pick<MlaDims, "kvLoraRank" | "qkNopeHeadDim" | "qkRopeHeadDim" | "vHeadDim">): "naive" | "absorb" {
  if (mode !== "auto") return mode;
  if (newTokens <= 1) return "absorb";
  if (!dims || cacheLength <= newTokens) return "naive";
  const { kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv } = dims, T = newTokens, L = cacheLength;
  const naive = L * dc * (dn + dv) + T * L * (dn + dr + dv);
  const absorbed = T * dc * (dn + dv) + T * L * (2 * dc + dr);
  return absorbed < naive ? "absorb" : "naive";
}

export interface MlaDims {
  readonly hidden: number; // D
  readonly nHeads: number; // n_h
  readonly qLoraRank: number | null; // d_c' (null: no query compression)
  readonly kvLoraRank: number; // d_c
  readonly qkNopeHeadDim: number; // d_h
  readonly qkRopeHeadDim: number; // d_h^R
  readonly vHeadDim: number; // d_v
  /** Pairs of the RoPE dims of q and k_R: interleaved (DeepSeek, the default) or halves (MiniCPM3, rope_interleave false). */
  readonly ropeStyle?: RopeStyle;
}

/** Weights of one MLA layer, Hugging Face names in comments. Linear layout [out, in]. */
/** The query path: compressed through c_Q (q_lora_rank set, V2/V3) or one plain projection (V2-Lite). */
export type MlaQueryWeights =
  | {
      readonly kind: "lora";
      readonly qA: Tensor; //        q_a_proj            W^DQ  [d_c', D]
      readonly qANorm: Float32Array; // q_a_layernorm    [d_c']
      readonly qB: Tensor; //        q_b_proj            W^UQ|W^QR [n_h(d_h+d_h^R), d_c']
    }
  | {
      readonly kind: "direct";
      readonly q: Tensor; //         q_proj              (no compression) [n_h(d_h+d_h^R), D]
    };

export interface MlaWeights {
  readonly query: MlaQueryWeights;
  readonly kvA: Tensor; //       kv_a_proj_with_mqa  W^DKV|W^KR [d_c + d_h^R, D]
  readonly kvANorm: Float32Array; // kv_a_layernorm [d_c]
  readonly kvB: Tensor; //       kv_b_proj           per head [W^UK (d_h rows) ; W^UV (d_v rows)] x d_c
  readonly o: Tensor; //         o_proj              W^O [D, n_h d_v]
  /** q_a_proj (or q_proj) and kv_a_proj_with_mqa stacked [q rows + d_c + d_h^R, D], when the backend asked for it. */
  readonly qkvA?: Tensor;
  /**
   * kv_b_proj split as GGUF files store it (llama.cpp's attn_k_b / attn_v_b), when the file has them: ukT is
   * (W^UK)^T of every head [n_h d_c, d_h] (what transposeUK builds), uv is W^UV of every head [n_h d_v, d_c]. The
   * absorbed form multiplies with them as stored, so a quantized file's decode keeps its quantization; kvB (rebuilt
   * by the loader) serves the naive form.
   */
  readonly ukT?: Tensor;
  readonly uv?: Tensor;
}

/** DeepSeek's and transformers' latent norms use this eps whatever rms_norm_eps says. */
export const LATENT_NORM_EPS = 1e-6;

/**
 * (W^UK)^T of every head as one matrix [n_h d_c, d_h]: rows h*d_c.. are head h's d_c x d_h block, so folding
 * W^UK into the query is an ordinary product (q~_h = block_h q_nope_h) on the fast kernels. Same dtype as kv_b_proj
 * (elements are moved, not rounded); F32 when kv_b_proj is Q8 or GGML blocks (a GGUF file's attn_kv_b), whose
 * blocks run along the other axis.
 */
export function transposeUK(kvB: Tensor, H: number, dn: number, dv: number, dc: number): Tensor {
  if (kvB.dtype === "Q8" || isBlockDType(kvB.dtype)) {
    const out = new Float32Array(H * dc * dn), row = new Float32Array(dc);
    for (let h = 0; h < H; h++) for (let d = 0; d < dn; d++) {
      const r = rowF32(kvB, h * (dn + dv) + d, dc, row);
      for (let c = 0; c < dc; c++) out[(h * dc + c) * dn + d] = r[c];
    }
    return tensor("F32", [H * dc, dn], out);
  }
  const src = kvB.data as Float32Array | Uint16Array;
  const out = kvB.dtype === "F32" ? new Float32Array(H * dc * dn) : new Uint16Array(H * dc * dn);
  for (let h = 0; h < H; h++) for (let d = 0; d < dn; d++) {
    const so = (h * (dn + dv) + d) * dc;
    for (let c = 0; c < dc; c++) out[(h * dc + c) * dn + d] = src[so + c];
  }
  return tensor(kvB.dtype, [H * dc, dn], out);
}

/** T consecutive rows of a batched activation that belong to one sequence, with that sequence's cache. */
export interface AttentionSegment<C> {
  readonly T: number;
  readonly cache: C;
}

/** Multi-head Latent Attention of DeepSeek-V2/V3 over a latent cache. */
export class MultiHeadLatentAttention {
  /** (W^UK)^T per head, for the absorbed form (see transposeUK). */
  readonly ukT: Tensor;
  /** W^UV for the absorbed form: its matrix, head h's first row (h * stride + row0) and the row stride per head. */
  private readonly uv: { readonly w: Tensor; readonly row0: number; readonly stride: number };

  constructor(
    readonly dims: MlaDims,
    readonly w: MlaWeights,
    readonly rope: RotaryEmbedding,
    readonly scale: number,
    readonly ops: Ops = cpuOps,
  ) {
    if (rope.dim !== dims.qkRopeHeadDim) throw new MlaError(`RoPE table is for ${rope.dim} dims, layer needs ${dims.qkRopeHeadDim}`);
    const { nHeads: H, qkNopeHeadDim: dn, vHeadDim: dv, kvLoraRank: dc } = dims;
    // a stored k_b_proj/v_b_proj came through the loader's prepare hook already
    this.ukT = w.ukT ?? ops.prepare(transposeUK(w.kvB, H, dn, dv, dc));
    this.uv = w.uv ? { w: w.uv, row0: 0, stride: dv } : { w: w.kvB, row0: dn, stride: dn + dv };
  }

  /** Attention output [T, D] for T new tokens x [T, D] (already normed), appending their latents to `cache`. */
  forward(x: Float32Array, T: number, cache: LatentCache, mode: MlaMode = "auto"): Float32Array {
    return this.forwardBatch(x, [{ T, cache }], mode);
  }

  /**
   * Several sequences in one pass: x holds the rows of every segment back to back (segment i: T_i new tokens of
   * its own sequence). The projections (W^DQ/W^DKV, W^UQ, W^O) run once over all rows, so each weight matrix is
   * streamed once per step whatever the batch; RoPE, the cache append and attention run per segment on its own
   * latent cache (the form chosen per segment by resolveMlaMode: `auto` absorbs a one-token decode and a short
   * chunk after a long cache, up-projects a prefill).
   */
  forwardBatch(x: Float32Array, segments: readonly AttentionSegment<LatentCache>[], mode: MlaMode = "auto"): Float32Array {
    const { nHeads: H, kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv } = this.dims;
    const N = segments.reduce((s, g) => s + g.T, 0);
    const { down, R, qRows } = this.project(x, N); // per token [c_Q or q | c_KV | k_rope], row stride R
    const q = this.query(down, N, R); // [N, H, dn + dr]
    // c_KV = RMSNorm(W^DKV x), k_rope = RoPE(W^KR x): one cache row [c_KV | k_rope] per token.
    const lat = down.subarray(qRows);
    this.ops.rmsNorm(lat, lat, N, dc, this.w.kvANorm, LATENT_NORM_EPS, R, R);
    const o = new Float32Array(N * H * dv);
    const rope = this.dims.ropeStyle === "halves" ? ropeHalves : ropeInterleaved;
    const decode: { row: number; cache: LatentCache }[] = []; // absorbed one-token segments, batched below
    let r = 0;
    for (const { T, cache } of segments) {
      const { cos, sin } = this.rope.table(cache.length, T);
      const qs = q.subarray(r * H * (dn + dr), (r + T) * H * (dn + dr));
      rope(qs, T, H, dr, dn, H * (dn + dr), dn + dr, cos, sin);
      rope(lat.subarray(r * R), T, 1, dr, dc, R, 0, cos, sin);
      cache.append(down, T, R, r * R + qRows);
      const form = resolveMlaMode(mode, T, cache.length, this.dims);
      if (form === "absorb" && T === 1) decode.push({ row: r, cache });
      else o.set(form === "naive" ? this.attendNaive(qs, T, cache) : this.attendAbsorbed(qs, T, cache), r * H * dv);
      r += T;
    }
    if (decode.length > 1) this.attendAbsorbedDecodes(q, decode, o);
    else for (const { row, cache } of decode) o.set(this.attendAbsorbed(q.subarray(row * H * (dn + dr), (row + 1) * H * (dn + dr)), 1, cache), row * H * dv);
    const out = new Float32Array(N * this.dims.hidden);
    this.ops.linear(out, o, N, H * dv, this.w.o, this.dims.hidden);
    return out;
  }

  /** Everything computed from x itself: the query input (c_Q, or q uncompressed) and the latent row, side by side. */
  private project(x: Float32Array, T: number): { down: Float32Array; R: number; qRows: number } {
    const { hidden: D, nHeads: H, qLoraRank, kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr } = this.dims;
    const qRows = qLoraRank ?? H * (dn + dr), R = qRows + dc + dr;
    const down = new Float32Array(T * R);
    if (this.w.qkvA) {
      this.ops.linear(down, x, T, D, this.w.qkvA, R); // stacked at load: one pass over x
    } else {
      const wq = this.w.query.kind === "lora" ? this.w.query.qA : this.w.query.q;
      this.ops.linear(down, x, T, D, wq, qRows, 0, D, R);
      this.ops.linear(down.subarray(qRows), x, T, D, this.w.kvA, dc + dr, 0, D, R);
    }
    return { down, R, qRows };
  }

  /** q [T, H, dn + dr] from the projected rows (c_Q -> RMSNorm -> W^UQ|W^QR, or q itself). */
  private query(down: Float32Array, T: number, R: number): Float32Array {
    const { nHeads: H, qLoraRank, qkNopeHeadDim: dn, qkRopeHeadDim: dr } = this.dims;
    const q = new Float32Array(T * H * (dn + dr)), w = this.w.query;
    if (w.kind === "lora") {
      if (!qLoraRank) throw new MlaError("MLA weights have a compressed query (q_a_proj) but the dims have no q_lora_rank");
      this.ops.rmsNorm(down, down, T, qLoraRank, w.qANorm, LATENT_NORM_EPS, R, R);
      this.ops.linear(q, down, T, qLoraRank, w.qB, H * (dn + dr), 0, R);
    } else {
      for (let t = 0; t < T; t++) q.set(down.subarray(t * R, t * R + H * (dn + dr)), t * H * (dn + dr));
    }
    return q;
  }

  /** Up-project the whole latent cache to per-head K [L, H, dn+dr] and V [L, H, dv], then attend. */
  private attendNaive(q: Float32Array, T: number, cache: LatentCache): Float32Array {
    const { nHeads: H, kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv } = this.dims;
    const L = cache.length, w = dc + dr;
    const rows = cache.rowsF32(); // a 16-bit cache is widened once: the up-projection reads every row H times
    const kv = new Float32Array(L * H * (dn + dv)); // per head [k_nope | v]
    this.ops.linear(kv, rows, L, dc, this.w.kvB, H * (dn + dv), 0, w);
    const k = new Float32Array(L * H * (dn + dr));
    for (let s = 0; s < L; s++) {
      for (let h = 0; h < H; h++) {
        const ko = (s * H + h) * (dn + dr);
        k.set(kv.subarray((s * H + h) * (dn + dv), (s * H + h) * (dn + dv) + dn), ko);
        k.set(rows.subarray(s * w + dc, s * w + w), ko + dn);
      }
    }
    const o = new Float32Array(T * H * dv);
    this.ops.attend(o, q, T, H, dn + dr,
      { data: k, offset: 0, rowStride: H * (dn + dr), headStride: dn + dr },
      { data: kv, offset: dn, rowStride: H * (dn + dv), headStride: dn + dv },
      dv, H, L, this.scale);
    return o;
  }

  /**
   * The absorbed decode of n single-token sequences at once: W^UK and W^UV are position-free, so instead of one
   * grouped product per sequence (over its H heads) each is one grouped product of n tokens (the n sequences) per
   * head, every head's block read once for all of them. Only the attention itself runs per sequence, on its own
   * latent cache (in one call where the backend batches it).
   */
  private attendAbsorbedDecodes(q: Float32Array, decode: readonly { row: number; cache: LatentCache }[], o: Float32Array): void {
    const { nHeads: H, kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv } = this.dims;
    const n = decode.length, w = dc + dr, qw = H * (dn + dr);
    const qd = new Float32Array(n * qw);
    decode.forEach(({ row }, i) => qd.set(q.subarray(row * qw, (row + 1) * qw), i * qw));
    const qa = new Float32Array(n * H * w);
    this.ops.linearGrouped(qa, qd, H, dn, this.ukT, dc, dn + dr, w, 0, dc, n, qw, H * w);
    for (let i = 0; i < n * H; i++) qa.set(qd.subarray(i * (dn + dr) + dn, (i + 1) * (dn + dr)), i * w + dc);
    const oLat = new Float32Array(n * H * dc);
    attendLatentRows(this.ops, oLat, qa, H, w, dc, decode.map((d) => d.cache), this.scale);
    const od = new Float32Array(n * H * dv);
    const uv = this.uv;
    this.ops.linearGrouped(od, oLat, H, dc, uv.w, dv, dc, dv, uv.row0, uv.stride, n, H * dc, H * dv);
    decode.forEach(({ row }, i) => o.set(od.subarray(i * H * dv, (i + 1) * H * dv), row * H * dv));
  }

  /** q~_h = (W^UK_h)^T q_nope_h; attend over [c_KV | k_rope] rows (MQA-like); o_h = W^UV_h o~_h. */
  private attendAbsorbed(q: Float32Array, T: number, cache: LatentCache): Float32Array {
    const { nHeads: H, kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv } = this.dims;
    const L = cache.length, w = dc + dr;
    const qa = new Float32Array(T * H * w);
    this.ops.linearGrouped(qa, q, H, dn, this.ukT, dc, dn + dr, w, 0, dc, T, H * (dn + dr), H * w);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const src = (t * H + h) * (dn + dr) + dn;
        qa.set(q.subarray(src, src + dr), (t * H + h) * w + dc);
      }
    }
    const oLat = new Float32Array(T * H * dc);
    if (T === 1 && cache.dtype !== "F32") {
      attendLatentRows(this.ops, oLat, qa, H, w, dc, [cache], this.scale); // the kernels read 16-bit rows in place
    } else {
      // the F32 cache itself (not a view of it): WasmOps recognises its own cache memory and reads it in place
      const view = { data: cache.data instanceof Float32Array ? cache.data : cache.rowsF32(), offset: 0, rowStride: w, headStride: 0 };
      this.ops.attend(oLat, qa, T, H, w, view, view, dc, 1, L, this.scale);
    }
    const o = new Float32Array(T * H * dv), uv = this.uv;
    this.ops.linearGrouped(o, oLat, H, dc, uv.w, dv, dc, dv, uv.row0, uv.stride, T, H * dc, H * dv);
    return o;
  }
}
