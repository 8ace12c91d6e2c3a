/**
 * A model from files the page holds as Blobs (a picked folder or .gguf file, cached hub or URL downloads, the bundled
 * mla-brown): the engine's own loaders open them through the page's file system (./shims/fs.ts), and each tensor's
 * bytes are read from its Blob just before the loader turns them into a Tensor: the WebGPU backend uploads a layer
 * at a time, so neither a file nor the model is ever in the page's memory whole.
 *
 * What works: a Hugging Face folder (config.json, *.safetensors and their index, tokenizer.json) with F32, BF16, F16
 * or F64 weights; a GGUF file or split set (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) with a
 * gpt2 (byte-level BPE) tokenizer in its metadata. Model types: those of the family registry.
 */
import { MlaError } from "../../src/errors.js";
import { Checkpoint } from "../../src/model/checkpoint.js";
import { readConfigJson, type Json, type ModelConfig } from "../../src/model/config.js";
import { expectedTensors, familyOf, MODEL_TYPES, parseConfig } from "../../src/model/families/index.js";
import { GgufCheckpoint } from "../../src/model/gguf/checkpoint.js";
import { ggufConfigJson } from "../../src/model/gguf/config.js";
import type { TensorStore } from "../../src/model/tensor-store.js";
import { READABLE_GGML_TYPES } from "../../src/tensor/ggml.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import { ggufTokenizer } from "../../src/tokenizer/gguf.js";
import { TextTokenizer } from "../../src/tokenizer/tokenizer.js";
import { installBuffer } from "./shims/buffer.js";
import { mount, unmount, withBytes } from "./shims/fs.js";

installBuffer();

/** A model's files: path relative to the model (a folder's files, or one or more .gguf files) -> bytes. */
export type ModelFiles = ReadonlyMap<string, Blob>;

/**
 * A model whose files are open: its config and tokenizer read, its tensors not yet. The WebGPU backend uploads them
 * one layer at a time from here (GpuModel.fromStore); the CPU backend reads them all into `tensors`. Close it once
 * the backends have what they need (the files are unmounted; their Blobs can then be collected).
 */
export interface OpenModel {
  /** What the page calls it: the folder, file or repository name. */
  readonly name: string;
  readonly format: "safetensors" | "gguf";
  readonly configJson: Json;
  readonly config: ModelConfig;
  readonly tokenizer: TextTokenizer;
  /** Bytes of the weights as stored. */
  readonly weightBytes: number;
  /** The checkpoint, through the page's file system: headers in memory, tensor bytes read on demand. */
  readonly store: TensorStore;
  /** One tensor, its bytes read from its Blob (no file is held whole). */
  read(name: string): Promise<Tensor>;
  /** Every tensor the decoder reads (for the CPU backend); onProgress(bytes read, bytes in all). */
  readAll(onProgress: (done: number, total: number) => void): Promise<Map<string, Tensor>>;
  close(): void;
}

/** What the page says it reads (and what the one-line refusals point to). */
export const FORMATS = {
  safetensors: "a Hugging Face model folder: config.json, *.safetensors (F32, BF16, F16; sharded with its index), tokenizer.json",
  gguf: `a .gguf file or split set (${READABLE_GGML_TYPES.join(", ")}) with its tokenizer in the metadata (gpt2 byte-level BPE)`,
  models: MODEL_TYPES.join(", "),
  backends: "WebGPU runs F32, BF16, F16 and GGUF's Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K weights as stored (Q4_1 and Q5_1 widened to F32), uploaded a layer at a time; the CPU backend (plain JavaScript) is slow past small models",
};

const WEIGHTS_NOT_READ = /\.(bin|pt|pth|ckpt|onnx|msgpack|h5|npz|mlmodel|tflite)$/i;

/** Which loader the files are for, and the model path (relative): a .gguf file or folder, or the folder with config.json. */
export function classify(name: string, files: ModelFiles): { format: "safetensors" | "gguf"; path: string } {
  const paths = [...files.keys()];
  const config = paths.filter((p) => p.split("/").pop() === "config.json").sort((a, b) => a.length - b.length)[0];
  const dir = config?.slice(0, -"config.json".length);
  const beside = dir === undefined ? [] : paths.filter((p) => p.startsWith(dir) && !p.slice(dir.length).includes("/"));
  if (dir !== undefined && beside.some((p) => p.endsWith(".safetensors"))) return { format: "safetensors", path: dir.replace(/\/$/, "") || "." };
  const ggufs = paths.filter((p) => p.endsWith(".gguf") && !/(^|\/)mmproj[^/]*$/i.test(p)).sort();
  if (ggufs.length) {
    const models = new Set(ggufs.map((p) => p.replace(/-\d{5}-of-\d{5}\.gguf$/, "")));
    if (models.size > 1) throw new MlaError(`${name} holds ${models.size} GGUF models (${[...models].slice(0, 3).map((p) => p.split("/").pop()).join(", ")}${models.size > 3 ? ", ..." : ""}): pick one .gguf file (or every part of a split one)`);
    // a split set by its first part: the GGUF loader finds the others beside it, in order
    return { format: "gguf", path: ggufs.find((p) => /-00001-of-\d{5}\.gguf$/.test(p)) ?? ggufs[0] };
  }
  if (dir !== undefined) {
    const other = beside.find((p) => WEIGHTS_NOT_READ.test(p));
    throw new MlaError(`${name}: no .safetensors weights beside config.json${other ? ` (${other.split("/").pop()} is not read here)` : ""}; the page reads ${FORMATS.safetensors}`);
  }
  const other = paths.find((p) => WEIGHTS_NOT_READ.test(p));
  throw new MlaError(`${name}: ${other ? `${other.split("/").pop()} is not a format the page reads` : "no config.json and no .gguf file"}; pick ${FORMATS.safetensors}, or ${FORMATS.gguf}`);
}

/** Tensor names the decoder reads: the expected ones and the family's optional ones the checkpoint has. */
function tensorNames(c: ModelConfig, store: TensorStore): string[] {
  const names = [...expectedTensors(c).keys()], opt = new Map<string, number[]>(), f = familyOf(c.modelType);
  for (let i = 0; i < c.numLayers; i++) f.optionalTensors?.(c, i, opt);
  for (const n of opt.keys()) if (store.has(n)) names.push(n);
  const missing = store.missing(names);
  if (missing.length) throw new MlaError(`${store.dir} is missing ${missing.length} tensor(s): ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""}`);
  return names;
}

let mounts = 0;

/** Messages name files by their place in the page's file system: say them as the user picked them. */
function asPicked(e: unknown, root: string, name: string): unknown {
  if (e instanceof Error) e.message = e.message.split(`${root}/`).join("").split(root).join(name);
  return e;
}

/** Open the files with the engine's loaders: config, tokenizer and the tensor directory (no tensor is read yet). */
export async function openModelFiles(name: string, files: ModelFiles): Promise<OpenModel> {
  const { format, path: rel } = classify(name, files);
  const root = `/m${++mounts}/${name.replace(/[^\w.-]+/g, "_")}`;
  await mount(root, files);
  const path = rel === "." ? root : `${root}/${rel.replace(/\/$/, "")}`;
  let store: TensorStore | null = null;
  try {
    const opened: TensorStore = (store = await withBytes(() => (format === "gguf" ? GgufCheckpoint.open(path) : Checkpoint.open(path))));
    const gguf = opened instanceof GgufCheckpoint ? opened : null;
    const configJson = await withBytes(() => (gguf ? ggufConfigJson(gguf.model) : readConfigJson(path)));
    const config = parseConfig(configJson);
    const tokenizer = gguf ? ggufTokenizer(gguf.model) : TextTokenizer.load(path);
    if (!tokenizer) throw new MlaError(`${name}: no tokenizer.json beside config.json (the page needs it to turn text into tokens)`);
    const names = tensorNames(config, opened);
    // the file a tensor is in: a safetensors entry names it; a GGUF model in one file has only that one
    const single = gguf?.model.files.length === 1 ? gguf.model.files[0].path : undefined;
    const read = async (n: string): Promise<Tensor> => {
      const info = opened.info(n), bytes = info.end - info.begin;
      const file = "file" in info && typeof info.file === "string" ? info.file : single;
      try {
        return await withBytes(() => opened.load(n), { path: file, pos: info.begin, bytes });
      } catch (e) {
        throw asPicked(e, root, name);
      }
    };
    const weightBytes = opened.totalBytes(names);
    return {
      name, format, configJson, config, tokenizer, weightBytes, store: opened, read,
      async readAll(onProgress) {
        const tensors = new Map<string, Tensor>();
        let done = 0;
        onProgress(0, weightBytes);
        for (const n of names) {
          tensors.set(n, await read(n));
          onProgress((done += opened.info(n).end - opened.info(n).begin), weightBytes);
        }
        return tensors;
      },
      close() {
        opened.close();
        unmount(root);
      },
    };
  } catch (e) {
    store?.close();
    unmount(root);
    throw asPicked(e, root, name);
  }
}
