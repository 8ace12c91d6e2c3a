/**
 * A decoder that runs on WebGPU (src/backends/webgpu): the same models as the CPU backend — the MLA families
 * (dense and MoE) and llama/qwen2/mistral with GQA — with weights uploaded once and each step recorded into one
 * command encoder. Only the logits (or, for greedy decoding, the chosen token id) come back to the CPU; MoE layers
 * additionally read back their normed input to route on the CPU.
 *
 * MLA runs in both forms, chosen per sequence as on the CPU (`mode`, resolveMlaMode: `auto` prefills naive and
 * decodes absorbed). Absorbed (src/backends/webgpu/wgsl.ts latentAttend): the query is folded through W^UK, every
 * head scores the shared latent rows [c_KV | k_rope], and W^UV maps the result back. Naive (wgsl-mla.ts
 * naiveAttend): the cached rows are decompressed through kv_b_proj into per-head K and V, then ordinary causal
 * attention. Caches are F32, F16 or BF16 (`cacheDtype`): 16-bit rows are rounded once, when written.
 */
import { MlaError } from "../../errors.js";
import { LATENT_NORM_EPS, resolveMlaMode, type MlaMode } from "../../attention/mla.js";
import { encodeCacheRow } from "../../backends/cpu/cache-dtype.js";
import { cacheRowBytes, cacheRowElems, type CacheDType } from "../../backends/webgpu/wgsl-mla.js";
import { RotaryEmbedding, attentionScale } from "../../attention/rope.js";
import { MAX_GPU_ROUTED_EXPERTS, kernels as gk, type Pass, type WebGpuBackend } from "../../backends/webgpu/backend.js";
import { openCheckpoint } from "../checkpoint.js";
import type { TensorStore } from "../tensor-store.js";
import type { ModelConfig } from "../config.js";
import type { Tensor } from "../../tensor/tensor.js";
import { route, slotsByExpert } from "../moe.js";
import type { RouterSpec } from "../router.js";
import { checkInput } from "../causal-lm.js";
import type { InferenceModel, Runtime, StepItem, StepOptions } from "../inference.js";
import { argmax } from "../../tensor/argmax.js";
import type { GpuGqa, GpuMla, GpuMlp, GpuMoe, GpuWeights } from "./weights.js";
import { mapStore, uploadCheckpoint, uploadCheckpointAsync, type GpuUploadOptions } from "./load.js";
import { cacheWidths, loadConfig, parseConfig } from "../families/index.js";

/** One sequence's caches on the GPU: per layer the latent rows (MLA) or K and V rows (GQA). */
export class GpuState {
  readonly model: GpuModel;
  /** Per layer: [latent] or [K, V]. */
  readonly caches: GPUBuffer[][];
  position = 0;
  capacity: number;

  constructor(model: GpuModel, capacity: number) {
    this.model = model;
    this.capacity = Math.max(1, Math.min(capacity, model.config.maxPositionEmbeddings));
    this.caches = [];
    for (let i = 0; i < model.config.numLayers; i++) this.caches.push(model.cacheRowBytes.map((rb) => model.gpu.buffer(this.capacity * rb, "cache")));
  }

  /** Bytes the filled cache rows hold (what the sequence needs, not the reserved capacity). */
  get cacheBytes(): number {
    return this.position * this.model.cacheBytesPerToken;
  }

  /** Bytes reserved on the GPU for this sequence's caches. */
  get reservedBytes(): number {
    return this.capacity * this.model.cacheBytesPerToken;
  }

  /** Make room for n positions (copying the filled rows into larger buffers). */
  ensure(n: number): void {
    if (n <= this.capacity) return;
    const cap = Math.min(Math.max(n, this.capacity * 2), this.model.config.maxPositionEmbeddings);
    const g = this.model.gpu, enc = g.device.createCommandEncoder();
    for (const layer of this.caches) {
      layer.forEach((buf, j) => {
        const rb = this.model.cacheRowBytes[j];
        const next = g.buffer(cap * rb, "cache");
        if (this.position) enc.copyBufferToBuffer(buf, 0, next, 0, this.position * rb);
        layer[j] = next;
        g.releaseAfterQueue(buf);
      });
    }
    g.device.queue.submit([enc.finish()]);
    this.capacity = cap;
  }

  truncate(n: number): void {
    this.position = Math.min(this.position, n);
  }

  /** Free the buffers once the work submitted so far (which may still read or write them) is done. */
  release(): void {
    for (const l of this.caches) for (const b of l) this.model.gpu.releaseAfterQueue(b);
    this.caches.length = 0;
  }
}

/** How a model is put on the GPU: progress, `--quantize`, the fit check (./load.ts), and how it runs. */
export interface GpuLoadOptions extends GpuUploadOptions {
  /**
   * Where decode steps route MoE tokens. "gpu" (default): a routing kernel on float32 sums keeps the step in one
   * submission. "cpu": the engine's router on float64 sums, which decides near-ties between experts exactly as
   * the CPU backends and a float64 reference do; costs one read-back per MoE layer. Prefill always routes on the
   * CPU.
   */
  readonly moeRouting?: "cpu" | "gpu";
  /**
   * Cache storage (`--cache-type`): F32 (default), or F16/BF16 words rounded once when a row is written (as the CPU
   * backends round), half the cache memory and the bytes attention reads. The MLA latent cache, and the K/V caches
   * of GQA models.
   */
  readonly cacheDtype?: CacheDType;
}

/** Activation buffers, grown to the largest T seen. */
class Scratch {
  private readonly bufs = new Map<string, GPUBuffer>();
  constructor(private readonly gpu: WebGpuBackend) {}

  get(name: string, floats: number): GPUBuffer {
    const bytes = Math.max(16, floats * 4);
    let b = this.bufs.get(name);
    if (!b || b.size < bytes) {
      // work already submitted (an earlier item of a batched step) may still read the old buffer
      if (b) this.gpu.releaseAfterQueue(b);
      b = this.gpu.buffer(bytes, name);
      this.bufs.set(name, b);
    }
    return b;
  }
}

/**
 * Most rows a step of single tokens routes through the MoE on the GPU (each token's k experts by slot). Past it, and
 * for prompt chunks past 4 rows, tokens are grouped by expert on the CPU, so each chosen expert's weights are read
 * once.
 */
const MAX_GPU_ROUTED = 64;

/** One sequence's share of a step: its new tokens and its state. */
export type GpuBatchItem = StepItem<GpuState>;

/** A sequence's rows in a batched step: rows [row, row + T) of the step, at positions p0 .. p0 + T - 1. */
interface Segment {
  readonly row: number;
  readonly T: number;
  readonly p0: number;
}

/** Latent-attention splits for decode: enough workgroups to fill a GPU, chunks of at least 256 positions. */
function splits(T: number, L: number): { nSplit: number; chunk: number } {
  if (T > 1) return { nSplit: 1, chunk: L };
  const nSplit = Math.max(1, Math.min(32, Math.ceil(L / 256)));
  return { nSplit, chunk: Math.ceil(L / nSplit) };
}

export class GpuModel implements InferenceModel<GpuState> {
  readonly rope: RotaryEmbedding;
  readonly scale: number;
  /** Values per cached row of each cache buffer of a layer. */
  readonly cacheWidths: number[];
  /** Bytes per stored row of each cache buffer of a layer (16-bit rows of an odd width carry one pad value). */
  readonly cacheRowBytes: number[];
  readonly cacheBytesPerToken: number;
  /**
   * Most cached positions the naive form decompresses at once (K and V of every head in a scratch buffer of at most
   * 256 MiB); a longer cache is attended a chunk at a time and the chunks merged. Tests lower it.
   */
  naiveChunk: number;
  private readonly scratch: Scratch;

  constructor(readonly config: ModelConfig, readonly weights: GpuWeights, readonly gpu: WebGpuBackend, readonly moeRouting: "cpu" | "gpu" = "gpu",
    readonly cacheDtype: CacheDType = "F32") {
    const c = config;
    this.scratch = new Scratch(gpu);
    if (c.attention === "mla") {
      this.rope = new RotaryEmbedding(c.rope, c.qkRopeHeadDim);
      this.scale = attentionScale(c.qkNopeHeadDim + c.qkRopeHeadDim, c.rope);
    } else {
      this.rope = new RotaryEmbedding(c.rope, c.headDim);
      this.scale = 1 / Math.sqrt(c.headDim);
    }
    this.cacheWidths = [...cacheWidths(c)]; // the family's cache layout: [latent] or [K, V]
    this.cacheRowBytes = this.cacheWidths.map((w) => cacheRowBytes(w, cacheDtype));
    this.cacheBytesPerToken = this.cacheRowBytes.reduce((a, b) => a + b, 0) * c.numLayers;
    const perPosition = 4 * Math.max(c.numHeads * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank + c.qkRopeHeadDim, 1);
    const room = Math.min(256 * 2 ** 20, gpu.ctx.limits.maxStorageBufferBindingSize);
    this.naiveChunk = Math.max(1, Math.min(65535, Math.floor(room / perPosition)));
  }

  /**
   * A model from config.json's object and tensors already in memory (a browser's fetched safetensors, see
   * src/io/safetensors-buffer.ts); every expected tensor must be there with its shape.
   */
  static fromTensors(configJson: Record<string, unknown>, tensors: ReadonlyMap<string, Tensor>, gpu: WebGpuBackend, opts: GpuLoadOptions = {}): GpuModel {
    return GpuModel.upload(parseConfig(configJson), mapStore(tensors), gpu, opts);
  }

  /**
   * A model from a store whose tensors are read asynchronously (`read`: the browser's Blobs through its file
   * system), uploaded a layer at a time: the page never holds the whole model, nor any tensor twice.
   */
  static async fromStore(
    configJson: Record<string, unknown>, store: TensorStore, read: (name: string) => Promise<Tensor>, gpu: WebGpuBackend, opts: GpuLoadOptions = {},
  ): Promise<GpuModel> {
    const config = parseConfig(configJson);
    return new GpuModel(config, await uploadCheckpointAsync(config, store, gpu, read, opts), gpu, opts.moeRouting, opts.cacheDtype);
  }

  /**
   * Load a checkpoint folder or GGUF file (any supported model type) onto the GPU, streaming: one layer is on the
   * host at a time (./load.ts). A device that ran out of memory during the upload fails the first step, with the
   * numbers.
   */
  static load(dir: string, gpu: WebGpuBackend, opts: GpuLoadOptions = {}): GpuModel {
    const ckpt = openCheckpoint(dir);
    try {
      return GpuModel.upload(loadConfig(dir), ckpt, gpu, opts);
    } finally {
      ckpt.close();
    }
  }

  private static upload(config: ModelConfig, store: TensorStore, gpu: WebGpuBackend, opts: GpuLoadOptions): GpuModel {
    const { weights, uploaded } = uploadCheckpoint(config, store, gpu, opts);
    const m = new GpuModel(config, weights, gpu, opts.moeRouting, opts.cacheDtype);
    m.uploaded = uploaded;
    return m;
  }

  /** The device's answer to the upload's out-of-memory checks, awaited once before the first step. */
  private uploaded: Promise<void> | null = null;

  newState(capacity = 64): GpuState {
    return new GpuState(this, capacity);
  }

  get backendName(): string {
    return this.gpu.name;
  }

  /** Run T new tokens of one sequence at positions state.position..; logits [1, V] (or [T, V] with allLogits). */
  forward(ids: ArrayLike<number>, state: GpuState, opts: StepOptions = {}): Promise<Float32Array> {
    return this.step([{ ids, state }], opts);
  }

  /**
   * Several sequences' new tokens (continuous batching): logits [B, V] of each item's last position, from one
   * submission and one read-back. `mode` picks the MLA form per sequence as on the CPU (GQA models ignore it).
   */
  async step(items: readonly GpuBatchItem[], opts: StepOptions = {}): Promise<Float32Array> {
    if (items.length === 0) return new Float32Array(0);
    if (opts.allLogits && items.length !== 1) throw new MlaError("allLogits needs exactly one sequence");
    const logits = await this.record(items, { allLogits: opts.allLogits, mode: opts.mode });
    return this.gpu.readF32(logits, (opts.allLogits ? items[0].ids.length : items.length) * this.config.vocabSize);
  }

  /**
   * Greedy step: the argmax of each item's last logits row. For one sequence (generation) it is computed on the
   * GPU in the step's own submission and 4 bytes come back; a batch reads its logits and takes them here.
   */
  async stepArgmax(items: readonly GpuBatchItem[], opts: StepOptions = {}): Promise<Int32Array> {
    const V = this.config.vocabSize;
    if (items.length !== 1) {
      const logits = await this.step(items, opts);
      return Int32Array.from(items, (_, b) => argmax(logits, b * V, V));
    }
    const out = this.scratch.get("argmax", 4);
    await this.record(items, { mode: opts.mode, tail: (p, logits) => gk.argmax(p, out, logits, V) });
    return new Int32Array(await this.gpu.read(out, 4));
  }

  /** Free a sequence's GPU caches once the work already submitted (a step, a fork's copy) no longer needs them. */
  releaseState(state: GpuState): void {
    state.release();
  }

  /**
   * A new state whose first n positions copy src's cache rows as stored (copyBufferToBuffer, submitted after the
   * steps that wrote them, so the queue orders the copy after those writes).
   */
  forkState(src: GpuState, n: number, capacity = n): GpuState {
    if (src.model !== this) throw new MlaError("this GPU state was made by another model");
    if (!Number.isInteger(n) || n < 0 || n > src.position) throw new MlaError(`cannot fork ${n} positions of a sequence at position ${src.position}`);
    const dst = new GpuState(this, Math.max(capacity, n));
    if (n > 0) {
      const enc = this.gpu.device.createCommandEncoder();
      src.caches.forEach((layer, i) => layer.forEach((buf, j) => enc.copyBufferToBuffer(buf, 0, dst.caches[i][j], 0, n * this.cacheRowBytes[j])));
      this.gpu.device.queue.submit([enc.finish()]);
    }
    dst.position = n;
    return dst;
  }

  /**
   * Random cache rows for the first n positions: what a context of n tokens costs to read, without its prefill.
   * 16-bit rows are rounded as a step rounds them.
   */
  fillContext(state: GpuState, n: number, rand: () => number): void {
    state.ensure(n);
    const t = this.cacheDtype;
    for (const layer of state.caches) {
      layer.forEach((buf, j) => {
        const w = this.cacheWidths[j];
        if (t === "F32") {
          const rows = new Float32Array(n * w);
          for (let i = 0; i < rows.length; i++) rows[i] = rand() * 2 - 1;
          this.gpu.write(buf, rows);
          return;
        }
        const stride = cacheRowElems(w, t), words = new Uint16Array(n * stride), row = new Float32Array(w);
        for (let s = 0; s < n; s++) {
          for (let i = 0; i < w; i++) row[i] = rand() * 2 - 1;
          encodeCacheRow(words, s * stride, row, t);
        }
        this.gpu.write(buf, words);
      });
    }
    state.position = n;
  }

  /** Bytes of GPU memory this backend holds (weights, caches, activations). */
  get deviceBytes(): number {
    return this.gpu.allocatedBytes;
  }

  /**
   * Record and submit one step of one or more sequences: item b brings T_b new tokens at its own positions (one when
   * decoding, a prompt chunk when prefilling). Embedding, norms, every projection, the MLP and lm_head run on all
   * rows together, so each weight is read once per step; RoPE uses each row's own position; the cache writes and
   * the attention run per sequence on its own cache. Returns the logits buffer: each item's last row ([B, V]), or
   * with allLogits (one item) every row; `tail` is recorded after the logits.
   */
  private async record(items: readonly GpuBatchItem[], o: { allLogits?: boolean; mode?: MlaMode; tail?: (p: Pass, logits: GPUBuffer) => void } = {}): Promise<GPUBuffer> {
    if (this.uploaded) await this.uploaded.then(() => (this.uploaded = null));
    const c = this.config, B = items.length, D = c.hiddenSize, g = this.gpu, sc = this.scratch;
    for (const it of items) checkInput(c, it.ids, it.state.position); // nothing is submitted for a bad batch
    if (new Set(items.map((it) => it.state)).size !== B) throw new MlaError("a batch holds each sequence's state once");
    const segs: Segment[] = [];
    let N = 0;
    for (const it of items) {
      it.state.ensure(it.state.position + it.ids.length);
      segs.push({ row: N, T: it.ids.length, p0: it.state.position });
      N += it.ids.length;
    }
    const idBuf = sc.get("ids", N);
    g.write(idBuf, Uint32Array.from(items.flatMap((it) => Array.from(it.ids))));
    const csBuf = this.ropeRows(segs, N);
    const h = sc.get("h", N * D), x = sc.get("x", N * D);
    // tiny steps and steps of single tokens route MoE on the GPU (see moe)
    const gpuRouted = N <= 4 || (N <= MAX_GPU_ROUTED && segs.every((sg) => sg.T === 1));
    let p = g.pass();
    gk.embed(p, h, this.weights.embed, idBuf, N, D);
    if (c.embedScale !== 1) gk.scale(p, h, N, D, c.embedScale);
    // the blocks accumulate into h; with a residual multiplier r (MiniCPM3) h + r f is taken as r (h / r + f)
    const r = c.residualScale, unscale = (q: Pass) => r !== 1 && gk.scale(q, h, N, D, 1 / r), rescale = (q: Pass) => r !== 1 && gk.scale(q, h, N, D, r);
    for (let i = 0; i < c.numLayers; i++) {
      const l = this.weights.layers[i], caches = items.map((it) => it.state.caches[i]);
      gk.rmsNorm(p, x, h, N, D, l.inputNorm, c.rmsNormEps);
      unscale(p);
      if (l.attn.kind === "mla") this.mla(p, l.attn, x, h, N, caches.map((cc) => cc[0]), segs, csBuf, o.mode ?? "auto");
      else this.gqa(p, l.attn, x, h, N, caches, segs, csBuf);
      rescale(p);
      gk.rmsNorm(p, x, h, N, D, l.postNorm, c.rmsNormEps);
      unscale(p);
      if (l.ffn.kind === "moe") p = await this.moe(p, l.ffn.moe, x, h, N, gpuRouted);
      else this.mlp(p, l.ffn.mlp, x, h, N, "mlp");
      rescale(p);
    }
    const rows = o.allLogits ? N : B;
    const hn = sc.get("hn", rows * D), logits = sc.get("logits", rows * c.vocabSize);
    if (o.allLogits) gk.rmsNorm(p, hn, h, N, D, this.weights.norm, c.rmsNormEps);
    else segs.forEach((sg, b) => gk.rmsNorm(p, hn, h, 1, D, this.weights.norm, c.rmsNormEps, { xo: (sg.row + sg.T - 1) * D, oo: b * D }));
    if (c.logitScale !== 1) gk.scale(p, hn, rows, D, c.logitScale);
    gk.linear(p, logits, hn, rows, D, this.weights.lmHead, c.vocabSize);
    o.tail?.(p, logits);
    p.submit();
    items.forEach((it) => (it.state.position += it.ids.length));
    return logits;
  }

  /** Rows [cos d/2 | sin d/2] of every segment's positions, in row order, in the "rope" scratch buffer. */
  private ropeRows(segs: readonly Segment[], N: number): GPUBuffer {
    const half = this.rope.dim / 2, cs = new Float32Array(N * 2 * half);
    for (const { row, T, p0 } of segs) {
      const { cos, sin } = this.rope.table(p0, T);
      for (let t = 0; t < T; t++) {
        cs.set(cos.subarray(t * half, (t + 1) * half), (row + t) * 2 * half);
        cs.set(sin.subarray(t * half, (t + 1) * half), (row + t) * 2 * half + half);
      }
    }
    const buf = this.scratch.get("rope", cs.length);
    this.gpu.write(buf, cs);
    return buf;
  }

  /**
   * MLA over the N rows of the step's sequences: appends each sequence's latent rows [RMSNorm(c_KV) | RoPE(k_rope)]
   * to its cache, attends in the form resolveMlaMode picks for that sequence (the CPU's rule, so a sequence takes
   * the same form alone or batched), and adds o_proj's output to h.
   */
  private mla(p: Pass, w: GpuMla, x: GPUBuffer, h: GPUBuffer, N: number, caches: readonly GPUBuffer[], segs: readonly Segment[], cs: GPUBuffer, mode: MlaMode): void {
    const c = this.config, sc = this.scratch, D = c.hiddenSize, H = c.numHeads;
    const dc = c.kvLoraRank, dr = c.qkRopeHeadDim, dn = c.qkNopeHeadDim, dv = c.vHeadDim, dqk = dn + dr, R = dc + dr;
    // q = c_Q -> RMSNorm -> W^UQ|W^QR (or q_proj), its RoPE part turned at each row's position
    const q = sc.get("q", N * H * dqk);
    if (w.query.kind === "lora") {
      const qr = w.query.qA.shape[0], cq = sc.get("cq", N * qr), cqn = sc.get("cqn", N * qr);
      gk.linear(p, cq, x, N, D, w.query.qA, qr);
      gk.rmsNorm(p, cqn, cq, N, qr, w.query.qANorm, LATENT_NORM_EPS);
      gk.linear(p, q, cqn, N, qr, w.query.qB, H * dqk);
    } else {
      gk.linear(p, q, x, N, D, w.query.q, H * dqk);
    }
    const halves = c.ropeStyle === "halves";
    gk.rope(p, q, cs, N, H, dr, dn, H * dqk, dqk, halves);
    // [c | k_rope] = kv_a x; k_rope turned at each row's position before it goes to its cache
    const a = sc.get("kva", N * R);
    gk.linear(p, a, x, N, D, w.kvA, R);
    gk.rope(p, a, cs, N, 1, dr, dc, R, 0, halves);
    this.appendLatent(p, w, a, N, caches, segs);
    const ov = sc.get("ov", N * H * dv);
    const naive = segs.map((sg) => resolveMlaMode(mode, sg.T, sg.p0 + sg.T, c) === "naive");
    if (naive.some((n) => !n)) this.attendAbsorbed(p, w, q, ov, caches, segs, naive);
    if (naive.some((n) => n)) this.attendNaive(p, w, q, ov, caches, segs, naive);
    gk.linear(p, h, ov, N, H * dv, w.o, D, { accumulate: true });
  }

  /**
   * Each sequence's new cache rows from a [N, d_c + d_h^R] (k_rope already turned): c_KV through kv_a_layernorm. An
   * F32 cache is written in place; for a 16-bit cache the rows are finished in f32 scratch, then rounded and packed
   * a whole u32 word per invocation.
   */
  private appendLatent(p: Pass, w: GpuMla, a: GPUBuffer, N: number, caches: readonly GPUBuffer[], segs: readonly Segment[]): void {
    const c = this.config, dc = c.kvLoraRank, dr = c.qkRopeHeadDim, R = dc + dr, t = this.cacheDtype;
    if (t === "F32") {
      caches.forEach((cache, b) => {
        const { row, T, p0 } = segs[b];
        gk.rmsNorm(p, cache, a, T, dc, w.kvANorm, LATENT_NORM_EPS, { xs: R, os: R, xo: row * R, oo: p0 * R });
        gk.copyRows(p, cache, a, T, dr, R, row * R + dc, R, dc, p0);
      });
      return;
    }
    const rows = this.scratch.get("lrow", N * R);
    gk.rmsNorm(p, rows, a, N, dc, w.kvANorm, LATENT_NORM_EPS, { xs: R, os: R });
    gk.copyRows(p, rows, a, N, dr, R, dc, R, dc, 0);
    caches.forEach((cache, b) => gk.packRows(p, cache, rows, segs[b].T, R, R, segs[b].row * R, segs[b].p0, t));
  }

  /**
   * The absorbed form for the sequences not marked naive, into their rows of ov: W^UK folded into the queries, the
   * fused latent attention over each cache (split across workgroups when decoding), W^UV on the result. When every
   * sequence is absorbed the step's rows are used in place; otherwise the absorbed rows are gathered first and
   * scattered back, so W^UK and W^UV run on them alone.
   */
  private attendAbsorbed(p: Pass, w: GpuMla, q: GPUBuffer, ov: GPUBuffer, caches: readonly GPUBuffer[], segs: readonly Segment[], naive: readonly boolean[]): void {
    const c = this.config, sc = this.scratch, H = c.numHeads;
    const dc = c.kvLoraRank, dr = c.qkRopeHeadDim, dn = c.qkNopeHeadDim, dv = c.vHeadDim, dqk = dn + dr;
    const idx = segs.map((_, b) => b).filter((b) => !naive[b]), all = idx.length === segs.length;
    const rows: number[] = []; // each absorbed sequence's first row among the rows W^UK/W^UV run on
    let NA = 0;
    for (const b of idx) {
      rows.push(NA);
      NA += segs[b].T;
    }
    const sp = idx.map((b) => splits(segs[b].T, segs[b].p0 + segs[b].T));
    const most = Math.max(...idx.map((b, i) => segs[b].T * sp[i].nSplit));
    // every buffer at its size for this step before anything is recorded on it (see Scratch)
    const qa = all ? q : sc.get("qa", NA * H * dqk), ova = all ? ov : sc.get("ova", NA * H * dv);
    const qc = sc.get("qc", NA * H * dc), lat = sc.get("lat", NA * H * dc);
    const part = sc.get("part", most * H * dc), ml = sc.get("ml", most * H * 2);
    if (!all) idx.forEach((b, i) => gk.copyRows(p, qa, q, segs[b].T, H * dqk, H * dqk, segs[b].row * H * dqk, H * dqk, 0, rows[i]));
    gk.absorbQuery(p, qc, qa, w.kvB, NA, H, dn, dv, dc, dqk);
    idx.forEach((b, i) => {
      const { T, p0 } = segs[b], { nSplit, chunk } = sp[i];
      gk.latentAttend(p, part, ml, qc, qa, caches[b], T, H, dc, dr, dqk, dn, p0, chunk, nSplit, this.scale, { t0: rows[i], cache: this.cacheDtype });
      gk.latentCombine(p, lat, part, ml, T, H, dc, nSplit, rows[i]);
    });
    gk.absorbOutput(p, ova, lat, w.kvB, NA, H, dn, dv, dc);
    if (!all) idx.forEach((b, i) => gk.copyRows(p, ov, ova, segs[b].T, H * dv, H * dv, rows[i] * H * dv, H * dv, 0, segs[b].row));
  }

  /**
   * The naive form for the sequences marked naive, into their rows of ov: the whole cache (this step's rows
   * included) decompressed through kv_b_proj (W^UK|W^UV, a product with the cache rows as x; a 16-bit cache is
   * widened first) into per-head k_nope and v, then causal attention of the queries over [k_nope | k_rope] and v.
   * A cache of more than naiveChunk positions is decompressed and attended a chunk at a time, and latentCombine
   * merges the chunks' partial softmaxes.
   */
  private attendNaive(p: Pass, w: GpuMla, q: GPUBuffer, ov: GPUBuffer, caches: readonly GPUBuffer[], segs: readonly Segment[], naive: readonly boolean[]): void {
    const c = this.config, sc = this.scratch, H = c.numHeads, t = this.cacheDtype, LC = this.naiveChunk;
    const dc = c.kvLoraRank, dr = c.qkRopeHeadDim, dn = c.qkNopeHeadDim, dv = c.vHeadDim, R = dc + dr;
    const idx = segs.map((_, b) => b).filter((b) => naive[b]);
    const lengths = idx.map((b) => segs[b].p0 + segs[b].T), chunks = lengths.map((L) => Math.ceil(L / LC));
    const rows = Math.min(LC, Math.max(...lengths)), most = Math.max(0, ...idx.map((b, i) => (chunks[i] > 1 ? segs[b].T * chunks[i] : 0)));
    const kv = sc.get("kv", rows * H * (dn + dv)), wide = t === "F32" ? null : sc.get("wide", rows * R);
    const part = most ? sc.get("npart", most * H * dv) : null, ml = most ? sc.get("nml", most * H * 2) : null;
    idx.forEach((b, i) => {
      const { row, T, p0 } = segs[b], nSplit = chunks[i];
      for (let j = 0; j < nSplit; j++) {
        const s0 = j * LC, n = Math.min(LC, lengths[i] - s0);
        let src = caches[b], xo = s0 * R; // an F32 cache is read in place
        if (wide) {
          gk.unpackRows(p, wide, src, n, R, s0, R, t);
          [src, xo] = [wide, 0];
        }
        gk.linear(p, kv, src, n, dc, w.kvB, H * (dn + dv), { xs: R, xo });
        const at = { t0: row, p0, s0, n, ko: xo + dc, ls: R, scale: this.scale };
        gk.naiveAttend(p, q, kv, src, T, H, dn, dr, dv, part && ml && nSplit > 1 ? { ...at, part, ml, split: j, nSplit } : { ...at, out: ov });
      }
      if (part && ml && nSplit > 1) gk.latentCombine(p, ov, part, ml, T, H, dv, nSplit, row);
    });
  }

  /**
   * GQA with RoPE by halves over the N rows of the step's sequences; adds o_proj's output to h. A lone sequence's
   * K/V rows go straight into its F32 caches and its attention reads and writes in place; otherwise the rows go
   * through one buffer and are copied (F32) or rounded and packed (16-bit caches) into each sequence's caches.
   */
  private gqa(p: Pass, w: GpuGqa, x: GPUBuffer, h: GPUBuffer, N: number, caches: readonly GPUBuffer[][], segs: readonly Segment[], cs: GPUBuffer): void {
    const c = this.config, sc = this.scratch, D = c.hiddenSize, H = c.numHeads, G = c.numKvHeads, hd = c.headDim, one = segs.length === 1;
    const t = this.cacheDtype, direct = one && t === "F32";
    const q = sc.get("q", N * H * hd), o = sc.get("att", N * H * hd);
    const [k, v] = direct ? caches[0] : [sc.get("k.rows", N * G * hd), sc.get("v.rows", N * G * hd)];
    const ko = direct ? segs[0].p0 * G * hd : 0; // where the rows start in k and v
    gk.linear(p, q, x, N, D, w.q, H * hd);
    gk.linear(p, k, x, N, D, w.k, G * hd, { oo: ko });
    gk.linear(p, v, x, N, D, w.v, G * hd, { oo: ko });
    if (w.qBias) gk.bias(p, q, w.qBias, N, H * hd);
    if (w.kBias) gk.bias(p, k, w.kBias, N, G * hd, G * hd, ko);
    if (w.vBias) gk.bias(p, v, w.vBias, N, G * hd, G * hd, ko);
    gk.rope(p, q, cs, N, H, hd, 0, H * hd, hd, true);
    gk.rope(p, k, cs, N, G, hd, 0, G * hd, hd, true, ko);
    const Tmax = Math.max(...segs.map((sg) => sg.T));
    const [q1, o1] = one ? [q, o] : [sc.get("q1", Tmax * H * hd), sc.get("att1", Tmax * H * hd)];
    caches.forEach(([kc, vc], b) => {
      const { row, T, p0 } = segs[b], n = G * hd;
      if (!direct && t === "F32") {
        gk.copyRows(p, kc, k, T, n, n, row * n, n, 0, p0);
        gk.copyRows(p, vc, v, T, n, n, row * n, n, 0, p0);
      } else if (t !== "F32") {
        gk.packRows(p, kc, k, T, n, n, row * n, p0, t);
        gk.packRows(p, vc, v, T, n, n, row * n, p0, t);
      }
      if (!one) gk.copyRows(p, q1, q, T, H * hd, H * hd, row * H * hd, H * hd, 0, 0);
      gk.gqaAttend(p, o1, q1, kc, vc, T, H, G, hd, hd, p0, this.scale, c.slidingWindow ?? 0, { cache: t });
      if (!one) gk.copyRows(p, o, o1, T, H * hd, H * hd, 0, H * hd, 0, row);
    });
    gk.linear(p, h, o, N, H * hd, w.o, D, { accumulate: true });
    if (w.oBias) gk.bias(p, h, w.oBias, N, D);
  }

  /** h += down(silu(gate x) * up x) on T rows of x; buffers named by `tag` so experts don't clash with the shared MLP. */
  private mlp(p: Pass, m: GpuMlp, x: GPUBuffer, h: GPUBuffer, T: number, tag: string): void {
    const D = this.config.hiddenSize, F = m.gate.shape[0], sc = this.scratch;
    const gb = sc.get(`${tag}.g`, T * F), ub = sc.get(`${tag}.u`, T * F), sb = sc.get(`${tag}.s`, T * F);
    gk.linear(p, gb, x, T, D, m.gate, F);
    gk.linear(p, ub, x, T, D, m.up, F);
    gk.siluMul(p, sb, gb, ub, T, F);
    gk.linear(p, h, sb, T, F, m.down, D, { accumulate: true });
  }

  /**
   * MoE. With moeRouting "gpu", decode steps (at most 4 rows, or single tokens of up to MAX_GPU_ROUTED sequences)
   * route on the GPU and run each token's k experts by slot from the stacked expert weights, so the step stays one
   * submission.
   * Otherwise: submit what is recorded, read the
   * normed input back, route on the CPU (the engine's router), then gather each chosen expert's tokens, run it
   * once for all of them, and scatter-add its weighted output into h. The shared experts run on every token.
   */
  private async moe(p: Pass, moe: GpuMoe, x: GPUBuffer, h: GPUBuffer, T: number, decode: boolean): Promise<Pass> {
    const onGpu = decode && this.moeRouting === "gpu" && routerOf(this.config).experts <= MAX_GPU_ROUTED_EXPERTS;
    const q = onGpu ? (this.moeOnGpu(p, moe, x, h, T), p) : await this.moeRoutedOnCpu(p, moe, x, h, T);
    if (moe.shared) this.mlp(q, moe.shared, x, h, T, "shared");
    return q;
  }

  private moeOnGpu(p: Pass, moe: GpuMoe, x: GPUBuffer, h: GPUBuffer, T: number): void {
    const c = this.config, spec = routerOf(c), D = c.hiddenSize, sc = this.scratch, k = spec.topK, E = spec.experts, F = moe.width, n = T * k;
    const logits = sc.get("moe.logits", T * E), experts = sc.get("moe.experts", n), weights = sc.get("moe.weights", n);
    gk.linear(p, logits, x, T, D, moe.gate, E);
    gk.route(p, experts, weights, logits, spec.choiceBias ? moe.bias : null, T, spec);
    const gb = sc.get("moe.g", n * F), ub = sc.get("moe.u", n * F), sb = sc.get("moe.s", n * F), yb = sc.get("moe.y", n * D);
    gk.slotLinear(p, gb, x, experts, n, D, moe.gates, F, F, k);
    gk.slotLinear(p, ub, x, experts, n, D, moe.ups, F, F, k);
    gk.siluMul(p, sb, gb, ub, n, F);
    gk.slotLinear(p, yb, sb, experts, n, F, moe.downs, D, D, 1);
    gk.moeCombine(p, h, yb, weights, T, D, k);
  }

  private async moeRoutedOnCpu(p: Pass, moe: GpuMoe, x: GPUBuffer, h: GPUBuffer, T: number): Promise<Pass> {
    const c = this.config, spec = routerOf(c), D = c.hiddenSize, sc = this.scratch, k = spec.topK, F = moe.width;
    p.submit();
    const xs = await this.gpu.readF32(x, T * D);
    const { experts, weights } = route(spec, moe.router, xs, T, D);
    const idx = new Uint32Array(T * k), wt = new Float32Array(T * k);
    const runs: [number, number, number][] = []; // expert, first entry, count
    let n = 0;
    for (const [e, slots] of slotsByExpert(experts)) {
      runs.push([e, n, slots.length]);
      for (const s of slots) {
        idx[n] = Math.floor(s / k);
        wt[n++] = weights[s];
      }
    }
    const idxBuf = sc.get("moe.idx", T * k), wtBuf = sc.get("moe.wt", T * k);
    this.gpu.write(idxBuf, idx);
    this.gpu.write(wtBuf, wt);
    const q = this.gpu.pass();
    const xe = sc.get("moe.x", T * k * D), ye = sc.get("moe.y", T * k * D);
    const gb = sc.get("moe.g", T * k * F), ub = sc.get("moe.u", T * k * F), sb = sc.get("moe.s", T * k * F);
    for (const [e, i0, m] of runs) {
      gk.gather(q, xe, x, idxBuf, m, D, i0);
      gk.linear(q, gb, xe, m, D, moe.gates, F, { row0: e * F });
      gk.linear(q, ub, xe, m, D, moe.ups, F, { row0: e * F });
      gk.siluMul(q, sb, gb, ub, m, F);
      gk.linear(q, ye, sb, m, F, moe.downs, D, { row0: e * D });
      gk.axpy(q, h, ye, m, D, 1, idxBuf, wtBuf, i0);
    }
    return q;
  }
}

/** The WebGPU backend: models load onto the device (the adapter is released by close). */
export function webgpuRuntime(gpu: WebGpuBackend, opts: Omit<GpuLoadOptions, "onProgress"> = {}): Runtime {
  return {
    kind: "webgpu", name: gpu.name, threads: 1,
    load: (dir, o) => GpuModel.load(dir, gpu, { ...opts, onProgress: o?.onProgress }),
    close: async () => gpu.destroy(),
  };
}

/** The router of a model that has MoE layers. */
function routerOf(c: ModelConfig): RouterSpec {
  if (!c.router) throw new MlaError(`${c.modelType}: a mixture-of-experts layer but no router in the config`);
  return c.router;
}

