/** The page: load mla-brown, pick a backend, stream a generation, and draw the KV-cache charts as it runs. */
import { renderChart, niceMax, type Line } from "./chart.js";
import { cpuRunner, loadModelFiles, webgpuRunner, type GenerateSettings, type LoadedModel, type Runner, type StepInfo } from "./engine.js";
import { V3, formatBytes, formatTokens, modelCaches, v3Caches, type CacheSeries } from "./kv.js";

const MODEL_BASE = "./models/mla-brown";

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} is missing`);
  return e as T;
}

const ui = {
  progress: $<HTMLProgressElement>("progress"),
  loadStatus: $("load-status"),
  backendSelect: $<HTMLSelectElement>("backend-select"),
  backend: $("backend"),
  prompt: $<HTMLTextAreaElement>("prompt"),
  maxTokens: $<HTMLInputElement>("max-tokens"),
  temperature: $<HTMLInputElement>("temperature"),
  topP: $<HTMLInputElement>("top-p"),
  seed: $<HTMLInputElement>("seed"),
  generate: $<HTMLButtonElement>("generate"),
  stop: $<HTMLButtonElement>("stop"),
  output: $("output"),
  stats: $("stats"),
  modelNote: $("kv-model-note"),
  modelChart: document.getElementById("kv-model") as unknown as SVGSVGElement,
  modelTable: $<HTMLTableElement>("kv-model-table"),
  v3Note: $("kv-v3-note"),
  v3Context: $<HTMLInputElement>("v3-context"),
  v3Dtype: $<HTMLSelectElement>("v3-dtype"),
  v3Chart: document.getElementById("kv-v3") as unknown as SVGSVGElement,
  v3Table: $<HTMLTableElement>("kv-v3-table"),
  logScale: $<HTMLInputElement>("log-scale"),
  error: $("error"),
};

let model: LoadedModel | null = null;
let caches: CacheSeries[] = [];
const runners = new Map<"webgpu" | "cpu", Runner>();
let gpuProblem = "";
let runner: Runner | null = null;
/** Measured (context length, bytes) of the running model's cache, one point per step. */
let measured: [number, number][] = [];
let context = 0;

function setState(s: "loading" | "ready" | "generating" | "done" | "error"): void {
  document.body.dataset.state = s;
}

function showError(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  ui.error.hidden = false;
  ui.error.textContent = `Error: ${msg}`;
  console.error(e);
}

function num(input: HTMLInputElement, fallback: number): number {
  const v = Number(input.value);
  return Number.isFinite(v) ? v : fallback;
}

// ---- charts ---------------------------------------------------------------------------------------------------

function row(cells: string[], head = false): HTMLTableRowElement {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement(head ? "th" : "td");
    td.textContent = c;
    tr.append(td);
  }
  return tr;
}

function drawModelChart(): void {
  if (!model) return;
  const mla = caches.find((s) => s.kind === "mla")!;
  const xMax = niceMax(Math.max(context, 16));
  // the measured MLA line last, on top of MQA's (equal at this model's sizes)
  const lines: Line[] = [...caches].reverse().map((s) =>
    s.kind === "mla"
      ? { label: "MLA (measured)", color: s.color, points: [[0, 0], ...measured], value: formatBytes(measured.length ? measured[measured.length - 1][1] : 0) }
      : {
          label: s.kind.toUpperCase(), color: s.color, dashed: true, value: formatBytes(context * s.bytesPerToken),
          points: [[0, 0], ...measured.map(([x]): [number, number] => [x, x * s.bytesPerToken])],
        },
  );
  const yMax = Math.max(...caches.map((s) => s.bytesPerToken * Math.max(context, 1)));
  renderChart(ui.modelChart, {
    lines, xMax, yMax: ui.logScale.checked ? yMax : niceMax(yMax, true), logY: ui.logScale.checked,
    xTitle: "context length (tokens in the cache)", formatX: (x) => formatTokens(x), formatY: formatBytes,
  });
  ui.modelChart.dataset.points = String(measured.length);
  ui.modelChart.dataset.context = String(context);
  ui.modelChart.dataset.bytes = String(measured.length ? measured[measured.length - 1][1] : 0);
  const last = measured.length ? measured[measured.length - 1][1] : 0;
  ui.modelTable.replaceChildren(
    row(["attention", "numbers / token / layer", "bytes / token (all layers)", `at ${formatTokens(context)} tokens`, "× MLA"], true),
    ...caches.map((s) => row([
      s.label, s.formula, formatBytes(s.bytesPerToken),
      s.kind === "mla" ? `${formatBytes(last)} measured` : formatBytes(context * s.bytesPerToken),
      (s.bytesPerToken / mla.bytesPerToken).toFixed(2).replace(/\.00$/, ""),
    ])),
  );
}

function drawV3Chart(): void {
  const L = Math.round(Math.min(V3.maxContext, Math.max(1, num(ui.v3Context, 131072))));
  const series = v3Caches(Number(ui.v3Dtype.value));
  const mla = series.find((s) => s.kind === "mla")!;
  const n = 64;
  const lines: Line[] = [...series].reverse().map((s) => ({
    label: s.kind.toUpperCase(), color: s.color, dashed: s.kind !== "mla", value: formatBytes(L * s.bytesPerToken),
    points: [[0, 0], ...Array.from({ length: n }, (_, i): [number, number] => {
      const x = ((i + 1) / n) * L;
      return [x, x * s.bytesPerToken];
    })],
  }));
  const yMax = Math.max(...series.map((s) => s.bytesPerToken * L));
  renderChart(ui.v3Chart, {
    lines, xMax: L, yMax: ui.logScale.checked ? yMax : niceMax(yMax, true), logY: ui.logScale.checked, binaryX: L >= 4096,
    xTitle: "context length (tokens)", formatX: (x) => formatTokens(x), formatY: formatBytes,
    marker: context ? { x: context, label: `this page: ${formatTokens(context)}` } : undefined,
  });
  ui.v3Chart.dataset.context = String(L);
  ui.v3Table.replaceChildren(
    row(["attention", "numbers / token / layer", "bytes / token (61 layers)", `at ${formatTokens(L)} tokens`, `at this page's ${formatTokens(context)}`, "× MLA"], true),
    ...series.map((s) => row([
      s.label, s.formula, formatBytes(s.bytesPerToken), formatBytes(L * s.bytesPerToken), formatBytes(context * s.bytesPerToken),
      (s.bytesPerToken / mla.bytesPerToken).toFixed(2).replace(/\.00$/, ""),
    ])),
  );
}

let pending = false;
function scheduleCharts(): void {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    drawModelChart();
    drawV3Chart();
  });
}

// ---- backends -------------------------------------------------------------------------------------------------

function selectBackend(kind: "webgpu" | "cpu"): void {
  runner = runners.get(kind) ?? runners.get("cpu")!;
  ui.backendSelect.value = runner.kind;
  document.body.dataset.backend = runner.kind;
  ui.backend.className = `badge ${runner.kind}`;
  ui.backend.textContent = runner.kind === "webgpu"
    ? runner.label
    : `${runner.label}${gpuProblem ? ` (WebGPU not used: ${gpuProblem})` : " (chosen)"}`;
}

async function setUpBackends(m: LoadedModel): Promise<void> {
  const want = new URLSearchParams(location.search).get("backend");
  if (want === "cpu") gpuProblem = "?backend=cpu in the address";
  else {
    try {
      runners.set("webgpu", await webgpuRunner(m));
    } catch (e) {
      gpuProblem = e instanceof Error ? e.message : String(e);
    }
  }
  runners.set("cpu", cpuRunner(m));
  ui.backendSelect.replaceChildren();
  for (const [kind, label] of [["webgpu", "WebGPU"], ["cpu", "CPU (JavaScript)"]] as const) {
    const o = document.createElement("option");
    o.value = kind;
    o.textContent = runners.has(kind) ? label : `${label}: unavailable`;
    o.disabled = !runners.has(kind);
    ui.backendSelect.append(o);
  }
  ui.backendSelect.disabled = false;
  selectBackend(runners.has("webgpu") ? "webgpu" : "cpu");
}

// ---- generation -----------------------------------------------------------------------------------------------

let abort: AbortController | null = null;

async function generate(): Promise<void> {
  if (!model || !runner || abort) return;
  ui.error.hidden = true;
  const text = ui.prompt.value;
  let ids: number[];
  try {
    ids = model.tokenizer.encode(text);
  } catch (e) {
    return showError(e);
  }
  const settings: GenerateSettings = {
    maxNewTokens: Math.max(1, Math.floor(num(ui.maxTokens, 64))),
    temperature: Math.max(0, num(ui.temperature, 0.8)),
    topP: Math.min(1, Math.max(0.01, num(ui.topP, 0.9))),
    seed: Math.max(0, Math.floor(num(ui.seed, 1))),
  };
  const promptSpan = document.createElement("span");
  promptSpan.className = "prompt-text";
  promptSpan.textContent = text;
  const genSpan = document.createElement("span");
  genSpan.className = "generated";
  ui.output.replaceChildren(promptSpan, genSpan);
  ui.output.dataset.tokens = "0";
  measured = [];
  context = 0;
  scheduleCharts();
  abort = new AbortController();
  ui.generate.disabled = true;
  ui.backendSelect.disabled = true;
  ui.stop.disabled = false;
  setState("generating");
  const kind = runner.kind === "webgpu" ? "WebGPU" : "CPU";
  ui.stats.textContent = `${kind}: prefilling ${ids.length} prompt tokens…`;
  const onStep = (s: StepInfo) => {
    genSpan.textContent += s.text;
    measured.push([s.position, s.cacheBytes]);
    context = s.position;
    ui.output.dataset.tokens = String(s.index + 1);
    const tps = s.index > 0 && s.decodeMs > 0 ? (s.index / s.decodeMs) * 1000 : 0;
    ui.stats.dataset.tokensPerSecond = tps.toFixed(2);
    ui.stats.textContent = `${kind}: prompt ${ids.length} tokens, prefill ${s.prefillMs.toFixed(0)} ms · ${s.index + 1} new tokens · ` +
      `${tps ? tps.toFixed(1) : "–"} tokens/s`;
    scheduleCharts();
  };
  try {
    const r = await runner.generate(ids, settings, onStep, abort.signal);
    genSpan.textContent += r.tail;
    const steps = Math.max(0, r.newTokens - 1);
    const tps = steps && r.decodeMs > 0 ? (steps / r.decodeMs) * 1000 : 0;
    ui.stats.dataset.tokensPerSecond = tps.toFixed(2);
    ui.stats.textContent = `${kind}: prompt ${r.promptTokens} tokens, prefill ${r.prefillMs.toFixed(0)} ms ` +
      `(${((r.promptTokens / Math.max(r.prefillMs, 1e-3)) * 1000).toFixed(0)} tokens/s) · ${r.newTokens} new tokens, ` +
      `${tps ? tps.toFixed(1) : "–"} tokens/s decode · ${r.stopReason === "eos" ? "stopped at <eos>" : r.stopReason === "stopped" ? "stopped" : "reached the limit"}`;
    drawModelChart();
    drawV3Chart();
    setState("done");
  } catch (e) {
    showError(e);
    setState("error");
  } finally {
    abort = null;
    ui.generate.disabled = false;
    ui.backendSelect.disabled = false;
    ui.stop.disabled = true;
    scheduleCharts();
  }
}

// ---- start ----------------------------------------------------------------------------------------------------

function notes(m: LoadedModel): void {
  const c = m.config;
  const get = (k: string) => caches.find((s) => s.kind === k)!;
  ui.modelNote.textContent =
    `mla-brown: ${c.numLayers} layers, ${c.numHeads} heads, d_c ${c.kvLoraRank}, d_h^R ${c.qkRopeHeadDim}, d_h ${c.qkNopeHeadDim}, ` +
    `d_v ${c.vHeadDim}, numbers stored as F32. The solid line is the latent cache the running model holds ` +
    `(${get("mla").formula} numbers per token and layer), read from its state after every token; the dashed ones are ` +
    `what MHA, GQA and MQA with the same heads and the same attention scores would hold (keys of d_h + d_h^R and ` +
    `values of d_v per K/V head). At these toy sizes one MQA head (${get("mqa").formula}) is as small as the latent; ` +
    `at DeepSeek-V3's sizes below it is not.`;
  ui.v3Note.textContent =
    `DeepSeek-V3: ${V3.layers} layers, ${V3.nHeads} heads, d_c ${V3.kvLoraRank}, d_h^R ${V3.qkRopeHeadDim}, ` +
    `d_h ${V3.qkNopeHeadDim}, d_v ${V3.vHeadDim}. MLA caches ${V3.kvLoraRank} + ${V3.qkRopeHeadDim} = 576 numbers per ` +
    `token and layer; MHA with the same 128 heads would cache 40,960. Pick a context length (up to V3's ` +
    `${formatTokens(V3.maxContext)}); the marker is this page's current context.`;
}

async function main(): Promise<void> {
  drawV3Chart();
  for (const e of [ui.v3Context, ui.v3Dtype, ui.logScale]) e.addEventListener("input", scheduleCharts);
  ui.backendSelect.addEventListener("change", () => selectBackend(ui.backendSelect.value as "webgpu" | "cpu"));
  ui.generate.addEventListener("click", () => void generate());
  ui.stop.addEventListener("click", () => abort?.abort());
  ui.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void generate();
  });
  try {
    model = await loadModelFiles(MODEL_BASE, (f, bytes) => {
      ui.progress.value = f;
      ui.loadStatus.textContent = `loading mla-brown: ${formatBytes(bytes)}${f ? ` (${Math.round(f * 100)}%)` : ""}`;
    });
    caches = modelCaches(model.config);
    notes(model);
    ui.progress.value = 1;
    ui.loadStatus.textContent = `mla-brown loaded: ${formatBytes(model.weightBytes)} of weights, ` +
      `${model.config.vocabSize} tokens in the vocabulary, context up to ${formatTokens(model.config.maxPositionEmbeddings)}`;
    await setUpBackends(model);
    ui.generate.disabled = false;
    drawModelChart();
    drawV3Chart();
    setState("ready");
  } catch (e) {
    showError(e);
    ui.loadStatus.textContent = "the model did not load";
    setState("error");
  }
}

void main();
