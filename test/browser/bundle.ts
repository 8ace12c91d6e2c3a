/**
 * Bundle a browser entry with esbuild: Node built-ins become empty modules (the browser paths never call them)
 * and the `webgpu` package (Dawn for Node) stays out, since browsers have navigator.gpu.
 */
import { build, type Plugin } from "esbuild";

const nodeStubs: Plugin = {
  name: "node-stubs",
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (a) => ({ path: a.path, namespace: "stub" }));
    b.onLoad({ filter: /.*/, namespace: "stub" }, () => ({ contents: "export default {}; export const existsSync = undefined, readFileSync = undefined, join = undefined;", loader: "js" }));
  },
};

export async function bundle(entry: string, outfile: string): Promise<number> {
  const r = await build({
    entryPoints: [entry], outfile, bundle: true, format: "esm", platform: "browser", target: "es2022",
    external: ["webgpu"], plugins: [nodeStubs], logLevel: "silent", metafile: true,
  });
  return Object.values(r.metafile.outputs).reduce((s, o) => s + o.bytes, 0);
}
