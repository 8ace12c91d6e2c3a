// Structured output (src/generate/grammar): the schema compiler's refusals, the byte automaton against JSON.parse
// and an independent validator, the vocabulary's bytes against the tokenizer's own decoding, and every token mask
// against the brute-force answer (each token's bytes stepped through the automaton).
import { test } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { States, advance, canEnd, initialStates } from "../src/generate/grammar/automaton.js";
import { StructuredOutput } from "../src/generate/grammar/constraint.js";
import { SchemaError, jsonObjectGrammar, jsonSchemaGrammar, type JsonGrammar } from "../src/generate/grammar/schema.js";
import { TokenVocab } from "../src/generate/grammar/vocab.js";
import { TextTokenizer } from "../src/tokenizer/tokenizer.js";
import { Sampler } from "../src/generate/sampler.js";
import { run, validate } from "./grammar-check.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const enc = new TextEncoder();

/** A schema of most supported features. */
const PERSON = {
  type: "object",
  properties: {
    name: { type: "string", minLength: 1, maxLength: 12 },
    age: { type: "integer" },
    height: { type: "number" },
    nick: { type: ["string", "null"], maxLength: 4 },
    role: { enum: ["admin", "user", 12, 1, null, { a: [1] }] },
    tags: { type: "array", items: { type: "string", maxLength: 6 }, minItems: 1, maxItems: 3 },
    pair: { type: "array", prefixItems: [{ type: "boolean" }, { const: "x" }], items: false },
    address: { $ref: "#/$defs/address" },
    any: {},
  },
  required: ["name", "age", "role", "tags"],
  additionalProperties: false,
  $defs: { address: { type: "object", properties: { city: { type: "string" }, zip: { type: "string", maxLength: 5 } }, required: ["city"] } },
};

const TREE = { $defs: { node: { type: "object", properties: { v: { type: "integer" }, kids: { type: "array", items: { $ref: "#/$defs/node" }, maxItems: 2 } }, required: ["v"] } }, $ref: "#/$defs/node" };

function refused(schema: unknown, keyword: string): void {
  assert.throws(() => jsonSchemaGrammar(schema), (e: unknown) => {
    assert.ok(e instanceof SchemaError, `a SchemaError for ${keyword}: ${e}`);
    assert.equal(e.keyword, keyword, `names '${keyword}': ${e.message}`);
    assert.ok(e.message.includes(`'${keyword}'`) || keyword === "$ref", `the message names '${keyword}': ${e.message}`);
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
}

test("schema keywords the automaton cannot guarantee are refused by name, never dropped", () => {
  for (const k of ["pattern", "format"]) refused({ type: "object", properties: { s: { type: "string", [k]: k === "format" ? "email" : "^a$" } } }, k);
  for (const k of ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"]) refused({ type: "integer", [k]: 3 }, k);
  refused({ type: "array", uniqueItems: true }, "uniqueItems");
  refused({ type: "array", contains: { const: 1 } }, "contains");
  refused({ oneOf: [{ type: "string" }, { type: "integer" }] }, "oneOf");
  refused({ not: { type: "string" } }, "not");
  refused({ if: { type: "string" }, then: { maxLength: 2 } }, "if");
  refused({ type: "object", minProperties: 1 }, "minProperties");
  refused({ type: "object", patternProperties: { "^a": {} } }, "patternProperties");
  refused({ type: "string", fooBar: 1 }, "fooBar"); // a typo is not silently nothing
  refused({ allOf: [{ type: "string" }, { maxLength: 3 }] }, "allOf");
  refused({ type: "string", minLength: 5, maxLength: 2 }, "minLength");
  refused({ type: "array", minItems: 3, maxItems: 1 }, "minItems");
  refused({ enum: [] }, "enum");
  refused({ type: "integer", enum: ["a", 1.5] }, "enum");
  refused({ $ref: "#/$defs/missing" }, "$ref");
  refused({ $ref: "https://example.com/schema.json" }, "$ref");
  refused({ $defs: { a: { $ref: "#/$defs/a" } }, $ref: "#/$defs/a" }, "$ref"); // a reference to itself, never a value
  refused({ type: "object", properties: { me: { $ref: "#" } }, required: ["me"] }, "$ref"); // no finite document
  refused({ type: "object", properties: {}, required: ["a"], additionalProperties: false }, "required");
  refused({ type: "string", maxItems: 2 }, "maxItems"); // a keyword of a type the schema excludes
  // annotations are read past; a single allOf is its schema
  const g = jsonSchemaGrammar({ title: "t", description: "d", $schema: "https://json-schema.org/draft/2020-12/schema", allOf: [{ type: "integer", default: 1, examples: [2] }] });
  assert.ok(run(g, "42").complete, "allOf of one schema, with annotations");
});

test("compiled grammars are cached by schema text", () => {
  assert.equal(jsonSchemaGrammar(PERSON), jsonSchemaGrammar(JSON.parse(JSON.stringify(PERSON))), "same schema text: the same grammar");
  assert.notEqual(jsonSchemaGrammar(PERSON).id, jsonSchemaGrammar({ ...PERSON, required: ["name"] }).id, "another schema: another grammar");
  assert.equal(jsonObjectGrammar(), jsonObjectGrammar(), "json_object: one grammar");
});

test("the automaton accepts exactly the documents of the schema", () => {
  const g = jsonSchemaGrammar(PERSON);
  const good = [
    { name: "Bob", age: 42, role: "admin", tags: ["a"] },
    { name: "An \"Q\" \\ é😀\n", age: -7, height: 1.5e-3, nick: null, role: 12, tags: ["", "x", "éé"], pair: [true, "x"], address: { city: "Pâris", zip: "75001" }, any: [1, { a: null }, "s"] },
    { name: "x", age: 0, height: -0.25, nick: "abcd", role: { a: [1] }, tags: ["t"], address: { city: "" } },
    { name: "x", age: 0, role: 1, tags: ["t"] },
  ];
  for (const doc of good) {
    for (const text of [JSON.stringify(doc), JSON.stringify(doc, null, 2), JSON.stringify(doc, null, "\t")]) {
      assert.deepEqual(run(g, text), { prefix: true, complete: true }, `accepted: ${text}`);
    }
  }
  const escapes = String.raw`{"name": "\ud83d\ude00\u00e9\n\/", "age": 1, "role": "user", "tags": ["\"\\"]}`;
  assert.deepEqual(run(g, escapes), { prefix: true, complete: true }, "escapes, a surrogate pair as one character");
  const bad: [string, string][] = [
    ['{"age": 1, "name": "x", "role": 1, "tags": ["t"]}', "keys in the schema's order"],
    ['{"name": "x", "age": 1, "role": 1}', "a required key missing"],
    ['{"name": "x", "name": "y", "age": 1, "role": 1, "tags": ["t"]}', "a key twice"],
    ['{"name": "x", "age": 1, "role": 1, "tags": ["t"], "extra": 1}', "a key not listed"],
    ['{"name": "", "age": 1, "role": 1, "tags": ["t"]}', "minLength"],
    ['{"name": "1234567890123", "age": 1, "role": 1, "tags": ["t"]}', "maxLength"],
    ['{"name": "x", "age": 1.5, "role": 1, "tags": ["t"]}', "an integer with a fraction"],
    ['{"name": "x", "age": 01, "role": 1, "tags": ["t"]}', "a leading zero"],
    ['{"name": "x", "age": +1, "role": 1, "tags": ["t"]}', "a plus sign"],
    ['{"name": "x", "age": 1, "role": 2, "tags": ["t"]}', "not in the enum"],
    ['{"name": "x", "age": 1, "role": 123, "tags": ["t"]}', "an enum value's prefix"],
    ['{"name": "x", "age": 1, "role": 1, "tags": []}', "minItems"],
    ['{"name": "x", "age": 1, "role": 1, "tags": ["a","b","c","d"]}', "maxItems"],
    ['{"name": "x", "age": 1, "role": 1, "tags": ["t",]}', "a trailing comma"],
    ['{"name": "x", "age": 1, "role": 1, "tags": ["t"], "pair": [true, "x", 1]}', "items: false after the prefix"],
    ['{"name": "x", "age": 1, "role": 1, "tags": ["t"], "address": {"zip": "1"}}', "a required key of a $ref"],
    ['{"name": "\\ud800", "age": 1, "role": 1, "tags": ["t"]}', "a high surrogate alone"],
    ['{"name": "\\udc00", "age": 1, "role": 1, "tags": ["t"]}', "a low surrogate alone"],
    ['{"name": "\\x", "age": 1, "role": 1, "tags": ["t"]}', "an unknown escape"],
    ['{"name": "a\tb", "age": 1, "role": 1, "tags": ["t"]}', "a raw control character"],
    ['{"name": "x",\n' + " ".repeat(21) + '"age": 1, "role": 1, "tags": ["t"]}', "more than 20 spaces of indent"],
    ['{"name": "x",  "age": 1, "role": 1, "tags": ["t"]}', "two spaces"],
    [' {"name": "x", "age": 1, "role": 1, "tags": ["t"]}', "whitespace before the document"],
    ['{"name": "x", "age": 1, "role": 1, "tags": ["t"]} ', "whitespace after it"],
    ['{"name": "x", "age": 1234567890123456, "role": 1, "tags": ["t"]}', "more than 15 digits"],
  ];
  for (const [text, why] of bad) assert.equal(run(g, text).complete, false, `refused (${why}): ${text}`);
  // invalid UTF-8 inside a string: overlong, a surrogate, past U+10FFFF, a stray continuation byte
  for (const seq of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xf5, 0x80, 0x80, 0x80]]) {
    const bytes = Uint8Array.from([...enc.encode('{"name": "'), ...seq, ...enc.encode('", "age": 1, "role": 1, "tags": ["t"]}')]);
    assert.equal(run(g, bytes).prefix, false, `invalid UTF-8 ${seq.map((b) => b.toString(16)).join(" ")}`);
  }
  // recursion through $ref
  const t = jsonSchemaGrammar(TREE);
  assert.ok(run(t, '{"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": [{"v": 4, "kids": []}]}]}').complete, "a tree");
  assert.equal(run(t, '{"v": 1, "kids": [{"v": 2}, {"v": 3}, {"v": 4}]}').complete, false, "maxItems inside the recursion");
  // json_object: any object, nothing else
  const o = jsonObjectGrammar();
  assert.ok(run(o, '{"a": [1, -2.5e+10, true, null, {"b": "c"}], "a": {}}').complete, "json_object");
  for (const text of ["[1]", '"s"', "1", "null", "{} {}"]) assert.equal(run(o, text).complete, false, `json_object refuses ${text}`);
  // a number or a literal at the root ends where it may
  const n = jsonSchemaGrammar({ type: "number" });
  assert.ok(run(n, "-0.5E-12").complete && !run(n, "-").complete && !run(n, "1.").complete && !run(n, "1e").complete, "numbers at the root");
  const e = jsonSchemaGrammar({ enum: [1, 12, 123] });
  assert.ok(run(e, "1").complete && run(e, "12").complete && run(e, "123").complete && !run(e, "1234").prefix, "enum values that prefix each other");
});

/** A seeded generator of random documents of PERSON (keys in order, optional ones sometimes). */
function randomPerson(seed: number): unknown {
  let a = seed >>> 0;
  const rnd = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const chars = ["a", "Z", " ", '"', "\\", "\n", "\u0001", "é", "😀", "\u2028", "/", "\u007f"];
  const str = (min: number, max: number): string => Array.from({ length: min + Math.floor(rnd() * (max - min + 1)) }, () => pick(chars)).join("");
  const doc: Record<string, unknown> = { name: str(1, 12), age: Math.floor((rnd() - 0.5) * 1e6) };
  if (rnd() < 0.5) doc.height = Math.round((rnd() - 0.5) * 1e6) / 10 ** Math.floor(rnd() * 9); // at most 15 digits
  if (rnd() < 0.5) doc.nick = rnd() < 0.5 ? null : str(0, 4);
  doc.role = pick(["admin", "user", 12, 1, null, { a: [1] }]);
  doc.tags = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => str(0, 6));
  if (rnd() < 0.3) doc.pair = [rnd() < 0.5, "x"];
  if (rnd() < 0.5) doc.address = rnd() < 0.5 ? { city: str(0, 8) } : { city: str(0, 3), zip: str(0, 5) };
  if (rnd() < 0.5) doc.any = pick([[], {}, [1, "a", { b: [null] }], "s", 1.5, true]);
  return doc;
}

test("random documents are accepted, and every mutation the automaton accepts parses and validates", () => {
  const g = jsonSchemaGrammar(PERSON);
  let mutated = 0, acceptedMutations = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const doc = randomPerson(seed);
    const text = JSON.stringify(doc, null, seed % 3 === 0 ? 2 : undefined);
    assert.equal(validate(doc, PERSON), null, "the generator makes valid documents");
    assert.deepEqual(run(g, text), { prefix: true, complete: true }, `accepted: ${text}`);
    // one byte changed, inserted or removed: if the automaton calls it complete, it must be a valid document
    const bytes = enc.encode(text);
    for (let k = 0; k < 10; k++) {
      const i = (seed * 7919 + k * 104729) % bytes.length;
      const b = [0x22, 0x5c, 0x2c, 0x7d, 0x5d, 0x31, 0x20, 0x0a, 0x61, 0xc3, 0x2e][(seed + k) % 11];
      const m = k % 3 === 0 ? Uint8Array.from([...bytes.subarray(0, i), b, ...bytes.subarray(i)])
        : k % 3 === 1 ? Uint8Array.from([...bytes.subarray(0, i), ...bytes.subarray(i + 1)])
          : Uint8Array.from(bytes.map((x, j) => (j === i ? b : x)));
      mutated++;
      if (!run(g, m).complete) continue;
      acceptedMutations++;
      const s = new TextDecoder("utf-8", { fatal: true }).decode(m);
      const parsed = JSON.parse(s); // throws if not JSON
      assert.equal(validate(parsed, PERSON), null, `an accepted mutation validates: ${s}`);
    }
  }
  assert.ok(acceptedMutations > 0 && acceptedMutations < mutated, `some mutations stay valid (${acceptedMutations} of ${mutated}), most do not`);
});

const brownTok = TextTokenizer.load(join(ROOT, "models/mla-brown"))!;

test("the vocabulary's bytes are what the tokenizer decodes each token to", () => {
  const v = TokenVocab.fromTokenizer(brownTok, 2048);
  let checked = 0;
  for (let id = 0; id < 2048; id++) {
    const b = v.bytes[id];
    const text = brownTok.decode([id]);
    if (!b) {
      assert.ok(brownTok.decode([id], true) === "", `token ${id} without bytes is special`);
      continue;
    }
    const s = new TextDecoder("utf-8", { fatal: false }).decode(b);
    if (s.includes("\uFFFD")) continue; // part of a character: the decoder shows U+FFFD too
    assert.equal(s, text, `token ${id}`);
    checked++;
  }
  assert.ok(checked > 1500, `most tokens checked (${checked})`);
  // a SentencePiece vocabulary with byte fallback: <0x..> tokens are bytes, ▁ is a space
  const spm = TextTokenizer.fromJson({
    version: "1.0", added_tokens: [{ id: 0, content: "<s>", special: true, single_word: false, lstrip: false, rstrip: false, normalized: false }],
    normalizer: null, pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: false },
    post_processor: null,
    decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }] },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false,
      vocab: { "<s>": 0, "<0x0A>": 1, "<0xC3>": 2, "\u2581a": 3, "\"": 4, "{": 5, "\u2581\u2581": 6 }, merges: [] },
  });
  const sv = TokenVocab.fromTokenizer(spm, 8);
  assert.deepEqual(sv.bytes.map((b) => (b ? [...b] : null)), [null, [0x0a], [0xc3], [0x20, 0x61], [0x22], [0x7b], [0x20, 0x20], null], "byte-fallback bytes");
});

/** The brute-force mask: every token whose bytes the automaton takes from `states`, and the stops when it may end. */
function bruteForce(v: TokenVocab, states: States, stops: readonly number[]): Set<number> {
  const ok = new Set<number>();
  for (let id = 0; id < v.size; id++) {
    const b = v.bytes[id];
    if (!b || b.length === 0 || stops.includes(id)) continue;
    let cur = states;
    for (const x of b) {
      const out = new States();
      advance(cur, x, out);
      cur = out;
      if (out.n === 0) break;
    }
    if (cur.n > 0) ok.add(id);
  }
  if (canEnd(states)) for (const s of stops) ok.add(s);
  return ok;
}

function checkMasks(v: TokenVocab, g: JsonGrammar, tokenIds: readonly number[], stops: readonly number[], what: string): number {
  const so = new StructuredOutput(v);
  const c = so.constraint(g, stops);
  let states = initialStates(g.root), steps = 0;
  for (const id of [...tokenIds, stops[0]]) {
    const mask = c.next();
    const want = bruteForce(v, states, stops);
    assert.ok(mask, `${what}: a mask at step ${steps}`);
    assert.equal(mask.allowed, want.size, `${what}: step ${steps}: ${mask.allowed} allowed, brute force ${want.size}`);
    for (const w of want) assert.ok(mask.has(w), `${what}: step ${steps}: token ${w} allowed`);
    // the mask applied to a row leaves exactly the allowed logits finite
    const row = new Float32Array(v.size).fill(1);
    mask.apply(row);
    assert.equal(row.filter((x) => x === 1).length, want.size, `${what}: apply keeps the allowed`);
    assert.ok(c.accept(id), `${what}: token ${id} at step ${steps} accepted`);
    if (!stops.includes(id)) {
      for (const x of v.bytes[id]!) {
        const out = new States();
        advance(states, x, out);
        states = out;
      }
    }
    steps++;
  }
  assert.equal(c.next(), null, `${what}: nothing after the stop token`);
  return steps;
}

test("every mask equals the brute-force answer (bundled tokenizer and a vocabulary of awkward tokens)", () => {
  const v = TokenVocab.fromTokenizer(brownTok, 2048);
  const doc = JSON.stringify({ name: "Bo \"b\" é", age: 42, height: -1.25, nick: null, role: "admin", tags: ["a b", "\\"], address: { city: "Rome" }, any: { k: [1, "v"] } }, null, 2);
  const steps = checkMasks(v, jsonSchemaGrammar(PERSON), brownTok.encode(doc, false), [1], "brown, PERSON");
  assert.ok(steps > 40, `walked ${steps} tokens`);
  checkMasks(v, jsonObjectGrammar(), brownTok.encode('{"a": [1, {"b": "c d"}], "e": null}', false), [1], "brown, json_object");
  checkMasks(v, jsonSchemaGrammar(TREE), brownTok.encode('{"v": 1, "kids": [{"v": 22, "kids": []}]}', false), [1], "brown, TREE");
  // tokens that end inside a character, hold quotes, escapes, several values or long whitespace; a stop token that is also text
  const pieces = ["", "{", "}", "\"", "\"}", "\":", ", \"", "a\"", "\\", "\\u", "d83d", "\\ud83d", "\\ude00", "é", "😀", "a", "name", "\"name\": \"", "1", "12", "-", ".5", "e+3",
    "true", "null", "n", "role", " ", "\n", " ".repeat(20), " ".repeat(25), "\n" + " ".repeat(19), "[", "]", ",", ":", "\"]", "}}", "\"admin\"", "12,", "\t", "\u0001", "x\"y"];
  const bytes: (Uint8Array | null)[] = pieces.map((p) => enc.encode(p));
  bytes.push(Uint8Array.of(0xc3), Uint8Array.of(0xa9), Uint8Array.of(0xa9, 0x22), Uint8Array.of(0xf0, 0x9f), Uint8Array.of(0x98, 0x80), Uint8Array.of(0xed, 0xa0), null);
  const stop = bytes.length - 1;
  bytes[0] = null; // an id with no text (special)
  const sv = new TokenVocab(bytes, bytes.length + 3); // padding ids past the tokenizer's
  const ids = (parts: (string | number[])[]): number[] => parts.map((p) => {
    const id = typeof p === "string" ? pieces.indexOf(p) : bytes.findIndex((b) => b && b.length === p.length && b.every((x, i) => x === p[i]));
    assert.ok(id > 0, `piece ${JSON.stringify(p)}`);
    return id;
  });
  const small = { type: "object", properties: { name: { type: "string", maxLength: 5 }, n: { type: "number" }, role: { enum: ["admin", 12] } }, required: ["name", "role"] };
  checkMasks(sv, jsonSchemaGrammar(small), ids(["{", "\"name\": \"", "a", [0xc3], [0xa9, 0x22], ",", " ", "\"", "n", "\":", "-", "1", ".5", "e+3", ",", "\n", "\"", "role", "\":", " ", "12", "}"]), [stop], "awkward tokens");
  checkMasks(sv, jsonObjectGrammar(), ids(["{", "\"", "\\ud83d", "\\ude00", "😀", [0xf0, 0x9f], [0x98, 0x80], "\":", "[", "true", ",", "null", "]", "}"]), [stop], "awkward tokens, json_object");
});

test("the sampler never picks a masked token, greedy or sampled, whatever the bias", () => {
  const v = TokenVocab.fromTokenizer(brownTok, 2048);
  const so = new StructuredOutput(v);
  const g = jsonSchemaGrammar(PERSON);
  for (const opts of [{}, { temperature: 1, seed: 3 }, { temperature: 1.5, topK: 5, seed: 4 }, { temperature: 1, topP: 0.5, minP: 0.1, seed: 5 }]) {
    const c = so.constraint(g, [1]);
    const sampler = new Sampler({ ...opts, logitBias: new Map([[brownTok.tokenToId("the")!, 100]]) });
    for (let i = 0; i < 300; i++) {
      const mask = c.next();
      if (!mask) break;
      const logits = new Float32Array(2048).map((_, k) => Math.sin(k * 12.9898 + i) * 5);
      const id = sampler.sample(logits, undefined, mask);
      assert.ok(mask.has(id), `token ${id} is allowed (${JSON.stringify(opts)})`);
      assert.ok(c.accept(id));
      if (id === 1) break;
    }
  }
});
