import { MlaError } from "../../errors.js";

/** WebAssembly page size (64 KiB). */
export const PAGE = 65536;
/** 65536 pages = 4 GiB, the wasm32 limit; a shared memory reserves this address space up front but commits only what is used. */
export const MAX_PAGES = 65536;
/**
 * Bytes at the bottom of memory kept away from the allocator: the kernels' static data (there is none today, see
 * heap_base()) and the worker pool's control block live there. Pointer 0 is never handed out.
 */
export const RESERVED_BYTES = PAGE;

export interface F32Alloc {
  readonly ptr: number;
  readonly view: Float32Array;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * The one shared linear memory of the wasm backend and a bump allocator over it.
 *
 * Views: a shared memory never detaches its buffer on grow, so a view made earlier stays valid for the bytes it
 * covers; `memory.buffer` just has to be read again for regions allocated after a grow. The view helpers below
 * always use the current buffer, and `allocF32` returns a view made after any grow it caused.
 */
export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  private top: number;
  /** release() never goes below this (see pin). */
  private floor = 0;

  constructor(memory: WebAssembly.Memory, base = RESERVED_BYTES) {
    this.memory = memory;
    this.top = alignUp(Math.max(base, 64), 64);
  }

  /** A fresh shared memory of `initialBytes` (rounded up to pages, at least the reserved area) and its heap. */
  static create(initialBytes = 16 << 20): WasmHeap {
    const initial = Math.max(2, Math.ceil(initialBytes / PAGE));
    const memory = new WebAssembly.Memory({ initial, maximum: MAX_PAGES, shared: true });
    return new WasmHeap(memory);
  }

  /** The current buffer (covers every allocation made so far). */
  get buffer(): SharedArrayBuffer {
    return this.memory.buffer as unknown as SharedArrayBuffer;
  }

  /** Bytes handed out so far, including the reserved area. */
  get used(): number {
    return this.top;
  }

  /** Bytes of linear memory currently committed (the memory's size). */
  get size(): number {
    return this.memory.buffer.byteLength;
  }

  /** `bytes` of memory aligned to `align` (default one 64-byte cache line); contents are whatever was there (zero when fresh). */
  alloc(bytes: number, align = 64): number {
    if (!(bytes >= 0) || !Number.isFinite(bytes)) throw new MlaError(`wasm alloc: bad size ${bytes}`);
    const ptr = alignUp(this.top, align);
    const end = ptr + bytes;
    this.ensure(end);
    this.top = end;
    return ptr;
  }

  /** Make sure [0, end) is inside memory, growing it if needed. */
  ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    const pages = Math.ceil(end / PAGE);
    if (pages > MAX_PAGES) throw new MlaError(`wasm memory would need ${pages} pages (${(end / 2 ** 30).toFixed(2)} GiB); the limit is 4 GiB`);
    // grow at least 1/8 more than needed so that many small allocations do not grow page by page
    const want = Math.min(MAX_PAGES, Math.max(pages, Math.ceil((have / PAGE) * 1.125)));
    this.memory.grow(want - have / PAGE);
  }

  allocF32(n: number): F32Alloc {
    const ptr = this.alloc(n * 4);
    return { ptr, view: this.f32(ptr, n) };
  }

  allocU16(n: number): { ptr: number; view: Uint16Array } {
    const ptr = this.alloc(n * 2);
    return { ptr, view: this.u16(ptr, n) };
  }

  allocI8(n: number): { ptr: number; view: Int8Array } {
    const ptr = this.alloc(n);
    return { ptr, view: this.i8(ptr, n) };
  }

  /** Copy `data` into fresh memory; returns the pointer. */
  putF32(data: ArrayLike<number>): number {
    const a = this.allocF32(data.length);
    a.view.set(data);
    return a.ptr;
  }

  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, n);
  }
  u16(ptr: number, n: number): Uint16Array {
    return new Uint16Array(this.memory.buffer, ptr, n);
  }
  i8(ptr: number, n: number): Int8Array {
    return new Int8Array(this.memory.buffer, ptr, n);
  }
  u8(ptr: number, n: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, n);
  }

  /** The allocation watermark; `release(mark)` frees everything allocated after it (stack discipline). */
  mark(): number {
    return this.top;
  }
  release(mark: number): void {
    if (mark > this.top || mark < RESERVED_BYTES) throw new MlaError(`wasm heap: bad release mark ${mark}`);
    if (mark < this.floor) throw new MlaError(`wasm heap: release(${mark}) would free pinned memory (up to ${this.floor}), e.g. kernel scratch allocated after that mark`);
    this.top = mark;
  }

  /** Everything allocated so far becomes permanent: a later release() to an earlier mark throws instead of freeing it. */
  pin(): void {
    this.floor = this.top;
  }

  /** A fixed-size region carved out of the heap with its own bump pointer, for per-step activations. */
  arena(bytes: number): Arena {
    return new Arena(this, this.alloc(bytes), bytes);
  }
}

/** Scratch space for activations: allocate freely during a step, then `reset()`. */
export class Arena {
  private off = 0;
  constructor(readonly heap: WasmHeap, readonly base: number, readonly capacity: number) {}

  alloc(bytes: number, align = 64): number {
    const start = alignUp(this.base + this.off, align);
    const end = start + bytes;
    if (end > this.base + this.capacity) {
      throw new MlaError(`wasm arena full: ${bytes} more bytes wanted, ${this.base + this.capacity - start} left of ${this.capacity}`);
    }
    this.off = end - this.base;
    return start;
  }

  allocF32(n: number): F32Alloc {
    const ptr = this.alloc(n * 4);
    return { ptr, view: this.heap.f32(ptr, n) };
  }

  get used(): number {
    return this.off;
  }

  reset(): void {
    this.off = 0;
  }
}
