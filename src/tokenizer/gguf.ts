/**
 * The tokenizer and chat template of a GGUF file, from its metadata: tokenizer.ggml.model "gpt2" (byte-level BPE)
 * rebuilt as the tokenizer.json object @huggingface/tokenizers runs, so a .gguf needs nothing beside it.
 *
 * From llama.cpp (src/llama-vocab.cpp): `tokenizer.ggml.pre` names the pre-tokenizer, a list of regexes applied one
 * after another, each splitting the pieces of the previous one into matches and the text between them (here:
 * `Split` with behavior Isolated, then ByteLevel without its own regex); control (3) and user-defined (4) tokens
 * are matched in the raw text before BPE (here: added tokens, special when control); llama3-style vocabularies
 * ignore merges for words that are whole tokens. SentencePiece files ("llama") are refused by name.
 * Non-ASCII characters in the regexes are written as escapes, copied code point for code point (an editor's Unicode
 * normalization would turn U+1FD3 into U+0390 and break a character range).
 */
import { MlaError } from "../errors.js";
import type { GgufValue } from "../io/gguf.js";
import { isGgufPath, openGgufModel, type GgufModel } from "../model/gguf/files.js";
import { GGUF_KEYS, TOKEN_TYPE } from "../model/gguf/names.js";
import { TextTokenizer } from "./tokenizer.js";

const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface PreTokenizer {
  readonly regexes: readonly string[];
  /** Words that are whole tokens skip the merges (llama.cpp ignore_merges; tokenizers' BPE ignore_merges). */
  readonly ignoreMerges?: boolean;
}

/** llama.cpp's pre-tokenizer names and their regexes (llm_tokenizer_bpe in src/llama-vocab.cpp). */
const PRE_TOKENIZERS: Readonly<Record<string, PreTokenizer>> = (() => {
  const t: Record<string, PreTokenizer> = {};
  const add = (names: string[], p: PreTokenizer) => names.forEach((n) => (t[n] = p));
  add(["gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert",
    "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "trillion", "granite-docling"], { regexes: [GPT2] });
  add(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"], { regexes: [LLAMA3], ignoreMerges: true });
  add(["dbrx", "smaug-bpe"], { regexes: [LLAMA3] });
  add(["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "hunyuan", "solar-open"], { regexes: [QWEN2] });
  add(["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"], { regexes: ["\\p{N}", GPT2] });
  add(["deepseek-llm"], {
    regexes: [
      "[\r\n]",
      "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
      "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
      "\\s+$",
      "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
      "\\p{N}+",
    ],
  });
  add(["deepseek-coder"], { regexes: ["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", "\\p{N}"] });
  add(["deepseek-v3", "hunyuan-dense", "joyai-llm"], {
    regexes: [
      "\\p{N}{1,3}",
      "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    ],
  });
  add(["default"], { regexes: ["[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2, "\\p{N}+", "[0-9][0-9][0-9]"] });
  return t;
})();

/** The pre-tokenizer names this file knows. */
export const GGUF_PRE_TOKENIZERS: readonly string[] = Object.keys(PRE_TOKENIZERS);

function list(m: GgufModel, key: string): GgufValue[] | undefined {
  const v = m.metadata.get(key);
  return Array.isArray(v) ? v : undefined;
}

function stringList(m: GgufModel, key: string): string[] {
  const v = list(m, key);
  if (!v || !v.every((x) => typeof x === "string")) throw new MlaError(`${m.path}: GGUF metadata ${key} must be a list of strings`);
  return v as string[];
}

/** The tokenizer.json object and the tokenizer_config.json fields (special tokens, chat template) of a GGUF model. */
export function ggufTokenizerJson(m: GgufModel): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const kind = m.metadata.get(GGUF_KEYS.tokenizerModel);
  if (kind !== "gpt2") {
    const what = kind === "llama" ? " (SentencePiece; not supported yet: convert with a tokenizer.json, or use the safetensors checkpoint)" : "";
    throw new MlaError(`${m.path}: tokenizer.ggml.model ${JSON.stringify(kind ?? null)} is not supported (supported: gpt2)${what}`);
  }
  const preName = String(m.metadata.get(GGUF_KEYS.tokenizerPre) ?? "default");
  const pre = PRE_TOKENIZERS[preName];
  if (!pre) throw new MlaError(`${m.path}: GGUF pre-tokenizer ${JSON.stringify(preName)} is not supported (supported: ${GGUF_PRE_TOKENIZERS.join(", ")})`);
  const tokens = stringList(m, GGUF_KEYS.tokens);
  const types = list(m, GGUF_KEYS.tokenType) ?? [];
  const merges = list(m, GGUF_KEYS.merges) === undefined ? [] : stringList(m, GGUF_KEYS.merges);
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  tokens.forEach((tok, id) => {
    if (!(tok in vocab)) vocab[tok] = id;
    const type = types[id];
    if (type === TOKEN_TYPE.control || type === TOKEN_TYPE.userDefined) {
      added.push({ id, content: tok, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type === TOKEN_TYPE.control });
    }
  });
  const id = (key: string) => {
    const v = m.metadata.get(key);
    return typeof v === "number" && v >= 0 && v < tokens.length ? v : undefined;
  };
  const bos = id(GGUF_KEYS.bosId), eos = id(GGUF_KEYS.eosId), pad = id(GGUF_KEYS.padId), unk = id(GGUF_KEYS.unkId);
  const addBos = m.metadata.get(GGUF_KEYS.addBos) === true && bos !== undefined;
  const addEos = m.metadata.get(GGUF_KEYS.addEos) === true && eos !== undefined;
  const json = {
    version: "1.0", truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        ...pre.regexes.map((r) => ({ type: "Split", pattern: { Regex: r }, behavior: "Isolated", invert: false })),
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: addBos || addEos ? template(addBos ? tokens[bos!] : undefined, bos, addEos ? tokens[eos!] : undefined, eos) : null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE", dropout: null, unk_token: unk === undefined ? null : tokens[unk], continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: pre.ignoreMerges === true, vocab, merges,
    },
  };
  const config: Record<string, unknown> = { add_bos_token: addBos, add_eos_token: addEos };
  if (bos !== undefined) config.bos_token = tokens[bos];
  if (eos !== undefined) config.eos_token = tokens[eos];
  if (pad !== undefined) config.pad_token = tokens[pad];
  if (unk !== undefined) config.unk_token = tokens[unk];
  const chat = m.metadata.get(GGUF_KEYS.chatTemplate);
  if (typeof chat === "string") config.chat_template = chat;
  return { json, config };
}

/** TemplateProcessing that adds BOS before (and/or EOS after) the text, as llama.cpp's add_bos/add_eos do. */
function template(bos: string | undefined, bosId: number | undefined, eos: string | undefined, eosId: number | undefined): Record<string, unknown> {
  const seq = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const special = (tok: string) => ({ SpecialToken: { id: tok, type_id: 0 } });
  const wrap = (body: object[]) => [...(bos ? [special(bos)] : []), ...body, ...(eos ? [special(eos)] : [])];
  const specials: Record<string, unknown> = {};
  if (bos) specials[bos] = { id: bos, ids: [bosId], tokens: [bos] };
  if (eos) specials[eos] = { id: eos, ids: [eosId], tokens: [eos] };
  return { type: "TemplateProcessing", single: wrap([seq("A", 0)]), pair: wrap([seq("A", 0), seq("B", 1)]), special_tokens: specials };
}

/** The tokenizer of a GGUF model (path or headers already read). */
export function ggufTokenizer(model: string | GgufModel): TextTokenizer {
  const { json, config } = ggufTokenizerJson(typeof model === "string" ? openGgufModel(model) : model);
  return TextTokenizer.fromJson(json, config);
}

/**
 * A checkpoint's tokenizer: from a GGUF file's metadata, else the folder's tokenizer.json; null without one (a
 * GGUF file without tokenizer.ggml.model, a folder without tokenizer.json), so token-id prompts still work.
 */
export function loadTextTokenizer(path: string): TextTokenizer | null {
  if (!isGgufPath(path)) return TextTokenizer.load(path);
  const m = openGgufModel(path);
  return m.metadata.has(GGUF_KEYS.tokenizerModel) ? ggufTokenizer(m) : null;
}
