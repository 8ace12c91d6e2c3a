// Helpers for the structured-output tests: a JSON Schema validator for the subset src/generate/grammar compiles
// (an independent check of what the automaton accepts), and stepping the automaton over a text.
import { States, advance, canEnd, initialStates } from "../src/generate/grammar/automaton.js";
import type { JsonGrammar } from "../src/generate/grammar/schema.js";

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** Whether `value` matches `schema` (the supported subset; refs resolved against `root`). Returns the first error or null. */
export function validate(value: unknown, schema: unknown, root: unknown = schema, path = "$"): string | null {
  if (schema === true || schema === undefined) return null;
  if (schema === false) return `${path}: false schema`;
  if (!isObject(schema)) return `${path}: bad schema`;
  if (typeof schema.$ref === "string") {
    let target: unknown = root;
    if (schema.$ref !== "#") for (const part of schema.$ref.slice(2).split("/")) target = (target as Json)[part];
    return validate(value, target, root, path);
  }
  if (Array.isArray(schema.allOf)) for (const s of schema.allOf) {
    const e = validate(value, s, root, path);
    if (e) return e;
  }
  if (Array.isArray(schema.anyOf) && !schema.anyOf.some((s) => validate(value, s, root, path) === null)) return `${path}: no anyOf option matches`;
  if (Array.isArray(schema.enum) && !schema.enum.some((v) => deepEqual(v, value))) return `${path}: not in enum`;
  if ("const" in schema && !deepEqual(schema.const, value)) return `${path}: not const`;
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeOf(value, t as string))) return `${path}: not of type ${types.join("|")}`;
  }
  if (typeof value === "string") {
    const chars = [...value].length; // code points, as JSON Schema counts
    if (typeof schema.minLength === "number" && chars < schema.minLength) return `${path}: shorter than ${schema.minLength}`;
    if (typeof schema.maxLength === "number" && chars > schema.maxLength) return `${path}: longer than ${schema.maxLength}`;
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems) return `${path}: fewer than ${schema.minItems} items`;
    if (typeof schema.maxItems === "number" && value.length > schema.maxItems) return `${path}: more than ${schema.maxItems} items`;
    const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : [];
    for (let i = 0; i < value.length; i++) {
      const s = i < prefix.length ? prefix[i] : schema.items;
      const e = validate(value[i], s, root, `${path}[${i}]`);
      if (e) return e;
    }
  }
  if (isObject(value)) {
    const props = isObject(schema.properties) ? schema.properties : {};
    for (const r of Array.isArray(schema.required) ? schema.required : []) if (!(r in value)) return `${path}: missing ${r}`;
    for (const [k, v] of Object.entries(value)) {
      const s = k in props ? props[k] : schema.additionalProperties;
      const e = validate(v, s, root, `${path}.${k}`);
      if (e) return e;
    }
  }
  return null;
}

function typeOf(v: unknown, t: string): boolean {
  switch (t) {
    case "null": return v === null;
    case "boolean": return typeof v === "boolean";
    case "string": return typeof v === "string";
    case "integer": return typeof v === "number" && Number.isInteger(v);
    case "number": return typeof v === "number";
    case "array": return Array.isArray(v);
    case "object": return isObject(v);
    default: return false;
  }
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => k in b && deepEqual(a[k], b[k]));
  }
  return false;
}

/** Step the automaton over text's UTF-8 bytes (or raw bytes): whether it stays a prefix, and whether it is a whole document. */
export function run(g: JsonGrammar, text: string | Uint8Array): { prefix: boolean; complete: boolean } {
  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  let cur = initialStates(g.root);
  for (const x of bytes) {
    const out = new States();
    advance(cur, x, out);
    if (out.n === 0) return { prefix: false, complete: false };
    cur = out;
  }
  return { prefix: true, complete: canEnd(cur) };
}

/** Schemas whose documents are bounded (so a sampled one ends long before max_tokens): the 100-sample test and
 * scripts/bench-grammar.ts --validate. */
export const SCHEMAS: Record<string, object> = {
  person: {
    type: "object",
    properties: {
      name: { type: "string", minLength: 1, maxLength: 16 },
      age: { type: "integer" },
      score: { type: "number" },
      role: { enum: ["admin", "user", "guest"] },
      active: { type: "boolean" },
      nickname: { type: ["string", "null"], maxLength: 8 },
    },
    required: ["name", "age", "role", "active"],
    additionalProperties: false,
  },
  nested: {
    type: "object",
    properties: {
      todo: {
        type: "array", minItems: 1, maxItems: 3,
        items: { type: "object", properties: { id: { type: "integer" }, label: { type: "string", maxLength: 10 }, done: { type: "boolean" } }, required: ["id", "label", "done"], additionalProperties: false },
      },
      owner: { type: "object", properties: { first: { type: "string", maxLength: 8 }, last: { type: "string", maxLength: 8 } }, required: ["first"] },
      empty: { type: "null" },
    },
    required: ["todo", "owner"],
    additionalProperties: false,
  },
  unions: {
    type: "object",
    properties: {
      kind: { anyOf: [{ type: "integer" }, { type: "string", maxLength: 5 }, { type: "null" }] },
      point: { type: "array", prefixItems: [{ type: "number" }, { type: "number" }], items: false, minItems: 2 },
      color: { $ref: "#/$defs/color" },
      level: { const: 3 },
    },
    required: ["kind", "point", "color", "level"],
    $defs: { color: { enum: ["red", "green", "blue", [0, 0, 0], { r: 1 }] } },
  },
  escapes: {
    type: "object",
    properties: { quote: { type: "string", minLength: 2, maxLength: 12 }, path: { type: "string", maxLength: 10 } },
    required: ["quote", "path"],
    additionalProperties: false,
  },
};
