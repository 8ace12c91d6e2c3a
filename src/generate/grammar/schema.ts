/**
 * JSON Schema -> the graph of value nodes the byte automaton (./automaton.ts) walks. The subset compiled is the
 * one structured-output APIs use (OpenAI's strict mode and more): types, enum/const, objects with properties and
 * required, arrays with items/prefixItems and min/maxItems, strings with min/maxLength, anyOf, a single allOf, local
 * $ref with $defs/definitions (recursion included). Every other keyword that constrains a value is refused with a
 * SchemaError naming it: a constraint is never silently dropped. Annotations (title, description, ...) are read
 * past. The result generates a subset of the schema's valid documents:
 * - an object with `properties` gets its keys in the schema's order, each at most once, and no other keys;
 * - numbers are written without redundant signs or zeros (`-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`), at most 15
 *   digits before and after the point and 2 in the exponent (integers stay exact in a double; nothing overflows one).
 */
import { MlaError } from "../../errors.js";

/** A schema keyword that cannot be honoured (or a malformed schema): the message names the keyword and where it is. */
export class SchemaError extends MlaError {
  constructor(readonly keyword: string, readonly path: string, message: string) {
    super(message);
    this.name = "SchemaError";
  }
}

export interface ObjectNode {
  readonly kind: "object";
  readonly id: number;
  /** Properties in the schema's order, their keys as JSON text (quotes and escapes included) in UTF-8. */
  props: PropSpec[];
  /** firstRequired[i]: the first required property at index >= i (props.length when none). */
  firstRequired: Int32Array;
  /** With no listed properties: the schema of any key's value (null: no key may appear, the object is `{}`). */
  extra: ValueNode | null;
}

export interface PropSpec {
  readonly name: string;
  readonly key: Uint8Array;
  node: ValueNode;
  readonly required: boolean;
}

export interface ArrayNode {
  readonly kind: "array";
  readonly id: number;
  prefix: ValueNode[];
  /** Items after the prefix (null: none may follow). */
  items: ValueNode | null;
  min: number;
  /** Infinity when unbounded. */
  max: number;
}

export interface StringNode {
  readonly kind: "string";
  readonly id: number;
  /** Characters (code points), as JSON Schema counts them. */
  readonly min: number;
  readonly max: number;
}

export interface NumberNode {
  readonly kind: "number";
  readonly id: number;
  readonly integer: boolean;
}

/** enum / const / true / false / null: the values' JSON texts, sorted bytewise. */
export interface LiteralNode {
  readonly kind: "literal";
  readonly id: number;
  readonly options: readonly Uint8Array[];
}

export interface AnyOfNode {
  readonly kind: "anyOf";
  readonly id: number;
  options: ValueNode[];
}

/** A $ref, resolved after the whole schema is compiled (it may point at an enclosing schema). */
export interface RefNode {
  readonly kind: "ref";
  readonly id: number;
  target: ValueNode | null;
  readonly ref: string;
}

export type ValueNode = ObjectNode | ArrayNode | StringNode | NumberNode | LiteralNode | AnyOfNode | RefNode;

/** A compiled response format: the root node and a key that names it in caches. */
export interface JsonGrammar {
  readonly root: ValueNode;
  /** Unique per compiled grammar (mask caches are keyed by it). */
  readonly id: number;
  /** "json_object", or "json_schema" and the schema's JSON text. */
  readonly source: string;
}

const enc = new TextEncoder();
const utf8 = (s: string): Uint8Array => enc.encode(s);

let nextNodeId = 1;
let nextGrammarId = 1;
const newId = (): number => nextNodeId++;

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function literal(values: readonly unknown[]): LiteralNode {
  const texts = [...new Set(values.map((v) => JSON.stringify(v)))];
  return { kind: "literal", id: newId(), options: texts.map(utf8).sort(compareBytes) };
}

/** Any JSON value (json_object's values, schemas without constraints). Shared: it holds no per-schema state. */
const ANY: AnyOfNode = (() => {
  const any: AnyOfNode = { kind: "anyOf", id: newId(), options: [] };
  const obj: ObjectNode = { kind: "object", id: newId(), props: [], firstRequired: new Int32Array([0]), extra: any };
  const arr: ArrayNode = { kind: "array", id: newId(), prefix: [], items: any, min: 0, max: Infinity };
  any.options = [obj, arr, { kind: "string", id: newId(), min: 0, max: Infinity }, { kind: "number", id: newId(), integer: false }, literal([true, false, null])];
  return any;
})();
const ANY_OBJECT = ANY.options[0] as ObjectNode;

/** Keys that describe a schema without constraining its values. */
const ANNOTATIONS = new Set([
  "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly",
  "$defs", "definitions",
]);

const TYPES = ["string", "number", "integer", "boolean", "null", "object", "array"] as const;
type TypeName = (typeof TYPES)[number];

/** The keywords of each type (a schema without `type` is taken to have the types its keywords imply). */
const TYPE_KEYWORDS: Readonly<Record<string, TypeName>> = {
  properties: "object", required: "object", additionalProperties: "object",
  items: "array", prefixItems: "array", additionalItems: "array", minItems: "array", maxItems: "array",
  minLength: "string", maxLength: "string",
};

/** What the automaton cannot guarantee, with why (the 400's hint). */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  pattern: "no regular expressions", format: "no string formats", patternProperties: "no key patterns",
  propertyNames: "no key schemas", minimum: "no numeric bounds", maximum: "no numeric bounds",
  exclusiveMinimum: "no numeric bounds", exclusiveMaximum: "no numeric bounds", multipleOf: "no numeric bounds",
  uniqueItems: "items are generated independently", contains: "items are generated independently",
  minContains: "items are generated independently", maxContains: "items are generated independently",
  minProperties: "use required", maxProperties: "list the properties", dependentRequired: "no dependencies",
  dependentSchemas: "no dependencies", dependencies: "no dependencies", oneOf: "use anyOf", not: "no negation",
  if: "no conditionals", then: "no conditionals", else: "no conditionals", unevaluatedProperties: "no unevaluated*",
  unevaluatedItems: "no unevaluated*", $anchor: "only $ref to JSON pointers", $dynamicRef: "only $ref to JSON pointers",
  $dynamicAnchor: "only $ref to JSON pointers", $recursiveRef: "only $ref to JSON pointers", contentEncoding: "no content encodings",
  contentMediaType: "no content encodings", nullable: "use type: [..., \"null\"]", discriminator: "use anyOf",
};

const KNOWN = new Set([...ANNOTATIONS, ...Object.keys(TYPE_KEYWORDS), "type", "enum", "const", "anyOf", "allOf", "$ref"]);

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

class Compiler {
  private readonly nodes = new Map<unknown, ValueNode>();
  /** The $refs met, with where each was written (for errors). */
  private readonly refs = new Map<RefNode, string>();

  constructor(private readonly rootSchema: unknown) {}

  /** The node of a subschema (memoized per schema object, so $ref cycles close on themselves). */
  node(s: unknown, path: string): ValueNode {
    if (s === true) return ANY;
    if (s === false) throw new SchemaError("false", path, `response_format schema: the schema at ${path} is false, which no value matches`);
    if (!isObject(s)) throw new SchemaError("", path, `response_format schema: the schema at ${path} must be an object or a boolean`);
    const known = this.nodes.get(s);
    if (known) return known;
    this.checkKeywords(s, path);
    if (s.$ref !== undefined) return this.ref(s, path);
    if (s.allOf !== undefined) return this.allOf(s, path);
    if (s.enum !== undefined || s.const !== undefined) return this.set(s, this.enumNode(s, path));
    const types = this.types(s, path);
    if (s.anyOf !== undefined) {
      if (s.type !== undefined || Object.keys(s).some((k) => k in TYPE_KEYWORDS)) {
        throw new SchemaError("anyOf", path, `response_format schema: 'anyOf' next to 'type' or type keywords at ${path} is not supported: put them in each option`);
      }
      const list = s.anyOf;
      if (!Array.isArray(list) || list.length === 0) throw new SchemaError("anyOf", path, `response_format schema: 'anyOf' at ${path} must be a non-empty array of schemas`);
      const node: AnyOfNode = { kind: "anyOf", id: newId(), options: [] };
      this.set(s, node);
      node.options = list.map((o, i) => this.node(o, `${path}/anyOf/${i}`));
      return node;
    }
    if (types.length === TYPES.length - 1 && !types.some((t) => TYPE_KEYWORDS_OF[t].some((k) => s[k] !== undefined))) return this.set(s, ANY);
    if (types.length === 1) return this.typed(s, types[0], path);
    const node: AnyOfNode = { kind: "anyOf", id: newId(), options: [] };
    this.set(s, node);
    node.options = types.map((t) => this.typed(s, t, path, false));
    return node;
  }

  private set<N extends ValueNode>(s: unknown, n: N): N {
    this.nodes.set(s, n);
    return n;
  }

  private checkKeywords(s: Json, path: string): void {
    for (const k of Object.keys(s)) {
      if (k in UNSUPPORTED) {
        throw new SchemaError(k, path, `response_format schema: '${k}' at ${path} is not supported (${UNSUPPORTED[k]})`);
      }
      if (!KNOWN.has(k)) throw new SchemaError(k, path, `response_format schema: unknown keyword '${k}' at ${path}`);
    }
  }

  private ref(s: Json, path: string): ValueNode {
    const ref = s.$ref;
    const extra = Object.keys(s).filter((k) => k !== "$ref" && !ANNOTATIONS.has(k));
    if (extra.length > 0) throw new SchemaError(extra[0], path, `response_format schema: '${extra[0]}' next to '$ref' at ${path} is not supported`);
    if (typeof ref !== "string" || !ref.startsWith("#")) {
      throw new SchemaError("$ref", path, `response_format schema: '$ref' at ${path} must point into this schema ("#/$defs/name"), got ${JSON.stringify(ref)?.slice(0, 100)}`);
    }
    const node: RefNode = { kind: "ref", id: newId(), target: null, ref };
    this.set(s, node);
    this.refs.set(node, path);
    return node;
  }

  /** Resolve the $refs (after every node exists, so a reference to an enclosing schema finds it). */
  resolveRefs(): void {
    // a Map iterates entries added during the loop too: refs met inside a resolved target get resolved
    for (const [r, path] of this.refs) {
      const target = pointer(this.rootSchema, r.ref);
      if (target === undefined) throw new SchemaError("$ref", path, `response_format schema: '$ref' ${JSON.stringify(r.ref)} at ${path} points at nothing`);
      r.target = this.node(target, r.ref);
    }
    for (const r of this.refs.keys()) {
      const seen = new Set<ValueNode>();
      let n: ValueNode | null = r;
      while (n && n.kind === "ref") {
        if (seen.has(n)) throw new SchemaError("$ref", r.ref, `response_format schema: '$ref' ${JSON.stringify(r.ref)} refers to itself without a value in between`);
        seen.add(n);
        n = n.target;
      }
    }
  }

  private allOf(s: Json, path: string): ValueNode {
    const extra = Object.keys(s).filter((k) => k !== "allOf" && !ANNOTATIONS.has(k));
    if (!Array.isArray(s.allOf) || s.allOf.length !== 1 || extra.length > 0) {
      throw new SchemaError("allOf", path, `response_format schema: 'allOf' at ${path} is supported only with one schema and nothing beside it`);
    }
    return this.set(s, this.node(s.allOf[0], `${path}/allOf/0`));
  }

  /** The types a schema allows: its `type`, or those its keywords imply, or all. `number` covers `integer`. */
  private types(s: Json, path: string): TypeName[] {
    let types: TypeName[];
    if (s.type === undefined) {
      const implied = new Set(Object.keys(s).filter((k) => k in TYPE_KEYWORDS).map((k) => TYPE_KEYWORDS[k]));
      types = implied.size > 0 ? [...implied] : TYPES.filter((t) => t !== "integer");
    } else {
      const list = Array.isArray(s.type) ? s.type : [s.type];
      if (list.length === 0 || !list.every((t): t is TypeName => typeof t === "string" && (TYPES as readonly string[]).includes(t))) {
        throw new SchemaError("type", path, `response_format schema: 'type' at ${path} must be one of ${TYPES.join(", ")} or an array of them`);
      }
      types = [...new Set(list)];
      if (types.includes("number")) types = types.filter((t) => t !== "integer");
      for (const k of Object.keys(s)) {
        const t = TYPE_KEYWORDS[k];
        if (t && !types.includes(t)) throw new SchemaError(k, path, `response_format schema: '${k}' at ${path} applies to ${t}s, which 'type' excludes`);
      }
    }
    return types;
  }

  private typed(s: Json, t: TypeName, path: string, memo = true): ValueNode {
    const keep = <N extends ValueNode>(n: N): N => (memo ? this.set(s, n) : n);
    switch (t) {
      case "string": {
        const min = count(s, "minLength", path, 0), max = count(s, "maxLength", path, Infinity);
        if (min > max) throw new SchemaError("minLength", path, `response_format schema: 'minLength' (${min}) is more than 'maxLength' (${max}) at ${path}`);
        return keep({ kind: "string", id: newId(), min, max });
      }
      case "number": case "integer": return keep({ kind: "number", id: newId(), integer: t === "integer" });
      case "boolean": return keep(literal([true, false]));
      case "null": return keep(literal([null]));
      case "object": return this.object(s, path, keep);
      case "array": return this.array(s, path, keep);
    }
  }

  private object(s: Json, path: string, keep: (n: ObjectNode) => ObjectNode): ObjectNode {
    const node = keep({ kind: "object", id: newId(), props: [], firstRequired: new Int32Array(1), extra: null });
    const props = s.properties === undefined ? {} : s.properties;
    if (!isObject(props)) throw new SchemaError("properties", path, `response_format schema: 'properties' at ${path} must be an object`);
    const required = s.required === undefined ? [] : s.required;
    if (!Array.isArray(required) || !required.every((r) => typeof r === "string")) {
      throw new SchemaError("required", path, `response_format schema: 'required' at ${path} must be an array of property names`);
    }
    const req = new Set(required as string[]);
    const addl = s.additionalProperties;
    if (addl !== undefined && typeof addl !== "boolean" && !isObject(addl)) {
      throw new SchemaError("additionalProperties", path, `response_format schema: 'additionalProperties' at ${path} must be a boolean or a schema`);
    }
    const names = Object.keys(props);
    for (const r of req) {
      if (names.includes(r)) continue;
      if (addl === false) throw new SchemaError("required", path, `response_format schema: 'required' at ${path} lists '${r}', which 'additionalProperties': false forbids (it is not in 'properties')`);
      names.push(r); // required but not described: any value allowed by additionalProperties
    }
    node.props = names.map((name) => ({
      name, key: utf8(JSON.stringify(name)), required: req.has(name),
      node: name in props ? this.node(props[name], `${path}/properties/${escapePointer(name)}`) : addl === undefined || addl === true ? ANY : this.node(addl, `${path}/additionalProperties`),
    }));
    if (names.length === 0 && addl !== false) node.extra = addl === undefined || addl === true ? ANY : this.node(addl, `${path}/additionalProperties`);
    node.firstRequired = firstRequired(node.props);
    return node;
  }

  private array(s: Json, path: string, keep: (n: ArrayNode) => ArrayNode): ArrayNode {
    const node = keep({ kind: "array", id: newId(), prefix: [], items: ANY, min: count(s, "minItems", path, 0), max: count(s, "maxItems", path, Infinity) });
    if (node.min > node.max) throw new SchemaError("minItems", path, `response_format schema: 'minItems' (${node.min}) is more than 'maxItems' (${node.max}) at ${path}`);
    const schemaOrBool = (v: unknown, key: string): ValueNode | null => (v === false ? null : this.node(v, `${path}/${key}`));
    if (Array.isArray(s.items)) {
      // draft-07's tuple form: items is the prefix, additionalItems what follows
      if (s.prefixItems !== undefined) throw new SchemaError("prefixItems", path, `response_format schema: 'prefixItems' next to an array 'items' at ${path}`);
      node.prefix = s.items.map((x, i) => this.node(x, `${path}/items/${i}`));
      node.items = s.additionalItems === undefined ? ANY : schemaOrBool(s.additionalItems, "additionalItems");
    } else {
      if (s.additionalItems !== undefined) throw new SchemaError("additionalItems", path, `response_format schema: 'additionalItems' at ${path} needs an array 'items'`);
      if (s.prefixItems !== undefined) {
        if (!Array.isArray(s.prefixItems)) throw new SchemaError("prefixItems", path, `response_format schema: 'prefixItems' at ${path} must be an array of schemas`);
        node.prefix = s.prefixItems.map((x, i) => this.node(x, `${path}/prefixItems/${i}`));
      }
      node.items = s.items === undefined ? ANY : schemaOrBool(s.items, "items");
    }
    return node;
  }

  private enumNode(s: Json, path: string): ValueNode {
    const beside = Object.keys(s).filter((k) => !["enum", "const", "type"].includes(k) && !ANNOTATIONS.has(k));
    if (beside.length > 0) throw new SchemaError(beside[0], path, `response_format schema: '${beside[0]}' next to 'enum'/'const' at ${path} is not supported`);
    let values: unknown[];
    if (s.enum !== undefined) {
      if (!Array.isArray(s.enum) || s.enum.length === 0) throw new SchemaError("enum", path, `response_format schema: 'enum' at ${path} must be a non-empty array`);
      values = s.enum;
      if (s.const !== undefined) values = values.filter((v) => JSON.stringify(v) === JSON.stringify(s.const));
    } else values = [s.const];
    const types = s.type === undefined ? null : this.types({ type: s.type }, path);
    if (types) values = values.filter((v) => types.some((t) => hasType(v, t)));
    if (values.length === 0) throw new SchemaError(s.enum !== undefined ? "enum" : "const", path, `response_format schema: no value of 'enum'/'const' at ${path} matches its 'type'`);
    // scalars are matched as their JSON text; objects and arrays as structure, so whitespace may go between tokens
    const scalars = values.filter((v) => v === null || typeof v !== "object");
    const options = [...(scalars.length > 0 ? [literal(scalars)] : []), ...values.filter((v) => v !== null && typeof v === "object").map(constNode)];
    return options.length === 1 ? options[0] : { kind: "anyOf", id: newId(), options };
  }
}

/** A node that matches exactly one JSON value (an enum/const object or array: its keys in their order). */
function constNode(v: unknown): ValueNode {
  if (Array.isArray(v)) return { kind: "array", id: newId(), prefix: v.map(constNode), items: null, min: v.length, max: v.length };
  if (isObject(v)) {
    const props = Object.entries(v).map(([name, x]): PropSpec => ({ name, key: utf8(JSON.stringify(name)), node: constNode(x), required: true }));
    return { kind: "object", id: newId(), props, firstRequired: firstRequired(props), extra: null };
  }
  return literal([v]);
}

const TYPE_KEYWORDS_OF: Readonly<Record<TypeName, string[]>> = Object.fromEntries(
  TYPES.map((t) => [t, Object.keys(TYPE_KEYWORDS).filter((k) => TYPE_KEYWORDS[k] === t)]),
) as Record<TypeName, string[]>;

function hasType(v: unknown, t: TypeName): boolean {
  switch (t) {
    case "null": return v === null;
    case "boolean": return typeof v === "boolean";
    case "string": return typeof v === "string";
    case "integer": return typeof v === "number" && Number.isInteger(v);
    case "number": return typeof v === "number";
    case "array": return Array.isArray(v);
    case "object": return isObject(v);
  }
}

function count(s: Json, key: string, path: string, dflt: number): number {
  const v = s[key];
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new SchemaError(key, path, `response_format schema: '${key}' at ${path} must be a non-negative integer`);
  return v;
}

function firstRequired(props: readonly PropSpec[]): Int32Array {
  const f = new Int32Array(props.length + 1);
  f[props.length] = props.length;
  for (let i = props.length - 1; i >= 0; i--) f[i] = props[i].required ? i : f[i + 1];
  return f;
}

function escapePointer(name: string): string {
  return name.replace(/~/g, "~0").replace(/\//g, "~1");
}

/** A JSON pointer ("#/a/b") into the root schema. */
function pointer(root: unknown, ref: string): unknown {
  if (ref === "#") return root;
  if (!ref.startsWith("#/")) return undefined;
  let cur: unknown = root;
  for (const raw of ref.slice(2).split("/")) {
    const part = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
    if (Array.isArray(cur)) cur = cur[Number(part)];
    else if (isObject(cur)) cur = Object.hasOwn(cur, part) ? cur[part] : undefined;
    else return undefined;
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** Follow $refs to a value node. */
export function deref(n: ValueNode): Exclude<ValueNode, RefNode> {
  while (n.kind === "ref") n = n.target!;
  return n;
}

/**
 * Drop what can never be finished, so the automaton has no dead ends: a node is productive when some finite value
 * matches it (a recursion with a required self-reference has none). anyOf options and optional properties that
 * are not productive are removed; a node that must be generated and is not is an error.
 */
function prune(root: ValueNode, path = "#"): void {
  const all = new Set<ValueNode>();
  const stack: ValueNode[] = [root];
  while (stack.length) {
    const n = stack.pop()!;
    if (all.has(n)) continue;
    all.add(n);
    for (const c of children(n)) stack.push(c);
  }
  const ok = new Set<ValueNode>();
  for (let changed = true; changed;) {
    changed = false;
    for (const n of all) {
      if (ok.has(n) || !productive(n, ok)) continue;
      ok.add(n);
      changed = true;
    }
  }
  if (!ok.has(root)) throw new SchemaError("$ref", path, "response_format schema: no finite document matches it (a required recursion never ends)");
  for (const n of all) {
    if (!ok.has(n)) continue;
    if (n.kind === "anyOf") n.options = n.options.filter((o) => ok.has(o));
    else if (n.kind === "object") {
      n.props = n.props.filter((p) => p.required || ok.has(p.node));
      n.firstRequired = firstRequired(n.props);
      if (n.extra && !ok.has(n.extra)) n.extra = null;
    } else if (n.kind === "array") {
      if (n.items && !ok.has(n.items)) n.items = null;
      const reach = n.prefix.findIndex((p) => !ok.has(p));
      if (reach >= 0) {
        n.prefix = n.prefix.slice(0, reach);
        n.items = null;
      }
      if (n.items === null) n.max = Math.min(n.max, n.prefix.length);
    }
  }
}

function children(n: ValueNode): ValueNode[] {
  switch (n.kind) {
    case "object": return [...n.props.map((p) => p.node), ...(n.extra ? [n.extra] : [])];
    case "array": return [...n.prefix, ...(n.items ? [n.items] : [])];
    case "anyOf": return n.options;
    case "ref": return [n.target!];
    default: return [];
  }
}

function productive(n: ValueNode, ok: ReadonlySet<ValueNode>): boolean {
  switch (n.kind) {
    case "object": return n.props.every((p) => !p.required || ok.has(p.node));
    case "array": {
      // minItems items must be producible: the prefix up to there, then the item schema
      for (let i = 0; i < n.min; i++) {
        const item = i < n.prefix.length ? n.prefix[i] : n.items;
        if (!item || !ok.has(item)) return false;
      }
      return true;
    }
    case "anyOf": return n.options.some((o) => ok.has(o));
    case "ref": return ok.has(n.target!);
    default: return true;
  }
}

/** Compiled grammars by source text, most recently used last. */
const cache = new Map<string, JsonGrammar>();
/** Schemas kept compiled (each holds its node graph; mask caches are bounded separately, by bytes). */
export const GRAMMAR_CACHE_ENTRIES = 128;

function cached(source: string, build: () => ValueNode): JsonGrammar {
  const hit = cache.get(source);
  if (hit) {
    cache.delete(source);
    cache.set(source, hit);
    return hit;
  }
  const g: JsonGrammar = { root: build(), id: nextGrammarId++, source };
  cache.set(source, g);
  if (cache.size > GRAMMAR_CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
  return g;
}

/** response_format {"type": "json_object"}: any JSON object. */
export function jsonObjectGrammar(): JsonGrammar {
  return cached("json_object", () => ANY_OBJECT);
}

/**
 * response_format {"type": "json_schema"}: the schema compiled (once per distinct schema text; an LRU of
 * GRAMMAR_CACHE_ENTRIES). Throws SchemaError naming the keyword it cannot honour.
 */
export function jsonSchemaGrammar(schema: unknown): JsonGrammar {
  const text = JSON.stringify(schema);
  if (text === undefined) throw new SchemaError("", "#", "response_format schema: the schema must be a JSON object or boolean");
  return cached(`json_schema ${text}`, () => {
    const c = new Compiler(schema);
    const root = c.node(schema, "#");
    c.resolveRefs();
    prune(root);
    return root;
  });
}
