/**
 * The tool-call syntaxes of DeepSeek-V3/R1, DeepSeek-V3.1, GLM-4.5/4.6/4.7 and Kimi-K2, read incrementally from a
 * reply's content (./stream.ts). The token strings and the layout are the models' own (their chat templates write
 * the same calls into the history); vLLM's tool parsers deepseekv3, deepseekv31, glm4_moe/glm47_moe and kimi_k2
 * read the same text.
 */
import { cut, holdTail, type CallParser, type DeltaOut } from "./stream.js";
import type { ToolSpec } from "./request.js";

export interface ParseContext {
  /** The request's tools: GLM's arguments are typed by their parameter schemas. */
  readonly tools: readonly ToolSpec[];
  /** A new tool-call id (the formats that do not name their calls). */
  readonly newId: () => string;
}

/**
 * One call's JSON arguments as they stream (DeepSeek's and Kimi's formats): leading whitespace dropped, and a tail
 * that may still turn out to follow the arguments (whitespace; DeepSeek-V3's closing fence) held back until more
 * text shows it does not.
 */
class ArgumentText {
  private held = "";
  private started = false;

  constructor(private readonly tail: RegExp) {}

  /** A new call's arguments begin. */
  reset(): void {
    this.held = "";
    this.started = false;
  }

  /** The call's next text; sends what is surely arguments to `out`. */
  push(text: string, index: number, out: DeltaOut): void {
    let t = this.held + text;
    if (!this.started) t = t.replace(/^\s+/, "");
    const { out: emit, held } = holdTail(t, this.tail);
    this.held = held;
    if (emit) {
      this.started = true;
      out.args(index, emit);
    }
  }
}

/** DeepSeek's markers (fullwidth bars "｜" and "▁" for spaces, as in its vocabulary). */
export const DS = {
  callsBegin: "<｜tool▁calls▁begin｜>",
  callsEnd: "<｜tool▁calls▁end｜>",
  callBegin: "<｜tool▁call▁begin｜>",
  callEnd: "<｜tool▁call▁end｜>",
  sep: "<｜tool▁sep｜>",
} as const;

/**
 * DeepSeek-V3 and R1: `<｜tool▁calls▁begin｜>` then per call
 * `<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>`, then `<｜tool▁calls▁end｜>`.
 * DeepSeek-V3.1 (`v31`) drops the type and the fence: `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>`.
 */
export class DeepSeekParser implements CallParser {
  private state: "text" | "section" | "head" | "name" | "fence" | "args" = "text";
  private buf = "";
  private acc = "";
  private readonly args: ArgumentText;
  private index = -1;

  constructor(private readonly ctx: ParseContext, private readonly v31: boolean) {
    this.args = new ArgumentText(v31 ? /\s+$/ : /[\s`]+$/);
  }

  push(text: string, out: DeltaOut): void {
    this.buf += text;
    while (this.step(out));
  }

  finish(out: DeltaOut): void {
    if (this.state === "text") out.content(this.buf);
    else if (this.state === "name" && this.acc.trim()) this.begin(this.acc.trim(), out);
    this.buf = "";
    this.state = "text";
  }

  private step(out: DeltaOut): boolean {
    switch (this.state) {
      case "text": {
        const r = cut(this.buf, [DS.callsBegin]);
        out.content(r.before);
        this.buf = r.rest;
        if (r.marker) this.state = "section";
        return r.marker !== null;
      }
      case "section": {
        // between calls: the template writes "\n"; anything else there is not content either
        const r = cut(this.buf, [DS.callBegin, DS.callsEnd]);
        this.buf = r.rest;
        if (r.marker === DS.callBegin) {
          this.state = "head";
          this.acc = "";
        } else if (r.marker === DS.callsEnd) this.state = "text";
        return r.marker !== null;
      }
      case "head": {
        // V3: the call's type ("function"); V3.1: the function's name
        const r = cut(this.buf, [DS.sep, DS.callEnd]);
        this.acc += r.before;
        this.buf = r.rest;
        if (r.marker === DS.callEnd) this.state = "section"; // no separator: not a call
        else if (r.marker === DS.sep) {
          if (this.v31) {
            this.begin(this.acc.trim(), out);
            this.state = "args";
          } else {
            this.acc = "";
            this.state = "name";
          }
        }
        return r.marker !== null;
      }
      case "name": {
        const r = cut(this.buf, ["\n", DS.callEnd]);
        this.acc += r.before;
        this.buf = r.rest;
        if (r.marker === null) return false;
        this.begin(this.acc.trim(), out);
        this.state = r.marker === DS.callEnd ? "section" : "fence";
        return true;
      }
      case "fence": {
        // "```json\n" opens the arguments (tolerated missing)
        const b = this.buf.replace(/^\s+/, "");
        this.buf = b;
        if (!b) return false;
        if (!b.startsWith("`")) {
          this.state = "args";
          return true;
        }
        const nl = b.indexOf("\n");
        if (nl < 0) return false;
        this.buf = b.slice(nl + 1);
        this.state = "args";
        return true;
      }
      case "args": {
        const r = cut(this.buf, [DS.callEnd]);
        this.buf = r.rest;
        this.args.push(r.before, this.index, out);
        if (r.marker === null) return false;
        this.args.reset();
        this.state = "section";
        return true;
      }
    }
  }

  private begin(name: string, out: DeltaOut): void {
    this.index++;
    this.args.reset();
    out.call(this.index, this.ctx.newId(), name);
  }
}

/** Kimi-K2's markers. */
export const KIMI = {
  sectionBegin: "<|tool_calls_section_begin|>",
  sectionEnd: "<|tool_calls_section_end|>",
  callBegin: "<|tool_call_begin|>",
  argBegin: "<|tool_call_argument_begin|>",
  callEnd: "<|tool_call_end|>",
} as const;

/** Seen from Kimi-K2 besides the plural markers (vLLM's kimi_k2 parser accepts both). */
const KIMI_SINGULAR = { sectionBegin: "<|tool_call_section_begin|>", sectionEnd: "<|tool_call_section_end|>" } as const;

/**
 * Kimi-K2: `<|tool_calls_section_begin|>` then per call
 * `<|tool_call_begin|>functions.NAME:INDEX<|tool_call_argument_begin|>ARGS<|tool_call_end|>`, then
 * `<|tool_calls_section_end|>`. The call's id is the model's own ("functions.NAME:INDEX"), which its template
 * writes back into the history.
 */
export class KimiParser implements CallParser {
  private state: "text" | "section" | "id" | "args" = "text";
  private buf = "";
  private acc = "";
  private readonly args = new ArgumentText(/\s+$/);
  private index = -1;

  constructor(private readonly ctx: ParseContext) {}

  push(text: string, out: DeltaOut): void {
    this.buf += text;
    while (this.step(out));
  }

  finish(out: DeltaOut): void {
    if (this.state === "text") out.content(this.buf);
    this.buf = "";
    this.state = "text";
  }

  private step(out: DeltaOut): boolean {
    switch (this.state) {
      case "text": {
        const r = cut(this.buf, [KIMI.sectionBegin, KIMI_SINGULAR.sectionBegin, KIMI.callBegin]);
        out.content(r.before);
        this.buf = r.rest;
        if (r.marker === null) return false;
        this.state = r.marker === KIMI.callBegin ? "id" : "section";
        this.acc = "";
        return true;
      }
      case "section": {
        const r = cut(this.buf, [KIMI.callBegin, KIMI.sectionEnd, KIMI_SINGULAR.sectionEnd]);
        this.buf = r.rest;
        if (r.marker === KIMI.callBegin) {
          this.state = "id";
          this.acc = "";
        } else if (r.marker !== null) this.state = "text";
        return r.marker !== null;
      }
      case "id": {
        const r = cut(this.buf, [KIMI.argBegin, KIMI.callEnd]);
        this.acc += r.before;
        this.buf = r.rest;
        if (r.marker === null) return false;
        if (r.marker === KIMI.argBegin) {
          const id = this.acc.trim();
          this.index++;
          this.args.reset();
          out.call(this.index, id || this.ctx.newId(), kimiName(id));
          this.state = "args";
        } else this.state = "section";
        return true;
      }
      case "args": {
        const r = cut(this.buf, [KIMI.callEnd]);
        this.buf = r.rest;
        this.args.push(r.before, this.index, out);
        if (r.marker === null) return false;
        this.state = "section";
        return true;
      }
    }
  }
}

/** "functions.get_weather:0" -> "get_weather" (the prefix and the index are optional). */
export function kimiName(id: string): string {
  return id.replace(/^functions\./, "").replace(/:\d+$/, "");
}

/** GLM-4.5/4.6/4.7's markers. */
export const GLM = {
  call: "<tool_call>",
  callEnd: "</tool_call>",
  key: "<arg_key>",
  keyEnd: "</arg_key>",
  value: "<arg_value>",
  valueEnd: "</arg_value>",
} as const;

/**
 * GLM-4.5/4.6: `<tool_call>NAME\n<arg_key>K</arg_key>\n<arg_value>V</arg_value>\n…</tool_call>`; GLM-4.7 writes the
 * same without the newlines. Arguments are key/value pairs, turned into a JSON object as they stream: a value whose
 * parameter is a string in the tool's schema is a JSON string of the text as written (streamed piece by piece);
 * any other value is read as JSON (Python's True/False/None too), and kept as a string if it is not JSON. Keys and
 * values are trimmed, as vLLM's glm4_moe parser does.
 */
export class GlmParser implements CallParser {
  private state: "text" | "between" | "name" | "args" | "key" | "value" = "text";
  private buf = "";
  private acc = "";
  private name = "";
  private key = "";
  private pairs = 0;
  private stringValue = false;
  private valueStarted = false;
  private held = "";
  private index = -1;

  constructor(private readonly ctx: ParseContext) {}

  push(text: string, out: DeltaOut): void {
    this.buf += text;
    while (this.step(out));
  }

  finish(out: DeltaOut): void {
    const rest = this.buf;
    this.buf = "";
    if (this.state === "text") out.content(rest);
    else if (this.state === "between" && (this.acc + rest).trim()) out.content((this.acc + rest).trimStart());
    else if (this.state === "name" && (this.acc + rest).trim()) {
      this.begin((this.acc + rest).trim(), out);
      this.close(out);
    } else if (this.state === "value") {
      this.value(rest, out, true);
      this.close(out);
    } else if (this.state === "args" || this.state === "key") this.close(out);
    this.state = "text";
  }

  private step(out: DeltaOut): boolean {
    switch (this.state) {
      case "text": {
        const r = cut(this.buf, [GLM.call]);
        out.content(r.before);
        this.buf = r.rest;
        if (r.marker === null) return false;
        this.state = "name";
        this.acc = "";
        return true;
      }
      case "between": {
        // after a call: whitespace until the next one is layout; other text is content again
        const r = cut(this.buf, [GLM.call]);
        this.acc += r.before;
        this.buf = r.rest;
        if (r.marker !== null) {
          if (this.acc.trim()) out.content(this.acc.trimStart());
          this.acc = "";
          this.state = "name";
          return true;
        }
        if (!this.acc.trim()) return false;
        out.content(this.acc.trimStart());
        this.acc = "";
        this.state = "text";
        return true;
      }
      case "name": {
        const r = cut(this.buf, ["\n", GLM.key, GLM.callEnd]);
        this.acc += r.before;
        this.buf = r.rest;
        if (r.marker === null) return false;
        this.begin(this.acc.trim(), out);
        if (r.marker === GLM.callEnd) this.close(out);
        else this.state = r.marker === GLM.key ? "key" : "args";
        this.acc = "";
        return true;
      }
      case "args": {
        const r = cut(this.buf, [GLM.key, GLM.callEnd]);
        this.buf = r.rest;
        if (r.marker === GLM.key) {
          this.state = "key";
          this.acc = "";
        } else if (r.marker === GLM.callEnd) this.close(out);
        return r.marker !== null;
      }
      case "key": {
        // the key, then up to <arg_value>
        if (this.key === "") {
          const r = cut(this.buf, [GLM.keyEnd]);
          this.acc += r.before;
          this.buf = r.rest;
          if (r.marker === null) return false;
          this.key = this.acc.trim() || "_";
          this.acc = "";
        }
        const r = cut(this.buf, [GLM.value, GLM.callEnd]);
        this.buf = r.rest;
        if (r.marker === null) return false;
        if (r.marker === GLM.callEnd) {
          this.key = "";
          this.close(out);
          return true;
        }
        this.openValue(out);
        this.state = "value";
        return true;
      }
      case "value": {
        const r = cut(this.buf, [GLM.valueEnd]);
        this.buf = r.rest;
        this.value(r.before, out, r.marker !== null);
        if (r.marker === null) return false;
        this.state = "args";
        return true;
      }
    }
  }

  private begin(name: string, out: DeltaOut): void {
    this.index++;
    this.name = name;
    this.pairs = 0;
    out.call(this.index, this.ctx.newId(), name);
  }

  /** `{"key": ` (or `, "key": `), and a string value's opening quote. */
  private openValue(out: DeltaOut): void {
    this.stringValue = paramType(this.ctx.tools, this.name, this.key) === "string";
    out.args(this.index, `${this.pairs === 0 ? "{" : ", "}${JSON.stringify(this.key)}: ${this.stringValue ? '"' : ""}`);
    this.pairs++;
    this.key = "";
    this.acc = "";
    this.held = "";
    this.valueStarted = false;
  }

  private value(text: string, out: DeltaOut, end: boolean): void {
    if (!this.stringValue) {
      this.acc += text;
      if (end) out.args(this.index, jsonValue(this.acc.trim()));
      return;
    }
    let t = this.held + text;
    if (!this.valueStarted) t = t.replace(/^\s+/, "");
    const { out: emit, held } = end ? { out: t.replace(/\s+$/, ""), held: "" } : holdTail(t, /\s+$/);
    this.held = held;
    if (emit) {
      this.valueStarted = true;
      out.args(this.index, JSON.stringify(emit).slice(1, -1));
    }
    if (end) out.args(this.index, '"');
  }

  private close(out: DeltaOut): void {
    out.args(this.index, this.pairs === 0 ? "{}" : "}");
    this.state = "between";
    this.acc = "";
    this.key = "";
  }
}

/** The JSON-schema type of a tool's parameter, when the request's tools say. */
function paramType(tools: readonly ToolSpec[], tool: string, key: string): unknown {
  const params = tools.find((t) => t.function.name === tool)?.function.parameters;
  const props = params?.properties;
  if (!props || typeof props !== "object") return undefined;
  const p = (props as Record<string, unknown>)[key];
  return p && typeof p === "object" ? (p as { type?: unknown }).type : undefined;
}

/**
 * A GLM value that is not a string parameter, as JSON: the value if it parses as JSON, or as JSON once Python's
 * True/False/None outside strings are read as true/false/null (vLLM falls back to Python's literal_eval); else the
 * text as a JSON string.
 */
function jsonValue(text: string): string {
  for (const t of [text, pythonLiterals(text)]) {
    try {
      return JSON.stringify(JSON.parse(t));
    } catch {
      // next reading
    }
  }
  return JSON.stringify(text);
}

function pythonLiterals(text: string): string {
  const py: Record<string, string> = { True: "true", False: "false", None: "null" };
  // strings (double-quoted, with escapes) are kept; bare words outside them are replaced
  return text.replace(/"(?:[^"\\]|\\.)*"|\b(?:True|False|None)\b/g, (m) => py[m] ?? m);
}
