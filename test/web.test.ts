import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import type { AddressInfo } from "node:net";
import { chromium, type Browser, type Page } from "playwright-core";
import { build, createServer as createViteServer } from "vite";

// Issue 7: the web page (web/) end to end in headless Chromium (WebGPU on SwiftShader): build it with Vite, serve
// the static files, load the page, type a prompt, generate, wait for tokens, check that the KV-cache chart grew and
// that every request stayed on the page's origin; once on WebGPU and once with navigator.gpu removed (the CPU
// fallback), plus the dev server (`npm run web`). Screenshots go to web/test-results/ (WEB_ARTIFACTS overrides).
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ROOT = join(import.meta.dirname, "..");
const CONFIG = join(ROOT, "web", "vite.config.ts");
const ARTIFACTS = process.env.WEB_ARTIFACTS ?? join(ROOT, "web", "test-results");
const dir = mkdtempSync(join(tmpdir(), "mla-web-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** mla-brown: 4 layers x (d_c 64 + d_h^R 16) numbers x 4 bytes per token. */
const MLA_BYTES_PER_TOKEN = 4 * (64 + 16) * 4;
const TYPES: Record<string, string> = { ".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".json": "application/json" };

function serve(root: string): Promise<Server> {
  const server = createServer(async (req, res) => {
    let path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    if (path.endsWith("/")) path += "index.html";
    const file = join(root, normalize(path).replace(/^(\.\.[/\\])+/, ""));
    try {
      const [body, s] = await Promise.all([readFile(file), stat(file)]);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "content-length": s.size });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r(server)));
}

function launch(): Promise<Browser> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} exists (apt-get install chromium, or set CHROMIUM)`);
  return chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--enable-unsafe-swiftshader", "--enable-unsafe-webgpu", "--use-angle=swiftshader", "--no-sandbox"],
  });
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

/** Load the page, wait for the model, generate `n` tokens from a prompt, and read back what the page shows. */
async function drive(page: Page, url: string, n: number, shot?: string, logScale = false): Promise<PageRun> {
  const origin = new URL(url).origin, offOrigin: string[] = [], errors: string[] = [];
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(`${origin}/`) && !u.startsWith("data:") && !u.startsWith("blob:")) offOrigin.push(u);
  });
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  await page.waitForSelector("body[data-state=ready], body[data-state=error]", { timeout: 60_000 });
  const loadError = await page.textContent("#error");
  assert.equal(await page.getAttribute("body", "data-state"), "ready", `the page loaded the model (${loadError})`);
  assert.equal(await page.getAttribute("#kv-model", "data-points"), "0", "the chart starts empty");
  await page.fill("#prompt", "The jury said");
  await page.fill("#max-tokens", String(n));
  await page.click("#generate");
  await page.waitForFunction(() => Number(document.querySelector("#output")?.getAttribute("data-tokens")) > 0, undefined, { timeout: 60_000 });
  await page.waitForSelector("body[data-state=done], body[data-state=error]", { timeout: 60_000 });
  const genError = await page.textContent("#error");
  assert.equal(await page.getAttribute("body", "data-state"), "done", `generation finished (${genError})`);
  const r: PageRun = {
    backend: (await page.getAttribute("body", "data-backend")) ?? "",
    badge: (await page.textContent("#backend")) ?? "",
    tokens: Number(await page.getAttribute("#output", "data-tokens")),
    generated: (await page.textContent("#output .generated")) ?? "",
    points: Number(await page.getAttribute("#kv-model", "data-points")),
    context: Number(await page.getAttribute("#kv-model", "data-context")),
    bytes: Number(await page.getAttribute("#kv-model", "data-bytes")),
    pathPoints: ((await page.getAttribute("#kv-model path[data-label='MLA (measured)']", "d")) ?? "").split(/[ML]/).length - 1,
    stats: (await page.textContent("#stats")) ?? "",
    offOrigin, errors,
  };
  if (logScale) await page.check("#log-scale");
  if (shot) {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, shot), fullPage: true });
  }
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
  const out = join(dir, "dist");
  await build({ configFile: CONFIG, logLevel: "warn", build: { outDir: out } });
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
