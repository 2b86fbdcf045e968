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

/** A frame whose payload is `parts` back to back: each part is copied once, into the frame. */
export function encodeFrame(type: number, ...parts: readonly Uint8Array[]): Buffer {
  if (!Number.isInteger(type) || type < 0 || type > 255) throw new RangeError(`frame type ${type} is not a byte`);
  const length = parts.reduce((n, p) => n + p.byteLength, 0);
  const out = Buffer.allocUnsafe(HEADER + 1 + length);
  out.writeUInt32BE(1 + length, 0);
  out[HEADER] = type;
  let o = HEADER + 1;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
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
      const length = this.#peekLength();
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

  /** The length in the header at the front, read across chunks without joining them. */
  #peekLength(): number {
    const first = this.#chunks[0]!;
    if (first.length >= HEADER) return first.readUInt32BE(0);
    const head = Buffer.allocUnsafe(HEADER);
    let o = 0;
    for (const c of this.#chunks) {
      o += c.copy(head, o, 0, Math.min(c.length, HEADER - o));
      if (o === HEADER) break;
    }
    return head.readUInt32BE(0);
  }

  /**
   * The next n bytes: a view of the first chunk when it holds them all, else a
   * copy of exactly those bytes. What follows them stays where it is, so no
   * byte is copied twice (joining everything buffered copied the start of the
   * next frame along, and copied it again when that frame completed).
   */
  #take(n: number): Buffer {
    const chunks = this.#chunks;
    this.#buffered -= n;
    const first = chunks[0]!;
    if (first.length >= n) {
      if (first.length === n) chunks.shift();
      else chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    let used = 0;
    while (o < n) {
      const c = chunks[used]!;
      const k = Math.min(c.length, n - o);
      c.copy(out, o, 0, k);
      o += k;
      if (k < c.length) chunks[used] = c.subarray(k);
      else used++;
    }
    chunks.splice(0, used);
    return out;
  }
}
