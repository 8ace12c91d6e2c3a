/**
 * npm run experiment [-- --steps N --seeds 0,1 --runs DIR --doc FILE --variants mha,mla]
 *
 * Trains every variant of src/train/experiment.ts's defaultPlan on Brown for each seed (resuming or reusing runs
 * already in --runs), then writes the results table and plot between the results markers of --doc
 * (docs/attention-experiment.md; the discussion around them is written by hand) and the plot next to it.
 */
import * as fs from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { cpus } from "node:os";
import { defaultPlan, runExperiment, summarize, type ExperimentPlan, type VariantSummary } from "../src/train/experiment.js";
import { scatterSvg } from "../src/train/plot.js";

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const tokenizer = resolve("models/mla-brown");
const vocabSize = Object.keys(JSON.parse(fs.readFileSync(join(tokenizer, "tokenizer.json"), "utf8")).model.vocab).length;
const dflt = defaultPlan(tokenizer);
const steps = Number(arg("--steps", String(dflt.base.steps)));
const only = arg("--variants", "");
const plan: ExperimentPlan = {
  ...dflt,
  base: { ...dflt.base, steps },
  seeds: arg("--seeds", dflt.seeds.join(",")).split(",").map(Number),
  variants: only ? dflt.variants.filter((v) => only.split(",").includes(v.name)) : dflt.variants,
};
const runs = resolve(arg("--runs", "runs/attention-experiment"));
const doc = resolve(arg("--doc", "docs/attention-experiment.md"));
const command = `npm run experiment${args.length ? ` -- ${args.join(" ")}` : ""}`;

const t0 = Date.now();
let last = 0;
const results = await runExperiment(plan, runs, vocabSize, (run, i) => {
  if (Date.now() - last > 10_000 || i.step === i.steps) {
    last = Date.now();
    process.stderr.write(`${run}: step ${i.step}/${i.steps} loss ${i.loss.toFixed(3)} ${Math.round(i.tokensPerSecond)} tok/s\n`);
  }
}, (line) => process.stdout.write(line + "\n"));
const wall = (Date.now() - t0) / 1000;
const trainSeconds = results.reduce((s, r) => s + r.seconds, 0);
const sums = summarize(plan, results);

const svgName = basename(doc).replace(/\.md$/, ".svg");
fs.mkdirSync(dirname(doc), { recursive: true });
fs.writeFileSync(join(dirname(doc), svgName), scatterSvg(
  sums.map((s) => ({ x: s.kvPerToken, y: s.meanLoss, err: s.spread, label: s.variant.name })),
  `Brown validation loss vs KV cache (${plan.seeds.length} seeds, mean and half-range)`, "KV-cache numbers per token (all layers, log scale)", "validation loss",
));

const b = plan.base;
const fmt = (s: VariantSummary) =>
  `| ${s.variant.label} | ${s.kvPerToken} | ${s.params.toLocaleString("en-US")} | ${s.intermediate} | ` +
  `${s.meanLoss.toFixed(4)} ± ${s.spread.toFixed(4)} | ${s.meanPpl.toFixed(2)} ± ${s.pplSpread.toFixed(2)} | ${s.losses.map((l) => l.toFixed(4)).join(", ")} |`;
const table = [
  "| variant | KV numbers / token | parameters | SwiGLU width | validation loss (mean ± half-range) | perplexity | per seed |",
  "|---|---|---|---|---|---|---|",
  ...sums.map(fmt),
].join("\n");
const section = `<!-- results:begin (written by scripts/experiment.ts) -->
Setup: ${b.layers} layers, hidden ${b.hidden}, 8 heads; ${b.steps} steps × ${b.batch} sequences × ${b.seq} tokens
(${(results[0].tokens / 1e3).toFixed(0)} K tokens per run) of the Brown train split, AdamW lr ${b.lr} → ${b.minLr} (cosine, ${b.warmup} warmup steps),
seeds ${plan.seeds.join(", ")} (each seed fixes initialization and data order for every variant). Validation loss over ${b.evalWindows} evenly spaced
windows of the held-out split. Tokenizer: models/mla-brown (${vocabSize} tokens).

${table}

![validation loss vs KV cache](${svgName})

Command: \`${command}\` (runs in \`${relative(process.cwd(), runs)}/\`; finished runs are reused). Training time ${(trainSeconds / 60).toFixed(1)} min over
${results.length} runs (this invocation: ${(wall / 60).toFixed(1)} min), ${cpus().length} cores (${cpus()[0]?.model.trim()}), ${new Date().toISOString().slice(0, 10)}.
<!-- results:end -->`;
const old = fs.existsSync(doc) ? fs.readFileSync(doc, "utf8") : "# MLA vs MHA / GQA / MQA on Brown\n\n<!-- results:begin -->\n<!-- results:end -->\n";
const re = /<!-- results:begin[^]*?<!-- results:end -->/;
fs.writeFileSync(doc, re.test(old) ? old.replace(re, section) : old + "\n" + section + "\n");
process.stdout.write(`\n${table}\n\nwrote ${doc}\n`);
