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
import { requestGpu, type GpuContext } from "./device.js";
import { PARAM_WORDS, type Kernel, type ParamFields, type ParamLayout, type ParamValues, type ParamsOf } from "./params.js";
import * as shaders from "./wgsl.js";
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

/** A weight matrix or vector on the GPU, in its stored dtype (BF16/F16 packed two per u32). */
export interface GpuWeight {
  readonly buffer: GPUBuffer;
  readonly dtype: WeightType;
  readonly shape: readonly number[];
}

const SLOT = 256; // minUniformBufferOffsetAlignment
const WORDS = PARAM_WORDS;

/** The weight dtypes the shaders widen (WeightType); Q8 and others are refused. */
function checkWeightDtype(dtype: string): asserts dtype is WeightType {
  if (dtype !== "F32" && dtype !== "BF16" && dtype !== "F16") {
    throw new MlaError(`webgpu: weights of dtype ${dtype} are not supported (F32, BF16, F16; --quantize is CPU-only)`);
  }
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
  /** Bytes of GPU buffers created through this backend and not yet destroyed. */
  allocatedBytes = 0;

  /** The first validation/out-of-memory error the device reported; thrown at the next read. */
  private deviceError: string | null = null;

  private constructor(readonly ctx: GpuContext) {
    this.device = ctx.device;
    this.dummy = this.buffer(16);
    // a failed pipeline or dispatch is otherwise silent: the kernels would just not run
    this.device.onuncapturederror = (e) => {
      this.deviceError ??= e.error.message;
    };
  }

  private checkErrors(): void {
    if (this.deviceError) throw new MlaError(`webgpu: the device reported an error: ${this.deviceError}`);
  }

  static async create(): Promise<WebGpuBackend> {
    return new WebGpuBackend(await requestGpu());
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
    if (size > this.ctx.limits.maxStorageBufferBindingSize) {
      throw new MlaError(`webgpu: a ${label ?? "buffer"} of ${size} bytes exceeds the device's storage binding limit (${this.ctx.limits.maxStorageBufferBindingSize} bytes)`);
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

  /** Upload a weight tensor as stored (F32, BF16, F16); Q8 and other dtypes are refused. */
  uploadWeight(t: Tensor, label?: string): GpuWeight {
    checkWeightDtype(t.dtype);
    const buffer = this.buffer(t.data.byteLength, label);
    this.write(buffer, t.data as Float32Array | Uint16Array);
    return { buffer, dtype: t.dtype, shape: t.shape };
  }

  /** Matrices of one dtype and width stacked by rows into one buffer (MoE experts, indexed by row offset). */
  uploadStacked(ts: readonly Tensor[], label?: string): GpuWeight {
    const dtype = ts[0].dtype, cols = ts[0].shape[1];
    checkWeightDtype(dtype);
    if (ts.some((t) => t.dtype !== dtype || t.shape[1] !== cols)) throw new MlaError("webgpu: stacked matrices differ in dtype or width");
    const bytes = ts.reduce((a, t) => a + t.data.byteLength, 0);
    const buffer = this.buffer(bytes, label);
    let off = 0;
    for (const t of ts) {
      if (off % 4 !== 0) throw new MlaError("webgpu: stacked matrices must each fill whole 4-byte words");
      this.write(buffer, t.data as Float32Array | Uint16Array, off);
      off += t.data.byteLength;
    }
    return { buffer, dtype, shape: [ts.reduce((a, t) => a + t.shape[0], 0), cols] };
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

/** The kernels as typed calls on a Pass (sizes in elements; offsets in f32 elements). */
export const kernels = {
  /** out[t*os + oo + n] (+)= sum_k x[xo + t*xs + k] W[(row0+n)*K + k] */
  linear(p: Pass, out: GPUBuffer, x: GPUBuffer, T: number, K: number, w: GpuWeight, N: number,
    o: { row0?: number; xs?: number; os?: number; xo?: number; oo?: number; accumulate?: boolean } = {}): void {
    const params: ParamsOf<typeof shaders.LINEAR_PARAMS> = {
      T, K, N, row0: o.row0 ?? 0, xs: o.xs ?? K, os: o.os ?? N, xo: o.xo ?? 0, oo: o.oo ?? 0, accumulate: !!o.accumulate,
    };
    if (T <= 4) {
      const wgs = Math.ceil(N / 4), groups = [Math.min(wgs, 65535), Math.ceil(wgs / 65535), 1] as const;
      // rows of a multiple of 8 weights start on 16-byte boundaries (32 for F32): wide loads
      if (K % 8 === 0) p.dispatch(`matvec8-${w.dtype}`, shaders.matvecWide(w.dtype), [w.buffer, x, out], params, groups);
      else p.dispatch(`matvec-${w.dtype}`, shaders.matvec(w.dtype), [w.buffer, x, out], params, groups);
    } else {
      p.dispatch(`matmul-${w.dtype}`, shaders.matmulTiled(w.dtype), [w.buffer, x, out], params, [Math.ceil(N / shaders.MATMUL_TILE), Math.ceil(T / shaders.MATMUL_TILE), 1]);
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
  embed(p: Pass, out: GPUBuffer, w: GpuWeight, ids: GPUBuffer, T: number, D: number): void {
    p.dispatch(`embed-${w.dtype}`, shaders.embed(w.dtype), [w.buffer, ids, out], { T, D }, [Math.ceil(D / 64), T, 1]);
  },
  absorbQuery(p: Pass, qc: GPUBuffer, q: GPUBuffer, kvb: GpuWeight, T: number, H: number, dn: number, dv: number, dc: number, dqk: number): void {
    p.dispatch(`absorbq-${kvb.dtype}`, shaders.absorbQuery(kvb.dtype), [kvb.buffer, q, qc], { T, H, dn, dv, dc, dqk }, [Math.ceil(dc / 64), H, T]);
  },
  absorbOutput(p: Pass, ov: GPUBuffer, lat: GPUBuffer, kvb: GpuWeight, T: number, H: number, dn: number, dv: number, dc: number): void {
    p.dispatch(`absorbo-${kvb.dtype}`, shaders.absorbOutput(kvb.dtype), [kvb.buffer, lat, ov], { T, H, dn, dv, dc }, [dv, H, T]);
  },
  /** Partial results need T * nSplit * H * (dc + 2) floats in part/ml. */
  latentAttend(p: Pass, part: GPUBuffer, ml: GPUBuffer, qc: GPUBuffer, q: GPUBuffer, cache: GPUBuffer,
    T: number, H: number, dc: number, dr: number, dqk: number, dn: number, p0: number, chunk: number, nSplit: number, scale: number): void {
    const tiles = shaders.latentTiles(dc + dr, p.gpu.device.limits.maxComputeWorkgroupStorageSize);
    p.dispatch(`latent-${dc}-${dr}`, shaders.latentAttend(dc, dr, tiles), [qc, q, cache, part, ml],
      { T, H, dc, dr, dqk, dn, p0, chunk, nSplit, scale }, [nSplit, Math.ceil(H / tiles.HG), T]);
  },
  latentCombine(p: Pass, lat: GPUBuffer, part: GPUBuffer, ml: GPUBuffer, T: number, H: number, dc: number, nSplit: number): void {
    p.dispatch("latent-combine", shaders.LATENT_COMBINE, [part, ml, lat], { T, H, dc, nSplit }, [Math.ceil(dc / 64), H, T]);
  },
  /** window 0: full causal attention; W > 0: each token sees its last W positions. */
  gqaAttend(p: Pass, o: GPUBuffer, q: GPUBuffer, k: GPUBuffer, v: GPUBuffer, T: number, H: number, G: number, dk: number, dv: number, p0: number, scale: number, window = 0): void {
    if (dv > 256) throw new MlaError(`webgpu: value heads wider than 256 (${dv}) are not supported`);
    p.dispatch("gqa", shaders.GQA_ATTEND, [q, k, v, o], { T, H, G, dk, dv, p0, scale, window }, [H, T, 1]);
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
    p.dispatch(`slotmv-${w.dtype}`, shaders.slotMatvec(w.dtype), [w.buffer, x, experts, out], { S: slots, K, N, R, xdiv }, [Math.ceil(N / 4), slots, 1]);
  },
  argmax(p: Pass, out: GPUBuffer, x: GPUBuffer, N: number): void {
    p.dispatch("argmax", shaders.ARGMAX, [x, out], { N }, [1, 1, 1]);
  },
};
