import { Worker } from "node:worker_threads";
import { createRequire } from "node:module";
import { MlaError } from "../errors.js";
import type { TextTokenizer } from "./tokenizer.js";

/** Texts up to this many characters are encoded in place: about 5 ms of tokenizing at ~1-2 MB/s. */
export const INLINE_ENCODE_CHARS = 8192;

interface Pending {
  resolve(ids: number[]): void;
  reject(e: Error): void;
}

/**
 * Encodes long texts on a worker thread, so a megabyte of prompt does not stop the event loop (and with it every
 * stream, timer and health check of a server) for the second that tokenizing it takes. The worker holds its own
 * copy of the tokenizer, built from the same tokenizer.json; it starts on the first long text and does not keep
 * the process alive. Short texts are encoded in place: a round trip to the worker costs more than they do.
 */
export class AsyncEncoder {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly tok: TextTokenizer, private readonly inlineChars = INLINE_ENCODE_CHARS) {}

  /** Token ids of text, as tok.encode(text, addSpecialTokens) gives them. */
  encode(text: string, addSpecialTokens: boolean): Promise<number[]> {
    if (text.length <= this.inlineChars) {
      try {
        return Promise.resolve(this.tok.encode(text, addSpecialTokens));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    if (this.closed) return Promise.reject(new MlaError("the tokenizer worker is closed"));
    const w = this.start();
    const id = this.nextId++;
    return new Promise<number[]>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) w.ref();
      w.postMessage({ id, text, addSpecialTokens });
    });
  }

  /** Stop the worker; texts still being encoded fail. */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    this.failAll(new MlaError("the tokenizer worker was closed"));
    if (w) await w.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // the worker loads the tokenizer library itself (not this project's TypeScript, which only a loader reads)
    const library = createRequire(import.meta.url).resolve("@huggingface/tokenizers");
    const w = new Worker(workerSource(library), { eval: true, workerData: { json: this.tok.json, config: this.tok.config } });
    w.unref();
    w.on("message", (m: { id: number; ids?: number[]; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) w.unref();
      if (m.ids) p.resolve(m.ids);
      else p.reject(new MlaError(`tokenizing failed: ${m.error}`));
    });
    const gone = (e: Error) => {
      if (this.worker === w) this.worker = null; // the next long text starts a new one
      this.failAll(new MlaError(`the tokenizer worker stopped: ${e.message}`));
    };
    w.on("error", gone);
    w.on("exit", (code) => gone(new Error(`exit code ${code}`)));
    this.worker = w;
    return w;
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

/** The worker: the same Tokenizer(tokenizer.json, tokenizer_config.json) and encode call as TextTokenizer's. */
function workerSource(libraryPath: string): string {
  return `
const { parentPort, workerData } = require("node:worker_threads");
const { Tokenizer } = require(${JSON.stringify(libraryPath)});
const tok = new Tokenizer(workerData.json, workerData.config);
parentPort.on("message", ({ id, text, addSpecialTokens }) => {
  try {
    parentPort.postMessage({ id, ids: tok.encode(text, { add_special_tokens: addSpecialTokens }).ids });
  } catch (e) {
    parentPort.postMessage({ id, error: String((e && e.message) || e) });
  }
});
`;
}
