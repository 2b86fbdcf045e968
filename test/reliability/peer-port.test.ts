/**
 * A real agent's replication port against connections that never
 * authenticate (issue 12): raw TCP connections that send nothing, and some
 * that send half a TLS ClientHello, are closed by the agent after its
 * handshake timeout (10 s, fixed: no config key shortens it); connections
 * past the cap of 64 unauthenticated ones are closed at once; a configured
 * peer still pushes while they are held, and again once they are gone; and
 * the agent logs them with the remote address. Every stranger connection
 * counts as a bad input, rejected when the agent closed it in time.
 *
 * Bounded: 20 s or so, most of it the handshake timeout.
 */
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Daemon, until } from '../agent/daemon.ts';
import { cleanup, ok, okJson } from '../cli/run.ts';
import { diffManifests, manifest, randomBytes } from '../cli/tree.ts';
import { Fleet, makeAgent, replicaOf, type TestAgent, writeConfig } from '../replicate/agents.ts';
import { noteFailure } from './crash-harness.ts';
import { writeSummary } from './report.ts';

/** The agent's fixed limits (src/replicate/transport.ts: DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_MAX_UNAUTHENTICATED). */
const HANDSHAKE_TIMEOUT_MS = 10_000;
const CAP = 64;
const SILENT = 44;
const HALF_HELLOS = 10;
const EXTRA = 20;

const counts = { bad_inputs: 0, bad_inputs_rejected: 0, snapshots_checked: 0 };
const failures: string[] = [];
const fleet = new Fleet();
let a: TestAgent & { setup: object };
let b: TestAgent & { setup: object };

/** The first 60 bytes of a TLS 1.3 ClientHello: its headers announce ~500 bytes that never come. */
const HALF_CLIENT_HELLO = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), Buffer.alloc(49, 0x2a)]);

interface Held {
  readonly socket: net.Socket;
  /** When it connected, and when it closed (performance.now()). */
  readonly opened: number;
  readonly closed: Promise<number>;
  /** Bytes the agent sent it (a TLS alert at most). */
  received: number;
}
const sockets: net.Socket[] = [];

/** A raw TCP connection that says nothing (or `hello`, then nothing); resolves once connected (or already closed). */
async function stranger(port: number, host: string, hello?: Buffer): Promise<Held> {
  const opened = performance.now();
  const socket = net.connect(port, host);
  sockets.push(socket);
  // a reset is how a connection past the cap ends: the close is what counts
  socket.on('error', () => {});
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
  await new Promise<void>((resolve) => {
    socket.once('connect', resolve);
    socket.once('close', () => resolve());
  });
  const held: Held = { socket, opened, closed, received: 0 };
  socket.on('data', (d: Buffer) => (held.received += d.length));
  if (hello && !socket.destroyed) socket.write(hello);
  return held;
}

beforeAll(async () => {
  a = await makeAgent('a');
  b = await makeAgent('b');
  await writeConfig(a, [{ agent: b }]);
  await writeConfig(b, [{ agent: a, push: false }]);
});

afterAll(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await fleet.stopAll();
  writeSummary({ suite: 'hostile', part: 'peer-port', counts, failures });
  await cleanup();
});

describe("a real agent's replication port against connections that never authenticate", () => {
  test('silent and half-hello connections are closed after the handshake timeout, those past the cap at once; a configured peer pushes meanwhile; all logged', async (ctx) => {
    ctx.onTestFailed(noteFailure(failures, 'peer port'));
    const db: Daemon = fleet.start(b);
    ctx.onTestFailed(() => console.log(`the agent's last log lines:\n${db.logs.slice(-20).map((l) => JSON.stringify(l)).join('\n')}\nstderr: ${db.stderr()}`));
    await until('the peer answers', async () => (await db.get('/healthz')).status === 200, { daemon: db, timeoutMs: 30_000 });
    const [host, port] = [b.replication.slice(0, b.replication.lastIndexOf(':')), Number(b.replication.slice(b.replication.lastIndexOf(':') + 1))];

    const src = path.join(a.dir, 'src');
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'one.bin'), randomBytes(300 * 1024, 'peer-port-1'));
    const first = (await okJson(['backup', '--repo', a.repo, '--path', src, '--host', 'a'], { password: a.password })).snapshot as string;
    const expectedFirst = await manifest(src);

    // strangers under the cap: held until the handshake timeout
    const held: Held[] = [];
    for (let i = 0; i < SILENT; i++) held.push(await stranger(port, host));
    for (let i = 0; i < HALF_HELLOS; i++) held.push(await stranger(port, host, HALF_CLIENT_HELLO));
    counts.bad_inputs += held.length;

    // a configured peer still gets through and pushes
    await ok(['--config', a.config, 'replicate', 'b'], { password: a.password });
    const t1 = path.join(a.dir, 'restored-1');
    await ok(['restore', first, '--repo', replicaOf(b, a), '--target', t1], { password: a.password });
    expect(diffManifests(expectedFirst, await manifest(t1))).toEqual([]);
    counts.snapshots_checked++;
    const stillOpen = held.filter((h) => !h.socket.destroyed && h.socket.readyState === 'open').length;

    // fill the cap, then more: those are closed at once, before any TLS
    const fill = CAP - held.length;
    for (let i = 0; i < fill; i++) held.push(await stranger(port, host));
    counts.bad_inputs += fill;
    const extra: Held[] = [];
    for (let i = 0; i < EXTRA; i++) extra.push(await stranger(port, host, i % 2 === 0 ? undefined : HALF_CLIENT_HELLO));
    counts.bad_inputs += extra.length;
    const extraClosedAfter = await Promise.all(extra.map(async (e) => (await e.closed) - e.opened));
    const atOnce = extraClosedAfter.filter((ms) => ms < 2_000).length;
    counts.bad_inputs_rejected += atOnce;

    // every held one is closed by the agent after its timeout: not before, not much after
    const heldClosedAfter = await Promise.all(held.map(async (h) => (await h.closed) - h.opened));
    const inTime = heldClosedAfter.filter((ms) => ms >= HANDSHAKE_TIMEOUT_MS - 1_000 && ms < HANDSHAKE_TIMEOUT_MS + 8_000).length;
    counts.bad_inputs_rejected += inTime;
    console.log(
      `peer port: ${held.length} strangers held (${SILENT + fill} silent, ${HALF_HELLOS} half ClientHellos), closed after ` +
        `${Math.round(Math.min(...heldClosedAfter))}-${Math.round(Math.max(...heldClosedAfter))} ms; ${extra.length} past the cap closed after ` +
        `${Math.round(Math.min(...extraClosedAfter))}-${Math.round(Math.max(...extraClosedAfter))} ms; a push went through meanwhile`,
    );
    expect(stillOpen, 'strangers were dropped before the timeout, during the push').toBe(SILENT + HALF_HELLOS);
    expect(extraClosedAfter.filter((ms) => ms >= 2_000), 'connections past the cap were held').toEqual([]);
    expect(heldClosedAfter.filter((ms) => ms < HANDSHAKE_TIMEOUT_MS - 1_000 || ms >= HANDSHAKE_TIMEOUT_MS + 8_000), 'closed outside the handshake timeout').toEqual([]);
    expect(held.every((h) => h.received < 64), 'a stranger got more than a TLS alert').toBe(true);

    // logged with the remote address (rate-limited: a few lines, then a count)
    await until('the agent logs the timeouts and the refusals', () => db.logs.some((l) => /handshake/.test(String(l.msg))) && db.logs.some((l) => /refused/.test(String(l.msg))), { daemon: db });
    const handshake = db.logs.filter((l) => /handshake/.test(String(l.msg)));
    const refused = db.logs.filter((l) => /refused/.test(String(l.msg)));
    expect(handshake[0]!.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(refused[0]!.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(handshake.length + refused.length, 'the log was flooded: it is rate-limited').toBeLessThan(30);

    // once they are gone, the configured peer pushes again
    await fsp.writeFile(path.join(src, 'two.bin'), randomBytes(200 * 1024, 'peer-port-2'));
    const second = (await okJson(['backup', '--repo', a.repo, '--path', src, '--host', 'a'], { password: a.password })).snapshot as string;
    await ok(['--config', a.config, 'replicate', 'b'], { password: a.password });
    const t2 = path.join(a.dir, 'restored-2');
    await ok(['restore', second, '--repo', replicaOf(b, a), '--target', t2], { password: a.password });
    expect(diffManifests(await manifest(src), await manifest(t2))).toEqual([]);
    counts.snapshots_checked++;
    expect(db.child.exitCode, 'the agent exited').toBeNull();
  }, 90_000);
});
