import type { Vec } from "./types.js";
import { ropeHalves, ropeInterleaved } from "../../backends/cpu/rope.js";

/**
 * Backwards of ropeInterleaved and ropeHalves (src/backends/cpu/rope.ts), in place on the gradient, same strided
 * layout. The forward maps each pair by M = [[c, -s], [s, c]]; the gradient is M^T = [[c, s], [-s, c]]: a rotation
 * by -angle, scaled by the same attention factor when cos/sin carry one (YaRN), so it is the transpose, not the
 * inverse.
 *   da = c*ga + s*gb,  db = -s*ga + c*gb   (the forward with sin negated)
 */
function negated(v: Vec): Float64Array {
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = -v[i];
  return out;
}

export function ropeInterleavedBackward(
  g: Vec, T: number, heads: number, d: number, offset: number, rowStride: number, headStride: number,
  cos: Vec, sin: Vec,
): void {
  ropeInterleaved(g, T, heads, d, offset, rowStride, headStride, cos, negated(sin));
}

/** Pairs (j, j + d/2). */
export function ropeHalvesBackward(
  g: Vec, T: number, heads: number, d: number, offset: number, rowStride: number, headStride: number,
  cos: Vec, sin: Vec,
): void {
  ropeHalves(g, T, heads, d, offset, rowStride, headStride, cos, negated(sin));
}
