// mla-ts CPU kernels in AssemblyScript (WebAssembly SIMD, shared memory). This is the entry file: it only names the
// module's exports; the kernels live in the files below, each importing only what it uses (no cycles).
//
// Build (see package.json "asbuild"): two binaries from these sources,
//   build/kernels.wasm          --enable simd,threads                 (every SIMD engine)
//   build/kernels-relaxed.wasm  --enable simd,threads,relaxed-simd    (FMA via f32x4.relaxed_madd)
// The relaxed build is picked at run time when WebAssembly.validate accepts it
// (Node 20 needs --experimental-wasm-relaxed-simd; newer engines ship it).
//
// Conventions
// - Every pointer is a byte offset into the imported shared linear memory; every count is in elements.
// - Kernels work on a range of output rows [n0, n1) (heads [h0, h1) for attention) so that
//   several threads can share one call; ranges of different threads never write the same bytes.
// - A trailing `scratch` pointer is per-thread working memory (see each kernel for the size it needs).
// - Weights are row-major [N, K] (PyTorch Linear layout): out[t, n] = sum_k x[t, k] * W[n, k].
//
// The parameter lists are the other half of src/backends/wasm/kernels.ts, which names them for the worker pool:
// a change of signature here needs the same change there (the pool checks the counts at start-up).
//
// Files
//   simd.ts              shared SIMD arithmetic (multiply-add, horizontal sums, exp)
//   f16.ts               IEEE half -> f32 on SIMD lanes
//   dot-f32.ts           f32 dot-product blocks (K along the lanes)
//   q8.ts                int8 blocks: dequantized rows, the T == 1 integer and float paths
//   kquant.ts            GGML's packed blocks (Q4_0, Q4_K, Q5_K, Q6_K): T == 1 integer paths, rows widened to f32
//   q5.ts                GGML's Q5_0 (llama.cpp's fallback where a Q4_K row does not divide 256): the same two paths
//   linear-tiled.ts      T > 1 products of every dtype (8-token panels x 4 rows)
//   linear.ts            the product kernels, one per weight dtype, and linear_grouped
//   elementwise.ts       rmsnorm, silu_mul, softmax
//   attention-latent.ts  absorbed-MLA decode attention over latent rows
//   attention-heads.ts   decode attention with per-head K/V, causal softmax of score rows
//   heap.ts              heap_base
//   quantize.ts          load-time quantization of float rows to Q8 and to GGML's blocks

// products (the export order is the module's export order, kept as it was)
export { linear_scratch } from "./linear-tiled";
export { linear_f32, linear_bf16, linear_f16, linear_q8, linear_grouped } from "./linear";
// elementwise
export { rmsnorm, silu_mul, softmax } from "./elementwise";
// absorbed-MLA decode attention
export { attend_latent_scratch, attend_latent, attend_latent_many, attend_latent_16_scratch, attend_latent_16, attend_latent_many_16 } from "./attention-latent";
export { heap_base } from "./heap";
// decode attention with per-head K/V (MHA/GQA/MQA, naive MLA)
export { attend_heads_scratch, attend_heads, softmax_causal } from "./attention-heads";
// products on GGML's packed blocks (Q4_0, Q4_K, Q5_K, Q6_K)
export { linear_q4_0, linear_q4_k, linear_q5_k, linear_q6_k } from "./linear";
// load-time quantization (F32/BF16/F16 -> Q8, and to GGML's blocks)
export { quantize_q8, quantize_blocks } from "./quantize";
// products on GGML's Q5_0 (q5.ts)
export { linear_q5_0 } from "./linear";
// T == 1 integer products in two steps: x prepared once, then rows on every thread
export { prep_x, prep_x_bytes, linear_rows_x, linear_rows_xt } from "./linear";
// T > 1 K-quant products (relaxed build) on tokens prepared once: kq8_prep over chunks of tokens, then linear_kq8
export { kq8_chunk_bytes, kq8_chunk_tokens, kq8_prep } from "./kquant";
export { linear_kq8 } from "./linear";
