/**
 * Offline data for lm-evaluation-harness (scripts/lm-eval.sh): three loglikelihood tasks made from the Brown
 * corpus' validation split (src/data/brown.ts: documents the bundled mla-brown never trained on), written as JSONL
 * next to nothing else, for the task YAMLs in scripts/lm-eval-tasks/ to read with the `json` dataset builder.
 *
 *  - brown_lastword.jsonl (LAMBADA-like): a paragraph's text up to a sentence's last word, and that word.
 *  - brown_choice.jsonl (multiple choice, as HellaSwag is run): the start of a sentence and four endings, its own and
 *    three with the same words in another order; the label is the true ending's index. (Endings taken from other
 *    sentences were tried first: mla-brown, a 1.3 M-parameter model, scored at chance on them.)
 *  - brown_ppl.jsonl (wikitext-like): whole paragraphs, for loglikelihood_rolling's word and byte perplexity.
 *
 * Deterministic: the same files every run (documents in file-name order, distractors from a fixed seed).
 *
 *   node --import tsx scripts/lm-eval-data.ts [OUT_DIR=bench-out/lm-eval/data] [N=300]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadBrownDocuments } from "../src/data/brown.js";
import { mulberry32 } from "../src/tensor/rng.js";

const out = process.argv[2] ?? "bench-out/lm-eval/data";
const N = Number(process.argv[3] ?? 300);

const docs = loadBrownDocuments().filter((d) => d.split === "validation");
const paragraphs = docs.flatMap((d) => d.text.split("\n\n")).map((p) => p.trim()).filter((p) => p.length > 0);
/** Sentences: split after . ? ! (and a closing quote) before a capital or an opening quote, not after an initial or a title. */
const ABBREV = /(?<=[.?!]"?)(?<!\b(?:[A-Z]|Mr|Mrs|Ms|Dr|St|Jr|Sr|Gen|Gov|Sen|Rep|Lt|Col|Capt|Prof|Rev|Mt|No|Co|Inc|Ltd|Ave|U\.S)\.)\s+(?=["(]?[A-Z])/;
const sentencesOf = (p: string): string[] => p.split(ABBREV);

// LAMBADA-like: sentences of 10+ words ending in "word." whose paragraph prefix (this sentence and up to 2 before it) is the context
const lastword: { context: string; target: string }[] = [];
for (const p of paragraphs) {
  const s = sentencesOf(p);
  for (let i = 0; i < s.length && lastword.length < N; i++) {
    const m = /^(.*\S)\s+([a-z]{2,})\.$/.exec(s[i]); // a lower-case word: not a name's initial
    if (!m || s[i].split(/\s+/).length < 10) continue;
    lastword.push({ context: [...s.slice(Math.max(0, i - 2), i), m[1]].join(" "), target: ` ${m[2]}` });
  }
}

// word order: the first ~60% of a sentence's words, then its own ending or that ending's words shuffled
const long = paragraphs.flatMap(sentencesOf).filter((s) => { const n = s.split(/\s+/).length; return n >= 12 && n <= 40; });
const split = long.map((s) => {
  const w = s.split(/\s+/), k = Math.round(w.length * 0.6);
  return { head: w.slice(0, k).join(" "), tail: w.slice(k) };
});
const rand = mulberry32(1234);
const shuffled = (w: readonly string[]): string[] => {
  const a = [...w];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
};
const choice: { context: string; choices: string[]; label: number }[] = [];
for (let i = 0; i < split.length && choice.length < N; i += 3) {
  const endings = [" " + split[i].tail.join(" ")];
  if (new Set(split[i].tail).size < 4) continue; // too few distinct words for three other orders
  while (endings.length < 4) {
    const e = " " + shuffled(split[i].tail).join(" ");
    if (!endings.includes(e)) endings.push(e);
  }
  const label = Math.floor(rand() * 4);
  [endings[0], endings[label]] = [endings[label], endings[0]];
  choice.push({ context: split[i].head, choices: endings, label });
}

// wikitext-like: paragraphs of 200 to 1500 characters, every 5th
const ppl = paragraphs.filter((p) => p.length >= 200 && p.length <= 1500).filter((_, i) => i % 5 === 0).slice(0, Math.ceil(N / 3)).map((text) => ({ text }));

mkdirSync(out, { recursive: true });
const write = (name: string, rows: object[]): void => {
  writeFileSync(join(out, name), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  console.log(`${join(out, name)}: ${rows.length} documents`);
};
write("brown_lastword.jsonl", lastword);
write("brown_choice.jsonl", choice);
write("brown_ppl.jsonl", ppl);
