import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FIXTURES, relErr } from "./helpers.js";
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
  // --quantize works on webgpu too (test/webgpu-load.test.ts); a type it does not know is a flag error
  const q = cli(["bench", "-m", join(FIXTURES, "tiny-mla-dense"), "--backend", "webgpu", "--quantize", "q3_k"]);
  assert.equal(q.code, 1);
  assert.match(q.stderr, /^error: --quantize must be one of q8_0, q8, q4_0, q4_k, q5_k, q6_k, got "q3_k"/);
  // both MLA forms and 16-bit caches run on the GPU, as on the CPU
  const flags = ["logits", "-m", join(FIXTURES, "tiny-mla-dense"), "--ids", "1,2,7", "--attention", "naive", "--cache-type", "bf16", "--json"];
  const ga = cli([...flags, "--backend", "webgpu"]), ca = cli([...flags, "--backend", "cpu-scalar"]);
  assert.equal(ga.code, 0, ga.stderr);
  const [gl, cl] = [ga, ca].map((r) => (JSON.parse(r.stdout) as { logits: number[][] }).logits.flat());
  assert.ok(relErr(gl, cl) < 1e-3, `webgpu vs cpu-scalar, naive with a bf16 cache: rel err ${relErr(gl, cl)}`);
  const b = cli(["logits", "-m", join(FIXTURES, "tiny-mla-dense"), "--backend", "gpu", "--ids", "1,2"]);
  assert.equal(b.code, 1);
  assert.match(b.stderr, /cpu, cpu-scalar, webgpu/);
});
