/**
 * The replication port against connections that never authenticate (issue
 * 12, item 11): silent TCP connections and half a ClientHello are dropped
 * after the handshake timeout, connections past the cap of unauthenticated
 * ones are closed at once, a configured peer still connects and pushes while
 * they are held, an authenticated peer that goes silent (before its hello,
 * or mid-frame) is dropped after the idle timeout, and all of it is logged
 * with the remote address, rate-limited. Real sockets, in this process.
 */
import { once } from 'node:events';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import tls from 'node:tls';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PeerClosedError, PeerTimeoutError } from '../errors/errors.ts';
import { backupDir, openTestRepo, TEST_PASSWORD, TempDirs } from '../repo/testing/fixture.ts';
import { listSnapshots } from '../repo/snapshots.ts';
import { Repository } from '../repo/repository.ts';
import { KiB } from '../util/units.ts';
import { type Identity, loadOrCreateIdentity } from './identity.ts';
import { encodeFrame } from './frames.ts';
import { push } from './push.ts';
import { Receiver } from './receiver.ts';
import { replicaDir } from './replica-path.ts';
import { connectToPeer, listenForPeers, type PeerConnection, type PeerServerOptions } from './transport.ts';

const temp = new TempDirs();
let me: Identity;
let peer: Identity;

beforeAll(async () => {
  me = await loadOrCreateIdentity(await temp.make('lifeboat-limits-me-'));
  peer = await loadOrCreateIdentity(await temp.make('lifeboat-limits-peer-'));
});
afterAll(() => temp.cleanup());

/** What the server logged, as parsed JSON lines. */
type Line = { level: number; msg: string; remote?: string; [k: string]: unknown };

interface Server {
  readonly server: tls.Server;
  readonly port: number;
  readonly lines: Line[];
  readonly accepted: PeerConnection[];
}

const servers: tls.Server[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) await new Promise<void>((resolve) => s.close(() => resolve()));
});

async function serve(over: Partial<PeerServerOptions> = {}): Promise<Server> {
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Line);
      cb();
    },
  });
  const accepted: PeerConnection[] = [];
  const server = await listenForPeers({
    identity: peer,
    listen: '127.0.0.1:0',
    peers: new Map([[me.id, 'me']]),
    log: pino({ level: 'info' }, sink),
    onPeer: (conn) => accepted.push(conn),
    ...over,
  });
  servers.push(server);
  return { server, port: (server.address() as net.AddressInfo).port, lines, accepted };
}

/** A raw TCP connection that says nothing (or `hello`, then nothing); resolves once connected, with when it closed. */
async function silent(port: number, hello?: Buffer): Promise<{ socket: net.Socket; closed: Promise<number> }> {
  const socket = net.connect(port, '127.0.0.1');
  sockets.push(socket);
  socket.on('error', () => {});
  socket.resume();
  const closed = once(socket, 'close').then(() => performance.now());
  await once(socket, 'connect');
  if (hello) socket.write(hello);
  return { socket, closed };
}

/** The first 60 bytes of a TLS 1.3 ClientHello record: the record and handshake headers announce ~500 bytes that never come. */
const HALF_CLIENT_HELLO = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), Buffer.alloc(49, 0x2a)]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const messages = (lines: Line[], pattern: RegExp) => lines.filter((l) => pattern.test(l.msg));

describe('the replication port against connections that never authenticate', () => {
  it('drops silent connections and half ClientHellos after the handshake timeout, while a configured peer connects and pushes', async () => {
    const state = await temp.make('lifeboat-limits-state-');
    const receiver = new Receiver({ stateDir: state, packSize: 256 * KiB, log: pino({ level: 'silent' }) });
    const s = await serve({ handshakeTimeoutMs: 1000, maxUnauthenticated: 64, onPeer: (c, n) => void receiver.accept(c, n) });
    const started = performance.now();
    const held = [
      ...(await Promise.all(Array.from({ length: 20 }, () => silent(s.port)))),
      ...(await Promise.all(Array.from({ length: 5 }, () => silent(s.port, HALF_CLIENT_HELLO)))),
    ];

    // a push from the configured peer goes through while they are held
    const t = await openTestRepo({ packSize: 128 * KiB });
    try {
      const src = path.join(await t.temp.make(), 'src');
      await fsp.mkdir(src);
      await fsp.writeFile(path.join(src, 'a'), 'the data of a\n');
      const snap = await backupDir(t, src);
      const conn = await connectToPeer({ identity: me, host: '127.0.0.1', port: s.port, expectedId: peer.id });
      try {
        expect(await push(conn, t.repo, { scratchDir: await t.temp.make(), log: pino({ level: 'silent' }) })).toMatchObject({ snapshots: 1 });
      } finally {
        conn.destroy();
        await receiver.settled();
      }
      const replica = await Repository.open(replicaDir(state, me.id), TEST_PASSWORD);
      expect(listSnapshots(replica).map((x) => x.id)).toEqual([snap.id]);
      replica.close();
    } finally {
      t.close();
      await receiver.close();
    }
    expect(held.filter((h) => h.socket.readyState === 'open'), 'the silent ones were still held during the push').toHaveLength(25);

    // every silent one is closed by the server after the timeout: not before, and not much after
    const closedAt = await Promise.all(held.map((h) => h.closed));
    for (const at of closedAt) {
      expect(at - started).toBeGreaterThanOrEqual(900);
      expect(at - started).toBeLessThan(8_000);
    }
    // logged with the remote address (rate-limited: not necessarily one line each)
    const timeouts = messages(s.lines, /handshake/);
    expect(timeouts.length).toBeGreaterThan(0);
    expect(timeouts[0]!.remote).toMatch(/^127\.0\.0\.1:\d+$/);
  }, 30_000);

  it('closes connections past the cap of unauthenticated ones at once, logs them rate-limited, and takes a configured peer again once they are gone', async () => {
    const s = await serve({ handshakeTimeoutMs: 1500, maxUnauthenticated: 8, logWindowMs: 600 });
    const held = [];
    for (let i = 0; i < 8; i++) held.push(await silent(s.port, i % 2 === 0 ? undefined : HALF_CLIENT_HELLO));
    await sleep(100);
    const t0 = performance.now();
    const extra = await Promise.all(Array.from({ length: 30 }, () => silent(s.port)));
    const extraClosed = await Promise.all(extra.map((e) => e.closed));
    // at once: long before the handshake timeout
    for (const at of extraClosed) expect(at - t0).toBeLessThan(700);
    // the held ones are still open until their timeout
    const stillOpen = held.filter((h) => !h.socket.destroyed && h.socket.readyState === 'open');
    expect(stillOpen).toHaveLength(8);

    // refusals are logged with the remote address, but not one line each: a few, then a count
    await sleep(900);
    const refused = messages(s.lines, /refused a connection/);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.length).toBeLessThan(10);
    expect(refused[0]!.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    const summary = messages(s.lines, /^refused \d+ more connections/);
    expect(summary).toHaveLength(1);
    expect(refused.length + (summary[0]!.count as number)).toBe(30);

    // after the timeout every held one is gone, and a configured peer is taken
    await Promise.all(held.map((h) => h.closed));
    const conn = await connectToPeer({ identity: me, host: '127.0.0.1', port: s.port, expectedId: peer.id });
    await conn.send(7, Buffer.from('hello'));
    await sleep(50);
    expect(s.accepted).toHaveLength(1);
    expect((await s.accepted[0]!.receive()).payload.toString()).toBe('hello');
    conn.destroy();
  }, 30_000);

  it('drops a configured peer that completes TLS but never sends its hello, after the idle timeout', async () => {
    const s = await serve({ handshakeTimeoutMs: 5000, idleTimeoutMs: 700 });
    const started = performance.now();
    const conn = await connectToPeer({ identity: me, host: '127.0.0.1', port: s.port, expectedId: peer.id });
    const err = await conn.receive().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PeerClosedError);
    expect(performance.now() - started).toBeGreaterThanOrEqual(600);
    expect(performance.now() - started).toBeLessThan(4000);
    expect(s.accepted).toHaveLength(1);
    await expect(s.accepted[0]!.receive()).rejects.toBeInstanceOf(PeerTimeoutError);
  }, 15_000);

  it('drops an authenticated peer that goes silent in the middle of a frame, after the idle timeout', async () => {
    const s = await serve({ idleTimeoutMs: 700 });
    // the peer's side by hand, to write half a frame
    const client = tls.connect({ host: '127.0.0.1', port: s.port, cert: me.certPem, key: me.keyPem, minVersion: 'TLSv1.3', rejectUnauthorized: false });
    client.on('error', () => {});
    const clientClosed = once(client, 'close');
    await once(client, 'secureConnect');
    client.write(encodeFrame(7, Buffer.from('first')));
    const frame = encodeFrame(8, Buffer.alloc(1000, 1));
    client.write(frame.subarray(0, 500));
    await until(() => s.accepted.length === 1);
    const there = s.accepted[0]!;
    expect((await there.receive()).payload.toString()).toBe('first');
    const started = performance.now();
    await expect(there.receive()).rejects.toBeInstanceOf(PeerTimeoutError);
    expect(performance.now() - started).toBeGreaterThanOrEqual(500);
    await clientClosed;
  }, 15_000);

  it('has a default handshake timeout and cap: a server given neither still drops silent connections', async () => {
    const s = await serve();
    const h = await silent(s.port);
    // the default is ten seconds; what matters here is that it is not "never"
    const outcome = await Promise.race([h.closed.then(() => 'closed'), sleep(12_000).then(() => 'still open')]);
    expect(outcome).toBe('closed');
  }, 20_000);
});

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > end) throw new Error('timed out');
    await sleep(10);
  }
}
