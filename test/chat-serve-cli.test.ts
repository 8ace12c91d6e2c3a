import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import { useSwiftShaderIfNoGpu } from "./gpu-env.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const MAIN = join(ROOT, "src/cli/main.ts");

function start(args: string[]): ChildProcessWithoutNullStreams & { out: () => string; err: () => string } {
  const p = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], { cwd: ROOT });
  let out = "", err = "";
  p.stdout.on("data", (d) => (out += d));
  p.stderr.on("data", (d) => (err += d));
  return Object.assign(p, { out: () => out, err: () => err });
}

/** Resolve once `pred` holds on the process's output (checked as output arrives); reject if it exits first. */
function until(p: ReturnType<typeof start>, pred: () => boolean, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pred()) {
        p.stdout.off("data", check);
        p.stderr.off("data", check);
        p.off("exit", gone);
        resolve();
      }
    };
    const gone = () => (pred() ? resolve() : reject(new Error(`exited before ${what}: ${p.err()}`)));
    p.stdout.on("data", check);
    p.stderr.on("data", check);
    p.on("exit", gone);
    check();
  });
}

const exited = (p: ReturnType<typeof start>) =>
  new Promise<number | string | null>((r) => (p.exitCode !== null || p.signalCode !== null ? r(p.exitCode ?? p.signalCode) : p.on("exit", (c, sig) => r(c ?? sig))));

test("mla chat: one reply per line from piped input, /reset, /exit", () => {
  const r = spawnSync(process.execPath, ["--import", "tsx", MAIN, "chat", "--backend", "cpu-scalar", "-n", "6"], {
    cwd: ROOT, encoding: "utf8", input: "Hello there\nWhat did the jury say?\n/reset\nAnd then?\n/exit\nnever read\n",
  });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split("\n").filter((l) => l.length > 0);
  assert.equal(lines.length, 4, `three replies and the reset note: ${JSON.stringify(r.stdout)}`);
  assert.equal(lines[2], "(history cleared)", "reset acknowledged");
  assert.ok(lines.every((l) => !l.includes("user:")), "replies end before the next turn's marker");
});

test("mla chat --backend webgpu: the same replies as the CPU (greedy), piped", () => {
  useSwiftShaderIfNoGpu();
  const chat = (backend: string) => spawnSync(process.execPath, ["--import", "tsx", MAIN, "chat", "--backend", backend, "-n", "5"], {
    cwd: ROOT, encoding: "utf8", input: "Hello there\nWhat did the jury say?\n", timeout: 120_000,
  });
  const gpu = chat("webgpu"), cpu = chat("cpu-scalar");
  assert.equal(gpu.status, 0, gpu.stderr);
  assert.equal(gpu.stdout.split("\n").filter((l) => l.length > 0).length, 2, "two replies");
  assert.equal(gpu.stdout, cpu.stdout);
});

test("mla chat: SIGINT stops the reply, the chat goes on; twice at the prompt exits", async () => {
  const p = start(["chat", "--backend", "cpu-scalar", "-n", "2000"]);
  p.stdin.write("Tell me everything\n");
  await until(p, () => p.out().length > 40, "the reply started");
  p.kill("SIGINT");
  await until(p, () => p.out().includes("[stopped]"), "the reply was stopped");
  p.stdin.write("/reset\n");
  await until(p, () => p.out().includes("(history cleared)"), "the next line was read");
  p.kill("SIGINT");
  await until(p, () => p.out().includes("Ctrl-C again"), "the exit hint");
  p.kill("SIGINT");
  assert.equal(await exited(p), 0, `clean exit: ${p.err()}`);
});

test("mla serve: listens, answers an OpenAI request, shuts down on SIGTERM", async () => {
  const p = start(["serve", "--backend", "cpu-scalar", "--port", "0", "--name", "brown"]);
  await until(p, () => /on http:\/\/127\.0\.0\.1:\d+\/v1/.test(p.err()), "listening");
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(p.err())![1]);
  const r = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: "brown", messages: [{ role: "user", content: "Hi" }], max_tokens: 4 }),
  });
  assert.equal(r.status, 200, "ok");
  const body = await r.json();
  assert.equal(body.usage.completion_tokens <= 4, true, "at most max_tokens");
  await until(p, () => /POST \/v1\/chat\/completions 200/.test(p.err()), "a log line for the request");
  p.kill("SIGTERM");
  assert.equal(await exited(p), 0, `clean exit: ${p.err()}`);
});

test("mla serve: SIGTERM drains: a running stream ends with an error event and [DONE], a JSON request gets a 503, exit 0", async () => {
  const p = start(["serve", "--backend", "cpu-scalar", "--port", "0", "--shutdown-timeout", "0.5"]);
  await until(p, () => /on http:\/\/127\.0\.0\.1:\d+\/v1/.test(p.err()), "listening");
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(p.err())![1]);
  const url = `http://127.0.0.1:${port}/v1/completions`;
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: "The jury said", max_tokens: 1900, ignore_eos: true, stream: true }) });
  const reader = res.body!.getReader();
  let text = new TextDecoder().decode((await reader.read()).value);
  const plain = fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: "It was", max_tokens: 1900, ignore_eos: true }) });
  // both requests are generating (the scheduler reports them) before the signal
  for (let i = 0; i < 500; i++) {
    const h = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { active: number; waiting: number };
    if (h.active + h.waiting >= 2) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  p.kill("SIGTERM");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  assert.ok(text.endsWith("data: [DONE]\n\n"), `the stream ends with [DONE]: ...${text.slice(-200)}`);
  assert.match(text, /"code":"server_shutting_down"/, "an error event says why");
  const r = await plain;
  assert.equal(r.status, 503);
  assert.equal(((await r.json()) as { error: { code: string } }).error.code, "server_shutting_down");
  assert.equal(await exited(p), 0, `clean exit: ${p.err()}`);
  assert.match(p.err(), /shutting down: 2 requests in progress, up to 0\.5 s to finish/);
});

test("mla serve: MLA_API_KEY guards the API; a non-loopback address without a key is warned about", async () => {
  const p = spawn(process.execPath, ["--import", "tsx", MAIN, "serve", "--backend", "cpu-scalar", "--port", "0", "--quiet"], { cwd: ROOT, env: { ...process.env, MLA_API_KEY: "k-123" } });
  let err = "";
  p.stderr.on("data", (d) => (err += d));
  const proc = Object.assign(p, { out: () => "", err: () => err });
  await until(proc, () => /on http:\/\/127\.0\.0\.1:\d+\/v1/.test(err), "listening");
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(err)![1]);
  assert.equal((await fetch(`http://127.0.0.1:${port}/v1/models`)).status, 401, "no key");
  assert.equal((await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { Authorization: "Bearer k-123" } })).status, 200, "the key");
  assert.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200, "health is open");
  assert.doesNotMatch(err, /warning/, "no warning on loopback");
  p.kill("SIGTERM");
  assert.equal(await exited(proc), 0);

  const open = start(["serve", "--backend", "cpu-scalar", "--host", "0.0.0.0", "--port", "0", "--quiet"]);
  await until(open, () => /on http:\/\/0\.0\.0\.0:\d+\/v1/.test(open.err()), "listening");
  assert.match(open.err(), /^warning: listening on 0\.0\.0\.0, beyond this machine, with no API key/m);
  open.kill("SIGTERM");
  assert.equal(await exited(open), 0);
});

test("mla serve: bad options are one-line errors", () => {
  const run = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", MAIN, "serve", ...args], { cwd: ROOT, encoding: "utf8" });
  let r = run("--model", join(ROOT, "test/fixtures/tiny-llama"), "--backend", "cpu-scalar");
  assert.equal(r.status, 1, "no tokenizer");
  assert.match(r.stderr, /^error: .*no tokenizer\.json/, r.stderr);
  r = run("--max-cache-mb", "0", "--backend", "cpu-scalar");
  assert.match(r.stderr, /^error: the cache budget must be positive/, r.stderr);
  r = run("--backend", "cpu-scalar", "--shutdown-timeout", "-1");
  assert.match(r.stderr, /^error: --shutdown-timeout must be >= 0 seconds/, r.stderr);
  r = run("--backend", "cpu-scalar", "--max-connections", "0");
  assert.match(r.stderr, /^error: --max-connections must be an integer >= 1/, r.stderr);
  r = run("--backend", "webgpu", "--cache-type", "q8");
  assert.match(r.stderr, /^error: --cache-type must be one of f32, f16, bf16, got "q8"/, r.stderr);
});

test("mla serve --backend webgpu: the GPU decoder answers as the CPU does (greedy), shuts down on SIGTERM", async () => {
  useSwiftShaderIfNoGpu();
  const ask = async (port: number) => {
    const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "The jury said", max_tokens: 5, temperature: 0 }),
    });
    assert.equal(r.status, 200);
    return ((await r.json()) as { choices: { text: string }[] }).choices[0].text;
  };
  const texts: string[] = [];
  for (const backend of ["webgpu", "cpu-scalar"]) {
    const p = start(["serve", "--backend", backend, "--port", "0", "--quiet"]);
    await until(p, () => /on http:\/\/127\.0\.0\.1:\d+\/v1/.test(p.err()), `listening (${backend})`);
    if (backend === "webgpu") assert.match(p.err(), /webgpu/, "the banner names the GPU backend");
    texts.push(await ask(Number(/127\.0\.0\.1:(\d+)/.exec(p.err())![1])));
    p.kill("SIGTERM");
    assert.equal(await exited(p), 0, `clean exit (${backend}): ${p.err()}`);
  }
  assert.equal(texts[0], texts[1], "same greedy text");
});
