/**
 * Named kernel parameters. Each WebGPU kernel declares its uniform block once, as an ordered set of named fields
 * (u32, f32, or bool), and both sides come from that one declaration: the WGSL side is a generated `struct Params`
 * bound as the uniform `P` (shaders read P.T, P.eps, ...), and the TypeScript side passes an object with exactly
 * those names, which the layout writes into the dispatch's uniform slot in field order, floats bit-cast.
 *
 * bool fields are u32 in WGSL (a uniform buffer cannot hold bool): 1 for true, 0 for false, tested with `!= 0u`.
 */

export type ParamType = "u32" | "f32" | "bool";
export type ParamFields = { readonly [name: string]: ParamType };

/** The values of a layout's fields, by name: numbers, booleans for bool fields. */
export type ParamValues<F extends ParamFields> = { readonly [K in keyof F]: F[K] extends "bool" ? boolean : number };

/** Words a dispatch's parameters may fill: the 64 bytes bound at the start of its uniform slot. */
export const PARAM_WORDS = 16;

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
/** The bits of x as an f32, as a u32. */
export function f32bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

export class ParamLayout<F extends ParamFields> {
  /** Field names in order: name i is word i of the slot. */
  readonly names: readonly (keyof F & string)[];
  private readonly types: readonly ParamType[];
  /** WGSL: the struct and its binding (group 0, binding 0, as `P`). */
  readonly wgsl: string;

  constructor(readonly fields: F) {
    this.names = Object.keys(fields);
    this.types = this.names.map((n) => fields[n]);
    if (this.names.length > PARAM_WORDS) throw new Error(`webgpu: ${this.names.length} kernel parameters (max ${PARAM_WORDS})`);
    // names become WGSL struct members (and a name like "0" would move to the front of Object.keys)
    for (const n of this.names) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(n)) throw new Error(`webgpu: kernel parameter name ${JSON.stringify(n)}`);
    const members = this.names.map((n, i) => `  ${n}: ${this.types[i] === "f32" ? "f32" : "u32"},\n`).join("");
    this.wgsl = `\nstruct Params {\n${members}};\n@group(0) @binding(0) var<uniform> P: Params;\n`;
  }

  /** Write `values` into `words` from word `at` on, in field order. */
  write(values: ParamValues<F>, words: Uint32Array, at: number): void {
    const names = this.names, types = this.types;
    for (let i = 0; i < names.length; i++) {
      const v = values[names[i]], t = types[i];
      if (v === undefined) throw new Error(`webgpu: kernel parameter ${names[i]} is missing`); // a JavaScript caller's slip
      words[at + i] = t === "u32" ? (v as number) : t === "f32" ? f32bits(v as number) : v ? 1 : 0;
    }
  }
}

/** A parameter layout; the fields' order is the order of the words. */
export function layout<const F extends ParamFields>(fields: F): ParamLayout<F> {
  return new ParamLayout(fields);
}

/** The values type of a layout. */
export type ParamsOf<L> = L extends ParamLayout<infer F> ? ParamValues<F> : never;

/** A kernel: its parameter layout and its WGSL source (the layout's struct first), made when a pipeline is. */
export interface Kernel<F extends ParamFields> {
  readonly params: ParamLayout<F>;
  readonly source: () => string;
}

/** A kernel from a layout and the shader code after the header (which reads the parameters as P.name). */
export function kernel<F extends ParamFields>(params: ParamLayout<F>, code: () => string): Kernel<F> {
  return { params, source: () => params.wgsl + code() };
}
