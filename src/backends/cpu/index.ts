/** The CPU backend's kernels: scalar reference implementations (float64 sums) over Float32Array activations. */
export { linear, linearT, weightRow } from "./matmul.js";
export { rmsNorm } from "./norm.js";
export { ropeInterleaved, ropeHalves } from "./rope.js";
export { siluMul, axpy } from "./activation.js";
export { softmax } from "./softmax.js";
export { attend, type KvView } from "./attention.js";
