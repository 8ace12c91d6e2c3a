import { test } from "node:test";
import assert from "node:assert/strict";
import { AdamW, decays, globalNorm, lrAt } from "../src/train/adamw.js";

function near(a: ArrayLike<number>, b: number[], tol = 1e-6): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(b[i])), `[${i}] ${a[i]} vs ${b[i]}`);
}

test("AdamW: two steps by hand (decay on the matrix only, clipping on the second step)", () => {
  const W = new Float32Array([1, -2, 0.5, 3]), n = new Float32Array([1, 1]);
  const params = new Map<string, Float32Array>([["w", W], ["model.norm.weight", n]]);
  const shapes = new Map([["w", [2, 2]], ["model.norm.weight", [2]]]);
  const lr = 0.1, wd = 0.5, b1 = 0.9, b2 = 0.99, eps = 1e-8;
  const opt = new AdamW(params, shapes, { beta1: b1, beta2: b2, eps, weightDecay: wd, clipNorm: 0.4 });

  // step 1: gradient norm sqrt(0.1) < 0.4, no clipping. m = 0.1 g, v = 0.01 g^2, so m^ = g, v^ = g^2 and the Adam
  // step is lr * g / (|g| + eps) = +-lr (0 where g = 0).
  const g1 = new Map([["w", new Float32Array([0.1, -0.2, 0, 0.2])], ["model.norm.weight", new Float32Array([0, 0.1])]]);
  const r1 = opt.step(g1, lr);
  assert.ok(Math.abs(r1.gradNorm - Math.sqrt(0.1)) < 1e-7 && r1.clipScale === 1);
  const shrink = 1 - lr * wd; // 0.95
  near(W, [1 * shrink - 0.1, -2 * shrink + 0.1, 0.5 * shrink, 3 * shrink - 0.1]);
  near(n, [1, 1 - 0.1]);
  assert.equal(opt.t, 1);

  // step 2: gradient norm 0.8 is clipped to 0.4 (scale 0.4 / (norm + 1e-6), norm ~ 0.8 (float32 inputs)).
  const g2raw = [0.4, 0, -0.4, 0.4, 0.4, 0];
  const g2 = new Map([["w", new Float32Array(g2raw.slice(0, 4))], ["model.norm.weight", new Float32Array(g2raw.slice(4))]]);
  const r2 = opt.step(g2, lr);
  assert.ok(Math.abs(r2.gradNorm - 0.8) < 1e-7, `norm ${r2.gradNorm}`);
  assert.ok(Math.abs(r2.clipScale - 0.4 / (r2.gradNorm + 1e-6)) < 1e-12, `scale ${r2.clipScale}`);
  const c = r2.clipScale; // ~0.5
  const g1all = [0.1, -0.2, 0, 0.2, 0, 0.1];
  const before = [...[1 * shrink - 0.1, -2 * shrink + 0.1, 0.5 * shrink, 3 * shrink - 0.1], 1, 0.9];
  const expect = before.map((p, i) => {
    const g = g2raw[i] * c;
    const m = b1 * (1 - b1) * g1all[i] + (1 - b1) * g;
    const v = b2 * (1 - b2) * g1all[i] ** 2 + (1 - b2) * g * g;
    const step = (lr * (m / (1 - b1 ** 2))) / (Math.sqrt(v / (1 - b2 ** 2)) + eps);
    return (i < 4 ? p * shrink : p) - step;
  });
  near([...W, ...n], expect, 1e-6);
  // e.g. w[1]: m = 0.09*-0.2 + 0 = -0.018, v = 0.0099*0.04 = 3.96e-4 -> step = 0.1*(-0.018/0.19)/sqrt(3.96e-4/0.0199)
  near([W[1]], [(-2 * shrink + 0.1) * shrink + (0.1 * 0.018 / 0.19) / Math.sqrt(3.96e-4 / 0.0199)], 1e-6);
  // the gradients were not modified
  assert.deepEqual([...g2.get("w")!], [0.4, 0, -0.4, 0.4].map(Math.fround));
});

test("AdamW: deterministic, no clipping with clipNorm null, missing gradients throw", () => {
  const run = () => {
    const p = new Map([["a", new Float32Array([0.3, -0.7, 1.1])]]);
    const opt = new AdamW(p, new Map([["a", [3, 1]]]), { clipNorm: null });
    let norm = 0;
    for (let s = 0; s < 5; s++) norm = opt.step(new Map([["a", new Float32Array([5 * s, -3, 0.01])]]), 1e-2).clipScale;
    assert.equal(norm, 1);
    return p.get("a")!;
  };
  assert.deepEqual(run(), run());
  const opt = new AdamW(new Map([["a", new Float32Array(2)]]), new Map([["a", [2, 1]]]));
  assert.throws(() => opt.step(new Map(), 0.1), /no gradient/);
  assert.throws(() => opt.step(new Map([["a", new Float32Array([NaN, 0])]]), 0.1), /norm/);
});

test("decay rule and global norm", () => {
  assert.equal(decays("model.layers.0.self_attn.q_proj.weight", [8, 4]), true);
  assert.equal(decays("model.embed_tokens.weight", [8, 4]), true);
  assert.equal(decays("model.layers.0.input_layernorm.weight", [4]), false);
  assert.equal(decays("model.layers.0.self_attn.kv_a_layernorm.weight", [4]), false);
  assert.equal(decays("some.bias", [4]), false);
  assert.equal(globalNorm([new Float32Array([3]), new Float64Array([4])]), 5);
});

test("learning-rate schedule: linear warmup, cosine to the minimum, then flat", () => {
  const sc = { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 4, totalSteps: 14 };
  near([lrAt(0, sc), lrAt(1, sc), lrAt(3, sc)], [2.5e-4, 5e-4, 1e-3], 1e-12);
  near([lrAt(4, sc)], [1e-3], 1e-12); // cosine starts at the peak
  near([lrAt(8.5, sc)], [5.5e-4], 1e-12); // halfway: (max + min) / 2
  near([lrAt(13, sc), lrAt(20, sc)], [1e-4, 1e-4], 1e-12);
  for (let s = 4; s < 13; s++) assert.ok(lrAt(s + 1, sc) < lrAt(s, sc));
});
