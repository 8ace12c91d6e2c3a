import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { stat } from "node:fs/promises";
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import type { AddressInfo } from "node:net";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { build, createServer as createViteServer } from "vite";
import { generate } from "../src/generate/generate.js";
import { writeSafetensors } from "../src/io/safetensors.js";
import { Checkpoint } from "../src/model/checkpoint.js";
import { loadModel } from "../src/model/load.js";
import { loadTextTokenizer } from "../src/tokenizer/gguf.js";
import { FIXTURES } from "./helpers.js";
import { filesFromDir, startMockHub } from "./mock-hub.js";
import { writeRandomGguf } from "../scripts/make-random-gguf.js";

// Issue 7: the web page (web/) end to end in headless Chromium (WebGPU on SwiftShader): build it with Vite, serve
// the static files, load the page, type a prompt, generate, wait for tokens, check that the KV-cache chart grew and
// that every request stayed on the page's origin; once on WebGPU and once with navigator.gpu removed (the CPU
// fallback), plus the dev server (`npm run web`). Issue 17: models picked on the page — a folder, a .gguf file, a
// download from a mock hub kept in Cache Storage — generate the same greedy tokens as the engine in Node.
// Screenshots go to web/test-results/ (WEB_ARTIFACTS overrides).
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ROOT = join(import.meta.dirname, "..");
const CONFIG = join(ROOT, "web", "vite.config.ts");
const ARTIFACTS = process.env.WEB_ARTIFACTS ?? join(ROOT, "web", "test-results");
const dir = mkdtempSync(join(tmpdir(), "mla-web-"));
after(() => rmSync(dir, { recursive: true, force: true }));
/** The page built once (`npm run build:web`), for the tests that serve static files. */
const out = join(dir, "dist");
before(() => build({ configFile: CONFIG, logLevel: "warn", build: { outDir: out } }));

/** mla-brown: 4 layers x (d_c 64 + d_h^R 16) numbers x 4 bytes per token. */
const MLA_BYTES_PER_TOKEN = 4 * (64 + 16) * 4;
const TYPES: Record<string, string> = { ".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".json": "application/json" };

/** Static files of `root` (and of `extra`: URL prefix -> folder), streamed, with HEAD answered (sizes). */
function serve(root: string, extra: Record<string, string> = {}): Promise<Server> {
  const server = createServer(async (req, res) => {
    let path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    if (path.endsWith("/")) path += "index.html";
    const prefix = Object.keys(extra).find((p) => path.startsWith(p));
    const base = prefix ? extra[prefix] : root;
    const file = join(base, normalize(prefix ? path.slice(prefix.length) : path).replace(/^(\.\.[/\\])+/, ""));
    try {
      const s = await stat(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "content-length": s.size });
      if (req.method === "HEAD") res.end();
      else createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r(server)));
}

const CHROMIUM_ARGS = ["--enable-unsafe-swiftshader", "--enable-unsafe-webgpu", "--use-angle=swiftshader", "--no-sandbox"];

function launch(): Promise<Browser> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} exists (apt-get install chromium, or set CHROMIUM)`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/**
 * A browser with a profile on disk: Cache Storage of a fresh context (launch()'s) is held in memory with a small quota,
 * and refuses a file of a gigabyte ("Failed to execute 'put' on 'Cache'").
 */
function launchWithProfile(profile: string): Promise<BrowserContext> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} exists (apt-get install chromium, or set CHROMIUM)`);
  return chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1100, height: 1000 } });
}

interface PageRun {
  backend: string;
  badge: string;
  tokens: number;
  generated: string;
  points: number;
  context: number;
  bytes: number;
  /** Points of the chart's measured MLA line. */
  pathPoints: number;
  stats: string;
  offOrigin: string[];
  errors: string[];
}

interface Loaded {
  readonly state: string;
  readonly model: string;
  /** The one-line refusal shown under the pickers ("" when none). */
  readonly message: string;
}

/**
 * Do `action` (which starts a model load) and wait for the load to end, loaded or refused; `navigates`: the action
 * opens the page anew (its count of loads starts again).
 */
async function settle(page: Page, action: () => Promise<unknown>, navigates = false, timeout = 60_000): Promise<Loaded> {
  const before = navigates ? 0 : Number((await page.getAttribute("body", "data-loads")) ?? 0);
  await action();
  await page.waitForFunction((n) => Number(document.body.dataset.loads ?? 0) > n, before, { timeout });
  const hidden = await page.getAttribute("#model-message", "hidden");
  return {
    state: (await page.getAttribute("body", "data-state")) ?? "",
    model: (await page.getAttribute("body", "data-model")) ?? "",
    message: hidden === null ? ((await page.textContent("#model-message")) ?? "") : "",
  };
}

/** `action` loads `model`, and the page is ready to generate with it. */
async function load(page: Page, model: string, action: () => Promise<unknown>, navigates = false, timeout?: number): Promise<void> {
  const r = await settle(page, action, navigates, timeout);
  const why = r.message || (await page.textContent("#error"));
  assert.equal(r.model, model, `${model} is the page's model (${why})`);
  assert.equal(r.state, "ready", `the page is ready with ${model} (${why})`);
}

type Generation = Omit<PageRun, "offOrigin" | "errors"> & { ids: number[] };

/** Generate up to n tokens from the prompt (greedy with temperature 0) and read back what the page shows. */
async function generateOn(page: Page, n: number, temperature?: number, o: { prompt?: string; timeout?: number } = {}): Promise<Generation> {
  await page.fill("#prompt", o.prompt ?? "The jury said");
  await page.fill("#max-tokens", String(n));
  if (temperature !== undefined) await page.fill("#temperature", String(temperature));
  await page.click("#generate");
  const timeout = o.timeout ?? 60_000;
  await page.waitForFunction(() => Number(document.querySelector("#output")?.getAttribute("data-tokens")) > 0, undefined, { timeout });
  await page.waitForSelector("body[data-state=done], body[data-state=error]", { timeout });
  const genError = await page.textContent("#error");
  assert.equal(await page.getAttribute("body", "data-state"), "done", `generation finished (${genError})`);
  return {
    backend: (await page.getAttribute("body", "data-backend")) ?? "",
    badge: (await page.textContent("#backend")) ?? "",
    tokens: Number(await page.getAttribute("#output", "data-tokens")),
    ids: ((await page.getAttribute("#output", "data-ids")) ?? "").split(",").filter(Boolean).map(Number),
    generated: (await page.textContent("#output .generated")) ?? "",
    points: Number(await page.getAttribute("#kv-model", "data-points")),
    context: Number(await page.getAttribute("#kv-model", "data-context")),
    bytes: Number(await page.getAttribute("#kv-model", "data-bytes")),
    pathPoints: ((await page.getAttribute("#kv-model path[data-label$='(measured)']", "d")) ?? "").split(/[ML]/).length - 1,
    stats: (await page.textContent("#stats")) ?? "",
  };
}

async function screenshot(page: Page, shot: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, shot), fullPage: true });
}

/** Load the page, wait for the model, generate `n` tokens from a prompt, and read back what the page shows. */
async function drive(page: Page, url: string, n: number, shot?: string, logScale = false): Promise<PageRun> {
  const origin = new URL(url).origin, offOrigin: string[] = [], errors: string[] = [];
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(`${origin}/`) && !u.startsWith("data:") && !u.startsWith("blob:")) offOrigin.push(u);
  });
  page.on("pageerror", (e) => errors.push(e.message));
  await load(page, "mla-brown", () => page.goto(url), true);
  assert.equal(await page.getAttribute("#kv-model", "data-points"), "0", "the chart starts empty");
  const r: PageRun = { ...(await generateOn(page, n)), offOrigin, errors };
  if (logScale) await page.check("#log-scale");
  if (shot) await screenshot(page, shot);
  return r;
}

function checkRun(r: PageRun, n: number): void {
  assert.deepEqual(r.errors, [], "no page errors");
  assert.deepEqual(r.offOrigin, [], "no request leaves the page's origin");
  assert.ok(r.tokens >= 1 && r.tokens <= n, `between 1 and ${n} tokens were generated, got ${r.tokens}`);
  assert.ok(r.generated.length > 0, "the generated text is shown");
  // prefill adds one point at the prompt's length, each later token one more
  assert.equal(r.points, r.tokens, "one chart point per step");
  assert.equal(r.pathPoints, r.points + 1, "the MLA line is drawn from 0 through every step");
  assert.ok(r.context > 2, `the chart's context grew past the prompt's first tokens (${r.context})`);
  assert.equal(r.bytes, r.context * MLA_BYTES_PER_TOKEN, "the measured latent cache is 1,280 bytes per token");
  assert.match(r.stats, /tokens\/s/, "tokens/s are shown");
}

test("web page: vite build, then WebGPU and the CPU fallback in headless Chromium", { timeout: 240_000 }, async (t) => {
  const js = readdirSync(join(out, "assets")).filter((f) => f.endsWith(".js"));
  const jsBytes = (await Promise.all(js.map((f) => stat(join(out, "assets", f))))).reduce((s, st) => s + st.size, 0);
  assert.ok(jsBytes < 2 * 2 ** 20, `the page's JavaScript is ${jsBytes} bytes (limit 2 MiB)`);
  assert.ok(existsSync(join(out, "models", "mla-brown", "model.safetensors")), "the build carries the model's weights");
  t.diagnostic(`JavaScript: ${jsBytes} bytes in ${js.length} files`);

  const server = await serve(out);
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const browser = await launch();
  try {
    const gpu = await drive(await browser.newPage({ viewport: { width: 1100, height: 900 } }), url, 4, "page-webgpu.png");
    checkRun(gpu, 4);
    assert.equal(gpu.backend, "webgpu", `WebGPU is used when the browser has it (${gpu.badge})`);
    assert.match(gpu.badge, /^WebGPU: /, "the page says WebGPU runs the model");
    t.diagnostic(`webgpu: ${gpu.tokens} tokens ${JSON.stringify(gpu.generated)}; ${gpu.stats}`);

    // no navigator.gpu: the page falls back to the CPU kernels and says why
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    await page.addInitScript(() => {
      delete (Navigator.prototype as { gpu?: unknown }).gpu;
    });
    const cpu = await drive(page, url, 12, "page-cpu.png", true);
    checkRun(cpu, 12);
    assert.equal(cpu.backend, "cpu", `the CPU runs the model without WebGPU (${cpu.badge})`);
    assert.match(cpu.badge, /^CPU: .*WebGPU not used: this browser has no navigator\.gpu/, "the page says which backend runs and why");
    t.diagnostic(`cpu: ${cpu.tokens} tokens ${JSON.stringify(cpu.generated)}; ${cpu.stats}`);
  } finally {
    await browser.close();
    server.close();
  }
});

test("web page: the dev server (npm run web) serves the page and the model", { timeout: 120_000 }, async (t) => {
  const vite = await createViteServer({ configFile: CONFIG, logLevel: "warn", server: { port: 0, host: "127.0.0.1" } });
  await vite.listen();
  const port = (vite.httpServer!.address() as AddressInfo).port;
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const r = await drive(page, `http://127.0.0.1:${port}/?backend=cpu`, 3);
    checkRun(r, 3);
    assert.equal(r.backend, "cpu", "?backend=cpu picks the CPU");
    t.diagnostic(`dev server, cpu: ${r.tokens} tokens; ${r.stats}`);

    // Stop ends a long generation early and keeps what it wrote
    await page.fill("#max-tokens", "1500");
    await page.click("#generate");
    await page.waitForFunction(() => Number(document.querySelector("#output")?.getAttribute("data-tokens")) >= 5, undefined, { timeout: 30_000 });
    await page.click("#stop");
    await page.waitForSelector("body[data-state=done], body[data-state=error]", { timeout: 30_000 });
    const tokens = Number(await page.getAttribute("#output", "data-tokens"));
    assert.ok(tokens >= 5 && tokens < 1500, `Stop ended the generation early (${tokens} tokens)`);
    assert.match((await page.textContent("#stats")) ?? "", /stopped/, "the stats say it was stopped");
    assert.equal(Number(await page.getAttribute("#kv-model", "data-points")), tokens, "the chart kept every step");
    assert.deepEqual(r.errors, [], "no page errors after stopping");
  } finally {
    await browser.close();
    await vite.close();
  }
});

interface Reference {
  readonly ids: number[];
  readonly cacheBytesPerToken: number;
}

/** Greedy tokens of the engine in Node (CPU scalar kernels, MLA absorbed: what the page's CPU backend runs). */
async function reference(path: string, n: number): Promise<Reference> {
  const model = loadModel(path), tok = loadTextTokenizer(path)!;
  const r = await generate(model, tok.encode("The jury said"), { maxNewTokens: n, temperature: 0, mode: "absorb" });
  return { ids: r.tokens, cacheBytesPerToken: model.cacheBytesPerToken };
}

/** Generate greedily on the page's CPU backend: the token ids and the measured cache are the engine's in Node. */
async function sameAsNode(page: Page, ref: Reference, what: string): Promise<Generation> {
  await page.selectOption("#backend-select", "cpu");
  const g = await generateOn(page, ref.ids.length, 0);
  assert.equal(g.backend, "cpu");
  assert.deepEqual(g.ids, ref.ids, `${what}: the page's greedy tokens are the engine's`);
  assert.equal(g.bytes, g.context * ref.cacheBytesPerToken, `${what}: the chart shows the cache the model holds`);
  return g;
}

test("web page: models from a folder, a .gguf file and a hub download kept in Cache Storage", { timeout: 240_000 }, async (t) => {
  // a Hugging Face folder: tiny-deepseek-v3 (MoE, YaRN) in two shards and their index, with the 512-token BPE its
  // vocabulary was made for
  const folder = join(dir, "tiny-deepseek-v3");
  mkdirSync(folder);
  copyFileSync(join(FIXTURES, "tiny-deepseek-v3", "config.json"), join(folder, "config.json"));
  copyFileSync(join(FIXTURES, "tokenizer-bpe512.json"), join(folder, "tokenizer.json"));
  const src = Checkpoint.open(join(FIXTURES, "tiny-deepseek-v3")), all = src.names(), weightMap: Record<string, string> = {};
  for (const [i, part] of [all.slice(0, all.length >> 1), all.slice(all.length >> 1)].entries()) {
    const shard = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(join(folder, shard), Object.fromEntries(part.map((n) => [n, src.load(n)])));
    for (const n of part) weightMap[n] = shard;
  }
  writeFileSync(join(folder, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: src.totalBytes() }, weight_map: weightMap }));
  const gguf = join(FIXTURES, "gguf", "tiny-deepseek-v3-q8_0.gguf");
  const N = 8;
  const qwen2 = join(FIXTURES, "gguf", "tiny-qwen2.gguf");
  const [refFolder, refGguf, refQwen2] = [await reference(folder, N), await reference(gguf, N), await reference(qwen2, N)];
  // refusals: weights in a format the page does not read, a GGUF type it does not read
  const binOnly = join(dir, "bin-only");
  mkdirSync(binOnly);
  copyFileSync(join(folder, "config.json"), join(binOnly, "config.json"));
  writeFileSync(join(binOnly, "pytorch_model.bin"), new Uint8Array(64));
  const firstPart = join(dir, "m-00001-of-00002.gguf");
  copyFileSync(join(FIXTURES, "gguf", "tiny-mistral.gguf"), firstPart);

  const ggufBytes = readFileSync(gguf);
  const hub = await startMockHub({
    repos: [{
      id: "mla-test/tiny-v3-GGUF",
      commits: [{ files: { "README.md": "# tiny", "tiny-v3-Q8_0.gguf": ggufBytes, "tiny-v3-F32.gguf": readFileSync(join(FIXTURES, "gguf", "tiny-deepseek-v3.gguf")) } }],
    }, {
      id: "mla-test/tiny-v3",
      commits: [{ files: { ...filesFromDir(folder), "README.md": "# tiny", "pytorch_model.bin": new Uint8Array(100) } }],
    }],
  });
  const folderBytes = readdirSync(folder).reduce((n, f) => n + readFileSync(join(folder, f)).length, 0);
  const server = await serve(out);
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const browser = await launch();
  const errors: string[] = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
    page.on("pageerror", (e) => errors.push(e.message));
    await load(page, "mla-brown", () => page.goto(url), true);
    assert.match((await page.textContent("#formats")) ?? "", /safetensors.*\.gguf.*Q4_K/s, "the page says which formats it reads");

    // a folder, through <input webkitdirectory>: WebGPU runs it, and the CPU gives the engine's greedy tokens
    await load(page, "tiny-deepseek-v3", () => page.setInputFiles("#pick-folder", folder));
    const gpu = await generateOn(page, 3);
    assert.equal(gpu.backend, "webgpu", gpu.badge);
    assert.ok(gpu.tokens >= 1 && gpu.bytes === gpu.context * 3 * (32 + 8) * 4, `WebGPU ran the picked model: ${gpu.tokens} tokens, ${gpu.bytes} cache bytes`);
    const cpu = await sameAsNode(page, refFolder, "folder");
    assert.equal(cpu.bytes, cpu.context * 3 * (32 + 8) * 4, "the latent cache is 3 layers x (d_c 32 + d_h^R 8) floats per token");
    t.diagnostic(`folder: webgpu ${gpu.tokens} tokens; cpu ${JSON.stringify(cpu.generated)} = Node's ${refFolder.ids.length} tokens`);

    // a .gguf file (Q8_0 and F16 tensors, tokenizer from the metadata)
    await load(page, "tiny-deepseek-v3-q8_0", () => page.setInputFiles("#pick-gguf", gguf));
    assert.equal(await page.getAttribute("body", "data-model-format"), "gguf");
    await sameAsNode(page, refGguf, "gguf");

    // a GQA model (qwen2, F32): WebGPU and the CPU run it, and the chart measures its K/V cache
    await load(page, "tiny-qwen2", () => page.setInputFiles("#pick-gguf", qwen2));
    const gqa = await generateOn(page, 3);
    assert.equal(gqa.backend, "webgpu", gqa.badge);
    assert.equal(gqa.bytes, gqa.context * refQwen2.cacheBytesPerToken, "WebGPU's cache is the engine's size");
    assert.match((await page.getAttribute("#kv-model path[data-label$='(measured)']", "data-label")) ?? "", /^(MHA|GQA|MQA) \(measured\)$/);
    await sameAsNode(page, refQwen2, "qwen2 gguf");
    await load(page, "tiny-deepseek-v3-q8_0", () => page.setInputFiles("#pick-gguf", gguf));

    // refused in one line, and the model that runs stays
    for (const [pick, files, re] of [
      ["#pick-folder", binOnly, /^bin-only: no \.safetensors weights beside config\.json \(pytorch_model\.bin is not read here\)/],
      ["#pick-gguf", join(FIXTURES, "gguf", "bad-type.gguf"), /^bad-type: .*(not supported|does not read)/],
      ["#pick-gguf", firstPart, /^m: GGUF split part m-00002-of-00002\.gguf is missing/],
    ] as const) {
      const prior = await page.getAttribute("body", "data-state");
      const r = await settle(page, () => page.setInputFiles(pick, files));
      assert.match(r.message, re, "the refusal names the file and the reason");
      assert.ok(!r.message.includes("\n"), "in one line");
      assert.equal(r.model, "tiny-deepseek-v3-q8_0", "the running model stays");
      assert.equal(r.state, prior, "and the page is as it was");
      t.diagnostic(`refused: ${r.message.slice(0, 160)}`);
    }

    // the hub: the plan and its size before any byte is downloaded
    const transfers = () => hub.requests.filter((r) => r.path.includes("/resolve/") || r.server === "cdn");
    await page.fill("#hub-endpoint", hub.url);
    await page.fill("#hub-ref", "mla-test/tiny-v3-GGUF:q8_0");
    await page.click("#hub-find");
    await page.waitForSelector("#hub-plan:not([hidden])", { timeout: 30_000 });
    assert.equal(Number(await page.getAttribute("#hub-plan", "data-total-bytes")), ggufBytes.length, "the plan's size is the Q8_0 file's");
    const planText = (await page.textContent("#hub-plan")) ?? "";
    assert.match(planText, /1 gguf file, 286 KiB in all; 286 KiB to download.*tiny-v3-Q8_0\.gguf: 286 KiB/s, planText);
    assert.equal(await page.textContent("#hub-download"), "Download 286 KiB", "the confirmation says how much it fetches");
    assert.deepEqual(transfers(), [], "nothing is downloaded before the confirmation");
    await screenshot(page, "page-hub-plan.png");
    await load(page, "tiny-v3-GGUF:Q8_0", () => page.click("#hub-download"));
    await sameAsNode(page, refGguf, "hub download");
    assert.equal(transfers().filter((r) => r.server === "cdn" && r.method === "GET").length, 1, "the file was downloaded once");
    await page.waitForFunction(() => document.querySelector("#cache-total")?.getAttribute("data-models") === "1");
    assert.equal(Number(await page.getAttribute("#cache-total", "data-bytes")), ggufBytes.length, "the cache holds the file");

    // a safetensors repository by URL (which names its hub): config, shards, index and tokenizer, not the .bin
    await page.fill("#hub-ref", `${hub.url}/mla-test/tiny-v3/tree/main`);
    await page.click("#hub-find");
    await page.waitForSelector("#hub-plan:not([hidden])", { timeout: 30_000 });
    const listed = (await page.$$eval("#hub-plan-files li", (l) => l.map((e) => e.textContent?.split(":")[0]))).sort();
    assert.deepEqual(listed, readdirSync(folder).sort(), "the files mla pull would choose");
    assert.equal(Number(await page.getAttribute("#hub-plan", "data-total-bytes")), folderBytes);
    await load(page, "tiny-v3", () => page.click("#hub-download"));
    await sameAsNode(page, refFolder, "hub safetensors");
    await page.waitForFunction(() => document.querySelector("#cache-total")?.getAttribute("data-models") === "2");

    // a second visit: the cache's manifest answers, the hub is not asked anything
    const asked = hub.requests.length;
    await load(page, "mla-brown", () => page.reload(), true);
    await page.fill("#hub-endpoint", hub.url);
    await page.fill("#hub-ref", "mla-test/tiny-v3-GGUF:q8_0");
    await page.click("#hub-find");
    await page.waitForSelector("#hub-plan:not([hidden])", { timeout: 30_000 });
    assert.equal(await page.getAttribute("#hub-plan", "data-fetch-bytes"), "0", "everything is cached");
    await load(page, "tiny-v3-GGUF:Q8_0", () => page.click("#hub-download"));
    await sameAsNode(page, refGguf, "cached hub model");
    assert.equal(hub.requests.length, asked, `no request reached the hub on the second visit (${JSON.stringify(hub.requests.slice(asked))})`);
    await screenshot(page, "page-models.png");

    // deleting one model frees its files; "Delete all" empties the cache
    await page.click("#cache-list li[data-repo='mla-test/tiny-v3-GGUF'] .cache-delete");
    await page.waitForFunction(() => document.querySelector("#cache-total")?.getAttribute("data-models") === "1");
    assert.equal(Number(await page.getAttribute("#cache-total", "data-bytes")), folderBytes, "the other model's files stay");
    await page.click("#cache-clear");
    await page.waitForFunction(() => document.querySelector("#cache-total")?.getAttribute("data-models") === "0");
    assert.equal(await page.getAttribute("#cache-total", "data-bytes"), "0");
    assert.equal(await page.evaluate(async () => (await (await caches.open("mla-ts-models")).keys()).length), 0, "Cache Storage is empty");
    assert.deepEqual(errors, [], "no page errors");
  } finally {
    await browser.close();
    server.close();
    await hub.close();
  }
});

test("web page: a 2B-parameter Q4_K GGUF (Youtu-LLM-2B's shape, random weights) from a URL, kept in Cache Storage, runs on WebGPU as in Node", { timeout: 900_000 }, async (t) => {
  // Issue 19 part 5: a real-size MLA model at 4 bits, streamed from the browser's cache to the GPU a layer at a time
  const t0 = performance.now();
  const files = join(dir, "files");
  mkdirSync(files);
  const gguf = join(files, "youtu-2b-q4_k.gguf");
  const made = writeRandomGguf(join(FIXTURES, "zoo", "Youtu-LLM-2B", "config.json"), gguf, { seed: 1 });
  assert.ok(made.params > 1.9e9 && made.config.attention === "mla", `${made.params} parameters`);
  t.diagnostic(`wrote ${made.bytes} bytes (${(made.params / 1e9).toFixed(2)} B parameters) in ${made.seconds.toFixed(1)} s`);
  // greedy tokens in Node on the scalar CPU kernels (float64 sums of the dequantized weights, ~10 s a token here),
  // which the GPU's f32 sums follow. Not the WebAssembly backend: its integer products (activations rounded per
  // block) move this random model's logits by 4e-2 and change the second token. About a minute a token on
  // SwiftShader, so the page generates two: a prefill and one decode step.
  const prompt = "Hi", N = 2;
  const greedy = async (): Promise<number[]> => {
    const model = loadModel(gguf), tok = loadTextTokenizer(gguf)!; // 1.1 GB, dropped before the browser starts
    return (await generate(model, tok.encode(prompt), { maxNewTokens: N, temperature: 0 })).tokens;
  };
  const ref = await greedy();
  const tRef = performance.now();
  const server = await serve(out, { "/files/": files });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const browser = await launchWithProfile(join(dir, "profile"));
  const errors: string[] = [];
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    await load(page, "mla-brown", () => page.goto(url), true);
    await page.fill("#hub-ref", `${url}files/youtu-2b-q4_k.gguf`);
    await page.click("#hub-find");
    await page.waitForSelector("#hub-plan:not([hidden])", { timeout: 30_000 });
    assert.equal(Number(await page.getAttribute("#hub-plan", "data-total-bytes")), made.bytes, "the plan's size is the file's");
    await load(page, "youtu-2b-q4_k", () => page.click("#hub-download"), false, 600_000);
    const tLoad = performance.now();
    await page.waitForFunction(() => document.querySelector("#cache-total")?.getAttribute("data-models") === "1");
    assert.equal(Number(await page.getAttribute("#cache-total", "data-bytes")), made.bytes, "Cache Storage keeps the file");
    assert.equal(await page.getAttribute("#backend-select option[value=cpu]", "disabled"), "", "over 1 GiB, the page keeps no CPU copy beside the GPU's");
    const g = await generateOn(page, N, 0, { prompt, timeout: 600_000 });
    assert.equal(g.backend, "webgpu", g.badge);
    assert.deepEqual(g.ids, ref, "the page's greedy tokens on WebGPU are the engine's in Node (cpu-scalar)");
    assert.equal(g.bytes, g.context * 32 * (512 + 64) * 4, "the latent cache: 32 layers x (d_c 512 + d_h^R 64) floats per token");
    assert.deepEqual(errors, [], "no page errors");
    const s = (a: number, b: number) => ((b - a) / 1000).toFixed(0);
    t.diagnostic(`node reference ${s(t0, tRef)} s; download + upload ${s(tRef, tLoad)} s; ${N} tokens on WebGPU (SwiftShader) ${s(tLoad, performance.now())} s: ${JSON.stringify(g.ids)}`);
  } finally {
    await browser.close();
    server.close();
  }
});
