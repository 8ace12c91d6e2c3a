import { createInterface } from "node:readline";
import type { TextJob } from "../../generate/text.js";
import type { ChatMessage } from "../../tokenizer/chat.js";
import type { MlaMode } from "../../attention/mla.js";
import { TextEngine } from "../../generate/text.js";
import type { Runtime } from "../../model/inference.js";
import { loadingBar } from "../progress.js";

export interface ChatOptions {
  readonly model: string;
  readonly maxTokens: number;
  readonly temperature?: number;
  readonly topK?: number;
  readonly topP?: number;
  readonly seed?: number;
  readonly system?: string;
  readonly attention: MlaMode;
}

/** Tokens kept free for the reply when old turns are dropped to fit the context. */
const MIN_REPLY = 16;

/**
 * An interactive chat on stdin/stdout: each reply streams as it is generated; the history is re-rendered through
 * the chat template every turn, oldest turns dropped to fit the context. /reset clears it, /exit leaves. Ctrl-C
 * stops a reply (the chat goes on); Ctrl-C twice at the prompt exits. Without a terminal (piped input) it reads one
 * message per line and prints one reply per line.
 */
export async function chatCommand(opts: ChatOptions, runtime: Runtime): Promise<void> {
  const bar = loadingBar("loading weights");
  let engine: TextEngine;
  try {
    // the prefix cache keeps the history's rows between turns: a turn computes only what was added (one entry, since
    // each turn's tokens extend the last)
    engine = TextEngine.open(opts.model, { runtime, onProgress: bar.onProgress, mode: opts.attention, maxCacheBytes: 2 ** 40, maxBatch: 1, maxQueue: 1, prefixCache: true });
  } finally {
    bar.stop();
  }
  const out = process.stdout, tty = process.stdin.isTTY === true;
  const ctx = engine.contextLength;
  const system: ChatMessage[] = opts.system ? [{ role: "system", content: opts.system }] : [];
  let history: ChatMessage[] = [];
  let job: TextJob | null = null;
  let armed = false; // a Ctrl-C at the prompt: the next one exits

  const rl = createInterface({ input: process.stdin, output: out, terminal: tty, prompt: "> " });
  // Ctrl-C on a terminal (readline's SIGINT) and a SIGINT signal (kill -INT, piped input) act alike
  const interrupt = (): void => {
    if (job) return job.cancel();
    if (armed) return void rl.close();
    armed = true;
    out.write("\n(Ctrl-C again to exit, /reset to start over)\n");
    if (tty) rl.prompt();
  };
  rl.on("SIGINT", interrupt);
  process.on("SIGINT", interrupt);
  if (tty) {
    out.write(`chatting with ${engine.name} (context ${ctx} tokens${engine.chat.isDefault ? ", default chat template" : ""}). /reset clears the history, /exit leaves, Ctrl-C stops a reply.\n`);
    rl.prompt();
  }

  for await (const raw of rl) {
    armed = false;
    const line = raw.trim();
    if (line === "/exit" || line === "/quit") break;
    if (line === "/reset") {
      history = [];
      out.write("(history cleared)\n");
    } else if (line !== "") {
      history.push({ role: "user", content: line });
      // drop the oldest turns until the prompt and a short reply fit the context
      let ids = engine.encodeChat([...system, ...history]);
      while (ids.length + MIN_REPLY > ctx && history.length > 1) {
        history.shift();
        while (history.length > 1 && history[0].role !== "user") history.shift();
        ids = engine.encodeChat([...system, ...history]);
      }
      if (ids.length + 1 > ctx) {
        process.stderr.write(`error: the message is ${ids.length} tokens long; the context holds ${ctx}\n`);
        history.pop();
      } else {
        job = engine.start({
          prompt: ids, maxTokens: Math.min(opts.maxTokens, ctx - ids.length), stop: engine.chat.stopStrings(),
          temperature: opts.temperature, topK: opts.topK, topP: opts.topP, seed: opts.seed,
          onText: (d) => out.write(d),
        });
        const r = await job.done;
        job = null;
        history.push({ role: "assistant", content: r.text.trim() });
        out.write(r.finishReason === "cancelled" ? " [stopped]\n" : "\n");
      }
    }
    if (tty) rl.prompt();
  }
  process.off("SIGINT", interrupt);
  rl.close();
  engine.scheduler.close();
}
