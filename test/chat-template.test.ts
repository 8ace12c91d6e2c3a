import { test, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { TextTokenizer, StreamDecoder } from "../src/tokenizer/tokenizer.js";
import { ChatTemplate, DEFAULT_CHAT_TEMPLATE, stopTokenIds } from "../src/tokenizer/chat.js";
import { StopMatcher } from "../src/generate/text.js";

import { tempDirs } from "./helpers.js";
import { loadConfig } from "../src/model/families/index.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BROWN = join(ROOT, "models/mla-brown");
const freshDir = tempDirs("mla-chat-", after);
const tok = TextTokenizer.load(BROWN)!;

test("StreamDecoder never emits part of a multi-byte character and adds up to the full decode", () => {
  const text = "Café – naïve 日本語 🎉 ok, “quoted” ∑ x² ß";
  const ids = tok.encode(text, false);
  const d = new StreamDecoder(tok);
  const deltas = ids.map((id) => d.push(id));
  const tail = d.flush();
  assert.equal(deltas.join("") + tail, tok.decode(ids), "the deltas add up to the whole text");
  assert.equal(deltas.join("") + tail, text, "and that is the text");
  for (const [i, s] of deltas.entries()) assert.ok(!s.includes("\uFFFD"), `delta ${i} ${JSON.stringify(s)} has no replacement character`);
  assert.ok(deltas.some((s) => s === ""), "some characters span several tokens (held back until complete)");
  for (const s of deltas) for (const ch of s) assert.ok(text.includes(ch), `${JSON.stringify(ch)} is a whole character of the text`);
});

test("StreamDecoder: an incomplete character at the end comes out of flush() as U+FFFD, as a full decode gives it", () => {
  const ids = tok.encode("ok 🎉", false);
  const cut = ids.slice(0, -1); // the emoji's last byte token missing
  const d = new StreamDecoder(tok);
  const out = cut.map((id) => d.push(id)).join("");
  assert.ok(!out.includes("\uFFFD"), "nothing broken while streaming");
  assert.equal(out + d.flush(), tok.decode(cut), "flush gives what decode gives");
});

test("StreamDecoder skips special tokens when asked", () => {
  const ids = [0, ...tok.encode("The jury", false), 1];
  const d = new StreamDecoder(tok, true);
  assert.equal(ids.map((i) => d.push(i)).join("") + d.flush(), "The jury", "no <bos>/<eos> text");
});

test("chat template: mla-brown has none, so the documented default renders with its BOS token", () => {
  const t = ChatTemplate.load(BROWN, tok);
  assert.equal(t.isDefault, true, "default template");
  assert.equal(t.source, DEFAULT_CHAT_TEMPLATE, "the documented one");
  const s = t.render([{ role: "system", content: "Be brief." }, { role: "user", content: "Hello" }]);
  assert.equal(s, "<bos>system: Be brief.\nuser: Hello\nassistant:", "rendered text");
  assert.equal(t.render([{ role: "user", content: "Hi" }], false), "<bos>user: Hi\n", "no generation prompt");
  const ids = tok.encode(s, false);
  assert.equal(ids[0], 0, "<bos> is the special token, not its characters");
  assert.equal(ids.filter((i) => i === 0).length, 1, "one BOS");
  assert.deepEqual(t.stopStrings(), ["\nuser:"], "the next user line ends a reply");
});

test("chat template: tokenizer_config.json's chat_template (string or named list) and chat_template.jinja", () => {
  const chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  const dir = freshDir();
  copyFileSync(join(BROWN, "tokenizer.json"), join(dir, "tokenizer.json"));
  const cfg = JSON.parse(readFileSync(join(BROWN, "tokenizer_config.json"), "utf8"));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ ...cfg, chat_template: chatml }));
  let t = ChatTemplate.load(dir, TextTokenizer.load(dir)!);
  assert.equal(t.isDefault, false, "the checkpoint's own");
  assert.equal(t.render([{ role: "user", content: "Hi" }]), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "ChatML");
  assert.deepEqual(t.stopStrings(), [], "EOS ends its turns");

  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ ...cfg, chat_template: [{ name: "tool_use", template: "x" }, { name: "default", template: "{{ bos_token }}{{ messages[0].content }}" }] }));
  t = ChatTemplate.load(dir, TextTokenizer.load(dir)!);
  assert.equal(t.render([{ role: "user", content: "Hi" }]), "<bos>Hi", "the default entry of the list");

  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(cfg));
  writeFileSync(join(dir, "chat_template.jinja"), "[{{ messages | length }}]");
  t = ChatTemplate.load(dir, TextTokenizer.load(dir)!);
  assert.equal(t.render([{ role: "user", content: "a" }, { role: "assistant", content: "b" }]), "[2]", "chat_template.jinja");

  assert.throws(() => new ChatTemplate("{% for %}"), /chat template could not be parsed/);
});

test("stop tokens come from config.json, generation_config.json and the tokenizer's eos_token", () => {
  const dir = freshDir();
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(BROWN, f), join(dir, f));
  const config = loadConfig(dir);
  assert.deepEqual(stopTokenIds(dir, config, TextTokenizer.load(dir)), [1], "eos_token_id 1, and <eos> is 1");
  writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [1, 7] }));
  assert.deepEqual(stopTokenIds(dir, config, TextTokenizer.load(dir)).sort((a, b) => a - b), [1, 7], "generation_config adds 7");
  writeFileSync(join(dir, "generation_config.json"), "{");
  assert.throws(() => stopTokenIds(dir, config, null), /not valid JSON/);
});

test("StopMatcher holds back a possible stop string across deltas and cuts at the first one", () => {
  const m = new StopMatcher(["\nuser:", "END"]);
  const outs = ["Hello", " wor", "ld\nus", "er: more"].map((d) => m.push(d));
  assert.deepEqual(outs.map((o) => o.text), ["Hello", " wor", "ld", ""], "'\\nus' is held back, then dropped with the stop string");
  assert.deepEqual(outs.map((o) => o.stopped), [false, false, false, true], "stopped on the last delta");
  const n = new StopMatcher(["END"]);
  assert.deepEqual([n.push("xE").text, n.push("Nd").text, n.flush()], ["x", "ENd", ""], "a false start is released");
  const k = new StopMatcher(["END"]);
  assert.deepEqual([k.push("abEN").text, k.flush()], ["ab", "EN"], "flush returns what was held at the end");
  assert.deepEqual(new StopMatcher([]).push("anything"), { text: "anything", stopped: false }, "no stops: pass-through");
});
