/**
 * Write a random-weight DeepSeek-V2/V3 checkpoint in Hugging Face layout (TypeScript port of
 * ../shared/peers/torch/make_random.py, plus tiny test presets, dtypes and sharding).
 *
 *   node --import tsx scripts/make-random.ts PRESET DIR [--dtype F32|BF16|F16] [--shards N] [--seed S]
 */
import { MlaError } from "../src/errors.js";
import { isDType, type DType } from "../src/tensor/dtype.js";
import { RANDOM_PRESETS, resolvePreset, writeRandomCheckpoint } from "../src/model/random.js";

function usage(): string {
  const presets = Object.values(RANDOM_PRESETS).map((p) => `  ${p.name.padEnd(12)} ${p.description}`).join("\n");
  return `usage: make-random PRESET DIR [--dtype F32|BF16|F16] [--shards N] [--seed S]\npresets:\n${presets}`;
}

function intArg(flag: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (v === undefined || v.trim() === "" || !Number.isInteger(n) || n < min) throw new MlaError(`${flag} needs an integer >= ${min}, got ${JSON.stringify(v ?? null)}`);
  return n;
}

function main(argv: string[]): void {
  const pos: string[] = [];
  let dtype: DType = "F32", shards = 1, seed = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith("--") && a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
    const value = () => inline ?? argv[++i];
    if (flag === "-h" || flag === "--help") {
      console.log(usage());
      return;
    } else if (flag === "--dtype") {
      const d = String(value()).toUpperCase();
      if (!isDType(d)) throw new MlaError(`--dtype must be F32, BF16 or F16, got ${d}`);
      dtype = d;
    } else if (flag === "--shards") shards = intArg("--shards", value(), 1);
    else if (flag === "--seed") seed = intArg("--seed", value(), 0);
    else if (flag.startsWith("-")) throw new MlaError(`unknown option ${flag}\n${usage()}`);
    else pos.push(a);
  }
  if (pos.length !== 2) throw new MlaError(usage());
  const [name, dir] = pos;
  const preset = resolvePreset(name);
  const t0 = performance.now();
  let lastPct = -1;
  const tty = process.stderr.isTTY;
  const { params, bytes } = writeRandomCheckpoint(dir, preset, {
    dtype, shards, seed,
    onProgress: (done, total) => {
      const pct = Math.floor((100 * done) / total);
      if (tty && pct !== lastPct) process.stderr.write(`\r${pct}%`);
      lastPct = pct;
    },
  });
  if (tty) process.stderr.write("\r");
  const s = (performance.now() - t0) / 1000;
  console.log(`${preset.name} ${(params / 1e6).toFixed(2)} M params, ${dtype}, ${(bytes / 1e6).toFixed(1)} MB in ${shards} file(s), ${s.toFixed(1)} s -> ${dir}`);
}

try {
  main(process.argv.slice(2));
} catch (e) {
  if (e instanceof MlaError) {
    console.error(`error: ${e.message}`);
    process.exit(1);
  }
  throw e;
}
