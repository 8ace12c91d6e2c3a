/**
 * The reply text of a chat model, split as it streams: reasoning (the `<think>` block), content, and tool calls.
 * Everything here is incremental: text arrives in pieces cut anywhere, and the pieces of output (deltas) that come
 * out add up to the same result however the text was cut. A piece of text that may be the start of a marker is
 * held back until the next piece tells (as StopMatcher holds back the start of a stop string).
 */

/** One piece of a reply, as the API streams it. */
export type ChatDelta =
  | { readonly kind: "content"; readonly text: string }
  | { readonly kind: "reasoning"; readonly text: string }
  /** A tool call begins: its id and function name (its arguments follow as "args" pieces). */
  | { readonly kind: "call"; readonly index: number; readonly id: string; readonly name: string }
  | { readonly kind: "args"; readonly index: number; readonly text: string };

export interface ToolCallResult {
  readonly id: string;
  readonly name: string;
  /** The arguments as the model wrote them: a JSON object's text (not checked). */
  readonly arguments: string;
}

export interface ChatResult {
  readonly content: string;
  readonly reasoning: string;
  readonly calls: readonly ToolCallResult[];
}

/** The whole reply that a list of deltas adds up to. */
export function foldDeltas(deltas: readonly ChatDelta[]): ChatResult {
  let content = "", reasoning = "";
  const calls: { id: string; name: string; arguments: string }[] = [];
  for (const d of deltas) {
    if (d.kind === "content") content += d.text;
    else if (d.kind === "reasoning") reasoning += d.text;
    else if (d.kind === "call") calls[d.index] = { id: d.id, name: d.name, arguments: "" };
    else calls[d.index].arguments += d.text;
  }
  return { content, reasoning, calls };
}

/** Where a parser puts what it reads. */
export interface DeltaOut {
  content(text: string): void;
  reasoning(text: string): void;
  call(index: number, id: string, name: string): void;
  args(index: number, text: string): void;
}

/** Collects a step's deltas, joining neighbours of the same kind (and the same call). */
export class DeltaSink implements DeltaOut {
  readonly deltas: ChatDelta[] = [];

  content(text: string): void {
    this.text("content", text);
  }

  reasoning(text: string): void {
    this.text("reasoning", text);
  }

  call(index: number, id: string, name: string): void {
    this.deltas.push({ kind: "call", index, id, name });
  }

  args(index: number, text: string): void {
    if (!text) return;
    const last = this.deltas[this.deltas.length - 1];
    if (last?.kind === "args" && last.index === index) this.deltas[this.deltas.length - 1] = { kind: "args", index, text: last.text + text };
    else this.deltas.push({ kind: "args", index, text });
  }

  private text(kind: "content" | "reasoning", text: string): void {
    if (!text) return;
    const last = this.deltas[this.deltas.length - 1];
    if (last?.kind === kind) this.deltas[this.deltas.length - 1] = { kind, text: last.text + text };
    else this.deltas.push({ kind, text });
  }
}

/**
 * `buf` split at the first whole marker (the longest, when several start at the same place); without one, the text
 * that cannot be the start of a marker comes out and the rest (a marker's beginning, maybe) is kept in `rest`.
 */
export function cut(buf: string, markers: readonly string[]): { before: string; marker: string | null; rest: string } {
  let at = -1, found: string | null = null;
  for (const m of markers) {
    const i = buf.indexOf(m);
    if (i >= 0 && (found === null || i < at || (i === at && m.length > found.length))) {
      at = i;
      found = m;
    }
  }
  if (found !== null) return { before: buf.slice(0, at), marker: found, rest: buf.slice(at + found.length) };
  let hold = 0; // the longest end of buf that begins some marker
  for (const m of markers) {
    for (let k = Math.min(m.length - 1, buf.length); k > hold; k--) {
      if (buf.endsWith(m.slice(0, k))) {
        hold = k;
        break;
      }
    }
  }
  return { before: buf.slice(0, buf.length - hold), marker: null, rest: buf.slice(buf.length - hold) };
}

/** `text` without its trailing characters that match `tail` (held back: they may turn out to be a closing fence). */
export function holdTail(text: string, tail: RegExp): { out: string; held: string } {
  const m = tail.exec(text);
  const n = m && m.index + m[0].length === text.length ? m[0].length : 0;
  return { out: text.slice(0, text.length - n), held: text.slice(text.length - n) };
}

/** The tool-call syntax of one model family, read from the reply's content as it streams. */
export interface CallParser {
  push(text: string, out: DeltaOut): void;
  /** The end of the reply: text held back comes out; a call cut short is closed where that keeps its JSON whole. */
  finish(out: DeltaOut): void;
}

export const THINK_OPEN = "<think>";
export const THINK_CLOSE = "</think>";

/**
 * Splits `<think>…</think>` off the start of a reply, as vLLM's reasoning parsers do. `open`: the prompt already
 * opened the block (DeepSeek-R1's and GLM-4.7's generation prompts end in `<think>`), so the reply starts inside it
 * (a `<think>` the model writes again is dropped). Otherwise a block is reasoning only when it opens the reply
 * (whitespace aside). Newlines around the reasoning and
 * at the start of the content after it are dropped (the templates write them; they are layout, not text).
 */
class ThinkSplitter {
  private state: "start" | "reasoning" | "content";
  private buf = "";
  /** Trailing newlines of the reasoning so far, held back (dropped if `</think>` follows). */
  private newlines = "";
  private reasoningStarted = false;
  /** Content right after `</think>`: its leading newlines are dropped. */
  private afterThink = false;

  constructor(private readonly open: boolean) {
    this.state = "start";
  }

  push(text: string, out: DeltaSink, content: (text: string) => void): void {
    this.buf += text;
    for (;;) {
      if (this.state === "start") {
        const rest = this.buf.trimStart();
        if (rest.length < THINK_OPEN.length && THINK_OPEN.startsWith(rest)) return; // maybe "<think>" still coming
        if (rest.startsWith(THINK_OPEN)) {
          this.state = "reasoning";
          this.buf = rest.slice(THINK_OPEN.length);
          continue;
        }
        this.state = this.open ? "reasoning" : "content";
      }
      if (this.state === "reasoning") {
        const r = cut(this.buf, [THINK_CLOSE]);
        this.reasoning(r.before, out);
        this.buf = r.rest;
        if (r.marker === null) return;
        this.newlines = "";
        this.state = "content";
        this.afterThink = true;
        continue;
      }
      let t = this.buf;
      this.buf = "";
      if (this.afterThink) {
        t = t.replace(/^\n+/, "");
        if (t) this.afterThink = false;
      }
      if (t) content(t);
      return;
    }
  }

  finish(out: DeltaSink, content: (text: string) => void): void {
    const rest = this.buf;
    this.buf = "";
    if (this.state === "reasoning" || (this.state === "start" && this.open)) this.reasoning(rest, out);
    else if (rest) content(rest);
  }

  private reasoning(text: string, out: DeltaSink): void {
    let t = this.newlines + text;
    if (!this.reasoningStarted) t = t.replace(/^\n+/, "");
    const { out: emit, held } = holdTail(t, /\n+$/);
    this.newlines = held;
    if (emit) {
      this.reasoningStarted = true;
      out.reasoning(emit);
    }
  }
}

export interface ChatOutputOptions {
  /** "off": no reasoning split; "open": the reply starts inside `<think>`; "detect": a leading `<think>` opens it. */
  readonly reasoning: "off" | "open" | "detect";
  /** The tool-call parser, when the request has tools. */
  readonly calls: CallParser | null;
}

/**
 * One chat reply as it streams: push() the text deltas the engine emits, finish() at the end; each returns the
 * deltas to send. The deltas of push(a), push(b), finish() add up (foldDeltas) to those of push(a + b), finish().
 * With tools, whitespace that ends the content is held back until text follows, and dropped before a call (a reply
 * that only calls tools has content null, as OpenAI's has).
 */
export class ChatOutput {
  private readonly think: ThinkSplitter | null;
  private calls = 0;
  private pendingSpace = "";

  constructor(private readonly opts: ChatOutputOptions) {
    this.think = opts.reasoning === "off" ? null : new ThinkSplitter(opts.reasoning === "open");
  }

  push(text: string): ChatDelta[] {
    const out = new DeltaSink();
    if (this.think) this.think.push(text, out, (t) => this.content(t, out));
    else this.content(text, out);
    return this.counted(out);
  }

  finish(): ChatDelta[] {
    const out = new DeltaSink();
    this.think?.finish(out, (t) => this.content(t, out));
    if (this.opts.calls) this.opts.calls.finish(this.through(out));
    const deltas = this.counted(out);
    if (this.calls === 0 && this.pendingSpace) out.content(this.pendingSpace);
    this.pendingSpace = "";
    return deltas;
  }

  /** Tool calls so far. */
  get toolCalls(): number {
    return this.calls;
  }

  private content(text: string, out: DeltaSink): void {
    if (!this.opts.calls) return out.content(text);
    this.opts.calls.push(text, this.through(out));
  }

  /** `out`, with the call parser's content passing through visible(). */
  private through(out: DeltaSink): DeltaOut {
    return {
      content: (t) => this.visible(t, out),
      reasoning: (t) => out.reasoning(t),
      call: (i, id, name) => {
        this.pendingSpace = ""; // the whitespace between the text and its calls is layout
        out.call(i, id, name);
      },
      args: (i, t) => out.args(i, t),
    };
  }

  /** Content from the call parser: trailing whitespace is held until text follows (a call drops it). */
  private visible(text: string, out: DeltaSink): void {
    const { out: emit, held } = holdTail(this.pendingSpace + text, /\s+$/);
    this.pendingSpace = held;
    out.content(emit);
  }

  private counted(out: DeltaSink): ChatDelta[] {
    for (const d of out.deltas) if (d.kind === "call") this.calls = Math.max(this.calls, d.index + 1);
    return out.deltas;
  }
}
