/**
 * A GGUF file of a model's real shape with random weights, written straight as Q4_K (or Q8_0) blocks: no float model and no
 * quantizer, so a 2B-parameter file takes seconds. Each block gets random 4-bit values and sane scales (every
 * sub-block's 6-bit scale and min 32, d = sigma / 147.5, dmin = 7.5 d: the weights are centred with standard
 * deviation sigma = 1/sqrt(cols)); norms are F32 ones, the MoE router's gate F32. Matrices whose rows do not divide
 * 256 are Q8_0 (as `mla export --fallback q8_0` writes them; F32 where rows do not divide 32). Q8_0 blocks hold
 * uniform random int8 values with d = sigma / 73.3. The metadata is the GGUF exporter's (src/convert/export-gguf.ts) with the placeholder byte-level
 * tokenizer (or the tokenizer.json beside config.json). The file is streamed tensor by tensor.
 *
 *   node --import tsx scripts/make-random-gguf.ts CONFIG.json OUT.gguf [--layers N] [--seed S] [--type q4_k|q8_0]
 *
 * e.g. test/fixtures/zoo/Youtu-LLM-2B/config.json (1.96 B parameters, 1.1 GB). MiniCPM3 has no GGUF architecture
 * mla-ts writes (export-gguf refuses it).
 */
import { readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { MlaError } from "../src/errors.js";
import { GgufWriter, ggufTensorBytes, type GgufTensorSpec } from "../src/io/gguf-write.js";
import { modelMetadata } from "../src/convert/export-gguf.js";
import { ggufTokenizer } from "../src/convert/export-tokenizer.js";
import type { ModelConfig } from "../src/model/config.js";
import { expectedTensors, parseConfig } from "../src/model/families/index.js";
import { expertOf, ggufArchOf, ggufTensorName } from "../src/model/gguf/names.js";
import { f32ToF16 } from "../src/tensor/dtype.js";

export interface RandomGgufOptions {
  /** Seed of the random values (the same seed writes the same file). */
  readonly seed?: number;
  /** Fewer decoder layers than config.json's num_hidden_layers (a smaller file of the same widths). */
  readonly layers?: number;
  /** The block type of the matrices (default Q4_K). */
  readonly type?: "Q4_K" | "Q8_0";
  readonly onProgress?: (done: number, total: number) => void;
}

export interface RandomGgufSummary {
  readonly path: string;
  readonly config: ModelConfig;
  readonly params: number;
  readonly bytes: number;
  readonly seconds: number;
}

/** One tensor of the file: its GGUF name, row-major shape and type. */
interface Planned extends GgufTensorSpec {
  /** Values are ones (norms) rather than random. */
  readonly ones: boolean;
}

/**
 * The GGUF tensors of the config, in the exporter's order: routed experts stacked per layer, kv_b_proj split into
 * attn_k_b [n_head, d_c, d_h] and attn_v_b [n_head, d_v, d_c] as current llama.cpp reads MLA (it refuses the older
 * single attn_kv_b).
 */
function plan(c: ModelConfig, type: "Q4_K" | "Q8_0"): Planned[] {
  const arch = ggufArchOf(c.modelType);
  if (c.rope.type === "llama3") throw new MlaError("llama3 RoPE needs a rope_freqs tensor, which this script does not write");
  const out: Planned[] = [], stacked = new Set<string>();
  for (const [hf, shape] of expectedTensors(c)) {
    const e = expertOf(hf);
    if (e && stacked.has(e.gguf)) continue;
    if (e) stacked.add(e.gguf);
    const push = (name: string, full: number[]) => {
      const cols = full[full.length - 1];
      const f32 = full.length < 2 || name.includes("ffn_gate_inp") || cols % 32 !== 0;
      const t = f32 ? "F32" : type === "Q4_K" && cols % 256 === 0 ? "Q4_K" : "Q8_0";
      out.push({ name, shape: full, type: t, ones: full.length < 2 && name.endsWith("norm.weight") });
    };
    if (hf.endsWith(".self_attn.kv_b_proj.weight")) {
      push(ggufTensorName(arch, hf.replace("kv_b_proj", "k_b_proj")), [c.numHeads, c.kvLoraRank, c.qkNopeHeadDim]);
      push(ggufTensorName(arch, hf.replace("kv_b_proj", "v_b_proj")), [c.numHeads, c.vHeadDim, c.kvLoraRank]);
    } else push(e ? e.gguf : ggufTensorName(arch, hf), e ? [c.nRoutedExperts, ...shape] : shape);
  }
  return out;
}

/** xorshift32 words into `w`; returns the next state. */
function fillRandom(w: Uint32Array, state: number): number {
  let x = state >>> 0 || 1;
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x >>> 0;
  }
  return x >>> 0;
}

/** Q4_K blocks of random 4-bit values: 36 words each, the first 4 the header (d, dmin, 12 scale/min bytes). */
function q4kBlocks(words: Uint32Array, cols: number, state: number): number {
  state = fillRandom(words, state);
  const d = 1 / Math.sqrt(cols) / 147.5; // 32 d sd(q) = 32 d 4.61 = sigma
  const head = (f32ToF16(d) | (f32ToF16(7.5 * d) << 16)) >>> 0;
  // scales[0..7] = 32 | (32 >> 4) << 6 = 0xa0 (low six bits the sub-block's scale or min, top two bits of the last four's)
  for (let b = 0; b < words.length; b += 36) {
    words[b] = head;
    words[b + 1] = 0xa0a0a0a0;
    words[b + 2] = 0xa0a0a0a0;
    words[b + 3] = 0;
  }
  return state;
}

/** Q8_0 blocks of uniform random int8 values: 34 bytes each, the f16 scale first. */
function q80Blocks(bytes: Uint8Array, cols: number, state: number): number {
  const whole = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
  state = fillRandom(whole, state);
  for (let i = whole.length * 4; i < bytes.length; i++) bytes[i] = i & 0xff;
  const d = f32ToF16(1 / Math.sqrt(cols) / 73.3); // uniform int8 on [-128, 127]: sd 73.9
  for (let b = 0; b < bytes.length; b += 34) {
    bytes[b] = d & 0xff;
    bytes[b + 1] = d >> 8;
  }
  return state;
}

/** F32 values: ones, or uniform with standard deviation 1/sqrt(cols). */
function f32Values(words: Uint32Array, cols: number, ones: boolean, state: number): number {
  const f = new Float32Array(words.buffer, words.byteOffset, words.length);
  if (ones) return f.fill(1), state;
  state = fillRandom(words, state);
  const a = Math.sqrt(3 / cols) / 2 ** 31; // uniform on [-sqrt(3) sigma, sqrt(3) sigma): standard deviation sigma
  for (let i = 0; i < f.length; i++) f[i] = (words[i] - 2 ** 31) * a;
  return state;
}

/** Write the random GGUF of `configPath` (a config.json) to `out`. */
export function writeRandomGguf(configPath: string, out: string, opts: RandomGgufOptions = {}): RandomGgufSummary {
  const t0 = performance.now();
  const json = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
  if (opts.layers !== undefined) json.num_hidden_layers = opts.layers;
  const c = parseConfig(json), arch = ggufArchOf(c.modelType), dir = dirname(resolve(configPath));
  const type = opts.type ?? "Q4_K", specs = plan(c, type);
  const metadata = [...modelMetadata(c, arch, dir, type === "Q4_K" ? "q4_k" : "q8_0"), ...ggufTokenizer(dir, c)];
  const sizes = specs.map((s) => ggufTensorBytes(s)), total = sizes.reduce((a, b) => a + b, 0);
  const scratch = new Uint32Array(Math.ceil(Math.max(...sizes) / 4));
  const tmp = `${out}.partial`, w = GgufWriter.open(tmp, metadata, specs.map(({ name, shape, type }) => ({ name, shape, type })));
  let state = (opts.seed ?? 0) * 2654435761 + 12345, done = 0, params = 0;
  try {
    specs.forEach((s, i) => {
      const words = scratch.subarray(0, Math.ceil(sizes[i] / 4)), cols = s.shape[s.shape.length - 1];
      const bytes = new Uint8Array(words.buffer, 0, sizes[i]);
      state = s.type === "Q4_K" ? q4kBlocks(words, cols, state) : s.type === "Q8_0" ? q80Blocks(bytes, cols, state) : f32Values(words, cols, s.ones, state);
      w.writeTensor(s.name, bytes);
      params += s.shape.reduce((a, b) => a * b, 1);
      opts.onProgress?.((done += sizes[i]), total);
    });
    w.close();
  } catch (e) {
    w.abort();
    rmSync(tmp, { force: true });
    throw e;
  }
  renameSync(tmp, out);
  return { path: out, config: c, params, bytes: statSync(out).size, seconds: (performance.now() - t0) / 1000 };
}

function main(argv: string[]): void {
  const pos: string[] = [];
  let seed = 0, layers: number | undefined, type: "Q4_K" | "Q8_0" = "Q4_K";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const int = (flag: string) => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 0) throw new MlaError(`${flag} needs an integer >= 0`);
      return n;
    };
    if (a === "--seed") seed = int(a);
    else if (a === "--layers") layers = int(a);
    else if (a === "--type") {
      const t = (argv[++i] ?? "").toUpperCase();
      if (t !== "Q4_K" && t !== "Q8_0") throw new MlaError(`--type must be q4_k or q8_0, got "${argv[i] ?? ""}"`);
      type = t;
    }
    else if (a.startsWith("-")) throw new MlaError(`unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 2) throw new MlaError("usage: make-random-gguf CONFIG.json OUT.gguf [--layers N] [--seed S] [--type q4_k|q8_0]");
  const r = writeRandomGguf(pos[0], pos[1], { seed, layers, type });
  console.log(`${r.config.modelType}: ${(r.params / 1e9).toFixed(2)} B params, ${type}, ${(r.bytes / 2 ** 30).toFixed(2)} GiB in ${r.seconds.toFixed(1)} s -> ${r.path}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`error: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}
