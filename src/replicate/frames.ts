import { ProtocolError } from '../errors/errors.ts';

/**
 * The peer protocol's framing: length (u32, big-endian, of what follows) |
 * type (u8) | payload. A frame is bounded before it is buffered, so a peer
 * cannot make the receiver allocate more than `maxFrame` by claiming it.
 */
export interface Frame {
  readonly type: number;
  readonly payload: Buffer;
}

/** The largest blob (MAX_STORED_BLOB) with the ids a tree of a million entries names, and headroom: the largest frame a peer may send. */
export const MAX_FRAME = 128 * 1024 * 1024;
const HEADER = 4;
/** Received chunks below this size are merged (see #append). */
const SMALL_CHUNK = 16 * 1024;

export function encodeFrame(type: number, payload: Uint8Array): Buffer {
  if (!Number.isInteger(type) || type < 0 || type > 255) throw new RangeError(`frame type ${type} is not a byte`);
  const out = Buffer.allocUnsafe(HEADER + 1 + payload.byteLength);
  out.writeUInt32BE(1 + payload.byteLength, 0);
  out[HEADER] = type;
  out.set(payload, HEADER + 1);
  return out;
}

/** Turns a byte stream into frames, whatever the chunking. */
export class FrameDecoder {
  readonly #maxFrame: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(maxFrame = MAX_FRAME) {
    this.#maxFrame = maxFrame;
  }

  /** Adds received bytes; returns the frames they complete. Throws ProtocolError on a frame the protocol forbids. */
  push(chunk: Buffer): Frame[] {
    this.#append(chunk);
    this.#buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.#buffered < HEADER) break;
      const head = this.#peek(HEADER);
      const length = head.readUInt32BE(0);
      if (length === 0) throw new ProtocolError('peer sent an empty frame');
      if (length > this.#maxFrame) throw new ProtocolError(`peer sent a frame of ${length} bytes, above the limit of ${this.#maxFrame}`);
      if (this.#buffered < HEADER + length) break;
      const body = this.#take(HEADER + length).subarray(HEADER);
      frames.push({ type: body[0]!, payload: body.subarray(1) });
    }
    return frames;
  }

  /** Bytes of an incomplete frame held back. */
  get pending(): number {
    return this.#buffered;
  }

  /**
   * A peer sending a frame a byte at a time (one TLS record each) would
   * otherwise leave a Buffer object per byte, about a hundred times the
   * frame's size. Small chunks are merged like a binary counter, each with
   * the one before while that is no bigger: the list stays one entry per
   * SMALL_CHUNK bytes, and a byte is copied at most log2(SMALL_CHUNK) times.
   * Merged chunks get buffers of their own: Buffer.concat's come from the
   * 64 KiB pool, and every kept 16 KiB slice would hold a whole slab.
   * Larger chunks are kept as they are, uncopied.
   */
  #append(chunk: Buffer): void {
    const chunks = this.#chunks;
    chunks.push(chunk);
    for (let n = chunks.length; n >= 2 && chunks[n - 1]!.length < SMALL_CHUNK && chunks[n - 2]!.length <= chunks[n - 1]!.length; n--) {
      const [a, b] = [chunks[n - 2]!, chunks[n - 1]!];
      const merged = Buffer.allocUnsafeSlow(a.length + b.length);
      a.copy(merged);
      b.copy(merged, a.length);
      chunks.splice(n - 2, 2, merged);
    }
  }

  #peek(n: number): Buffer {
    if (this.#chunks[0]!.length < n) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0]!.subarray(0, n);
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return out;
  }
}
