/**
 * The web page (issues 7, 17): a static Vite build of web/ that runs models/mla-brown in the browser, or a model
 * picked from local files or the hub.
 *
 * The engine's modules import node:* at the top level for their Node-only paths. node:fs and node:path become the
 * page's read-only file system over Blobs (src/shims/): the engine's loaders read picked files, cached downloads
 * and the bundled model through it, one tensor at a time. Every other `node:*` import, and the names the shims do
 * not provide, become stubs whose functions throw. The `webgpu` package (Dawn for Node) is replaced the same way:
 * browsers have navigator.gpu. The bundled model's files are served from the repository's models/ folder in dev
 * and copied into the build, so the page fetches them from its own origin.
 */
import { createReadStream, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const WEB = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(WEB, "..");
/** The model the page runs and the files it fetches. */
export const MODEL = "mla-brown";
export const MODEL_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"];
const STUB = "\0mla-stub:";
/** node:* modules the page implements (src/shims/); their other names stay stubs. */
const SHIMS: Record<string, string> = { "node:fs": join(WEB, "src", "shims", "fs.ts"), "node:path": join(WEB, "src", "shims", "path.ts") };
const SHIM = "mla-shim:";

/** Names a shim module exports (`export function|const|class name`). */
function shimExports(file: string): Set<string> {
  const text = readFileSync(file, "utf8");
  return new Set([...text.matchAll(/export\s+(?:async\s+)?(?:function|const|let|class)\s+(\w+)/g)].map((m) => m[1]));
}

/**
 * Names used from each node:* module anywhere under src/ (named imports, and `ns.name` after `import * as ns`): the
 * stubs export them all, since a browser's ES modules fail to link on a missing export.
 */
function nodeImports(): Map<string, Set<string>> {
  const names = new Map<string, Set<string>>();
  const files = readdirSync(join(ROOT, "src"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
  const re = /import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*"(node:[^"]+)"/g;
  const ns = /import\s*\*\s*as\s+(\w+)\s+from\s*"(node:[^"]+)"/g;
  for (const f of files) {
    const text = readFileSync(join(ROOT, "src", f), "utf8");
    for (const m of text.matchAll(ns)) {
      const set = names.get(m[2]) ?? new Set<string>();
      for (const use of text.matchAll(new RegExp(`\\b${m[1]}\\.(\\w+)`, "g"))) set.add(use[1]);
      names.set(m[2], set);
    }
    for (const m of text.matchAll(re)) {
      const set = names.get(m[2]) ?? new Set<string>();
      for (const part of m[1].split(",")) {
        const name = part.trim().replace(/^type\s+/, "").split(/\s+as\s+/)[0].trim();
        if (name) set.add(name);
      }
      names.set(m[2], set);
    }
  }
  return names;
}

function browserStubs(): Plugin {
  const names = nodeImports();
  return {
    name: "mla-browser-stubs",
    enforce: "pre",
    resolveId(id) {
      if (id.startsWith(SHIM)) return SHIMS[id.slice(SHIM.length)];
      if (id.startsWith("node:") || id === "webgpu") return STUB + id;
      return null;
    },
    load(id) {
      if (!id.startsWith(STUB)) return null;
      const mod = id.slice(STUB.length), shim = SHIMS[mod];
      const provided = shim ? shimExports(shim) : new Set<string>();
      const exports = [...(names.get(mod) ?? [])].filter((n) => !provided.has(n)).map((n) => `export const ${n} = missing(${JSON.stringify(n)});`);
      return [
        `function missing(name) { return function () { throw new Error(${JSON.stringify(mod)} + "." + name + " is not available in the browser"); }; }`,
        ...exports,
        ...(shim
          ? [`import * as shim from ${JSON.stringify(SHIM + mod)};`, `export * from ${JSON.stringify(SHIM + mod)};`, `export default shim;`]
          : [`export default {};`]),
      ].join("\n");
    },
  };
}

const TYPES: Record<string, string> = { json: "application/json", safetensors: "application/octet-stream" };

/** models/mla-brown at ./models/mla-brown/ on the page's own origin: served in dev, emitted into the build. */
function modelFiles(): Plugin {
  const dir = join(ROOT, "models", MODEL);
  return {
    name: "mla-model-files",
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        const path = decodeURIComponent((req.url ?? "").split("?")[0]);
        const m = path.match(/^\/models\/([^/]+)\/([^/]+)$/);
        if (!m || m[1] !== MODEL || !MODEL_FILES.includes(m[2])) return next();
        const file = join(dir, m[2]);
        res.writeHead(200, { "content-type": TYPES[m[2].split(".").pop()!], "content-length": statSync(file).size });
        createReadStream(file).pipe(res);
      });
    },
    generateBundle() {
      for (const f of MODEL_FILES) this.emitFile({ type: "asset", fileName: `models/${MODEL}/${f}`, source: readFileSync(join(dir, f)) });
    },
  };
}

export default defineConfig({
  root: WEB,
  base: "./",
  plugins: [browserStubs(), modelFiles()],
  optimizeDeps: { exclude: ["webgpu"] },
  server: { fs: { allow: [ROOT] } },
  build: { outDir: join(WEB, "dist"), emptyOutDir: true, target: "es2022", reportCompressedSize: false, chunkSizeWarningLimit: 2048 },
  logLevel: "warn",
});
