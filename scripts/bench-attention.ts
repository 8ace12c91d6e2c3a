/**
 * Decode attention alone at long context: one layer of MLA (absorbed and naive, latent cache) against MHA with the
 * same heads and head sizes (per-head K/V cache), using the attention library on synthetic caches.
 */
import { MultiHeadLatentAttention } from "../src/attention/mla.js";
import { GroupedQueryAttention } from "../src/attention/gqa.js";
import { KvCache, LatentCache } from "../src/attention/cache.js";
import { RotaryEmbedding, DEFAULT_ROPE } from "../src/attention/rope.js";
import { f32Tensor } from "../src/tensor/tensor.js";
import { cpuOps, type Ops } from "../src/backends/ops.js";

export interface AttentionBenchRow {
  readonly context: number;
  readonly absorbMs: number;
  readonly naiveMs: number;
  readonly mhaMs: number;
  readonly mlaBytes: number;
  readonly mhaBytes: number;
}

// the `small` preset's attention shapes
const D = 1024, H = 16, DC = 256, DR = 32, DN = 64, DV = 64, DQ = 384;

function rand(n: number, seed: number, scale: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = ((a / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

const mat = (rows: number, cols: number, seed: number) => f32Tensor([rows, cols], rand(rows * cols, seed, 1 / Math.sqrt(cols)));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function time(fn: () => void, reps: number): number {
  fn(); // warm up
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    fn();
    t.push(performance.now() - s);
  }
  return median(t);
}

export function benchAttention(contexts: number[], ops: Ops = cpuOps, reps = 5): AttentionBenchRow[] {
  const rope = new RotaryEmbedding(DEFAULT_ROPE, DR);
  const mla = new MultiHeadLatentAttention(
    { hidden: D, nHeads: H, qLoraRank: DQ, kvLoraRank: DC, qkNopeHeadDim: DN, qkRopeHeadDim: DR, vHeadDim: DV },
    {
      query: { kind: "lora", qA: ops.prepare(mat(DQ, D, 1)), qANorm: new Float32Array(DQ).fill(1), qB: ops.prepare(mat(H * (DN + DR), DQ, 2)) },
      kvA: ops.prepare(mat(DC + DR, D, 3)), kvANorm: new Float32Array(DC).fill(1), kvB: ops.prepare(mat(H * (DN + DV), DC, 4)),
      o: ops.prepare(mat(D, H * DV, 5)),
    },
    rope, 1 / Math.sqrt(DN + DR), ops,
  );
  const mha = new GroupedQueryAttention(
    { hidden: D, nHeads: H, nKvHeads: H, headDim: DN + DR, vHeadDim: DV, ropeDim: DR },
    { q: ops.prepare(mat(H * (DN + DR), D, 6)), k: ops.prepare(mat(H * (DN + DR), D, 7)), v: ops.prepare(mat(H * DV, D, 8)), o: ops.prepare(mat(D, H * DV, 9)) },
    rope, 1 / Math.sqrt(DN + DR), ops,
  );
  const x = rand(D, 11, 1);
  const rows: AttentionBenchRow[] = [];
  for (const L of contexts) {
    const lat = new LatentCache(DC, DR, L + reps + 2, Infinity, (n) => ops.allocCache(n));
    lat.append(rand(L * (DC + DR), 12, 1), L);
    const kv = new KvCache(H, DN + DR, DV, L + reps + 2, Infinity, (n) => ops.allocCache(n));
    kv.k.append(rand(L * H * (DN + DR), 13, 1), L);
    kv.v.append(rand(L * H * DV, 14, 1), L);
    const step = (f: () => void, trunc: () => void) => () => {
      f();
      trunc();
    };
    const absorbMs = time(step(() => mla.forward(x, 1, lat, "absorb"), () => lat.truncate(L)), reps);
    const naiveMs = time(step(() => mla.forward(x, 1, lat, "naive"), () => lat.truncate(L)), L > 8192 ? 1 : reps);
    const mhaMs = time(step(() => mha.forward(x, 1, kv), () => kv.truncate(L)), reps);
    rows.push({ context: L, absorbMs, naiveMs, mhaMs, mlaBytes: L * (DC + DR) * 4, mhaBytes: L * H * (DN + DR + DV) * 4 });
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { WasmOps } = await import("../src/backends/wasm/ops.js");
  const ops = await WasmOps.create();
  for (const r of benchAttention([512, 4096], ops)) console.log(r);
  await ops.close();
}
