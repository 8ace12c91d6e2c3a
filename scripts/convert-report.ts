/**
 * The conversion report of docs/conversion.md: convert trained llama-layout models (MHA, GQA, MQA) into MLA at
 * several ranks, measure each against its source on Brown validation windows (relative logit error, perplexity),
 * fine-tune some of them briefly, and fine-tune the source itself for the same steps as a control (the trained
 * models are small and stopped early, so extra training alone helps them).
 *
 *   node --import tsx scripts/convert-report.ts [--ranks 128:16,56:8,24:8,12:4,6:2] [--finetune 24:8,12:4]
 *     [--steps 40] [--lr 3e-4] [--eval-windows 64] [--calibration-windows 32] [--work runs/convert-report]
 *     [--doc docs/conversion.md] SRC...
 *
 * Writes docs/conversion-results.json, docs/conversion.svg and the table between the results markers of --doc.
 */
import * as fs from "node:fs";
import { basename, dirname, join } from "node:path";
import { loadModel } from "../src/model/load.js";

import { WasmOps } from "../src/backends/wasm/ops.js";
import { WasmBackend } from "../src/backends/wasm/index.js";
import { calibrate } from "../src/convert/calibrate.js";
import { convertModel, readSource, sourceCachePerLayer, writeConverted, type ConvertOptions } from "../src/convert/convert.js";
import { corpusTokens, evalWindows, sampleWindows } from "../src/convert/data.js";
import { evaluate } from "../src/convert/evaluate.js";
import { finetune, loadTrainModel } from "../src/convert/finetune.js";
import { saveCheckpoint } from "../src/train/save.js";
import { loadConfig } from "../src/model/families/index.js";

interface Args {
  ranks: [number, number][];
  finetune: [number, number][];
  steps: number;
  lr: number;
  evalWindows: number;
  calWindows: number;
  work: string;
  doc: string;
  sources: string[];
}

function parseArgs(argv: string[]): Args {
  const pairs = (s: string) => s.split(",").map((p) => p.split(":").map(Number) as [number, number]);
  const a: Args = {
    ranks: pairs("128:16,56:8,24:8,12:4,6:2"), finetune: pairs("24:8,12:4"), steps: 40, lr: 3e-4, evalWindows: 64, calWindows: 32,
    work: "runs/convert-report", doc: "docs/conversion.md", sources: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const v = () => argv[++i];
    switch (argv[i]) {
      case "--ranks": a.ranks = pairs(v()); break;
      case "--finetune": a.finetune = pairs(v()); break;
      case "--steps": a.steps = Number(v()); break;
      case "--lr": a.lr = Number(v()); break;
      case "--eval-windows": a.evalWindows = Number(v()); break;
      case "--calibration-windows": a.calWindows = Number(v()); break;
      case "--work": a.work = v(); break;
      case "--doc": a.doc = v(); break;
      default: a.sources.push(argv[i]);
    }
  }
  if (!a.sources.length) throw new Error("give the source model folders");
  return a;
}

interface Row {
  source: string;
  kind: string; // "source", "control", "mla", or an ablation label
  label: string;
  kvRank: number | null;
  ropeDim: number | null;
  cachePerLayer: number;
  cacheRatio: number;
  logitError: number | null;
  ppl: number;
  pplAfter: number | null;
  logitErrorAfter: number | null;
  convertSeconds: number | null;
  finetuneSeconds: number | null;
  ropeCaptured: number | null;
  latentEnergy: number | null;
}

const SEQ = 64, BATCH = 16;

async function main(): Promise<void> {
  if (process.argv[2] === "--render") return render(process.argv[3] ?? "docs/conversion.md");
  const args = parseArgs(process.argv.slice(2));
  fs.mkdirSync(args.work, { recursive: true });
  const ops = await WasmOps.create({ threads: 2 });
  const backend = await WasmBackend.create({ threads: 2 });
  const rows: Row[] = [];
  const started = performance.now();
  const say = (s: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(0)} s] ${s}`);
  try {
    for (const srcDir of args.sources) {
      const name = basename(srcDir).replace(/-s\d+$/, "");
      const cfg = loadConfig(srcDir);
      const srcCache = sourceCachePerLayer(cfg);
      const tokens = await corpusTokens(srcDir, "brown");
      const val = evalWindows(tokens.validation, args.evalWindows, SEQ);
      const srcModel = loadModel(srcDir, { ops });
      const ref = evaluate(srcModel, val);
      say(`${name}: source perplexity ${ref.perplexity.toFixed(2)} (${val.ids.length} windows of ${SEQ})`);
      const base: Omit<Row, "kind" | "label" | "kvRank" | "ropeDim" | "cachePerLayer" | "cacheRatio" | "logitError" | "ppl"> = {
        source: name, pplAfter: null, logitErrorAfter: null, convertSeconds: null, finetuneSeconds: null, ropeCaptured: null, latentEnergy: null,
      };
      // the control: the source trained for the same steps
      const t0 = performance.now();
      const control = loadTrainModel(srcDir, backend);
      finetune(control, tokens.train, { steps: args.steps, batch: BATCH, seq: SEQ, lr: args.lr });
      const controlDir = join(args.work, `${name}-control`);
      fs.mkdirSync(controlDir, { recursive: true });
      saveCheckpoint(controlDir, control);
      const ctl = evaluate(loadModel(controlDir, { ops }), val, ref.logits);
      rows.push({
        ...base, kind: "source", label: `${name} source`, kvRank: null, ropeDim: null, cachePerLayer: srcCache, cacheRatio: 1,
        logitError: 0, ppl: ref.perplexity, pplAfter: ctl.perplexity, logitErrorAfter: ctl.logitError, finetuneSeconds: (performance.now() - t0) / 1000,
      });
      say(`${name}: source + ${args.steps} steps: perplexity ${ctl.perplexity.toFixed(2)}`);

      const source = readSource(srcDir);
      const calibration = calibrate(srcModel, sampleWindows(tokens.train, args.calWindows, SEQ, 0));
      const run = async (kind: string, label: string, opts: ConvertOptions, tune: boolean) => {
        const c0 = performance.now();
        const conv = convertModel(source, opts);
        const out = join(args.work, `${name}-${label.replace(/[^a-z0-9]+/gi, "-")}`);
        writeConverted(out, conv, srcDir);
        const convertSeconds = (performance.now() - c0) / 1000;
        const before = evaluate(loadModel(out, { ops }), val, ref.logits);
        const s = conv.summary;
        const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
        const row: Row = {
          ...base, kind, label, kvRank: opts.kvRank, ropeDim: opts.ropeDim, cachePerLayer: s.target.kvPerTokenPerLayer, cacheRatio: s.cacheRatio,
          logitError: before.logitError, ppl: before.perplexity, convertSeconds,
          ropeCaptured: mean(s.layers.map((l) => l.ropeCaptured)), latentEnergy: mean(s.layers.map((l) => l.latentEnergy)),
        };
        if (tune) {
          const f0 = performance.now();
          const m = loadTrainModel(out, backend);
          finetune(m, tokens.train, { steps: args.steps, batch: BATCH, seq: SEQ, lr: args.lr });
          saveCheckpoint(out, m, { finetune_steps: String(args.steps) });
          row.finetuneSeconds = (performance.now() - f0) / 1000;
          const after = evaluate(loadModel(out, { ops }), val, ref.logits);
          row.pplAfter = after.perplexity;
          row.logitErrorAfter = after.logitError;
        }
        rows.push(row);
        say(`${name} ${label}: cache ${row.cachePerLayer}/${srcCache}, logit error ${row.logitError!.toExponential(2)}, ppl ${row.ppl.toFixed(2)}` +
          (row.pplAfter !== null ? ` -> ${row.pplAfter.toFixed(2)} after ${args.steps} steps` : "") + ` (convert ${convertSeconds.toFixed(1)} s)`);
      };
      for (const [R, r] of args.ranks) {
        if (R > cfg.hiddenSize || r > cfg.headDim) continue;
        const full = R === cfg.hiddenSize && r === cfg.headDim;
        if (!full && R + r >= srcCache) continue; // no compression: only the full-rank mapping is of interest there
        const tune = args.finetune.some(([a, b]) => a === R && b === r);
        await run("mla", `d_c ${R}, d_h^R ${r}`, { kvRank: R, ropeDim: r, calibration }, tune);
      }
      // ablations at the first fine-tuned rank that compresses
      const abl = args.finetune.find(([R, r]) => R + r < srcCache && R <= cfg.hiddenSize && r <= cfg.headDim);
      if (abl) {
        const [R, r] = abl;
        await run("ablation", `d_c ${R}, d_h^R ${r}, weights only (no calibration)`, { kvRank: R, ropeDim: r }, false);
        await run("ablation", `d_c ${R}, d_h^R ${r}, plain NoPE`, { kvRank: R, ropeDim: r, calibration, nope: "plain" }, false);
        await run("ablation", `d_c ${R}, d_h^R ${r}, uniform pairs`, { kvRank: R, ropeDim: r, calibration, ropeSelect: "uniform" }, false);
      }
    }
  } finally {
    await ops.close();
    await backend.close();
  }
  const total = (performance.now() - started) / 1000;
  fs.mkdirSync(dirname(args.doc), { recursive: true });
  const meta: Meta = { steps: args.steps, lr: args.lr, batch: BATCH, seq: SEQ, evalWindows: args.evalWindows, calibrationWindows: args.calWindows, seconds: total, date: new Date().toISOString().slice(0, 10), sources: args.sources };
  fs.writeFileSync(join(dirname(args.doc), "conversion-results.json"), JSON.stringify({ meta, rows }, null, 1) + "\n");
  render(args.doc);
  say(`done in ${(total / 60).toFixed(1)} min`);
}

interface Meta {
  steps: number; lr: number; batch: number; seq: number; evalWindows: number; calibrationWindows: number; seconds: number; date: string; sources: string[];
}

/** Table and plot from conversion-results.json beside `doc` (also: --render [doc] redraws them without rerunning). */
function render(doc: string): void {
  const { meta, rows } = JSON.parse(fs.readFileSync(join(dirname(doc), "conversion-results.json"), "utf8")) as { meta: Meta; rows: Row[] };
  fs.writeFileSync(join(dirname(doc), "conversion.svg"), plot(rows, meta.steps));
  const table = markdown(rows, meta.steps);
  console.log(table);
  if (!fs.existsSync(doc)) return;
  const text = fs.readFileSync(doc, "utf8");
  const start = "<!-- results:start -->", end = "<!-- results:end -->";
  const i = text.indexOf(start), j = text.indexOf(end);
  if (i < 0 || j < i) return;
  const note = `\n_Generated by \`scripts/convert-report.ts\` on ${meta.date} in ${(meta.seconds / 60).toFixed(1)} min on a 2-core VM shared with other jobs. ` +
    `Perplexity on ${meta.evalWindows} Brown validation windows of ${meta.seq} tokens; fine-tunes: ${meta.steps} AdamW steps of ${meta.batch} × ${meta.seq} tokens, ` +
    `peak lr ${meta.lr}, on the Brown train split (about ${Math.round(rows.filter((r) => r.finetuneSeconds !== null).reduce((a, r) => a + r.finetuneSeconds!, 0) / rows.filter((r) => r.finetuneSeconds !== null).length)} s each); ` +
    `calibration: ${meta.calibrationWindows} train windows. Conversion itself took ${Math.min(...rows.filter((r) => r.convertSeconds !== null).map((r) => r.convertSeconds!)).toFixed(1)}–` +
    `${Math.max(...rows.filter((r) => r.convertSeconds !== null).map((r) => r.convertSeconds!)).toFixed(1)} s per model (4 layers)._\n\n`;
  fs.writeFileSync(doc, text.slice(0, i + start.length) + note + table + "\n" + text.slice(j));
}

function fmtErr(x: number | null): string {
  return x === null ? "" : x === 0 ? "0" : x.toExponential(1);
}

function markdown(rows: Row[], steps: number): string {
  const out = [
    `| model | d_c + d_h^R | KV numbers / token / layer | vs source | logit rel. error | val. ppl (vs source) | after ${steps} steps (vs source) | vs source + ${steps} steps |`,
    "|---|---|---|---|---|---|---|---|",
  ];
  const pct = (a: number, b: number) => `${a >= b ? "+" : "−"}${Math.abs(((a - b) / b) * 100).toFixed(1)}%`;
  for (const src of [...new Set(rows.map((r) => r.source))]) {
    const s = rows.find((r) => r.source === src && r.kind === "source")!;
    for (const r of rows.filter((x) => x.source === src)) {
      const ratio = r.cacheRatio >= 1 ? `${Number(r.cacheRatio.toPrecision(3))}×` : `1/${Number((1 / r.cacheRatio).toPrecision(2))}`;
      if (r.kind === "source") {
        out.push(`| **${src}** (source) | — | ${r.cachePerLayer} | 1 | — | ${r.ppl.toFixed(1)} | ${r.pplAfter === null ? "" : `${r.pplAfter.toFixed(1)} (${pct(r.pplAfter, s.ppl)}), control`} | |`);
        continue;
      }
      out.push(
        `| ${r.kind === "ablation" ? `${src}, ablation` : src} | ${r.label.replace(/^d_c (\d+), d_h\^R (\d+)/, "$1 + $2")} | ${r.cachePerLayer} | ${ratio} | ` +
        `${fmtErr(r.logitError)} | ${r.ppl.toFixed(1)} (${pct(r.ppl, s.ppl)}) | ` +
        `${r.pplAfter === null ? "" : `**${r.pplAfter.toFixed(1)}** (${pct(r.pplAfter, s.ppl)})`} | ${r.pplAfter !== null && s.pplAfter !== null ? pct(r.pplAfter, s.pplAfter) : ""} |`,
      );
    }
  }
  return out.join("\n");
}

/** Perplexity against cached numbers per token and layer (log2 axis), before and after the fine-tune, per source. */
function plot(rows: Row[], steps: number): string {
  const W = 720, H = 440, L = 64, R = 200, T = 36, B = 48;
  const mla = rows.filter((r) => r.kind === "mla");
  const srcs = [...new Set(rows.map((r) => r.source))];
  const xs = rows.map((r) => Math.log2(r.cachePerLayer));
  const ys = rows.filter((r) => r.kind !== "ablation").flatMap((r) => [r.ppl, r.pplAfter ?? r.ppl]);
  const x0 = Math.floor(Math.min(...xs)), x1 = Math.ceil(Math.max(...xs));
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  const pad = (y1 - y0) * 0.08;
  y0 -= pad;
  y1 += pad;
  const sx = (v: number) => L + ((Math.log2(v) - x0) / (x1 - x0 || 1)) * (W - L - R);
  const sy = (v: number) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="20" font-size="14">GQA/MHA/MQA to MLA: validation perplexity vs cached numbers per token and layer</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">KV cache: numbers per token and layer (log scale)</text>`,
    `<text x="16" y="${(T + H - B) / 2}" transform="rotate(-90 16 ${(T + H - B) / 2})" text-anchor="middle">validation perplexity</text>`,
  ];
  for (let e = x0; e <= x1; e++) parts.push(`<line x1="${sx(2 ** e)}" y1="${H - B}" x2="${sx(2 ** e)}" y2="${H - B + 5}" stroke="black"/><text x="${sx(2 ** e)}" y="${H - B + 18}" text-anchor="middle">${2 ** e}</text>`);
  const span = y1 - y0, stepY = [5, 10, 20, 25, 50, 100].find((s) => span / s <= 8) ?? 200;
  for (let v = Math.ceil(y0 / stepY) * stepY; v <= y1; v += stepY) parts.push(`<line x1="${L - 5}" y1="${sy(v)}" x2="${W - R}" y2="${sy(v)}" stroke="#eee"/><text x="${L - 8}" y="${sy(v) + 4}" text-anchor="end">${v}</text>`);
  let ly = T + 8;
  srcs.forEach((src, k) => {
    const col = colors[k % colors.length];
    const s = rows.find((r) => r.source === src && r.kind === "source")!;
    const pts = mla.filter((r) => r.source === src).sort((a, b) => a.cachePerLayer - b.cachePerLayer);
    parts.push(`<line x1="${L}" y1="${sy(s.ppl)}" x2="${W - R}" y2="${sy(s.ppl)}" stroke="${col}" stroke-dasharray="6 4" opacity="0.7"/>`);
    if (s.pplAfter !== null) parts.push(`<line x1="${L}" y1="${sy(s.pplAfter)}" x2="${W - R}" y2="${sy(s.pplAfter)}" stroke="${col}" stroke-dasharray="2 3" opacity="0.7"/>`);
    parts.push(`<circle cx="${sx(s.cachePerLayer)}" cy="${sy(s.ppl)}" r="6" fill="none" stroke="${col}" stroke-width="2"/>`);
    parts.push(`<polyline fill="none" stroke="${col}" stroke-width="1.5" points="${pts.map((p) => `${sx(p.cachePerLayer).toFixed(1)},${sy(p.ppl).toFixed(1)}`).join(" ")}"/>`);
    for (const p of pts) {
      parts.push(`<circle cx="${sx(p.cachePerLayer)}" cy="${sy(p.ppl)}" r="3.5" fill="${col}"/>`);
      if (p.pplAfter !== null) {
        parts.push(`<line x1="${sx(p.cachePerLayer)}" y1="${sy(p.ppl)}" x2="${sx(p.cachePerLayer)}" y2="${sy(p.pplAfter)}" stroke="${col}" opacity="0.5"/>`);
        parts.push(`<rect x="${sx(p.cachePerLayer) - 4}" y="${sy(p.pplAfter) - 4}" width="8" height="8" fill="white" stroke="${col}" stroke-width="2"/>`);
      }
    }
    parts.push(`<circle cx="${W - R + 16}" cy="${ly}" r="3.5" fill="${col}"/><text x="${W - R + 26}" y="${ly + 4}">${src}: converted</text>`);
    parts.push(`<rect x="${W - R + 12}" y="${ly + 14}" width="8" height="8" fill="white" stroke="${col}" stroke-width="2"/><text x="${W - R + 26}" y="${ly + 22}">+ ${steps} fine-tune steps</text>`);
    parts.push(`<circle cx="${W - R + 16}" cy="${ly + 36}" r="5" fill="none" stroke="${col}" stroke-width="2"/><text x="${W - R + 26}" y="${ly + 40}">source (dashed)</text>`);
    parts.push(`<line x1="${W - R + 8}" y1="${ly + 54}" x2="${W - R + 22}" y2="${ly + 54}" stroke="${col}" stroke-dasharray="2 3"/><text x="${W - R + 26}" y="${ly + 58}">source + ${steps} steps</text>`);
    ly += 76;
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

await main();
