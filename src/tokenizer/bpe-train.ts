/**
 * A small byte-level BPE trainer that writes a Hugging Face tokenizer.json (GPT-2 style byte alphabet, ByteLevel
 * pre-tokenizer and decoder, BOS added by the post-processor). For the bundled and trained small models; real
 * checkpoints ship their own tokenizer.json.
 */

/** GPT-2's reversible byte -> printable character map used by ByteLevel tokenizers. */
export function bytesToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const map: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + n++);
  return map;
}

/** Words as the ByteLevel pre-tokenizer splits them (GPT-2 regex), each as a list of byte symbols. */
function pretokenize(text: string, byteMap: string[]): string[][] {
  const re = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
  const enc = new TextEncoder();
  return (text.match(re) ?? []).map((w) => Array.from(enc.encode(w), (b) => byteMap[b]));
}

export interface BpeTrainOptions {
  /** Total vocabulary, special tokens included (at least special + 256). */
  readonly vocabSize: number;
  /** Special tokens, given the first ids; the first is used as BOS. */
  readonly specialTokens?: readonly string[];
}

export function trainByteLevelBpe(text: string, opts: BpeTrainOptions): object {
  const specials = opts.specialTokens ?? ["<bos>", "<eos>"];
  const byteMap = bytesToUnicode();
  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => (vocab[s] = i));
  byteMap.forEach((ch) => (vocab[ch] = Object.keys(vocab).length));
  const counts = new Map<string, number>();
  for (const w of pretokenize(text, byteMap)) counts.set(w.join("\u0000"), (counts.get(w.join("\u0000")) ?? 0) + 1);
  const words = [...counts].map(([w, n]) => ({ syms: w.split("\u0000"), n }));
  const merges: string[] = [];
  while (Object.keys(vocab).length < opts.vocabSize) {
    const pairs = new Map<string, number>();
    for (const { syms, n } of words) for (let i = 0; i + 1 < syms.length; i++) {
      const k = syms[i] + " " + syms[i + 1];
      pairs.set(k, (pairs.get(k) ?? 0) + n);
    }
    let best = "", bn = 1;
    for (const [k, n] of pairs) if (n > bn || (n === bn && best && k < best)) (best = k), (bn = n);
    if (!best) break;
    const [a, b] = best.split(" ");
    merges.push(best);
    vocab[a + b] = Object.keys(vocab).length;
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) out.push(a + b), i++;
        else out.push(w.syms[i]);
      }
      w.syms = out;
    }
  }
  const bos = specials[0];
  return {
    version: "1.0", truncation: null, padding: null,
    added_tokens: specials.map((s, id) => ({ id, content: s, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { [bos]: { id: bos, ids: [0], tokens: [bos] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
}
