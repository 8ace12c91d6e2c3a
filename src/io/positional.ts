/**
 * Positional reads of whole byte ranges, shared by the safetensors and GGUF readers: one read(2) is limited to just
 * under 2 GiB (and a Buffer of that size is costly), so ranges are read in bounded chunks, and a short read (a
 * truncated file) is reported by the caller in its own words.
 */
import * as fs from "node:fs";

/** Keeps single reads well under the ~2 GiB limit of one read(2)/Buffer, so huge tensors load. */
export const MAX_CHUNK = 64 * 1024 * 1024;

/** Reads exactly dst.length bytes at `position` in chunks; onShort(at) is called (and must throw) at end of file. */
export function readFullyAt(fd: number, dst: Uint8Array, position: number, onShort: (at: number) => never, chunk = MAX_CHUNK): void {
  let done = 0;
  while (done < dst.length) {
    const n = fs.readSync(fd, dst, done, Math.min(chunk, dst.length - done), position + done);
    if (n <= 0) onShort(position + done);
    done += n;
  }
}

/**
 * Writes all of src, in chunks (writeSync may write less than asked, and one call is limited like a read): at
 * `position` and on, or at the file's current offset when position is null. Returns the bytes written.
 */
export function writeFullyAt(fd: number, src: Uint8Array, position: number | null, chunk = MAX_CHUNK): number {
  let done = 0;
  while (done < src.length) {
    done += fs.writeSync(fd, src, done, Math.min(chunk, src.length - done), position === null ? null : position + done);
  }
  return done;
}

/** n bytes of `path` at `position`, in a fresh array (the file opened and closed around the read). */
export function readRangeAt(path: string, position: number, n: number, onShort: (at: number) => never): Uint8Array {
  const data = new Uint8Array(n);
  const fd = fs.openSync(path, "r");
  try {
    readFullyAt(fd, data, position, onShort);
  } finally {
    fs.closeSync(fd);
  }
  return data;
}
