/**
 * The page: load a model (the bundled mla-brown, a picked folder or .gguf file, or a hub download kept in Cache
 * Storage), pick a backend, stream a generation, and draw the KV-cache charts as it runs.
 */
import { renderChart, niceMax, type Line } from "./chart.js";
import { cpuRunner, fetchModelFiles, webgpuRunner, type GenerateSettings, type Runner, type StepInfo } from "./engine.js";
import { CACHE_NAME, cachedTotal, deleteCached, downloadHub, listCached, parseHubInput, planHub, type HubPlan } from "./hub.js";
import { V3, formatBytes, formatTokens, modelCaches, v3Caches, type CacheSeries } from "./kv.js";
import { FORMATS, openModelFiles, type OpenModel, type ModelFiles } from "./models.js";

const BUNDLED = { name: "mla-brown", base: "./models/mla-brown", files: ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"] };

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
  useBundled: $<HTMLButtonElement>("use-bundled"),
  pickFolder: $<HTMLInputElement>("pick-folder"),
  pickGguf: $<HTMLInputElement>("pick-gguf"),
  hubForm: $<HTMLFormElement>("hub-form"),
  hubRef: $<HTMLInputElement>("hub-ref"),
  hubFind: $<HTMLButtonElement>("hub-find"),
  hubEndpoint: $<HTMLInputElement>("hub-endpoint"),
  hubPlan: $("hub-plan"),
  hubPlanText: $("hub-plan-text"),
  hubPlanFiles: $("hub-plan-files"),
  hubDownload: $<HTMLButtonElement>("hub-download"),
  hubCancel: $<HTMLButtonElement>("hub-cancel"),
  modelMessage: $("model-message"),
  formats: $("formats"),
  cacheTotal: $("cache-total"),
  cacheList: $("cache-list"),
  cacheClear: $<HTMLButtonElement>("cache-clear"),
};

let model: OpenModel | null = null;
let cacheSeries: CacheSeries[] = [];
const runners = new Map<"webgpu" | "cpu", Runner>();
let gpuProblem = "";
let runner: Runner | null = null;
/** Measured (context length, bytes) of the running model's cache, one point per step. */
let measured: [number, number][] = [];
let context = 0;

type PageState = "loading" | "ready" | "generating" | "done" | "error";

function setState(s: PageState): void {
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
  const own = cacheSeries.find((s) => s.measured)!;
  const xMax = niceMax(Math.max(context, 16));
  // the measured line last, on top of MQA's (equal to MLA's at mla-brown's sizes)
  const lines: Line[] = [...cacheSeries].reverse().map((s) =>
    s.measured
      ? { label: `${s.kind.toUpperCase()} (measured)`, color: s.color, points: [[0, 0], ...measured], value: formatBytes(measured.length ? measured[measured.length - 1][1] : 0) }
      : {
          label: s.kind.toUpperCase(), color: s.color, dashed: true, value: formatBytes(context * s.bytesPerToken),
          points: [[0, 0], ...measured.map(([x]): [number, number] => [x, x * s.bytesPerToken])],
        },
  );
  const yMax = Math.max(...cacheSeries.map((s) => s.bytesPerToken * Math.max(context, 1)));
  renderChart(ui.modelChart, {
    lines, xMax, yMax: ui.logScale.checked ? yMax : niceMax(yMax, true), logY: ui.logScale.checked,
    xTitle: "context length (tokens in the cache)", formatX: (x) => formatTokens(x), formatY: formatBytes,
  });
  ui.modelChart.dataset.points = String(measured.length);
  ui.modelChart.dataset.context = String(context);
  ui.modelChart.dataset.bytes = String(measured.length ? measured[measured.length - 1][1] : 0);
  const last = measured.length ? measured[measured.length - 1][1] : 0;
  ui.modelTable.replaceChildren(
    row(["attention", "numbers / token / layer", "bytes / token (all layers)", `at ${formatTokens(context)} tokens`, `× ${own.kind.toUpperCase()}`], true),
    ...cacheSeries.map((s) => row([
      s.label, s.formula, formatBytes(s.bytesPerToken),
      s.measured ? `${formatBytes(last)} measured` : formatBytes(context * s.bytesPerToken),
      (s.bytesPerToken / own.bytesPerToken).toFixed(2).replace(/\.00$/, ""),
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

/** Weights past this size are not read into the page's memory for the CPU backend once WebGPU has them. */
const KEEP_HOST_COPY = 1 << 30;

/** "1.2 GiB of 3.4 GiB, 85 MiB/s, 12 s left" for a load that began at t0 (ms). */
function rateText(done: number, total: number, t0: number): string {
  const s = (performance.now() - t0) / 1000, rate = s > 0.2 ? done / s : 0;
  const eta = rate > 0 ? Math.max(0, (total - done) / rate) : NaN;
  return `${formatBytes(done)} of ${formatBytes(total)}${rate ? `, ${formatBytes(rate)}/s` : ""}${Number.isFinite(eta) && done < total ? `, ${eta.toFixed(0)} s left` : ""}`;
}

function loadProgress(verb: string, name: string): (done: number, total: number) => void {
  const t0 = performance.now();
  return (done, total) => {
    ui.progress.value = total ? done / total : 0;
    ui.loadStatus.textContent = `${verb} ${name}: ${rateText(done, total, t0)} of weights`;
  };
}

/**
 * Both backends with the model on them (WebGPU when the browser has it: its tensors streamed to the GPU a layer at a
 * time), replacing the previous model's. The CPU backend reads every tensor into memory, which is skipped for models
 * over KEEP_HOST_COPY that WebGPU runs.
 */
async function setUpBackends(m: OpenModel): Promise<void> {
  const next = new Map<"webgpu" | "cpu", Runner>();
  let problem = "";
  const want = new URLSearchParams(location.search).get("backend");
  if (want === "cpu") problem = "?backend=cpu in the address";
  else {
    try {
      next.set("webgpu", await webgpuRunner(m, loadProgress("uploading to the GPU", m.name)));
    } catch (e) {
      problem = errorText(e);
    }
  }
  if (!next.has("webgpu") || m.weightBytes <= KEEP_HOST_COPY) {
    try {
      next.set("cpu", cpuRunner(m, await m.readAll(loadProgress("reading", m.name))));
    } catch (e) {
      for (const r of next.values()) r.close();
      throw e;
    }
  }
  for (const r of runners.values()) r.close();
  runners.clear();
  for (const [k, r] of next) runners.set(k, r);
  gpuProblem = problem;
  ui.backendSelect.replaceChildren();
  for (const [kind, label] of [["webgpu", "WebGPU"], ["cpu", "CPU (JavaScript)"]] as const) {
    const o = document.createElement("option");
    o.value = kind;
    o.textContent = runners.has(kind) ? label : kind === "cpu" ? `${label}: not kept for models over ${formatBytes(KEEP_HOST_COPY)} that WebGPU runs (?backend=cpu)` : `${label}: unavailable`;
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
  ui.output.dataset.ids = "";
  const newIds: number[] = [];
  measured = [];
  context = 0;
  scheduleCharts();
  abort = new AbortController();
  ui.generate.disabled = true;
  ui.backendSelect.disabled = true;
  sources(false);
  ui.stop.disabled = false;
  setState("generating");
  const kind = runner.kind === "webgpu" ? "WebGPU" : "CPU";
  ui.stats.textContent = `${kind}: prefilling ${ids.length} prompt tokens…`;
  const onStep = (s: StepInfo) => {
    genSpan.textContent += s.text;
    measured.push([s.position, s.cacheBytes]);
    context = s.position;
    ui.output.dataset.tokens = String(s.index + 1);
    newIds.push(s.id);
    ui.output.dataset.ids = newIds.join(",");
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
    sources(true);
    ui.stop.disabled = true;
    scheduleCharts();
  }
}

// ---- models ---------------------------------------------------------------------------------------------------

function notes(m: OpenModel): void {
  const c = m.config;
  const own = cacheSeries.find((s) => s.measured)!;
  const dims = c.attention === "mla"
    ? `d_c ${c.kvLoraRank}, d_h^R ${c.qkRopeHeadDim}, d_h ${c.qkNopeHeadDim}, d_v ${c.vHeadDim}`
    : `${c.numKvHeads} K/V heads of d_h ${c.headDim}`;
  const compare = c.attention === "mla"
    ? `the dashed ones are what MHA, GQA and MQA with the same heads and the same attention scores would hold (keys of ` +
      `d_h + d_h^R and values of d_v per K/V head). At toy sizes one MQA head (${cacheSeries.find((s) => s.kind === "mqa")!.formula}) ` +
      `can be as small as the latent; at DeepSeek-V3's sizes below it is not.`
    : `this model is not MLA: its cache holds keys and values of every K/V head${cacheSeries.length > 1 ? "; the dashed line is MHA with all its heads" : ""}.`;
  ui.modelNote.textContent =
    `${m.name} (${c.modelType}): ${c.numLayers} layers, ${c.numHeads} heads, ${dims}; the cache stores F32. The solid line is the ` +
    `cache the running model holds (${own.formula} numbers per token and layer), read from its state after every token; ${compare}`;
  ui.v3Note.textContent =
    `DeepSeek-V3: ${V3.layers} layers, ${V3.nHeads} heads, d_c ${V3.kvLoraRank}, d_h^R ${V3.qkRopeHeadDim}, ` +
    `d_h ${V3.qkNopeHeadDim}, d_v ${V3.vHeadDim}. MLA caches ${V3.kvLoraRank} + ${V3.qkRopeHeadDim} = 576 numbers per ` +
    `token and layer; MHA with the same 128 heads would cache 40,960. Pick a context length (up to V3's ` +
    `${formatTokens(V3.maxContext)}); the marker is this page's current context.`;
}

function message(text: string | null): void {
  ui.modelMessage.hidden = !text;
  ui.modelMessage.textContent = text ?? "";
}

function errorText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** The model pickers (off while a model loads or a text is generated). */
function sources(enabled: boolean): void {
  for (const e of Array.from(document.querySelectorAll<HTMLButtonElement | HTMLInputElement>(".model-source"))) e.disabled = !enabled;
  ui.hubDownload.disabled = !enabled;
}

/** Pickers and the generate button are off while a model loads. */
function busy(on: boolean): void {
  sources(!on);
  ui.generate.disabled = on || !model;
}

let switching = false;
/** Model loads finished (or refused) so far: body[data-loads], for tests to wait on. */
let loads = 0;

/**
 * Load a model from files that `source` gets (reporting its own progress), then put it on the backends. A failure
 * keeps the model that was running and says why in one line.
 */
async function switchModel(name: string, source: () => Promise<ModelFiles>): Promise<void> {
  if (switching || abort) return;
  switching = true;
  const before = document.body.dataset.state as PageState;
  message(null);
  busy(true);
  setState("loading");
  try {
    const files = await source();
    ui.loadStatus.textContent = `reading ${name}…`;
    const m = await openModelFiles(name, files);
    const series = modelCaches(m.config);
    try {
      await setUpBackends(m);
    } finally {
      m.close(); // the backends hold what they need; the files' Blobs can go
    }
    model = m;
    cacheSeries = series;
    measured = [];
    context = 0;
    notes(m);
    document.body.dataset.model = m.name;
    document.body.dataset.modelFormat = m.format;
    ui.progress.value = 1;
    ui.loadStatus.textContent = `${m.name} loaded (${m.format}): ${formatBytes(m.weightBytes)} of weights read, ` +
      `${m.config.vocabSize} tokens in the vocabulary, context up to ${formatTokens(m.config.maxPositionEmbeddings)}`;
    ui.output.replaceChildren();
    ui.output.dataset.tokens = "0";
    ui.stats.textContent = "tokens/s: –";
    drawModelChart();
    drawV3Chart();
    setState("ready");
  } catch (e) {
    console.error(e);
    message(`${name}: ${errorText(e).replace(new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `), "")}`);
    ui.loadStatus.textContent = model ? `${model.name} is still loaded` : "no model is loaded";
    ui.progress.value = model ? 1 : 0;
    setState(model ? (before === "loading" ? "ready" : before) : "error");
  } finally {
    switching = false;
    busy(false);
    document.body.dataset.loads = String(++loads);
  }
}

function loadBundled(): Promise<void> {
  return switchModel(BUNDLED.name, () => fetchModelFiles(BUNDLED.base, BUNDLED.files, (f, bytes) => {
    ui.progress.value = f;
    ui.loadStatus.textContent = `loading ${BUNDLED.name}: ${formatBytes(bytes)}${f ? ` (${Math.round(f * 100)}%)` : ""}`;
  }));
}

/** A picked folder: its files by path inside the folder (webkitRelativePath starts with the folder's name). */
function pickedFolder(list: FileList): void {
  const all = Array.from(list);
  if (!all.length) return;
  const name = all[0].webkitRelativePath.split("/")[0] || "folder";
  // hidden folders (.git with its LFS objects, .cache of huggingface-cli) are no part of the model
  const files = new Map(all.map((f) => [f.webkitRelativePath.split("/").slice(1).join("/") || f.name, f as Blob] as const)
    .filter(([path]) => !path.split("/").some((p) => p.startsWith("."))));
  void switchModel(name, async () => files);
}

function pickedGguf(list: FileList): void {
  const all = Array.from(list);
  if (!all.length) return;
  const first = all.map((f) => f.name).sort()[0];
  void switchModel(first.replace(/(-\d{5}-of-\d{5})?\.gguf$/i, ""), async () => new Map(all.map((f) => [f.name, f as Blob])));
}

// ---- the hub ------------------------------------------------------------------------------------------------------

let plan: HubPlan | null = null;
let download: AbortController | null = null;

function li(text: string): HTMLLIElement {
  const e = document.createElement("li");
  e.textContent = text;
  return e;
}

function showPlan(p: HubPlan | null): void {
  plan = p;
  ui.hubPlan.hidden = !p;
  if (!p) return;
  const toFetch = p.totalBytes - p.cachedBytes;
  ui.hubPlan.dataset.totalBytes = String(p.totalBytes);
  ui.hubPlan.dataset.fetchBytes = String(toFetch);
  ui.hubPlanText.textContent =
    (p.url ? `${p.url}: ` : `${p.repo}${p.chosenQuant ? ` (${p.chosenQuant})` : ""} at ${p.revision} (commit ${p.commit.slice(0, 12)}) on ${p.endpoint}: `) +
    `${p.files.length} ${p.kind} file${p.files.length > 1 ? "s" : ""}, ${formatBytes(p.totalBytes)} in all; ` +
    (toFetch ? `${formatBytes(toFetch)} to download${p.cachedBytes ? ` (${formatBytes(p.cachedBytes)} already in this browser)` : ""}.` : "all in this browser's cache, nothing to download.");
  ui.hubPlanFiles.replaceChildren(...p.files.map((f) => li(`${f.path}: ${formatBytes(f.size)}`)));
  ui.hubDownload.textContent = toFetch ? `Download ${formatBytes(toFetch)}` : "Load from the cache";
}

async function lookUp(): Promise<void> {
  if (switching) return;
  message(null);
  showPlan(null);
  ui.hubFind.disabled = true;
  try {
    const target = parseHubInput(ui.hubRef.value, ui.hubEndpoint.value);
    ui.loadStatus.textContent = `looking up ${target.repo} on ${target.endpoint}…`;
    showPlan(await planHub(target));
    ui.loadStatus.textContent = model ? `${model.name} is loaded` : "";
  } catch (e) {
    console.error(e);
    message(errorText(e));
  } finally {
    ui.hubFind.disabled = false;
  }
}

function downloadPlan(p: HubPlan): Promise<void> {
  download = new AbortController();
  const signal = download.signal;
  ui.hubDownload.disabled = true;
  const name = p.url ? p.repo.replace(/\.gguf$/i, "") : p.repo.split("/")[1] + (p.chosenQuant ? `:${p.chosenQuant}` : "");
  return switchModel(name, async () => {
    const files = await downloadHub(p, (done, total) => {
      ui.progress.value = total ? done / total : 1;
      ui.loadStatus.textContent = total ? `downloading ${p.url ?? p.repo}: ${formatBytes(done)} of ${formatBytes(total)}` : `${p.repo}: from the cache`;
    }, signal).catch((e: unknown) => {
      throw signal.aborted ? new Error("the download was cancelled (files fetched whole stay in the cache)") : e;
    });
    showPlan(null);
    void showCache();
    return files;
  }).finally(() => {
    download = null;
    void showCache();
  });
}

async function showCache(): Promise<void> {
  if (!("caches" in globalThis)) {
    ui.cacheTotal.textContent = "Cache Storage is not available here (the page needs https or localhost): hub models are not kept.";
    return;
  }
  const [models, bytes] = await Promise.all([listCached(), cachedTotal()]);
  ui.cacheTotal.dataset.bytes = String(bytes);
  ui.cacheTotal.dataset.models = String(models.length);
  ui.cacheTotal.textContent = `Cached in this browser: ${models.length} model${models.length === 1 ? "" : "s"}, ${formatBytes(bytes)}`;
  ui.cacheClear.disabled = bytes === 0 && models.length === 0;
  ui.cacheList.replaceChildren(...models.map((m) => {
    const p = m.plan, e = li(p.url ? `${p.url}, ${formatBytes(p.totalBytes)} ` : `${p.repo}${p.chosenQuant ? `:${p.chosenQuant}` : ""} @ ${p.revision} (${p.commit.slice(0, 12)}), ${formatBytes(p.totalBytes)}, ${p.endpoint} `);
    e.dataset.key = m.key;
    e.dataset.repo = p.repo;
    const load = document.createElement("button");
    load.textContent = "Load";
    load.className = "cache-load model-source";
    load.addEventListener("click", () => void downloadPlan(p));
    const del = document.createElement("button");
    del.textContent = "Delete";
    del.className = "cache-delete";
    del.addEventListener("click", () => void deleteCached(m.key).then(showCache));
    e.append(load, del);
    return e;
  }));
}

// ---- start ----------------------------------------------------------------------------------------------------

function formatsNote(): void {
  ui.formats.textContent = `The page reads ${FORMATS.safetensors}; or ${FORMATS.gguf}. Model types: ${FORMATS.models}. ` +
    `Other files are refused. ${FORMATS.backends}. Picked files stay on this computer; hub downloads are kept in this ` +
    `browser's cache (public models only: the page sends no token).`;
}

async function main(): Promise<void> {
  drawV3Chart();
  formatsNote();
  for (const e of [ui.v3Context, ui.v3Dtype, ui.logScale]) e.addEventListener("input", scheduleCharts);
  ui.backendSelect.addEventListener("change", () => selectBackend(ui.backendSelect.value as "webgpu" | "cpu"));
  ui.generate.addEventListener("click", () => void generate());
  ui.stop.addEventListener("click", () => abort?.abort());
  ui.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void generate();
  });
  ui.useBundled.addEventListener("click", () => void loadBundled());
  ui.pickFolder.addEventListener("change", () => (ui.pickFolder.files && pickedFolder(ui.pickFolder.files), (ui.pickFolder.value = "")));
  ui.pickGguf.addEventListener("change", () => (ui.pickGguf.files && pickedGguf(ui.pickGguf.files), (ui.pickGguf.value = "")));
  ui.hubForm.addEventListener("submit", (e) => (e.preventDefault(), void lookUp()));
  ui.hubDownload.addEventListener("click", () => plan && void downloadPlan(plan));
  ui.hubCancel.addEventListener("click", () => (download ? download.abort() : showPlan(null)));
  ui.cacheClear.addEventListener("click", () => void globalThis.caches.delete(CACHE_NAME).then(showCache));
  void showCache().catch((e) => message(`the browser's cache: ${errorText(e)}`));
  await loadBundled();
  if (!model) {
    showError(new Error(ui.modelMessage.textContent ?? "the model did not load"));
    ui.loadStatus.textContent = "the model did not load";
  }
}

void main();
