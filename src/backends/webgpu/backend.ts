/**
 * The WebGPU backend: weights uploaded once in their stored precision, activation buffers owned by the caller, and
 * a `Pass` that records a whole step's kernels into one command encoder and submits them together (a dispatch costs
 * microseconds, a submit-and-wait round trip a hundred or more).
 *
 * Each dispatch's sizes go into its own 256-byte slot of one uniform buffer, written once per submit. A kernel's
 * sizes are passed by name and laid out by the kernel's parameter layout (params.ts), the same one its WGSL reads.
 */
import { MlaError } from "../../errors.js";
import type { Tensor } from "../../tensor/tensor.js";
import { f32ToF16 } from "../../tensor/dtype.js";
import { ggmlRowBytes } from "../../tensor/ggml.js";
import { requestGpu, type GpuContext } from "./device.js";
import { PARAM_WORDS, type Kernel, type ParamFields, type ParamLayout, type ParamValues, type ParamsOf } from "./params.js";
import * as shaders from "./wgsl.js";
import * as mlaShaders from "./wgsl-mla.js";
import { cacheRowElems, type CacheDType } from "./wgsl-mla.js";
import type { WeightType } from "./wgsl.js";

/** Most experts the routing kernel ranks per token (a model with more routes on the CPU). */
export const MAX_GPU_ROUTED_EXPERTS = shaders.MAX_EXPERTS;

/** Float bits for a params word, for shaders that read raw words (Pass.dispatch's positional form). */
export { f32bits } from "./params.js";

/** How tokens choose experts: the fields of the model layer's RouterSpec that the routing kernel reads. */
export interface RoutingDescription {
  readonly scoring: "softmax" | "sigmoid";
  readonly experts: number;
  readonly topK: number;
  readonly groups: number;
  readonly topGroups: number;
  readonly groupScore: "max" | "top2";
  readonly normalize: boolean;
  readonly scaling: number;
}

/** Rows [row0, row0 + rows) of a weight matrix, held from byte 0 of `buffer`. */
export interface GpuWeightPart {
  readonly buffer: GPUBuffer;
  readonly row0: number;
  readonly rows: number;
}

/**
 * A weight matrix on the GPU in its stored type (BF16/F16 packed two per u32, GGML's blocks as their bytes). It is one
 * part unless it exceeds the device's binding limit (or the backend's maxBufferBytes): then parts of whole rows (whole
 * experts for stacked ones), each its own buffer. Every kernel taking a GpuWeight loops over the parts itself.
 */
export interface GpuWeight {
  readonly dtype: WeightType;
  readonly shape: readonly number[];
  readonly parts: readonly GpuWeightPart[];
}

export interface WebGpuOptions {
  /** Split weights into buffers of at most this many bytes (below the device's limit; tests split tiny weights). */
  readonly maxBufferBytes?: number;
}

const SLOT = 256; // minUniformBufferOffsetAlignment
const WORDS = PARAM_WORDS;

/**
 * Weights a buffer may hold at most: the kernels index weights (and a block type's bytes) with u32, so a part stays
 * under 2^32 elements and 4 GiB whatever the device allows.
 */
const MAX_PART_ELEMENTS = 2 ** 32 - 1;
const MAX_PART_BYTES = 2 ** 32 - 16;

/** The GPU type of a CPU weight dtype: as stored, CPU "Q8" (int8 and f32 scales kept apart) as Q8_0's blocks. */
function gpuWeightType(dtype: string): WeightType {
  switch (dtype) {
    case "F32": case "BF16": case "F16": case "Q4_0": case "Q5_0": case "Q4_K": case "Q5_K": case "Q6_K":
      return dtype;
    case "Q8":
      return "Q8_0";
  }
  throw new MlaError(`webgpu: weights of dtype ${dtype} are not supported (F32, BF16, F16, Q8, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K)`);
}

/** Bytes of a row of `cols` weights of GPU type t. */
function weightRowBytes(t: WeightType, cols: number): number {
  return t === "F32" ? 4 * cols : t === "BF16" || t === "F16" ? 2 * cols : ggmlRowBytes(t, cols);
}

/** Bytes `rows` rows of `cols` weights of a CPU dtype take on the GPU (what uploadWeight writes; Q8 as Q8_0). */
export function gpuWeightBytes(dtype: string, rows: number, cols: number): number {
  return rows * weightRowBytes(gpuWeightType(dtype), cols);
}

/** A weight's rows and columns (a vector is one row). */
function rowsCols(t: Tensor): [number, number] {
  const cols = t.shape.length ? t.shape[t.shape.length - 1] : 1;
  return [cols ? t.shape.reduce((a, b) => a * b, 1) / cols : 0, cols];
}

/** Staging for writes that are not 4-byte aligned or need converting (writeBuffer copies it during the call). */
const STAGE_BYTES = 1 << 20;
/** A direct write goes in pieces of this size, so Dawn's own staging copy stays bounded. */
const DIRECT_BYTES = 16 << 20;

/**
 * Writes a stream of bytes to consecutive offsets of one buffer. queue.writeBuffer wants 4-byte-aligned sizes and
 * source offsets: 4-aligned runs of ArrayBuffer memory go directly, the rest through a small staging array, so no
 * second host copy of a tensor is ever made.
 */
class BufferFiller {
  private at = 0;
  private fill = 0;

  constructor(private readonly queue: GPUQueue, private readonly dst: GPUBuffer, private readonly stage: Uint8Array<ArrayBuffer>) {}

  push(src: Uint8Array): void {
    let i = 0;
    if (this.fill === 0 && src.byteOffset % 4 === 0 && src.buffer instanceof ArrayBuffer) {
      const n = src.byteLength - (src.byteLength % 4);
      for (; i < n; i += DIRECT_BYTES) this.queue.writeBuffer(this.dst, this.at + i, src as Uint8Array<ArrayBuffer>, i, Math.min(DIRECT_BYTES, n - i));
      this.at += n;
      i = n;
    }
    while (i < src.byteLength) {
      const m = Math.min(this.stage.length - this.fill, src.byteLength - i);
      this.stage.set(src.subarray(i, i + m), this.fill);
      this.fill += m;
      i += m;
      if (this.fill === this.stage.length) this.flush();
    }
  }

  /** Write what is staged (zero-padded to 4 bytes at the end of the stream). */
  flush(): void {
    if (!this.fill) return;
    const n = Math.ceil(this.fill / 4) * 4;
    this.stage.fill(0, this.fill, n);
    this.queue.writeBuffer(this.dst, this.at, this.stage, 0, n);
    this.at += n;
    this.fill = 0;
  }
}

/**
 * Rows [r0, r0 + rows) of a CPU "Q8" matrix (int8 and f32 scales apart) as GGML Q8_0 blocks (f16 d, 32 int8), in
 * out. Lossless: the scales are f16 values widened (see src/tensor/dtype.ts).
 */
function q8Blocks(t: Tensor, r0: number, rows: number, cols: number, out: Uint8Array): Uint8Array {
  const q = t.data as Int8Array, sc = t.scales!, nb = cols / 32;
  const src = new Uint8Array(q.buffer, q.byteOffset, q.byteLength);
  let o = 0;
  for (let b = r0 * nb; b < (r0 + rows) * nb; b++, o += 34) {
    const h = f32ToF16(sc[b]);
    out[o] = h & 255;
    out[o + 1] = h >> 8;
    out.set(src.subarray(b * 32, b * 32 + 32), o + 2);
  }
  return out.subarray(0, o);
}

/**
 * The words of a submit's uniform slots, reused from submit to submit (writeBuffer copies them during the call): a
 * fresh array per submit (80 KB for a decode step of ~300 dispatches) measured 25-180 us, more than the rest of
 * submit. Only the first WORDS of each slot are ever written; the rest stay zero.
 */
let slotWords = new Uint32Array(0);

interface Dispatch {
  readonly pipeline: GPUComputePipeline;
  readonly buffers: readonly GPUBuffer[];
  /** The layout that writes `params`; null for raw words. */
  readonly layout: ParamLayout<ParamFields>;
  readonly params: ParamValues<ParamFields>;
  readonly groups: readonly [number, number, number];
}

/** Kernels recorded for one submission. */
export class Pass {
  private readonly list: Dispatch[] = [];
  private readonly copies: { src: GPUBuffer; dst: GPUBuffer; bytes: number; srcOffset: number }[] = [];

  constructor(readonly gpu: WebGpuBackend) {}

  /**
   * Record kernel `kernel` (its pipeline cached under `key`) on `buffers` (bindings 1..) with its parameters by name,
   * over `groups` workgroups.
   */
  dispatch<F extends ParamFields>(key: string, kernel: Kernel<F>, buffers: readonly GPUBuffer[], params: NoInfer<ParamValues<F>>, groups: readonly [number, number, number]): void {
    if (groups.some((g) => g > 65535)) throw new MlaError(`webgpu: dispatch of ${groups.join("x")} workgroups for ${key} exceeds the 65535 limit`);
    if (groups.some((g) => g === 0)) return;
    const pipeline = this.gpu.pipeline(key, kernel.source);
    this.list.push({ pipeline, buffers, layout: kernel.params as unknown as ParamLayout<ParamFields>, params: params as ParamValues<ParamFields>, groups });
  }

  /** Copy to a mappable buffer after the kernels (readback). */
  copy(src: GPUBuffer, dst: GPUBuffer, bytes: number, srcOffset = 0): void {
    this.copies.push({ src, dst, bytes, srcOffset });
  }

  get size(): number {
    return this.list.length;
  }

  submit(): void {
    const g = this.gpu, dev = g.device;
    const n = (this.list.length * SLOT) / 4;
    const uni = g.uniforms(n * 4);
    if (slotWords.length < n) slotWords = new Uint32Array(Math.max(n, 2 * slotWords.length));
    const data = slotWords;
    this.list.forEach((d, i) => {
      const at = (i * SLOT) / 4;
      d.layout.write(d.params, data, at);
      data.fill(0, at + d.layout.names.length, at + WORDS); // as in a fresh array, whatever an earlier submit left there
    });
    if (n) dev.queue.writeBuffer(uni, 0, data, 0, n);
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    this.list.forEach((d, i) => {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, g.bindGroup(d.pipeline, uni, i * SLOT, d.buffers));
      pass.dispatchWorkgroups(d.groups[0], d.groups[1], d.groups[2]);
    });
    pass.end();
    for (const c of this.copies) enc.copyBufferToBuffer(c.src, c.srcOffset, c.dst, 0, c.bytes);
    dev.queue.submit([enc.finish()]);
    this.list.length = 0;
    this.copies.length = 0;
  }
}

export class WebGpuBackend {
  readonly device: GPUDevice;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private uniformBuffer: GPUBuffer | null = null;
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 1;
  private staging: GPUBuffer | null = null;
  private readonly dummy: GPUBuffer;
  private readonly stage = new Uint8Array(STAGE_BYTES);
  /** Largest bytes of one weight buffer: the device's binding and buffer limits, or maxBufferBytes when lower. */
  readonly maxWeightBytes: number;
  /** Bytes of GPU buffers created through this backend and not yet destroyed. */
  allocatedBytes = 0;

  /** The first validation/out-of-memory error the device reported; thrown at the next read. */
  private deviceError: string | null = null;

  private constructor(readonly ctx: GpuContext, opts: WebGpuOptions) {
    this.device = ctx.device;
    const { maxStorageBufferBindingSize, maxBufferSize } = ctx.limits;
    const limit = Math.min(maxStorageBufferBindingSize, maxBufferSize, MAX_PART_BYTES, opts.maxBufferBytes ?? Infinity);
    this.maxWeightBytes = Math.floor(limit / 16) * 16;
    this.dummy = this.buffer(16);
    // a failed pipeline or dispatch is otherwise silent: the kernels would just not run
    this.device.onuncapturederror = (e) => {
      this.deviceError ??= e.error.message;
    };
  }

  private checkErrors(): void {
    if (this.deviceError) throw new MlaError(`webgpu: the device reported an error: ${this.deviceError}`);
  }

  static async create(opts: WebGpuOptions = {}): Promise<WebGpuBackend> {
    if (opts.maxBufferBytes !== undefined && !(opts.maxBufferBytes >= 16)) throw new MlaError(`webgpu: maxBufferBytes must be at least 16, got ${opts.maxBufferBytes}`);
    return new WebGpuBackend(await requestGpu(), opts);
  }

  get name(): string {
    return `webgpu (${this.ctx.adapterInfo})`;
  }

  /** A 16-byte storage buffer for unused bindings. */
  get empty(): GPUBuffer {
    return this.dummy;
  }

  /**
   * The bind group of a dispatch, cached: a decode step repeats the same kernels on the same buffers at the same
   * uniform slots, so after the first token no bind group is created (each costs microseconds of CPU time).
   */
  bindGroup(pipeline: GPUComputePipeline, uniforms: GPUBuffer, offset: number, buffers: readonly GPUBuffer[]): GPUBindGroup {
    const key = `${this.idOf(pipeline)}:${this.idOf(uniforms)}:${offset}:${buffers.map((b) => this.idOf(b)).join(",")}`;
    let bg = this.bindGroups.get(key);
    if (!bg) {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: uniforms, offset, size: WORDS * 4 } }];
      buffers.forEach((b, j) => entries.push({ binding: j + 1, resource: { buffer: b } }));
      bg = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
      if (this.bindGroups.size > 20000) this.bindGroups.clear(); // stale entries of released buffers
      this.bindGroups.set(key, bg);
    }
    return bg;
  }

  private idOf(o: object): number {
    let id = this.ids.get(o);
    if (id === undefined) this.ids.set(o, (id = this.nextId++));
    return id;
  }

  pipeline(key: string, source: () => string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code: source(), label: key });
      p = this.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" }, label: key });
      this.pipelines.set(key, p);
    }
    return p;
  }

  uniforms(bytes: number): GPUBuffer {
    if (!this.uniformBuffer || this.uniformBuffer.size < bytes) {
      this.uniformBuffer?.destroy();
      this.uniformBuffer = this.device.createBuffer({ size: Math.max(bytes, 64 * SLOT) * 2, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    }
    return this.uniformBuffer;
  }

  /** A storage buffer of at least `bytes` (rounded up to 16), zero-filled. */
  buffer(bytes: number, label?: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const limit = Math.min(this.ctx.limits.maxStorageBufferBindingSize, this.ctx.limits.maxBufferSize);
    if (size > limit) {
      throw new MlaError(`webgpu: a ${label ?? "buffer"} of ${size} bytes exceeds the device's storage binding limit (${limit} bytes)`);
    }
    this.allocatedBytes += size;
    return this.device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, label });
  }

  release(b: GPUBuffer): void {
    this.allocatedBytes -= b.size;
    const id = this.ids.get(b);
    if (id !== undefined) for (const k of this.bindGroups.keys()) if (k.split(":")[3].split(",").includes(String(id))) this.bindGroups.delete(k);
    b.destroy();
  }

  /** Release b once the work submitted so far has finished (a submission in flight may still use it). */
  releaseAfterQueue(b: GPUBuffer): void {
    this.device.queue.onSubmittedWorkDone().then(() => this.release(b), () => undefined);
  }

  write(b: GPUBuffer, data: Float32Array | Uint32Array | Uint16Array, offsetBytes = 0): void {
    // writeBuffer wants a multiple of 4 bytes
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength) as Uint8Array<ArrayBuffer>;
    if (bytes.byteLength % 4 === 0) this.device.queue.writeBuffer(b, offsetBytes, bytes);
    else {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.device.queue.writeBuffer(b, offsetBytes, padded);
    }
  }

  uploadF32(data: Float32Array, label?: string): GPUBuffer {
    const b = this.buffer(data.byteLength, label);
    this.write(b, data);
    return b;
  }

  /** Most rows of `cols` weights of type t one buffer holds. */
  private maxPartRows(t: WeightType, cols: number): number {
    return Math.min(Math.floor(this.maxWeightBytes / weightRowBytes(t, cols)), Math.floor(MAX_PART_ELEMENTS / Math.max(cols, 1)));
  }

  /** Write rows [r0, r0 + rows) of t (its GPU type `type`) through `f`: the bytes as stored, or Q8 as Q8_0 blocks. */
  private pushRows(f: BufferFiller, t: Tensor, type: WeightType, r0: number, rows: number, cols: number): void {
    const rb = weightRowBytes(type, cols);
    if (t.dtype !== "Q8") {
      f.push(new Uint8Array(t.data.buffer, t.data.byteOffset + r0 * rb, rows * rb));
      return;
    }
    const chunk = Math.max(1, Math.floor(STAGE_BYTES / rb));
    const out = new Uint8Array(Math.min(chunk, rows) * rb);
    for (let r = r0; r < r0 + rows; r += chunk) f.push(q8Blocks(t, r, Math.min(chunk, r0 + rows - r), cols, out));
  }

  /** A part's buffer, filled by `fill` (which pushes exactly `bytes` bytes). */
  private part(bytes: number, row0: number, rows: number, label: string | undefined, fill: (f: BufferFiller) => void): GpuWeightPart {
    const buffer = this.buffer(bytes, label);
    const f = new BufferFiller(this.device.queue, buffer, this.stage);
    fill(f);
    f.flush();
    return { buffer, row0, rows };
  }

  /**
   * Upload a weight tensor in its stored type (F32, BF16, F16, GGML's blocks; CPU "Q8" as Q8_0). It is written to
   * the GPU during the call, so the caller may drop the tensor after it. A tensor larger than one buffer may be
   * (maxWeightBytes) is split into parts of whole rows, as equal as can be.
   */
  uploadWeight(t: Tensor, label?: string): GpuWeight {
    const type = gpuWeightType(t.dtype), [rows, cols] = rowsCols(t), rb = weightRowBytes(type, cols);
    const maxRows = this.maxPartRows(type, cols);
    if (maxRows < 1) throw new MlaError(`webgpu: a row of ${label ?? "a weight"} (${rb} bytes) exceeds the ${this.maxWeightBytes}-byte buffer limit`);
    const n = Math.max(1, Math.ceil(rows / maxRows)), per = Math.ceil(rows / n);
    const parts: GpuWeightPart[] = [];
    for (let r0 = 0; r0 < rows || parts.length === 0; r0 += per) {
      const m = Math.min(per, rows - r0);
      parts.push(this.part(m * rb, r0, m, label, (f) => this.pushRows(f, t, type, r0, m, cols)));
    }
    return { dtype: type, shape: t.shape, parts };
  }

  /**
   * Matrices of one dtype and width stacked by rows (MoE experts, expert e's rows after those of experts < e). A stack
   * larger than one buffer is split between matrices, so each expert lies whole in one part (slotLinear reads an
   * expert from one buffer). Written during the call, as uploadWeight.
   */
  uploadStacked(ts: readonly Tensor[], label?: string): GpuWeight {
    const dtype = ts[0].dtype, cols = ts[0].shape[1];
    const type = gpuWeightType(dtype), rb = weightRowBytes(type, cols), maxRows = this.maxPartRows(type, cols);
    if (ts.some((t) => t.dtype !== dtype || t.shape[1] !== cols)) throw new MlaError("webgpu: stacked matrices differ in dtype or width");
    const big = ts.find((t) => t.shape[0] > maxRows);
    if (big) throw new MlaError(`webgpu: one of the stacked matrices ${label ?? ""} (${big.shape[0] * rb} bytes) exceeds the ${this.maxWeightBytes}-byte buffer limit`);
    const parts: GpuWeightPart[] = [];
    let row0 = 0;
    for (let i = 0; i < ts.length;) {
      let j = i, rows = 0;
      while (j < ts.length && rows + ts[j].shape[0] <= maxRows) rows += ts[j++].shape[0];
      const group = ts.slice(i, j);
      parts.push(this.part(rows * rb, row0, rows, label, (f) => { for (const t of group) this.pushRows(f, t, type, 0, t.shape[0], cols); }));
      row0 += rows;
      i = j;
    }
    return { dtype: type, shape: [row0, cols], parts };
  }

  /** Read `bytes` from a storage buffer (waits for the queue). */
  async read(src: GPUBuffer, bytes: number, srcOffset = 0): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    // one staging buffer, unmapped and kept: destroying a buffer right after its mapAsync resolved crashed Dawn
    // (npm webgpu 0.6) on SwiftShader
    if (!this.staging || this.staging.size < size) {
      this.staging?.destroy();
      this.staging = this.device.createBuffer({ size: Math.max(size, 1 << 16), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    }
    const dst = this.staging;
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(src, srcOffset, dst, 0, size);
    this.device.queue.submit([enc.finish()]);
    await dst.mapAsync(GPUMapMode.READ, 0, size);
    this.checkErrors();
    const out = dst.getMappedRange(0, size).slice(0, bytes);
    dst.unmap();
    return out;
  }

  async readF32(src: GPUBuffer, n: number, offset = 0): Promise<Float32Array> {
    return new Float32Array(await this.read(src, n * 4, offset * 4));
  }

  pass(): Pass {
    return new Pass(this);
  }

  destroy(): void {
    this.uniformBuffer?.destroy();
    this.dummy.destroy();
    this.device.destroy();
  }
}

/** One part's product (linear's dispatch): the decode kernels for T <= 4, else the tiled one. */
function linearPart(p: Pass, out: GPUBuffer, x: GPUBuffer, T: number, K: number, dtype: WeightType, w: GPUBuffer, params: ParamsOf<typeof shaders.LINEAR_PARAMS>): void {
  const N = params.N;
  if (T <= 4) {
    const wgs = Math.ceil(N / 4), groups = [Math.min(wgs, 65535), Math.ceil(wgs / 65535), 1] as const;
    // rows of a multiple of 8 weights start on 16-byte boundaries (32 for F32): wide loads; block types read by group
    if (K % 8 === 0 && !shaders.isBlockWeight(dtype)) p.dispatch(`matvec8-${dtype}`, shaders.matvecWide(dtype), [w, x, out], params, groups);
    else p.dispatch(`matvec-${dtype}`, shaders.matvec(dtype), [w, x, out], params, groups);
  } else {
    p.dispatch(`matmul-${dtype}`, shaders.matmulTiled(dtype), [w, x, out], params, [Math.ceil(N / shaders.MATMUL_TILE), Math.ceil(T / shaders.MATMUL_TILE), 1]);
  }
}

/**
 * kv_b_proj (W_UK and W_UV) for the absorbed kernels, which read it from one buffer: it is H (d_nope + d_v) x d_c,
 * 32 MiB in BF16 for DeepSeek-V3, so a split one means a buffer limit far below any real device's.
 */
function wholeKvb(w: GpuWeight): GPUBuffer {
  if (w.parts.length !== 1) {
    const bytes = w.parts.reduce((a, q) => a + q.buffer.size, 0);
    throw new MlaError(`webgpu: kv_b_proj (W_UK/W_UV, ${bytes} bytes) is split across ${w.parts.length} buffers, and absorbed MLA reads it from one; it is at most tens of MiB in real models (32 MiB in BF16 for DeepSeek-V3), so the buffer limit is set too low`);
  }
  return w.parts[0].buffer;
}

/** The kernels as typed calls on a Pass (sizes in elements; offsets in f32 elements). */
export const kernels = {
  /**
   * out[t*os + oo + n] (+)= sum_k x[xo + t*xs + k] W[(row0+n)*K + k]; one dispatch per part of w that holds some of
   * rows row0..row0+N, each writing its rows' outputs.
   */
  linear(p: Pass, out: GPUBuffer, x: GPUBuffer, T: number, K: number, w: GpuWeight, N: number,
    o: { row0?: number; xs?: number; os?: number; xo?: number; oo?: number; accumulate?: boolean } = {}): void {
    const row0 = o.row0 ?? 0, oo = o.oo ?? 0;
    for (const part of w.parts) {
      const lo = Math.max(row0, part.row0), hi = Math.min(row0 + N, part.row0 + part.rows);
      if (lo >= hi) continue;
      linearPart(p, out, x, T, K, w.dtype, part.buffer, {
        T, K, N: hi - lo, row0: lo - part.row0, xs: o.xs ?? K, os: o.os ?? N, xo: o.xo ?? 0, oo: oo + lo - row0, accumulate: !!o.accumulate,
      });
    }
  },
  rmsNorm(p: Pass, out: GPUBuffer, x: GPUBuffer, T: number, D: number, w: GPUBuffer, eps: number,
    o: { xs?: number; os?: number; xo?: number; oo?: number } = {}): void {
    p.dispatch("rmsnorm", shaders.RMSNORM, [x, w, out], { T, D, xs: o.xs ?? D, os: o.os ?? D, xo: o.xo ?? 0, oo: o.oo ?? 0, eps }, [T, 1, 1]);
  },
  /** In place; cs = T rows of [cos d/2 | sin d/2]. */
  rope(p: Pass, x: GPUBuffer, cs: GPUBuffer, T: number, heads: number, d: number, offset: number, rowStride: number, headStride: number, halves: boolean, xo = 0): void {
    p.dispatch("rope", shaders.ROPE, [x, cs], { T, heads, d, offset, rowStride, headStride, xo, halves }, [Math.ceil(d / 2 / 64), heads, T]);
  },
  siluMul(p: Pass, out: GPUBuffer, g: GPUBuffer, u: GPUBuffer, T: number, F: number, o: { gs?: number; us?: number; os?: number; go?: number; uo?: number } = {}): void {
    p.dispatch("silumul", shaders.SILU_MUL, [g, u, out], { T, F, gs: o.gs ?? F, us: o.us ?? F, os: o.os ?? F, go: o.go ?? 0, uo: o.uo ?? 0 }, [Math.ceil(F / 64), T, 1]);
  },
  /** h[t] += sum_j wt[t k + j] y[t k + j] over each token's k slots (MoE decode, no write conflicts). */
  moeCombine(p: Pass, h: GPUBuffer, y: GPUBuffer, wt: GPUBuffer, T: number, D: number, k: number): void {
    p.dispatch("moe-combine", shaders.MOE_COMBINE, [h, y, wt], { T, D, k }, [Math.ceil(D / 64), T, 1]);
  },
  /**
   * y[row] += a x[t] (rows in order), or y[idx[i0+t]] += wt[i0+t] x[t] when idx/wt are given; indexed rows must be
   * distinct within one call (invocations of the same row would race).
   */
  axpy(p: Pass, y: GPUBuffer, x: GPUBuffer, T: number, D: number, a = 1, idx?: GPUBuffer, wt?: GPUBuffer, i0 = 0): void {
    const e = p.gpu.empty;
    p.dispatch("axpy", shaders.AXPY, [y, x, idx ?? e, wt ?? e], { T, D, indexed: !!idx, a, i0 }, [Math.ceil(D / 64), T, 1]);
  },
  gather(p: Pass, out: GPUBuffer, x: GPUBuffer, idx: GPUBuffer, T: number, D: number, i0 = 0): void {
    p.dispatch("gather", shaders.GATHER, [x, idx, out], { T, D, i0 }, [Math.ceil(D / 64), T, 1]);
  },
  /** y[t*D + i] *= a, in place on T rows of D. */
  scale(p: Pass, y: GPUBuffer, T: number, D: number, a: number): void {
    p.dispatch("scale", shaders.SCALE, [y], { T, D, a }, [Math.ceil(D / 64), T, 1]);
  },
  /** y[yo + t*ys + i] += b[i], i < N. */
  bias(p: Pass, y: GPUBuffer, b: GPUBuffer, T: number, N: number, ys = N, yo = 0): void {
    p.dispatch("bias", shaders.BIAS, [y, b], { T, N, ys, yo }, [Math.ceil(N / 64), T, 1]);
  },
  copyRows(p: Pass, out: GPUBuffer, x: GPUBuffer, T: number, n: number, xs: number, xc: number, os: number, oc: number, o0: number): void {
    p.dispatch("copyrows", shaders.COPY_ROWS, [x, out], { T, n, xs, xc, os, oc, o0 }, [Math.ceil(n / 64), T, 1]);
  },
  /** out[t, :] = row ids[t] of w, widened: each part writes the tokens whose row it holds. */
  embed(p: Pass, out: GPUBuffer, w: GpuWeight, ids: GPUBuffer, T: number, D: number): void {
    for (const part of w.parts) {
      p.dispatch(`embed-${w.dtype}`, shaders.embed(w.dtype), [part.buffer, ids, out], { T, D, r0: part.row0, rows: part.rows }, [Math.ceil(D / 64), T, 1]);
    }
  },
  absorbQuery(p: Pass, qc: GPUBuffer, q: GPUBuffer, kvb: GpuWeight, T: number, H: number, dn: number, dv: number, dc: number, dqk: number): void {
    p.dispatch(`absorbq-${kvb.dtype}`, shaders.absorbQuery(kvb.dtype), [wholeKvb(kvb), q, qc], { T, H, dn, dv, dc, dqk }, [Math.ceil(dc / 64), H, T]);
  },
  absorbOutput(p: Pass, ov: GPUBuffer, lat: GPUBuffer, kvb: GpuWeight, T: number, H: number, dn: number, dv: number, dc: number): void {
    p.dispatch(`absorbo-${kvb.dtype}`, shaders.absorbOutput(kvb.dtype), [wholeKvb(kvb), lat, ov], { T, H, dn, dv, dc }, [dv, H, T]);
  },
  /** Partial results need T * nSplit * H * (dc + 2) floats in part/ml. */
  /**
   * Partial results need T * nSplit * H * (dc + 2) floats in part/ml. The queries are rows t0.. of qc and q; the
   * cache holds rows of dc + dr values as `cache` says (F32, or F16/BF16 words: wgsl-mla.ts).
   */
  latentAttend(p: Pass, part: GPUBuffer, ml: GPUBuffer, qc: GPUBuffer, q: GPUBuffer, cache: GPUBuffer,
    T: number, H: number, dc: number, dr: number, dqk: number, dn: number, p0: number, chunk: number, nSplit: number, scale: number,
    o: { t0?: number; cache?: CacheDType } = {}): void {
    const tiles = shaders.latentTiles(dc + dr, p.gpu.device.limits.maxComputeWorkgroupStorageSize), ct = o.cache ?? "F32";
    p.dispatch(`latent-${dc}-${dr}-${ct}`, shaders.latentAttend(dc, dr, tiles, ct), [qc, q, cache, part, ml],
      { T, H, dc, dr, dqk, dn, p0, chunk, nSplit, scale, t0: o.t0 ?? 0 }, [nSplit, Math.ceil(H / tiles.HG), T]);
  },
  /** Merge nSplit partial results into rows t0.. of lat (the naive form's chunks too, with dc = d_v). */
  latentCombine(p: Pass, lat: GPUBuffer, part: GPUBuffer, ml: GPUBuffer, T: number, H: number, dc: number, nSplit: number, t0 = 0): void {
    p.dispatch("latent-combine", shaders.LATENT_COMBINE, [part, ml, lat], { T, H, dc, nSplit, t0 }, [Math.ceil(dc / 64), H, T]);
  },
  /**
   * window 0: full causal attention; W > 0: each token sees its last W positions. The caches hold F32 rows of G dk
   * and G dv values, or 16-bit rows of o.ks and o.vs values (the width rounded up to even: cacheRowElems).
   */
  gqaAttend(p: Pass, o: GPUBuffer, q: GPUBuffer, k: GPUBuffer, v: GPUBuffer, T: number, H: number, G: number, dk: number, dv: number, p0: number, scale: number, window = 0,
    c: { cache?: CacheDType } = {}): void {
    if (dv > 256) throw new MlaError(`webgpu: value heads wider than 256 (${dv}) are not supported`);
    const ct = c.cache ?? "F32";
    p.dispatch(`gqa-${ct}`, shaders.gqaAttend(ct), [q, k, v, o],
      { T, H, G, dk, dv, p0, scale, window, ks: cacheRowElems(G * dk, ct), vs: cacheRowElems(G * dv, ct) }, [H, T, 1]);
  },
  /**
   * Each of T tokens' k experts and weights from its router logits, as the model's router description says (the
   * same description the CPU router reads: see RouterSpec in src/model/router.ts; declared structurally here, since
   * kernels know nothing of models). The shader's method: 0 sigmoid with group-limited top-k by the sum of each
   * group's two best choices (DeepSeek-V3), 1 softmax top-k, 2 softmax limited to the groups with the best max.
   */
  route(p: Pass, experts: GPUBuffer, weights: GPUBuffer, logits: GPUBuffer, bias: GPUBuffer | null, T: number, r: RoutingDescription): void {
    if (r.experts > shaders.MAX_EXPERTS) throw new MlaError(`webgpu: MoE routing holds at most ${shaders.MAX_EXPERTS} experts per token, the model has ${r.experts}`);
    if (r.scoring === "sigmoid" ? r.groupScore !== "top2" : r.groupScore !== "max" && r.topGroups < r.groups) {
      throw new MlaError(`webgpu: no routing kernel ranks ${r.scoring} groups by ${r.groupScore}`);
    }
    const method = r.scoring === "sigmoid" ? 0 : r.topGroups < r.groups ? 2 : 1;
    p.dispatch("route", shaders.ROUTE, [logits, bias ?? p.gpu.empty, experts, weights],
      { T, E: r.experts, k: r.topK, nGroup: r.groups, topkGroup: r.topGroups, method, norm: r.normalize, scaling: r.scaling, hasBias: !!bias },
      [Math.ceil(T / 64), 1, 1]);
  },
  /** out[s, n] = x[s / xdiv] . W[(expert[s] * R + n)]: S slots through their experts' rows of a stacked weight. */
  slotLinear(p: Pass, out: GPUBuffer, x: GPUBuffer, experts: GPUBuffer, slots: number, K: number, w: GpuWeight, N: number, R: number, xdiv: number): void {
    const split = w.parts.length > 1;
    for (const part of w.parts) {
      if (split && (part.row0 % R || part.rows % R)) throw new MlaError(`webgpu: a split expert weight must hold whole experts of ${R} rows per buffer (upload it with uploadStacked)`);
      // one part: every expert id is in range (e1 = u32 max)
      const e0 = split ? part.row0 / R : 0, e1 = split ? (part.row0 + part.rows) / R : 0xffffffff;
      p.dispatch(`slotmv-${w.dtype}`, shaders.slotMatvec(w.dtype), [part.buffer, x, experts, out], { S: slots, K, N, R, xdiv, e0, e1 }, [Math.ceil(N / 4), slots, 1]);
    }
  },
  argmax(p: Pass, out: GPUBuffer, x: GPUBuffer, N: number): void {
    p.dispatch("argmax", shaders.ARGMAX, [x, out], { N }, [1, 1, 1]);
  },
  /**
   * Rows [xo + t*xs, + n) of x (f32, t < T) rounded into rows o0 + t of a 16-bit cache whose stored rows hold
   * cacheRowElems(n) values: one invocation per u32 word, so no two write one word.
   */
  packRows(p: Pass, cache: GPUBuffer, x: GPUBuffer, T: number, n: number, xs: number, xo: number, o0: number, t: "F16" | "BF16"): void {
    const ws = cacheRowElems(n, t) / 2;
    p.dispatch(`pack-${t}`, mlaShaders.packRows(t), [x, cache], { T, n, xs, xo, ws, o0 }, [Math.ceil(ws / 64), T, 1]);
  },
  /** out[t*os + i] = value i of cache row r0 + t widened (i < n; stored rows of cacheRowElems(n) values). */
  unpackRows(p: Pass, out: GPUBuffer, cache: GPUBuffer, T: number, n: number, r0: number, os: number, t: CacheDType): void {
    p.dispatch(`unpack-${t}`, mlaShaders.unpackRows(t), [cache, out], { T, n, rs: cacheRowElems(n, t), r0, os }, [Math.ceil(n / 64), T, 1]);
  },
  /**
   * Naive MLA attention of T queries (rows t0.. of q [*, H, dn + dr], positions p0..) over the n cached positions
   * s0.. of one chunk: per position r of the chunk [k_nope | v] per head in kv (r*H + h)*(dn + dv), k_rope at
   * lat[ko + r*ls]. With o.out the chunk is the whole cache and rows t0.. of out [*, H, dv] get the result; with
   * o.part/o.ml it is split `split` of nSplit, merged afterwards by latentCombine.
   */
  naiveAttend(p: Pass, q: GPUBuffer, kv: GPUBuffer, lat: GPUBuffer, T: number, H: number, dn: number, dr: number, dv: number,
    o: { t0: number; p0: number; s0: number; n: number; ko: number; ls: number; scale: number } &
      ({ out: GPUBuffer } | { part: GPUBuffer; ml: GPUBuffer; split: number; nSplit: number })): void {
    const tiles = mlaShaders.naiveTiles(dn + dr, dv, p.gpu.device.limits.maxComputeWorkgroupStorageSize);
    const direct = "out" in o;
    const [out, ml] = direct ? [o.out, p.gpu.empty] : [o.part, o.ml];
    p.dispatch(`naive-${dn}-${dr}-${dv}`, mlaShaders.naiveAttend(dn, dr, dv, tiles), [q, kv, lat, out, ml],
      { T, H, ko: o.ko, ls: o.ls, t0: o.t0, p0: o.p0, s0: o.s0, n: o.n, scale: o.scale, split: direct ? 0 : o.split, nSplit: direct ? 1 : o.nSplit, direct },
      [Math.ceil(T / tiles.TQ), H, 1]);
  },
};
