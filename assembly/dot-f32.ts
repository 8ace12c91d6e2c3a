// f32 dot-product blocks, K along the SIMD lanes: the T == 1 row of linear_f32, and gemm_f32, which linear_tiled
// uses for the tokens its 8-token panels leave over (weights of every dtype, widened to f32 first).

import { acc2, acc4, hsum, hsum4 } from "./simd";

/**
 * 4 consecutive outputs out[0..3] = dot(x, W rows r..r+3), x and the rows f32 with K % 8 == 0.
 * 16 columns per step through running pointers (immediate load offsets, no per-load address arithmetic).
 */
// @ts-ignore: decorator
@inline function dot4_f32(out: usize, x: usize, w: usize, rowBytes: usize, K: i32): void {
  let p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes, px = x;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const end = x + (<usize>(K >> 4) << 6);
  while (px < end) {
    const x0 = v128.load(px), x1 = v128.load(px, 16), x2 = v128.load(px, 32), x3 = v128.load(px, 48);
    a0 = acc4(a0, v128.load(p0), x0, v128.load(p0, 16), x1, v128.load(p0, 32), x2, v128.load(p0, 48), x3);
    a1 = acc4(a1, v128.load(p1), x0, v128.load(p1, 16), x1, v128.load(p1, 32), x2, v128.load(p1, 48), x3);
    a2 = acc4(a2, v128.load(p2), x0, v128.load(p2, 16), x1, v128.load(p2, 32), x2, v128.load(p2, 48), x3);
    a3 = acc4(a3, v128.load(p3), x0, v128.load(p3, 16), x1, v128.load(p3, 32), x2, v128.load(p3, 48), x3);
    px += 64; p0 += 64; p1 += 64; p2 += 64; p3 += 64;
  }
  if (K & 8) {
    const x0 = v128.load(px), x1 = v128.load(px, 16);
    a0 = acc2(a0, v128.load(p0), x0, v128.load(p0, 16), x1);
    a1 = acc2(a1, v128.load(p1), x0, v128.load(p1, 16), x1);
    a2 = acc2(a2, v128.load(p2), x0, v128.load(p2, 16), x1);
    a3 = acc2(a3, v128.load(p3), x0, v128.load(p3, 16), x1);
  }
  v128.store(out, hsum4(a0, a1, a2, a3));
}

/** One row: same arithmetic (and order) as a lane of dot4_f32. */
// @ts-ignore: decorator
@inline export function dot1_f32(x: usize, w: usize, K: i32): f32 {
  let p0 = w, px = x;
  let a0 = f32x4.splat(0);
  const end = x + (<usize>(K >> 4) << 6);
  while (px < end) {
    a0 = acc4(a0, v128.load(p0), v128.load(px), v128.load(p0, 16), v128.load(px, 16), v128.load(p0, 32), v128.load(px, 32), v128.load(p0, 48), v128.load(px, 48));
    px += 64; p0 += 64;
  }
  if (K & 8) a0 = acc2(a0, v128.load(p0), v128.load(px), v128.load(p0, 16), v128.load(px, 16));
  return hsum(a0);
}

/** Two tokens x, x + xb against 4 f32 rows: outputs to out[0..3] and out2[0..3]. 8 columns per step. */
// @ts-ignore: decorator
@inline function dot4x2_f32(out: usize, out2: usize, x: usize, xb: usize, w: usize, rowBytes: usize, K: i32): void {
  let p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes, px = x, py = x + xb;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const end = x + (<usize>K << 2);
  while (px < end) {
    const x0 = v128.load(px), x1 = v128.load(px, 16), y0 = v128.load(py), y1 = v128.load(py, 16);
    let v = v128.load(p0), u = v128.load(p0, 16);
    a0 = acc2(a0, v, x0, u, x1); b0 = acc2(b0, v, y0, u, y1);
    v = v128.load(p1); u = v128.load(p1, 16);
    a1 = acc2(a1, v, x0, u, x1); b1 = acc2(b1, v, y0, u, y1);
    v = v128.load(p2); u = v128.load(p2, 16);
    a2 = acc2(a2, v, x0, u, x1); b2 = acc2(b2, v, y0, u, y1);
    v = v128.load(p3); u = v128.load(p3, 16);
    a3 = acc2(a3, v, x0, u, x1); b3 = acc2(b3, v, y0, u, y1);
    px += 32; py += 32; p0 += 32; p1 += 32; p2 += 32; p3 += 32;
  }
  v128.store(out, hsum4(a0, a1, a2, a3));
  v128.store(out2, hsum4(b0, b1, b2, b3));
}

/**
 * out[t, n] for t < T, n in [n0, n1) with W f32 rows at w (row n at w + n*rowBytes).
 * Weight rows go 4 at a time; tokens 2 at a time, so a weight row is read ceil(T/2) times from cache
 * but (the 4-row block being 4*K*4 bytes) only once from memory.
 */
export function gemm_f32(out: usize, x: usize, T: i32, K: i32, w: usize, rowBytes: usize, n0: i32, n1: i32, xStride: i32, outStride: i32): void {
  const xb = <usize>xStride << 2, ob = <usize>outStride << 2;
  let n = n0;
  for (; n + 4 <= n1; n += 4) {
    const wr = w + <usize>n * rowBytes;
    let t = 0;
    for (; t + 2 <= T; t += 2) {
      const o = out + <usize>t * ob + (<usize>n << 2);
      dot4x2_f32(o, o + ob, x + <usize>t * xb, xb, wr, rowBytes, K);
    }
    if (t < T) dot4_f32(out + <usize>t * ob + (<usize>n << 2), x + <usize>t * xb, wr, rowBytes, K);
  }
  for (; n < n1; n++) {
    const wr = w + <usize>n * rowBytes;
    for (let t = 0; t < T; t++) {
      store<f32>(out + <usize>t * ob + (<usize>n << 2), dot1_f32(x + <usize>t * xb, wr, K));
    }
  }
}
