/**
 * A byte-level pushdown automaton for JSON documents of a compiled schema (./schema.ts). The state is a stack of
 * immutable frames (a linked list through `parent`), so stepping a byte makes at most one new frame and the states
 * before it stay valid: the mask search (./constraint.ts) walks the token trie from one state without copying.
 * Where a schema leaves a choice open (anyOf, an enum value that is a prefix of another) a state is a small set of
 * stacks, as in an NPDA; all but one usually die within a byte or two.
 *
 * Bytes, not characters: tokens end inside UTF-8 sequences, so a string frame validates UTF-8 itself (no overlong
 * forms, no surrogates, nothing past U+10FFFF), and a document is valid UTF-8 whenever it is complete.
 * Whitespace between a document's tokens is bounded as llama.cpp's JSON grammar bounds it (nothing, one space, or a
 * newline and up to 20 spaces or tabs), so a model cannot pad a document forever; none before or after it.
 */
import { deref, type ArrayNode, type LiteralNode, type ObjectNode, type StringNode, type ValueNode } from "./schema.js";

const ROOT = 0, OBJ = 1, ARR = 2, STR = 3, NUM = 4, LIT = 5;

// object phases; the frame's a: the next property's index (listed keys; 0 with free keys)
const O_OPEN = 0, O_KEY = 1, O_AFTER_KEY = 2, O_AFTER_COLON = 3, O_AFTER_VALUE = 4, O_COMMA = 5;
// array phases; a: items so far
const A_OPEN = 0, A_AFTER_VALUE = 1, A_COMMA = 2;
// string phases; a: characters so far
const S_NORMAL = 0, S_ESC = 1, S_HEX = 2, S_UTF8 = 3, S_SURR_BS = 4, S_SURR_U = 5, S_HEX_LO = 6;
// number phases; a: digits in the current run
const N_MINUS = 0, N_ZERO = 1, N_INT = 2, N_DOT = 3, N_FRAC = 4, N_EXP = 5, N_EXP_SIGN = 6, N_EXP_DIGITS = 7;

/** Digits before the point and after it (15 significant digits survive a double), and in the exponent (no 1e999). */
export const MAX_INT_DIGITS = 15, MAX_FRAC_DIGITS = 15, MAX_EXP_DIGITS = 2;
/** Spaces or tabs after a newline between tokens. */
export const MAX_INDENT = 20;

/** An object key where any key may appear. */
const KEY_STRING: StringNode = { kind: "string", id: 0, min: 0, max: Infinity };

/**
 * One frame of the stack. One class with small integer fields (their meaning depends on `kind`), so the hot
 * `step` sees one object shape.
 */
export class Frame {
  private cachedKey: string | null = null;

  constructor(
    readonly kind: number, readonly node: ValueNode, readonly phase: number,
    readonly a: number, readonly b: number, readonly c: number, readonly ws: number,
    /** Where control returns when this value is complete (the enclosing frame, in its after-value phase). */
    readonly parent: Frame | null,
  ) {}

  /** The whole stack as a string: equal keys accept the same byte strings (masks are cached by it). */
  get key(): string {
    if (this.cachedKey === null) {
      const own = `${this.kind}.${this.node.id}.${this.phase}.${this.a}.${this.b}.${this.c}.${this.ws}`;
      this.cachedKey = this.parent ? `${own}<${this.parent.key}` : own;
    }
    return this.cachedKey;
  }
}

/**
 * A set of stacks (usually one): items[0 .. n). A reusable buffer, so the mask search steps bytes without
 * allocating arrays.
 */
export class States {
  items: Frame[] = [];
  n = 0;

  push(f: Frame): void {
    this.items[this.n++] = f;
  }

  clear(): this {
    this.n = 0;
    return this;
  }

  /** A copy holding only the stacks (for keeping past the next clear). */
  copy(): States {
    const c = new States();
    c.items = this.items.slice(0, this.n);
    c.n = this.n;
    return c;
  }
}

/** The state before the first byte of a document matching `root`. */
export function initialStates(root: ValueNode): States {
  const s = new States();
  s.push(new Frame(ROOT, root, 0, 0, 0, 0, 0, null));
  return s;
}

/** The states after byte x, appended to `out` (which must be a different buffer; none when x cannot come next). */
export function advance(states: States, x: number, out: States): void {
  for (let i = 0; i < states.n; i++) step(states.items[i], x, out);
  if (out.n > 1) dedupe(out);
}

/** Whether the bytes so far are a whole document (so an end-of-sequence token may come now). */
export function canEnd(states: States): boolean {
  for (let i = 0; i < states.n; i++) if (frameCanEnd(states.items[i])) return true;
  return false;
}

export function statesKey(states: States): string {
  return states.n === 1 ? states.items[0].key : states.items.slice(0, states.n).map((s) => s.key).sort().join("|");
}

/**
 * Inside a string between characters: how many more characters it may take (Infinity when unbounded); -1 in any
 * other state. There, a token of plain characters (no quote, backslash or control byte, whole UTF-8) just extends
 * the string, which the mask search uses to skip most of the vocabulary.
 */
export function plainStringRoom(states: States): number {
  if (states.n !== 1) return -1;
  const s = states.items[0];
  if (s.kind !== STR || s.phase !== S_NORMAL) return -1;
  const n = s.node as StringNode;
  return n.max === Infinity ? Infinity : n.max - s.a;
}

function dedupe(out: States): void {
  const seen = new Set<string>();
  let w = 0;
  for (let r = 0; r < out.n; r++) {
    const k = out.items[r].key;
    if (seen.has(k)) continue;
    seen.add(k);
    out.items[w++] = out.items[r];
  }
  out.n = w;
}

/** Whitespace state after byte x, or -1: 0 none yet, 1 after one space, 2 + n after a newline and n indents. */
function wsStep(ws: number, x: number): number {
  if (ws === 0) return x === 0x20 ? 1 : x === 0x0a ? 2 : -1;
  if (ws >= 2 && ws < 2 + MAX_INDENT && (x === 0x20 || x === 0x09)) return ws + 1;
  return -1;
}

function frameCanEnd(f: Frame): boolean {
  switch (f.kind) {
    case ROOT: return f.phase === 1;
    case NUM: return (f.phase === N_ZERO || f.phase === N_INT || f.phase === N_FRAC || f.phase === N_EXP_DIGITS) && frameCanEnd(f.parent!);
    case LIT: return (f.node as LiteralNode).options[f.a].length === f.c && frameCanEnd(f.parent!);
    default: return false;
  }
}

function step(f: Frame, x: number, out: States): void {
  switch (f.kind) {
    case ROOT: return stepRoot(f, x, out);
    case OBJ: return stepObject(f, x, out);
    case ARR: return stepArray(f, x, out);
    case STR: return stepString(f, x, out);
    case NUM: return stepNumber(f, x, out);
    case LIT: return stepLiteral(f, x, out);
  }
}

/** The document: its value, then nothing (no whitespace before or after it, so a complete document ends at once). */
function stepRoot(f: Frame, x: number, out: States): void {
  if (f.phase === 0) startValue(f.node, x, new Frame(ROOT, f.node, 1, 0, 0, 0, 0, null), out);
}

/** The first byte of a value of `node`, which returns to `cont` when complete. */
function startValue(node: ValueNode, x: number, cont: Frame, out: States): void {
  const n = deref(node);
  switch (n.kind) {
    case "object":
      if (x === 0x7b) out.push(new Frame(OBJ, n, O_OPEN, 0, 0, 0, 0, cont));
      return;
    case "array":
      if (x === 0x5b) out.push(new Frame(ARR, n, A_OPEN, 0, 0, 0, 0, cont));
      return;
    case "string":
      if (x === 0x22) out.push(new Frame(STR, n, S_NORMAL, 0, 0, 0, 0, cont));
      return;
    case "number":
      if (x === 0x2d) out.push(new Frame(NUM, n, N_MINUS, 0, 0, 0, 0, cont));
      else if (x === 0x30) out.push(new Frame(NUM, n, N_ZERO, 1, 0, 0, 0, cont));
      else if (x > 0x30 && x <= 0x39) out.push(new Frame(NUM, n, N_INT, 1, 0, 0, 0, cont));
      return;
    case "literal":
      literalByte(n, 0, n.options.length, 0, x, cont, out);
      return;
    case "anyOf":
      for (const o of n.options) startValue(o, x, cont, out);
      return;
  }
}

function stepObject(f: Frame, x: number, out: States): void {
  const n = f.node as ObjectNode, props = n.props, free = props.length === 0;
  const closeOk = free || n.firstRequired[f.a] === props.length;
  switch (f.phase) {
    case O_OPEN: case O_COMMA:
      if (x === 0x22) {
        if (free) {
          if (n.extra) out.push(new Frame(STR, KEY_STRING, S_NORMAL, 0, 0, 0, 0, new Frame(OBJ, n, O_AFTER_KEY, 0, -1, 0, 0, f.parent)));
        } else if (f.a < props.length) out.push(new Frame(OBJ, n, O_KEY, f.a, f.a, 1, 0, f.parent));
      } else if (x === 0x7d && f.phase === O_OPEN && closeOk) out.push(f.parent!);
      else objectSpace(f, x, out);
      return;
    case O_KEY: return keyByte(f, n, x, out);
    case O_AFTER_KEY:
      if (x === 0x3a) out.push(new Frame(OBJ, n, O_AFTER_COLON, f.a, f.b, 0, 0, f.parent));
      return;
    case O_AFTER_COLON: {
      const w = wsStep(f.ws, x);
      if (w >= 0) out.push(new Frame(OBJ, n, O_AFTER_COLON, f.a, f.b, 0, w, f.parent));
      // free keys keep no count, so their states repeat
      else if (free) startValue(n.extra!, x, new Frame(OBJ, n, O_AFTER_VALUE, 0, 0, 0, 0, f.parent), out);
      else startValue(props[f.b].node, x, new Frame(OBJ, n, O_AFTER_VALUE, f.b + 1, 0, 0, 0, f.parent), out);
      return;
    }
    case O_AFTER_VALUE:
      if (x === 0x2c) {
        if (free || f.a < props.length) out.push(new Frame(OBJ, n, O_COMMA, f.a, 0, 0, 0, f.parent));
      } else if (x === 0x7d) {
        if (closeOk) out.push(f.parent!);
      } else objectSpace(f, x, out);
      return;
  }
}

function objectSpace(f: Frame, x: number, out: States): void {
  const w = wsStep(f.ws, x);
  if (w >= 0) out.push(new Frame(OBJ, f.node, f.phase, f.a, f.b, f.c, w, f.parent));
}

/**
 * A byte of a listed key. The candidates are the properties from `a` up to the first required one (keys come in
 * the schema's order, optional ones may be skipped); b is the first candidate still matching the c bytes read.
 */
function keyByte(f: Frame, n: ObjectNode, x: number, out: States): void {
  const props = n.props, last = Math.min(n.firstRequired[f.a], props.length - 1), seen = props[f.b].key, c = f.c;
  for (let j = f.b; j <= last; j++) {
    const k = props[j].key;
    if (k.length <= c || k[c] !== x || !samePrefix(k, seen, c)) continue;
    // the closing quote ends exactly one key (a quote inside a key is escaped)
    out.push(k.length === c + 1 ? new Frame(OBJ, n, O_AFTER_KEY, f.a, j, 0, 0, f.parent) : new Frame(OBJ, n, O_KEY, f.a, j, c + 1, 0, f.parent));
    return;
  }
}

function samePrefix(a: Uint8Array, b: Uint8Array, n: number): boolean {
  if (a === b) return true;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Items so far, kept at max(minItems, prefix) once past it when there is no maxItems: the count then no longer
 * changes what may follow, so states (and their cached masks) repeat.
 */
function itemCount(n: ArrayNode, i: number): number {
  return n.max === Infinity ? Math.min(i, Math.max(n.min, n.prefix.length)) : i;
}

function itemNode(n: ArrayNode, i: number): ValueNode {
  return i < n.prefix.length ? n.prefix[i] : n.items!;
}

function stepArray(f: Frame, x: number, out: States): void {
  const n = f.node as ArrayNode;
  const w = wsStep(f.ws, x);
  if (w >= 0) {
    out.push(new Frame(ARR, n, f.phase, f.a, 0, 0, w, f.parent));
    return;
  }
  const most = n.items ? n.max : Math.min(n.max, n.prefix.length);
  switch (f.phase) {
    case A_OPEN:
      if (x === 0x5d) {
        if (n.min === 0) out.push(f.parent!);
      } else if (most > 0) startValue(itemNode(n, 0), x, new Frame(ARR, n, A_AFTER_VALUE, itemCount(n, 1), 0, 0, 0, f.parent), out);
      return;
    case A_AFTER_VALUE:
      if (x === 0x2c) {
        if (f.a < most) out.push(new Frame(ARR, n, A_COMMA, f.a, 0, 0, 0, f.parent));
      } else if (x === 0x5d && f.a >= n.min) out.push(f.parent!);
      return;
    case A_COMMA:
      startValue(itemNode(n, f.a), x, new Frame(ARR, n, A_AFTER_VALUE, itemCount(n, f.a + 1), 0, 0, 0, f.parent), out);
      return;
  }
}

function hexDigit(x: number): number {
  if (x >= 0x30 && x <= 0x39) return x - 0x30;
  if (x >= 0x61 && x <= 0x66) return x - 0x61 + 10;
  if (x >= 0x41 && x <= 0x46) return x - 0x41 + 10;
  return -1;
}

/** Characters of a string after one more, kept at minLength once past it when there is no maxLength (the rest is all alike). */
function charCount(n: StringNode, len: number): number {
  return n.max === Infinity ? Math.min(len + 1, n.min) : len + 1;
}

/** A string frame in a new phase (the same frame object when nothing changes: no allocation inside string bodies). */
function stringTo(f: Frame, phase: number, a: number, b: number, c: number, out: States): void {
  out.push(phase === S_NORMAL && f.phase === S_NORMAL && a === f.a ? f : new Frame(STR, f.node, phase, a, b, c, 0, f.parent));
}

function stepString(f: Frame, x: number, out: States): void {
  const n = f.node as StringNode;
  switch (f.phase) {
    case S_NORMAL: {
      if (x === 0x22) {
        if (f.a >= n.min) out.push(f.parent!);
        return;
      }
      if (x < 0x20 || f.a >= n.max) return; // control characters must be escaped; no room for another character
      if (x === 0x5c) return stringTo(f, S_ESC, f.a, 0, 0, out);
      if (x < 0x80) return stringTo(f, S_NORMAL, charCount(n, f.a), 0, 0, out);
      // a UTF-8 lead byte: how many continuation bytes follow, and the range of the first (Unicode table 3-7)
      let need: number, lo = 0x80, hi = 0xbf;
      if (x >= 0xc2 && x <= 0xdf) need = 1;
      else if (x >= 0xe0 && x <= 0xef) {
        need = 2;
        if (x === 0xe0) lo = 0xa0;
        else if (x === 0xed) hi = 0x9f; // no UTF-16 surrogates
      } else if (x >= 0xf0 && x <= 0xf4) {
        need = 3;
        if (x === 0xf0) lo = 0x90;
        else if (x === 0xf4) hi = 0x8f; // nothing past U+10FFFF
      } else return;
      return stringTo(f, S_UTF8, charCount(n, f.a), need, (lo << 8) | hi, out);
    }
    case S_UTF8:
      if (x < f.c >> 8 || x > (f.c & 0xff)) return;
      return f.b === 1 ? stringTo(f, S_NORMAL, f.a, 0, 0, out) : stringTo(f, S_UTF8, f.a, f.b - 1, 0x80bf, out);
    case S_ESC:
      if (x === 0x75) return stringTo(f, S_HEX, f.a, 0, 0, out);
      if (x === 0x22 || x === 0x5c || x === 0x2f || x === 0x62 || x === 0x66 || x === 0x6e || x === 0x72 || x === 0x74) {
        return stringTo(f, S_NORMAL, charCount(n, f.a), 0, 0, out);
      }
      return;
    case S_HEX: case S_HEX_LO: {
      const d = hexDigit(x);
      if (d < 0) return;
      const k = f.b + 1;
      if (k === 1) return stringTo(f, f.phase, f.a, 1, d, out);
      if (k === 2) {
        const top = f.c * 16 + d; // the code unit's high byte decides what it is
        // a low surrogate alone, or a high one not followed by a low one, is not text
        if ((f.phase === S_HEX_LO) !== (top >= 0xdc && top <= 0xdf)) return;
        return stringTo(f, f.phase, f.a, 2, top >= 0xd8 && top <= 0xdb ? 1 : 0, out);
      }
      if (k === 3) return stringTo(f, f.phase, f.a, 3, f.c, out);
      // the fourth digit: a high surrogate waits for its low half, which makes one character with it
      return f.c === 1 ? stringTo(f, S_SURR_BS, f.a, 0, 0, out) : stringTo(f, S_NORMAL, charCount(n, f.a), 0, 0, out);
    }
    case S_SURR_BS:
      if (x === 0x5c) stringTo(f, S_SURR_U, f.a, 0, 0, out);
      return;
    case S_SURR_U:
      if (x === 0x75) stringTo(f, S_HEX_LO, f.a, 0, 0, out);
      return;
  }
}

function isDigit(x: number): boolean {
  return x >= 0x30 && x <= 0x39;
}

function toNumber(f: Frame, phase: number, a: number, out: States): void {
  out.push(new Frame(NUM, f.node, phase, a, 0, 0, 0, f.parent));
}

/** '.' or an exponent after the integer part (not in integers); false when x is neither. */
function fractionOrExponent(f: Frame, x: number, out: States): boolean {
  if ((f.node as { integer: boolean }).integer) return false;
  if (x === 0x2e) toNumber(f, N_DOT, 0, out);
  else if (x === 0x65 || x === 0x45) toNumber(f, N_EXP, 0, out);
  else return false;
  return true;
}

/** A byte of a number; a byte a number cannot take ends it (where it may end) and goes to what follows. */
function stepNumber(f: Frame, x: number, out: States): void {
  switch (f.phase) {
    case N_MINUS:
      if (x === 0x30) toNumber(f, N_ZERO, 1, out);
      else if (isDigit(x)) toNumber(f, N_INT, 1, out);
      return;
    case N_ZERO:
      if (!fractionOrExponent(f, x, out)) step(f.parent!, x, out);
      return;
    case N_INT:
      if (isDigit(x)) {
        if (f.a < MAX_INT_DIGITS) toNumber(f, N_INT, f.a + 1, out);
      } else if (!fractionOrExponent(f, x, out)) step(f.parent!, x, out);
      return;
    case N_DOT:
      if (isDigit(x)) toNumber(f, N_FRAC, 1, out);
      return;
    case N_FRAC:
      if (isDigit(x)) {
        if (f.a < MAX_FRAC_DIGITS) toNumber(f, N_FRAC, f.a + 1, out);
      } else if (x === 0x65 || x === 0x45) toNumber(f, N_EXP, 0, out);
      else step(f.parent!, x, out);
      return;
    case N_EXP:
      if (x === 0x2b || x === 0x2d) toNumber(f, N_EXP_SIGN, 0, out);
      else if (isDigit(x)) toNumber(f, N_EXP_DIGITS, 1, out);
      return;
    case N_EXP_SIGN:
      if (isDigit(x)) toNumber(f, N_EXP_DIGITS, 1, out);
      return;
    case N_EXP_DIGITS:
      if (isDigit(x)) {
        if (f.a < MAX_EXP_DIGITS) toNumber(f, N_EXP_DIGITS, f.a + 1, out);
      } else step(f.parent!, x, out);
      return;
  }
}

/**
 * A byte of an enum/const value: a = first, b = end of the range of options (sorted, so those sharing the c bytes
 * read are adjacent) still matching. An option that is whole ends the value: by itself when no longer option goes
 * on, else at the next byte the options cannot take (as a number ends).
 */
function stepLiteral(f: Frame, x: number, out: States): void {
  const n = f.node as LiteralNode;
  literalByte(n, f.a, f.b, f.c, x, f.parent!, out);
  if (n.options[f.a].length === f.c) step(f.parent!, x, out);
}

function literalByte(n: LiteralNode, lo: number, hi: number, c: number, x: number, cont: Frame, out: States): void {
  const opts = n.options;
  let first = -1, end = -1;
  for (let i = lo; i < hi; i++) {
    const o = opts[i];
    if (o.length > c && o[c] === x) {
      if (first < 0) first = i;
      end = i + 1;
    } else if (first >= 0) break;
  }
  if (first < 0) return;
  if (end - first === 1 && opts[first].length === c + 1) out.push(cont);
  else out.push(new Frame(LIT, n, 0, first, end, c + 1, 0, cont));
}
