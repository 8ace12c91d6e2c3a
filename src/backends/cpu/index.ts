/** The CPU backend's kernels: scalar reference implementations (float64 sums) over Float32Array activations. */
export { linear, linearT, weightRow } from "./matmul.js";
export { rmsNorm } from "./norm.js";
export { ropeInterleaved, ropeHalves } from "./rope.js";
export { siluMul, axpy } from "./activation.js";
export { softmax } from "./softmax.js";
export { attend, attendLatent, type KvView, type LatentRows } from "./attention.js";
export { allocCacheData, cacheElementBytes, decodeCacheValues, encodeCacheRow, CACHE_DTYPES, type CacheData, type CacheDType } from "./cache-dtype.js";
