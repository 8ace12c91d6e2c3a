/**
 * The part of Node's Buffer that the GGUF header reader (src/io/gguf.ts, its Cursor) uses: a Uint8Array with
 * little-endian reads and UTF-8 decoding. Installed as globalThis.Buffer only where there is none (browsers), so the
 * engine's GGUF reader runs unchanged in the page.
 */
const utf8 = new TextDecoder();

export class BrowserBuffer extends Uint8Array {
  private dv?: DataView;

  static alloc(n: number): BrowserBuffer {
    return new BrowserBuffer(n);
  }

  private get view(): DataView {
    return (this.dv ??= new DataView(this.buffer, this.byteOffset, this.byteLength));
  }

  readUInt8(o: number): number { return this.view.getUint8(o); }
  readInt8(o: number): number { return this.view.getInt8(o); }
  readUInt16LE(o: number): number { return this.view.getUint16(o, true); }
  readInt16LE(o: number): number { return this.view.getInt16(o, true); }
  readUInt32LE(o: number): number { return this.view.getUint32(o, true); }
  readInt32LE(o: number): number { return this.view.getInt32(o, true); }
  readFloatLE(o: number): number { return this.view.getFloat32(o, true); }
  readDoubleLE(o: number): number { return this.view.getFloat64(o, true); }
  readBigUInt64LE(o: number): bigint { return this.view.getBigUint64(o, true); }
  readBigInt64LE(o: number): bigint { return this.view.getBigInt64(o, true); }

  /** UTF-8 text of bytes [start, end) (Buffer's toString("utf8", start, end)). */
  override toString(encoding?: string, start = 0, end = this.length): string {
    if (encoding !== undefined && encoding !== "utf8" && encoding !== "utf-8") throw new Error(`Buffer encoding ${encoding} is not available in the browser`);
    return utf8.decode(this.subarray(start, end));
  }
}

/** Give the page a Buffer when it has none. */
export function installBuffer(): void {
  const g = globalThis as { Buffer?: unknown };
  g.Buffer ??= BrowserBuffer;
}
