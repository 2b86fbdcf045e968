import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../errors/errors.ts';
import { encodeFrame, FrameDecoder } from './frames.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Bytes the process holds in JS objects and buffers, after a full collection. */
function held(): number {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

describe('FrameDecoder', () => {
  it('returns the same frames however the stream is cut (property)', () => {
    const frames = fc.array(fc.record({ type: fc.nat({ max: 255 }), payload: fc.uint8Array({ maxLength: 200 }) }), { maxLength: 6 });
    fc.assert(
      fc.property(frames, fc.array(fc.nat({ max: 300 }), { maxLength: 20 }), (fs, cuts) => {
        const stream = Buffer.concat(fs.map((f) => encodeFrame(f.type, f.payload)));
        const d = new FrameDecoder(1024);
        const got: { type: number; payload: Buffer }[] = [];
        let o = 0;
        for (const n of [...cuts, stream.length]) {
          got.push(...d.push(stream.subarray(o, Math.min(stream.length, o + n))));
          o = Math.min(stream.length, o + n);
        }
        expect(got.map((f) => [f.type, Buffer.from(f.payload).toString('hex')])).toEqual(fs.map((f) => [f.type, Buffer.from(f.payload).toString('hex')]));
        expect(d.pending).toBe(0);
      }),
    );
  });

  it('refuses an empty frame and a length above the limit before buffering it', () => {
    const claim = Buffer.alloc(4);
    claim.writeUInt32BE(0xffffffff);
    expect(() => new FrameDecoder(1024).push(claim)).toThrow(ProtocolError);
    expect(() => new FrameDecoder(1024).push(Buffer.alloc(4))).toThrow(/empty frame/);
  });

  // A frame sent one byte per chunk (a TLS record each) used to leave a Buffer object per byte:
  // about 115 bytes held per byte received, 2 GB for one frame at the default limit.
  it('holds a frame that arrives a byte at a time in about the frame\'s own size', () => {
    const size = 1024 * 1024;
    const frame = encodeFrame(9, Buffer.alloc(size - 1, 7));
    const d = new FrameDecoder();
    const before = held();
    let early = 0;
    for (let i = 0; i < frame.length - 1; i++) early += d.push(frame.subarray(i, i + 1)).length;
    const growth = held() - before;
    expect(early).toBe(0);
    expect(d.pending).toBe(frame.length - 1);
    expect(growth).toBeLessThan(3 * size);
    const [f] = d.push(frame.subarray(frame.length - 1));
    expect(f!.type).toBe(9);
    expect(f!.payload.equals(frame.subarray(5))).toBe(true);
  });
});
