/**
 * WGSL sources of the WebGPU kernels. Every kernel reads its sizes from a small uniform block (16 u32 words; floats
 * bit-cast) at binding 0 and its buffers from bindings 1.., so one pipeline serves every shape.
 *
 * Weights stay in their stored precision: F32 as array<f32>, BF16 and F16 two per u32 (the H100's Dawn offers no
 * shader-f16), widened in `wld` inside the kernel; sums are f32.
 */

export type WeightType = "F32" | "BF16" | "F16";

const HEADER = /* wgsl */ `
struct Params { u: array<vec4<u32>, 4> };
@group(0) @binding(0) var<uniform> P: Params;
fn pu(i: u32) -> u32 { return P.u[i >> 2u][i & 3u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }
`;

/** Binding `b` named W with element accessor wld(i) for the weight type. */
function weightDecl(b: number, t: WeightType): string {
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
 * out[t, n] (+)= sum_k X[xo + t*xs + k] W[(row0 + n)*K + k] for T > 4 rows: 32x32 output tiles per workgroup,
 * 8x8 threads with 4x4 outputs each, K in steps of 16 through workgroup memory. The per-thread accumulators are
 * generated as scalars (no dynamically indexed private arrays) and workgroups are 64 threads: SwiftShader, the
 * GPU of CI machines, crashes on both when several workgroups run at once.
 * Params: T K N row0 xs os xo oo accumulate.
 */
export function matmulTiled(t: WeightType): string {
  const R = MATMUL_TILE / 8;
  const idx: [number, number][] = [];
  for (let i = 0; i < R; i++) for (let j = 0; j < R; j++) idx.push([i, j]);
  const decl = idx.map(([i, j]) => `var s${i}_${j} = 0.0;`).join(" ");
  const loadA = Array.from({ length: R }, (_, i) => `let a${i} = xt[l.y + ${8 * i}u][k];`).join(" ");
  const loadB = Array.from({ length: R }, (_, j) => `let b${j} = wt[l.x + ${8 * j}u][k];`).join(" ");
  const fma = idx.map(([i, j]) => `s${i}_${j} += a${i} * b${j};`).join(" ");
  const store = idx.map(([i, j]) => `st(t0 + l.y + ${8 * i}u, n0 + l.x + ${8 * j}u, s${i}_${j});`).join("\n  ");
  const loads = (MATMUL_TILE * 16) / 64;
  return HEADER + weightDecl(1, t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
var<workgroup> xt: array<array<f32, 17>, ${MATMUL_TILE}>;
var<workgroup> wt: array<array<f32, 17>, ${MATMUL_TILE}>;
fn st(tt: u32, nn: u32, v: f32) {
  if (tt >= pu(0u) || nn >= pu(2u)) { return; }
  let o = pu(7u) + tt * pu(5u) + nn;
  if (pu(8u) != 0u) { O[o] += v; } else { O[o] = v; }
}
@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let T = pu(0u); let K = pu(1u); let N = pu(2u); let row0 = pu(3u);
  let xs = pu(4u); let xo = pu(6u);
  let t0 = wg.y * ${MATMUL_TILE}u; let n0 = wg.x * ${MATMUL_TILE}u;
  let tid = l.y * 8u + l.x;
  ${decl}
  for (var k0 = 0u; k0 < K; k0 += 16u) {
    for (var i = 0u; i < ${loads}u; i++) {
      let e = tid + i * 64u; let r = e >> 4u; let c = e & 15u;
      let tt = t0 + r; let nn = n0 + r; let k = k0 + c;
      var xv = 0.0; var wv = 0.0;
      if (tt < T && k < K) { xv = X[xo + tt * xs + k]; }
      if (nn < N && k < K) { wv = wld((row0 + nn) * K + k); }
      xt[r][c] = xv; wt[r][c] = wv;
    }
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
 */
export function matvec(t: WeightType): string {
  return matvecShader(weightDecl(1, t), `
    let wo = (row0 + n) * K;
    for (var k = lane; k < K; k += 16u) {
      let w = wld(wo + k);
      a0 += w * X[xo + k];
      if (T > 1u) { a1 += w * X[xo + xs + k]; }
      if (T > 2u) { a2 += w * X[xo + 2u * xs + k]; }
      if (T > 3u) { a3 += w * X[xo + 3u * xs + k]; }
    }`);
}

/**
 * The skeleton both matrix-vector products share: 4 rows per workgroup of 64 (16 threads a row), per-thread sums
 * a0..a3 for up to 4 tokens from `loop` (which sees T K N row0 xs xo, lane and the row n < N), then a tree
 * reduction in workgroup memory and the (accumulating) store.
 */
function matvecShader(weights: string, loop: string): string {
  return HEADER + weights + /* wgsl */ `
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
var<workgroup> red: array<f32, 256>;
fn xv(o: u32) -> vec4<f32> { return vec4<f32>(X[o], X[o + 1u], X[o + 2u], X[o + 3u]); }
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let T = pu(0u); let K = pu(1u); let N = pu(2u); let row0 = pu(3u);
  let xs = pu(4u); let os = pu(5u); let xo = pu(6u); let oo = pu(7u);
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
      if (pu(8u) != 0u) { O[o] += red[tt * 64u + l.x]; } else { O[o] = red[tt * 64u + l.x]; }
    }
  }
}`;
}

/** RMSNorm of T rows, one workgroup per row. Params: T D xs os xo oo eps(f32). Bindings: X, Wn (f32), O. */
export const RMSNORM = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wn: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
var<workgroup> red: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let D = pu(1u); let xs = pu(2u); let os = pu(3u); let xo = pu(4u) + wg.x * xs; let oo = pu(5u) + wg.x * os;
  var ss = 0.0;
  for (var i = l.x; i < D; i += 64u) { let v = X[xo + i]; ss += v * v; }
  red[l.x] = ss;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (l.x < s) { red[l.x] += red[l.x + s]; }
    workgroupBarrier();
  }
  let r = inverseSqrt(red[0] / f32(D) + pf(6u));
  for (var i = l.x; i < D; i += 64u) { O[oo + i] = Wn[i] * (X[xo + i] * r); }
}`;

/**
 * Rotary embedding in place on T rows x heads slices of d dims at X[xo + t*rowStride + h*headStride + offset]:
 * interleaved pairs (2j, 2j+1) or halves (j, j + d/2). CS holds T rows of [cos d/2 | sin d/2].
 * Params: T heads d offset rowStride headStride xo halves.
 */
export const ROPE = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read> CS: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let T = pu(0u); let H = pu(1u); let d = pu(2u); let half = d / 2u;
  let j = g.x; let h = g.y; let t = g.z;
  if (j >= half || h >= H || t >= T) { return; }
  let o = pu(6u) + t * pu(4u) + h * pu(5u) + pu(3u);
  let c = CS[t * d + j]; let s = CS[t * d + half + j];
  var ia = o + 2u * j; var ib = ia + 1u;
  if (pu(7u) != 0u) { ia = o + j; ib = o + half + j; }
  let a = X[ia]; let b = X[ib];
  X[ia] = a * c - b * s;
  X[ib] = a * s + b * c;
}`;

/** out[t*os + j] = silu(G[t*gs + j]) * U[t*us + j] for j < F. Params: T F gs us os go uo. Bindings: G, U, O. */
export const SILU_MUL = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read> U: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g3: vec3u) {
  let F = pu(1u); let j = g3.x; let t = g3.y;
  if (j >= F || t >= pu(0u)) { return; }
  let g = G[pu(5u) + t * pu(2u) + j];
  O[t * pu(4u) + j] = g / (1.0 + exp(-g)) * U[pu(6u) + t * pu(3u) + j];
}`;

/**
 * Y[yrow(t)*D + i] += a(t) * X[t*D + i]: residual adds (a = 1, rows in order) and the MoE scatter (rows and
 * weights from IDX/WT when indexed, starting at entry i0). Params: T D indexed a(f32) i0. Bindings: Y, X, IDX (u32), WT (f32).
 */
export const AXPY = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> IDX: array<u32>;
@group(0) @binding(4) var<storage, read> WT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let D = pu(1u); let i = g.x; let t = g.y;
  if (i >= D || t >= pu(0u)) { return; }
  var row = t; var a = pf(3u);
  if (pu(2u) != 0u) { row = IDX[pu(4u) + t]; a = WT[pu(4u) + t]; }
  Y[row * D + i] += a * X[t * D + i];
}`;

/** Y[yo + t*ys + i] += B[i] for i < N: a bias on every row. Params: T N ys yo. Bindings: Y, B. */
export const BIAS = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x; let t = g.y;
  if (i >= pu(1u) || t >= pu(0u)) { return; }
  Y[pu(3u) + t * pu(2u) + i] += B[i];
}`;

/** O[t*D + i] = X[IDX[i0 + t]*D + i] (MoE token gather). Params: T D i0. Bindings: X, IDX, O. */
export const GATHER = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> IDX: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let D = pu(1u); let i = g.x; let t = g.y;
  if (i >= D || t >= pu(0u)) { return; }
  O[t * D + i] = X[IDX[pu(2u) + t] * D + i];
}`;

/** O[(o0 + t)*os + oc + i] = X[t*xs + xc + i] for i < n: copy a column block of T rows. Params: T n xs xc os oc o0. */
export const COPY_ROWS = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x; let t = g.y;
  if (i >= pu(1u) || t >= pu(0u)) { return; }
  O[(pu(6u) + t) * pu(4u) + pu(5u) + i] = X[t * pu(2u) + pu(3u) + i];
}`;

/** Embedding rows: O[t*D + i] = W[IDS[t]*D + i] widened. Params: T D. Bindings: W, IDS, O. */
export function embed(t: WeightType): string {
  return HEADER + weightDecl(1, t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read> IDS: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let D = pu(1u); let i = g.x; let t = g.y;
  if (i >= D || t >= pu(0u)) { return; }
  O[t * D + i] = wld(IDS[t] * D + i);
}`;
}

/**
 * Absorbed MLA, query side: QC[t, h, c] = sum_{i < dn} Q[t, h, i] W^UK_h[i, c], W^UK_h = rows h*(dn+dv)..+dn of
 * kv_b_proj [H (dn+dv), dc]. One thread per (c, h, t): consecutive threads read consecutive weights.
 * Params: T H dn dv dc dqk. Bindings: W (kv_b), Q, QC.
 */
export function absorbQuery(t: WeightType): string {
  return HEADER + weightDecl(1, t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read> Q: array<f32>;
@group(0) @binding(3) var<storage, read_write> QC: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let H = pu(1u); let dn = pu(2u); let dv = pu(3u); let dc = pu(4u); let dqk = pu(5u);
  let c = g.x; let h = g.y; let t = g.z;
  if (c >= dc || h >= H || t >= pu(0u)) { return; }
  let q0 = (t * H + h) * dqk; let w0 = h * (dn + dv) * dc + c;
  var s = 0.0;
  for (var i = 0u; i < dn; i++) { s += Q[q0 + i] * wld(w0 + i * dc); }
  QC[(t * H + h) * dc + c] = s;
}`;
}

/**
 * Absorbed MLA, output side: OV[t, h, j] = sum_c LAT[t, h, c] W^UV_h[j, c], W^UV_h = rows h*(dn+dv)+dn..+dv of
 * kv_b_proj. One workgroup of 64 threads per (j, h, t) output, striding over c, reduced in workgroup memory.
 * Params: T H dn dv dc. Bindings: W (kv_b), LAT, OV.
 */
export function absorbOutput(t: WeightType): string {
  return HEADER + weightDecl(1, t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read> LAT: array<f32>;
@group(0) @binding(3) var<storage, read_write> OV: array<f32>;
var<workgroup> red: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let H = pu(1u); let dn = pu(2u); let dv = pu(3u); let dc = pu(4u);
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
}`;
}

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
 * Fused absorbed-MLA attention, flash-decoding style. Workgroup (split, head group, token t) runs over its chunk of
 * the latent cache C [L, dc + dr] (rows [c_KV | k_rope]) for HG heads: each block of SB cached rows is loaded into
 * workgroup memory once and scored against every head of the group, score = scale (qc . c_KV + q_rope . k_rope);
 * a running max m and sum l per head rescale the accumulators acc[h, c] = sum p c_KV (online softmax). The chunk's
 * (acc, m, l) go to PART/ML; LATENT_COMBINE merges the splits. Token t sees positions 0..p0+t (causal).
 * The accumulators are owned by threads (element e = tid + WG i of HG*dc), so dc*HG/WG registers per thread.
 * Params: T H dc dr dqk dn p0 chunk nSplit scale(f32). Bindings: QC [T,H,dc], Q [T,H,dqk], C, PART, ML.
 */
export function latentAttend(dc: number, dr: number, tiles: { SB: number; HG: number; WG: number }): string {
  const { SB, HG, WG } = tiles;
  const NE = Math.ceil((HG * dc) / WG);
  const R = dc + dr;
  return HEADER + /* wgsl */ `
const DC = ${dc}u; const DR = ${dr}u; const R = ${R}u; const SB = ${SB}u; const HG = ${HG}u; const WG = ${WG}u; const NE = ${NE}u;
@group(0) @binding(1) var<storage, read> QC: array<f32>;
@group(0) @binding(2) var<storage, read> Q: array<f32>;
@group(0) @binding(3) var<storage, read> C: array<f32>;
@group(0) @binding(4) var<storage, read_write> PART: array<f32>;
@group(0) @binding(5) var<storage, read_write> ML: array<f32>;
var<workgroup> lat: array<f32, ${SB * R}>;
var<workgroup> qs: array<f32, ${HG * R}>;
var<workgroup> sc: array<f32, ${HG * SB}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let H = pu(1u); let dqk = pu(4u); let dn = pu(5u); let p0 = pu(6u); let chunk = pu(7u); let nSplit = pu(8u); let scale = pf(9u);
  let split = wg.x; let h0 = wg.y * HG; let t = wg.z; let tid = l.x;
  let nh = min(HG, H - h0);
  let visible = p0 + t + 1u;
  let s0 = split * chunk; let s1 = min(s0 + chunk, visible);
  // this group's queries: [qc | q_rope] per head
  for (var e = tid; e < HG * R; e += WG) {
    let hh = e / R; let c = e % R; var v = 0.0;
    if (hh < nh) {
      if (c < DC) { v = QC[(t * H + h0 + hh) * DC + c]; } else { v = Q[(t * H + h0 + hh) * dqk + dn + c - DC]; }
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
    for (var e = tid; e < SB * R; e += WG) {
      var v = 0.0;
      if (e / R < nb) { v = C[b0 * R + e]; }
      lat[e] = v;
    }
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

/**
 * Merge the splits of LATENT_ATTEND: LAT[t, h, c] = sum_s e^(m_s - M) acc_s[c] / sum_s e^(m_s - M) l_s.
 * Params: T H dc nSplit. Bindings: PART, ML, LAT.
 */
export const LATENT_COMBINE = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read> PART: array<f32>;
@group(0) @binding(2) var<storage, read> ML: array<f32>;
@group(0) @binding(3) var<storage, read_write> LAT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let H = pu(1u); let dc = pu(2u); let nS = pu(3u);
  let c = g.x; let h = g.y; let t = g.z;
  if (c >= dc || h >= H || t >= pu(0u)) { return; }
  var M = -3.0e38;
  for (var s = 0u; s < nS; s++) { let l = ML[((t * nS + s) * H + h) * 2u + 1u]; if (l > 0.0) { M = max(M, ML[((t * nS + s) * H + h) * 2u]); } }
  var num = 0.0; var den = 0.0;
  for (var s = 0u; s < nS; s++) {
    let row = (t * nS + s) * H + h;
    let l = ML[row * 2u + 1u];
    if (l > 0.0) { let f = exp(ML[row * 2u] - M); num += f * PART[row * dc + c]; den += f * l; }
  }
  LAT[(t * H + h) * dc + c] = num / den;
}`;

/**
 * Causal attention over a per-head K/V cache (MHA / GQA / MQA): one workgroup of 64 threads per (query head h,
 * token t), blocks of 64 cached positions scored one per thread, online softmax, each thread owning value dims
 * tid, tid+64, ... (dv <= 256). Query head h reads KV head h / (H / G).
 * A sliding window W > 0 limits token t to its last W positions (Mistral).
 * Params: T H G dk dv p0 scale(f32) W. Bindings: Q [T,H,dk], K [L,G,dk], V [L,G,dv], O [T,H,dv].
 */
export const GQA_ATTEND = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
var<workgroup> sc: array<f32, 64>;
var<workgroup> red: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let H = pu(1u); let G = pu(2u); let dk = pu(3u); let dv = pu(4u); let p0 = pu(5u); let scale = pf(6u);
  let h = wg.x; let t = wg.y; let tid = l.x;
  let g = h / (H / G);
  let visible = p0 + t + 1u;
  var start = 0u;
  if (pu(7u) > 0u && visible > pu(7u)) { start = visible - pu(7u); }
  let q0 = (t * H + h) * dk;
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  var m = -3.0e38; var lsum = 0.0;
  for (var b0 = start; b0 < visible; b0 += 64u) {
    let s = b0 + tid;
    var d = -3.0e38;
    if (s < visible) {
      d = 0.0;
      let k0 = (s * G + g) * dk;
      for (var i = 0u; i < dk; i++) { d += Q[q0 + i] * K[k0 + i]; }
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
      let v0 = ((b0 + s2) * G + g) * dv;
      for (var j = 0u; j < 4u; j++) { let c = tid + 64u * j; if (c < dv) { acc[j] += p * V[v0 + c]; } }
    }
    m = mb;
    workgroupBarrier();
  }
  for (var j = 0u; j < 4u; j++) { let c = tid + 64u * j; if (c < dv) { O[(t * H + h) * dv + c] = acc[j] / lsum; } }
}`;

/** Index of the largest of N values (first on ties), for greedy decoding on the GPU. Params: N. Bindings: X, OUT (u32). */
export const ARGMAX = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> OUT: array<u32>;
var<workgroup> bv: array<f32, 64>;
var<workgroup> bi: array<u32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) l: vec3u) {
  let N = pu(0u);
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
}`;

/** Largest expert count the routing kernel holds per token (DeepSeek-V3 has 256). */
export const MAX_EXPERTS = 256;

/**
 * MoE routing of T tokens, one invocation per token, as src/model/router.ts (ties to the lower index):
 * method 0 (DeepSeek-V3 noaux_tc): s = sigmoid(logit), choice = s + bias, groups ranked by the sum of their top-2
 * choices; method 1 (V2 greedy) and 2 (V2 group_limited_greedy): s = softmax(logits), method 2 zeroes all but the
 * topk_group groups with the highest max(s). Top-k by choice (or s) among kept experts; weights = s, normalised
 * when asked (method 0: norm_topk_prob; 1-2: norm_topk_prob and k > 1), times routed_scaling_factor.
 * Params: T E k nGroup topkGroup method norm scaling(f32) hasBias. Bindings: L [T,E], BIAS [E], EXP [T,k] u32, WT [T,k].
 */
export const ROUTE = HEADER + /* wgsl */ `
const ME = ${MAX_EXPERTS}u;
@group(0) @binding(1) var<storage, read> L: array<f32>;
@group(0) @binding(2) var<storage, read> BIAS: array<f32>;
@group(0) @binding(3) var<storage, read_write> EXP: array<u32>;
@group(0) @binding(4) var<storage, read_write> WT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let t = g.x; let E = pu(1u); let k = pu(2u); let nG = pu(3u); let kG = pu(4u); let method = pu(5u);
  if (t >= pu(0u)) { return; }
  var s: array<f32, ME>; var ch: array<f32, ME>; var keep: array<bool, ME>;
  if (method == 0u) {
    for (var e = 0u; e < E; e++) {
      s[e] = 1.0 / (1.0 + exp(-L[t * E + e]));
      ch[e] = s[e];
      if (pu(8u) != 0u) { ch[e] += BIAS[e]; }
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
  if (pu(6u) != 0u) { d = total + 1e-20; }
  for (var j = 0u; j < k; j++) { WT[t * k + j] = WT[t * k + j] / d * pf(7u); }
}`;

/**
 * Expert products by slot, for decode (T*k slots, no readback): out[s, n] = sum_c X[xrow(s)*K + c] W[(EXP[s]*R + n)*K + c]
 * for n < N, where R rows belong to each expert in the stacked weight and xrow(s) = s / xdiv (xdiv = k: the slot's
 * token; 1: the slot's own row). 4 rows per workgroup of 64, 16 threads per row. Params: S K N R xdiv. Bindings: W, X, EXP, O.
 */
export function slotMatvec(t: WeightType): string {
  return HEADER + weightDecl(1, t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> EXP: array<u32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
var<workgroup> red: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let K = pu(1u); let N = pu(2u); let R = pu(3u);
  let s = wg.y; let lane = l.x & 15u; let n = wg.x * 4u + (l.x >> 4u);
  var a = 0.0;
  if (n < N) {
    let wo = (EXP[s] * R + n) * K; let xo = (s / pu(4u)) * K;
    for (var c = lane; c < K; c += 16u) { a += wld(wo + c) * X[xo + c]; }
  }
  red[l.x] = a;
  workgroupBarrier();
  for (var k = 8u; k > 0u; k >>= 1u) {
    if (lane < k) { red[l.x] += red[l.x + k]; }
    workgroupBarrier();
  }
  if (lane == 0u && n < N) { O[s * N + n] = red[l.x]; }
}`;
}

/**
 * matvec with wide loads, for K % 8 == 0: each of 16 threads per row reads 8 consecutive weights per step as one
 * 16-byte load (two for F32) from the raw words of W, widened in registers (BF16: shift/mask; F16: unpack).
 * Same params, bindings and output as `matvec`.
 */
export function matvecWide(t: WeightType): string {
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
  return matvecShader("@group(0) @binding(1) var<storage, read> W: array<vec4<u32>>;\n", `
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
}

/**
 * H[t, i] += sum_j WT[t*k + j] Y[(t*k + j), i]: each token's k expert outputs, weighted, in slot order (one
 * invocation per element, so no two write the same place). Params: T D k. Bindings: H, Y, WT.
 */
export const MOE_COMBINE = HEADER + /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> H: array<f32>;
@group(0) @binding(2) var<storage, read> Y: array<f32>;
@group(0) @binding(3) var<storage, read> WT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let D = pu(1u); let k = pu(2u); let i = g.x; let t = g.y;
  if (i >= D || t >= pu(0u)) { return; }
  var s = 0.0;
  for (var j = 0u; j < k; j++) { s += WT[t * k + j] * Y[(t * k + j) * D + i]; }
  H[t * D + i] += s;
}`;
