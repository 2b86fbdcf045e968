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

/** A pack's worth of sealed blobs plus headroom: the largest frame a peer may send by default. */
export const MAX_FRAME = 17 * 1024 * 1024;
const HEADER = 4;

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
    this.#chunks.push(chunk);
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
