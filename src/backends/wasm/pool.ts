import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import { MlaError } from "../../errors.js";
import { SCRATCH, type KernelArgs, type KernelSpec } from "./kernels.js";

/**
 * A persistent pool of worker threads that run wasm kernels on the shared memory.
 *
 * Every worker instantiates the same compiled module against the same `WebAssembly.Memory`. A job is dispatched
 * through a control block inside that memory: the main thread writes the kernel id and arguments, then bumps each
 * worker's sequence word with Atomics.store + Atomics.notify; workers park in Atomics.wait (after a short spin) and
 * answer through their own "done" word. No postMessage per call. The main thread runs its own share of the rows
 * and then waits for the others (Atomics.wait is allowed on Node's main thread).
 *
 * Rows are handed out in chunks from a shared counter (Atomics.add), several per thread, so a thread that is
 * slowed down (a busy neighbour on a shared machine) takes fewer chunks instead of holding everyone up.
 *
 * Kernels are named by their descriptions (kernels.ts); the pool turns a call's named arguments into the kernel's
 * positional list once, on the calling thread, and every thread then fills in its own row range and scratch pointer.
 *
 * Banks: the pool may serve several memories (the backend's banks, each under wasm32's 4 GiB, see memory.ts).
 * Every thread instantiates the module once per bank; a job names the bank whose instance runs it, so its pointers
 * are offsets into that bank's memory. `addBank` hands a new memory to every worker synchronously: through a
 * MessagePort that the worker drains with receiveMessageOnPort when the control block tells it to (it never
 * returns to its event loop, so an ordinary message would wait forever).
 *
 * Control block layout (bytes from `ctrl` in bank 0's memory, which must be 64-aligned):
 *   0   i32 kernel id (-1: shut down, -2: take a new bank)   4 i32 argument count     8 i32 position of r0
 *   12  i32 next chunk (shared counter)   16 i32 rows per chunk    20 i32 rows in all
 *   24  i32 position of r1                28 i32 position of the scratch pointer (-1: none)
 *   32  i32 bank
 *   64  f64 args[MAX_ARGS] (every argument in order; the r0, r1 and scratch slots are each thread's own)
 *   ARGS_END + 128*i   worker i: i32 seq, i32 r0, i32 r1, i32 scratch pointer
 *   ARGS_END + 128*i + 64            i32 done seq, i32 error flag
 */
export const MAX_ARGS = 24;
const ARGS_OFF = 64;
const SLOTS_OFF = ARGS_OFF + MAX_ARGS * 8;
const SLOT_BYTES = 128;
export const MAX_WORKERS = 15;
/** Chunks of rows per thread and call: enough for a slowed thread to shed work, few enough to keep calls cheap. */
const CHUNKS_PER_THREAD = 4;

/** Bytes of control block a pool of `threads` threads needs. */
export function controlBlockBytes(threads: number): number {
  return SLOTS_OFF + SLOT_BYTES * Math.max(0, threads - 1);
}

/** The worker: plain JS, evaluated (works the same from tsx sources and compiled dist/). */
const WORKER_SOURCE = `
"use strict";
// dynamic import: this code runs as CommonJS, or as ESM when the process was started with --input-type=module
import("node:worker_threads").then(({ workerData, parentPort, receiveMessageOnPort }) => {
  const { module, memories, ctrl, index, kernels, spinMs, port } = workerData;
  const banks = [];
  const addBank = (memory) => {
    const inst = new WebAssembly.Instance(module, { env: { memory } });
    banks.push(kernels.map((n) => inst.exports[n]));
  };
  memories.forEach(addBank);
  const i32 = new Int32Array(memories[0].buffer, ctrl, ${SLOTS_OFF >> 2} + ${(SLOT_BYTES >> 2) * MAX_WORKERS});
  const f64 = new Float64Array(memories[0].buffer, ctrl + ${ARGS_OFF}, ${MAX_ARGS});
  const slot = (${SLOTS_OFF} + ${SLOT_BYTES} * index) >> 2;
  const done = slot + 16;
  let seq = Atomics.load(i32, slot);
  parentPort.postMessage("ready");
  for (;;) {
    let s = Atomics.load(i32, slot);
    if (s === seq && spinMs > 0) {
      const t0 = performance.now();
      do {
        for (let k = 0; k < 64 && s === seq; k++) s = Atomics.load(i32, slot);
      } while (s === seq && performance.now() - t0 < spinMs);
    }
    while (s === seq) {
      Atomics.wait(i32, slot, seq);
      s = Atomics.load(i32, slot);
    }
    seq = s;
    const kid = i32[0];
    if (kid === -1) {
      Atomics.store(i32, done, seq);
      Atomics.notify(i32, done);
      break;
    }
    try {
      if (kid === -2) {
        const m = receiveMessageOnPort(port);
        if (!m) throw new Error("no memory was sent for the new bank");
        addBank(m.message);
        Atomics.store(i32, done, seq);
        Atomics.notify(i32, done);
        continue;
      }
      const fns = banks[i32[8]];
      const n = i32[1], p0 = i32[2], p1 = i32[6], ps = i32[7], chunk = i32[4], rows = i32[5];
      const a = [];
      for (let j = 0; j < n; j++) a.push(f64[j]);
      if (ps >= 0) a[ps] = i32[slot + 3];
      // take chunks of rows until none are left (a thread slowed by a neighbour simply takes fewer)
      for (let c = Atomics.add(i32, 3, 1); c * chunk < rows; c = Atomics.add(i32, 3, 1)) {
        a[p0] = c * chunk;
        a[p1] = Math.min(rows, (c + 1) * chunk);
        fns[kid].apply(null, a);
      }
    } catch (e) {
      Atomics.store(i32, done + 1, 1);
      parentPort.postMessage(String((e && e.stack) || e));
    }
    Atomics.store(i32, done, seq);
    Atomics.notify(i32, done);
  }
});
`;

export interface PoolOptions {
  /** Total threads including the main thread (1 = no workers). */
  readonly threads: number;
  /**
   * Microseconds a thread busy-waits before parking in Atomics.wait: workers after a job (so back-to-back kernels
   * skip the futex wake-up: 10-75 us measured on a 2-vCPU VM), and 4x that for the main thread waiting for the
   * workers. Default 50; 0 parks at once (better when other processes keep the cores busy).
   */
  readonly spinMicros?: number;
}

/** Default thread count: the machine's parallelism, at most 8. */
export function defaultThreads(avail: number): number {
  return Math.max(1, Math.min(8, avail));
}

/** How the pool calls one kernel: where its arguments, row range and scratch pointer go in its positional list. */
interface Plan {
  readonly id: number;
  readonly spec: KernelSpec;
  /** Per position, the argument's name; null for the range and scratch slots. */
  readonly names: readonly (string | null)[];
  readonly r0: number;
  readonly r1: number;
  /** Position of the scratch pointer; -1 when the kernel takes none. */
  readonly scratchAt: number;
}

/** Check a description against the export it names and work out where everything goes. */
function plan(id: number, spec: KernelSpec, f: unknown): Plan {
  if (typeof f !== "function") throw new MlaError(`wasm module has no export ${spec.name}`);
  const { name, params, range } = spec;
  // a wasm function's length is its parameter count: the AssemblyScript signature and the description must agree
  if (f.length !== params.length) {
    throw new MlaError(`wasm export ${name} takes ${f.length} parameters, but its description (src/backends/wasm/kernels.ts) ` +
      `lists ${params.length}: ${params.join(", ")}. Rebuild the kernels (npm run asbuild) or update the description`);
  }
  if (params.length > MAX_ARGS) throw new MlaError(`kernel ${name} has ${params.length} parameters (max ${MAX_ARGS})`);
  const r0 = params.indexOf(range[0]), r1 = params.indexOf(range[1]), scratchAt = params.indexOf(SCRATCH);
  if (r0 < 0 || r1 < 0 || r0 === r1) throw new MlaError(`kernel ${name}: its row range (${range.join(", ")}) must be two of its parameters`);
  const names = params.map((p, j) => (j === r0 || j === r1 || j === scratchAt ? null : p));
  return { id, spec, names, r0, r1, scratchAt };
}

export class WorkerPool {
  readonly threads: number;
  private readonly workers: Worker[];
  private readonly ports: MessagePort[];
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  /** Per bank, the main thread's kernel functions in plan order. */
  private readonly fns: ((...a: number[]) => void)[][];
  private readonly plans: Plan[];
  private readonly byKernel = new Map<KernelSpec, Plan>();
  private readonly spin: number;
  private readonly errors: string[];
  private seq = 0;
  private closed = false;
  /**
   * Per bank, per-thread scratch pointers into that bank (index 0 = main thread), passed as each kernel's `scratch`
   * parameter.
   */
  scratch: number[][];

  private constructor(
    threads: number, workers: Worker[], ports: MessagePort[], memory: WebAssembly.Memory, ctrl: number,
    exports: WebAssembly.Exports, plans: Plan[], spin: number, errors: string[],
  ) {
    this.threads = threads;
    this.errors = errors;
    this.workers = workers;
    this.ports = ports;
    this.i32 = new Int32Array(memory.buffer, ctrl, controlBlockBytes(MAX_WORKERS + 1) >> 2);
    this.f64 = new Float64Array(memory.buffer, ctrl + ARGS_OFF, MAX_ARGS);
    this.plans = plans;
    for (const p of plans) this.byKernel.set(p.spec, p);
    this.fns = [this.bankFns(exports)];
    this.spin = spin;
    this.scratch = [new Array(threads).fill(0)];
  }

  private bankFns(exports: WebAssembly.Exports): ((...a: number[]) => void)[] {
    return this.plans.map((p) => exports[p.spec.name] as (...a: number[]) => void);
  }

  /** Banks the pool runs kernels in (bank 0 holds the control block). */
  get banks(): number {
    return this.fns.length;
  }

  /**
   * Serve one more memory: `exports` is the main thread's instance of the module on it; every worker instantiates
   * its own before this returns. Returns the new bank's index.
   */
  addBank(memory: WebAssembly.Memory, exports: WebAssembly.Exports): number {
    if (this.closed) throw new MlaError("wasm worker pool is closed");
    for (const p of this.plans) plan(p.id, p.spec, exports[p.spec.name]);
    for (const port of this.ports) port.postMessage(memory);
    if (this.join(this.wake(-2, this.threads), this.threads)) {
      throw new MlaError(`wasm worker failed to take a new memory bank${this.errors.length ? `: ${this.errors.join("; ")}` : ""}`);
    }
    this.fns.push(this.bankFns(exports));
    this.scratch.push(new Array(this.threads).fill(0));
    return this.fns.length - 1;
  }

  /**
   * Start `threads - 1` workers on `module` + `memory`. `ctrl` is the control block (controlBlockBytes(threads),
   * 64-aligned, inside memory that never moves); `exports` is the main thread's own instance; `kernels` describes
   * the exports that `run` can call (kernels.ts), each checked against its export before any worker starts.
   */
  static async create(
    module: WebAssembly.Module, memory: WebAssembly.Memory, ctrl: number, exports: WebAssembly.Exports,
    kernels: readonly KernelSpec[], opts: PoolOptions,
  ): Promise<WorkerPool> {
    const threads = Math.floor(opts.threads);
    if (!(threads >= 1 && threads <= MAX_WORKERS + 1)) throw new MlaError(`threads must be 1..${MAX_WORKERS + 1}, got ${opts.threads}`);
    if (ctrl % 64 !== 0) throw new MlaError("pool control block must be 64-byte aligned");
    const plans = kernels.map((k, id) => plan(id, k, exports[k.name]));
    // Workers spin this long before parking: a decode step's JS between kernel calls is shorter, so they stay
    // awake through a step (waking a parked worker costs 50-100 us on these VMs).
    const spin = Math.max(0, opts.spinMicros ?? 1000);
    new Int32Array(memory.buffer, ctrl, controlBlockBytes(threads) >> 2).fill(0);
    const workers: Worker[] = [];
    const ports: MessagePort[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < threads - 1; i++) {
      const { port1, port2 } = new MessageChannel();
      ports.push(port1);
      const w = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { module, memories: [memory], ctrl, index: i, kernels: kernels.map((k) => k.name), spinMs: spin / 1000, port: port2 },
        transferList: [port2],
      });
      workers.push(w);
      ready.push(new Promise<void>((resolve, reject) => {
        const onMsg = (m: unknown): void => { if (m === "ready") { cleanup(); resolve(); } };
        const onErr = (e: Error): void => { cleanup(); reject(e); };
        const onExit = (code: number): void => { cleanup(); reject(new MlaError(`wasm worker exited with code ${code} while starting`)); };
        const cleanup = (): void => { w.off("message", onMsg); w.off("error", onErr); w.off("exit", onExit); };
        w.on("message", onMsg); w.on("error", onErr); w.on("exit", onExit);
      }));
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    // error reports from workers (listeners go on before unref: adding one later would ref the port again)
    const errors: string[] = [];
    for (const w of workers) w.on("message", (m) => { if (m !== "ready") errors.push(String(m)); });
    // parked workers must not keep the process alive
    for (const w of workers) w.unref();
    for (const p of ports) p.unref();
    return new WorkerPool(threads, workers, ports, memory, ctrl, exports, plans, spin, errors);
  }

  /**
   * Run `kernel` over rows [0, nRows): the rows are cut into contiguous ranges whose starts are multiples of `align`
   * (16 f32 outputs = one 64-byte line, so no two threads write the same cache line), taken a chunk at a time by
   * the threads; each thread calls the kernel with `args` in the kernel's parameter order, its range in the two
   * range parameters and its scratch pointer in `scratch`. Blocks until all threads are done. `maxThreads` caps
   * how many threads take part (small jobs: 1).
   */
  run<P extends string, R extends P>(kernel: KernelSpec<P, R>, args: NoInfer<KernelArgs<P, R>>, nRows: number, align = 16, maxThreads = this.threads, bank = 0): void {
    const p = this.byKernel.get(kernel);
    if (!p) throw new MlaError(`kernel ${kernel.name} is not one this pool was started with`);
    const named = args as Readonly<Record<string, number>>, names = p.names;
    const a = new Array<number>(names.length);
    for (let j = 0; j < names.length; j++) {
      const name = names[j];
      if (name === null) {
        a[j] = 0; // the range and scratch slots: filled per thread
        continue;
      }
      const v = named[name];
      if (typeof v !== "number") throw new MlaError(`kernel ${kernel.name}: argument ${name} is missing`);
      a[j] = v;
    }
    this.exec(p.id, a, p.r0, p.r1, p.scratchAt, nRows, align, maxThreads, bank);
  }

  /** Run kernel `id` with its positional arguments `a` (slots r0, r1 and scratchAt are filled here, per thread). */
  private exec(id: number, a: number[], r0: number, r1: number, scratchAt: number, nRows: number, align: number, maxThreads: number, bank: number): void {
    if (this.closed) throw new MlaError("wasm worker pool is closed");
    if (a.length > MAX_ARGS) throw new MlaError(`too many kernel arguments (${a.length})`);
    if (!(bank >= 0 && bank < this.fns.length)) throw new MlaError(`wasm pool: no bank ${bank} (it has ${this.fns.length})`);
    const fn = this.fns[bank][id], scratch = this.scratch[bank];
    const nt = Math.max(1, Math.min(this.threads, maxThreads, Math.ceil(nRows / align)));
    if (scratchAt >= 0) a[scratchAt] = scratch[0];
    if (nt === 1 || nRows <= 0) {
      if (nRows > 0) {
        a[r0] = 0;
        a[r1] = nRows;
        fn(...a);
      }
      return;
    }
    // about CHUNKS_PER_THREAD chunks per thread, whole multiples of `align` rows
    const chunk = Math.ceil(nRows / (nt * CHUNKS_PER_THREAD) / align) * align;
    const i32 = this.i32;
    i32[1] = a.length;
    i32[2] = r0;
    Atomics.store(i32, 3, 0);
    i32[4] = chunk;
    i32[5] = nRows;
    i32[6] = r1;
    i32[7] = scratchAt;
    i32[8] = bank;
    for (let j = 0; j < a.length; j++) this.f64[j] = a[j];
    for (let t = 1; t < nt; t++) i32[((SLOTS_OFF + SLOT_BYTES * (t - 1)) >> 2) + 3] = scratch[t];
    const seq = this.wake(id, nt);
    let err: unknown = null;
    try {
      for (let c = Atomics.add(i32, 3, 1); c * chunk < nRows; c = Atomics.add(i32, 3, 1)) {
        a[r0] = c * chunk;
        a[r1] = Math.min(nRows, (c + 1) * chunk);
        fn(...a);
      }
    } catch (e) {
      err = e;
    }
    const failed = this.join(seq, nt);
    if (err) throw err;
    if (failed) throw new MlaError(`wasm kernel ${this.plans[id].spec.name} failed in a worker thread${this.errors.length ? `: ${this.errors.join("; ")}` : ""}`);
  }

  /**
   * Publish kernel id or command `cmd` (the rest of the job already written) to workers 1 .. nt - 1: a new sequence
   * number in each one's slot, and a wake-up. Returns the sequence number their done words will carry.
   */
  private wake(cmd: number, nt: number): number {
    const i32 = this.i32;
    i32[0] = cmd;
    const seq = (this.seq = (this.seq + 1) | 0);
    for (let t = 1; t < nt; t++) {
      const slot = (SLOTS_OFF + SLOT_BYTES * (t - 1)) >> 2;
      Atomics.store(i32, slot, seq);
      Atomics.notify(i32, slot, 1);
    }
    return seq;
  }

  /** Wait until workers 1 .. nt - 1 have done job `seq`; true when one of them failed (its flag is cleared). */
  private join(seq: number, nt: number): boolean {
    const i32 = this.i32;
    let failed = false;
    for (let t = 1; t < nt; t++) {
      const done = ((SLOTS_OFF + SLOT_BYTES * (t - 1)) >> 2) + 16;
      let d = Atomics.load(i32, done);
      if (d !== seq && this.spin > 0) {
        // workers start late when they had to be woken (tens of us on some VMs): wait longer than they do
        const t0 = performance.now(), ms = (4 * this.spin) / 1000;
        do {
          for (let k = 0; k < 64 && d !== seq; k++) d = Atomics.load(i32, done);
        } while (d !== seq && performance.now() - t0 < ms);
      }
      while (d !== seq) {
        Atomics.wait(i32, done, d);
        d = Atomics.load(i32, done);
      }
      if (Atomics.load(i32, done + 1)) {
        failed = true;
        Atomics.store(i32, done + 1, 0);
      }
    }
    return failed;
  }

  /** Stop the workers (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // ref again while waiting, or an otherwise idle event loop would end with this promise pending
    const exits = this.workers.map((w) => new Promise<void>((resolve) => { w.once("exit", () => resolve()); w.ref(); }));
    this.wake(-1, this.threads);
    await Promise.all(exits);
  }
}
