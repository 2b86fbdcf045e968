import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerIdentityError, ProtocolError } from '../errors/errors.ts';
import { encodeFrame, type Frame, FrameDecoder } from './frames.ts';
import { type Identity, loadOrCreateIdentity } from './identity.ts';
import { connectToPeer, listenForPeers, type PeerConnection } from './transport.ts';

describe('frames', () => {
  it('decode the same whatever the chunking (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ type: fc.integer({ min: 0, max: 255 }), payload: fc.uint8Array({ maxLength: 300 }) }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 10 }),
        (frames, cuts) => {
          const bytes = Buffer.concat(frames.map((f) => encodeFrame(f.type, f.payload)));
          const decoder = new FrameDecoder(1024);
          const out: Frame[] = [];
          let o = 0;
          for (let i = 0; o < bytes.length; i++) {
            const n = cuts[i % cuts.length]!;
            out.push(...decoder.push(bytes.subarray(o, o + n)));
            o += n;
          }
          expect(out.map((f) => ({ type: f.type, payload: new Uint8Array(f.payload) }))).toEqual(frames.map((f) => ({ type: f.type, payload: f.payload })));
          expect(decoder.pending).toBe(0);
        },
      ),
    );
  });

  it('refuses an oversized or empty frame from its header, before buffering it', () => {
    const claim = Buffer.alloc(4);
    claim.writeUInt32BE(1 << 30);
    expect(() => new FrameDecoder(1024).push(claim)).toThrow(ProtocolError);
    expect(() => new FrameDecoder(1024).push(Buffer.alloc(4))).toThrow(/empty frame/);
  });
});

describe('peer transport: mutual TLS with pinned ids', () => {
  const log = pino({ level: 'silent' });
  const dirs: string[] = [];
  let a: Identity;
  let b: Identity;
  let stranger: Identity;
  let server: tls.Server;
  let port: number;
  const accepted: { conn: PeerConnection; name: string }[] = [];

  const identity = async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-peer-'));
    dirs.push(d);
    return loadOrCreateIdentity(d);
  };

  beforeAll(async () => {
    [a, b, stranger] = [await identity(), await identity(), await identity()];
    server = await listenForPeers({ identity: a, listen: '127.0.0.1:0', peers: new Map([[b.id, 'host-b']]), log, onPeer: (conn, name) => accepted.push({ conn, name }) });
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => {
    server.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('connects a configured peer that presents the expected id, and frames flow both ways', async () => {
    const conn = await connectToPeer({ identity: b, host: '127.0.0.1', port, expectedId: a.id });
    await new Promise((r) => setTimeout(r, 50));
    const there = accepted.at(-1)!;
    expect(there.name).toBe('host-b');
    expect(there.conn.peerId).toBe(b.id);
    await conn.send(7, Buffer.from('offer'));
    expect((await there.conn.receive()).payload.toString()).toBe('offer');
    await there.conn.send(8, Buffer.from('need'));
    expect(await conn.receive()).toMatchObject({ type: 8 });
    conn.close();
  });

  it('refuses a server that presents another id, before sending anything', async () => {
    const before = accepted.length;
    await expect(connectToPeer({ identity: b, host: '127.0.0.1', port, expectedId: stranger.id })).rejects.toBeInstanceOf(PeerIdentityError);
    await new Promise((r) => setTimeout(r, 50));
    // The server accepted the TLS session (b is configured) but got no frame: the client hung up first.
    expect(accepted.length - before).toBeLessThanOrEqual(1);
  });

  it('drops an agent whose id nobody configured: no frame of it is read', async () => {
    const before = accepted.length;
    const outcome = await connectToPeer({ identity: stranger, host: '127.0.0.1', port, expectedId: a.id }).then(
      async (conn) => {
        await conn.send(1, Buffer.from('let me in')).catch(() => {});
        return conn.receive().then(() => 'answered', (err: Error) => err.message);
      },
      (err: Error) => err.message,
    );
    expect(outcome).toMatch(/closed/);
    expect(accepted.length).toBe(before);
  });
});
