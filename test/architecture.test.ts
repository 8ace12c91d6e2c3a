// The layout docs/architecture.md describes, checked: no import cycles (type-only imports count: they tie files
// together as much as any), every import goes to the same layer or one below it, and every model_type goes
// through the family registry.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The layers, lowest first: a file may import its own layer or a lower one. */
const LAYERS = [
  ["errors.ts"],
  ["tensor"],
  ["io"],
  ["backends"],
  ["attention"],
  ["model"],
  ["tokenizer", "data"],
  ["generate"],
  ["train"],
  ["convert"],
  ["server"],
  ["cli"],
  ["index.ts"],
];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : n.endsWith(".ts") ? [p] : [];
  });
}

/** Relative imports and re-exports of a file (static, dynamic, type-only), resolved to .ts paths. */
function imports(file: string): string[] {
  const src = readFileSync(file, "utf8");
  const specs = [...src.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+"(\.[^"]+)"|import\(\s*"(\.[^"]+)"\s*\)/g)].map((m) => m[1] ?? m[2]);
  return specs.map((s) => {
    const p = normalize(join(dirname(file), s));
    return p.endsWith(".js") ? p.slice(0, -3) + ".ts" : p.endsWith(".ts") ? p : `${p}.ts`;
  });
}

/** The strongly connected components of more than one file (or a file importing itself): the cycles. */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [], on = new Set<string>(), out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc);
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

function graphOf(dir: string): Map<string, string[]> {
  return new Map(files(join(ROOT, dir)).map((f) => [f, imports(f)]));
}

test("no import cycles in src/ or assembly/", () => {
  for (const dir of ["src", "assembly"]) {
    const g = graphOf(dir);
    assert.ok(g.size > (dir === "src" ? 100 : 1), `${dir}: read ${g.size} files`);
    const found = cycles(g).map((c) => c.map((f) => relative(ROOT, f)).sort().join(" <-> "));
    assert.deepEqual(found, [], `${dir}: import cycles`);
  }
  // the check can fail: a cycle made up here is found
  const a = join(ROOT, "src/a.ts"), b = join(ROOT, "src/b.ts");
  assert.equal(cycles(new Map([[a, [b]], [b, [a]]])).length, 1);
});

test("every import goes to the same layer or a lower one (tensor -> io -> backends -> attention -> model -> generate -> server/cli)", () => {
  const layerOf = (file: string): number => {
    const top = relative(join(ROOT, "src"), file).split("/")[0];
    const i = LAYERS.findIndex((l) => l.includes(top));
    assert.ok(i >= 0, `${relative(ROOT, file)} is in no layer: add its folder to LAYERS and docs/architecture.md`);
    return i;
  };
  const upward: string[] = [];
  for (const [file, deps] of graphOf("src")) {
    for (const d of deps) if (layerOf(d) > layerOf(file)) upward.push(`${relative(ROOT, file)} -> ${relative(ROOT, d)}`);
  }
  assert.deepEqual(upward, [], "imports that reach up a layer");
  // backends are kernels only: they know nothing of checkpoints or models
  for (const [file, deps] of graphOf("src/backends")) {
    for (const d of deps) assert.ok(!/src\/(io|model|attention)\//.test(d), `${relative(ROOT, file)} imports ${relative(ROOT, d)}`);
  }
});

test("model_type is read in the family registry only", () => {
  const offenders: string[] = [];
  for (const f of files(join(ROOT, "src"))) {
    if (f.includes("/model/families/")) continue;
    const src = readFileSync(f, "utf8");
    // a branch on a family name: modelType === "deepseek_v3", c.model_type === "llama", ...
    if (/(modelType|model_type)\s*[!=]==\s*"/.test(src)) offenders.push(relative(ROOT, f));
  }
  assert.deepEqual(offenders, [], "files that switch on model_type instead of asking src/model/families");
});
