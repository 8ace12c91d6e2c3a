/**
 * Text for calibration, fine-tuning and evaluation of a converted model: the Brown corpus (its fixed train /
 * validation split, as `mla train` uses it) or a UTF-8 file (last 10% held out, as `mla train --text`), tokenized
 * with the model folder's tokenizer.json exactly as `mla train` tokenizes (each document with its BOS), or with its
 * tiktoken.model (Kimi, Moonlight) as the model's Python tokenizer encodes.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { MlaError } from "../errors.js";
import { ByteLevelBpe, type TokenizerJson } from "../tokenizer/bpe-train.js";
import { TextTokenizer } from "../tokenizer/tokenizer.js";
import { Rng } from "../tensor/rng.js";
import { sampleBatch } from "../train/loop.js";

export interface CorpusTokens {
  readonly train: Int32Array;
  readonly validation: Int32Array;
}

/** "brown" or a text file, as train and validation documents. */
export async function corpusTexts(corpus: string): Promise<{ train: string[]; validation: string[] }> {
  if (corpus === "brown") return (await import("../data/brown.js")).loadBrown();
  if (!fs.existsSync(corpus)) throw new MlaError(`text file ${corpus} does not exist`);
  const text = fs.readFileSync(corpus, "utf8");
  let cut = Math.floor(text.length * 0.9);
  while (cut < text.length && !/\s/.test(text[cut])) cut++;
  return { train: [text.slice(0, cut)], validation: [text.slice(cut)] };
}

/** The encoder of a model folder: the fast byte-level BPE of `mla train` when it fits, else @huggingface/tokenizers. */
export function encoderOf(dir: string): (text: string) => number[] {
  const path = join(dir, "tokenizer.json");
  if (!fs.existsSync(path)) {
    const tok = TextTokenizer.load(dir);
    if (!tok) throw new MlaError(`${dir} has no tokenizer.json or tiktoken.model (needed to tokenize calibration and fine-tuning text)`);
    return (t) => tok.encode(t, true);
  }
  const json = JSON.parse(fs.readFileSync(path, "utf8")) as TokenizerJson & { pre_tokenizer?: { type?: string } };
  if (json.model?.type === "BPE" && json.pre_tokenizer?.type === "ByteLevel") {
    try {
      const bpe = new ByteLevelBpe(json);
      return (t) => bpe.encode(t, true);
    } catch {
      // not one of ours: fall through to the general tokenizer
    }
  }
  const tok = TextTokenizer.load(dir)!;
  return (t) => tok.encode(t, true);
}

export async function corpusTokens(dir: string, corpus: string): Promise<CorpusTokens> {
  const enc = encoderOf(dir);
  const texts = await corpusTexts(corpus);
  const all = (docs: string[]) => {
    const out: number[] = [];
    for (const d of docs) for (const id of enc(d)) out.push(id);
    return Int32Array.from(out);
  };
  return { train: all(texts.train), validation: all(texts.validation) };
}

/** `count` windows of `seq` tokens at seeded uniform offsets of `tokens`. */
export function sampleWindows(tokens: Int32Array, count: number, seq: number, seed: number): number[][] {
  return sampleBatch(tokens, count, seq, new Rng(seed)).ids;
}

/** Evenly spaced validation windows of seq + 1 tokens (inputs and targets), as `mla train` evaluates. */
export function evalWindows(tokens: Int32Array, windows: number, seq: number): { ids: number[][]; targets: number[][] } {
  if (tokens.length < seq + 2) throw new MlaError(`${tokens.length} held-out tokens are too few for windows of ${seq + 1}`);
  const span = tokens.length - seq - 1;
  const n = Math.min(windows, Math.floor((tokens.length - 1) / seq));
  const offsets = Array.from({ length: n }, (_, i) => (n === 1 ? 0 : Math.floor((i * span) / (n - 1))));
  return {
    ids: offsets.map((o) => Array.from(tokens.subarray(o, o + seq))),
    targets: offsets.map((o) => Array.from(tokens.subarray(o + 1, o + seq + 1))),
  };
}
