import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { MlaError } from "../errors.js";
import type { ModelConfig } from "../model/config.js";
import type { TextTokenizer } from "./tokenizer.js";

/** A call an assistant turn made (OpenAI's form: the arguments are a JSON string). */
export interface ChatToolCall {
  readonly id: string;
  readonly type: "function";
  readonly function: { readonly name: string; readonly arguments: string };
}

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
  readonly name?: string;
  /** An assistant turn's tool calls. */
  readonly tool_calls?: readonly ChatToolCall[];
  /** A tool turn: the id of the call it answers. */
  readonly tool_call_id?: string;
  /** An assistant turn's reasoning (GLM-4.7's and Kimi-K2-Thinking's templates write it back). */
  readonly reasoning_content?: string;
}

/**
 * A message as a template may need it: a turn that only calls tools with content null (DeepSeek-V3's template
 * writes the calls only then), the arguments as an object (GLM's templates iterate over them).
 */
export interface TemplateMessage extends Omit<ChatMessage, "content" | "tool_calls"> {
  readonly content: string | null;
  readonly tool_calls?: readonly (Omit<ChatToolCall, "function"> & {
    readonly function: { readonly name: string; readonly arguments: string | Readonly<Record<string, unknown>> };
  })[];
}

/**
 * The template used when a checkpoint has none (no `chat_template` in tokenizer_config.json, no
 * chat_template.jinja): BOS, then one "role: content" line per message, then "assistant:" for the reply. With it,
 * the text "\nuser:" marks the end of the reply (see ChatTemplate.stopStrings).
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}" +
  "{% if add_generation_prompt %}assistant:{% endif %}";

/** A Hugging Face chat template (Jinja, rendered by @huggingface/jinja) with the tokenizer's special tokens. */
export class ChatTemplate {
  private readonly template: Template;

  constructor(readonly source: string, private readonly specials: Record<string, string> = {}, readonly isDefault = false) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new MlaError(`the chat template could not be parsed: ${(e as Error).message}`);
    }
  }

  /**
   * The checkpoint's template: tokenizer_config.json's `chat_template` (a string, or a list of {name, template}
   * whose "default" entry is taken), else chat_template.jinja beside it, else DEFAULT_CHAT_TEMPLATE.
   */
  static load(dir: string, tok: TextTokenizer): ChatTemplate {
    const specials: Record<string, string> = {};
    for (const name of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
      const v = tok.specialToken(name);
      if (v !== undefined) specials[name] = v;
    }
    let src: unknown = tok.config.chat_template;
    if (Array.isArray(src)) {
      const named = src as { name?: unknown; template?: unknown }[];
      src = (named.find((t) => t.name === "default") ?? named[0])?.template;
    }
    if (typeof src === "string") return new ChatTemplate(src, specials);
    const file = join(dir, "chat_template.jinja");
    if (existsSync(file)) return new ChatTemplate(readFileSync(file, "utf8"), specials);
    return new ChatTemplate(DEFAULT_CHAT_TEMPLATE, specials, true);
  }

  /**
   * The prompt text for these messages (with the assistant's turn opened when addGenerationPrompt). `vars` are more
   * template variables, as transformers' apply_chat_template takes them (chat_template_kwargs): e.g.
   * { enable_thinking: false } makes GLM-4.7's and Qwen3's templates close the <think> block up front, and
   * { tools } (OpenAI's function list) is what GLM's and Kimi-K2's templates write into the prompt.
   */
  render(messages: readonly TemplateMessage[], addGenerationPrompt = true, vars: Readonly<Record<string, unknown>> = {}): string {
    try {
      return this.template.render({
        ...vars, messages, add_generation_prompt: addGenerationPrompt, bos_token: "", eos_token: "", ...this.specials,
      });
    } catch (e) {
      throw new MlaError(`the chat template failed: ${(e as Error).message}`);
    }
  }

  /** Text that ends an assistant turn besides EOS: the next "user:" line under the default template. */
  stopStrings(): string[] {
    return this.isDefault ? ["\nuser:"] : [];
  }
}

/**
 * Token ids that end generation: config.json's eos_token_id, generation_config.json's (an id or a list; chat
 * models often add their end-of-turn token there) and tokenizer_config.json's eos_token.
 */
export function stopTokenIds(dir: string, config: ModelConfig, tok: TextTokenizer | null): number[] {
  const ids = new Set(config.eosTokenIds);
  const gen = join(dir, "generation_config.json");
  if (existsSync(gen)) {
    let g: { eos_token_id?: unknown };
    try {
      g = JSON.parse(readFileSync(gen, "utf8"));
    } catch (e) {
      throw new MlaError(`${gen} is not valid JSON: ${(e as Error).message}`);
    }
    const v = g.eos_token_id;
    for (const x of Array.isArray(v) ? v : v == null ? [] : [v]) {
      if (!Number.isInteger(x)) throw new MlaError(`${gen}: eos_token_id must be an integer or a list of integers`);
      ids.add(x as number);
    }
  }
  const eos = tok?.specialToken("eos_token");
  const id = eos === undefined ? undefined : tok!.tokenToId(eos);
  if (id !== undefined) ids.add(id);
  return [...ids].filter((i) => i >= 0 && i < config.vocabSize);
}
