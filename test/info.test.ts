/**
 * `mla info` from config.json alone, for the published MLA models in test/fixtures/zoo/ (config.json copies of
 * /work/shared/zoo). Each count is checked three ways:
 *  - against a closed form written here from the config keys (not from the family registry's tensor lists);
 *  - against transformers 5.18: AutoModelForCausalLM.from_config on the meta device, numel summed over the
 *    state_dict, a tied head once (e_score_correction_bias is a buffer there, a tensor in checkpoints: counted);
 *  - against the figure the publisher gives, within the publisher's rounding.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MlaError } from "../src/errors.js";
import { describeConfig, describeModel, mtpTensors } from "../src/model/info.js";
import { openCheckpoint } from "../src/model/checkpoint.js";
import { MODEL_TYPES, parseConfig } from "../src/model/families/index.js";
import { infoCommand } from "../src/cli/commands/info.js";
import { FIXTURES } from "./helpers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ZOO = join(FIXTURES, "zoo");
const B = 1e9;

/**
 * A published figure: `value` written to the nearest `unit` (or rounded down, as model names such as "A3B" are),
 * plus 0.5% for what publishers leave out or add (router gates, norms, FP8 scales).
 */
interface Figure {
  readonly value: number;
  readonly unit: number;
  readonly round?: "down";
  readonly source: string;
}

interface ZooCase {
  readonly name: string;
  readonly modelType: string;
  /** transformers 5.18's count for this config (see the file comment). */
  readonly transformers: number;
  readonly total: Figure;
  readonly active?: Figure;
  /** What the full checkpoint holds: the decoder, its MTP layers and their embedding/head copies. */
  readonly checkpoint?: Figure;
}

const fig = (value: number, unit: number, source: string, round?: "down"): Figure => ({ value, unit, source, round });

/**
 * The zoo configs. deepseek_v2/deepseek_v3 are the engine's first families; glm4_moe_lite, kimi_k2, youtu and
 * minicpm3 were added alongside this test: their rows pass once those families are registered and are skipped
 * (by name, see below) while one is not.
 */
const ZOO_CASES: readonly ZooCase[] = [
  {
    name: "DeepSeek-V3", modelType: "deepseek_v3", transformers: 671_026_419_200,
    total: fig(671 * B, B, "README: 671B total"),
    // README_WEIGHTS.md: "36.6B (including 0.9B for the output Head)"; the README table rounds it to 37B
    active: fig(36.6 * B, 0.1 * B, "README_WEIGHTS.md: 36.6B activated"),
    // README: "685B, which includes 671B of the Main Model weights and 14B of the MTP Module weights"
    checkpoint: fig(685 * B, B, "README: 685B on Hugging Face"),
  },
  {
    name: "DeepSeek-V2", modelType: "deepseek_v2", transformers: 235_741_434_880,
    total: fig(236 * B, B, "V2 paper: 236B"), active: fig(21 * B, B, "V2 paper: 21B activated"),
  },
  {
    name: "DeepSeek-V2-Lite", modelType: "deepseek_v2", transformers: 15_706_484_224,
    total: fig(15.7 * B, 0.1 * B, "V2 paper: 15.7B"), active: fig(2.4 * B, 0.1 * B, "V2 paper: 2.4B activated"),
  },
  {
    name: "Kimi-K2-Instruct", modelType: "kimi_k2", transformers: 1_026_408_232_448,
    total: fig(1000 * B, 1000 * B, "model card: 1T total"), active: fig(32 * B, B, "model card: 32B activated"),
  },
  {
    name: "Moonlight-16B-A3B-Instruct", modelType: "deepseek_v3", transformers: 15_960_110_208,
    total: fig(16 * B, B, "model card: 16B"), active: fig(3 * B, B, "model card: 3B activated"),
  },
  {
    name: "GLM-4.7-Flash", modelType: "glm4_moe_lite", transformers: 29_943_393_920,
    total: fig(30 * B, B, "name: 30B-A3B"), active: fig(3 * B, B, "name: A3B", "down"),
    checkpoint: fig(31.2 * B, 0.1 * B, "model card: 31.2B with the MTP layer"),
  },
  { name: "MiniCPM3-4B", modelType: "minicpm3", transformers: 4_073_875_968, total: fig(4 * B, B, "name: 4B") },
  { name: "Youtu-LLM-2B", modelType: "youtu", transformers: 1_961_560_064, total: fig(2 * B, B, "name: 2B") },
];

function assertPublished(computed: number, f: Figure, what: string): void {
  const slack = 0.005 * f.value;
  const [lo, hi] = f.round === "down" ? [f.value - slack, f.value + f.unit + slack] : [f.value - f.unit / 2 - slack, f.value + f.unit / 2 + slack];
  assert.ok(computed >= lo && computed <= hi, `${what} ${(computed / B).toFixed(3)}B is not ${f.source} (${(lo / B).toFixed(3)}..${(hi / B).toFixed(3)}B)`);
}

type Json = Record<string, unknown>;
const zooJson = (name: string): Json => JSON.parse(readFileSync(join(ZOO, name, "config.json"), "utf8")) as Json;

/**
 * The counts in closed form from config.json's keys: an MLA layer (q_lora or a plain q_proj, the latent
 * down-projection with the shared RoPE key, kv_b_proj, o_proj, two norms), SwiGLU MLPs of 3 D F, MoE layers with a
 * router gate (and V3's e_score_correction_bias), the embedding and an untied head; an MTP layer adds enorm,
 * hnorm, shared_head.norm and eh_proj [D, 2D]. Active: a token runs k of the routed experts and reads one embedding
 * row.
 */
function closedForm(j: Json) {
  const n = (k: string, d = 0) => (j[k] == null ? d : (j[k] as number));
  const D = n("hidden_size"), L = n("num_hidden_layers"), H = n("num_attention_heads"), V = n("vocab_size");
  const q = n("q_lora_rank"), dc = n("kv_lora_rank"), dn = n("qk_nope_head_dim"), dr = n("qk_rope_head_dim");
  const dv = n("v_head_dim", D / H); // MiniCPM3 leaves it out: hidden_size / heads
  const tied = j.tie_word_embeddings != null ? j.tie_word_embeddings === true : j.model_type === "minicpm3" || j.model_type === "youtu";
  const attn = (q ? q * D + q + H * (dn + dr) * q : H * (dn + dr) * D) + (dc + dr) * D + dc + H * (dn + dv) * dc + D * H * dv + 2 * D;
  const E = n("n_routed_experts"), k = n("num_experts_per_tok"), S = n("n_shared_experts"), Fm = n("moe_intermediate_size");
  const bias = ["deepseek_v3", "kimi_k2", "glm4_moe_lite"].includes(j.model_type as string) ? E : 0;
  const expert = 3 * D * Fm, dense = 3 * D * n("intermediate_size");
  const moeLayers = E ? L - n("first_k_dense_replace") : 0;
  const moe = E * D + bias + (E + S) * expert, idle = (E - k) * expert;
  const total = V * D * (tied ? 1 : 2) + D + L * attn + (L - moeLayers) * dense + moeLayers * moe;
  const mtpLayers = n("num_nextn_predict_layers"), mtpLayer = attn + (E ? moe : dense) + 3 * D + 2 * D * D;
  return {
    total, active: total - (tied ? 0 : V * D) - moeLayers * idle, embedding: V * D,
    mtp: mtpLayers ? { layers: mtpLayers, parameters: mtpLayers * mtpLayer, active: mtpLayers * (mtpLayer - (E ? idle : 0)), copies: mtpLayers * 2 * V * D } : null,
    latent: dc + dr, mha: H * (dn + dr + dv), layers: L,
  };
}

const pending = (c: ZooCase) => (MODEL_TYPES.includes(c.modelType) ? false : `model_type ${c.modelType} is not registered yet`);

for (const c of ZOO_CASES) {
  test(`info from config.json alone: ${c.name}`, { skip: pending(c) }, () => {
    const info = describeModel(join(ZOO, c.name));
    const want = closedForm(zooJson(c.name));
    assert.equal(info.source, "config");
    assert.equal(info.weightBytes, null);
    assert.deepEqual(info.dtypes, {});
    assert.equal(info.parameters, want.total, "closed form");
    assert.equal(info.parameters, c.transformers, "transformers' count");
    assert.equal(info.activeParameters, want.active);
    assert.equal(info.embeddingParameters, want.embedding);
    assertPublished(info.parameters, c.total, "total");
    if (c.active) assertPublished(info.activeParameters, c.active, "active");

    if (want.mtp) {
      assert.deepEqual(info.mtp, { layers: want.mtp.layers, parameters: want.mtp.parameters, activeParameters: want.mtp.active, sharedCopies: want.mtp.copies, stored: null });
      assert.equal(info.checkpointParameters, want.total + want.mtp.parameters + want.mtp.copies);
    } else {
      assert.equal(info.mtp, null);
      assert.equal(info.checkpointParameters, info.parameters);
    }
    if (c.checkpoint) assertPublished(info.checkpointParameters, c.checkpoint, "checkpoint");

    // weights at 16, 8.5 and 4.5 bits per parameter
    assert.equal(info.formatBytes.BF16, 2 * want.total);
    assert.equal(info.formatBytes.Q8_0, Math.ceil((want.total * 8.5) / 8));
    assert.equal(info.formatBytes.Q4_K, Math.ceil((want.total * 4.5) / 8));

    // F32 cache per token: the latent row (d_c + d_h^R) against MHA's n_h (d_h + d_h^R + d_v), all layers
    const kv = info.kvCache;
    assert.equal(kv.model.kind, "mla");
    assert.equal(kv.model.bytesPerToken, want.latent * 4 * want.layers);
    assert.equal(kv.mha.bytesPerToken, want.mha * 4 * want.layers);
    assert.equal(kv.contextTokens, info.config.maxPositionEmbeddings);
    assert.equal(kv.bytesAtContext.model, kv.model.bytesPerToken * kv.contextTokens);
  });
}

test("info: a config.json path, a cache type and a context length", () => {
  const dir = join(ZOO, "DeepSeek-V3");
  const byPath = describeModel(join(dir, "config.json"), { cacheDtype: "BF16", context: 32768 });
  const byDir = describeModel(dir, { cacheDtype: "BF16", context: 32768 });
  assert.deepEqual({ ...byPath, dir: "" }, { ...byDir, dir: "" });
  const kv = byPath.kvCache;
  // 61 layers x (512 + 64) BF16 numbers per token; MHA keeps 128 x (192 + 128) per layer
  assert.equal(kv.model.bytesPerToken, 61 * 576 * 2);
  assert.equal(kv.bytesAtContext.model, 61 * 576 * 2 * 32768);
  assert.equal(kv.bytesAtContext.mha, 61 * 128 * 320 * 2 * 32768);
  assert.equal(kv.bytesAtContext.mla, kv.bytesAtContext.model);
  // the same from a config parsed in memory
  const mem = describeConfig(parseConfig(zooJson("DeepSeek-V3")), { cacheDtype: "BF16", context: 32768 });
  assert.deepEqual({ ...mem, dir: "" }, { ...byDir, dir: "" });
});

test("info with weights keeps the stored dtypes and bytes, and reports the same computed fields", () => {
  const v3 = join(FIXTURES, "tiny-deepseek-v3");
  const info = describeModel(v3);
  const want = closedForm(JSON.parse(readFileSync(join(v3, "config.json"), "utf8")) as Json);
  assert.equal(info.source, "weights");
  assert.equal(info.parameters, 250000);
  assert.equal(info.parameters, want.total);
  assert.equal(info.activeParameters, want.active);
  assert.deepEqual(info.dtypes, { F32: 250000 });
  assert.equal(info.weightBytes, 250000 * 4);
  // the fixture's config has num_nextn_predict_layers 1; transformers saves no MTP tensors
  assert.equal(info.mtp?.stored, false);
  assert.equal(info.mtp?.parameters, want.mtp?.parameters);
  // a dense GQA model: its own K/V cache, and no MTP
  const llama = describeModel(join(FIXTURES, "tiny-llama"), "F32");
  assert.equal(llama.mtp, null);
  assert.equal(llama.kvCache.mla, null);
  assert.equal(llama.kvCache.bytesAtContext.mla, null);
});

const GLM = join(FIXTURES, "tiny-glm4-moe-lite");
test("info with weights that hold the MTP layer: its tensors have the shapes info counts", { skip: existsSync(GLM) ? false : "fixture tiny-glm4-moe-lite not made yet" }, () => {
  const info = describeModel(GLM);
  assert.equal(info.mtp?.stored, true);
  const ckpt = openCheckpoint(GLM);
  try {
    const mtp = mtpTensors(info.config, info.config.mtpLayers);
    for (const [name, shape] of mtp) assert.deepEqual(ckpt.info(name).shape, shape, name);
    assert.equal(info.mtp?.parameters, [...mtp.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0));
  } finally {
    ckpt.close();
  }
});

test("info: a folder with only config.json is sized from it; bad paths and flags are one-line errors", () => {
  const dir = mkdtempSync(join(tmpdir(), "mla-info-"));
  writeFileSync(join(dir, "config.json"), readFileSync(join(FIXTURES, "tiny-deepseek-v3", "config.json")));
  assert.equal(describeModel(dir).parameters, 250000);
  writeFileSync(join(dir, "notes.txt"), "x");
  assert.throws(() => describeModel(join(dir, "notes.txt")), (e: Error) => e instanceof MlaError && /notes\.txt is a file/.test(e.message));
  writeFileSync(join(dir, "broken.json"), "{");
  assert.throws(() => describeModel(join(dir, "broken.json")), (e: Error) => e instanceof MlaError && /broken\.json is not valid JSON/.test(e.message));
  assert.throws(() => infoCommand({ model: dir, context: "0" }), /--context must be an integer >= 1/);
  assert.throws(() => infoCommand({ model: dir, cacheType: "q8" }), /--cache-type must be one of f32, f16, bf16/);
  rmSync(dir, { recursive: true });
});

test("CLI: mla info on a config.json alone, text and --json", () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), "info", ...args], { cwd: ROOT, encoding: "utf8" });
  const t = cli("--model", join(ZOO, "DeepSeek-V3"), "--context", "32768", "--cache-type", "bf16");
  assert.equal(t.status, 0, t.stderr);
  assert.match(t.stdout, /sized from config\.json alone/);
  assert.match(t.stdout, /parameters\s+671\.03 B, 36\.63 B active per token/);
  assert.match(t.stdout, /mtp\s+1 layer .*11\.61 B.*684\.49 B in all/);
  assert.match(t.stdout, /32768 tokens/);
  assert.match(t.stdout, /^MLA\s+latent\s+576 \(512 \+ 64\)\s+1\.13 KiB\s+68\.6 KiB\s+1\.0\s+2\.14 GiB$/m);
  const j = cli("--model", join(ZOO, "DeepSeek-V2-Lite", "config.json"), "--json");
  assert.equal(j.status, 0, j.stderr);
  const o = JSON.parse(j.stdout);
  assert.equal(o.source, "config");
  assert.equal(o.parameters, 15_706_484_224);
  assert.equal(o.activeParameters, closedForm(zooJson("DeepSeek-V2-Lite")).active);
  assert.equal(o.weightBytes, null);
  assert.equal(o.kvCache.contextTokens, 163840);
});
