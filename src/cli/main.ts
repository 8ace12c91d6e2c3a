#!/usr/bin/env node
import { fileURLToPath } from "node:url";
import { Command, Option } from "commander";
import { MlaError } from "../errors.js";
import { parseFloatArg, parseIds, parseInt10, parseMode } from "./args.js";
import { infoCommand } from "./commands/info.js";
import { logitsCommand } from "./commands/logits.js";
import { generateCommand } from "./commands/generate.js";
import { demoCommand } from "./commands/demo.js";
import { benchCommand } from "./commands/bench.js";
import { openRuntime } from "./backend.js";
import type { Runtime } from "../model/inference.js";

/** The model bundled in the repo (models/ beside src/ and dist/). */
export const DEFAULT_MODEL = fileURLToPath(new URL("../../models/mla-brown", import.meta.url));

/** Errors a user can act on become one line on stderr; anything else is a bug (stack with MLA_DEBUG=1). */
async function run(fn: () => void | Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (e instanceof MlaError || (err && typeof err.code === "string" && err.syscall)) {
      process.stderr.write(`error: ${err.message}\n`);
    } else {
      process.stderr.write(`internal error: ${err?.message ?? String(e)}${process.env.MLA_DEBUG ? `\n${err?.stack}` : " (set MLA_DEBUG=1 for the stack)"}\n`);
    }
    process.exitCode = 1;
  }
}

const modelOpt = () => new Option("-m, --model <path>", "checkpoint folder (config.json + *.safetensors), a GGUF file (or a folder holding one), or hf:ORG/NAME[:QUANT] from the Hugging Face hub (fetched into its cache)").default(DEFAULT_MODEL, "the bundled model, models/mla-brown");
const backendOpts = (cmd: Command) =>
  cmd
    .addOption(new Option("--backend <name>", "cpu (WebAssembly SIMD on worker threads), cpu-scalar (plain-JS reference kernels) or webgpu").default("cpu"))
    .option("--threads <n>", "threads for the cpu backend (default: cores, at most 8)")
    .option("--quantize <type>", "quantize float weight matrices while loading, to GGML's block types: q8_0 (alias q8), q4_0, q4_k, q5_k, q6_k (rows that do not divide a block fall back to q8_0)")
    .option("--cache-type <type>", "MLA latent cache storage (on webgpu also a GQA model's K/V caches): f32 (default), f16 or bf16 (half the cache memory and the bytes decode reads per token; rows rounded once)")
    .option("--gpu-memory <GiB>", "webgpu: GPU memory the model may take (weights after --quantize, plus a 4096-token cache); checked before loading, as WebGPU does not report it");

type BackendFlags = { backend?: string; threads?: string; quantize?: string; attention?: string; cacheType?: string; gpuMemory?: string };

/**
 * Run a command on the backend the flags choose (cpu, cpu-scalar or webgpu: every command runs on each, through
 * the one inference contract). Flag errors come before the backend is opened. The WebGPU device is left explicitly:
 * Dawn for Node crashes in its own teardown when Node exits by itself.
 */
function withRuntime(o: BackendFlags, fn: (runtime: Runtime) => Promise<void>): Promise<void> {
  return run(async () => {
    const threads = o.threads === undefined ? undefined : parseInt10(o.threads, "--threads", 1);
    const attention = o.attention === undefined ? undefined : parseMode(o.attention);
    const runtime = await openRuntime({ backend: o.backend, threads, quantize: o.quantize, attention, cacheType: o.cacheType, gpuMemory: o.gpuMemory });
    try {
      await fn(runtime);
    } finally {
      if (runtime.kind === "webgpu") process.stdout.write("", () => process.exit(process.exitCode ?? 0));
      else await runtime.close();
    }
  });
}

const attentionOpt = () => new Option("--attention <form>", "MLA form: auto (naive prefill, absorbed decode), naive or absorb (MLA models; GQA models have one form)").default("auto");

const program = new Command()
  .name("mla")
  .description("Multi-head Latent Attention (DeepSeek-V2/V3) and llama/qwen2/mistral inference in TypeScript")
  .showHelpAfterError("(run with --help for usage)");

program
  .command("info")
  .description("architecture, parameters (total, active per token, MTP), weight bytes and KV cache per token (the model's own, vs MLA/MHA/GQA/MQA); a folder with only config.json, or a config.json path, is sized from its shapes")
  .addOption(modelOpt())
  .option("--json", "print a JSON object")
  .option("--context <tokens>", "sequence length to size the cache for (default: max_position_embeddings)")
  .option("--cache-type <type>", "cache element type to size: f32 (default), f16 or bf16")
  .action((o) => run(() => infoCommand({ model: o.model, json: o.json, context: o.context, cacheType: o.cacheType })));

backendOpts(program
  .command("logits")
  .description("logits of every input position")
  .addOption(modelOpt())
  .requiredOption("--ids <ids>", "comma-separated token ids, e.g. 1,2,3")
  .addOption(attentionOpt())
  .option("--json", 'print {"logits": [[...], ...]}'))
  .action((o) => {
    const opts = () => ({ model: o.model, ids: parseIds(o.ids, "--ids"), attention: parseMode(o.attention), json: o.json });
    return withRuntime(o, (rt) => logitsCommand(opts(), rt));
  });

backendOpts(program
  .command("generate")
  .description("generate tokens (greedy unless --temperature is given), streaming them as they come")
  .addOption(modelOpt())
  .option("--prompt-ids <ids>", "prompt as comma-separated token ids")
  .option("--prompt <text>", "prompt text (needs the model folder's tokenizer.json or tiktoken.model)")
  .option("-n, --max-new-tokens <n>", "tokens to generate at most", "32")
  .option("--greedy", "always take the most likely token (the default)")
  .option("--temperature <t>", "sample with this temperature (0 = greedy)")
  .option("--top-k <k>", "sample among the k most likely tokens")
  .option("--top-p <p>", "sample from the smallest set with probability >= p")
  .option("--seed <s>", "random seed for sampling (reproducible runs)")
  .addOption(attentionOpt())
  .option("--json", 'print {"tokens": [...], "timing": {...}} instead of streaming'))
  .action((o) => {
    const opts = () => {
      if (o.greedy && o.temperature !== undefined) throw new MlaError("use either --greedy or --temperature, not both");
      const temperature = o.temperature === undefined ? undefined : parseFloatArg(o.temperature, "--temperature");
      return {
        model: o.model,
        promptIds: o.promptIds === undefined ? undefined : parseIds(o.promptIds, "--prompt-ids"),
        prompt: o.prompt,
        maxNewTokens: parseInt10(o.maxNewTokens, "--max-new-tokens"),
        greedy: temperature === undefined || temperature === 0,
        temperature,
        topK: o.topK === undefined ? undefined : parseInt10(o.topK, "--top-k"),
        topP: o.topP === undefined ? undefined : parseFloatArg(o.topP, "--top-p"),
        seed: o.seed === undefined ? undefined : parseInt10(o.seed, "--seed"),
        attention: parseMode(o.attention),
        json: o.json,
      };
    };
    return withRuntime(o, (rt) => generateCommand(opts(), rt));
  });

backendOpts(program
  .command("demo")
  .description("the KV-cache comparison and a generation on the bundled model (what `npm start` runs)")
  .addOption(modelOpt())
  .option("--prompt <text>", "prompt text (if the model has a tokenizer)", "The jury said")
  .option("-n, --max-new-tokens <n>", "tokens to generate", "40"))
  .action((o) => {
    const opts = () => ({ model: o.model, prompt: o.prompt, maxNewTokens: parseInt10(o.maxNewTokens, "--max-new-tokens") });
    return withRuntime(o, (rt) => demoCommand(opts(), rt));
  });

backendOpts(program
  .command("bench")
  .description("prefill and decode speed, peak memory and KV-cache size")
  .addOption(modelOpt())
  .option("--prompt <n>", "prompt tokens (seeded random ids)", "512")
  .option("--decode <n>", "tokens to decode", "64")
  .option("--context <n>", "decode after a synthetic cache of n tokens (long-context timing without the prefill)")
  .addOption(attentionOpt())
  .option("--json", "print a JSON object"))
  .action((o) => {
    const opts = () => ({
      model: o.model, prompt: parseInt10(o.prompt, "--prompt", 1), decode: parseInt10(o.decode, "--decode"),
      context: o.context === undefined ? undefined : parseInt10(o.context, "--context"),
      backend: o.backend, quantize: o.quantize, cacheType: o.cacheType, attention: parseMode(o.attention), json: o.json,
    });
    return withRuntime(o, (rt) => benchCommand(opts(), rt));
  });

backendOpts(program
  .command("chat")
  .description("interactive chat in the terminal, replies streamed (/reset clears the history, Ctrl-C stops a reply)")
  .addOption(modelOpt())
  .option("-n, --max-tokens <n>", "new tokens per reply at most", "256")
  .option("--temperature <t>", "sample with this temperature (default: greedy)")
  .option("--top-k <k>", "sample among the k most likely tokens")
  .option("--top-p <p>", "sample from the smallest set with probability >= p")
  .option("--seed <s>", "random seed for sampling")
  .option("--system <text>", "a system message at the start of the conversation")
  .addOption(attentionOpt()))
  .action((o) =>
    withRuntime(o, async (runtime) => {
      const { chatCommand } = await import("./commands/chat.js");
      await chatCommand({
        model: o.model, maxTokens: parseInt10(o.maxTokens, "--max-tokens", 1),
        temperature: o.temperature === undefined ? undefined : parseFloatArg(o.temperature, "--temperature"),
        topK: o.topK === undefined ? undefined : parseInt10(o.topK, "--top-k"),
        topP: o.topP === undefined ? undefined : parseFloatArg(o.topP, "--top-p"),
        seed: o.seed === undefined ? undefined : parseInt10(o.seed, "--seed"),
        system: o.system, attention: parseMode(o.attention),
      }, runtime);
    }),
  );

backendOpts(program
  .command("serve")
  .description("OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics) with continuous batching")
  .addOption(modelOpt())
  .option("--host <host>", "address to listen on", "127.0.0.1")
  .option("--port <n>", "port (0: any free port)", "8080")
  .option("--name <id>", "model id the API reports (default: the model folder's name)")
  .option("--max-cache-mb <n>", "cache memory budget: a request is admitted when its whole cache (prompt + max_tokens) fits", "1024")
  .option("--no-prefix-cache", "do not keep finished requests' cache rows for later requests that share their prefix (by default idle budget holds them, evicted least recently used first)")
  .option("--max-batch <n>", "sequences decoded together at most", "32")
  .option("--max-queue <n>", "requests waiting for room at most; past it the server answers 429 with Retry-After", "64")
  .option("--max-body-kb <n>", "largest request body (413 past it)", "1024")
  .option("--api-key <key>", "require 'Authorization: Bearer KEY' on every route but /health (default: $MLA_API_KEY)")
  .option("--cors <origins>", "comma-separated origins web pages may call from ('*': any); without it cross-origin requests get 403")
  .option("--shutdown-timeout <s>", "on SIGTERM/SIGINT, seconds running requests may take to finish before they are ended", "10")
  .option("--header-timeout <s>", "seconds a client has to send the request headers", "10")
  .option("--body-timeout <s>", "seconds a client has to send the request body (408 past it)", "30")
  .option("--request-timeout <s>", "seconds a generation may take, queueing included (504 past it; 0: no limit)", "0")
  .option("--max-connections <n>", "open connections at most; more are closed as they arrive", "512")
  .option("--quiet", "no per-request log lines on stderr")
  .option("--log-format <format>", "per-request log lines: text, or json (one JSON object per line with the request id, tokens and timings)", "text")
  .option("--tool-parser <name>", "tool-call format of chat replies: auto (from the chat template, else the tokenizer's marker tokens), none, deepseek_v3, deepseek_v31, glm45 or kimi_k2", "auto")
  .option("--reasoning-parser <name>", "split <think>...</think> off into reasoning_content: auto (when the chat template has </think>), none, or always (think; vLLM's names deepseek_r1, glm45, kimi_k2 too)", "auto")
  .addOption(attentionOpt()))
  .action((o) =>
    withRuntime(o, async (runtime) => {
      const { serveCommand } = await import("./commands/serve.js");
      const { toolParserFlag, reasoningParserFlag } = await import("../server/tools/formats.js");
      const badFlag = (message: string): never => {
        throw new MlaError(message);
      };
      const seconds = (v: string, flag: string) => {
        const n = parseFloatArg(v, flag);
        if (n < 0) throw new MlaError(`${flag} must be >= 0 seconds, got "${v}"`);
        return n;
      };
      await serveCommand({
        model: o.model, host: o.host, port: parseInt10(o.port, "--port"), name: o.name,
        maxCacheMb: parseFloatArg(o.maxCacheMb, "--max-cache-mb"), maxBatch: parseInt10(o.maxBatch, "--max-batch", 1), prefixCache: o.prefixCache !== false,
        maxQueue: parseInt10(o.maxQueue, "--max-queue", 1), maxBodyKb: parseInt10(o.maxBodyKb, "--max-body-kb", 1),
        attention: parseMode(o.attention), quiet: o.quiet,
        logFormat: o.logFormat === "text" || o.logFormat === "json" ? o.logFormat : badFlag(`--log-format must be text or json, got "${o.logFormat}"`),
        apiKey: o.apiKey ?? (process.env.MLA_API_KEY || undefined),
        cors: o.cors === undefined ? undefined : String(o.cors).split(","),
        shutdownTimeoutS: seconds(o.shutdownTimeout, "--shutdown-timeout"),
        headerTimeoutS: seconds(o.headerTimeout, "--header-timeout"), bodyTimeoutS: seconds(o.bodyTimeout, "--body-timeout"),
        requestTimeoutS: seconds(o.requestTimeout, "--request-timeout"),
        maxConnections: parseInt10(o.maxConnections, "--max-connections", 1),
        toolParser: toolParserFlag(o.toolParser), reasoningParser: reasoningParserFlag(o.reasoningParser),
      }, runtime);
    }),
  );

const tokenizerCmd = program.command("tokenizer").description("byte-level BPE tokenizers (Hugging Face tokenizer.json)");
tokenizerCmd
  .command("train")
  .description("train a byte-level BPE tokenizer on the Brown corpus (train split) or on text files")
  .requiredOption("--out <dir>", "folder for tokenizer.json and tokenizer_config.json")
  .option("--vocab <n>", "vocabulary size, special tokens and the 256 bytes included", "4096")
  .option("--corpus <name>", "built-in corpus: brown (the default when no --text is given)")
  .option("--text <files...>", "train on these UTF-8 text files instead (compression is then measured on them)")
  .option("--model-max-length <n>", "model_max_length written to tokenizer_config.json", "2048")
  .action((o: { out: string; vocab: string; corpus?: string; text?: string[]; modelMaxLength: string }) =>
    run(async () => {
      const { tokenizerTrainCommand } = await import("./commands/tokenizer.js");
      await tokenizerTrainCommand({
        out: o.out, vocabSize: parseInt10(o.vocab, "--vocab", 258), modelMaxLength: parseInt10(o.modelMaxLength, "--model-max-length", 1),
        corpus: o.corpus, text: o.text,
      });
    }),
  );

program
  .command("train")
  .description("train a dense decoder from scratch on the CPU: MLA (saved as deepseek_v3) or MHA/GQA/MQA (saved as llama); resumable (--resume), with metrics.jsonl and loss.svg in --out")
  .requiredOption("--out <dir>", "run folder: checkpoint, tokenizer, optimizer and trainer state, metrics.jsonl, loss.svg")
  .option("--corpus <name>", "built-in corpus: brown (the default when no --text is given; validation = every 10th document)")
  .option("--text <file>", "train on a UTF-8 text file instead (its last 10% is held out for validation)")
  .option("--tokenizer <dir>", "use this folder's tokenizer.json (copied into --out) instead of training one")
  .option("--vocab <n>", "vocabulary of the BPE tokenizer trained on the corpus (default 1024)")
  .option("--layers <n>", "decoder layers (default 2)")
  .option("--hidden <n>", "hidden size (default 64)")
  .option("--heads <n>", "attention heads (default 4)")
  .option("--attention <kind>", "mla (deepseek_v3 layout, the default), or mha, gqa, mqa (llama layout)")
  .option("--kv-heads <n>", "KV heads of --attention gqa (default 2)")
  .option("--head-dim <n>", "per-head width of mha/gqa/mqa (default hidden / heads)")
  .option("--kv-lora-rank <n>", "KV latent width d_c (default 32)")
  .option("--q-lora-rank <n>", "query latent width; 0 = no query compression (default 0)")
  .option("--nope <n>", "per-head non-RoPE query/key dims (default 16)")
  .option("--rope <n>", "per-head decoupled RoPE dims, even (default 8)")
  .option("--v <n>", "per-head value dims (default 16)")
  .option("--intermediate <n>", "SwiGLU hidden size (default 172)")
  .option("--steps <n>", "optimizer steps in all (default 200; may be raised on --resume)")
  .option("--batch <n>", "sequences per step (default 8)")
  .option("--seq <n>", "tokens per sequence (default 64)")
  .option("--lr <x>", "peak learning rate (default 3e-3)")
  .option("--min-lr <x>", "learning rate at the end of the cosine decay (default 3e-4)")
  .option("--warmup <n>", "linear warmup steps (default 20)")
  .option("--accum <n>", "micro-batches per step (gradient accumulation; default 1)")
  .option("--clip <x>", "clip the global gradient norm to this (default 1)")
  .option("--wd <x>", "AdamW weight decay (default 0.1)")
  .option("--seed <n>", "seed of initialization and data order (default 0)")
  .option("--eval-windows <n>", "held-out windows per evaluation (default 32)")
  .option("--save-every <n>", "save every n steps (and at the end)", "50")
  .option("--eval-every <n>", "validation loss every n steps (and at the end)", "50")
  .option("--stop-at <step>", "stop (after saving) at this step, as if interrupted; continue with --resume")
  .option("--resume", "continue the run saved in --out (same data order and losses)")
  .option("--json", "print the summary as a JSON object")
  .option("--backend <name>", "cpu: WebAssembly SIMD matmuls on worker threads (default); cpu-scalar: the scalar reference; webgpu: the matmuls on the GPU")
  .option("--threads <n>", "threads of the cpu backend (default: available cores, at most 8)")
  .action((o) =>
    run(async () => {
      const { trainCommand } = await import("./commands/train.js");
      await trainCommand(o);
    }),
  );

program
  .command("convert")
  .description("convert a llama/qwen2/mistral (MHA or GQA) checkpoint into a deepseek_v3 MLA checkpoint with a smaller KV cache (docs/conversion.md)")
  .addOption(modelOpt())
  .requiredOption("--out <dir>", "folder for the converted checkpoint (config.json, model.safetensors, conversion.json, tokenizer)")
  .requiredOption("--kv-rank <n>", "latent width d_c (kv_lora_rank), 1..hidden_size; hidden_size is full rank")
  .requiredOption("--rope-dim <n>", "decoupled RoPE width d_h^R (qk_rope_head_dim), even, 2..head_dim (grouped: a multiple of 2 x KV heads, up to KV heads x head_dim)")
  .option("--rope-select <how>", "which rotated pairs to keep: high (default), uniform or norm")
  .option("--biases <how>", "attention biases (qwen2): refuse (default) or drop (approximate: deepseek_v3 has no place for them; fine-tune to recover)")
  .option("--rope-key <how>", "shared (default: one RoPE key for all heads, plain RoPE) or grouped (each KV group its own pairs at the source's frequencies, a longrope table: exact at full rank; not loaded by the PyTorch peer)")
  .option("--nope <how>", "rotated dims without a RoPE slot: mean (their mean rotation, default with --calibration) or plain (unrotated)")
  .option("--calibration <text>", "fit to activations on text: brown (train split) or a UTF-8 file (needs a tokenizer in --model)")
  .option("--calibration-windows <n>", "calibration windows of --seq tokens (default 32)")
  .option("--finetune-steps <n>", "AdamW steps after converting, on the --calibration text (default brown); 0 = none (default)")
  .option("--finetune-lr <x>", "peak fine-tune learning rate (default 3e-4)")
  .option("--batch <n>", "fine-tune sequences per step (default 16)")
  .option("--seq <n>", "tokens per window (default 64)")
  .option("--eval-windows <n>", "held-out windows for the logit error and perplexity (default 64)")
  .option("--seed <n>", "seed of calibration and fine-tune windows (default 0)")
  .option("--backend <name>", "fine-tune matmuls: cpu (WebAssembly SIMD, default) or cpu-scalar")
  .option("--threads <n>", "threads of the cpu backend")
  .option("--json", "print the result as a JSON object")
  .action((o) =>
    run(async () => {
      const { convertCommand } = await import("./commands/convert.js");
      const res = await convertCommand(o, o.json ? () => {} : (line) => console.log(line));
      if (o.json) process.stdout.write(JSON.stringify(res) + "\n");
      else console.log(`wrote ${res.out} in ${res.seconds.toFixed(1)} s`);
    }),
  );

program
  .command("export")
  .description("write a checkpoint folder as a GGUF file that llama.cpp runs (deepseek2 for MLA models, llama, qwen2)")
  .argument("<model>", "checkpoint folder (config.json + *.safetensors)")
  .argument("<out>", "the GGUF file to write")
  .option("--format <name>", "output format: gguf", "gguf")
  .option("--type <t>", "weight type: f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k (norms, biases, the router gate stay f32)", "f16")
  .option("--fallback <how>", "K-quant rows not whole 256-blocks: llama.cpp (Q5_0/Q5_1/Q8_0, as llama-quantize) or q8_0 (larger; both load in mla-ts)", "llama.cpp")
  .option("--json", "print the summary as a JSON object")
  .action((model: string, out: string, o) =>
    run(async () => {
      const { exportCommand } = await import("./commands/export.js");
      await exportCommand(model, out, o);
    }),
  );

program
  .command("pull")
  .description("fetch a model from the Hugging Face hub into its cache ($HF_HUB_CACHE, shared with Python tools): only the files a model needs; resumable; prints the path to pass as --model")
  .argument("<model>", "ORG/NAME (a safetensors checkpoint) or ORG/NAME:QUANT (one GGUF quantization, e.g. :Q4_K_M, :Q8_0)")
  .option("--json", "print a JSON object (repo, commit, path, files)")
  .action((model: string, o: { revision?: string; json?: boolean }) =>
    run(async () => {
      const { pullCommand } = await import("./commands/pull.js");
      await pullCommand({ ref: model, revision: o.revision, json: o.json });
    }),
  );

// Every command that takes a model takes hf:ORG/NAME[:QUANT] too: it is fetched (or found in the cache) here,
// once, before the command runs, and the command sees the local path.
for (const cmd of program.commands) {
  const takesModel = cmd.options.some((o) => o.attributeName() === "model") || cmd.registeredArguments.some((a) => a.name() === "model");
  if (takesModel) cmd.option("--revision <rev>", "branch, tag or commit of an hf: model (default main)");
}
program.hook("preAction", async (_program, cmd) => {
  if (cmd.name() === "pull") return;
  const argIndex = cmd.registeredArguments.findIndex((a) => a.name() === "model");
  const model: unknown = argIndex >= 0 ? cmd.processedArgs[argIndex] : cmd.getOptionValue("model");
  const revision: string | undefined = cmd.getOptionValue("revision");
  if (typeof model !== "string" || (!model.startsWith("hf:") && revision === undefined)) return;
  await run(async () => {
    const { resolveHubModel } = await import("./commands/pull.js");
    const path = await resolveHubModel(model, revision);
    if (argIndex >= 0) cmd.processedArgs[argIndex] = path;
    else cmd.setOptionValue("model", path);
    // the API's model id of a hub model is its name, not the snapshot folder's (a commit id)
    if (cmd.options.some((o) => o.attributeName() === "name") && cmd.getOptionValue("name") === undefined) cmd.setOptionValue("name", model.slice(3));
  });
  if (process.exitCode) process.exit(process.exitCode);
});

await program.parseAsync();
