import type { Tensor } from "../../tensor/tensor.js";
import { MlaError } from "../../errors.js";
import { tensor } from "../../tensor/tensor.js";
import { ggmlRowBytes } from "../../tensor/ggml.js";
import { type BlockDType, isBlockDType } from "../../tensor/dtype.js";
import { quantizeTarget } from "../../tensor/ggml-quantize.js";
import type { KvView } from "../cpu/attention.js";
import { cacheElementBytes, type CacheData, type CacheDType } from "../cpu/cache-dtype.js";
import { attendLatentEach, cpuOps, type LatentRows, type Ops } from "../ops.js";
import type { Arena } from "./memory.js";
import { WasmBackend, type WasmBackendOptions, type WasmWeight } from "./index.js";

/** Elementwise work below this many values stays in JS: copying it into wasm memory would cost more than it saves. */
const SMALL = 1 << 14;
/** Queries per block of the causal score product. */
const QUERY_BLOCK = 128;
/**
 * Weights go to bank 0 while it holds less than this, leaving the rest of its 4 GiB to caches and activations;
 * then to banks of their own (see docs/architecture.md, "Memory past 4 GiB").
 */
const BANK0_WEIGHTS = 3 * 2 ** 30;
/** Weight bytes a further bank takes (its 4 GiB less room for per-thread scratch and the activation arena). */
const BANK_WEIGHTS = 4 * 2 ** 30 - (96 << 20);

export interface WasmOpsOptions extends WasmBackendOptions {
  /**
   * Quantize float weight matrices while loading: to Q8, or to a GGML block type where the rows divide its block
   * (else Q8 where they divide 32, else kept; see quantizeTarget).
   */
  readonly quantize?: "q8" | BlockDType;
  /**
   * Where weights go (bytes): bank 0 takes weights while it holds under `bank0Weights` (default 3 GiB), each further
   * bank up to `bankWeights` (default 4 GiB less 96 MiB). Tests set them small to spread a model over many banks.
   */
  readonly bank0Weights?: number;
  readonly bankWeights?: number;
}

/**
 * The model-facing side of the WebAssembly backend: weights live in wasm memory (uploaded once by `prepare`),
 * caches too (`allocCache`), and activations pass through an arena for each call. Anything the SIMD kernels do not
 * cover (odd shapes, small elementwise work) falls back to the scalar CPU kernels, so results never depend on shape.
 */
export class WasmOps implements Ops {
  readonly name: string;
  readonly threads: number;
  private readonly weights = new WeakMap<Tensor, WasmWeight>();
  private readonly cachePtrs = new WeakMap<CacheData, number>();
  /** Cache regions whose views were garbage-collected: reused by allocCache (the heap itself only grows). */
  private readonly freeRegions: { ptr: number; bytes: number }[] = [];
  private readonly regions = new FinalizationRegistry<{ ptr: number; bytes: number }>((r) => this.freeRegions.push(r));
  /** Per bank, the arena that a step's activations pass through (made on a bank's first use). */
  private readonly arenas: (Arena | undefined)[] = [];
  /** The bank that takes the next weights that do not fit in bank 0. */
  private weightBank = 0;
  /** Bytes of weights prepare() has placed (weightBytes). */
  private placedBytes = 0;

  private readonly bank0Weights: number;
  private readonly bankWeights: number;

  constructor(readonly be: WasmBackend, readonly quantize?: "q8" | BlockDType, banks: { bank0Weights?: number; bankWeights?: number } = {}) {
    this.name = `wasm-simd${be.relaxed ? "-relaxed" : ""}, ${be.threads} thread${be.threads > 1 ? "s" : ""}${quantize ? `, ${quantize}` : ""}`;
    this.threads = be.threads;
    this.arenas[0] = be.heap.arena(4 << 20);
    this.bank0Weights = banks.bank0Weights ?? BANK0_WEIGHTS;
    this.bankWeights = Math.min(banks.bankWeights ?? BANK_WEIGHTS, BANK_WEIGHTS);
  }

  static async create(opts: WasmOpsOptions = {}): Promise<WasmOps> {
    return new WasmOps(await WasmBackend.create(opts), opts.quantize, opts);
  }

  close(): Promise<void> {
    return this.be.close();
  }

  prepare(w: Tensor): Tensor {
    return this.place(w, true);
  }

  /** A float matrix uploaded as it is, whatever `quantize` says (the router's gate). */
  prepareExact(w: Tensor): Tensor {
    return this.place(w, false);
  }

  private place(w: Tensor, mayQuantize: boolean): Tensor {
    const cols = w.shape[w.shape.length - 1];
    if (w.shape.length !== 2 || cols % 8 !== 0) return w; // the scalar kernels serve it
    const to = this.quantize && mayQuantize ? quantizeTarget(this.quantize, w) : undefined;
    const q8 = to === "Q8", blocks = to && to !== "Q8" ? to : undefined;
    // Q8 and block types are quantized on the pool straight into the bank (uploadQ8, uploadBlocks)
    const bytes = q8 ? w.shape[0] * cols * (1 + 4 / 32) : blocks ? w.shape[0] * ggmlRowBytes(blocks, cols) : storedBytes(w);
    const bank = this.bankFor(bytes);
    let ww: WasmWeight;
    try {
      ww = q8 ? this.be.uploadQ8(w, bank) : blocks ? this.be.uploadBlocks(w, blocks, bank) : this.be.upload(w, bank);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      throw new MlaError(`out of memory placing the weights (${(this.weightBytes() / 2 ** 30).toFixed(2)} GiB placed so far): ` +
        `the machine's RAM does not hold them; try a smaller --quantize type`);
    }
    this.placedBytes += bytes;
    const t = this.view(ww);
    this.weights.set(t, ww);
    return t;
  }

  /**
   * The bank for a weight of `bytes`: bank 0 while it has room under BANK0_WEIGHTS, else the current weight bank,
   * else a new one. A single tensor larger than a bank cannot be placed.
   */
  private bankFor(bytes: number): number {
    const heaps = this.be.heaps;
    if (heaps[0].used + bytes <= this.bank0Weights) return 0;
    if (bytes > BANK_WEIGHTS) {
      throw new MlaError(`a weight of ${(bytes / 2 ** 30).toFixed(2)} GiB is larger than one WebAssembly memory (4 GiB) can hold`);
    }
    if (this.weightBank === 0 || heaps[this.weightBank].used + bytes > this.bankWeights) this.weightBank = this.be.addBank();
    return this.weightBank;
  }

  /** Bytes of the weight matrices placed so far, in every bank (caches, scratch and arenas not counted). */
  weightBytes(): number {
    return this.placedBytes;
  }

  /**
   * Cache storage in wasm memory, so attention kernels read it in place. A region returns to a free list when its
   * view is collected (a RunState dropped, or a cache that grew), so long-running processes reuse memory.
   */
  allocCache(n: number): Float32Array;
  allocCache(n: number, dtype: CacheDType): CacheData;
  allocCache(n: number, dtype: CacheDType = "F32"): CacheData {
    const bytes = n * cacheElementBytes(dtype);
    let best = -1;
    for (let i = 0; i < this.freeRegions.length; i++) {
      const r = this.freeRegions[i];
      if (r.bytes >= bytes && (best < 0 || r.bytes < this.freeRegions[best].bytes)) best = i;
    }
    const region = best >= 0 ? this.freeRegions.splice(best, 1)[0] : { ptr: this.be.heap.alloc(bytes), bytes };
    const view = dtype === "F32" ? this.be.heap.f32(region.ptr, n) : this.be.heap.u16(region.ptr, n);
    view.fill(0);
    this.cachePtrs.set(view, region.ptr);
    this.regions.register(view, region);
    return view;
  }

  linear(out: Float32Array, x: Float32Array, T: number, K: number, w: Tensor, N: number, row0 = 0, xStride = K, outStride = N): void {
    const ww = this.weights.get(w);
    if (!ww) return cpuOps.linear(out, x, T, K, w, N, row0, xStride, outStride);
    const bank = ww.bank ?? 0;
    this.step((a) => {
      const xp = this.input(a, x, (T - 1) * xStride + K, bank);
      const op = a.allocF32((T - 1) * outStride + N).ptr;
      this.be.linear(op, xp, T, K, ww, N, row0, xStride, outStride);
      this.output(out, op, T, N, outStride, bank);
    }, bank);
  }

  linearGrouped(out: Float32Array, x: Float32Array, G: number, K: number, w: Tensor, N: number, xg: number, og: number, row0 = 0, gs = N, T = 1, xStride = 0, outStride = 0): void {
    const ww = this.weights.get(w);
    if (!ww) return cpuOps.linearGrouped(out, x, G, K, w, N, xg, og, row0, gs, T, xStride, outStride);
    const bank = ww.bank ?? 0;
    this.step((a) => {
      const xp = this.input(a, x, (T - 1) * xStride + (G - 1) * xg + K, bank);
      const op = a.allocF32((T - 1) * outStride + (G - 1) * og + N).ptr;
      this.be.linearGrouped(op, xp, G, K, ww, N, xg, og, row0, gs, T, xStride, outStride);
      for (let t = 0; t < T; t++) this.output(out.subarray(t * outStride), op + t * outStride * 4, G, N, og, bank);
    }, bank);
  }

  rmsNorm(out: Float32Array, x: Float32Array, T: number, D: number, w: Float32Array, eps: number, xStride = D, outStride = D): void {
    if (T * D < SMALL || D % 4 !== 0) return cpuOps.rmsNorm(out, x, T, D, w, eps, xStride, outStride);
    this.step((a) => {
      const xp = this.input(a, x, (T - 1) * xStride + D), wp = this.input(a, w, D);
      const op = a.allocF32((T - 1) * outStride + D).ptr;
      this.be.rmsnorm(op, xp, T, D, wp, eps, xStride, outStride);
      this.output(out, op, T, D, outStride);
    });
  }

  siluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
    if (n < 1024) return cpuOps.siluMul(out, gate, up, n); // exp is dear in JS: the SIMD kernel pays off early
    this.step((a) => {
      const gp = this.input(a, gate, n), upp = this.input(a, up, n), op = a.allocF32(n).ptr;
      this.be.siluMul(op, gp, upp, n);
      out.set(this.be.heap.f32(op, n));
    });
  }

  attend(out: Float32Array, q: Float32Array, T: number, H: number, dk: number, k: KvView, v: KvView, dv: number, Hkv: number, L: number, scale: number): void {
    const cache = this.cachePtrs.get(k.data);
    const latent = T === 1 && Hkv === 1 && cache !== undefined && k.data === v.data && k.offset === 0 && v.offset === 0 &&
      k.headStride === 0 && v.headStride === 0 && k.rowStride === v.rowStride && dk % 4 === 0 && dv % 4 === 0 && dv <= dk;
    if (latent) return this.attendLatent(out, q, H, dk, cache, k.rowStride, dv, L, scale);
    if (T === 1 && dk % 4 === 0 && dv % 4 === 0) return this.attendHeads(out, q, H, dk, k, v, dv, Hkv, L, scale);
    if (dk % 8 !== 0) return cpuOps.attend(out, q, T, H, dk, k, v, dv, Hkv, L, scale);
    this.attendGeneral(out, q, T, H, dk, k, v, dv, Hkv, L, scale);
  }

  /**
   * Absorbed MLA decode of several sequences in one kernel call (split across threads by sequence), when every cache
   * lives in wasm memory; otherwise attend per sequence.
   */
  attendLatentMany(out: Float32Array, q: Float32Array, H: number, w: number, dc: number, rows: readonly LatentRows[], scale: number): void {
    const ptrs = rows.map((r) => this.cachePtrs.get(r.data));
    const dtype = rows[0]?.dtype ?? "F32";
    if (w % 4 !== 0 || dc % 4 !== 0 || dc > w || ptrs.some((p, i) => p === undefined || rows[i].width !== w || rows[i].length < 1 || (rows[i].dtype ?? "F32") !== dtype)) {
      return attendLatentEach(this, out, q, H, w, dc, rows, scale);
    }
    // one sequence: split its heads across threads (the batched kernel splits sequences)
    if (rows.length === 1) return this.attendLatent(out, q, H, w, ptrs[0]!, w, dc, rows[0].length, scale, dtype);
    const n = rows.length;
    this.step((a) => {
      const qp = this.input(a, q, n * H * w);
      const op = a.allocF32(n * H * dc).ptr;
      const table = a.allocF32(n * 3);
      const t32 = new Int32Array(this.be.heap.buffer, table.ptr, n * 3);
      let total = 0;
      rows.forEach((r, i) => {
        t32[3 * i] = ptrs[i]!;
        t32[3 * i + 1] = r.length;
        t32[3 * i + 2] = w;
        total += r.length;
      });
      this.be.attendLatentMany(op, qp, n, H, table.ptr, w, dc, scale, total, dtype);
      out.set(this.be.heap.f32(op, n * H * dc));
    });
  }

  /** Absorbed MLA decode: every head reads the latent rows [c_KV | k_rope] once (the kernel tiles heads). */
  private attendLatent(out: Float32Array, q: Float32Array, H: number, w: number, cache: number, rowStride: number, dc: number, L: number, scale: number, dtype: CacheDType = "F32"): void {
    this.step((a) => {
      const qp = this.input(a, q, H * w);
      const op = a.allocF32(H * dc).ptr;
      this.be.attendLatent(op, qp, H, cache, L, w, dc, scale, rowStride, dtype);
      out.set(this.be.heap.f32(op, H * dc));
    });
  }

  /** One token, per-head K/V read in place when they are a cache (MHA/GQA/MQA decode, naive MLA decode). */
  private attendHeads(out: Float32Array, q: Float32Array, H: number, dk: number, k: KvView, v: KvView, dv: number, Hkv: number, L: number, scale: number): void {
    this.step((a) => {
      const qp = this.input(a, q, H * dk);
      const kp = this.input(a, k.data, k.offset + (L - 1) * k.rowStride + (Hkv - 1) * k.headStride + dk);
      const vp = k.data === v.data ? kp : this.input(a, v.data, v.offset + (L - 1) * v.rowStride + (Hkv - 1) * v.headStride + dv);
      const op = a.allocF32(H * dv).ptr;
      this.be.attendHeads(op, qp, H, dk, kp + k.offset * 4, k.rowStride, k.headStride, vp + v.offset * 4, v.rowStride, v.headStride, dv, Hkv, L, scale);
      out.set(this.be.heap.f32(op, H * dv));
    });
  }

  /**
   * Attention of T queries per head as two matrix products on the SIMD kernels: S = (scale q) K^T, causal softmax
   * over each row's visible prefix, O = P V (V transposed once per K/V head, rows padded to a multiple of 8).
   */
  private attendGeneral(out: Float32Array, q: Float32Array, T: number, H: number, dk: number, k: KvView, v: KvView, dv: number, Hkv: number, L: number, scale: number): void {
    const Lp = Math.ceil(L / 8) * 8, group = H / Hkv, heap = this.be.heap;
    this.step((a) => {
      const kg = a.allocF32(L * dk), vt = a.allocF32(dv * Lp), qh = a.allocF32(T * dk), s = a.allocF32(T * Lp), o = a.allocF32(T * dv);
      const kw: WasmWeight = { dtype: "F32", rows: L, cols: dk, ptr: kg.ptr, scalesPtr: 0 };
      const vw: WasmWeight = { dtype: "F32", rows: dv, cols: Lp, ptr: vt.ptr, scalesPtr: 0 };
      for (let g = 0; g < Hkv; g++) {
        const K = heap.f32(kg.ptr, L * dk), VT = heap.f32(vt.ptr, dv * Lp);
        VT.fill(0);
        for (let j = 0; j < L; j++) {
          const ko = k.offset + j * k.rowStride + g * k.headStride, vo = v.offset + j * v.rowStride + g * v.headStride;
          K.set(k.data.subarray(ko, ko + dk), j * dk);
          for (let i = 0; i < dv; i++) VT[i * Lp + j] = v.data[vo + i];
        }
        for (let h = g * group; h < (g + 1) * group; h++) {
          const Q = heap.f32(qh.ptr, T * dk);
          for (let t = 0; t < T; t++) for (let i = 0; i < dk; i++) Q[t * dk + i] = q[(t * H + h) * dk + i] * scale;
          // scores block by block of queries, each against the keys it can see (the causal half is skipped)
          for (let t0 = 0; t0 < T; t0 += QUERY_BLOCK) {
            const t1 = Math.min(T, t0 + QUERY_BLOCK);
            this.be.linear(s.ptr + t0 * Lp * 4, qh.ptr + t0 * dk * 4, t1 - t0, dk, kw, L - T + t1, 0, dk, Lp);
          }
          this.be.softmaxCausal(s.ptr, T, Lp, L - T);
          this.be.linear(o.ptr, s.ptr, T, Lp, vw, dv, 0, Lp, dv);
          const O = heap.f32(o.ptr, T * dv);
          for (let t = 0; t < T; t++) out.set(O.subarray(t * dv, (t + 1) * dv), (t * H + h) * dv);
        }
      }
    });
  }

  /** Run fn with a fresh arena of `bank`; grow the arena (once, to fit) when a step needs more than it holds. */
  private step(fn: (a: Arena) => void, bank = 0): void {
    let arena = (this.arenas[bank] ??= this.be.heaps[bank].arena(4 << 20));
    for (;;) {
      arena.reset();
      try {
        fn(arena);
        return;
      } catch (e) {
        if (!(e instanceof Error) || !e.message.startsWith("wasm arena full")) throw e;
        arena = this.arenas[bank] = this.be.heaps[bank].arena(arena.capacity * 4);
      }
    }
  }

  /** x in wasm memory (of `bank`): the cache itself when x is a cache in that bank, else a copy of its first n floats. */
  private input(a: Arena, x: Float32Array, n: number, bank = 0): number {
    const cached = bank === 0 ? this.cachePtrs.get(x) : undefined;
    if (cached !== undefined) return cached;
    const p = a.allocF32(n);
    p.view.set(x.subarray(0, n));
    return p.ptr;
  }

  /** Copy T rows of N outputs (row stride outStride) back, leaving the gaps between rows untouched. */
  private output(out: Float32Array, op: number, T: number, N: number, outStride: number, bank = 0): void {
    const o = this.be.heaps[bank].f32(op, (T - 1) * outStride + N);
    if (outStride === N) out.set(o.subarray(0, T * N));
    else for (let t = 0; t < T; t++) out.set(o.subarray(t * outStride, t * outStride + N), t * outStride);
  }

  /** A Tensor whose data views the uploaded weight (so row reads, e.g. tied embeddings, still work). */
  private view(w: WasmWeight): Tensor {
    const buf = this.be.heaps[w.bank ?? 0].buffer, n = w.rows * w.cols, shape = [w.rows, w.cols];
    if (w.dtype === "F32") return tensor("F32", shape, new Float32Array(buf, w.ptr, n));
    if (w.dtype === "Q8") return tensor("Q8", shape, new Int8Array(buf, w.ptr, n), new Float32Array(buf, w.scalesPtr, n / 32));
    if (isBlockDType(w.dtype)) return tensor(w.dtype, shape, new Uint8Array(buf, w.ptr, w.rows * ggmlRowBytes(w.dtype, w.cols)));
    return tensor(w.dtype, shape, new Uint16Array(buf, w.ptr, n));
  }
}

/** Bytes a tensor's data takes as stored (Q8 with its f32 scales). */
function storedBytes(t: Tensor): number {
  return t.data.byteLength + (t.scales?.byteLength ?? 0);
}
