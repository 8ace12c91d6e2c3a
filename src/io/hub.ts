/**
 * Models on the Hugging Face hub, the part that needs no Node (the web page uses it too): `ORG/NAME[:QUANT]`
 * references, and which files of a repository a model folder needs (selectModelFiles). Knows nothing of models
 * besides that. The download into the shared Hugging Face cache is hub-pull.ts (Node).
 */
import { MlaError } from "../errors.js";

/** What `--model hf:...` starts with. */
export const HUB_PREFIX = "hf:";
export const DEFAULT_ENDPOINT = "https://huggingface.co";

/** A model on the hub: the repository and, for GGUF repositories, the quantization (Q4_K_M, Q8_0, ...). */
export interface HubRef {
  readonly repo: string;
  readonly quant?: string;
}

/** "ORG/NAME" or "ORG/NAME:QUANT", with or without the "hf:" prefix. */
export function parseHubRef(s: string): HubRef {
  const body = s.startsWith(HUB_PREFIX) ? s.slice(HUB_PREFIX.length) : s;
  const colon = body.indexOf(":");
  const repo = colon < 0 ? body : body.slice(0, colon);
  const quant = colon < 0 ? undefined : body.slice(colon + 1);
  // the hub's rule for names: letters, digits, - _ . ; no leading/trailing separator, no ".."
  const part = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
  const names = repo.split("/");
  if (names.length !== 2 || !names.every((n) => part.test(n) && !n.includes(".."))) {
    throw new MlaError(`"${s}" is not a hub model: expected ${HUB_PREFIX}ORG/NAME or ${HUB_PREFIX}ORG/NAME:QUANT (e.g. ${HUB_PREFIX}Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0)`);
  }
  if (quant !== undefined && !/^[A-Za-z0-9_.-]+$/.test(quant)) throw new MlaError(`"${s}": the quantization after ":" must be a name like Q4_K_M or Q8_0`);
  return { repo, quant: quant || undefined };
}

export function isHubModel(model: string): boolean {
  return model.startsWith(HUB_PREFIX);
}

// ------------------------------------------------------------------------------------------- which files

/** A file of a repository at one commit, as the tree API reports it. */
export interface HubFile {
  readonly path: string;
  readonly size: number;
  /** git blob sha1 (the ETag of a non-LFS file). */
  readonly oid?: string;
  /** sha256 of the content for LFS files (the X-Linked-Etag; the blob's name in the cache). */
  readonly lfsOid?: string;
}

/** The files chosen from a repository and the path (inside the snapshot) the loader opens. */
export interface ModelFiles {
  readonly kind: "safetensors" | "gguf";
  readonly files: readonly HubFile[];
  /** "" for a checkpoint folder; the GGUF file (its first part when split) for a GGUF model. */
  readonly entry: string;
  /** The GGUF quantization picked (upper case). */
  readonly quant?: string;
}

/** Root files a safetensors checkpoint folder uses: config, weights, tokenizer, chat template. Python code is never run, so never fetched. */
const CHECKPOINT_FILES = new Set([
  "config.json", "generation_config.json", "model.safetensors.index.json",
  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "tiktoken.model",
  "chat_template.jinja", "chat_template.json",
]);
const WEIGHTS_RE = /^model.*\.safetensors$/;
/** llama.cpp's split naming: NAME-00001-of-00003.gguf. */
const SPLIT_RE = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;
/** GGUF files that are not a language model: vision projectors, importance matrices (llama.cpp skips these too). */
const NOT_A_MODEL_RE = /mmproj|imatrix/i;
/** The default quantizations, in order, as llama.cpp's -hf picks them. */
const DEFAULT_QUANTS = ["Q4_K_M", "Q8_0"];

const baseName = (path: string): string => path.slice(path.lastIndexOf("/") + 1);

/** The quant tag of a GGUF path: the last -/. separated word of the name, split suffix removed ("x-Q4_K_M-00001-of-00002.gguf" -> Q4_K_M). */
export function ggufQuantTag(path: string): string | undefined {
  const base = baseName(path).replace(SPLIT_RE, "$1.gguf").replace(/\.gguf$/i, "");
  return /[-.]([A-Za-z0-9_]+)$/.exec(base)?.[1].toUpperCase();
}

/** A GGUF file, or split set, is one model: the key groups the parts. */
function splitKey(path: string): { key: string; index: number; count: number } {
  const m = SPLIT_RE.exec(path);
  return m ? { key: `${m[1]}|${m[3]}`, index: Number(m[2]), count: Number(m[3]) } : { key: path, index: 1, count: 1 };
}

/** Does this path carry the quant as a word of its name or folder (llama.cpp: the tag followed by "." or "-")? */
function hasQuant(path: string, quant: string): boolean {
  const q = quant.replace(/[.]/g, "\\.");
  return new RegExp(`(^|[-._/])${q}([-.]|/)`, "i").test(path);
}

/** The parts of the first split set (or single file) among `paths`, checked complete. */
function oneGgufModel(repo: string, chosen: readonly HubFile[]): HubFile[] {
  const first = [...chosen].sort((a, b) => a.path.localeCompare(b.path))[0];
  const { key, count } = splitKey(first.path);
  const parts = chosen.filter((f) => splitKey(f.path).key === key).sort((a, b) => splitKey(a.path).index - splitKey(b.path).index);
  if (parts.length !== count) throw new MlaError(`${repo}: ${first.path} is split in ${count} parts but the repository has ${parts.length} of them`);
  return parts;
}

function ggufChoice(repo: string, ggufs: readonly HubFile[], quant: string | undefined): ModelFiles {
  const tags = [...new Set(ggufs.map((f) => ggufQuantTag(f.path) ?? f.path))].sort();
  const pick = (q: string) => ggufs.filter((f) => hasQuant(f.path, q));
  let chosen: HubFile[] = [];
  if (quant !== undefined) {
    chosen = pick(quant);
    if (!chosen.length) throw new MlaError(`${repo} has no GGUF file for ${quant.toUpperCase()}; it has ${tags.join(", ")} (e.g. ${HUB_PREFIX}${repo}:${tags[0]})`);
  } else {
    for (const q of DEFAULT_QUANTS) if (!chosen.length) chosen = pick(q);
    if (!chosen.length && new Set(ggufs.map((f) => splitKey(f.path).key)).size === 1) chosen = [...ggufs];
    if (!chosen.length) throw new MlaError(`${repo} holds several GGUF models (${tags.join(", ")}) and none is ${DEFAULT_QUANTS.join(" or ")}: name one, e.g. ${HUB_PREFIX}${repo}:${tags[0]}`);
  }
  const files = oneGgufModel(repo, chosen);
  return { kind: "gguf", files, entry: files[0].path, quant: quant?.toUpperCase() ?? ggufQuantTag(files[0].path) };
}

/**
 * The files a model needs out of a repository's listing. With a quant, or in a GGUF-only repository: one GGUF
 * model (all parts of a split set). Otherwise a safetensors checkpoint folder: config, model*.safetensors (+ index),
 * tokenizer and chat template files at the root; never other weight formats (pytorch_model.bin, original/, onnx/).
 */
export function selectModelFiles(repo: string, listing: readonly HubFile[], quant?: string): ModelFiles {
  const ggufs = listing.filter((f) => /\.gguf$/i.test(f.path) && !NOT_A_MODEL_RE.test(baseName(f.path)));
  const weights = listing.filter((f) => WEIGHTS_RE.test(f.path));
  if (quant !== undefined || (!weights.length && ggufs.length)) {
    if (!ggufs.length) throw new MlaError(`${repo} has no GGUF files: ":${quant}" picks a quantization in GGUF repositories (drop it to fetch the safetensors checkpoint)`);
    return ggufChoice(repo, ggufs, quant);
  }
  if (!weights.length) throw new MlaError(`${repo} holds neither model*.safetensors nor .gguf files: not a model mla-ts can load`);
  if (!listing.some((f) => f.path === "config.json")) throw new MlaError(`${repo} has model*.safetensors but no config.json`);
  return { kind: "safetensors", files: listing.filter((f) => CHECKPOINT_FILES.has(f.path) || WEIGHTS_RE.test(f.path)), entry: "" };
}
