/**
 * WGSL for the attention caches and the naive (decompressed) MLA form.
 *
 * Cache storage: F32 as array<f32>, or F16/BF16 two per u32 (value 2j in the low half). A stored row holds its
 * width rounded up to even in 16 bits, so every row starts on a word and the pack kernel writes whole words (two
 * invocations never write the halves of one word); an odd width leaves one zero pad value per row. Kernels read a
 * cache through an accessor made per cache type (`cacheDecl`), as wgsl.ts's weightDecl does per weight type.
 */
import type { CacheDType } from "../cpu/cache-dtype.js";
import { kernel, layout, type Kernel, type ParamFields } from "./params.js";

export type { CacheDType } from "../cpu/cache-dtype.js";

/** Values a stored cache row holds: the width, rounded up to even for 16-bit words. */
export function cacheRowElems(width: number, t: CacheDType): number {
  return t === "F32" ? width : width + (width & 1);
}

/** Bytes a stored cache row of `width` values takes. */
export function cacheRowBytes(width: number, t: CacheDType): number {
  return cacheRowElems(width, t) * (t === "F32" ? 4 : 2);
}

/** One kernel per cache type, made on first use. */
export function perCache<F extends ParamFields>(make: (t: CacheDType) => Kernel<F>): (t: CacheDType) => Kernel<F> {
  const made: { [T in CacheDType]?: Kernel<F> } = {};
  return (t) => (made[t] ??= make(t));
}

/**
 * Binding `b` named `name`, read-only, with the accessor `fn <fn>(i: u32) -> f32` for value i, and for 16-bit
 * types `fn <fn>2(j: u32) -> vec2<f32>` for values 2j and 2j+1 (one word). BF16 is the high half of an f32 (a
 * shift, exact); F16 goes through unpack2x16float, exact for every normal half (a GPU may flush halves below
 * 6.1e-5 to zero: an absolute error under 6.1e-5 on values of order 1).
 */
export function cacheDecl(b: number, name: string, fn: string, t: CacheDType): string {
  if (t === "F32") return `@group(0) @binding(${b}) var<storage, read> ${name}: array<f32>;\nfn ${fn}(i: u32) -> f32 { return ${name}[i]; }\n`;
  const [one, two] = t === "BF16"
    ? [`let w = ${name}[i >> 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));`,
      `let w = ${name}[j]; return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));`]
    : [`return unpack2x16float(${name}[i >> 1u])[i & 1u];`, `return unpack2x16float(${name}[j]);`];
  return `@group(0) @binding(${b}) var<storage, read> ${name}: array<u32>;
fn ${fn}(i: u32) -> f32 { ${one} }
fn ${fn}2(j: u32) -> vec2<f32> { ${two} }
`;
}

/**
 * f32 bits to 16-bit words, rounded to nearest even as the CPU caches round (src/backends/cpu/cache-dtype.ts:
 * f32ToF16 with subnormals and overflow to infinity, BF16 with NaN kept quiet), so a GPU cache holds the CPU's
 * words bit for bit. Written out rather than pack2x16float, whose rounding WGSL leaves to the implementation.
 */
const ROUND16 = {
  F16: /* wgsl */ `
fn to16(b: u32) -> u32 {
  let sign = (b >> 16u) & 0x8000u;
  let ex = (b >> 23u) & 0xffu;
  var man = b & 0x7fffffu;
  if (ex == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, man != 0u); }
  let e = i32(ex) - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    man = man | 0x800000u;
    let shift = u32(14 - e);
    var h = man >> shift;
    let rem = man & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u) == 1u)) { h += 1u; }
    return sign | h;
  }
  var h = (u32(e) << 10u) | (man >> 13u);
  let rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) { h += 1u; }
  return sign | h;
}`,
  BF16: /* wgsl */ `
fn to16(b: u32) -> u32 {
  if ((b & 0x7fffffffu) > 0x7f800000u) { return ((b >> 16u) | 0x40u) & 0xffffu; }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}`,
};

/** Row t of T: n values X[xo + t*xs + i] become words (o0 + t)*ws + j of the cache (ws = words per stored row). */
export const PACK_ROWS_PARAMS = layout({ T: "u32", n: "u32", xs: "u32", xo: "u32", ws: "u32", o0: "u32" });

/**
 * New cache rows, computed in f32, rounded and packed into a 16-bit cache: one invocation per output word (values
 * 2j and 2j+1 of a row; the pad of an odd row is 0). X is read as its bits. Bindings: X, C (u32).
 */
export const packRows = (t: "F16" | "BF16"): Kernel<typeof PACK_ROWS_PARAMS.fields> => PACK_KERNELS[t];
const PACK_KERNELS = {
  F16: kernel(PACK_ROWS_PARAMS, () => packCode("F16")),
  BF16: kernel(PACK_ROWS_PARAMS, () => packCode("BF16")),
};

function packCode(t: "F16" | "BF16"): string {
  return ROUND16[t] + /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<u32>;
@group(0) @binding(2) var<storage, read_write> C: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x; let t = g.y; let n = P.n;
  if (2u * j >= n || t >= P.T) { return; }
  let x = P.xo + t * P.xs + 2u * j;
  var hi = 0u;
  if (2u * j + 1u < n) { hi = to16(X[x + 1u]); }
  C[(P.o0 + t) * P.ws + j] = to16(X[x]) | (hi << 16u);
}`;
}

/** O[t*os + i] = value (r0 + t)*rs + i of the cache, i < n: rows widened to f32 (rs = values per stored row). */
export const UNPACK_ROWS_PARAMS = layout({ T: "u32", n: "u32", rs: "u32", r0: "u32", os: "u32" });

/** Cache rows widened to f32 (exactly), for the products that read them as x. Bindings: C, O. */
export const unpackRows = perCache((t) => kernel(UNPACK_ROWS_PARAMS, () => cacheDecl(1, "C", "cld", t) + /* wgsl */ `
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x; let t = g.y;
  if (i >= P.n || t >= P.T) { return; }
  O[t * P.os + i] = cld((P.r0 + t) * P.rs + i);
}`));

/** Tiles of the naive attention: TQ query tokens and SB cached positions per block, for one head per workgroup. */
export interface NaiveTiles {
  readonly TQ: number;
  readonly SB: number;
}

/**
 * The largest tiles whose workgroup memory fits: queries [TQ, d_qk + 1], a block of keys [SB, d_qk + 1] and values
 * [SB, d_v], the scores [TQ, SB] and three floats per query. Each block of keys is read once for TQ queries.
 */
export function naiveTiles(dqk: number, dv: number, maxWorkgroupBytes: number): NaiveTiles {
  const floats = (tq: number, sb: number) => (tq + sb) * (dqk + 1) + sb * dv + tq * sb + 3 * tq;
  const room = Math.floor(maxWorkgroupBytes / 4) - 64;
  for (const [TQ, SB] of [[16, 16], [16, 8], [8, 8], [8, 4], [4, 4], [2, 2], [1, 1]]) if (floats(TQ, SB) <= room) return { TQ, SB };
  throw new Error(`webgpu: naive MLA heads of d_qk ${dqk} and d_v ${dv} do not fit ${maxWorkgroupBytes} bytes of workgroup memory`);
}

/**
 * Tokens t0 + t (t < T) at positions p0 + t attend over the n positions s0 .. s0+n-1 of one chunk. Per position r
 * of the chunk, head h: k_nope and v in KV[(r*H + h)*(d_h + d_v) ..], k_rope at LAT[ko + r*ls ..]. direct: write
 * O = softmax-weighted v (the chunk holds the whole cache); else the chunk's (acc, m, l) as split `split` of
 * nSplit, for LATENT_COMBINE.
 */
export const NAIVE_ATTEND_PARAMS = layout({
  T: "u32", H: "u32", ko: "u32", ls: "u32", t0: "u32", p0: "u32", s0: "u32", n: "u32", scale: "f32", split: "u32", nSplit: "u32", direct: "bool",
});

/**
 * Naive (decompressed) MLA attention, flash-attention style: workgroup (query tile, head h) holds TQ queries
 * [q_nope | q_rope] in workgroup memory and walks the chunk in blocks of SB positions. Each block's keys
 * [k_nope_h | k_rope] and values v_h are loaded once for the TQ queries; scores are masked causally (query t sees
 * positions up to p0 + t); per query a running max m and sum l rescale the accumulators (online softmax). One
 * thread per query updates m and l and turns the block's scores into weights; the accumulators [TQ, d_v] are owned
 * by threads (element e = tid + 64 i). Query and key rows are d_qk + 1 apart in workgroup memory: the threads
 * scoring one query read SB key rows at once, which a stride of d_qk (192 = 6 * 32) would put in one memory bank.
 * Bindings: Q [*, H, d_qk], KV, LAT, O ([*, H, d_v], or PART), ML.
 */
export function naiveAttend(dn: number, dr: number, dv: number, tiles: NaiveTiles): Kernel<typeof NAIVE_ATTEND_PARAMS.fields> {
  const key = `${dn}-${dr}-${dv}-${tiles.TQ}-${tiles.SB}`;
  let k = naiveKernels.get(key);
  if (!k) naiveKernels.set(key, (k = kernel(NAIVE_ATTEND_PARAMS, () => naiveAttendCode(dn, dr, dv, tiles))));
  return k;
}
const naiveKernels = new Map<string, Kernel<typeof NAIVE_ATTEND_PARAMS.fields>>();

function naiveAttendCode(dn: number, dr: number, dv: number, { TQ, SB }: NaiveTiles): string {
  const WG = 64, NE = Math.ceil((TQ * dv) / WG);
  return /* wgsl */ `
const DN = ${dn}u; const DV = ${dv}u; const DQK = ${dn + dr}u; const KS = DQK + 1u; const TQ = ${TQ}u; const SB = ${SB}u; const WG = ${WG}u; const NE = ${NE}u;
const MASKED = -3.0e38;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> KV: array<f32>;
@group(0) @binding(3) var<storage, read> LAT: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
@group(0) @binding(5) var<storage, read_write> ML: array<f32>;
var<workgroup> qs: array<f32, ${TQ * (dn + dr + 1)}>;
var<workgroup> ks: array<f32, ${SB * (dn + dr + 1)}>;
var<workgroup> vs: array<f32, ${SB * dv}>;
var<workgroup> sc: array<f32, ${TQ * SB}>;
var<workgroup> mrow: array<f32, ${TQ}>;
var<workgroup> lrow: array<f32, ${TQ}>;
var<workgroup> arow: array<f32, ${TQ}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let H = P.H; let h = wg.y; let tq0 = wg.x * TQ; let tid = l.x; let s0 = P.s0;
  let nt = min(TQ, P.T - tq0);
  for (var e = tid; e < TQ * DQK; e += WG) {
    let tt = e / DQK; let i = e % DQK; var v = 0.0;
    if (tt < nt) { v = Q[((P.t0 + tq0 + tt) * H + h) * DQK + i]; }
    qs[tt * KS + i] = v;
  }
  if (tid < TQ) { mrow[tid] = MASKED; lrow[tid] = 0.0; }
  var acc: array<f32, NE>;
  for (var i = 0u; i < NE; i++) { acc[i] = 0.0; }
  // the tile's last query sees positions before p0 + tq0 + nt
  let end = min(s0 + P.n, P.p0 + tq0 + nt);
  for (var b0 = s0; b0 < end; b0 += SB) {
    let nb = min(SB, end - b0);
    workgroupBarrier();
    for (var e = tid; e < SB * DQK; e += WG) {
      let s = e / DQK; let i = e % DQK; let r = b0 - s0 + s; var v = 0.0;
      if (s < nb) {
        if (i < DN) { v = KV[(r * H + h) * (DN + DV) + i]; } else { v = LAT[P.ko + r * P.ls + i - DN]; }
      }
      ks[s * KS + i] = v;
    }
    for (var e = tid; e < SB * DV; e += WG) {
      let s = e / DV; var v = 0.0;
      if (s < nb) { v = KV[((b0 - s0 + s) * H + h) * (DN + DV) + DN + e % DV]; }
      vs[e] = v;
    }
    workgroupBarrier();
    for (var p = tid; p < TQ * SB; p += WG) {
      let tt = p / SB; let s = p % SB; var d = MASKED;
      if (tt < nt && s < nb && b0 + s <= P.p0 + tq0 + tt) {
        d = 0.0;
        for (var i = 0u; i < DQK; i++) { d += qs[tt * KS + i] * ks[s * KS + i]; }
        d *= P.scale;
      }
      sc[p] = d;
    }
    workgroupBarrier();
    if (tid < TQ) {
      let m = mrow[tid]; var mb = m;
      for (var s = 0u; s < nb; s++) { mb = max(mb, sc[tid * SB + s]); }
      var ls = 0.0;
      for (var s = 0u; s < SB; s++) {
        let v = sc[tid * SB + s];
        let w = select(0.0, exp(v - mb), v > -1.0e38); // masked positions weigh nothing
        sc[tid * SB + s] = w; ls += w;
      }
      let alpha = exp(m - mb);
      arow[tid] = alpha; lrow[tid] = lrow[tid] * alpha + ls; mrow[tid] = mb;
    }
    workgroupBarrier();
    for (var i = 0u; i < NE; i++) {
      let e = tid + i * WG;
      if (e >= TQ * DV) { break; }
      let tt = e / DV; let c = e % DV;
      var a = acc[i] * arow[tt];
      for (var s = 0u; s < nb; s++) { a += sc[tt * SB + s] * vs[s * DV + c]; }
      acc[i] = a;
    }
  }
  workgroupBarrier();
  for (var i = 0u; i < NE; i++) {
    let e = tid + i * WG;
    if (e >= TQ * DV) { break; }
    let tt = e / DV; let c = e % DV;
    if (tt >= nt) { continue; }
    let t = tq0 + tt;
    if (P.direct != 0u) {
      O[((P.t0 + t) * H + h) * DV + c] = acc[i] / lrow[tt];
    } else {
      let row = (t * P.nSplit + P.split) * H + h;
      O[row * DV + c] = acc[i];
      if (c == 0u) { ML[row * 2u] = mrow[tt]; ML[row * 2u + 1u] = lrow[tt]; }
    }
  }
}`;
}
