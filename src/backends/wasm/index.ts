import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { setFlagsFromString } from "node:v8";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MlaError } from "../../errors.js";
import { type BlockDType, isBlockDType, isDType } from "../../tensor/dtype.js";
import { rowF32, tensor, type Tensor } from "../../tensor/tensor.js";
import { ggmlRowBytes } from "../../tensor/ggml.js";
import { Q8_BLOCK, quantizeRowsQ8, type Q8Data } from "../../tensor/quant.js";
import { quantizeTensor } from "../../tensor/ggml-quantize.js";
import { RESERVED_BYTES, WasmHeap } from "./memory.js";
import { WorkerPool, controlBlockBytes, defaultThreads } from "./pool.js";
import { DTYPE_CODE, KERNEL, POOL_KERNELS } from "./kernels.js";
import type { CacheDType } from "../cpu/cache-dtype.js";

export { WasmHeap, Arena, type F32Alloc } from "./memory.js";
export { WorkerPool } from "./pool.js";
export { KERNEL, POOL_KERNELS, type KernelSpec, type KernelArgs } from "./kernels.js";

/**
 * WebAssembly SIMD CPU backend: kernels from assembly/kernels.ts (built into build/ by `npm run asbuild`), one shared
 * linear memory, and a worker pool that splits output rows across threads.
 *
 * Everything is addressed by byte pointers into the backend's memory (`backend.heap`): upload weights once with
 * `upload`/`uploadQ8`, keep activations in wasm memory (heap.allocF32 / an Arena), call kernels with pointers.
 */

export type WasmDType = "F32" | "BF16" | "F16" | "Q8" | BlockDType;

/** The multiple of which a product's K must be: the block of the weight's dtype (8 for the float dtypes). */
export function wasmKMultiple(dtype: WasmDType): number {
  return dtype === "Q8" || dtype === "Q4_0" || dtype === "Q5_0" ? 32 : isBlockDType(dtype) ? 256 : 8;
}

/** Bytes of one row of K weights as the kernels hold it (Q8: the int8 values; its f32 scales are a separate array). */
function wasmRowBytes(dtype: WasmDType, K: number): number {
  if (dtype === "Q8") return K;
  if (isBlockDType(dtype)) return ggmlRowBytes(dtype, K);
  return dtype === "F32" ? 4 * K : 2 * K;
}

/** A weight matrix [rows, cols] (PyTorch Linear layout) living in wasm memory. */
export interface WasmWeight {
  readonly dtype: WasmDType;
  readonly rows: number;
  readonly cols: number;
  /** Row-major data: f32, 16-bit words, or int8 for Q8. */
  readonly ptr: number;
  /** Q8 only: f32 scales [rows, cols / 32]; 0 otherwise. */
  readonly scalesPtr: number;
  /** The memory bank holding it (0 when absent); a product's x and out must live in the same bank. */
  readonly bank?: number;
}

export interface WasmBackendOptions {
  /** Threads including the main one; default os.availableParallelism() capped at 8. 1 = no workers. */
  readonly threads?: number;
  /**
   * Use the relaxed-SIMD build (fused multiply-add): true requires it, false never, "auto" (default) when
   * build/kernels-relaxed.wasm exists and this engine validates it (Node 20: --experimental-wasm-relaxed-simd).
   */
  readonly relaxed?: boolean | "auto";
  /** Initial memory in bytes (grows on demand up to 4 GiB). Default 16 MiB. */
  readonly initialBytes?: number;
  /** Microseconds a waiting thread busy-waits before parking in Atomics.wait (default 1000; see PoolOptions). */
  readonly spinMicros?: number;
  /** Multiply-adds (elements for elementwise kernels) below which a call stays on the calling thread. Default 2^17. */
  readonly minParallelWork?: number;
  /** Where kernels.wasm lives; default <package root>/build. */
  readonly wasmDir?: string;
}

/**
 * The exports of kernels.wasm, as called from JS (pointers and counts are numbers). The pool calls those of
 * kernels.ts by name; the rest are called directly.
 */
export interface KernelExports {
  linear_f32(out: number, x: number, T: number, K: number, w: number, n0: number, n1: number, xStride: number, outStride: number, scratch: number): void;
  linear_bf16(out: number, x: number, T: number, K: number, w: number, n0: number, n1: number, xStride: number, outStride: number, scratch: number): void;
  linear_f16(out: number, x: number, T: number, K: number, w: number, n0: number, n1: number, xStride: number, outStride: number, scratch: number): void;
  linear_q8(out: number, x: number, T: number, K: number, wq: number, scales: number, n0: number, n1: number, xStride: number, outStride: number, scratch: number): void;
  linear_scratch(K: number): number;
  rmsnorm(out: number, x: number, D: number, w: number, eps: number, t0: number, t1: number, xStride: number, outStride: number): void;
  silu_mul(out: number, gate: number, up: number, i0: number, i1: number): void;
  softmax(x: number, n: number): void;
  attend_latent(out: number, q: number, cache: number, L: number, w: number, dc: number, cStride: number, scale: number, h0: number, h1: number, scratch: number): void;
  attend_latent_scratch(H: number, dc: number): number;
  attend_latent_16_scratch(H: number, dc: number, w: number): number;
  attend_latent_many(out: number, q: number, table: number, H: number, w: number, dc: number, scale: number, s0: number, s1: number, scratch: number): void;
  linear_grouped(dt: number, out: number, x: number, T: number, K: number, w: number, scales: number, N: number, row0: number, gs: number, g0: number, g1: number, xg: number, og: number, xStride: number, outStride: number, scratch: number): void;
  attend_heads(out: number, q: number, k: number, v: number, L: number, dk: number, dv: number, kRow: number, vRow: number, kHead: number, vHead: number, group: number, scale: number, h0: number, h1: number, scratch: number): void;
  attend_heads_scratch(L: number): number;
  softmax_causal(s: number, Lp: number, first: number, t0: number, t1: number, scratch: number): void;
  heap_base(): number;
  prep_x(dt: number, dst: number, x: number, K: number): number;
  kq8_chunk_bytes(K: number): number;
  prep_x_bytes(dt: number, K: number): number;
  kq8_chunk_tokens(): number;
}

/** The float products by weight dtype (one parameter list, so one call serves them all; Q8 has its own). */
const LINEAR_FLOAT = { F32: KERNEL.linear_f32, BF16: KERNEL.linear_bf16, F16: KERNEL.linear_f16 } as const;
/** The products on GGML's packed blocks (the float products' parameter list, w at the first row's blocks). */
/** The latent kernels' dt for 16-bit cache rows (assembly/attention-latent.ts). */
const CACHE_DT = { BF16: 1, F16: 2 } as const;
const LINEAR_BLOCK = { Q4_0: KERNEL.linear_q4_0, Q4_K: KERNEL.linear_q4_k, Q5_K: KERNEL.linear_q5_k, Q6_K: KERNEL.linear_q6_k, Q5_0: KERNEL.linear_q5_0 } as const;

/** Most tokens of a Q4_K/Q5_K product that take linearFew (assembly/kquant.ts KQ_FEW_T, the most kq_rows_xt takes). */
const KQ_FEW_T = 4;
/** Multiply-adds below which a call stays on the calling thread (waking a worker costs a few microseconds). */
const MIN_PARALLEL_WORK = 1 << 17;
/** Bytes of a bank's staging area for load-time quantization (a chunk of rows at a time passes through it). */
const STAGING_BYTES = 16 << 20;
/** Per-thread scratch of quantize_blocks (assembly/quantize.ts needs 3456 bytes: one block widened, its fits). */
const QUANTIZE_BLOCKS_SCRATCH = 4096;
/** Control block offset inside the reserved first page. */
const CTRL_PTR = 16384; // above the kernels' static data (heap_base, checked at start-up)

/** Default location of the .wasm files: <package root>/build, from src/backends/wasm (tsx) or dist/backends/wasm. */
export function defaultWasmDir(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "build");
}

/** Read kernels.wasm (or kernels-relaxed.wasm); a clear error when it was not built. */
export function loadKernelBytes(relaxed: boolean, dir = defaultWasmDir()): Uint8Array<ArrayBuffer> {
  const file = join(dir, relaxed ? "kernels-relaxed.wasm" : "kernels.wasm");
  if (!existsSync(file)) {
    throw new MlaError(`WebAssembly kernels not found at ${file}: build them with \`npm run asbuild\` (AssemblyScript, assembly/kernels.ts)`);
  }
  const buf = readFileSync(file);
  const bytes = new Uint8Array(new ArrayBuffer(buf.byteLength));
  bytes.set(buf);
  return bytes;
}

/** Whether this engine accepts the relaxed-SIMD build (false when it is missing). */
export function relaxedSimdAvailable(dir = defaultWasmDir()): boolean {
  const file = join(dir, "kernels-relaxed.wasm");
  if (!existsSync(file)) return false;
  const bytes = loadKernelBytes(true, dir);
  if (WebAssembly.validate(bytes)) return true;
  // Node 20's V8 has relaxed SIMD complete but behind a flag (V8 11.4+, i.e. Node 22, ships it): turn it on
  // before the first relaxed module is compiled. Fused multiply-add makes prefill products ~10-15% faster.
  if (!/^v20\./.test(process.version) || process.env.MLA_NO_RELAXED_SIMD) return false;
  setFlagsFromString("--experimental-wasm-relaxed-simd");
  return WebAssembly.validate(bytes);
}

// ---------------------------------------------------------------------------------------------
// Q8 quantization (see src/tensor/quant.ts): symmetric int8 in blocks of 32 along K, one f32 scale per block.

export { Q8_BLOCK, type Q8Data } from "../../tensor/quant.js";

// Named for what they make: Q8Data (q and scales apart), unlike tensor.ts quantizeQ8, which makes a Q8 Tensor.

/** Quantize rows [rows, K] of a source (an F32 array, or any Tensor row by row) into `q` / `scales`. */
export function quantizeQ8DataInto(q: Int8Array, scales: Float32Array, src: Tensor | Float32Array, rows: number, K: number): void {
  const scratch = new Float32Array(K);
  quantizeRowsQ8(q, scales, rows, K, (r) => (src instanceof Float32Array ? src.subarray(r * K, (r + 1) * K) : rowF32(src, r, K, scratch)));
}

/** Quantize rows [rows, K] of a source into fresh Q8Data. */
export function quantizeQ8Data(src: Tensor | Float32Array, rows: number, K: number): Q8Data {
  const q = new Int8Array(rows * K);
  const scales = new Float32Array(rows * (K / Q8_BLOCK));
  quantizeQ8DataInto(q, scales, src, rows, K);
  return { q, scales };
}

/** Q8Data of [rows, K] back to f32 (q * its block's scale). */
export function dequantizeQ8Data(d: Q8Data, rows: number, K: number): Float32Array {
  const out = new Float32Array(rows * K);
  const nb = K / Q8_BLOCK;
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < K; k++) out[r * K + k] = d.q[r * K + k] * d.scales[r * nb + ((k / Q8_BLOCK) | 0)];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

export class WasmBackend {
  /** Bank 0: the pool's control block, caches, activations, and the first weights. */
  readonly heap: WasmHeap;
  /** Every bank's heap (heaps[0] === heap); see addBank. */
  readonly heaps: WasmHeap[];
  readonly kernels: KernelExports;
  /** Per bank, this thread's instance of the module on it (bankKernels[0] === kernels). */
  private readonly bankKernels: KernelExports[];
  readonly pool: WorkerPool;
  readonly relaxed: boolean;
  readonly threads: number;
  /** Per bank, the staging area of load-time conversions (see staging). */
  private readonly stagings: ({ ptr: number; bytes: number } | undefined)[] = [];
  /** Per bank, the per-thread scratch size set aside so far. */
  private readonly scratchBytes: number[] = [0];
  private readonly minWork: number;

  private constructor(private readonly module: WebAssembly.Module, heap: WasmHeap, kernels: KernelExports, pool: WorkerPool, relaxed: boolean, minWork: number) {
    this.heap = heap;
    this.heaps = [heap];
    this.kernels = kernels;
    this.bankKernels = [kernels];
    this.pool = pool;
    this.relaxed = relaxed;
    this.threads = pool.threads;
    this.minWork = minWork;
    this.staging(0);
    this.ensureScratch(1 << 20);
  }

  static async create(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
    const dir = opts.wasmDir ?? defaultWasmDir();
    let relaxed: boolean;
    if (opts.relaxed === true) {
      const bytes = loadKernelBytes(true, dir);
      if (!WebAssembly.validate(bytes)) {
        throw new MlaError("this engine does not support relaxed SIMD (on Node 20 run with --experimental-wasm-relaxed-simd)");
      }
      relaxed = true;
    } else {
      relaxed = opts.relaxed === false ? false : relaxedSimdAvailable(dir);
    }
    const bytes = loadKernelBytes(relaxed, dir);
    if (!WebAssembly.validate(bytes)) throw new MlaError("this engine does not support WebAssembly SIMD + threads (shared memory)");
    const module = await WebAssembly.compile(bytes);
    const threads = opts.threads ?? defaultThreads(availableParallelism());
    const heap = WasmHeap.create(opts.initialBytes);
    const instance = await WebAssembly.instantiate(module, { env: { memory: heap.memory } });
    const kernels = instance.exports as unknown as KernelExports;
    const base = kernels.heap_base();
    if (base > CTRL_PTR || CTRL_PTR + controlBlockBytes(threads) > RESERVED_BYTES) {
      throw new MlaError(`kernels.wasm static data (${base} bytes) overlaps the pool control block`);
    }
    const pool = await WorkerPool.create(module, heap.memory, CTRL_PTR, instance.exports, POOL_KERNELS, { threads, spinMicros: opts.spinMicros });
    return new WasmBackend(module, heap, kernels, pool, relaxed, opts.minParallelWork ?? MIN_PARALLEL_WORK);
  }

  /**
   * One more memory bank: a fresh shared memory (up to wasm32's 4 GiB of its own) with the kernel module
   * instantiated on it here and in every worker. Weights placed in it are multiplied there; their inputs and outputs
   * pass through that bank (see WasmOps). Returns the bank's index.
   */
  addBank(initialBytes = 4 << 20): number {
    const heap = WasmHeap.create(initialBytes);
    const instance = new WebAssembly.Instance(this.module, { env: { memory: heap.memory } });
    const bank = this.pool.addBank(heap.memory, instance.exports);
    this.bankKernels.push(instance.exports as unknown as KernelExports);
    this.heaps.push(heap);
    this.scratchBytes.push(0);
    this.staging(bank);
    this.ensureScratch(1 << 20, bank);
    return bank;
  }

  /**
   * Make sure products with inner dimension up to K need no new scratch. Scratch that grows later is taken from the
   * heap and pins it (see ensureScratch), so callers that allocate and release around `linear` reserve first.
   */
  reserveLinear(K: number): void {
    this.ensureScratch(this.kernels.linear_scratch(K)); // covers T = 1's 16 K + 64 bytes too
  }

  /**
   * Per-thread scratch of at least `bytes`. The first 1 MiB per thread is set aside at creation (enough for K up to
   * 65532); growing past it takes new heap memory and pins the heap there (old buffers are abandoned).
   */
  private ensureScratch(bytes: number, bank = 0): void {
    const have = this.scratchBytes[bank];
    if (bytes <= have) return;
    const b = Math.max(bytes, have * 2), heap = this.heaps[bank];
    this.pool.scratch[bank] = Array.from({ length: this.threads }, () => heap.alloc(b));
    heap.pin();
    this.scratchBytes[bank] = b;
  }

  // -------------------------------------------------------------------------------------------
  // weights

  /** Copy a tensor [rows, cols] into wasm memory (bank `bank`, default 0) keeping its dtype. */
  upload(t: Tensor, bank = 0): WasmWeight {
    const [rows, cols] = matShape(t), heap = this.heaps[bank];
    if (t.dtype === "Q8") return this.uploadQ8Data({ q: t.data as Int8Array, scales: t.scales! }, rows, cols, bank);
    if (isBlockDType(t.dtype)) {
      // GGML's blocks as they are: the kernels read them packed
      const src = t.data as Uint8Array, a = heap.alloc(src.length);
      new Uint8Array(heap.buffer, a, src.length).set(src);
      return { dtype: t.dtype, rows, cols, ptr: a, scalesPtr: 0, bank };
    }
    if (t.dtype === "F32") {
      const a = heap.allocF32(rows * cols);
      a.view.set(t.data as Float32Array);
      return { dtype: "F32", rows, cols, ptr: a.ptr, scalesPtr: 0, bank };
    }
    const a = heap.allocU16(rows * cols);
    a.view.set(t.data as Uint16Array);
    return { dtype: t.dtype, rows, cols, ptr: a.ptr, scalesPtr: 0, bank };
  }

  /** Quantize a tensor [rows, cols] (any dtype, cols % 32 == 0) straight into wasm memory as Q8. */
  uploadQ8(t: Tensor, bank = 0): WasmWeight {
    const [rows, cols] = matShape(t), heap = this.heaps[bank];
    if (cols % Q8_BLOCK !== 0) throw new MlaError(`Q8 needs cols % ${Q8_BLOCK} == 0, got ${cols}`);
    const q = heap.allocI8(rows * cols);
    const s = heap.allocF32(rows * (cols / Q8_BLOCK));
    // float rows on the pool (assembly/quantize.ts, the arithmetic of quant.ts): ~2.5 ns a weight, not JS's ~10+
    const src = t.dtype;
    const pooled = isDType(src) && this.staged(t, bank, 128, (stage, r0, n) => {
      const dt = DTYPE_CODE[src];
      this.pool.run(KERNEL.quantize_q8, { q: q.ptr + r0 * cols, s: s.ptr + r0 * (cols / Q8_BLOCK) * 4, src: stage, dt, K: cols }, n, 1, this.threads, bank);
    });
    if (!pooled) quantizeQ8DataInto(q.view, s.view, t, rows, cols);
    return { dtype: "Q8", rows, cols, ptr: q.ptr, scalesPtr: s.ptr, bank };
  }

  /**
   * Quantize a tensor [rows, cols] straight into wasm memory as one of GGML's block types. F32/BF16/F16 rows are
   * quantized on the pool (assembly/quantize.ts quantize_blocks, byte for byte ggml-quantize.ts's quantizeRows),
   * as the JS costs ~350 ns a weight for the K-quants; other sources on the host.
   */
  uploadBlocks(t: Tensor, type: BlockDType, bank = 0): WasmWeight {
    const [rows, cols] = matShape(t), rb = ggmlRowBytes(type, cols); // throws where cols does not divide the block
    const dst = this.heaps[bank].alloc(rows * rb);
    // Q5_0 has no pool quantizer (only GGUF files hold it; `--quantize` does not make it): the JS reference
    const src = t.dtype;
    const pooled = isDType(src) && type !== "Q5_0" && this.staged(t, bank, QUANTIZE_BLOCKS_SCRATCH, (stage, r0, n) => {
      const dt = DTYPE_CODE[src];
      this.pool.run(KERNEL.quantize_blocks, { dst: dst + r0 * rb, src: stage, dt, type: DTYPE_CODE[type], K: cols }, n, 1, this.threads, bank);
    });
    if (!pooled) new Uint8Array(this.heaps[bank].buffer, dst, rows * rb).set(quantizeTensor(t, type).data as Uint8Array);
    return { dtype: type, rows, cols, ptr: dst, scalesPtr: 0, bank };
  }

  /**
   * F32 rows [rows, cols] as the bytes of a GGML block type, quantized on the pool and copied out (the GGUF exporter's
   * fast path: the JS reference takes ~350 ns a weight for the K-quants). Same bytes as ggml-quantize.ts quantizeRows.
   * Works through bank 0 in slices of at most `sliceBytes` of output, so a stack of experts of any size fits.
   */
  quantizeBlocksToHost(x: Float32Array, rows: number, cols: number, type: BlockDType, sliceBytes = 2 ** 26): Uint8Array {
    const rb = ggmlRowBytes(type, cols), out = new Uint8Array(rows * rb), heap = this.heaps[0];
    // scratch and staging first: they are pinned when made, and must not be made after the mark released below
    this.staging(0);
    this.ensureScratch(QUANTIZE_BLOCKS_SCRATCH, 0);
    const step = Math.max(1, Math.floor(sliceBytes / rb));
    for (let r0 = 0; r0 < rows; r0 += step) {
      const n = Math.min(step, rows - r0), mark = heap.mark();
      try {
        const w = this.uploadBlocks(tensor("F32", [n, cols], x.subarray(r0 * cols, (r0 + n) * cols)), type, 0);
        out.set(heap.u8(w.ptr, n * rb), r0 * rb);
      } finally {
        heap.release(mark);
      }
    }
    return out;
  }

  /**
   * Pass a float tensor's rows through the bank's staging area a chunk at a time, calling run(stage, r0, n) with the
   * chunk's n rows at `stage` (rows [0, n) of their own; outputs offset by r0). The staging pages are touched once per
   * bank instead of once per tensor (fresh pages cost a fault each). False, having done nothing, when one row is
   * larger than the area (cols > 4M): the caller falls back to the JS reference, which gives the same bytes.
   */
  private staged(t: Tensor, bank: number, scratchBytes: number, run: (stage: number, r0: number, n: number) => void): boolean {
    const [rows, cols] = matShape(t), heap = this.heaps[bank], stage = this.staging(bank);
    const src = t.data as Float32Array | Uint16Array, rowBytes = cols * src.BYTES_PER_ELEMENT;
    if (rowBytes > stage.bytes) return false;
    const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength), chunk = Math.floor(stage.bytes / rowBytes);
    this.ensureScratch(scratchBytes, bank);
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const n = Math.min(chunk, rows - r0);
      new Uint8Array(heap.buffer, stage.ptr, n * rowBytes).set(bytes.subarray(r0 * rowBytes, (r0 + n) * rowBytes));
      run(stage.ptr, r0, n);
    }
    return true;
  }

  /**
   * A bank's staging area for load-time conversion, set aside when the bank is made (below anything a caller may
   * release later, like the scratch).
   */
  private staging(bank: number): { ptr: number; bytes: number } {
    return this.stagings[bank] ??= { ptr: this.heaps[bank].alloc(STAGING_BYTES), bytes: STAGING_BYTES };
  }

  /** Copy already-quantized data into wasm memory. */
  uploadQ8Data(d: Q8Data, rows: number, cols: number, bank = 0): WasmWeight {
    const heap = this.heaps[bank];
    const q = heap.allocI8(rows * cols);
    q.view.set(d.q);
    const s = heap.allocF32(rows * (cols / Q8_BLOCK));
    s.view.set(d.scales);
    return { dtype: "Q8", rows, cols, ptr: q.ptr, scalesPtr: s.ptr, bank };
  }

  // -------------------------------------------------------------------------------------------
  // kernels (all pointers are byte offsets into this.heap, except that a product's x and out are offsets into the
  // bank of its weight)

  /**
   * out[t, n] = sum_k x[t, k] * W[row0 + n, k] for t < T, n < N (y = x W^T), as cpu/matmul.ts `linear`.
   * K must equal w.cols and be a multiple of 8 (32 for Q8); x rows are xStride floats apart, out rows outStride.
   */
  linear(out: number, x: number, T: number, K: number, w: WasmWeight, N: number, row0 = 0, xStride = K, outStride = N): void {
    if (K !== w.cols) throw new MlaError(`linear: K=${K} but the weight has ${w.cols} columns`);
    if (K % wasmKMultiple(w.dtype) !== 0) throw new MlaError(`linear: K=${K} must be a multiple of ${wasmKMultiple(w.dtype)} for ${w.dtype}`);
    if (row0 < 0 || row0 + N > w.rows) throw new MlaError(`linear: rows [${row0}, ${row0 + N}) outside the weight's ${w.rows}`);
    if (T <= 0 || N <= 0) return;
    // T = 1: x deinterleaved (BF16/F16, 4*K bytes) or as int16 (Q8); T > 1: a packed token block and 4 widened rows
    const bank = w.bank ?? 0;
    this.ensureScratch(T === 1 ? 16 * K + 64 : this.kernels.linear_scratch(K), bank);
    const maxThreads = N * K * T >= this.minWork ? this.threads : 1;
    // row row0: its first byte, and its first block scale (Q8's scales are their own array)
    const wp = w.ptr + row0 * wasmRowBytes(w.dtype, K);
    const scales = w.dtype === "Q8" ? w.scalesPtr + row0 * (K / Q8_BLOCK) * 4 : 0;
    if (T === 1 && maxThreads > 1 && (w.dtype === "Q8" || isBlockDType(w.dtype))) {
      // the integer paths quantize x first: once here, not once per chunk of rows (see assembly/linear.ts prep_x)
      const dt = DTYPE_CODE[w.dtype], xq = this.pool.scratch[bank][0];
      if (this.bankKernels[bank].prep_x(dt, xq, x, K)) {
        this.pool.run(KERNEL.linear_rows_x, { dt, out, xq, K, w: wp, scales }, N, 16, maxThreads, bank);
        return;
      }
    }
    if (T > 1 && T <= KQ_FEW_T && this.relaxed && (w.dtype === "Q4_K" || w.dtype === "Q5_K") && this.linearFew(out, x, T, K, w, wp, N, xStride, outStride, maxThreads)) return;
    if (T > 1 && this.relaxed && (w.dtype === "Q4_K" || w.dtype === "Q5_K" || w.dtype === "Q6_K")) {
      this.linearKq8(out, x, T, K, w, wp, N, xStride, outStride, maxThreads);
      return;
    }
    if (w.dtype === "Q8") {
      this.pool.run(KERNEL.linear_q8, { out, x, T, K, wq: wp, scales, xStride, outStride }, N, 16, maxThreads, bank);
      return;
    }
    if (isBlockDType(w.dtype)) {
      this.pool.run(LINEAR_BLOCK[w.dtype], { out, x, T, K, w: wp, xStride, outStride }, N, 16, maxThreads, bank);
      return;
    }
    this.pool.run(LINEAR_FLOAT[w.dtype], { out, x, T, K, w: wp, xStride, outStride }, N, 16, maxThreads, bank);
  }

  /**
   * The relaxed build's Q4_K/Q5_K product of 2..KQ_FEW_T tokens (batched decodes): each token's x prepared here as
   * for T = 1 (prep_x), then every thread's rows split each block's nibbles once for all tokens (linear_rows_xt). The
   * int8 tiles unpack a row for a quad of tokens, which costs as much again as the dots when only 2 are there.
   * False (nothing done) when a token needs the float path.
   */
  private linearFew(out: number, x: number, T: number, K: number, w: WasmWeight, wp: number, N: number, xStride: number, outStride: number, maxThreads: number): boolean {
    const bank = w.bank ?? 0, k = this.bankKernels[bank], dt = DTYPE_CODE[w.dtype];
    const rec = k.prep_x_bytes(dt, K), xq = this.pool.scratch[bank][0];
    for (let t = 0; t < T; t++) if (!k.prep_x(dt, xq + t * rec, x + t * xStride * 4, K)) return false;
    this.pool.run(KERNEL.linear_rows_xt, { dt, out, xq, T, K, w: wp, outStride }, N, 16, maxThreads, bank);
    return true;
  }

  /**
   * The relaxed build's T > 1 K-quant product with its tokens quantized once: kq8_prep writes every chunk of 64
   * tokens (int8 x, sums, factors) into memory taken from the weight's bank for this call, then every thread's rows
   * read them (linear_kq8). Split by rows alone, each chunk of rows quantized all T tokens again: 7-10% of a
   * 64-token product.
   */
  private linearKq8(out: number, x: number, T: number, K: number, w: WasmWeight, wp: number, N: number, xStride: number, outStride: number, maxThreads: number): void {
    const bank = w.bank ?? 0, heap = this.heaps[bank];
    const k = this.bankKernels[bank], chunks = Math.ceil(T / k.kq8_chunk_tokens()), cb = k.kq8_chunk_bytes(K);
    const mark = heap.mark();
    try {
      const prep = heap.alloc(chunks * cb + chunks * 4), flags = prep + chunks * cb;
      this.pool.run(KERNEL.kq8_prep, { prep, x, T, K, xStride, flags }, chunks, 1, maxThreads, bank);
      this.pool.run(KERNEL.linear_kq8, { dt: DTYPE_CODE[w.dtype], out, prep, flags, x, T, K, w: wp, xStride, outStride }, N, 16, maxThreads, bank);
    } finally {
      heap.release(mark);
    }
  }

  /**
   * T tokens through G row blocks of w: out[t*outStride + g*og + n] = sum_k x[t*xStride + g*xg + k] * W[row0 + g*gs + n, k]
   * for t < T, g < G, n < N (K = w.cols). Groups are split across threads; each group is the dtype's product of T
   * rows (T > 1: one pass over the group's weight rows for all T tokens).
   */
  linearGrouped(out: number, x: number, G: number, K: number, w: WasmWeight, N: number, xg: number, og: number, row0 = 0, gs = N, T = 1, xStride = 0, outStride = 0): void {
    if (K !== w.cols || row0 < 0 || row0 + (G - 1) * gs + N > w.rows) throw new MlaError(`linearGrouped: ${G} groups of ${N}x${K} (row0 ${row0}, stride ${gs}) do not fit the weight's ${w.rows}x${w.cols}`);
    if (K % wasmKMultiple(w.dtype) !== 0) throw new MlaError(`linearGrouped: K=${K} must be a multiple of ${wasmKMultiple(w.dtype)} for ${w.dtype}`);
    if (G <= 0 || N <= 0 || T <= 0) return;
    const bank = w.bank ?? 0;
    this.ensureScratch(T === 1 ? 16 * K + 64 : this.kernels.linear_scratch(K), bank);
    const maxThreads = G * N * K * T >= this.minWork ? this.threads : 1;
    this.pool.run(KERNEL.linear_grouped, { dt: DTYPE_CODE[w.dtype], out, x, T, K, w: w.ptr, scales: w.scalesPtr, N, row0, gs, xg, og, xStride, outStride }, G, 1, maxThreads, bank);
  }

  /** RMSNorm of T rows of width D with f32 weights at w: out = w * x / sqrt(mean(x^2) + eps). out may alias x. */
  rmsnorm(out: number, x: number, T: number, D: number, w: number, eps: number, xStride = D, outStride = D): void {
    const maxThreads = T * D >= this.minWork ? this.threads : 1;
    this.pool.run(KERNEL.rmsnorm, { out, x, D, w, eps, xStride, outStride }, T, 1, maxThreads);
  }

  /** out[i] = silu(gate[i]) * up[i], i < n. */
  siluMul(out: number, gate: number, up: number, n: number): void {
    const maxThreads = n >= this.minWork ? this.threads : 1;
    this.pool.run(KERNEL.silu_mul, { out, gate, up }, n, 16, maxThreads);
  }

  /** Causal softmax of the T score rows of s ([T, Lp]): row t keeps its first (first + t + 1) entries, the rest become 0. */
  softmaxCausal(s: number, T: number, Lp: number, first: number): void {
    const maxThreads = T * Lp >= this.minWork ? this.threads : 1;
    this.pool.run(KERNEL.softmax_causal, { s, Lp, first }, T, 1, maxThreads);
  }

  /** In-place softmax of x[0..n). */
  softmax(x: number, n: number): void {
    this.kernels.softmax(x, n);
  }

  /**
   * Absorbed-MLA attention for one query token over the L cached latent rows (all of them visible):
   *   out[h] = sum_s softmax_s(scale * q[h] . row_s) * row_s[:dc],  h < H
   * q [H, w] and out [H, dc] contiguous; row s of the cache at cache + s * cStride * (4, or 2 for an F16/BF16 cache)
   * is [c_KV (dc) | k_rope].
   * Requires w % 4 == 0 and dc % 4 == 0. Heads are split across threads, 4 at a time.
   */
  attendLatent(out: number, q: number, H: number, cache: number, L: number, w: number, dc: number, scale: number, cStride = w, dtype: CacheDType = "F32"): void {
    if (w % 4 !== 0 || dc % 4 !== 0 || dc > w) throw new MlaError(`attendLatent: needs w % 4 == 0, dc % 4 == 0, dc <= w (w=${w}, dc=${dc})`);
    if (L <= 0) throw new MlaError("attendLatent: empty cache");
    const maxThreads = H * L * w >= this.minWork ? this.threads : 1;
    if (dtype === "F32") {
      this.ensureScratch(this.kernels.attend_latent_scratch(H, dc));
      this.pool.run(KERNEL.attend_latent, { out, q, cache, L, w, dc, cStride, scale }, H, 4, maxThreads);
    } else {
      this.ensureScratch(this.kernels.attend_latent_16_scratch(H, dc, w));
      this.pool.run(KERNEL.attend_latent_16, { out, q, cache, L, w, dc, cStride, scale, dt: CACHE_DT[dtype] }, H, 4, maxThreads);
    }
  }

  /**
   * attendLatent for n sequences in one call, each with one query token and its own cache: q [n, H, w], out
   * [n, H, dc]; `table` points at n triples of i32 (cache pointer, rows L >= 1, row stride in floats). Sequences are
   * split across threads; each is computed exactly as attendLatent computes it alone.
   */
  attendLatentMany(out: number, q: number, n: number, H: number, table: number, w: number, dc: number, scale: number, totalRows: number, dtype: CacheDType = "F32"): void {
    if (w % 4 !== 0 || dc % 4 !== 0 || dc > w) throw new MlaError(`attendLatentMany: needs w % 4 == 0, dc % 4 == 0, dc <= w (w=${w}, dc=${dc})`);
    if (n <= 0) return;
    const maxThreads = H * totalRows * w >= this.minWork ? this.threads : 1;
    if (dtype === "F32") {
      this.ensureScratch(this.kernels.attend_latent_scratch(H, dc));
      this.pool.run(KERNEL.attend_latent_many, { out, q, table, H, w, dc, scale }, n, 1, maxThreads);
    } else {
      this.ensureScratch(this.kernels.attend_latent_16_scratch(H, dc, w));
      this.pool.run(KERNEL.attend_latent_many_16, { out, q, table, H, w, dc, scale, dt: CACHE_DT[dtype] }, n, 1, maxThreads);
    }
  }

  /**
   * One query token against L cached positions with per-head keys and values (MHA, GQA, MQA):
   *   out[h] = sum_s softmax_s(scale * q[h] . K[s, g]) V[s, g],  g = h / (H / Hkv)
   * K row s of group g at k + (s*kRow + g*kHead)*4, V likewise; q [H, dk], out [H, dv]. dk, dv multiples of 4.
   */
  attendHeads(out: number, q: number, H: number, dk: number, k: number, kRow: number, kHead: number, v: number, vRow: number, vHead: number, dv: number, Hkv: number, L: number, scale: number): void {
    if (dk % 4 !== 0 || dv % 4 !== 0) throw new MlaError(`attendHeads: needs dk % 4 == 0 and dv % 4 == 0 (dk=${dk}, dv=${dv})`);
    if (L <= 0 || H % Hkv !== 0) throw new MlaError(`attendHeads: bad shapes (L=${L}, H=${H}, Hkv=${Hkv})`);
    this.ensureScratch(this.kernels.attend_heads_scratch(L));
    const maxThreads = H * L * (dk + dv) >= this.minWork ? this.threads : 1;
    this.pool.run(KERNEL.attend_heads, { out, q, k, v, L, dk, dv, kRow, vRow, kHead, vHead, group: H / Hkv, scale }, H, 1, maxThreads);
  }

  /** Stop the worker threads. The memory stays usable from this thread. */
  async close(): Promise<void> {
    await this.pool.close();
  }
}

function matShape(t: Tensor): [number, number] {
  if (t.shape.length === 1) return [1, t.shape[0]];
  if (t.shape.length !== 2) throw new MlaError(`expected a matrix, got shape [${t.shape.join(", ")}]`);
  return [t.shape[0], t.shape[1]];
}
