/**
 * Gradient kernels work on either precision: Float32Array in training, Float64Array in the finite-difference tests.
 * All sums run in float64 (JS numbers), like the forward reference kernels in src/backends/cpu.
 */
export type Vec = Float32Array | Float64Array;

/** Integer ids (token ids, targets). */
export type Ids = ArrayLike<number>;
