import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FIXTURES } from "./helpers.js";
import { useSwiftShaderIfNoGpu } from "./gpu-env.js";

const root = fileURLToPath(new URL("..", import.meta.url));
useSwiftShaderIfNoGpu();
const cli = (args: string[]) => {
  const r = spawnSync(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: root, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

test("mla generate --backend webgpu gives the CPU backend's greedy tokens (MLA and llama fixtures)", () => {
  for (const name of ["tiny-deepseek-v3", "tiny-llama"]) {
    const args = ["generate", "-m", join(FIXTURES, name), "--prompt-ids", "1,5,9,3", "-n", "6", "--json"];
    const gpu = cli([...args, "--backend", "webgpu"]), cpu = cli([...args, "--backend", "cpu-scalar"]);
    assert.equal(gpu.code, 0, gpu.stderr);
    assert.equal(cpu.code, 0, cpu.stderr);
    assert.deepEqual(JSON.parse(gpu.stdout).tokens, JSON.parse(cpu.stdout).tokens, name);
  }
});

test("mla bench --backend webgpu --json reports speed, the cache and GPU memory; bad flags are clear errors", () => {
  const r = cli(["bench", "-m", join(FIXTURES, "tiny-mla-dense"), "--backend", "webgpu", "--prompt", "5", "--decode", "3", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  for (const k of ["prefillTokensPerSecond", "decodeTokensPerSecond", "decodeMsPerToken", "peakRssBytes", "kvCacheBytes", "gpuBytes"]) {
    assert.ok(Number.isFinite(j[k]) && j[k] > 0, `${k} = ${j[k]}`);
  }
  assert.equal(j.backend, "webgpu");
  const q = cli(["bench", "-m", join(FIXTURES, "tiny-mla-dense"), "--backend", "webgpu", "--quantize", "q8"]);
  assert.equal(q.code, 1);
  assert.match(q.stderr, /^error: --quantize applies to the cpu backends/);
  const a = cli(["logits", "-m", join(FIXTURES, "tiny-mla-dense"), "--backend", "webgpu", "--ids", "1,2", "--attention", "naive"]);
  assert.equal(a.code, 1);
  assert.match(a.stderr, /always runs MLA absorbed/);
  const b = cli(["logits", "-m", join(FIXTURES, "tiny-mla-dense"), "--backend", "gpu", "--ids", "1,2"]);
  assert.equal(b.code, 1);
  assert.match(b.stderr, /cpu, cpu-scalar, webgpu/);
});
