import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MlaError } from "../../errors.js";
import { ByteLevelBpe, bytesPerToken, trainByteLevelBpe, writeTokenizer } from "../../tokenizer/bpe-train.js";

export interface TokenizerTrainOptions {
  readonly out: string;
  readonly vocabSize: number;
  readonly modelMaxLength: number;
  /** A built-in corpus (brown, the default without text). */
  readonly corpus?: string;
  /** UTF-8 text files to train on instead. */
  readonly text?: readonly string[];
}

/** `mla tokenizer train`: a byte-level BPE tokenizer.json, and its compression on held-out text. */
export async function tokenizerTrainCommand(o: TokenizerTrainOptions): Promise<void> {
  const { vocabSize, modelMaxLength } = o;
  if (o.corpus !== undefined && o.text !== undefined) throw new MlaError("use either --corpus or --text, not both");
  let train: string[], validation: string[], source: string, evalName: string;
  if (o.text !== undefined) {
    for (const f of o.text) if (!existsSync(f)) throw new MlaError(`--text: ${f} does not exist`);
    train = validation = o.text.map((f) => readFileSync(f, "utf8"));
    source = `${o.text.length} text file${o.text.length === 1 ? "" : "s"}`;
    evalName = "the training text";
  } else {
    const corpus = o.corpus ?? "brown";
    if (corpus !== "brown") throw new MlaError(`--corpus must be brown, got "${corpus}"`);
    const { loadBrown } = await import("../../data/brown.js");
    ({ train, validation } = loadBrown());
    source = `brown train split (${train.length} documents)`;
    evalName = `brown validation split (${validation.length} documents)`;
  }
  const bytes = train.reduce((s, t) => s + Buffer.byteLength(t, "utf8"), 0);
  const t0 = performance.now();
  const json = trainByteLevelBpe(train, { vocabSize });
  const seconds = (performance.now() - t0) / 1000;
  const size = Object.keys(json.model.vocab).length;
  writeTokenizer(o.out, json, { modelMaxLength });
  const c = bytesPerToken(new ByteLevelBpe(json), validation);
  console.log(`trained on ${source}, ${bytes} bytes: vocab ${size} (${json.model.merges.length} merges) in ${seconds.toFixed(2)} s`);
  if (size < vocabSize) console.log(`note: the text has too few repeated pairs for ${vocabSize} tokens`);
  console.log(`compression: ${c.bytesPerToken.toFixed(3)} bytes/token on ${evalName} (${c.bytes} bytes -> ${c.tokens} tokens)`);
  console.log(`wrote ${join(o.out, "tokenizer.json")} and ${join(o.out, "tokenizer_config.json")}`);
}
