import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import type { AddressInfo } from "node:net";
import { chromium } from "playwright-core";
import { bundle } from "./browser/bundle.js";
import { FIXTURES, batchRow, loadReference, relErr } from "./helpers.js";

// Issue 5: one fixture run in a real browser page on navigator.gpu (headless Chromium, WebGPU on SwiftShader),
// its logits against the float64 reference. CI installs Debian's chromium; CHROMIUM overrides the path.
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const dir = mkdtempSync(join(tmpdir(), "mla-browser-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const TYPES: Record<string, string> = { ".js": "text/javascript", ".html": "text/html", ".json": "application/json" };

test("webgpu in headless Chromium: tiny-deepseek-v3 logits match the reference (and the bundle is small)", async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} exists (apt-get install chromium, or set CHROMIUM)`);
  const bytes = await bundle(join(import.meta.dirname, "browser", "entry.ts"), join(dir, "bundle.js"));
  assert.ok(bytes < 2 * 2 ** 20, `bundle is ${bytes} bytes`);
  const html = `<!doctype html><script type="module" src="/bundle.js"></script>`;
  const server = createServer(async (req, res) => {
    const url = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    try {
      let body: Buffer | string;
      if (url === "/") body = html;
      else if (url === "/bundle.js") body = await readFile(join(dir, "bundle.js"));
      else body = await readFile(join(FIXTURES, normalize(url.replace(/^\/fixtures\//, "")).replace(/^(\.\.[/\\])+/, "")));
      res.writeHead(200, { "content-type": TYPES[url.slice(url.lastIndexOf("."))] ?? (url === "/" ? "text/html" : "application/octet-stream") });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--enable-unsafe-swiftshader", "--enable-unsafe-webgpu", "--use-angle=swiftshader", "--no-sandbox"],
  });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction(() => "mlaRun" in globalThis, undefined, { timeout: 30_000 });
    const ref = loadReference("tiny-deepseek-v3");
    const r = await page.evaluate(
      ({ ids }) => (globalThis as unknown as { mlaRun: (b: string, i: number[][]) => Promise<{ adapter: string; logits: number[][] }> }).mlaRun("/fixtures/tiny-deepseek-v3", ids),
      { ids: ref.inputIds },
    );
    assert.deepEqual(errors, [], "no page errors");
    r.logits.forEach((row, b) => {
      const e = relErr(row, batchRow(ref.tensors.get("logits")!, b));
      assert.ok(e < 1e-3, `row ${b}: rel err ${e}`);
      t.diagnostic(`row ${b}: rel err ${e.toExponential(2)}`);
    });
    t.diagnostic(`adapter: ${r.adapter}; bundle ${bytes} bytes`);
  } finally {
    await browser.close();
    server.close();
  }
});
