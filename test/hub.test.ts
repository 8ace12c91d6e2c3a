// Models from the Hugging Face hub, against a mock hub on 127.0.0.1 (test/mock-hub.ts): `mla pull` end to end
// into a temporary HF_HUB_CACHE, `--model hf:...` from the cache offline, resume after a cut connection,
// hash checks, tokens, revisions, and the cache layout huggingface_hub expects.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { FIXTURES } from "./helpers.js";
import { gitBlobSha1, sha256Hex, startMockHub, type MockHub } from "./mock-hub.js";
import { ggufQuantTag, parseHubRef, selectModelFiles, type HubFile } from "../src/io/hub.js";
import { pullModel } from "../src/io/hub-pull.js";
import { hubCacheDir, repoCacheDir } from "../src/io/hf-cache.js";
import { MlaError } from "../src/errors.js";
import { fmtBytes } from "../src/cli/format.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const DS = "mla-test/tiny-deepseek-v3";
const GG = "mla-test/tiny-gguf";
const PRIVATE = "mla-test/private";
const TOKEN = "hf_mocksecret0123456789abcdefghijklmnop";

const v3 = (f: string) => readFileSync(join(FIXTURES, "tiny-deepseek-v3", f));
const gguf = (f: string) => readFileSync(join(FIXTURES, "gguf", f));
const weights = v3("model.safetensors");
const tokenizer = readFileSync(join(FIXTURES, "tokenizer-bpe512.json"));
const GEN_OLD = '{"do_sample": false, "revision": "old"}';
const GEN_NEW = '{"do_sample": false, "revision": "new"}';
const TOKENIZER_CONFIG = '{"model_max_length": 64}';
const checkpoint = { "config.json": v3("config.json"), "model.safetensors": weights, "tokenizer.json": tokenizer };
// files a model folder does not need: other weight formats, code, docs
const NOISE = {
  "README.md": "# tiny\n", "pytorch_model.bin": "not loaded", "original/consolidated.00.pth": "x", "onnx/model.onnx": "x",
  "modeling_deepseek.py": "raise SystemExit", ".gitattributes": "*.safetensors filter=lfs\n",
};

let hub: MockHub;
before(async () => {
  hub = await startMockHub({
    token: TOKEN,
    pageSize: 4, // the tree comes in pages: the client must follow Link headers
    repos: [
      {
        id: DS,
        commits: [
          { files: { ...checkpoint, "generation_config.json": GEN_OLD }, refs: ["v1.0"] },
          { files: { ...checkpoint, ...NOISE, "generation_config.json": GEN_NEW, "tokenizer_config.json": TOKENIZER_CONFIG, "special_tokens_map.json": "", "chat_template.jinja": "" } },
        ],
      },
      {
        id: GG,
        commits: [{
          files: {
            "tiny-v3-Q8_0.gguf": gguf("tiny-deepseek-v3-q8_0.gguf"), "tiny-v3-F32.gguf": gguf("tiny-deepseek-v3.gguf"),
            "tiny-v3-Q4_K_M-00001-of-00002.gguf": "part one", "tiny-v3-Q4_K_M-00002-of-00002.gguf": "part two",
            "mmproj-tiny-v3-F16.gguf": "a vision projector", "README.md": "# gguf\n",
          },
        }],
      },
      { id: PRIVATE, private: true, commits: [{ files: { "tiny-v3-Q8_0.gguf": gguf("tiny-deepseek-v3-q8_0.gguf") } }] },
    ],
  });
});
after(() => hub.close());

const caches: string[] = [];
after(() => caches.forEach((c) => rmSync(c, { recursive: true, force: true })));
const freshCache = (): string => {
  caches.push(mkdtempSync(join(tmpdir(), "mla-hub-")));
  return caches[caches.length - 1];
};

/** An endpoint nothing listens on (a port just freed; fetch refuses low ports such as 9 outright). */
async function deadEndpoint(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

/** The CLI in a child process (async: the mock hub runs in this process), with only our HF_* variables. */
function mla(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("HF_") && !k.startsWith("HUGGING")));
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args], { cwd: ROOT, env: { ...base, ...env } });
  let out = "", err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code: code ?? -1, out, err })));
}

function assertOneLineError(r: { code: number; err: string }, re: RegExp): void {
  assert.notEqual(r.code, 0);
  const lines = r.err.trim().split("\n");
  assert.equal(lines.length, 1, r.err);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], re);
}

const tokens = (r: { code: number; out: string; err: string }): number[] => {
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out).tokens;
};

/** The cache holds each file as a relative symlink snapshots/<commit>/<path> -> ../../blobs/<etag>. */
function assertLinked(repoDir: string, commit: string, path: string, content: Uint8Array, etag: string): void {
  const link = join(repoDir, "snapshots", commit, path);
  assert.ok(lstatSync(link).isSymbolicLink(), `${path} is a symlink`);
  assert.equal(readlinkSync(link), `${"../".repeat(path.split("/").length + 1)}blobs/${etag}`);
  assert.deepEqual(readFileSync(join(repoDir, "blobs", etag)), Buffer.from(content));
}

test("hub refs and quant tags parse as llama.cpp's -hf does", () => {
  assert.deepEqual(parseHubRef("hf:org/name:q4_k_m"), { repo: "org/name", quant: "q4_k_m" });
  assert.deepEqual(parseHubRef("org/Name-1.5B"), { repo: "org/Name-1.5B", quant: undefined });
  for (const bad of ["hf:name", "hf:a/b/c", "hf:../x", "hf:org/na me", "hf:org/..:Q8_0"]) assert.throws(() => parseHubRef(bad), MlaError, bad);
  assert.equal(ggufQuantTag("x/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf"), "Q4_K_M");
  assert.equal(ggufQuantTag("tinyllama-1.1b-chat-v1.0.Q8_0.gguf"), "Q8_0");
  assert.equal(ggufQuantTag("DeepSeek-V3-UD-Q2_K_XL-00001-of-00006.gguf"), "Q2_K_XL");
  const f = (path: string): HubFile => ({ path, size: 1, oid: "0".repeat(40) });
  const listing = ["m-Q4_K.gguf", "m-Q4_K_M.gguf", "sub/m-IQ4_XS.gguf", "m.Q8_0.gguf"].map(f);
  assert.deepEqual(selectModelFiles("o/m", listing, "Q4_K").files.map((x) => x.path), ["m-Q4_K.gguf"]); // Q4_K is not Q4_K_M
  assert.deepEqual(selectModelFiles("o/m", listing, "iq4_xs").files.map((x) => x.path), ["sub/m-IQ4_XS.gguf"]);
  assert.deepEqual(selectModelFiles("o/m", listing).files.map((x) => x.path), ["m-Q4_K_M.gguf"]); // the default
  assert.deepEqual(selectModelFiles("o/m", [f("m-Q6_K.gguf")]).files.map((x) => x.path), ["m-Q6_K.gguf"]); // the only one
  assert.throws(() => selectModelFiles("o/m", [f("m-Q6_K.gguf"), f("m-Q5_K_S.gguf")]), /several GGUF models \(Q5_K_S, Q6_K\)/);
  assert.throws(() => selectModelFiles("o/m", [f("m-Q4_K_M-00001-of-00002.gguf")]), /split in 2 parts but the repository has 1/);
  assert.throws(() => selectModelFiles("o/m", [f("config.json"), f("model.safetensors")], "Q8_0"), /has no GGUF files/);
  const sharded = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
    "consolidated.safetensors", "original/model.safetensors", "tokenizer.model", "vocab.py"].map(f);
  assert.deepEqual(selectModelFiles("o/m", sharded).files.map((x) => x.path), ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.model"]);
  assert.throws(() => selectModelFiles("o/m", [f("model.safetensors")]), /no config.json/);
  assert.throws(() => selectModelFiles("o/m", [f("pytorch_model.bin"), f("config.json")]), /neither model\*\.safetensors nor \.gguf/);
});

test("the cache folder follows huggingface_hub: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub", () => {
  assert.equal(hubCacheDir({ HF_HUB_CACHE: "/a", HF_HOME: "/b" }), "/a");
  assert.equal(hubCacheDir({ HF_HOME: "/b", XDG_CACHE_HOME: "/c" }), "/b/hub");
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: "/c" }), "/c/huggingface/hub");
  assert.match(hubCacheDir({}), /\.cache\/huggingface\/hub$/);
  assert.equal(repoCacheDir("/a", "org/name"), "/a/models--org--name");
});

test("mla pull: a safetensors repo into the Hugging Face cache, only the files a model needs, then hf: offline", async () => {
  const cache = freshCache();
  const [, main] = hub.commits(DS);
  const seen = hub.requests.length;
  const r = await mla(["pull", DS], { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url });
  assert.equal(r.code, 0, r.err);
  const repoDir = join(cache, "models--mla-test--tiny-deepseek-v3");
  assert.equal(r.out.trim(), join(repoDir, "snapshots", main));
  const total = [v3("config.json"), weights, tokenizer, GEN_NEW, TOKENIZER_CONFIG].reduce((s, b) => s + Buffer.byteLength(b), 0);
  assert.equal(r.err.split("\n")[0], `${DS} at main (commit ${main.slice(0, 12)}): safetensors checkpoint, 7 files, ${fmtBytes(total)}`);
  assert.match(r.err, /\n {2}model\.safetensors +986\.2 KiB\n/);
  assert.equal(readFileSync(join(repoDir, "refs", "main"), "utf8"), main); // the commit, no newline
  assert.deepEqual(readdirSync(join(repoDir, "snapshots", main)).sort(), ["chat_template.jinja", "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]);
  assertLinked(repoDir, main, "model.safetensors", weights, sha256Hex(weights)); // LFS: the sha256
  assertLinked(repoDir, main, "config.json", v3("config.json"), gitBlobSha1(v3("config.json"))); // git: the blob sha1
  for (const empty of ["special_tokens_map.json", "chat_template.jinja"]) assertLinked(repoDir, main, empty, new Uint8Array(0), gitBlobSha1(new Uint8Array(0))); // two empty files, one blob
  assert.deepEqual(readdirSync(join(repoDir, "blobs")).filter((b) => b.includes(".")), [], "no .incomplete left");
  const asked = hub.requests.slice(seen).filter((q) => q.method === "GET").map((q) => q.path);
  for (const p of Object.keys(NOISE)) assert.ok(!asked.some((a) => a.endsWith(p)), `${p} not fetched`);

  // pulled again: nothing is fetched
  const before2 = hub.requests.length;
  const again = await pullModel(DS, { cacheDir: cache, endpoint: hub.url, offline: false });
  assert.equal(again.fetchBytes, 0);
  assert.ok(again.files.every((f) => f.cached));
  assert.ok(!hub.requests.slice(before2).some((q) => q.path.includes("/resolve/") || q.server === "cdn"));

  // offline, with a dead endpoint: the cache alone answers, and the tokens are the local folder's
  const offline = { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "1", HF_ENDPOINT: await deadEndpoint() };
  const args = ["generate", "--prompt-ids", "175,196,25,502", "-n", "6", "--json", "--backend", "cpu-scalar"];
  const seenOffline = hub.requests.length;
  const [fromHub, local] = await Promise.all([mla([...args, "--model", `hf:${DS}`], offline), mla([...args, "--model", join(FIXTURES, "tiny-deepseek-v3")])]);
  assert.deepEqual(tokens(fromHub), tokens(local));
  assert.equal(hub.requests.length, seenOffline, "offline: no request");
  assertOneLineError(await mla(["info", "--model", `hf:${GG}:Q8_0`], offline), /hf:mla-test\/tiny-gguf:Q8_0 \(revision main\) is not in the cache .*HF_HUB_OFFLINE.*mla pull mla-test\/tiny-gguf:Q8_0/);
});

test("mla pull ORG/NAME:QUANT fetches one GGUF quantization (all parts of a split one); hf:...:QUANT runs offline", async () => {
  const cache = freshCache();
  const env = { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url };
  const r = await mla(["pull", `${GG}:q8_0`, "--json"], env);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.deepEqual(j.files.map((f: { path: string }) => f.path), ["tiny-v3-Q8_0.gguf"]);
  assert.equal(j.kind, "gguf");
  assert.equal(j.path, join(cache, "models--mla-test--tiny-gguf", "snapshots", hub.commits(GG)[0], "tiny-v3-Q8_0.gguf"));

  const args = ["generate", "--prompt-ids", "175,196,25,502", "-n", "6", "--json", "--backend", "cpu-scalar"];
  const [fromHub, local] = await Promise.all([
    mla([...args, "--model", `hf:${GG}:Q8_0`], { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "1" }),
    mla([...args, "--model", join(FIXTURES, "gguf", "tiny-deepseek-v3-q8_0.gguf")]),
  ]);
  assert.deepEqual(tokens(fromHub), tokens(local));

  // no quant: Q4_K_M as llama.cpp picks it, both parts; the loader gets the first part
  const q4 = await pullModel(GG, { cacheDir: cache, endpoint: hub.url, offline: false });
  assert.deepEqual(q4.files.map((f) => f.path), ["tiny-v3-Q4_K_M-00001-of-00002.gguf", "tiny-v3-Q4_K_M-00002-of-00002.gguf"]);
  assert.ok(q4.modelPath.endsWith("tiny-v3-Q4_K_M-00001-of-00002.gguf"));
  await assert.rejects(pullModel(`${GG}:Q5_K_S`, { cacheDir: cache, endpoint: hub.url, offline: false }), /no GGUF file for Q5_K_S; it has F32, Q4_K_M, Q8_0/);
});

test("a cut connection resumes with a Range request: the bytes before the cut are not fetched again", async () => {
  const cache = freshCache();
  const sha = sha256Hex(weights);
  const cdnGets = () => hub.requests.filter((q) => q.server === "cdn" && q.path === `/lfs/${sha}` && q.method === "GET");
  const seen = cdnGets().length;
  hub.cutOnce("model.safetensors", 300_000);
  const logs: string[] = [];
  const r = await pullModel(DS, { cacheDir: cache, endpoint: hub.url, offline: false, retryDelayMs: 10, log: (l) => logs.push(l) });
  const gets = cdnGets().slice(seen);
  assert.deepEqual(gets.map((q) => q.range), [undefined, "bytes=300000-"]);
  assert.deepEqual(gets.map((q) => q.status), [200, 206]);
  assert.match(logs.join("\n"), /model\.safetensors: the connection failed \(UND_ERR_SOCKET\); retrying in 0\.0 s from byte 300000/);
  assert.deepEqual(readFileSync(join(r.snapshot, "model.safetensors")), weights);

  // across processes: a download left as blobs/<sha256>.incomplete continues where it stopped
  const cache2 = freshCache();
  const blobs = join(repoCacheDir(cache2, DS), "blobs");
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(blobs, `${sha}.incomplete`), weights.subarray(0, 500_000));
  const seen2 = cdnGets().length;
  const progress: number[] = [];
  const r2 = await pullModel(DS, { cacheDir: cache2, endpoint: hub.url, offline: false, onProgress: (d) => progress.push(d) });
  assert.deepEqual(cdnGets().slice(seen2).map((q) => q.range), ["bytes=500000-"]);
  assert.deepEqual(readFileSync(join(r2.snapshot, "model.safetensors")), weights);
  assert.equal(progress.at(-1), r2.fetchBytes);
  assert.ok(!existsSync(join(blobs, `${sha}.incomplete`)));
});

test("a file whose hash is not the hub's is refused and deleted (LFS sha256 and git blob sha1)", async () => {
  for (const [path, algo] of [["model.safetensors", "sha256"], ["config.json", "git sha1"]] as const) {
    const cache = freshCache();
    hub.corrupt(path);
    try {
      await assert.rejects(pullModel(DS, { cacheDir: cache, endpoint: hub.url, offline: false }), (e: Error) => {
        assert.ok(e instanceof MlaError);
        assert.match(e.message, new RegExp(`${path.replace(".", "\\.")} is corrupt: its ${algo} is [0-9a-f]+, the hub lists [0-9a-f]+ \\(the download was deleted`));
        return true;
      });
    } finally {
      hub.corrupt(path, false);
    }
    const repoDir = repoCacheDir(cache, DS);
    assert.deepEqual(readdirSync(join(repoDir, "blobs")).filter((b) => b.endsWith(".incomplete")), []);
    assert.ok(!existsSync(join(repoDir, "refs", "main")), "no ref to a snapshot that failed");
    const r = await pullModel(DS, { cacheDir: cache, endpoint: hub.url, offline: false });
    assert.deepEqual(readFileSync(join(r.snapshot, path)), path === "config.json" ? v3("config.json") : weights);
  }
});

test("a private repo needs HF_TOKEN (401 without); the token goes to the hub only and is never printed", async () => {
  const cache = freshCache();
  const env = { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url };
  assertOneLineError(await mla(["pull", `${PRIVATE}:Q8_0`], env), /mla-test\/private@main: the hub answered 401 .*set HF_TOKEN/);
  await assert.rejects(pullModel(`${PRIVATE}:Q8_0`, { cacheDir: cache, endpoint: hub.url, offline: false, token: "hf_wrong_token_value" }), (e: Error) => {
    assert.match(e.message, /^mla-test\/private@main: the hub refused HF_TOKEN \(401\)/);
    assert.doesNotMatch(e.message, /hf_wrong_token_value/);
    return true;
  });
  const seen = hub.requests.length;
  const ok = await mla(["pull", `${PRIVATE}:Q8_0`], { ...env, HF_TOKEN: TOKEN });
  assert.equal(ok.code, 0, ok.err);
  assert.doesNotMatch(ok.out + ok.err, new RegExp(TOKEN));
  const reqs = hub.requests.slice(seen);
  assert.ok(reqs.filter((q) => q.server === "hub").every((q) => q.auth), "every hub request carries the token");
  assert.ok(reqs.some((q) => q.server === "cdn") && reqs.filter((q) => q.server === "cdn").every((q) => !q.auth), "the CDN never sees it");
});

test("--revision pins a commit or a tag; an unknown revision is a one-line error", async () => {
  const cache = freshCache();
  const [old, main] = hub.commits(DS);
  const env = { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url };
  const r = await mla(["pull", DS, "--revision", old], env);
  assert.equal(r.code, 0, r.err);
  const repoDir = repoCacheDir(cache, DS);
  assert.equal(r.out.trim(), join(repoDir, "snapshots", old));
  assert.equal(readFileSync(join(r.out.trim(), "generation_config.json"), "utf8"), GEN_OLD);
  assert.ok(!existsSync(join(repoDir, "refs")), "a commit needs no ref");
  // a tag is a ref; the blobs the two commits share are not fetched twice
  const tag = await pullModel(DS, { cacheDir: cache, endpoint: hub.url, offline: false, revision: "v1.0" });
  assert.equal(tag.commit, old);
  assert.equal(tag.fetchBytes, 0);
  assert.equal(readFileSync(join(repoDir, "refs", "v1.0"), "utf8"), old);
  const m = await pullModel(DS, { cacheDir: cache, endpoint: hub.url, offline: false });
  assert.equal(m.commit, main);
  assert.equal(m.fetchBytes, Buffer.byteLength(GEN_NEW) + Buffer.byteLength(TOKENIZER_CONFIG));
  // offline, each revision finds its own snapshot
  const gen = await mla(["info", "--model", `hf:${DS}`, "--revision", "v1.0", "--json"], { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "1" });
  assert.equal(gen.code, 0, gen.err);
  await assert.rejects(pullModel(DS, { cacheDir: cache, endpoint: hub.url, offline: false, revision: "nope" }), /^MlaError: mla-test\/tiny-deepseek-v3@nope: revision not found \(404\): Invalid rev id: nope$/);
  assertOneLineError(await mla(["info", "--model", join(FIXTURES, "tiny-deepseek-v3"), "--revision", "v1.0"]), /--revision applies to hub models/);
});

test("an unreachable hub falls back to the cached revision for --model hf: (with a warning); mla pull says so in one line", async () => {
  const cache = freshCache();
  await pullModel(`${GG}:Q8_0`, { cacheDir: cache, endpoint: hub.url, offline: false });
  const endpoint = await deadEndpoint();
  const dead = { HF_HUB_CACHE: cache, HF_ENDPOINT: endpoint };
  const info = await mla(["info", "--model", `hf:${GG}:Q8_0`, "--json"], dead);
  assert.equal(info.code, 0, info.err);
  assert.equal(info.err, `warning: cannot reach ${endpoint} (ECONNREFUSED); using the cached ${GG} at ${hub.commits(GG)[0].slice(0, 12)}\n`);
  assertOneLineError(await mla(["pull", `${GG}:Q8_0`], dead), /cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\).*HF_HUB_OFFLINE=1/);
});
