/**
 * GGML's block formats read in WGSL, kept packed (src/tensor/ggml.ts has the layouts and the reference dequantizers).
 *
 * A quantized weight is uploaded as GGML's bytes, unchanged, into an array<u32>: a 4-bit model takes 4.5 bits a
 * weight on the GPU too, and a GGUF file's tensor goes up without a conversion pass. Every type is read through the
 * same two functions of a global group index g (flat element index / 32; a row holds whole blocks, so no group
 * spans two rows, and groups of a row are consecutive):
 *
 *   grp(g)    -> vec2(d, m): the group's scale and offset
 *   q4(g, j)  -> quants 4j..4j+3 of the group as numbers, so weight = d q - m
 *
 * Offsets that do not depend on the group (Q4_0's 8, Q5_0's 16, Q6_K's 32) are taken off inside q4, so m is 0 for
 * every type but the K-quants' minimum (Q4_K, Q5_K): the decode product then sums d (q . x) per group, and only those
 * two types pay for m (x . 1). Q6_K's 16-weight sub-scales are folded into q4 with d as the group's scale.
 * 34-, 18-, 22- and 210-byte blocks (Q8_0, Q4_0, Q5_0, Q6_K) start on 2-byte boundaries, so their 4-byte reads are put
 * together from two u32 loads (`ld32`); Q4_K (144) and Q5_K (176) blocks are 16-byte aligned and read whole words.
 * f16 scales are widened with unpack2x16float: shader-f16 is not assumed (the H100's Dawn lacks it).
 */

/** The GGML block types the kernels read (CPU "Q8" is converted to Q8_0's bytes at upload). */
export type BlockWeightType = "Q8_0" | "Q4_0" | "Q5_0" | "Q4_K" | "Q5_K" | "Q6_K";

const BLOCK_TYPES: readonly string[] = ["Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q5_K", "Q6_K"];

export function isBlockWeight(t: string): t is BlockWeightType {
  return BLOCK_TYPES.includes(t);
}

/** Whether grp(g).y (the K-quants' minimum) can be nonzero: products then also need the sum of x per group. */
export const QUANT_HAS_MIN: Readonly<Record<BlockWeightType, boolean>> = {
  Q8_0: false, Q4_0: false, Q5_0: false, Q4_K: true, Q5_K: true, Q6_K: false,
};

/** Byte helpers every type uses, on the weight binding W (array<u32>). */
const COMMON = /* wgsl */ `
fn ld32(b: u32) -> u32 {
  // bytes b..b+3, little-endian, at any byte offset
  let i = b >> 2u; let s = (b & 3u) * 8u;
  if (s == 0u) { return W[i]; }
  return (W[i] >> s) | (W[i + 1u] << (32u - s));
}
fn byteAt(b: u32) -> u32 { return (W[b >> 2u] >> ((b & 3u) * 8u)) & 255u; }
fn f16at(b: u32) -> f32 { return unpack2x16float(W[b >> 2u])[(b >> 1u) & 1u]; }
fn u8x4(w: u32) -> vec4<f32> { return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u)); }
fn i8x4(w: u32) -> vec4<f32> { return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u)); }
// 4 bits -> the low bit of each of 4 bytes (shifted copies do not overlap, so the product is an OR)
fn bits4(h: u32) -> u32 { return (h * 0x00204081u) & 0x01010101u; }
`;

/** The 6-bit scale and min of sub-block s of a Q4_K/Q5_K block whose 12 scale bytes start at word a (get_scale_min_k4). */
const SCALE_MIN_K4 = /* wgsl */ `
fn scaleMinK4(a: u32, s: u32) -> vec2<f32> {
  let w0 = W[a]; let w1 = W[a + 1u]; let w2 = W[a + 2u];
  let t = (s & 3u) * 8u;
  if (s < 4u) { return vec2<f32>(f32((w0 >> t) & 63u), f32((w1 >> t) & 63u)); }
  let sc = ((w2 >> t) & 15u) | (((w0 >> (t + 6u)) & 3u) << 4u);
  let m = ((w2 >> (t + 4u)) & 15u) | (((w1 >> (t + 6u)) & 3u) << 4u);
  return vec2<f32>(f32(sc), f32(m));
}
`;

/**
 * grp of Q4_K and Q5_K, whose blocks of `words` u32 words begin alike: d and dmin (f16), then the 12 bytes of 6-bit
 * scales and mins; group s of a block scales by d sc_s and offsets by dmin m_s.
 */
function kGroup(words: number): string {
  return SCALE_MIN_K4 + /* wgsl */ `
fn grp(g: u32) -> vec2<f32> {
  let w = (g >> 3u) * ${words}u;
  let dd = unpack2x16float(W[w]);
  let sm = scaleMinK4(w + 1u, g & 7u);
  return vec2<f32>(dd.x * sm.x, dd.y * sm.y);
}
`;
}

/** grp and q4 of each type (byte layouts as in ggml.ts's header). */
const FORMATS: Readonly<Record<BlockWeightType, string>> = {
  // 34 bytes: d, 32 x int8
  Q8_0: /* wgsl */ `
fn grp(g: u32) -> vec2<f32> { return vec2<f32>(f16at(g * 34u), 0.0); }
fn q4(g: u32, j: u32) -> vec4<f32> { return i8x4(ld32(g * 34u + 2u + 4u * j)); }
`,
  // 18 bytes: d, 16 bytes of nibbles (quant i < 16: low nibble of byte i; i >= 16: high nibble of byte i - 16)
  Q4_0: /* wgsl */ `
fn grp(g: u32) -> vec2<f32> { return vec2<f32>(f16at(g * 18u), 0.0); }
fn q4(g: u32, j: u32) -> vec4<f32> {
  let w = ld32(g * 18u + 2u + 4u * (j & 3u));
  return u8x4((w >> (4u * (j >> 2u))) & 0x0f0f0f0fu) - vec4<f32>(8.0);
}
`,
  // 22 bytes: d, qh (bit i: the fifth bit of quant i), 16 bytes of nibbles as Q4_0
  Q5_0: /* wgsl */ `
fn grp(g: u32) -> vec2<f32> { return vec2<f32>(f16at(g * 22u), 0.0); }
fn q4(g: u32, j: u32) -> vec4<f32> {
  let b = g * 22u;
  let lo = (ld32(b + 6u + 4u * (j & 3u)) >> (4u * (j >> 2u))) & 0x0f0f0f0fu;
  let hi = bits4((ld32(b + 2u) >> (4u * j)) & 15u) << 4u;
  return u8x4(lo | hi) - vec4<f32>(16.0);
}
`,
  // 144 bytes: d, dmin, 12 bytes of scales/mins, 128 of nibbles (sub-blocks 2i, 2i+1: low, high nibbles of bytes 32i..)
  Q4_K: kGroup(36) + /* wgsl */ `
fn q4(g: u32, j: u32) -> vec4<f32> {
  let s = g & 7u;
  let w = W[(g >> 3u) * 36u + 4u + 8u * (s >> 1u) + j];
  return u8x4((w >> (4u * (s & 1u))) & 0x0f0f0f0fu);
}
`,
  // 176 bytes: as Q4_K with 32 bytes of fifth bits (bit s of byte l: sub-block s, element l) before the nibbles
  Q5_K: kGroup(44) + /* wgsl */ `
fn q4(g: u32, j: u32) -> vec4<f32> {
  let s = g & 7u; let w0 = (g >> 3u) * 44u;
  let lo = (W[w0 + 12u + 8u * (s >> 1u) + j] >> (4u * (s & 1u))) & 0x0f0f0f0fu;
  let hi = ((W[w0 + 4u + j] >> s) & 0x01010101u) << 4u;
  return u8x4(lo | hi);
}
`,
  // 210 bytes: 128 of low nibbles, 64 of 2-bit high pairs, 16 int8 scales (one per 16 weights), d last. Group s of a
  // block: half h = s / 4 (128 weights), quarter r = s % 4 within it; element l: low/high nibble (r / 2) of
  // ql[64 h + 32 (r % 2) + l], bits 2r of qh[32 h + l], scale sc[8 h + 2 r + l / 16]
  Q6_K: /* wgsl */ `
fn grp(g: u32) -> vec2<f32> { return vec2<f32>(f16at((g >> 3u) * 210u + 208u), 0.0); }
fn q4(g: u32, j: u32) -> vec4<f32> {
  let b = (g >> 3u) * 210u; let s = g & 7u; let h = s >> 2u; let r = s & 3u;
  let lo = (ld32(b + 64u * h + 32u * (r & 1u) + 4u * j) >> (4u * (r >> 1u))) & 0x0f0f0f0fu;
  let hi = ((ld32(b + 128u + 32u * h + 4u * j) >> (2u * r)) & 0x03030303u) << 4u;
  let sc = f32(bitcast<i32>(byteAt(b + 192u + 8u * h + 2u * r + (j >> 2u)) << 24u) >> 24u);
  return sc * (u8x4(lo | hi) - vec4<f32>(32.0));
}
`,
};

/**
 * Binding `b` named W holding blocks of type t, with grp/q4 and the element accessor wld(i) the generic kernels use
 * (a whole group decoded for one weight: those kernels are prefill, embedding rows and the small kv_b products).
 */
export function quantDecl(b: number, t: BlockWeightType): string {
  return `@group(0) @binding(${b}) var<storage, read> W: array<u32>;\n` + COMMON + FORMATS[t] + /* wgsl */ `
fn wld(i: u32) -> f32 {
  let g = i >> 5u; let s = grp(g);
  return s.x * q4(g, (i >> 2u) & 7u)[i & 3u] - s.y;
}
`;
}

/**
 * The group-wise inner loop of a decode product (matvecKernel's `loop`: sees T K N row0 xs xo, lane, n, and sums
 * into a0..a3): each of a row's 16 threads takes every 16th group of 32 weights, 4 at a time as vec4 dot products
 * against up to 4 token rows, and scales the group's sums once (d (q . x) - m (1 . x)).
 */
export function quantMatvecLoop(t: BlockWeightType): string {
  const min = QUANT_HAS_MIN[t];
  const tok = (i: number) => {
    const x = i === 0 ? "xo + k" : i === 1 ? "xo + xs + k" : `xo + ${i}u * xs + k`;
    const sum = min ? ` s${i} += dot(v, vec4<f32>(1.0));` : "";
    return `{ let v = xv(${x}); d${i} += dot(q, v);${sum} }`;
  };
  const acc = (i: number) => (min ? `a${i} += gs.x * d${i} - gs.y * s${i};` : `a${i} += gs.x * d${i};`);
  const decl = [0, 1, 2, 3].map((i) => `var d${i} = 0.0;` + (min ? ` var s${i} = 0.0;` : "")).join(" ");
  return `
    let G = K / 32u; let g0 = (row0 + n) * G;
    for (var gi = lane; gi < G; gi += 16u) {
      let g = g0 + gi; let gs = grp(g);
      ${decl}
      for (var j = 0u; j < 8u; j++) {
        let q = q4(g, j); let k = gi * 32u + 4u * j;
        ${tok(0)}
        if (T > 1u) ${tok(1)}
        if (T > 2u) ${tok(2)}
        if (T > 3u) ${tok(3)}
      }
      ${acc(0)} ${acc(1)} ${acc(2)} ${acc(3)}
    }`;
}

/** The same loop for one row of a slot product (slotMatvec: sums into a from X[xo..], weight row wr). */
export function quantSlotLoop(t: BlockWeightType): string {
  const min = QUANT_HAS_MIN[t];
  return `
    let G = K / 32u; let g0 = wr * G;
    for (var gi = lane; gi < G; gi += 16u) {
      let g = g0 + gi; let gs = grp(g);
      var d = 0.0; var sx = 0.0;
      for (var j = 0u; j < 8u; j++) {
        let v = xv(xo + gi * 32u + 4u * j);
        d += dot(q4(g, j), v);${min ? " sx += dot(v, vec4<f32>(1.0));" : ""}
      }
      a += gs.x * d${min ? " - gs.y * sx" : ""};
    }`;
}
