/**
 * Loading a checkpoint onto the GPU with bounded host memory. The host reads one group of tensors at a time (the
 * embedding; one decoder layer; the final norm and lm_head), quantizes its float matrices when asked (`--quantize`,
 * as the CPU backends do), builds the group's weight struct with the model's family (./families: no model_type is
 * read here) and uploads it; `uploadWeight` writes to the device at once, so the host copies are dropped before the
 * next group is read. Peak host memory is one layer (a MoE layer's experts are stacked into one GPU weight, so a
 * layer is the unit) beside the process's own.
 *
 * Before anything is read, the plan (`planGpuLoad`) sizes what the GPU will hold: each tensor after quantization
 * plus the caches of the context the run reserves. WebGPU does not report a device's memory, so the budget is the
 * user's (`gpuMemoryBytes`, the CLI's --gpu-memory); the binding limits are the adapter's: weights are split across
 * buffers by rows (and MoE stacks by whole experts), so a row, or an expert, must fit one binding.
 *
 * During the upload each group's buffers are created inside an "out-of-memory" error scope, so a device that runs
 * out says so as "out of GPU memory after X of Y GiB" instead of failing later with an invalid buffer.
 */
import { MlaError } from "../../errors.js";
import { gpuWeightBytes, type WebGpuBackend } from "../../backends/webgpu/backend.js";
import { cacheRowBytes } from "../../backends/webgpu/wgsl-mla.js";
import { isDType, type BlockDType } from "../../tensor/dtype.js";
import { quantizeTarget, quantizeTensor } from "../../tensor/ggml-quantize.js";
import { numel, tensor, toF32, type Tensor } from "../../tensor/tensor.js";
import type { ModelConfig } from "../config.js";
import type { StoredTensorInfo, TensorStore } from "../tensor-store.js";
import { isMatmulWeight, listNames, readTensors, type LayerWeights, type LlamaLayerWeights, type LoadProgress, type ReadTensors } from "../weights.js";
import { cacheWidths, familyOf } from "../families/index.js";
import { uploadLayer, type GpuLayer, type GpuWeights } from "./weights.js";

/** Float rows [rows, cols] as one of GGML's block types, byte for byte ggml-quantize.ts's quantizeRows. */
export type BlockQuantizer = (x: Float32Array, rows: number, cols: number, type: BlockDType) => Uint8Array;

export interface GpuUploadOptions {
  /** After each tensor read: checkpoint bytes read so far, bytes in all, the tensor. */
  readonly onProgress?: LoadProgress;
  /** Quantize float weight matrices while loading (the CPU backends' `--quantize`: quantizeTarget's fallbacks). */
  readonly quantize?: "q8" | BlockDType;
  /** A faster quantizer for the block types than the JS reference (the WebAssembly pool's quantizeBlocksToHost). */
  readonly quantizeBlocks?: BlockQuantizer;
  /** GPU memory the model may take (weights and caches), in bytes; checked before loading. */
  readonly gpuMemoryBytes?: number;
  /** Tokens of cache the run reserves, for the fit check (default: 4096, at most max_position_embeddings). */
  readonly cacheTokens?: number;
  /** The caches' storage (GpuLoadOptions.cacheDtype): sizes them in the fit check. */
  readonly cacheDtype?: "F32" | "F16" | "BF16";
}

/** The device limits the plan checks every tensor against. */
export interface BindingLimits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
}

/** What a model will take on the GPU, sized before any tensor is read. */
export interface GpuLoadPlan {
  /** Every tensor to read (Hugging Face names), with the shape the config implies. */
  readonly tensors: ReadonlyMap<string, readonly number[]>;
  /** Bytes each tensor takes on the GPU (after quantization; a tied lm_head shares the embedding's). */
  readonly gpuBytes: ReadonlyMap<string, number>;
  readonly weightBytes: number;
  readonly cacheTokens: number;
  readonly cacheBytes: number;
  /** Checkpoint bytes read in all (what onProgress counts). */
  readonly fileBytes: number;
}

const GIB = 2 ** 30;
const gib = (b: number): string => (b / GIB).toFixed(2);

/** Uploaded as F32 vectors (norms, biases, the MoE router's gate and bias) rather than as weights of their dtype. */
function isF32OnGpu(name: string, shape: readonly number[]): boolean {
  return shape.length === 1 || name.endsWith(".mlp.gate.weight");
}

/** A routed expert's matrix: its stack on the GPU is split only between experts, so one expert fits one binding. */
function isExpert(name: string): boolean {
  return /\.mlp\.experts\.\d+\./.test(name);
}

/** The dtype a tensor has on the GPU: its loaded dtype, or what `--quantize` makes of it. */
function gpuDtype(c: ModelConfig, name: string, info: StoredTensorInfo, q: GpuUploadOptions["quantize"]): string {
  const d = info.dtype === "F64" ? "F32" : info.dtype;
  if (!q || !isDType(d) || !isMatmulWeight(c, name)) return d;
  return quantizeTarget(q, { dtype: d, shape: info.shape, data: new Float32Array(0) }) ?? d;
}

/** Layer i's tensors as its family names them, with the optional ones this checkpoint has. */
function layerTensors(c: ModelConfig, i: number, store: TensorStore): Map<string, number[]> {
  const f = familyOf(c.modelType), m = new Map<string, number[]>(), opt = new Map<string, number[]>();
  f.layerTensors(c, i, m);
  f.optionalTensors?.(c, i, opt);
  for (const [n, s] of opt) if (store.has(n)) m.set(n, s);
  return m;
}

/** Whether lm_head is its own tensor: untied, or tied but stored anyway (transformers then uses it; decoderWeights). */
function hasLmHead(c: ModelConfig, store: TensorStore): boolean {
  return !c.tieWordEmbeddings || store.has("lm_head.weight");
}

/** The tensors read before the layers, and after them. */
function headTensors(c: ModelConfig): Map<string, number[]> {
  return new Map([["model.embed_tokens.weight", [c.vocabSize, c.hiddenSize]]]);
}
function tailTensors(c: ModelConfig, store: TensorStore): Map<string, number[]> {
  const m = new Map<string, number[]>([["model.norm.weight", [c.hiddenSize]]]);
  if (hasLmHead(c, store)) m.set("lm_head.weight", [c.vocabSize, c.hiddenSize]);
  return m;
}

/**
 * Size the model on the GPU before reading it: every tensor present with its shape, each row (each expert) within
 * the binding limits, and weights plus caches within `gpuMemoryBytes` when given. Throws one-line MlaErrors with the
 * numbers.
 */
export function planGpuLoad(c: ModelConfig, store: TensorStore, limits: BindingLimits, opts: GpuUploadOptions = {}): GpuLoadPlan {
  const tensors = new Map<string, number[]>(headTensors(c));
  for (let i = 0; i < c.numLayers; i++) for (const [n, s] of layerTensors(c, i, store)) tensors.set(n, s);
  for (const [n, s] of tailTensors(c, store)) tensors.set(n, s);
  const missing = store.missing([...tensors.keys()]);
  if (missing.length) throw new MlaError(`missing ${missing.length} tensor(s) in ${store.dir}: ${listNames(missing)}`);
  const bind = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const gpuBytes = new Map<string, number>();
  let weightBytes = 0;
  for (const [name, shape] of tensors) {
    const info = store.info(name);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new MlaError(`tensor ${name} has shape [${info.shape.join(", ")}] but config.json implies [${shape.join(", ")}]`);
    }
    const cols = shape[shape.length - 1], rows = numel(shape) / cols;
    const dtype = isF32OnGpu(name, shape) ? "F32" : gpuDtype(c, name, info, opts.quantize);
    const bytes = gpuWeightBytes(dtype, rows, cols), unit = isExpert(name) ? bytes : gpuWeightBytes(dtype, 1, cols);
    if (unit > bind) {
      const [what, unitName] = isExpert(name) ? [`one expert's ${dtype} matrix`, "experts"] : [`one ${dtype} row`, "rows"];
      throw new MlaError(`tensor ${name}: ${what} of ${unit} bytes exceeds the device's storage binding limit (${bind} bytes); weights are split across buffers only between ${unitName}`);
    }
    gpuBytes.set(name, bytes);
    weightBytes += bytes;
  }
  const cacheTokens = Math.max(1, Math.min(opts.cacheTokens ?? 4096, c.maxPositionEmbeddings));
  const widths = cacheWidths(c);
  for (const w of widths) {
    if (cacheTokens * w * 4 > bind) throw new MlaError(`a cache of ${cacheTokens} tokens (${cacheTokens * w * 4} bytes per layer) exceeds the device's storage binding limit (${bind} bytes)`);
  }
  const cacheBytes = cacheTokens * widths.reduce((a, w) => a + cacheRowBytes(w, opts.cacheDtype ?? "F32"), 0) * c.numLayers;
  const budget = opts.gpuMemoryBytes;
  if (budget !== undefined && weightBytes + cacheBytes > budget) {
    throw new MlaError(`the model needs ${gib(weightBytes + cacheBytes)} GiB of GPU memory (weights ${gib(weightBytes)} GiB${opts.quantize ? ` at --quantize ${opts.quantize.toLowerCase()}` : ""}, ` +
      `cache ${gib(cacheBytes)} GiB for ${cacheTokens} tokens), more than the ${gib(budget)} GiB --gpu-memory allows`);
  }
  return { tensors, gpuBytes, weightBytes, cacheTokens, cacheBytes, fileBytes: store.totalBytes([...tensors.keys()]) };
}

/** The host-side quantizer `--quantize` asks for (undefined: weights as stored). */
function quantizer(o: GpuUploadOptions): ((w: Tensor) => Tensor) | undefined {
  const q = o.quantize;
  if (!q) return undefined;
  return (w) => {
    const to = quantizeTarget(q, w);
    if (!to) return w;
    if (to === "Q8" || !o.quantizeBlocks) return quantizeTensor(w, to);
    const cols = w.shape[w.shape.length - 1], rows = numel(w.shape) / cols;
    return tensor(to, w.shape, o.quantizeBlocks(toF32(w), rows, cols, to));
  };
}

/** One unit of the upload: tensors read together, then turned into GPU weights. */
interface Group {
  readonly tensors: Map<string, number[]>;
  upload(t: ReadTensors): void;
}

/** The groups in file order (embedding, layers, final norm and lm_head), and the weights they fill in. */
function groups(c: ModelConfig, store: TensorStore, g: WebGpuBackend): { groups: Group[]; result: () => GpuWeights } {
  let embed: GpuWeights["embed"] | undefined, norm: GPUBuffer | undefined, lmHead: GpuWeights["lmHead"] | undefined;
  const layers: GpuLayer[] = [];
  const family = familyOf(c.modelType);
  const out: Group[] = [{ tensors: headTensors(c), upload: (t) => void (embed = g.uploadWeight(t.get("model.embed_tokens.weight"), "embed")) }];
  for (let i = 0; i < c.numLayers; i++) {
    out.push({ tensors: layerTensors(c, i, store), upload: (t) => void (layers[i] = uploadLayer(g, family.layer(c, i, t) as LayerWeights | LlamaLayerWeights)) });
  }
  const ownHead = hasLmHead(c, store);
  out.push({
    tensors: tailTensors(c, store),
    upload: (t) => {
      norm = g.uploadF32(toF32(t.get("model.norm.weight")), "norm");
      lmHead = ownHead ? g.uploadWeight(t.get("lm_head.weight"), "lm_head") : embed;
    },
  });
  return { groups: out, result: () => ({ embed: embed!, layers, norm: norm!, lmHead: lmHead! }) };
}

/**
 * Run fn inside an out-of-memory error scope; the returned promise rejects with the numbers when the device ran out
 * while fn created buffers.
 */
function oomScope(g: WebGpuBackend, before: number, total: number, fn: () => void): Promise<void> {
  g.device.pushErrorScope("out-of-memory");
  let popped: Promise<GPUError | null>;
  try {
    fn();
  } finally {
    popped = g.device.popErrorScope();
  }
  return popped.then((e) => {
    if (e) throw new MlaError(`out of GPU memory after ${gib(before)} of ${gib(total)} GiB of weights were uploaded (${e.message.split("\n")[0]})`);
  });
}

/** A store whose loads come from tensors already read (each handed out once, so the host copy goes with its use). */
function prefetched(store: TensorStore, got: Map<string, Tensor>): TensorStore {
  return {
    dir: store.dir, names: () => store.names(), has: (n) => store.has(n), info: (n) => store.info(n),
    missing: (n) => store.missing(n), totalBytes: (n) => store.totalBytes(n), close: () => {},
    load: (n) => {
      const t = got.get(n);
      if (!t) throw new MlaError(`tensor ${n} was not read`);
      got.delete(n);
      return t;
    },
  };
}

/** State shared by the synchronous and the asynchronous upload. */
class Upload {
  readonly plan: GpuLoadPlan;
  private readonly gs: ReturnType<typeof groups>;
  private readonly prepare: ((w: Tensor) => Tensor) | undefined;
  private readBytes = 0;
  private gpuDone = 0;

  constructor(readonly c: ModelConfig, readonly store: TensorStore, readonly g: WebGpuBackend, readonly opts: GpuUploadOptions) {
    this.plan = planGpuLoad(c, store, g.ctx.limits, opts);
    this.gs = groups(c, store, g);
    this.prepare = quantizer(opts);
  }

  get groups(): readonly Group[] {
    return this.gs.groups;
  }

  /** Read (from `from`), quantize, build and upload one group; resolves (later) to its out-of-memory check. */
  run(grp: Group, from: TensorStore): Promise<void> {
    const base = this.readBytes, total = this.plan.fileBytes, report = this.opts.onProgress;
    const t = readTensors(this.c, from, grp.tensors, new Map(), (d, _t, name) => report?.(base + d, total, name), this.prepare);
    let bytes = 0;
    for (const n of grp.tensors.keys()) bytes += this.plan.gpuBytes.get(n) ?? 0;
    const check = oomScope(this.g, this.gpuDone, this.plan.weightBytes, () => grp.upload(t));
    this.gpuDone += bytes;
    this.readBytes += from.totalBytes([...grp.tensors.keys()]);
    return check;
  }

  weights(): GpuWeights {
    return this.gs.result();
  }
}

/**
 * Upload a checkpoint group by group, reading synchronously (Node's files). The device answers the out-of-memory
 * checks later: `uploaded` rejects with the numbers if it ran out (the model awaits it before its first step).
 */
export function uploadCheckpoint(c: ModelConfig, store: TensorStore, g: WebGpuBackend, opts: GpuUploadOptions = {}): { weights: GpuWeights; uploaded: Promise<void> } {
  const u = new Upload(c, store, g, opts);
  const checks: Promise<void>[] = [];
  for (const grp of u.groups) {
    const check = u.run(grp, store);
    check.catch(() => undefined); // observed through `uploaded`, or not at all when a later group throws
    checks.push(check);
  }
  const uploaded = Promise.all(checks).then(() => undefined);
  uploaded.catch(() => undefined); // observed by the model's first step, not here
  return { weights: u.weights(), uploaded };
}

/**
 * The same, for a store whose bytes come asynchronously (a browser's Blobs): each group's tensors are read with
 * `read`, uploaded, and the queue drained before the next group, so staging memory stays one group's.
 */
export async function uploadCheckpointAsync(
  c: ModelConfig, store: TensorStore, g: WebGpuBackend, read: (name: string) => Promise<Tensor>, opts: GpuUploadOptions = {},
): Promise<GpuWeights> {
  const u = new Upload(c, store, g, opts);
  for (const grp of u.groups) {
    const got = new Map<string, Tensor>();
    for (const n of grp.tensors.keys()) got.set(n, await read(n));
    await u.run(grp, prefetched(store, got));
    await g.device.queue.onSubmittedWorkDone();
  }
  return u.weights();
}

/** Tensors already in memory (a browser's fetched safetensors) as a store the upload reads from. */
export function mapStore(tensors: ReadonlyMap<string, Tensor>, dir = "the tensors given"): TensorStore {
  const bytes = (t: Tensor) => t.data.byteLength + (t.scales?.byteLength ?? 0);
  const get = (n: string) => {
    const t = tensors.get(n);
    if (!t) throw new MlaError(`${dir} have no tensor ${n}`);
    return t;
  };
  return {
    dir,
    names: () => [...tensors.keys()],
    has: (n) => tensors.has(n),
    info: (n) => ({ dtype: get(n).dtype, shape: get(n).shape, begin: 0, end: bytes(get(n)) }),
    load: get,
    missing: (ns) => ns.filter((n) => !tensors.has(n)),
    totalBytes: (ns = [...tensors.keys()]) => ns.reduce((s, n) => s + (tensors.has(n) ? bytes(tensors.get(n)!) : 0), 0),
    close: () => {},
  };
}
