// Row- and element-wise kernels: RMSNorm, SiLU-gated product, softmax.

import { exp4, expf, fma, hsum } from "./simd";

/** RMSNorm over rows [t0, t1) of width D: out = w * x / sqrt(mean(x^2) + eps). out may alias x. */
export function rmsnorm(out: usize, x: usize, D: i32, w: usize, eps: f32, t0: i32, t1: i32, xStride: i32, outStride: i32): void {
  const D4 = <usize>(D & ~3);
  for (let t = t0; t < t1; t++) {
    const xr = x + ((<usize>t * <usize>xStride) << 2);
    const orow = out + ((<usize>t * <usize>outStride) << 2);
    let a = f32x4.splat(0);
    let i: usize = 0;
    for (; i < D4; i += 4) {
      const v = v128.load(xr + (i << 2));
      a = fma(v, v, a);
    }
    let ss = hsum(a);
    for (; i < <usize>D; i++) { const v = load<f32>(xr + (i << 2)); ss += v * v; }
    const r = <f32>1.0 / Mathf.sqrt(ss / <f32>D + eps);
    const rv = f32x4.splat(r);
    i = 0;
    for (; i < D4; i += 4) {
      v128.store(orow + (i << 2), f32x4.mul(v128.load(w + (i << 2)), f32x4.mul(v128.load(xr + (i << 2)), rv)));
    }
    for (; i < <usize>D; i++) store<f32>(orow + (i << 2), load<f32>(w + (i << 2)) * (load<f32>(xr + (i << 2)) * r));
  }
}

/** out[i] = silu(gate[i]) * up[i] for i in [i0, i1). out may alias gate or up. */
export function silu_mul(out: usize, gate: usize, up: usize, i0: i32, i1: i32): void {
  let i = <usize>i0;
  const one = f32x4.splat(1);
  for (; i + 4 <= <usize>i1; i += 4) {
    const g = v128.load(gate + (i << 2));
    const s = f32x4.div(g, f32x4.add(one, exp4(f32x4.neg(g))));
    v128.store(out + (i << 2), f32x4.mul(s, v128.load(up + (i << 2))));
  }
  for (; i < <usize>i1; i++) {
    const g = load<f32>(gate + (i << 2));
    store<f32>(out + (i << 2), (g / (<f32>1 + expf(-g))) * load<f32>(up + (i << 2)));
  }
}

/** In-place numerically stable softmax of x[0 .. n). */
export function softmax(x: usize, n: i32): void {
  const n4 = <usize>(n & ~3);
  let mv = f32x4.splat(-Infinity);
  let i: usize = 0;
  for (; i < n4; i += 4) mv = f32x4.pmax(mv, v128.load(x + (i << 2)));
  let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
  for (; i < <usize>n; i++) m = max(m, load<f32>(x + (i << 2)));
  const ms = f32x4.splat(m);
  let sv = f32x4.splat(0);
  for (i = 0; i < n4; i += 4) {
    const e = exp4(f32x4.sub(v128.load(x + (i << 2)), ms));
    v128.store(x + (i << 2), e);
    sv = f32x4.add(sv, e);
  }
  let s = hsum(sv);
  for (; i < <usize>n; i++) {
    const e = expf(load<f32>(x + (i << 2)) - m);
    store<f32>(x + (i << 2), e);
    s += e;
  }
  const r = <f32>1 / s;
  const rv = f32x4.splat(r);
  for (i = 0; i < n4; i += 4) v128.store(x + (i << 2), f32x4.mul(v128.load(x + (i << 2)), rv));
  for (; i < <usize>n; i++) store<f32>(x + (i << 2), load<f32>(x + (i << 2)) * r);
}
