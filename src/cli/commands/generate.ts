import { MlaError } from "../../errors.js";
import type { MlaMode } from "../../attention/mla.js";
import { generate, type GenerateResult } from "../../generate/generate.js";
import type { SamplingOptions } from "../../generate/sampler.js";
import { StreamDecoder, TextTokenizer } from "../../tokenizer/tokenizer.js";
import { loadTextTokenizer } from "../../tokenizer/gguf.js";
import { checkAttentionForm, loadModel } from "../load.js";
import type { Runtime } from "../../model/inference.js";

export interface GenerateCliOptions extends SamplingOptions {
  readonly model: string;
  readonly promptIds?: number[];
  readonly prompt?: string;
  readonly maxNewTokens: number;
  readonly attention: MlaMode;
  readonly json?: boolean;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export function timing(r: GenerateResult): { prefillMs: number; prefillTokensPerSecond: number; decodeMsPerToken: number; decodeTokensPerSecond: number } {
  const d = median(r.decodeMs);
  return {
    prefillMs: r.prefillMs,
    prefillTokensPerSecond: (r.promptTokens / r.prefillMs) * 1000,
    decodeMsPerToken: d,
    decodeTokensPerSecond: 1000 / d,
  };
}

export function promptTokens(opts: GenerateCliOptions, tok: TextTokenizer | null): number[] {
  if ((opts.prompt === undefined) === (opts.promptIds === undefined)) throw new MlaError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3");
  if (opts.promptIds) return opts.promptIds;
  if (!tok) throw new MlaError(`--prompt needs a tokenizer (tokenizer.json or tiktoken.model) in ${opts.model}; pass token ids with --prompt-ids instead`);
  const ids = tok.encode(opts.prompt!);
  if (ids.length === 0) throw new MlaError("the prompt encodes to no tokens");
  return ids;
}

export async function generateCommand(opts: GenerateCliOptions, runtime: Runtime): Promise<void> {
  const tok = loadTextTokenizer(opts.model);
  const prompt = promptTokens(opts, tok);
  const model = loadModel(opts.model, runtime);
  checkAttentionForm(model, opts.attention);
  const stream = tok ? new StreamDecoder(tok) : null;
  const out = process.stdout;
  const onToken = opts.json ? undefined : (id: number, i: number) => {
    out.write(stream ? stream.push(id) : `${i ? " " : ""}${id}`);
  };
  const r = await generate(model, prompt, { ...opts, onToken, mode: opts.attention });
  const t = timing(r);
  if (opts.json) {
    const text = tok ? tok.decode(r.tokens) : undefined;
    out.write(JSON.stringify({ tokens: r.tokens, text, stopReason: r.stopReason, promptTokens: r.promptTokens, timing: t }) + "\n");
    return;
  }
  out.write((stream ? stream.flush() : "") + "\n");
  process.stderr.write(
    `[${r.tokens.length} tokens, stop: ${r.stopReason}; prefill ${r.promptTokens} tok at ${t.prefillTokensPerSecond.toFixed(1)} tok/s; ` +
      `decode ${Number.isNaN(t.decodeMsPerToken) ? "-" : t.decodeMsPerToken.toFixed(2)} ms/token${runtime.kind === "webgpu" ? `; ${model.backendName}` : ""}]\n`,
  );
}
