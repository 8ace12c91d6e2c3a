// Absorbed-MLA decode attention: one query token per sequence against its cached latent rows [c_KV | k_rope].

import { exp4, fma, hsum4 } from "./simd";
import { f16fix, f16hi, f16x8_to_f32 } from "./f16";

const CHUNK: i32 = 32; // cache rows per online-softmax step

/** Bytes of scratch attend_latent needs per thread. */
export function attend_latent_scratch(H: i32, dc: i32): i32 {
  return ((H + 3) >> 2) * 32 + CHUNK * 16 + 4 * 16 + 3 * dc * 4 + 64;
}

/**
 * One query token of absorbed MLA against L cached latent rows (MQA: every head reads the same row).
 *   q:     [H, w] f32, w = d_c + d_rope, head h at q + h*w*4
 *   cache: row s at cache + s*cStride*4, row = [c_KV (d_c) | k_rope (d_rope)]
 *   out:   [H, d_c], out_h = sum_s softmax_s(scale * q_h . row_s) * row_s[:d_c]
 * Heads [h0, h1) only; requires w % 4 == 0, dc % 4 == 0. Heads go 4 at a time (one SIMD lane per head for the
 * scores and the online softmax), cache rows CHUNK at a time: each chunk is loaded from memory once per thread and
 * reused from cache by every head group. Scratch: attend_latent_scratch(H, dc) bytes.
 */
export function attend_latent(out: usize, q: usize, cache: usize, L: i32, w: i32, dc: i32, cStride: i32, scale: f32, h0: i32, h1: i32, scratch: usize): void {
  latent(out, q, cache, L, w, dc, cStride, scale, DT_F32, h0, h1, scratch);
}

/** Cache row dtypes: dt of attend_latent_16 is DT_BF16, or 2 for F16 (16-bit words); DT_F32 is attend_latent's own. */
const DT_F32: i32 = 0;
const DT_BF16: i32 = 1;

/** Bytes of scratch attend_latent_16 needs per thread: attend_latent's plus one chunk of rows widened to f32. */
export function attend_latent_16_scratch(H: i32, dc: i32, w: i32): i32 {
  return attend_latent_scratch(H, dc) + CHUNK * w * 4 + 64;
}

/**
 * attend_latent over a cache of 16-bit rows (dt 1 = BF16, 2 = F16; cStride in 16-bit words): each chunk of rows is
 * widened exactly to f32 once per thread, into scratch, and every head group reads it from there, so the memory
 * read per cached token is halved and the arithmetic is attend_latent's on the widened values.
 * Scratch: attend_latent_16_scratch(H, dc, w) bytes.
 */
export function attend_latent_16(out: usize, q: usize, cache: usize, L: i32, w: i32, dc: i32, cStride: i32, scale: f32, dt: i32, h0: i32, h1: i32, scratch: usize): void {
  latent(out, q, cache, L, w, dc, cStride, scale, dt, h0, h1, scratch);
}

/** cs rows of w 16-bit values (row stride srcStride words) -> cs rows of w floats at dst, contiguous. w % 4 == 0. */
function widen_rows(dst: usize, src: usize, cs: i32, w: i32, srcStride: i32, dt: i32): void {
  const w8 = <usize>(w & ~7) << 1, wb = <usize>w << 1;
  for (let j = 0; j < cs; j++) {
    const s = src + <usize>j * (<usize>srcStride << 1), d = dst + <usize>j * (<usize>w << 2);
    let i: usize = 0;
    if (dt == DT_BF16) {
      // BF16 is an f32's top half: widening is a shift
      for (; i < w8; i += 16) {
        const v = v128.load(s + i);
        v128.store(d + (i << 1), i32x4.shl(i32x4.extend_low_i16x8_u(v), 16));
        v128.store(d + (i << 1), i32x4.shl(i32x4.extend_high_i16x8_u(v), 16), 16);
      }
      if (i < wb) v128.store(d + (i << 1), i32x4.shl(i32x4.extend_low_i16x8_u(v128.load64_zero(s + i)), 16));
    } else {
      for (; i < w8; i += 16) f16x8_to_f32(d + (i << 1), s + i);
      if (i < wb) {
        // 4 halves left: even ones from the low 16 bits of each lane, odd ones from the high, then interleaved
        const v = v128.load64_zero(s + i);
        const lo = i32x4.shl(v, 16), hi = v128.and(v, i32x4.splat(0xffff0000));
        v128.store(d + (i << 1), v128.shuffle<f32>(f16fix(f16hi(lo), lo), f16fix(f16hi(hi), hi), 0, 4, 1, 5));
      }
    }
  }
}

function latent(out: usize, q: usize, cache: usize, L: i32, w: i32, dc: i32, cStride: i32, scale: f32, dt: i32, h0: i32, h1: i32, scratch: usize): void {
  if (h1 <= h0) return;
  const nh = h1 - h0;
  const ng = (nh + 3) >> 2;
  const mArr = scratch;                       // per group: running max, f32x4 (lane = head)
  const lArr = mArr + (<usize>ng << 4);       // per group: running sum
  const pArr = lArr + (<usize>ng << 4);       // [CHUNK][4]: scores, then probabilities
  const cArr = pArr + (<usize>CHUNK << 4);    // [4] correction factors
  const dummy = (cArr + 16 + 63) & ~<usize>63; // 3 rows of dc floats for padding lanes
  const wide = (dummy + 3 * (<usize>dc << 2) + 63) & ~<usize>63; // a chunk of 16-bit rows widened (dt != DT_F32)
  const qb = <usize>w << 2, ob = <usize>dc << 2;
  // bytes between rows as the loops read them: the cache's, or the widened chunk's
  const cb = dt == DT_F32 ? <usize>cStride << 2 : <usize>w << 2;
  const wb = <usize>w << 2;
  const dc8 = <usize>(dc & ~7) << 2;
  const dcb = <usize>dc << 2;
  const sv = f32x4.splat(scale);

  for (let g = 0; g < ng; g++) {
    v128.store(mArr + (<usize>g << 4), f32x4.splat(-Infinity));
    v128.store(lArr + (<usize>g << 4), f32x4.splat(0));
  }
  for (let h = h0; h < h1; h++) memory.fill(out + <usize>h * ob, 0, ob);

  for (let c0 = 0; c0 < L; c0 += CHUNK) {
    const cs = min(CHUNK, L - c0);
    let rows = cache + <usize>c0 * cb;
    if (dt != DT_F32) {
      widen_rows(wide, cache + <usize>c0 * (<usize>cStride << 1), cs, w, cStride, dt);
      rows = wide;
    }
    for (let g = 0; g < ng; g++) {
      const hb = h0 + (g << 2);
      // lanes past h1 reuse the last head's query and write into dummy rows
      const q0 = q + <usize>hb * qb;
      const q1 = q + <usize>min(hb + 1, h1 - 1) * qb;
      const q2 = q + <usize>min(hb + 2, h1 - 1) * qb;
      const q3 = q + <usize>min(hb + 3, h1 - 1) * qb;
      const o0 = out + <usize>hb * ob;
      const o1 = hb + 1 < h1 ? o0 + ob : dummy;
      const o2 = hb + 2 < h1 ? o0 + 2 * ob : dummy + dcb;
      const o3 = hb + 3 < h1 ? o0 + 3 * ob : dummy + 2 * dcb;

      // scores: p[s][lane] = scale * q_lane . row_s, two rows at a time
      let s = 0;
      for (; s + 2 <= cs; s += 2) {
        const r0 = rows + <usize>s * cb, r1 = r0 + cb;
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
        for (let o: usize = 0; o < wb; o += 16) {
          const ra = v128.load(r0 + o), rb = v128.load(r1 + o);
          const v0 = v128.load(q0 + o), v1 = v128.load(q1 + o), v2 = v128.load(q2 + o), v3 = v128.load(q3 + o);
          a0 = fma(v0, ra, a0); b0 = fma(v0, rb, b0);
          a1 = fma(v1, ra, a1); b1 = fma(v1, rb, b1);
          a2 = fma(v2, ra, a2); b2 = fma(v2, rb, b2);
          a3 = fma(v3, ra, a3); b3 = fma(v3, rb, b3);
        }
        v128.store(pArr + (<usize>s << 4), f32x4.mul(hsum4(a0, a1, a2, a3), sv));
        v128.store(pArr + (<usize>s << 4), f32x4.mul(hsum4(b0, b1, b2, b3), sv), 16);
      }
      if (s < cs) {
        const r0 = rows + <usize>s * cb;
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        for (let o: usize = 0; o < wb; o += 16) {
          const ra = v128.load(r0 + o);
          a0 = fma(v128.load(q0 + o), ra, a0);
          a1 = fma(v128.load(q1 + o), ra, a1);
          a2 = fma(v128.load(q2 + o), ra, a2);
          a3 = fma(v128.load(q3 + o), ra, a3);
        }
        v128.store(pArr + (<usize>s << 4), f32x4.mul(hsum4(a0, a1, a2, a3), sv));
      }

      // online softmax, all 4 heads at once
      const mp = mArr + (<usize>g << 4), lp = lArr + (<usize>g << 4);
      const mOld = v128.load(mp);
      let mc = mOld;
      for (let j = 0; j < cs; j++) mc = f32x4.pmax(mc, v128.load(pArr + (<usize>j << 4)));
      let corr = exp4(f32x4.sub(mOld, mc));
      corr = v128.and(corr, f32x4.eq(corr, corr));  // first chunk: -inf - -inf = NaN -> 0 (acc is 0 anyway)
      let sum = f32x4.splat(0);
      for (let j = 0; j < cs; j++) {
        const pp = pArr + (<usize>j << 4);
        const e = exp4(f32x4.sub(v128.load(pp), mc));
        v128.store(pp, e);
        sum = f32x4.add(sum, e);
      }
      v128.store(mp, mc);
      v128.store(lp, fma(v128.load(lp), corr, sum));
      v128.store(cArr, corr);

      // acc_h = acc_h * corr_h + sum_s p[s][h] * row_s[:dc], 8 floats of 4 heads per pass
      const k0 = v128.load32_splat(cArr), k1 = v128.load32_splat(cArr, 4), k2 = v128.load32_splat(cArr, 8), k3 = v128.load32_splat(cArr, 12);
      let i: usize = 0;
      for (; i < dc8; i += 32) {
        let a0 = f32x4.mul(v128.load(o0 + i), k0), c0 = f32x4.mul(v128.load(o0 + i, 16), k0);
        let a1 = f32x4.mul(v128.load(o1 + i), k1), c1 = f32x4.mul(v128.load(o1 + i, 16), k1);
        let a2 = f32x4.mul(v128.load(o2 + i), k2), c2 = f32x4.mul(v128.load(o2 + i, 16), k2);
        let a3 = f32x4.mul(v128.load(o3 + i), k3), c3 = f32x4.mul(v128.load(o3 + i, 16), k3);
        let rp = rows + i;
        for (let j = 0; j < cs; j++) {
          const ra = v128.load(rp), rb = v128.load(rp, 16);
          const pp = pArr + (<usize>j << 4);
          const p0 = v128.load32_splat(pp), p1 = v128.load32_splat(pp, 4), p2 = v128.load32_splat(pp, 8), p3 = v128.load32_splat(pp, 12);
          a0 = fma(p0, ra, a0); c0 = fma(p0, rb, c0);
          a1 = fma(p1, ra, a1); c1 = fma(p1, rb, c1);
          a2 = fma(p2, ra, a2); c2 = fma(p2, rb, c2);
          a3 = fma(p3, ra, a3); c3 = fma(p3, rb, c3);
          rp += cb;
        }
        v128.store(o0 + i, a0); v128.store(o0 + i, c0, 16);
        v128.store(o1 + i, a1); v128.store(o1 + i, c1, 16);
        v128.store(o2 + i, a2); v128.store(o2 + i, c2, 16);
        v128.store(o3 + i, a3); v128.store(o3 + i, c3, 16);
      }
      for (; i < dcb; i += 16) {
        let a0 = f32x4.mul(v128.load(o0 + i), k0);
        let a1 = f32x4.mul(v128.load(o1 + i), k1);
        let a2 = f32x4.mul(v128.load(o2 + i), k2);
        let a3 = f32x4.mul(v128.load(o3 + i), k3);
        let rp = rows + i;
        for (let j = 0; j < cs; j++) {
          const ra = v128.load(rp);
          const pp = pArr + (<usize>j << 4);
          a0 = fma(v128.load32_splat(pp), ra, a0);
          a1 = fma(v128.load32_splat(pp, 4), ra, a1);
          a2 = fma(v128.load32_splat(pp, 8), ra, a2);
          a3 = fma(v128.load32_splat(pp, 12), ra, a3);
          rp += cb;
        }
        v128.store(o0 + i, a0); v128.store(o1 + i, a1); v128.store(o2 + i, a2); v128.store(o3 + i, a3);
      }
    }
  }

  // normalize
  for (let h = h0; h < h1; h++) {
    const g = (h - h0) >> 2, lane = (h - h0) & 3;
    const l = load<f32>(lArr + (<usize>g << 4) + (<usize>lane << 2));
    const rv = f32x4.splat(<f32>1 / l);
    const o = out + <usize>h * ob;
    for (let i: usize = 0; i < dcb; i += 16) v128.store(o + i, f32x4.mul(v128.load(o + i), rv));
  }
}

/**
 * attend_latent for sequences [s0, s1) of a batch, each with one query token and its own latent cache: sequence s has
 * q at q + s*H*w*4, out at out + s*H*dc*4, and its cache described at table + s*12 as i32 (cache pointer, rows L,
 * row stride in floats). One call for every decoding sequence of a step: the pool splits the sequences.
 */
export function attend_latent_many(out: usize, q: usize, table: usize, H: i32, w: i32, dc: i32, scale: f32, s0: i32, s1: i32, scratch: usize): void {
  for (let s = s0; s < s1; s++) {
    const t = table + <usize>s * 12;
    latent(out + <usize>s * <usize>H * (<usize>dc << 2), q + <usize>s * <usize>H * (<usize>w << 2),
      <usize>load<i32>(t), load<i32>(t, 4), w, dc, load<i32>(t, 8), scale, DT_F32, 0, H, scratch);
  }
}

/** attend_latent_many over caches of 16-bit rows (dt as attend_latent_16; row strides in 16-bit words). */
export function attend_latent_many_16(out: usize, q: usize, table: usize, H: i32, w: i32, dc: i32, scale: f32, dt: i32, s0: i32, s1: i32, scratch: usize): void {
  for (let s = s0; s < s1; s++) {
    const t = table + <usize>s * 12;
    latent(out + <usize>s * <usize>H * (<usize>dc << 2), q + <usize>s * <usize>H * (<usize>w << 2),
      <usize>load<i32>(t), load<i32>(t, 4), w, dc, load<i32>(t, 8), scale, dt, 0, H, scratch);
  }
}
