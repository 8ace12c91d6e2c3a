// llama.cpp as a reference in tests: next-token log-probabilities from node-llama-cpp (its prebuilt CPU binaries),
// shared by test/gguf-export.test.ts and test/families.test.ts. Call disposeLlama() in the test file's after().
import assert from "node:assert/strict";
import { getLlama, LlamaLogLevel, type ControlledEvaluateInputItem, type Llama, type Token } from "node-llama-cpp";

let llama: Llama | undefined;

export async function disposeLlama(): Promise<void> {
  await llama?.dispose();
  llama = undefined;
}

export function logSoftmax(logits: Float32Array): Float64Array {
  const max = logits.reduce((m, x) => Math.max(m, x), -Infinity);
  const lse = max + Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
  return Float64Array.from(logits, (x) => x - lse);
}

/** Log-probabilities minus their mean (a softmax is blind to a constant added to every logit). */
export function centred(logp: Float64Array): Float64Array {
  const mean = logp.reduce((s, x) => s + x, 0) / logp.length;
  return logp.map((x) => x - mean);
}

/** llama.cpp's next-token log-probabilities after `ids`, through node-llama-cpp on 2 CPU threads. */
export async function llamaCppLogProbs(gguf: string, ids: number[], vocab: number): Promise<Float64Array> {
  llama ??= await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
  try {
    // F32 KV cache: the default F16 cache alone rounds keys and values to ~5e-4
    const ctx = await model.createContext({
      contextSize: 64, batchSize: 64, threads: 2, sequences: 1, flashAttention: false,
      experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    });
    const input: ControlledEvaluateInputItem[] = ids.map((t, i) => (i === ids.length - 1 ? [t as Token, { generateNext: { probabilities: true } }] : (t as Token)));
    const out = await ctx.getSequence().controlledEvaluate(input);
    await ctx.dispose();
    const probs = out[ids.length - 1]?.next.probabilities;
    assert.ok(probs, "node-llama-cpp returned no probabilities");
    assert.equal(probs.size, vocab, "a probability for every token");
    const logp = new Float64Array(vocab);
    for (const [t, p] of probs) logp[t] = Math.log(p);
    assert.ok(logp.every(Number.isFinite), "no probability underflowed to 0");
    return logp;
  } finally {
    await model.dispose();
  }
}
