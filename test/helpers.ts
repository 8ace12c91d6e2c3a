import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { readHeader, readTensor } from "../src/io/safetensors.js";
import { toF32, type Tensor } from "../src/tensor/tensor.js";
import type { WasmBackend } from "../src/backends/wasm/index.js";

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
export const FIXTURE_NAMES = ["tiny-deepseek-v3", "tiny-deepseek-v2-lite", "tiny-mla-dense", "tiny-deepseek-v2-groups", "tiny-glm4-moe-lite", "tiny-youtu", "tiny-minicpm3", "tiny-kimi-k2"];

/** ||a - b|| / ||b|| */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** Seeded uniform(-1, 1) values: fresh seeds per test, never zeros. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

export interface Reference {
  readonly inputIds: number[][];
  readonly greedyPrompt: number[];
  readonly greedyTokens: number[];
  readonly numHiddenStates: number;
  /** tensor name -> F32 data */
  readonly tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

export function loadReference(name: string): Reference {
  const dir = join(FIXTURES, name);
  const meta = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8"));
  const { tensors } = readHeader(join(dir, "reference.safetensors"));
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, info] of tensors) out.set(k, { shape: info.shape, data: toF32(readTensor(info)) });
  return {
    inputIds: meta.input_ids,
    greedyPrompt: meta.generate.prompt,
    greedyTokens: meta.generate.greedy_tokens,
    numHiddenStates: meta.num_hidden_states,
    tensors: out,
  };
}

/** Row b of a [B, ...] reference tensor. */
export function batchRow(t: { shape: number[]; data: Float32Array }, b: number): Float32Array {
  const per = t.data.length / t.shape[0];
  return t.data.subarray(b * per, (b + 1) * per);
}

/** Fresh folders under one temp root that is removed when the test file ends (call at module level). */
export function tempDirs(prefix: string, after: (fn: () => void) => void): () => string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  return () => {
    const d = join(root, `d${n++}`);
    mkdirSync(d);
    return d;
  };
}

/** B random token sequences of length T (vocab V) with their next-token targets. */
export function randomBatch(B: number, T: number, V: number, seed: number): { ids: number[][]; targets: number[][] } {
  const r = randn(B * (T + 1), seed);
  const toks = Array.from(r, (x) => Math.floor(((x + 1) / 2) * V) % V);
  const ids: number[][] = [], targets: number[][] = [];
  for (let b = 0; b < B; b++) {
    const row = toks.slice(b * (T + 1), (b + 1) * (T + 1));
    ids.push(row.slice(0, T));
    targets.push(row.slice(1));
  }
  return { ids, targets };
}

/** Central finite differences of f with respect to every element of p (perturbed in place, then restored). */
export function finiteDiff(p: Float32Array | Float64Array, f: () => number, eps = 1e-6): Float64Array {
  const g = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const v = p[i];
    p[i] = v + eps;
    const fp = f();
    p[i] = v - eps;
    const fm = f();
    p[i] = v;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

/**
 * Parameters away from a model's init's symmetric point (gradient tests): matrices ~0.5 randn, norm vectors
 * 1 +- 0.3 randn; one seed per tensor, starting at `seed`.
 */
export function randomizeParams(m: { params: Map<string, Float32Array | Float64Array>; shapes: Map<string, readonly number[]> }, seed: number): void {
  let s = seed;
  for (const [name, p] of m.params) {
    const shape = m.shapes.get(name)!;
    const r = randn(p.length, s++);
    for (let i = 0; i < p.length; i++) p[i] = shape.length === 1 ? 1 + 0.3 * r[i] : 0.5 * r[i];
  }
}

/** What wasmLinear pre-fills its output with, so a kernel writing outside its rows is caught. */
export const SENTINEL = 12345;

/** be.linear on fresh copies of w and x in bank 0; the output pre-filled with SENTINEL (outLen floats). */
export function wasmLinear(be: WasmBackend, w: Tensor, x: Float32Array, T: number, K: number, N: number, row0: number, xStride: number, outStride: number, outLen: number): Float32Array {
  const mark = be.heap.mark();
  const ww = be.upload(w), xp = be.heap.putF32(x), o = be.heap.allocF32(outLen);
  o.view.fill(SENTINEL);
  be.linear(o.ptr, xp, T, K, ww, N, row0, xStride, outStride);
  const res = be.heap.f32(o.ptr, outLen).slice();
  be.heap.release(mark);
  return res;
}

/** Outputs left at SENTINEL where the reference has it (no stray writes), and relative error within tol. */
export function checkOutputs(what: string, got: Float32Array, ref: Float32Array, tol: number, seed: number): void {
  for (let i = 0; i < ref.length; i++) if (ref[i] === SENTINEL && got[i] !== SENTINEL) throw new Error(`${what}: wrote outside the outputs at ${i}`);
  const e = relErr(got, ref);
  if (!(e <= tol)) throw new Error(`${what} (seed ${seed}): relErr ${e}`);
}
