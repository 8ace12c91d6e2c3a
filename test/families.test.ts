// The MLA families beside deepseek_v2/v3 (glm4_moe_lite, youtu, minicpm3, kimi_k2) past the parity tests
// (test/parity*.test.ts and test/webgpu-model.test.ts run their fixtures against transformers): the MTP layer that
// GLM-4.7-Flash stores and the engine skips, MLA RoPE by halves, and GGUF export, checked in llama.cpp itself
// (node-llama-cpp, as test/gguf-export.test.ts) and read back by mla-ts.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { centred, disposeLlama, llamaCppLogProbs, logSoftmax } from "./llama-cpp.js";
import { exportGguf } from "../src/convert/export-gguf.js";
import { readGguf, readGgufTensor, type GgufValue } from "../src/io/gguf.js";
import { GgufWriter, gv, type GgufTypedValue } from "../src/io/gguf-write.js";
import { readHeader, readTensor, writeSafetensors } from "../src/io/safetensors.js";
import { DeepseekModel } from "../src/model/deepseek-model.js";
import { expectedTensors, loadConfig } from "../src/model/families/index.js";
import { loadModel } from "../src/model/load.js";
import { tensor, toF32, type Tensor } from "../src/tensor/tensor.js";
import { ChatTemplate } from "../src/tokenizer/chat.js";
import { FIXTURES, batchRow, loadReference, relErr } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "mla-families-"));
after(async () => {
  await disposeLlama();
  rmSync(dir, { recursive: true, force: true });
});

/** mla-ts's logits of every fixture row against the transformers reference, naive and absorbed. */
function worstVsReference(modelDir: string, fixture: string): number {
  const model = DeepseekModel.load(modelDir), ref = loadReference(fixture);
  let worst = 0;
  for (const mode of ["naive", "absorb"] as const) {
    ref.inputIds.forEach((ids, b) => {
      worst = Math.max(worst, relErr(model.forward(ids, model.newState(), { mode, allLogits: true }), batchRow(ref.tensors.get("logits")!, b)));
    });
  }
  return worst;
}

test("glm4_moe_lite: the checkpoint's MTP layer (layer num_hidden_layers) is reported and never read", () => {
  const src = join(FIXTURES, "tiny-glm4-moe-lite"), c = loadConfig(src);
  assert.equal(c.mtpLayers, 1);
  assert.equal(c.numLayers, 3);
  const stored = [...readHeader(join(src, "model.safetensors")).tensors.keys()];
  const mtp = stored.filter((n) => n.startsWith("model.layers.3."));
  assert.ok(mtp.includes("model.layers.3.eh_proj.weight") && mtp.includes("model.layers.3.self_attn.kv_b_proj.weight"), "the fixture holds the MTP layer");
  const expected = expectedTensors(c);
  assert.ok(mtp.every((n) => !expected.has(n)), "no tensor of layer 3 is expected");
  assert.deepEqual([...expected.keys()].filter((n) => !stored.includes(n)), [], "every expected tensor is stored");
});

/**
 * A copy of an interleaved MLA fixture rotated by halves instead (rope_interleave false): the RoPE rows of q_b_proj
 * (each head's last d_h^R rows) and of kv_a_proj_with_mqa's k_R reordered so that halves-RoPE of the new weights
 * computes what interleaved RoPE did on the old ones (pair j: dims (2j, 2j+1) -> (j, j + d/2)).
 */
function halvesCopy(fixture: string): string {
  const src = join(FIXTURES, fixture), out = join(dir, `${fixture}-halves`);
  mkdirSync(out, { recursive: true });
  const c = loadConfig(src), dr = c.qkRopeHeadDim, dn = c.qkNopeHeadDim, dc = c.kvLoraRank;
  const config = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  writeFileSync(join(out, "config.json"), JSON.stringify({ ...config, rope_interleave: false }));
  const move = (t: Tensor, stride: number, offset: number): Tensor => {
    const rows = t.shape[0], cols = t.shape[1], x = toF32(t), y = x.slice();
    for (let s = offset; s < rows; s += stride) {
      for (let j = 0; j < dr / 2; j++) {
        y.set(x.subarray((s + 2 * j) * cols, (s + 2 * j + 1) * cols), (s + j) * cols);
        y.set(x.subarray((s + 2 * j + 1) * cols, (s + 2 * j + 2) * cols), (s + dr / 2 + j) * cols);
      }
    }
    return tensor("F32", [rows, cols], y);
  };
  const tensors: Record<string, Tensor> = {};
  for (const [name, info] of readHeader(join(src, "model.safetensors")).tensors) {
    const t = readTensor(info);
    if (/\.self_attn\.(q_b_proj|q_proj)\.weight$/.test(name)) tensors[name] = move(t, dn + dr, dn);
    else if (name.endsWith(".kv_a_proj_with_mqa.weight")) tensors[name] = move(t, dc + dr, dc);
    else tensors[name] = t;
  }
  writeSafetensors(join(out, "model.safetensors"), tensors);
  return out;
}

test("a tied model whose checkpoint also stores lm_head.weight runs with that lm_head, as transformers 5 does", () => {
  const src = join(FIXTURES, "tiny-youtu"), out = join(dir, "tiny-youtu-extra-head");
  mkdirSync(out, { recursive: true });
  copyFileSync(join(src, "config.json"), join(out, "config.json"));
  assert.equal(loadConfig(out).tieWordEmbeddings, true);
  const tensors: Record<string, Tensor> = {};
  for (const [name, info] of readHeader(join(src, "model.safetensors")).tensors) tensors[name] = readTensor(info);
  const embed = tensors["model.embed_tokens.weight"];
  // lm_head = 2 x embedding: every logit doubles, so the result is known exactly from the reference
  tensors["lm_head.weight"] = tensor("F32", [...embed.shape], toF32(embed).map((v) => 2 * v));
  writeSafetensors(join(out, "model.safetensors"), tensors);
  const model = DeepseekModel.load(out), ref = loadReference("tiny-youtu");
  const ids = ref.inputIds[0], want = batchRow(ref.tensors.get("logits")!, 0).map((v) => 2 * v);
  const e = relErr(model.forward(ids, model.newState(), { allLogits: true }), want);
  assert.ok(e < 1e-5, `rel err ${e} against 2 x the tied model's logits`);
});

test("MLA with RoPE by halves (rope_interleave false): the permuted model computes the reference's logits", () => {
  const out = halvesCopy("tiny-youtu");
  assert.equal(loadConfig(out).ropeStyle, "halves");
  const e = worstVsReference(out, "tiny-youtu");
  assert.ok(e < 1e-4, `rel err ${e}`);
  // and it is the pairing that makes it so: read as interleaved, the same weights are another model
  const wrong = DeepseekModel.load(out), c = { ...wrong.config, ropeStyle: "interleaved" as const };
  const ids = loadReference("tiny-youtu").inputIds[0];
  const ew = relErr(new DeepseekModel(c, wrong.weights).forward(ids, wrong.newState()), wrong.forward(ids, wrong.newState()));
  assert.ok(ew > 1e-2, `interleaved reading of halves weights differs (${ew})`);
});



/** ||a - b|| / ||b|| of log-probabilities centred to mean 0 (a softmax is blind to a constant on every logit). */
function centredErr(a: Float64Array, b: Float64Array): number {
  return relErr(centred(a), centred(b));
}

for (const [name, fixture] of [["tiny-glm4-moe-lite", "tiny-glm4-moe-lite"], ["tiny-youtu", "tiny-youtu"], ["tiny-kimi-k2", "tiny-kimi-k2"], ["tiny-youtu with RoPE by halves", "tiny-youtu"]] as const) {
  test(`gguf export of ${name} (deepseek2, F32): llama.cpp and mla-ts reading it back both give the transformers reference's logits`, async (t) => {
    const src = name.endsWith("halves") ? halvesCopy(fixture) : join(FIXTURES, fixture);
    const out = join(dir, `${name.replaceAll(" ", "-")}.gguf`);
    const s = exportGguf(src, out, { type: "f32" });
    assert.deepEqual(s.warnings, []);
    assert.equal(s.arch, "deepseek2");
    const ref = loadReference(fixture), ids = ref.inputIds[1], V = loadConfig(src).vocabSize;
    const want = batchRow(ref.tensors.get("logits")!, 1).subarray((ids.length - 1) * V);
    const back = loadModel(out);
    const eBack = relErr(back.forward(ids, back.newState()), want);
    assert.ok(eBack < 1e-4, `mla-ts on the GGUF: rel err ${eBack}`);
    const eLlama = centredErr(await llamaCppLogProbs(out, ids, V), logSoftmax(want));
    t.diagnostic(`${name}: mla-ts on the GGUF ${eBack.toExponential(2)}, llama.cpp ${eLlama.toExponential(2)}`);
    assert.ok(eLlama < 1e-4, `llama.cpp: rel err ${eLlama}`);
  });
}

test("gguf export of minicpm3 is refused: llama.cpp's deepseek2 has no place for its multipliers", () => {
  assert.throws(() => exportGguf(join(FIXTURES, "tiny-minicpm3"), join(dir, "minicpm3.gguf")), /model_type "minicpm3" is not exported to GGUF: .*minicpm3.*multipliers/);
});

/** A GGUF's metadata with GGUF types guessed from the values (enough for mla-ts, which reads them as numbers). */
function typed(v: GgufValue): GgufTypedValue {
  if (typeof v === "string") return gv.str(v);
  if (typeof v === "boolean") return gv.bool(v);
  if (typeof v === "bigint") return gv.u64(v);
  if (Array.isArray(v)) return gv.arr(typeof v[0] === "string" ? "string" : "i32", v as (string | number)[]);
  return Number.isInteger(v) ? gv.u32(v) : gv.f32(v);
}

test("a llama.cpp-style GGUF with the MTP block (nextn_predict_layers, counted in block_count) loads the decoder only", () => {
  // GLM's 4 stored layers exported as 4 blocks, then marked as llama.cpp's converter marks GLM-4.7-Flash's
  const src4 = join(dir, "glm-4-blocks");
  mkdirSync(src4, { recursive: true });
  const config = JSON.parse(readFileSync(join(FIXTURES, "tiny-glm4-moe-lite", "config.json"), "utf8"));
  writeFileSync(join(src4, "config.json"), JSON.stringify({ ...config, num_hidden_layers: 4, num_nextn_predict_layers: 0 }));
  copyFileSync(join(FIXTURES, "tiny-glm4-moe-lite", "model.safetensors"), join(src4, "model.safetensors"));
  const plain = join(dir, "glm-4-blocks.gguf"), out = join(dir, "glm-nextn.gguf");
  exportGguf(src4, plain, { type: "f32" });
  const g = readGguf(plain);
  assert.equal(g.metadata.get("deepseek2.block_count"), 4);
  const specs = [...g.tensors.values()].map((i) => ({ name: i.name, shape: i.shape, type: i.type as "F32" }));
  const meta = [...g.metadata].filter(([k]) => k !== "general.alignment").map(([k, v]) => [k, typed(v)] as const);
  const w = GgufWriter.open(out, [...meta, ["deepseek2.nextn_predict_layers", gv.u32(1)]], specs);
  for (const s of specs) w.writeTensor(s.name, readGgufTensor(g, s.name).data);
  w.close();
  const c = loadConfig(out);
  assert.deepEqual([c.numLayers, c.mtpLayers], [3, 1]);
  const ref = loadReference("tiny-glm4-moe-lite"), ids = ref.inputIds[0];
  const m = loadModel(out);
  const e = relErr(m.forward(ids, m.newState(), { allLogits: true }), batchRow(ref.tensors.get("logits")!, 0));
  assert.ok(e < 1e-4, `rel err ${e}`);
});

test("GLM chat template with thinking: enable_thinking reaches the template (strings as transformers' apply_chat_template renders them)", () => {
  // test/fixtures/tiny-glm4-moe-lite/chat_template.jinja is a minimal template written to behave as GLM-4.7's for
  // text chats (GLM-4.7-Flash's own file was not reachable; see its header); the expected strings below are
  // transformers 5.18's render_jinja_template output for the same template and messages
  const t = new ChatTemplate(readFileSync(join(FIXTURES, "tiny-glm4-moe-lite", "chat_template.jinja"), "utf8"));
  const msgs = [{ role: "system", content: "Be brief." }, { role: "user", content: "2+2?" }, { role: "assistant", content: "<think>add</think>\n4" }, { role: "user", content: "3+3?" }];
  assert.equal(t.render(msgs), "[gMASK]<sop><|system|>Be brief.<|user|>2+2?<|assistant|></think>4<|user|>3+3?<|assistant|><think>");
  assert.equal(t.render(msgs, true, { enable_thinking: false }), "[gMASK]<sop><|system|>Be brief.<|user|>2+2?<|assistant|></think>4<|user|>3+3?<|assistant|></think>");
  assert.equal(t.render(msgs, true, { enable_thinking: true }), t.render(msgs));
  assert.equal(t.render(msgs.slice(0, 3), false), "[gMASK]<sop><|system|>Be brief.<|user|>2+2?<|assistant|><think>add</think>4");
});
