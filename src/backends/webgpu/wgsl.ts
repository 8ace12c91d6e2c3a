/**
 * WGSL sources of the WebGPU kernels. Every kernel reads its sizes from a small uniform block at binding 0 and its
 * buffers from bindings 1.., so one pipeline serves every shape. The uniform block of each kernel is declared once,
 * as the named layout next to it (params.ts): the shader reads P.T, P.eps, ... from the struct the layout generates,
 * and backend.ts passes the same names.
 *
 * Weights stay in their stored precision: F32 as array<f32>, BF16 and F16 two per u32 (the H100's Dawn offers no
 * shader-f16), GGML's blocks as their bytes (wgsl-quant.ts), widened in `wld` inside the kernel; sums are f32.
 */
import { kernel, layout, type Kernel, type ParamFields, type ParamLayout } from "./params.js";
import { cacheDecl, cacheRowElems, perCache, type CacheDType } from "./wgsl-mla.js";
import { isBlockWeight, quantDecl, quantMatvecLoop, quantSlotLoop, type BlockWeightType } from "./wgsl-quant.js";

/** A weight's type on the GPU: the float types, or GGML's block layouts byte for byte (CPU "Q8" goes up as Q8_0). */
export type WeightType = "F32" | "BF16" | "F16" | BlockWeightType;
export { isBlockWeight };

/** A kernel whose code does not vary (the WGSL is put together when its pipeline is first made). */
function constKernel<F extends ParamFields>(params: ParamLayout<F>, code: string): Kernel<F> {
  return kernel(params, () => code);
}

/** One kernel per weight type, made on first use: a dispatch, hundreds of them a token, then allocates nothing for it. */
function perWeight<F extends ParamFields>(make: (t: WeightType) => Kernel<F>): (t: WeightType) => Kernel<F> {
  const made: { [T in WeightType]?: Kernel<F> } = {};
  return (t) => (made[t] ??= make(t));
}

/** Binding `b` named W with element accessor wld(i) for the weight type. */
function weightDecl(b: number, t: WeightType): string {
  if (isBlockWeight(t)) return quantDecl(b, t);
  if (t === "F32") return `@group(0) @binding(${b}) var<storage, read> W: array<f32>;\nfn wld(i: u32) -> f32 { return W[i]; }\n`;
  if (t === "BF16") {
    // a BF16 is the high half of an F32: shift it into place
    return `@group(0) @binding(${b}) var<storage, read> W: array<u32>;
fn wld(i: u32) -> f32 { let w = W[i >> 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u)); }\n`;
  }
  return `@group(0) @binding(${b}) var<storage, read> W: array<u32>;\nfn wld(i: u32) -> f32 { return unpack2x16float(W[i >> 1u])[i & 1u]; }\n`;
}

/** Tile of the tiled product: TILE x TILE outputs per workgroup of 8x8 threads, each TILE/8 x TILE/8. */
export const MATMUL_TILE = 32;

/**
 * The products' parameters (matmulTiled, matvec, matvecWide): out[oo + t*os + n] (+)= sum_k X[xo + t*xs + k]
 * W[(row0 + n)*K + k] for t < T, n < N; accumulate adds to out instead of overwriting it.
 */
export const LINEAR_PARAMS = layout({
  T: "u32", K: "u32", N: "u32", row0: "u32", xs: "u32", os: "u32", xo: "u32", oo: "u32", accumulate: "bool",
});
type LinearFields = typeof LINEAR_PARAMS.fields;

/**
 * out[t, n] (+)= sum_k X[xo + t*xs + k] W[(row0 + n)*K + k] for T > 4 rows: 32x32 output tiles per workgroup,
 * 8x8 threads with 4x4 outputs each, K in steps of 16 through workgroup memory. The per-thread accumulators are
 * generated as scalars (no dynamically indexed private arrays) and workgroups are 64 threads: SwiftShader, the
 * GPU of CI machines, crashes on both when several workgroups run at once.
 */
export const matmulTiled = perWeight((t) => kernel(LINEAR_PARAMS, () => matmulTiledCode(t)));

function matmulTiledCode(t: WeightType): string {
  const R = MATMUL_TILE / 8;
  const idx: [number, number][] = [];
  for (let i = 0; i < R; i++) for (let j = 0; j < R; j++) idx.push([i, j]);
  const decl = idx.map(([i, j]) => `var s${i}_${j} = 0.0;`).join(" ");
  const loadA = Array.from({ length: R }, (_, i) => `let a${i} = xt[l.y + ${8 * i}u][k];`).join(" ");
  const loadB = Array.from({ length: R }, (_, j) => `let b${j} = wt[l.x + ${8 * j}u][k];`).join(" ");
  const fma = idx.map(([i, j]) => `s${i}_${j} += a${i} * b${j};`).join(" ");
  const store = idx.map(([i, j]) => `st(t0 + l.y + ${8 * i}u, n0 + l.x + ${8 * j}u, s${i}_${j});`).join("\n  ");
  const loads = (MATMUL_TILE * 16) / 64;
  // the weight tile: a float weight each, loads times; block weights four at a time, so a group's scale and quants
  // are decoded once per 4 weights rather than per weight (16 columns of a K step lie in one 32-weight group)
  const loadW = isBlockWeight(t)
    ? `for (var i = 0u; i < ${loads / 4}u; i++) {
      let e = tid + i * 64u; let r = e >> 2u; let c = (e & 3u) * 4u;
      let nn = n0 + r; let k = k0 + c;
      var v = vec4<f32>(0.0);
      if (nn < N && k < K) {
        let f = (row0 + nn) * K + k; let g = f >> 5u; let gs = grp(g);
        v = gs.x * q4(g, (f >> 2u) & 7u) - vec4<f32>(gs.y);
      }
      wt[r][c] = v.x; wt[r][c + 1u] = v.y; wt[r][c + 2u] = v.z; wt[r][c + 3u] = v.w;
    }`
    : `for (var i = 0u; i < ${loads}u; i++) {
      let e = tid + i * 64u; let r = e >> 4u; let c = e & 15u;
      let nn = n0 + r; let k = k0 + c;
      var wv = 0.0;
      if (nn < N && k < K) { wv = wld((row0 + nn) * K + k); }
      wt[r][c] = wv;
    }`;
  return weightDecl(1, t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
var<workgroup> xt: array<array<f32, 17>, ${MATMUL_TILE}>;
var<workgroup> wt: array<array<f32, 17>, ${MATMUL_TILE}>;
fn st(tt: u32, nn: u32, v: f32) {
  if (tt >= P.T || nn >= P.N) { return; }
  let o = P.oo + tt * P.os + nn;
  if (P.accumulate != 0u) { O[o] += v; } else { O[o] = v; }
}
@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let T = P.T; let K = P.K; let N = P.N; let row0 = P.row0;
  let xs = P.xs; let xo = P.xo;
  let t0 = wg.y * ${MATMUL_TILE}u; let n0 = wg.x * ${MATMUL_TILE}u;
  let tid = l.y * 8u + l.x;
  ${decl}
  for (var k0 = 0u; k0 < K; k0 += 16u) {
    for (var i = 0u; i < ${loads}u; i++) {
      let e = tid + i * 64u; let r = e >> 4u; let c = e & 15u;
      let tt = t0 + r; let k = k0 + c;
      var xv = 0.0;
      if (tt < T && k < K) { xv = X[xo + tt * xs + k]; }
      xt[r][c] = xv;
    }
    ${loadW}
    workgroupBarrier();
    for (var k = 0u; k < 16u; k++) {
      ${loadA}
      ${loadB}
      ${fma}
    }
    workgroupBarrier();
  }
  ${store}
}`;
}

/**
 * The same product for 1-4 rows (decode): each workgroup of 64 threads computes 4 output rows, 16 threads per row
 * striding over K (consecutive threads read consecutive weights), then a tree reduction in workgroup memory.
 * Workgroups are laid out 2-D (x + y * 65535) so vocabulary-sized N fits the dispatch limit.
 * Block types stride over groups of 32 instead, a group's scale read once (quantMatvecLoop): decode speed of a
 * quantized model is this loop's.
 */
export const matvec = perWeight((t) => matvecKernel(weightDecl(1, t), isBlockWeight(t) ? quantMatvecLoop(t) : `
    let wo = (row0 + n) * K;
    for (var k = lane; k < K; k += 16u) {
      let w = wld(wo + k);
      a0 += w * X[xo + k];
      if (T > 1u) { a1 += w * X[xo + xs + k]; }
      if (T > 2u) { a2 += w * X[xo + 2u * xs + k]; }
      if (T > 3u) { a3 += w * X[xo + 3u * xs + k]; }
    }`));

/**
 * The skeleton both matrix-vector products share: 4 rows per workgroup of 64 (16 threads a row), per-thread sums
 * a0..a3 for up to 4 tokens from `loop` (which sees T K N row0 xs xo, lane and the row n < N), then a tree
 * reduction in workgroup memory and the (accumulating) store.
 */
function matvecKernel(weights: string, loop: string): Kernel<LinearFields> {
  return kernel(LINEAR_PARAMS, () => weights + /* wgsl */ `
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
var<workgroup> red: array<f32, 256>;
fn xv(o: u32) -> vec4<f32> { return vec4<f32>(X[o], X[o + 1u], X[o + 2u], X[o + 3u]); }
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let T = P.T; let K = P.K; let N = P.N; let row0 = P.row0;
  let xs = P.xs; let os = P.os; let xo = P.xo; let oo = P.oo;
  let lane = l.x & 15u; let r = l.x >> 4u;
  let n = (wg.x + wg.y * 65535u) * 4u + r;
  var a0 = 0.0; var a1 = 0.0; var a2 = 0.0; var a3 = 0.0;
  if (n < N) {${loop}
  }
  red[l.x] = a0; red[64u + l.x] = a1; red[128u + l.x] = a2; red[192u + l.x] = a3;
  workgroupBarrier();
  for (var s = 8u; s > 0u; s >>= 1u) {
    if (lane < s) { for (var tt = 0u; tt < 4u; tt++) { red[tt * 64u + l.x] += red[tt * 64u + l.x + s]; } }
    workgroupBarrier();
  }
  if (lane == 0u && n < N) {
    for (var tt = 0u; tt < T; tt++) {
      let o = oo + tt * os + n;
      if (P.accumulate != 0u) { O[o] += red[tt * 64u + l.x]; } else { O[o] = red[tt * 64u + l.x]; }
    }
  }
}`);
}

/** RMSNorm of T rows of width D: O[oo + t*os + i] = Wn[i] X[xo + t*xs + i] / sqrt(mean(X row^2) + eps). */
export const RMSNORM_PARAMS = layout({ T: "u32", D: "u32", xs: "u32", os: "u32", xo: "u32", oo: "u32", eps: "f32" });

/** RMSNorm of T rows, one workgroup per row. Bindings: X, Wn (f32), O. */
export const RMSNORM = constKernel(RMSNORM_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wn: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
var<workgroup> red: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let D = P.D; let xs = P.xs; let os = P.os; let xo = P.xo + wg.x * xs; let oo = P.oo + wg.x * os;
  var ss = 0.0;
  for (var i = l.x; i < D; i += 64u) { let v = X[xo + i]; ss += v * v; }
  red[l.x] = ss;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (l.x < s) { red[l.x] += red[l.x + s]; }
    workgroupBarrier();
  }
  let r = inverseSqrt(red[0] / f32(D) + P.eps);
  for (var i = l.x; i < D; i += 64u) { O[oo + i] = Wn[i] * (X[xo + i] * r); }
}`);

export const ROPE_PARAMS = layout({
  T: "u32", heads: "u32", d: "u32", offset: "u32", rowStride: "u32", headStride: "u32", xo: "u32", halves: "bool",
});

/**
 * Rotary embedding in place on T rows x heads slices of d dims at X[xo + t*rowStride + h*headStride + offset]:
 * interleaved pairs (2j, 2j+1) or halves (j, j + d/2). CS holds T rows of [cos d/2 | sin d/2].
 */
export const ROPE = constKernel(ROPE_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read> CS: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let T = P.T; let H = P.heads; let d = P.d; let half = d / 2u;
  let j = g.x; let h = g.y; let t = g.z;
  if (j >= half || h >= H || t >= T) { return; }
  let o = P.xo + t * P.rowStride + h * P.headStride + P.offset;
  let c = CS[t * d + j]; let s = CS[t * d + half + j];
  var ia = o + 2u * j; var ib = ia + 1u;
  if (P.halves != 0u) { ia = o + j; ib = o + half + j; }
  let a = X[ia]; let b = X[ib];
  X[ia] = a * c - b * s;
  X[ib] = a * s + b * c;
}`);

export const SILU_MUL_PARAMS = layout({ T: "u32", F: "u32", gs: "u32", us: "u32", os: "u32", go: "u32", uo: "u32" });

/** out[t*os + j] = silu(G[go + t*gs + j]) * U[uo + t*us + j] for j < F. Bindings: G, U, O. */
export const SILU_MUL = constKernel(SILU_MUL_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read> U: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g3: vec3u) {
  let F = P.F; let j = g3.x; let t = g3.y;
  if (j >= F || t >= P.T) { return; }
  let g = G[P.go + t * P.gs + j];
  O[t * P.os + j] = g / (1.0 + exp(-g)) * U[P.uo + t * P.us + j];
}`);

export const AXPY_PARAMS = layout({ T: "u32", D: "u32", indexed: "bool", a: "f32", i0: "u32" });

/**
 * Y[yrow(t)*D + i] += a(t) * X[t*D + i]: residual adds (a = 1, rows in order) and the MoE scatter (rows and
 * weights from IDX/WT when indexed, starting at entry i0). Bindings: Y, X, IDX (u32), WT (f32).
 */
export const AXPY = constKernel(AXPY_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> IDX: array<u32>;
@group(0) @binding(4) var<storage, read> WT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let D = P.D; let i = g.x; let t = g.y;
  if (i >= D || t >= P.T) { return; }
  var row = t; var a = P.a;
  if (P.indexed != 0u) { row = IDX[P.i0 + t]; a = WT[P.i0 + t]; }
  Y[row * D + i] += a * X[t * D + i];
}`);

export const BIAS_PARAMS = layout({ T: "u32", N: "u32", ys: "u32", yo: "u32" });

/** Y[yo + t*ys + i] += B[i] for i < N: a bias on every row. Bindings: Y, B. */
export const BIAS = constKernel(BIAS_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x; let t = g.y;
  if (i >= P.N || t >= P.T) { return; }
  Y[P.yo + t * P.ys + i] += B[i];
}`);

export const SCALE_PARAMS = layout({ T: "u32", D: "u32", a: "f32" });

/** Y[t*D + i] *= a for T rows of D: MiniCPM3's embedding, residual and logit multipliers. Bindings: Y. */
export const SCALE = constKernel(SCALE_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x; let t = g.y;
  if (i >= P.D || t >= P.T) { return; }
  Y[t * P.D + i] *= P.a;
}`);

export const GATHER_PARAMS = layout({ T: "u32", D: "u32", i0: "u32" });

/** O[t*D + i] = X[IDX[i0 + t]*D + i] (MoE token gather). Bindings: X, IDX, O. */
export const GATHER = constKernel(GATHER_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> IDX: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let D = P.D; let i = g.x; let t = g.y;
  if (i >= D || t >= P.T) { return; }
  O[t * D + i] = X[IDX[P.i0 + t] * D + i];
}`);

export const COPY_ROWS_PARAMS = layout({ T: "u32", n: "u32", xs: "u32", xc: "u32", os: "u32", oc: "u32", o0: "u32" });

/** O[(o0 + t)*os + oc + i] = X[t*xs + xc + i] for i < n: copy a column block of T rows. */
export const COPY_ROWS = constKernel(COPY_ROWS_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x; let t = g.y;
  if (i >= P.n || t >= P.T) { return; }
  O[(P.o0 + t) * P.os + P.oc + i] = X[t * P.xs + P.xc + i];
}`);

/** r0, rows: the rows of the table this dispatch's buffer holds (one part of a split weight). */
export const EMBED_PARAMS = layout({ T: "u32", D: "u32", r0: "u32", rows: "u32" });

/**
 * Embedding rows: O[t*D + i] = W[(IDS[t] - r0)*D + i] widened, for the tokens whose id is one of the rows
 * [r0, r0 + rows) that W holds; the others are written by the dispatch of the part holding them. Bindings: W, IDS, O.
 */
export const embed = perWeight((t) => kernel(EMBED_PARAMS, () => weightDecl(1, t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read> IDS: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let D = P.D; let i = g.x; let t = g.y;
  if (i >= D || t >= P.T) { return; }
  let r = IDS[t] - P.r0; // wraps past rows for ids below r0
  if (r >= P.rows) { return; }
  O[t * D + i] = wld(r * D + i);
}`));

export const ABSORB_QUERY_PARAMS = layout({ T: "u32", H: "u32", dn: "u32", dv: "u32", dc: "u32", dqk: "u32" });

/**
 * Absorbed MLA, query side: QC[t, h, c] = sum_{i < dn} Q[t, h, i] W^UK_h[i, c], W^UK_h = rows h*(dn+dv)..+dn of
 * kv_b_proj [H (dn+dv), dc]. One thread per (c, h, t): consecutive threads read consecutive weights.
 * Bindings: W (kv_b), Q, QC.
 */
export const absorbQuery = perWeight((t) => kernel(ABSORB_QUERY_PARAMS, () => weightDecl(1, t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read> Q: array<f32>;
@group(0) @binding(3) var<storage, read_write> QC: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let H = P.H; let dn = P.dn; let dv = P.dv; let dc = P.dc; let dqk = P.dqk;
  let c = g.x; let h = g.y; let t = g.z;
  if (c >= dc || h >= H || t >= P.T) { return; }
  let q0 = (t * H + h) * dqk; let w0 = h * (dn + dv) * dc + c;
  var s = 0.0;
  for (var i = 0u; i < dn; i++) { s += Q[q0 + i] * wld(w0 + i * dc); }
  QC[(t * H + h) * dc + c] = s;
}`));

export const ABSORB_OUTPUT_PARAMS = layout({ T: "u32", H: "u32", dn: "u32", dv: "u32", dc: "u32" });

/**
 * Absorbed MLA, output side: OV[t, h, j] = sum_c LAT[t, h, c] W^UV_h[j, c], W^UV_h = rows h*(dn+dv)+dn..+dv of
 * kv_b_proj. One workgroup of 64 threads per (j, h, t) output, striding over c, reduced in workgroup memory.
 * Bindings: W (kv_b), LAT, OV.
 */
export const absorbOutput = perWeight((t) => kernel(ABSORB_OUTPUT_PARAMS, () => weightDecl(1, t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read> LAT: array<f32>;
@group(0) @binding(3) var<storage, read_write> OV: array<f32>;
var<workgroup> red: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let H = P.H; let dn = P.dn; let dv = P.dv; let dc = P.dc;
  let j = wg.x; let h = wg.y; let t = wg.z;
  let l0 = (t * H + h) * dc; let w0 = (h * (dn + dv) + dn + j) * dc;
  var s = 0.0;
  for (var c = l.x; c < dc; c += 64u) { s += LAT[l0 + c] * wld(w0 + c); }
  red[l.x] = s;
  workgroupBarrier();
  for (var k = 32u; k > 0u; k >>= 1u) {
    if (l.x < k) { red[l.x] += red[l.x + k]; }
    workgroupBarrier();
  }
  if (l.x == 0u) { OV[(t * H + h) * dv + j] = red[0]; }
}`));

/**
 * Latent-attention tiles: HG heads per workgroup and SB cached rows per block, as large as the workgroup storage
 * limit allows (blocks of rows and the group's queries live there: (SB + HG) rows of d_c + d_h^R floats).
 */
export function latentTiles(R: number, maxWorkgroupBytes: number): { SB: number; HG: number; WG: number } {
  const HG = 8, WG = 64;
  const room = Math.floor((maxWorkgroupBytes - 256) / 4) - HG * R;
  const SB = Math.max(1, Math.min(16, Math.floor(room / (R + HG))));
  if (room < R + HG) {
    const hg = Math.max(1, Math.floor((maxWorkgroupBytes / 4 - 64) / (R + 1)) - 1);
    return { SB: 1, HG: hg, WG };
  }
  return { SB, HG, WG };
}

/**
 * Token t of T (row t0 + t of QC and Q) sees cache positions 0..p0+t; split s covers positions [s*chunk,
 * (s+1)*chunk) of nSplit.
 */
export const LATENT_ATTEND_PARAMS = layout({
  T: "u32", H: "u32", dc: "u32", dr: "u32", dqk: "u32", dn: "u32", p0: "u32", chunk: "u32", nSplit: "u32", scale: "f32", t0: "u32",
});

/**
 * Fused absorbed-MLA attention, flash-decoding style. Workgroup (split, head group, token t) runs over its chunk of
 * the latent cache C [L, dc + dr] (rows [c_KV | k_rope]) for HG heads: each block of SB cached rows is loaded into
 * workgroup memory once and scored against every head of the group, score = scale (qc . c_KV + q_rope . k_rope);
 * a running max m and sum l per head rescale the accumulators acc[h, c] = sum p c_KV (online softmax). The chunk's
 * (acc, m, l) go to PART/ML; LATENT_COMBINE merges the splits. Token t sees positions 0..p0+t (causal).
 * The accumulators are owned by threads (element e = tid + WG i of HG*dc), so dc*HG/WG registers per thread.
 * The cache is F32 or 16-bit words (wgsl-mla.ts), widened as its blocks are loaded into workgroup memory.
 * Bindings: QC [T,H,dc], Q [T,H,dqk], C, PART, ML.
 */
export function latentAttend(dc: number, dr: number, tiles: { SB: number; HG: number; WG: number }, cache: CacheDType = "F32"): Kernel<typeof LATENT_ATTEND_PARAMS.fields> {
  const key = `${dc}-${dr}-${tiles.SB}-${tiles.HG}-${tiles.WG}-${cache}`;
  let k = latentKernels.get(key);
  if (!k) latentKernels.set(key, (k = kernel(LATENT_ATTEND_PARAMS, () => latentAttendCode(dc, dr, tiles, cache))));
  return k;
}
/** latentAttend's kernels by shape and tiles, made once (as perWeight does for the weight types). */
const latentKernels = new Map<string, Kernel<typeof LATENT_ATTEND_PARAMS.fields>>();

function latentAttendCode(dc: number, dr: number, tiles: { SB: number; HG: number; WG: number }, cache: CacheDType): string {
  const { SB, HG, WG } = tiles;
  const NE = Math.ceil((HG * dc) / WG);
  const R = dc + dr, RS = cacheRowElems(R, cache);
  // a block of nb rows into lat: F32 as is; 16-bit rows of even width a word (two values) per thread; odd widths
  // (a pad value per stored row) a value per thread
  const load = cache === "F32"
    ? `for (var e = tid; e < SB * R; e += WG) {
      var v = 0.0;
      if (e / R < nb) { v = C[b0 * R + e]; }
      lat[e] = v;
    }`
    : R % 2 === 0
      ? `for (var e = tid; e < SB * R / 2u; e += WG) {
      var v = vec2<f32>(0.0, 0.0);
      if (2u * e / R < nb) { v = cld2(b0 * R / 2u + e); }
      lat[2u * e] = v.x; lat[2u * e + 1u] = v.y;
    }`
      : `for (var e = tid; e < SB * R; e += WG) {
      var v = 0.0;
      if (e / R < nb) { v = cld((b0 + e / R) * ${RS}u + e % R); }
      lat[e] = v;
    }`;
  return cacheDecl(3, "C", "cld", cache) + /* wgsl */ `
const DC = ${dc}u; const DR = ${dr}u; const R = ${R}u; const SB = ${SB}u; const HG = ${HG}u; const WG = ${WG}u; const NE = ${NE}u;
@group(0) @binding(1) var<storage, read> QC: array<f32>;
@group(0) @binding(2) var<storage, read> Q: array<f32>;
@group(0) @binding(4) var<storage, read_write> PART: array<f32>;
@group(0) @binding(5) var<storage, read_write> ML: array<f32>;
var<workgroup> lat: array<f32, ${SB * R}>;
var<workgroup> qs: array<f32, ${HG * R}>;
var<workgroup> sc: array<f32, ${HG * SB}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let H = P.H; let dqk = P.dqk; let dn = P.dn; let p0 = P.p0; let chunk = P.chunk; let nSplit = P.nSplit; let scale = P.scale;
  let split = wg.x; let h0 = wg.y * HG; let t = wg.z; let tid = l.x;
  let nh = min(HG, H - h0);
  let visible = p0 + t + 1u;
  let s0 = split * chunk; let s1 = min(s0 + chunk, visible);
  // this group's queries: [qc | q_rope] per head
  for (var e = tid; e < HG * R; e += WG) {
    let hh = e / R; let c = e % R; var v = 0.0; let tq = P.t0 + t;
    if (hh < nh) {
      if (c < DC) { v = QC[(tq * H + h0 + hh) * DC + c]; } else { v = Q[(tq * H + h0 + hh) * dqk + dn + c - DC]; }
    }
    qs[e] = v;
  }
  var acc: array<f32, NE>;
  var m: array<f32, NE>;
  var lsum: array<f32, NE>;
  for (var i = 0u; i < NE; i++) { m[i] = -3.0e38; lsum[i] = 0.0; acc[i] = 0.0; }
  for (var b0 = s0; b0 < s1; b0 += SB) {
    let nb = min(SB, s1 - b0);
    workgroupBarrier();
    ${load}
    workgroupBarrier();
    for (var p = tid; p < HG * SB; p += WG) {
      let hh = p / SB; let s = p % SB;
      var d = 0.0;
      for (var c = 0u; c < R; c++) { d += qs[hh * R + c] * lat[s * R + c]; }
      sc[p] = select(-3.0e38, d * scale, s < nb);
    }
    workgroupBarrier();
    for (var i = 0u; i < NE; i++) {
      let e = tid + i * WG;
      if (e >= HG * DC) { break; }
      let hh = e / DC; let c = e % DC;
      var mb = m[i];
      for (var s = 0u; s < nb; s++) { mb = max(mb, sc[hh * SB + s]); }
      let alpha = exp(m[i] - mb);
      var a = acc[i] * alpha; var ls = lsum[i] * alpha;
      for (var s = 0u; s < nb; s++) {
        let p = exp(sc[hh * SB + s] - mb);
        ls += p; a += p * lat[s * R + c];
      }
      acc[i] = a; lsum[i] = ls; m[i] = mb;
    }
  }
  for (var i = 0u; i < NE; i++) {
    let e = tid + i * WG;
    if (e >= HG * DC) { break; }
    let hh = e / DC; let c = e % DC;
    if (hh >= nh) { continue; }
    let row = (t * nSplit + split) * H + h0 + hh;
    PART[row * DC + c] = acc[i];
    if (c == 0u) { ML[row * 2u] = m[i]; ML[row * 2u + 1u] = lsum[i]; }
  }
}`;
}

export const LATENT_COMBINE_PARAMS = layout({ T: "u32", H: "u32", dc: "u32", nSplit: "u32", t0: "u32" });

/**
 * Merge the splits of LATENT_ATTEND (or of the naive form's chunks, dc = d_v): LAT[t0 + t, h, c] = sum_s
 * e^(m_s - M) acc_s[c] / sum_s e^(m_s - M) l_s. Bindings: PART, ML, LAT.
 */
export const LATENT_COMBINE = constKernel(LATENT_COMBINE_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read> PART: array<f32>;
@group(0) @binding(2) var<storage, read> ML: array<f32>;
@group(0) @binding(3) var<storage, read_write> LAT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let H = P.H; let dc = P.dc; let nS = P.nSplit;
  let c = g.x; let h = g.y; let t = g.z;
  if (c >= dc || h >= H || t >= P.T) { return; }
  var M = -3.0e38;
  for (var s = 0u; s < nS; s++) { let l = ML[((t * nS + s) * H + h) * 2u + 1u]; if (l > 0.0) { M = max(M, ML[((t * nS + s) * H + h) * 2u]); } }
  var num = 0.0; var den = 0.0;
  for (var s = 0u; s < nS; s++) {
    let row = (t * nS + s) * H + h;
    let l = ML[row * 2u + 1u];
    if (l > 0.0) { let f = exp(ML[row * 2u] - M); num += f * PART[row * dc + c]; den += f * l; }
  }
  LAT[((P.t0 + t) * H + h) * dc + c] = num / den;
}`);

/**
 * Token t of T is at position p0 + t; H query heads read G K/V heads; window 0 is full causal attention. ks and vs:
 * values per stored K and V row (G dk and G dv, rounded up to even in a 16-bit cache).
 */
export const GQA_ATTEND_PARAMS = layout({ T: "u32", H: "u32", G: "u32", dk: "u32", dv: "u32", p0: "u32", scale: "f32", window: "u32", ks: "u32", vs: "u32" });

/**
 * Causal attention over a per-head K/V cache (MHA / GQA / MQA): one workgroup of 64 threads per (query head h,
 * token t), blocks of 64 cached positions scored one per thread, online softmax, each thread owning value dims
 * tid, tid+64, ... (dv <= 256). Query head h reads KV head h / (H / G).
 * A sliding window > 0 limits token t to its last `window` positions (Mistral). The caches are F32 or 16-bit words,
 * read through kld/vld (one kernel per cache type).
 * Bindings: Q [T,H,dk], K [L,G,dk], V [L,G,dv], O [T,H,dv].
 */
export const gqaAttend = perCache((ct) => kernel(GQA_ATTEND_PARAMS, () => cacheDecl(2, "K", "kld", ct) + cacheDecl(3, "V", "vld", ct) + /* wgsl */ `
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
var<workgroup> sc: array<f32, 64>;
var<workgroup> red: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let H = P.H; let G = P.G; let dk = P.dk; let dv = P.dv; let p0 = P.p0; let scale = P.scale;
  let h = wg.x; let t = wg.y; let tid = l.x;
  let g = h / (H / G);
  let visible = p0 + t + 1u;
  var start = 0u;
  if (P.window > 0u && visible > P.window) { start = visible - P.window; }
  let q0 = (t * H + h) * dk;
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  var m = -3.0e38; var lsum = 0.0;
  for (var b0 = start; b0 < visible; b0 += 64u) {
    let s = b0 + tid;
    var d = -3.0e38;
    if (s < visible) {
      d = 0.0;
      let k0 = s * P.ks + g * dk;
      for (var i = 0u; i < dk; i++) { d += Q[q0 + i] * kld(k0 + i); }
      d *= scale;
    }
    sc[tid] = d; red[tid] = d;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
      if (tid < k) { red[tid] = max(red[tid], red[tid + k]); }
      workgroupBarrier();
    }
    let mb = max(m, red[0]);
    let alpha = exp(m - mb);
    lsum *= alpha;
    for (var j = 0u; j < 4u; j++) { acc[j] *= alpha; }
    let nb = min(64u, visible - b0);
    for (var s2 = 0u; s2 < nb; s2++) {
      let p = exp(sc[s2] - mb);
      lsum += p;
      let v0 = (b0 + s2) * P.vs + g * dv;
      for (var j = 0u; j < 4u; j++) { let c = tid + 64u * j; if (c < dv) { acc[j] += p * vld(v0 + c); } }
    }
    m = mb;
    workgroupBarrier();
  }
  for (var j = 0u; j < 4u; j++) { let c = tid + 64u * j; if (c < dv) { O[(t * H + h) * dv + c] = acc[j] / lsum; } }
}`));

/** The F32-cache GQA kernel. */
export const GQA_ATTEND = gqaAttend("F32");

export const ARGMAX_PARAMS = layout({ N: "u32" });

/** Index of the largest of N values (first on ties), for greedy decoding on the GPU. Bindings: X, OUT (u32). */
export const ARGMAX = constKernel(ARGMAX_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> OUT: array<u32>;
var<workgroup> bv: array<f32, 64>;
var<workgroup> bi: array<u32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) l: vec3u) {
  let N = P.N;
  var best = -3.4e38; var idx = 0xffffffffu;
  for (var i = l.x; i < N; i += 64u) { let v = X[i]; if (v > best) { best = v; idx = i; } }
  bv[l.x] = best; bi[l.x] = idx;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (l.x < s) {
      let v = bv[l.x + s]; let j = bi[l.x + s];
      if (v > bv[l.x] || (v == bv[l.x] && j < bi[l.x])) { bv[l.x] = v; bi[l.x] = j; }
    }
    workgroupBarrier();
  }
  if (l.x == 0u) { OUT[0] = bi[0]; }
}`);

/** Largest expert count the routing kernel holds per token (DeepSeek-V3 has 256). */
export const MAX_EXPERTS = 256;

/** method 0 sigmoid-grouped (V3), 1 softmax greedy, 2 softmax group-limited (see ROUTE). */
export const ROUTE_PARAMS = layout({
  T: "u32", E: "u32", k: "u32", nGroup: "u32", topkGroup: "u32", method: "u32", norm: "bool", scaling: "f32", hasBias: "bool",
});

/**
 * MoE routing of T tokens, one invocation per token, as src/model/router.ts (ties to the lower index):
 * method 0 (DeepSeek-V3 noaux_tc): s = sigmoid(logit), choice = s + bias, groups ranked by the sum of their top-2
 * choices; method 1 (V2 greedy) and 2 (V2 group_limited_greedy): s = softmax(logits), method 2 zeroes all but the
 * topk_group groups with the highest max(s). Top-k by choice (or s) among kept experts; weights = s, normalised
 * when asked (method 0: norm_topk_prob; 1-2: norm_topk_prob and k > 1), times routed_scaling_factor.
 * Bindings: L [T,E], BIAS [E], EXP [T,k] u32, WT [T,k].
 */
export const ROUTE = constKernel(ROUTE_PARAMS, /* wgsl */ `
const ME = ${MAX_EXPERTS}u;
@group(0) @binding(1) var<storage, read> L: array<f32>;
@group(0) @binding(2) var<storage, read> BIAS: array<f32>;
@group(0) @binding(3) var<storage, read_write> EXP: array<u32>;
@group(0) @binding(4) var<storage, read_write> WT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let t = g.x; let E = P.E; let k = P.k; let nG = P.nGroup; let kG = P.topkGroup; let method = P.method;
  if (t >= P.T) { return; }
  var s: array<f32, ME>; var ch: array<f32, ME>; var keep: array<bool, ME>;
  if (method == 0u) {
    for (var e = 0u; e < E; e++) {
      s[e] = 1.0 / (1.0 + exp(-L[t * E + e]));
      ch[e] = s[e];
      if (P.hasBias != 0u) { ch[e] += BIAS[e]; }
    }
  } else {
    var m = -3.4e38;
    for (var e = 0u; e < E; e++) { m = max(m, L[t * E + e]); }
    var sum = 0.0;
    for (var e = 0u; e < E; e++) { s[e] = exp(L[t * E + e] - m); sum += s[e]; }
    for (var e = 0u; e < E; e++) { s[e] /= sum; ch[e] = s[e]; }
  }
  // group selection (every group kept when topk_group >= n_group or the method has none)
  let per = E / nG;
  var gs: array<f32, ME>; var gk: array<bool, ME>;
  for (var gi = 0u; gi < nG; gi++) {
    var m1 = -3.4e38; var m2 = -3.4e38;
    for (var j = 0u; j < per; j++) {
      let v = ch[gi * per + j];
      if (v > m1) { m2 = m1; m1 = v; } else if (v > m2) { m2 = v; }
    }
    if (method == 0u) { gs[gi] = select(m1 + m2, m1, per == 1u); } else { gs[gi] = m1; }
    gk[gi] = false;
  }
  let grouped = method != 1u && kG < nG;
  if (grouped) {
    for (var r = 0u; r < kG; r++) {
      var best = -3.4e38; var bi = 0xffffffffu;
      for (var gi = 0u; gi < nG; gi++) { if (!gk[gi] && (bi == 0xffffffffu || gs[gi] > best)) { best = gs[gi]; bi = gi; } }
      gk[bi] = true;
    }
  }
  for (var e = 0u; e < E; e++) {
    keep[e] = !grouped || gk[e / per];
    if (method == 2u && !keep[e]) { ch[e] = 0.0; s[e] = 0.0; keep[e] = true; }
  }
  var total = 0.0;
  for (var j = 0u; j < k; j++) {
    var best = -3.4e38; var bi = 0xffffffffu;
    for (var e = 0u; e < E; e++) { if (keep[e] && (bi == 0xffffffffu || ch[e] > best)) { best = ch[e]; bi = e; } }
    keep[bi] = false;
    EXP[t * k + j] = bi;
    WT[t * k + j] = s[bi];
    total += s[bi];
  }
  var d = 1.0;
  if (P.norm != 0u) { d = total + 1e-20; }
  for (var j = 0u; j < k; j++) { WT[t * k + j] = WT[t * k + j] / d * P.scaling; }
}`);

/** e0, e1: the experts [e0, e1) this dispatch's buffer holds (one part of a split stacked weight). */
export const SLOT_MATVEC_PARAMS = layout({ S: "u32", K: "u32", N: "u32", R: "u32", xdiv: "u32", e0: "u32", e1: "u32" });

/**
 * Expert products by slot, for decode (T*k slots, no readback): out[s, n] = sum_c X[xrow(s)*K + c] W[((EXP[s] - e0)*R + n)*K + c]
 * for n < N, where R rows belong to each expert in the stacked weight and xrow(s) = s / xdiv (xdiv = k: the slot's
 * token; 1: the slot's own row). A slot whose expert is outside [e0, e1) writes nothing (another part's dispatch
 * holds it). 4 rows per workgroup of 64, 16 threads per row; block types by groups of 32 (quantSlotLoop).
 * Bindings: W, X, EXP, O.
 */
export const slotMatvec = perWeight((t) => kernel(SLOT_MATVEC_PARAMS, () => weightDecl(1, t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> EXP: array<u32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
var<workgroup> red: array<f32, 64>;
fn xv(o: u32) -> vec4<f32> { return vec4<f32>(X[o], X[o + 1u], X[o + 2u], X[o + 3u]); }
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let K = P.K; let N = P.N; let R = P.R;
  let s = wg.y; let lane = l.x & 15u; let n = wg.x * 4u + (l.x >> 4u);
  let e = EXP[s];
  let mine = n < N && e >= P.e0 && e < P.e1;
  var a = 0.0;
  if (mine) {
    let wr = (e - P.e0) * R + n; let xo = (s / P.xdiv) * K;${isBlockWeight(t) ? quantSlotLoop(t) : `
    let wo = wr * K;
    for (var c = lane; c < K; c += 16u) { a += wld(wo + c) * X[xo + c]; }`}
  }
  red[l.x] = a;
  workgroupBarrier();
  for (var k = 8u; k > 0u; k >>= 1u) {
    if (lane < k) { red[l.x] += red[l.x + k]; }
    workgroupBarrier();
  }
  if (lane == 0u && mine) { O[s * N + n] = red[l.x]; }
}`));

/**
 * matvec with wide loads, for K % 8 == 0: each of 16 threads per row reads 8 consecutive weights per step as one
 * 16-byte load (two for F32) from the raw words of W, widened in registers (BF16: shift/mask; F16: unpack).
 * Same params, bindings and output as `matvec`.
 */
export const matvecWide = perWeight((t) => {
  const decode = t === "F32"
    ? `let a = W[i * 2u]; let b = W[i * 2u + 1u];
      let w0 = bitcast<vec4<f32>>(a); let w1 = bitcast<vec4<f32>>(b);`
    : t === "BF16"
      ? `let a = W[i];
      let w0 = vec4<f32>(bitcast<f32>(a.x << 16u), bitcast<f32>(a.x & 0xffff0000u), bitcast<f32>(a.y << 16u), bitcast<f32>(a.y & 0xffff0000u));
      let w1 = vec4<f32>(bitcast<f32>(a.z << 16u), bitcast<f32>(a.z & 0xffff0000u), bitcast<f32>(a.w << 16u), bitcast<f32>(a.w & 0xffff0000u));`
      : `let a = W[i];
      let w0 = vec4<f32>(unpack2x16float(a.x), unpack2x16float(a.y)); let w1 = vec4<f32>(unpack2x16float(a.z), unpack2x16float(a.w));`;
  // F32: 8 weights = two vec4<u32>; 16-bit: one
  return matvecKernel("@group(0) @binding(1) var<storage, read> W: array<vec4<u32>>;\n", `
    let base = (row0 + n) * (K / 8u); // in units of 8 weights
    for (var k8 = lane; k8 < K / 8u; k8 += 16u) {
      let i = base + k8;
      ${decode}
      let k = k8 * 8u;
      a0 += dot(w0, xv(xo + k)) + dot(w1, xv(xo + k + 4u));
      if (T > 1u) { a1 += dot(w0, xv(xo + xs + k)) + dot(w1, xv(xo + xs + k + 4u)); }
      if (T > 2u) { a2 += dot(w0, xv(xo + 2u * xs + k)) + dot(w1, xv(xo + 2u * xs + k + 4u)); }
      if (T > 3u) { a3 += dot(w0, xv(xo + 3u * xs + k)) + dot(w1, xv(xo + 3u * xs + k + 4u)); }
    }`);
});

export const MOE_COMBINE_PARAMS = layout({ T: "u32", D: "u32", k: "u32" });

/**
 * H[t, i] += sum_j WT[t*k + j] Y[(t*k + j), i]: each token's k expert outputs, weighted, in slot order (one
 * invocation per element, so no two write the same place). Bindings: H, Y, WT.
 */
export const MOE_COMBINE = constKernel(MOE_COMBINE_PARAMS, /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> H: array<f32>;
@group(0) @binding(2) var<storage, read> Y: array<f32>;
@group(0) @binding(3) var<storage, read> WT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let D = P.D; let k = P.k; let i = g.x; let t = g.y;
  if (i >= D || t >= P.T) { return; }
  var s = 0.0;
  for (var j = 0u; j < k; j++) { s += WT[t * k + j] * Y[(t * k + j) * D + i]; }
  H[t * D + i] += s;
}`);
