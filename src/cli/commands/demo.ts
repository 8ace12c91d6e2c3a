import { describeModel } from "../../model/info.js";
import { generate } from "../../generate/generate.js";
import { StreamDecoder, TextTokenizer } from "../../tokenizer/tokenizer.js";
import { loadTextTokenizer } from "../../tokenizer/gguf.js";
import { infoText } from "./info.js";
import { loadModel } from "../load.js";
import type { Runtime } from "../../model/inference.js";
import type { MlaMode } from "../../attention/mla.js";
import { timing } from "./generate.js";

/**
 * `npm start`: the bundled model's KV-cache comparison, then one generation in both MLA forms. It samples with a
 * fixed seed (temperature 0.8, top-p 0.9), since greedy decoding loops on a model this small; the same seed and
 * the same logits give the same tokens in both forms.
 */
export async function demoCommand(opts: { model: string; prompt: string; maxNewTokens: number }, runtime: Runtime): Promise<void> {
  const out = process.stdout;
  out.write(infoText(describeModel(opts.model)) + "\n\n");
  const tok = loadTextTokenizer(opts.model);
  const model = loadModel(opts.model, runtime);
  out.write(`kernels: ${model.backendName}\n`);
  const prompt = tok ? tok.encode(opts.prompt) : [1, 2, 3, 4, 5, 6, 7, 8];
  out.write(tok ? `prompt: ${JSON.stringify(opts.prompt)} -> ${prompt.length} tokens\n` : `prompt ids: ${prompt.join(",")}\n`);
  // MLA: both forms, which must agree (on every backend); a GQA model has one form
  const modes: readonly MlaMode[] = model.config.attention !== "mla" ? ["auto"] : ["naive", "absorb"];
  const cache = model.config.attention === "mla" ? "latent cache" : "KV cache";
  const results: number[][] = [];
  for (const mode of modes) {
    const stream = tok ? new StreamDecoder(tok) : null;
    out.write(`\n${mode.padEnd(6)} > `);
    const r = await generate(model, prompt, {
      temperature: 0.8, topP: 0.9, seed: 1, maxNewTokens: opts.maxNewTokens, mode,
      onToken: (id, i) => out.write(stream ? stream.push(id) : `${i ? " " : ""}${id}`),
    });
    out.write((stream?.flush() ?? "") + "\n");
    const t = timing(r);
    out.write(`         ${r.tokens.length} tokens, decode ${t.decodeMsPerToken.toFixed(2)} ms/token, ${cache} ${r.state.cacheBytes} bytes\n`);
    results.push(r.tokens);
  }
  if (results.length < 2) return;
  const same = results[0].join() === results[1].join();
  out.write(`\nnaive and absorbed MLA produce ${same ? "the same" : "DIFFERENT"} tokens.\n`);
  if (!same) process.exitCode = 1;
}
