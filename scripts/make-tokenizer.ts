/** Train a byte-level BPE tokenizer.json: node --import tsx scripts/make-tokenizer.ts CORPUS.txt OUT_DIR [VOCAB] */
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { trainByteLevelBpe } from "../src/tokenizer/bpe-train.js";

const [corpus, out, vocab = "512"] = process.argv.slice(2);
if (!corpus || !out) {
  console.error("usage: make-tokenizer.ts CORPUS.txt OUT_DIR [VOCAB]");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const json = trainByteLevelBpe(readFileSync(corpus, "utf8"), { vocabSize: Number(vocab) });
writeFileSync(join(out, "tokenizer.json"), JSON.stringify(json));
console.log(`wrote ${join(out, "tokenizer.json")}`);
