import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_ROPE, RotaryEmbedding, attentionScale, ropeAttentionFactor, ropeInvFreq, yarnMscale, type RopeScaling,
} from "../src/attention/rope.js";
import { parseRope } from "../src/model/config.js";
import { MlaError } from "../src/errors.js";
import { relErr } from "./helpers.js";

// ---------------------------------------------------------------------------------------------------------------
// Independent implementation of the spec's formulas (../shared/spec/deepseek-mla.md, "RoPE frequencies and YaRN").

function plainTheta(base: number, dim: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < dim / 2; j++) out.push(Math.exp((-2 * j * Math.log(base)) / dim));
  return out;
}

interface YarnRef {
  theta: number[];
  low: number;
  high: number;
}

function yarnRef(base: number, dim: number, s: number, L0: number, betaFast: number, betaSlow: number): YarnRef {
  const corr = (r: number) => (dim * Math.log(L0 / (2 * Math.PI * r))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(corr(betaFast)), 0);
  let high = Math.min(Math.ceil(corr(betaSlow)), dim - 1);
  if (low === high) high += 0.001;
  const theta = plainTheta(base, dim).map((th, j) => {
    const ramp = Math.min(1, Math.max(0, (j - low) / (high - low)));
    return (th / s) * ramp + th * (1 - ramp);
  });
  return { theta, low, high };
}

function m(s: number, k: number): number {
  return s > 1 ? 0.1 * k * Math.log(s) + 1 : 1;
}

function yarn(over: Partial<RopeScaling>): RopeScaling {
  return {
    type: "yarn", theta: 10000, factor: 40, originalMaxPositionEmbeddings: 4096,
    betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 1, ...over,
  };
}

function close(a: number, b: number, tol = 1e-12): boolean {
  return Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));
}

// ---------------------------------------------------------------------------------------------------------------

test("ropeInvFreq default: theta_j = base^(-2j/d)", () => {
  for (const [base, dim] of [[10000, 8], [10000, 64], [500000, 14], [50000, 2]]) {
    const got = ropeInvFreq({ ...DEFAULT_ROPE, theta: base }, dim);
    assert.equal(got.length, dim / 2);
    const ref = plainTheta(base, dim);
    for (let j = 0; j < ref.length; j++) assert.ok(close(got[j], ref[j]), `base ${base} dim ${dim} j ${j}: ${got[j]} vs ${ref[j]}`);
    assert.equal(got[0], 1);
  }
  // a non-yarn type ignores factor: no scaling without yarn
  const g = ropeInvFreq({ ...DEFAULT_ROPE, factor: 40 }, 8);
  assert.ok(close(g[3], plainTheta(10000, 8)[3]), "expected close(g[3], plainTheta(10000, 8)[3])");
});

test("ropeInvFreq YaRN equals an independent implementation of the spec formulas", () => {
  let sawRamp = false;
  for (const s of [4, 40])
    for (const L0 of [128, 4096])
      for (const dim of [8, 64])
        for (const [bf, bs] of [[32, 1], [16, 2]]) {
          const rope = yarn({ factor: s, originalMaxPositionEmbeddings: L0, betaFast: bf, betaSlow: bs });
          const got = ropeInvFreq(rope, dim);
          const ref = yarnRef(10000, dim, s, L0, bf, bs);
          const tag = `s=${s} L0=${L0} dim=${dim} beta=${bf}/${bs}`;
          assert.equal(got.length, dim / 2);
          for (let j = 0; j < dim / 2; j++) assert.ok(close(got[j], ref.theta[j]), `${tag} j=${j}: ${got[j]} vs ${ref.theta[j]}`);
          // structure: frequencies below `low` are untouched, those at or beyond `high` are divided by s
          const plain = plainTheta(10000, dim);
          for (let j = 0; j < dim / 2; j++) {
            if (j <= ref.low) assert.ok(close(got[j], plain[j]), `${tag}: j=${j} <= low should keep theta`);
            if (j >= ref.high) assert.ok(close(got[j], plain[j] / s), `${tag}: j=${j} >= high should be theta/s`);
            if (j > ref.low && j < ref.high) {
              sawRamp = true;
              assert.ok(got[j] < plain[j] && got[j] > plain[j] / s, `${tag}: j=${j} should be interpolated`);
            }
          }
        }
  assert.ok(sawRamp, "no config exercised the ramp");

  // theta matters
  const a = ropeInvFreq(yarn({ theta: 10000 }), 64), b = ropeInvFreq(yarn({ theta: 50000 }), 64);
  assert.ok(relErr(a, b) > 1e-3, "expected relErr(a, b) > 1e-3");
  const ref = yarnRef(50000, 64, 40, 4096, 32, 1).theta;
  for (let j = 0; j < 32; j++) assert.ok(close(b[j], ref[j]), "expected close(b[j], ref[j])");
});

test("ropeInvFreq YaRN when low == high (high += 0.001)", () => {
  // L0 just below 2*pi: corr(beta_slow) is in (-1, 0), so high = ceil(.) = 0 = low
  const dim = 8, s = 4, L0 = 6;
  const ref = yarnRef(10000, dim, s, L0, 32, 1);
  assert.equal(ref.low, 0);
  assert.ok(Math.abs(ref.high - 0.001) < 1e-15, `reference high ${ref.high}`);
  const got = ropeInvFreq(yarn({ factor: s, originalMaxPositionEmbeddings: L0 }), dim);
  const plain = plainTheta(10000, dim);
  for (let j = 0; j < dim / 2; j++) assert.ok(close(got[j], ref.theta[j]), `j=${j}: ${got[j]} vs ${ref.theta[j]}`);
  // pair 0 keeps its frequency, all others are fully interpolated (no division by zero, no NaN)
  assert.ok(close(got[0], plain[0]), "expected close(got[0], plain[0])");
  for (let j = 1; j < dim / 2; j++) assert.ok(close(got[j], plain[j] / s), "expected close(got[j], plain[j] / s)");
});

test("ropeAttentionFactor: mscale ratio as transformers computes it", () => {
  // equal mscale and mscale_all_dim (DeepSeek's configs) -> 1
  assert.ok(close(ropeAttentionFactor(yarn({ factor: 40, mscale: 0.707, mscaleAllDim: 0.707 })), 1), "expected close(ropeAttentionFactor(yarn({ factor: 40, mscale: 0.707, mscaleAllDim: 0.707 })), 1)");
  assert.ok(close(ropeAttentionFactor(yarn({ factor: 40, mscale: 1, mscaleAllDim: 1 })), 1), "expected close(ropeAttentionFactor(yarn({ factor: 40, mscale: 1, mscaleAllDim: 1 })), 1)");
  // mscale 1, mscale_all_dim 0.707 -> m(s,1)/m(s,0.707)
  const r = ropeAttentionFactor(yarn({ factor: 40, mscale: 1, mscaleAllDim: 0.707 }));
  assert.ok(close(r, (0.1 * Math.log(40) + 1) / (0.1 * 0.707 * Math.log(40) + 1)), "expected close(r, (0.1 * Math.log(40) + 1) / (0.1 * 0.707 * Math.log(40) + 1))");
  assert.ok(r > 1.05, "expected r > 1.05");
  // only one set -> m(s, 1) (transformers: `if mscale and mscale_all_dim: ratio else get_mscale(factor)`)
  assert.ok(close(ropeAttentionFactor(yarn({ factor: 40, mscale: 0.707, mscaleAllDim: 0 })), m(40, 1)), "expected close(ropeAttentionFactor(yarn({ factor: 40, mscale: 0.707, mscaleAllDim: 0 })), m(40, 1))");
  assert.ok(close(ropeAttentionFactor(yarn({ factor: 40, mscale: 0, mscaleAllDim: 0.707 })), m(40, 1)), "expected close(ropeAttentionFactor(yarn({ factor: 40, mscale: 0, mscaleAllDim: 0.707 })), m(40, 1))");
  assert.ok(close(ropeAttentionFactor(yarn({ factor: 4, mscale: 0, mscaleAllDim: 0 })), m(4, 1)), "expected close(ropeAttentionFactor(yarn({ factor: 4, mscale: 0, mscaleAllDim: 0 })), m(4, 1))");
  // explicit attention_factor wins; no extension (s <= 1) -> 1; plain rope -> 1
  assert.equal(ropeAttentionFactor(yarn({ attentionFactor: 0.8125 })), 0.8125);
  assert.ok(close(ropeAttentionFactor(yarn({ factor: 1, mscale: 0, mscaleAllDim: 0 })), 1), "expected close(ropeAttentionFactor(yarn({ factor: 1, mscale: 0, mscaleAllDim: 0 })), 1)");
  assert.equal(ropeAttentionFactor({ ...DEFAULT_ROPE, factor: 40 }), 1);
  // yarnMscale itself
  assert.ok(close(yarnMscale(40, 0.707), m(40, 0.707)), "expected close(yarnMscale(40, 0.707), m(40, 0.707))");
  assert.equal(yarnMscale(0.5, 3), 1);
});

test("ropeAttentionFactor via parseRope: a config with only one of mscale / mscale_all_dim gives m(s, 1)", () => {
  const base = { rope_type: "yarn", rope_theta: 10000, factor: 40, original_max_position_embeddings: 4096 };
  const onlyAll = parseRope({ rope_parameters: { ...base, mscale_all_dim: 0.707 } });
  const onlyM = parseRope({ rope_parameters: { ...base, mscale: 0.707 } });
  const neither = parseRope({ rope_parameters: base });
  for (const [name, r] of [["only mscale_all_dim", onlyAll], ["only mscale", onlyM], ["neither", neither]] as const) {
    assert.ok(close(ropeAttentionFactor(r), m(40, 1)), `${name}: ${ropeAttentionFactor(r)} vs ${m(40, 1)}`);
  }
  // the softmax scale still follows mscale_all_dim when set
  assert.ok(close(attentionScale(192, onlyAll), m(40, 0.707) ** 2 / Math.sqrt(192)), "expected close(attentionScale(192, onlyAll), m(40, 0.707) ** 2 / Math.sqrt(192))");
  assert.ok(close(attentionScale(192, onlyM), 1 / Math.sqrt(192)), "expected close(attentionScale(192, onlyM), 1 / Math.sqrt(192))");
});

test("attentionScale = 1/sqrt(d_qk) times m(s, mscale_all_dim)^2", () => {
  assert.ok(close(attentionScale(192, DEFAULT_ROPE), 1 / Math.sqrt(192)), "expected close(attentionScale(192, DEFAULT_ROPE), 1 / Math.sqrt(192))");
  const v3 = yarn({ factor: 40, mscale: 1, mscaleAllDim: 1 });
  assert.ok(close(attentionScale(192, v3), m(40, 1) ** 2 / Math.sqrt(192)), "expected close(attentionScale(192, v3), m(40, 1) ** 2 / Math.sqrt(192))");
  const v2 = yarn({ factor: 40, mscale: 0.707, mscaleAllDim: 0.707 });
  assert.ok(close(attentionScale(192, v2), m(40, 0.707) ** 2 / Math.sqrt(192)), "expected close(attentionScale(192, v2), m(40, 0.707) ** 2 / Math.sqrt(192))");
  assert.ok(attentionScale(192, v2) > 1.3 / Math.sqrt(192), "expected attentionScale(192, v2) > 1.3 / Math.sqrt(192)");
  // mscale_all_dim 0 / unset: no change
  assert.ok(close(attentionScale(24, yarn({ mscaleAllDim: 0 })), 1 / Math.sqrt(24)), "expected close(attentionScale(24, yarn({ mscaleAllDim: 0 })), 1 / Math.sqrt(24))");
  // factor <= 1: m = 1
  assert.ok(close(attentionScale(24, yarn({ factor: 1, mscaleAllDim: 1 })), 1 / Math.sqrt(24)), "expected close(attentionScale(24, yarn({ factor: 1, mscaleAllDim: 1 })), 1 / Math.sqrt(24))");
});

test("parseRope: transformers>=5 rope_parameters and hub rope_theta + rope_scaling give identical results", () => {
  const params = { factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 0.707 };
  const v5 = parseRope({ rope_parameters: { rope_type: "yarn", rope_theta: 10000, ...params } });
  const hub = parseRope({ rope_theta: 10000, rope_scaling: { type: "yarn", ...params } });
  const hub2 = parseRope({ rope_theta: 10000, rope_scaling: { rope_type: "yarn", ...params } });
  assert.deepEqual(hub, v5);
  assert.deepEqual(hub2, v5);
  assert.equal(v5.type, "yarn");
  assert.equal(v5.theta, 10000);
  assert.equal(v5.factor, 40);
  assert.equal(v5.originalMaxPositionEmbeddings, 4096);
  assert.equal(v5.mscaleAllDim, 0.707);
  for (const dim of [8, 64]) assert.deepEqual(ropeInvFreq(hub, dim), ropeInvFreq(v5, dim));
  assert.equal(ropeAttentionFactor(hub), ropeAttentionFactor(v5));
  assert.equal(attentionScale(192, hub), attentionScale(192, v5));
  const ref = yarnRef(10000, 64, 40, 4096, 32, 1).theta;
  const got = ropeInvFreq(v5, 64);
  for (let j = 0; j < 32; j++) assert.ok(close(got[j], ref[j]), "expected close(got[j], ref[j])");

  // a non-default theta is honoured in both spellings
  const t5 = parseRope({ rope_parameters: { rope_type: "yarn", rope_theta: 50000, ...params } });
  const th = parseRope({ rope_theta: 50000, rope_scaling: { type: "yarn", ...params } });
  assert.equal(t5.theta, 50000);
  assert.deepEqual(th, t5);
  // beta defaults 32 / 1
  const noBeta = parseRope({ rope_theta: 10000, rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 128 } });
  assert.equal(noBeta.betaFast, 32);
  assert.equal(noBeta.betaSlow, 1);
});

test("parseRope: rope_scaling null or type default mean plain RoPE", () => {
  for (const c of [
    { rope_theta: 50000, rope_scaling: null },
    { rope_theta: 50000 },
    { rope_theta: 50000, rope_scaling: { type: "default" } },
    { rope_parameters: { rope_type: "default", rope_theta: 50000 } },
    { rope_parameters: null, rope_theta: 50000, rope_scaling: { rope_type: "default" } },
  ]) {
    const r = parseRope(c);
    assert.equal(r.type, "default", JSON.stringify(c));
    assert.equal(r.theta, 50000, JSON.stringify(c));
    assert.equal(ropeAttentionFactor(r), 1);
    assert.equal(attentionScale(24, r), 1 / Math.sqrt(24));
    const f = ropeInvFreq(r, 8), p = plainTheta(50000, 8);
    for (let j = 0; j < 4; j++) assert.ok(close(f[j], p[j]), "expected close(f[j], p[j])");
  }
  assert.equal(parseRope({}).theta, 10000);
});

test("parseRope: unsupported rope type throws MlaError", () => {
  assert.throws(() => parseRope({ rope_theta: 10000, rope_scaling: { type: "dynamic", factor: 2 } }), MlaError);
  assert.throws(() => parseRope({ rope_parameters: { rope_type: "linear", rope_theta: 10000, factor: 2 } }), MlaError);
  assert.throws(() => parseRope({ rope_parameters: { rope_type: "longrope", rope_theta: 10000 } }), /short_factor must be a list/);
  // yarn without its required fields is an error too
  assert.throws(() => parseRope({ rope_parameters: { rope_type: "yarn", rope_theta: 10000 } }), MlaError);
});

test("RotaryEmbedding.table at p0.. equals cos/sin(p*theta) * attentionFactor", () => {
  for (const [rope, dim, p0, T] of [
    [yarn({ factor: 40, mscale: 1, mscaleAllDim: 0.707 }), 64, 37, 5],
    [yarn({ factor: 4, originalMaxPositionEmbeddings: 128, mscale: 1, mscaleAllDim: 1 }), 8, 0, 7],
    [{ ...DEFAULT_ROPE, theta: 10000 }, 14, 1013, 3],
  ] as const) {
    const emb = new RotaryEmbedding(rope, dim);
    const { cos, sin } = emb.table(p0, T);
    const half = dim / 2;
    assert.equal(cos.length, T * half);
    assert.equal(sin.length, T * half);
    const theta = rope.type === "yarn" ? yarnRef(rope.theta, dim, rope.factor, rope.originalMaxPositionEmbeddings, rope.betaFast, rope.betaSlow).theta : plainTheta(rope.theta, dim);
    const af = rope.type === "yarn" && rope.mscale && rope.mscaleAllDim ? m(rope.factor, rope.mscale) / m(rope.factor, rope.mscaleAllDim) : 1;
    assert.ok(close(emb.attentionFactor, af), "expected close(emb.attentionFactor, af)");
    const rc: number[] = [], rs: number[] = [];
    for (let t = 0; t < T; t++)
      for (let j = 0; j < half; j++) {
        rc.push(Math.cos((p0 + t) * theta[j]) * af);
        rs.push(Math.sin((p0 + t) * theta[j]) * af);
      }
    assert.ok(relErr(cos, rc) < 1e-6, `cos rel err ${relErr(cos, rc)}`);
    assert.ok(relErr(sin, rs) < 1e-6, `sin rel err ${relErr(sin, rs)}`);
    // the row for position p0+t is the same whichever p0 the table starts at
    const again = emb.table(p0 + 1, 1);
    assert.deepEqual(Array.from(again.cos), Array.from(cos.subarray(half, 2 * half)));
    assert.deepEqual(Array.from(again.sin), Array.from(sin.subarray(half, 2 * half)));
  }
  assert.throws(() => new RotaryEmbedding(DEFAULT_ROPE, 7), MlaError);
});

test("parseRope longrope (what mla convert --rope-key grouped writes): theta_j = 1 / (f_j base^(2j/d)); unsupported variants are refused", () => {
  const f = [1, 0.5, 3, 1.25];
  const rope = parseRope({ rope_theta: 500, rope_scaling: { rope_type: "longrope", short_factor: f, long_factor: [...f], factor: 1.0, attention_factor: 1.0 } });
  const inv = ropeInvFreq(rope, 8), plain = plainTheta(500, 8);
  inv.forEach((x, j) => assert.ok(Math.abs(x - plain[j] / f[j]) <= 1e-15 * x, `pair ${j}`));
  assert.equal(ropeAttentionFactor(rope), 1);
  assert.equal(attentionScale(24, rope), 1 / Math.sqrt(24));
  assert.equal(ropeAttentionFactor(parseRope({ rope_scaling: { rope_type: "longrope", short_factor: f, long_factor: f, factor: 4, attention_factor: 1.3 } })), 1.3);
  const bad = (params: Record<string, unknown>, re: RegExp) => assert.throws(() => parseRope({ rope_scaling: { rope_type: "longrope", ...params } }), (e: unknown) => e instanceof MlaError && re.test(e.message));
  bad({ short_factor: f, long_factor: [1, 1, 1, 1] }, /different short_factor and long_factor/);
  bad({ short_factor: f, long_factor: f, factor: 4 }, /explicit attention_factor/);
  bad({ short_factor: "x", long_factor: f }, /list of positive numbers/);
  assert.throws(() => new RotaryEmbedding(rope, 6), /3 pairs/);
  assert.throws(() => parseRope({ rope_scaling: { rope_type: "longrope", short_factor: f, long_factor: f } }, ["default", "linear", "llama3"]), /not supported/);
});
