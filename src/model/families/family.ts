/**
 * What a model family tells the engine: how its config.json maps onto ModelConfig (keys read, defaults, what is
 * refused), its weight names and shapes, the matrices a backend may stack, how named tensors become a layer's
 * weights, its MoE router (ModelConfig.router) and its cache layout. One file per family in this folder; the
 * registry (./index.ts) is the only place that lists them. A family runs on one of the engine's decoders, named by
 * `attention`: "mla" (DeepseekModel, GpuModel's MLA path) or "gqa" (LlamaModel, GpuModel's GQA path).
 */
import type { AttentionFamily, Json, ModelConfig } from "../config.js";
import type { ReadTensors } from "../weights.js";

/** A checkpoint's named tensors, and the stacked matrix that begins with a name (when the loader stacked one). */
export type TensorSource = ReadTensors;

export interface ModelFamily<L = unknown> {
  /** config.json's model_type. */
  readonly modelType: string;
  /** The decoder the family runs on. */
  readonly attention: AttentionFamily;
  /** config.json -> ModelConfig; throws MlaError naming the key for what the engine does not run. */
  parseConfig(json: Json): ModelConfig;
  /** Names and shapes of layer i's tensors (Hugging Face names, [out, in]). */
  layerTensors(c: ModelConfig, i: number, out: Map<string, number[]>): void;
  /** Matrices of layer i applied to the same input, which a backend may stack into one: first -> second. */
  stackedPairs(c: ModelConfig, i: number, out: Map<string, string>): void;
  /** Layer i's weights from its named tensors. */
  layer(c: ModelConfig, i: number, t: TensorSource): L;
  /** Tensors layer i reads when the checkpoint has them (a GGUF file's k_b_proj/v_b_proj), with their shapes. */
  optionalTensors?(c: ModelConfig, i: number, out: Map<string, number[]>): void;
  /** Floats per token and layer of each cache the decoder keeps (the latent row; or K and V rows). */
  cacheWidths(c: ModelConfig): readonly number[];
}

/** gate_proj, up_proj, down_proj of a SwiGLU MLP of width F under prefix p. */
export function mlpTensors(out: Map<string, number[]>, p: string, D: number, F: number): void {
  out.set(`${p}gate_proj.weight`, [F, D]);
  out.set(`${p}up_proj.weight`, [F, D]);
  out.set(`${p}down_proj.weight`, [D, F]);
}
