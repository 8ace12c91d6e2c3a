/**
 * Backward passes of every op training needs, as scalar reference kernels over Float32Array or Float64Array
 * (float64 sums). Conventions: parameter gradients (dW, dw, dE) accumulate (+=); input gradients are overwritten
 * unless the function's `accumulate` flag is set. Each is checked against float64 finite differences in
 * test/train-grad.test.ts.
 */
export type { Vec, Ids } from "./types.js";
export { linearBackward, linearBackwardInput, linearBackwardWeight } from "./linear.js";
export { rmsNormBackward } from "./norm.js";
export { ropeHalvesBackward, ropeInterleavedBackward } from "./rope.js";
export { siluMulBackward } from "./activation.js";
export { embeddingForward, embeddingBackward } from "./embedding.js";
export { attendBackward } from "./attention.js";
export { crossEntropyLoss, IGNORE_INDEX, type LossResult } from "./loss.js";
