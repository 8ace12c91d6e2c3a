/**
 * The wasm kernels the worker pool runs, each described once: its export name, its parameters in the order the
 * AssemblyScript function takes them (assembly/), and which two of them receive a thread's row range [r0, r1).
 * Call sites pass every other parameter by name; the pool lays them out in order, fills in the range, and passes
 * each thread's scratch pointer as the parameter named `scratch` where a kernel has one.
 *
 * The parameter count of each description must equal the export's `length` (a WebAssembly function's parameter
 * count): WorkerPool checks it at start-up and test/wasm.test.ts against both builds, so a signature changed on one
 * side only fails at once instead of passing shifted arguments.
 */

export interface KernelSpec<P extends string = string, R extends P = P> {
  /** The export of kernels.wasm. */
  readonly name: string;
  /** Every parameter, in order. */
  readonly params: readonly P[];
  /** The two parameters that take the row range [r0, r1) of the rows the pool splits. */
  readonly range: readonly [R, R];
}

/** The parameter a kernel takes its per-thread scratch pointer in (the pool fills it). */
export const SCRATCH = "scratch";

/** What a call passes: every parameter by name except the row range and the scratch pointer. */
export type KernelArgs<P extends string, R extends P> = { readonly [N in Exclude<P, R | typeof SCRATCH>]: number };

function kernel<const P extends string, const R extends P>(name: string, params: readonly P[], range: readonly [R, R]): KernelSpec<P, R> {
  if (new Set(params).size !== params.length) throw new Error(`kernel ${name}: a parameter is named twice`);
  return { name, params, range };
}

/** The products' parameters, shared by the F32, BF16 and F16 kernels (so one call site serves all three). */
const LINEAR = ["out", "x", "T", "K", "w", "n0", "n1", "xStride", "outStride", "scratch"] as const;

/**
 * Every kernel the pool runs. The order is the pool's kernel numbering (linear_f32 is kernel 0, which the
 * positional WorkerPool.run form still addresses by number).
 */
export const KERNEL = {
  linear_f32: kernel("linear_f32", LINEAR, ["n0", "n1"]),
  linear_bf16: kernel("linear_bf16", LINEAR, ["n0", "n1"]),
  linear_f16: kernel("linear_f16", LINEAR, ["n0", "n1"]),
  linear_q8: kernel("linear_q8", ["out", "x", "T", "K", "wq", "scales", "n0", "n1", "xStride", "outStride", "scratch"], ["n0", "n1"]),
  rmsnorm: kernel("rmsnorm", ["out", "x", "D", "w", "eps", "t0", "t1", "xStride", "outStride"], ["t0", "t1"]),
  silu_mul: kernel("silu_mul", ["out", "gate", "up", "i0", "i1"], ["i0", "i1"]),
  attend_latent: kernel("attend_latent", ["out", "q", "cache", "L", "w", "dc", "cStride", "scale", "h0", "h1", "scratch"], ["h0", "h1"]),
  linear_grouped: kernel("linear_grouped",
    ["dt", "out", "x", "T", "K", "w", "scales", "N", "row0", "gs", "g0", "g1", "xg", "og", "xStride", "outStride", "scratch"], ["g0", "g1"]),
  attend_heads: kernel("attend_heads",
    ["out", "q", "k", "v", "L", "dk", "dv", "kRow", "vRow", "kHead", "vHead", "group", "scale", "h0", "h1", "scratch"], ["h0", "h1"]),
  softmax_causal: kernel("softmax_causal", ["s", "Lp", "first", "t0", "t1", "scratch"], ["t0", "t1"]),
  attend_latent_many: kernel("attend_latent_many", ["out", "q", "table", "H", "w", "dc", "scale", "s0", "s1", "scratch"], ["s0", "s1"]),
  // the same over 16-bit cache rows, dt 1 = BF16, 2 = F16 (assembly/attention-latent.ts)
  attend_latent_16: kernel("attend_latent_16", ["out", "q", "cache", "L", "w", "dc", "cStride", "scale", "dt", "h0", "h1", "scratch"], ["h0", "h1"]),
  attend_latent_many_16: kernel("attend_latent_many_16", ["out", "q", "table", "H", "w", "dc", "scale", "dt", "s0", "s1", "scratch"], ["s0", "s1"]),
  // GGML's packed blocks (assembly/kquant.ts): the float products' parameters, w pointing at row 0's first block
  linear_q4_0: kernel("linear_q4_0", LINEAR, ["n0", "n1"]),
  linear_q4_k: kernel("linear_q4_k", LINEAR, ["n0", "n1"]),
  linear_q5_k: kernel("linear_q5_k", LINEAR, ["n0", "n1"]),
  linear_q6_k: kernel("linear_q6_k", LINEAR, ["n0", "n1"]),
  linear_q5_0: kernel("linear_q5_0", LINEAR, ["n0", "n1"]),
  // T == 1 integer products on x prepared once by prep_x (Q8, GGML's blocks; dt as DTYPE_CODE; assembly/linear.ts)
  linear_rows_x: kernel("linear_rows_x", ["dt", "out", "xq", "K", "w", "scales", "n0", "n1", "scratch"], ["n0", "n1"]),
  // T = 2..4 Q4_K/Q5_K products of the relaxed build on tokens prepared by prep_x, records prep_x_bytes apart
  linear_rows_xt: kernel("linear_rows_xt", ["dt", "out", "xq", "T", "K", "w", "n0", "n1", "outStride", "scratch"], ["n0", "n1"]),
  // T > 1 K-quant products of the relaxed build on tokens prepared once (assembly/kquant.ts, linear.ts): kq8_prep
  // over chunks of 64 tokens into shared memory, then linear_kq8 over the rows
  kq8_prep: kernel("kq8_prep", ["prep", "x", "T", "K", "xStride", "flags", "c0", "c1", "scratch"], ["c0", "c1"]),
  linear_kq8: kernel("linear_kq8", ["dt", "out", "prep", "flags", "x", "T", "K", "w", "n0", "n1", "xStride", "outStride", "scratch"], ["n0", "n1"]),
  // load-time quantization (assembly/quantize.ts); dt as DTYPE_CODE numbers the float sources
  quantize_q8: kernel("quantize_q8", ["q", "s", "src", "dt", "K", "r0", "r1", "scratch"], ["r0", "r1"]),
  // type: the block dtype as DTYPE_CODE numbers it (Q4_0, Q4_K, Q5_K, Q6_K; not Q5_0, which only GGUF files hold)
  quantize_blocks: kernel("quantize_blocks", ["dst", "src", "dt", "type", "K", "r0", "r1", "scratch"], ["r0", "r1"]),
} as const;

/** The kernels above as a list, in their numbering order: what WasmBackend starts its pool with. */
export const POOL_KERNELS: readonly KernelSpec[] = Object.values(KERNEL);

/** linear_grouped's `dt`: the weight dtype as assembly/linear.ts numbers it. */
export const DTYPE_CODE = { F32: 0, BF16: 1, F16: 2, Q8: 3, Q4_0: 4, Q4_K: 5, Q5_K: 6, Q6_K: 7, Q5_0: 8 } as const;
