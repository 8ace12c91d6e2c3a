/**
 * What constrained decoding (response_format) costs: decode ms/token of one sequence (sampled at temperature 1 by default), with
 * no constraint, with json_object and with a JSON schema, on one model, plus the constraint's own time per token
 * (mask lookup or search, and advancing past the chosen token; applying the mask happens in the sampler and is in
 * the difference). Runs alternate the three modes so load on the machine spreads over all of them. The first
 * schema run starts with an empty mask cache (cold); the medians are over the rest.
 *
 *   node --import tsx scripts/bench-grammar.ts [--model models/mla-brown] [--vocab tokenizer|TEKKEN.json]
 *        [--tokens 200] [--runs 7] [--temperature 1] [--threads 1] [--backend cpu|cpu-scalar] [--json]
 *
 * --temperature 0 measures greedy decoding, where the sampler is an argmax: at temperature 1 the sampler sorts the
 * vocabulary every token, and that time depends on the logits (a masked row sorts differently), which blurs the
 * with/without difference on a small model.
 *
 * --vocab: the model's own tokenizer (default), or a Mistral tekken_*.json (as mistral-common ships it: 1000
 * special ids, then the BPE ranks' bytes) cut to the model's vocab_size, for random-weight models without a
 * tokenizer (then token 2, tekken's </s>, is the stop token).
 *
 * Validation instead of timing:
 *
 *   node --import tsx scripts/bench-grammar.ts --validate 100 [--model models/mla-brown] [--python python3]
 *
 * samples that many responses (temperature 1, seeds 0..N-1, over four schemas) through TextEngine and checks each
 * with Python's `jsonschema` (Draft 2020-12), an implementation independent of this repository's.
 */
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { execFileSync } from "node:child_process";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { openRuntime } from "../src/cli/backend.js";
import { BatchScheduler } from "../src/generate/batch.js";
import { StructuredOutput, type TokenConstraint } from "../src/generate/grammar/constraint.js";
import { jsonObjectGrammar, jsonSchemaGrammar, type JsonGrammar } from "../src/generate/grammar/schema.js";
import { TokenVocab } from "../src/generate/grammar/vocab.js";
import { loadTextTokenizer } from "../src/tokenizer/gguf.js";
import { TextEngine } from "../src/generate/text.js";
import { SCHEMAS } from "../test/grammar-check.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const arg = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const modelDir = arg("model", join(ROOT, "models/mla-brown"));
const vocabArg = arg("vocab", "tokenizer");
const tokens = Number(arg("tokens", "200"));
const runs = Number(arg("runs", "7"));
const temperature = Number(arg("temperature", "1"));
const asJson = args.includes("--json");

/** A schema of the usual kinds of fields: strings (bounded and not), an integer, a number, an enum, an array, a nested object. */
const SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 40 },
    age: { type: "integer" },
    score: { type: "number" },
    role: { enum: ["admin", "user", "guest"] },
    tags: { type: "array", items: { type: "string", maxLength: 12 }, minItems: 1, maxItems: 4 },
    address: { type: "object", properties: { city: { type: "string" }, zip: { type: "string", maxLength: 8 } }, required: ["city"] },
    active: { type: "boolean" },
  },
  required: ["name", "age", "role", "tags", "active"],
  additionalProperties: false,
};

function tekkenVocab(path: string, size: number): TokenVocab {
  const t = JSON.parse(readFileSync(path, "utf8")) as { vocab: { token_bytes: string }[]; config?: { default_num_special_tokens?: number } };
  const specials = t.config?.default_num_special_tokens ?? 1000;
  const bytes: (Uint8Array | null)[] = new Array(size).fill(null);
  for (let id = specials; id < size && id - specials < t.vocab.length; id++) bytes[id] = new Uint8Array(Buffer.from(t.vocab[id - specials].token_bytes, "base64"));
  return new TokenVocab(bytes, size);
}

/** Times next() and accept(): the constraint's own work per token. */
class Timed implements TokenConstraint {
  ms = 0;
  constructor(private readonly inner: TokenConstraint) {}
  next(): ReturnType<TokenConstraint["next"]> {
    const t = performance.now();
    const m = this.inner.next();
    this.ms += performance.now() - t;
    return m;
  }
  accept(id: number): boolean {
    const t = performance.now();
    const ok = this.inner.accept(id);
    this.ms += performance.now() - t;
    return ok;
  }
}

interface Run {
  readonly mode: string;
  readonly tokens: number;
  /** Decode ms/token: first token to last, over the tokens between (wall clock). */
  readonly msPerToken: number;
  /** The same in CPU time of this process (less sensitive to other processes on a shared machine). */
  readonly cpuMsPerToken: number;
  readonly constraintMsPerToken: number;
  readonly finish: string;
  readonly cold: boolean;
  readonly run: number;
}

/** The schemas of test/grammar-serve.test.ts: bounded documents of every supported kind. */
const VALIDATE_SCHEMAS: Record<string, object> = SCHEMAS;

/** Check each line {schema, text} of a JSON-lines file with Python's jsonschema; prints one line per failure and a summary. */
const PY_VALIDATE = `
import json, sys
from jsonschema import Draft202012Validator
ok = bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    try:
        doc = json.loads(r["text"])
        errors = list(Draft202012Validator(r["schema"]).iter_errors(doc))
    except Exception as e:
        errors = [e]
    if errors or r["finish"] != "stop":
        bad += 1
        print("INVALID", r["name"], r["seed"], r["finish"], repr(r["text"])[:200], str(errors[0])[:200] if errors else "")
    else:
        ok += 1
from importlib.metadata import version
print(f"jsonschema {version('jsonschema')} (Draft 2020-12): {ok} valid, {bad} invalid")
sys.exit(1 if bad else 0)
`;

async function validateSamples(n: number): Promise<void> {
  const runtime = await openRuntime({ backend: arg("backend", "cpu"), threads: Number(arg("threads", "1")) });
  const engine = TextEngine.open(modelDir, { runtime, maxCacheBytes: 256 << 20, maxBatch: 32, maxQueue: Math.max(64, n) });
  const prompt = engine.encode("The jury said");
  const names = Object.keys(VALIDATE_SCHEMAS);
  const backslash = engine.tokenizer.tokenToId("\\");
  const jobs = Array.from({ length: n }, (_, seed) => {
    const name = names[seed % names.length];
    const logitBias = name === "escapes" && backslash !== undefined ? new Map([[backslash, 15]]) : undefined; // escapes in every string
    return { name, seed, done: engine.start({ prompt, maxTokens: 1000, temperature: 1, seed, logitBias, json: jsonSchemaGrammar(VALIDATE_SCHEMAS[name]) }).done };
  });
  const dir = mkdtempSync(join(tmpdir(), "mla-grammar-"));
  const file = join(dir, "samples.jsonl");
  const lines: string[] = [];
  let tokensOut = 0;
  for (const j of jobs) {
    const r = await j.done;
    tokensOut += r.completionTokens;
    lines.push(JSON.stringify({ name: j.name, seed: j.seed, schema: VALIDATE_SCHEMAS[j.name], text: r.text, finish: r.finishReason }));
  }
  await engine.close();
  await runtime.close?.();
  writeFileSync(file, lines.join("\n") + "\n");
  const escapes = lines.reduce((k, l) => k + (JSON.parse(l).text.match(/\\/g) ?? []).length, 0);
  console.log(`backslashes (escapes) in the texts: ${escapes}`);
  console.log(`${n} samples (${tokensOut} tokens) from ${modelDir}, e.g. ${JSON.stringify(JSON.parse(lines[0]).text)}`);
  try {
    process.stdout.write(execFileSync(arg("python", "python3"), ["-c", PY_VALIDATE, file], { encoding: "utf8" }));
  } catch (e) {
    process.stdout.write(String((e as { stdout?: string }).stdout ?? e));
    process.exitCode = 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (args.includes("--validate")) return validateSamples(Number(arg("validate", "100")));
  const runtime = await openRuntime({ backend: arg("backend", "cpu"), threads: Number(arg("threads", "1")) });
  const model = runtime.load(modelDir);
  const V = model.config.vocabSize;
  let vocab: TokenVocab, stopIds: number[];
  const t0 = performance.now();
  if (vocabArg === "tokenizer") {
    const tok = loadTextTokenizer(modelDir);
    if (!tok) throw new Error(`${modelDir} has no tokenizer: pass --vocab TEKKEN.json`);
    vocab = TokenVocab.fromTokenizer(tok, V);
    stopIds = [...model.config.eosTokenIds];
  } else {
    vocab = tekkenVocab(vocabArg, V);
    stopIds = [2];
  }
  const vocabMs = performance.now() - t0;
  const scheduler = new BatchScheduler(model, { maxCacheBytes: 512 << 20 });
  const so = new StructuredOutput(vocab);
  const modes: [string, JsonGrammar | null][] = [["free", null], ["json_object", jsonObjectGrammar()], ["json_schema", jsonSchemaGrammar(SCHEMA)]];
  const prompt = [3, 5, 7, 11].map((t) => t % V);
  const results: Run[] = [];
  const seen = new Set<string>();
  for (let r = 0; r < runs; r++) {
    for (let k = 0; k < modes.length; k++) {
      const [mode, grammar] = modes[(k + r) % modes.length];
      const constraint = grammar ? new Timed(so.constraint(grammar, stopIds)) : undefined;
      const times: number[] = [];
      let cpu0 = 0, cpu1 = 0;
      const res = await scheduler.submit({
        prompt, maxNewTokens: tokens, temperature, seed: 1000 + r, eosTokenIds: stopIds, constraint,
        onToken: () => {
          times.push(performance.now());
          const u = process.cpuUsage();
          cpu1 = (u.user + u.system) / 1000;
          if (times.length === 1) cpu0 = cpu1;
        },
      }).done;
      const n = times.length;
      results.push({
        mode, tokens: n, msPerToken: n > 1 ? (times[n - 1] - times[0]) / (n - 1) : NaN, cpuMsPerToken: n > 1 ? (cpu1 - cpu0) / (n - 1) : NaN,
        constraintMsPerToken: constraint ? constraint.ms / n : 0, finish: res.finishReason, cold: !seen.has(mode), run: r,
      });
      seen.add(mode);
    }
  }
  await scheduler.close();
  await runtime.close?.();
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const summary = modes.map(([mode]) => {
    const warm = results.filter((x) => x.mode === mode && !x.cold);
    const cold = results.find((x) => x.mode === mode && x.cold)!;
    return {
      mode, runs: warm.length, tokens: warm.map((x) => x.tokens), msPerToken: median(warm.map((x) => x.msPerToken)),
      cpuMsPerToken: median(warm.map((x) => x.cpuMsPerToken)),
      constraintMsPerToken: median(warm.map((x) => x.constraintMsPerToken)), coldConstraintMsPerToken: cold.constraintMsPerToken,
      finishes: warm.map((x) => x.finish),
      // against the free run of the same round (the runs of a round are back to back): drift on the machine cancels
      pairedPct: median(warm.map((x) => {
        const f = results.find((y) => y.mode === "free" && y.run === x.run)!;
        return (100 * (x.msPerToken - f.msPerToken)) / f.msPerToken;
      })),
    };
  });
  const free = summary[0].msPerToken, freeCpu = summary[0].cpuMsPerToken;
  const out = {
    model: modelDir, temperature, vocabSize: V, vocab: vocabArg, vocabMs: Math.round(vocabMs), trieNodes: vocab.trie.nodes, stringTrieNodes: vocab.stringTrie.nodes,
    tokens, summary: summary.map((s) => ({ ...s, costPct: s.mode === "free" ? 0 : (100 * (s.msPerToken - free)) / free,
      cpuCostPct: s.mode === "free" ? 0 : (100 * (s.cpuMsPerToken - freeCpu)) / freeCpu, ownPct: (100 * s.constraintMsPerToken) / free })),
    maskCache: so.stats(),
  };
  if (asJson) {
    console.log(JSON.stringify(out, null, 2));
    return;
  }
  console.log(`${modelDir}, temperature ${temperature}: vocab ${V} (${vocabArg}), vocabulary tries built in ${out.vocabMs} ms (${out.trieNodes} + ${out.stringTrieNodes} nodes)`);
  console.log("| mode | runs | decode ms/token (median) | vs free | vs free, same round (median) | CPU ms/token | vs free | constraint ms/token (own) | own / free decode | cold first run, own ms/token | tokens per run |");
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const s of out.summary) {
    const pct = (x: number): string => (s.mode === "free" ? "" : `${x >= 0 ? "+" : ""}${x.toFixed(1)}%`);
    console.log(`| ${s.mode} | ${s.runs} | ${s.msPerToken.toFixed(3)} | ${pct(s.costPct)} | ${pct(s.pairedPct)} | ${s.cpuMsPerToken.toFixed(3)} | ${pct(s.cpuCostPct)} | ${s.constraintMsPerToken.toFixed(4)} | ${s.ownPct.toFixed(2)}% | ${s.coldConstraintMsPerToken.toFixed(3)} | ${s.tokens.join(", ")} |`);
  }
  console.log(`mask cache: ${JSON.stringify(out.maskCache)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
