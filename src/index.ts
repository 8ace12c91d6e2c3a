/** mla-ts public API. */
export { MlaError } from "./errors.js";

// tensors and files
export { type DType, type BlockDType, BLOCK_DTYPES, DTYPE_BYTES, bf16ToF32, f32ToBf16, f16ToF32, f32ToF16 } from "./tensor/dtype.js";
export { GGML_TYPE, GGML_BLOCK, READABLE_GGML_TYPES, dequantizeGgml, ggmlRowBytes, type ReadableGgmlType } from "./tensor/ggml.js";
export { quantizeRows, quantizeTensor } from "./tensor/ggml-quantize.js";
export { type Tensor, type Storage, tensor, f32Tensor, toF32, fromF32, numel } from "./tensor/tensor.js";
export { readHeader, readTensor, writeSafetensors, type TensorInfo } from "./io/safetensors.js";
export { readFp8Tensor, fp8ScaleName, type Fp8ReadOptions } from "./io/safetensors.js";
export { e4m3ToF32, e8m0ToF32, dequantizeFp8Rows, type Fp8Layout } from "./tensor/fp8.js";
export { readGguf, readGgufTensor, type GgufFile, type GgufTensorInfo, type GgufValue } from "./io/gguf.js";
export { GgufWriter } from "./io/gguf-write.js";
// models from the Hugging Face hub, into its shared cache (Node only)
export { parseHubRef, selectModelFiles, ggufQuantTag, HUB_PREFIX, type HubRef, type HubFile, type ModelFiles } from "./io/hub.js";
export { pullModel, hubOptionsFromEnv, type HubOptions, type PullPlan, type PullResult, type PlannedFile } from "./io/hub-pull.js";
export { hubCacheDir, repoCacheDir } from "./io/hf-cache.js";

// kernels (backends)
export { cpuOps, cpuOpsQ8, cpuOpsQuant, type Ops } from "./backends/ops.js";
export { WasmOps, type WasmOpsOptions } from "./backends/wasm/ops.js";
export { quantizeQ8, sliceRows, concatRows } from "./tensor/tensor.js";

// attention library
export { MultiHeadLatentAttention, resolveMlaMode, LATENT_NORM_EPS, type MlaMode, type MlaDims, type MlaWeights } from "./attention/mla.js";
export { GroupedQueryAttention, type GqaDims, type GqaWeights, type RopeStyle } from "./attention/gqa.js";
export { LatentCache, KvCache, RowCache, type CacheDType } from "./attention/cache.js";
export { RotaryEmbedding, ropeInvFreq, ropeAttentionFactor, attentionScale, yarnMscale, type RopeScaling } from "./attention/rope.js";
export {
  compareCaches, kvCacheFootprint, latentCacheFootprint, defaultGqaGroups,
  type AttentionKind, type CacheFootprint,
} from "./attention/accounting.js";

// models
export { Checkpoint, openCheckpoint } from "./model/checkpoint.js";
export { type CheckpointTensorInfo } from "./model/checkpoint.js";
export { checkQuantization, type Fp8Quantization } from "./model/quantization.js";
export { type TensorStore } from "./model/tensor-store.js";
export { GgufCheckpoint } from "./model/gguf/checkpoint.js";
export { ggufTokenizer } from "./tokenizer/gguf.js";
export { exportGguf, EXPORT_TYPES, type ExportType, type ExportOptions } from "./convert/export-gguf.js";
export { parseRope, isMoeLayer, mtpNote, type ModelConfig, type ModelType, type AttentionFamily } from "./model/config.js";
export {
  loadConfig, parseConfig, familyOf, MODEL_TYPES, loadWeights, loadLlamaWeights, assemble, assembleLlama, expectedTensors, cacheWidths,
  type ModelFamily,
} from "./model/families/index.js";
export type { ModelWeights, LayerWeights, FfnWeights, LlamaWeights, LlamaLayerWeights, DecoderWeights } from "./model/weights.js";
export {
  forwardBatch, CpuDecoder, type CausalLM, type ModelState, type ForwardOptions, type LoadOptions, type BatchItem, type BatchForwardOptions,
} from "./model/causal-lm.js";
export { loadModel, cpuRuntime } from "./model/load.js";
export { DeepseekModel, RunState } from "./model/deepseek-model.js";
export { LlamaModel, KvRunState } from "./model/llama.js";
export { type InferenceModel, type Runtime, type SequenceState, type StepItem, type StepOptions } from "./model/inference.js";
export { routeSigmoidGrouped, routeSoftmax, routeTokens, type Routing, type RouterConfig, type RouterSpec } from "./model/router.js";
export {
  describeModel, describeConfig, kvCacheInfo, WEIGHT_FORMATS,
  type ModelInfo, type KvCacheInfo, type MtpInfo, type DescribeOptions, type DescribeConfigOptions, type WeightFormat,
} from "./model/info.js";

// WebGPU (Node via the npm package webgpu, browsers via navigator.gpu)
export { WebGpuBackend, type GpuWeight, type GpuWeightPart, type WebGpuOptions } from "./backends/webgpu/backend.js";
export { GpuModel, GpuState, webgpuRuntime, type GpuLoadOptions } from "./model/gpu/model.js";
export { planGpuLoad, type GpuLoadPlan, type GpuUploadOptions, type BlockQuantizer } from "./model/gpu/load.js";
export { parseSafetensorsBuffer, type BufferReadOptions } from "./io/safetensors-buffer.js";

// generation and text
export { generate, type GenerateOptions, type GenerateResult } from "./generate/generate.js";
export { Sampler, argmax, type SamplingOptions } from "./generate/sampler.js";
export { TextTokenizer, StreamDecoder } from "./tokenizer/tokenizer.js";
export { readTiktokenDir, parseTiktokenRanks, tiktokenTokenizerJson, tiktokenSpecials, KIMI_PAT_STR, type TiktokenSpecial } from "./tokenizer/tiktoken.js";
export { ChatTemplate, DEFAULT_CHAT_TEMPLATE, stopTokenIds, type ChatMessage, type ChatToolCall, type TemplateMessage } from "./tokenizer/chat.js";
export {
  BatchScheduler, BusyError, type SchedulerOptions, type SchedulerStats, type SequenceRequest, type SequenceResult, type SequenceHandle,
} from "./generate/batch.js";
export {
  TextEngine, StopMatcher, ChatSession, type TextRequest, type TextResult, type TextJob, type TextEngineOptions, type ChatSessionOptions, type ChatTurnOptions,
} from "./generate/text.js";
export { PrefixCache, commonPrefix, type PrefixEntry, type PrefixCacheStats } from "./generate/prefix-cache.js";
export { TokenBytes, tokenLogprob, topK, logSumExp, type TokenLogprob, type TopLogprob } from "./generate/logprobs.js";
export { jsonObjectGrammar, jsonSchemaGrammar, SchemaError, type JsonGrammar } from "./generate/grammar/schema.js";
export { StructuredOutput, type TokenConstraint, type TokenMask, type StructuredOutputOptions, type MaskCacheStats } from "./generate/grammar/constraint.js";
export { TokenVocab } from "./generate/grammar/vocab.js";

// serving
export { ApiServer, type ServerOptions } from "./server/server.js";
export { ServerMetrics, type RequestRecord, type LogFormat } from "./server/metrics.js";
export { ApiError } from "./server/openai.js";
export {
  ChatFormat, ChatOutput, foldDeltas, TOOL_FORMATS, type ChatDelta, type ChatPlan, type ChatResult, type ToolSpec, type ToolChoice,
} from "./server/tools/index.js";
export { trainByteLevelBpe, writeTokenizer, ByteLevelBpe, bytesPerToken } from "./tokenizer/bpe-train.js";

// training
export { TrainModel, type TrainModelOptions, type TrainDims } from "./train/model.js";
export { denseMlaConfig, llamaConfig, type DenseMlaSpec, type LlamaSpec } from "./model/families/writers.js";
export { AdamW, lrAt } from "./train/adamw.js";
export { runTraining, DEFAULT_SETTINGS, type TrainSettings, type RunOptions, type RunSummary, type AttentionKind as TrainAttentionKind } from "./train/trainer.js";

// data
export { loadBrown, brownStats } from "./data/brown.js";
