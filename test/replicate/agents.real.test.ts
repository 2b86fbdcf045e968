/**
 * Two real agents replicating to each other, each with its own state,
 * repository, password, ports and Docker engine (the machine's dockerd and a
 * second one): what a write on one becomes on the other, what the peer may
 * refuse, and what survives an agent killed in the middle of a push.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import type { PushOutcome } from '../../src/replicate/replicator.ts';
import { type Daemon, until } from '../agent/daemon.ts';
import { cleanup as cleanupDirs, expectFailure, lifeboat, tempDir } from '../cli/run.ts';
import { busyboxImage, cleanup, ensureEngine, type SecondEngine, startSecondEngine, TEST_LABELS, testSpec, uniqueName } from '../docker/harness.ts';
import { Fleet, makeAgent, packFiles, peer, replicaOf, type TestAgent, writeConfig } from './agents.ts';

let engineA: DockerodeEngine;
let engineB: DockerodeEngine;
let second: SecondEngine | undefined;
let secondDir: string;
let a: TestAgent & { setup: object };
let b: TestAgent & { setup: object };
const volA = uniqueName('repl-a');
const volB = uniqueName('repl-b');
let mountA: string;
let mountB: string;
const fleet = new Fleet();

const volumeEntry = (name: string) => ['[[volume]]', `name = ${JSON.stringify(name)}`, 'continuous = true', 'debounce = "1s"'].join('\n');

/** A volume with a container using it, on an engine. */
async function volumeWithContainer(engine: DockerodeEngine, name: string, image: string): Promise<string> {
  const v = await engine.createVolume(name, { labels: { ...TEST_LABELS } });
  const id = await engine.createContainer(
    testSpec({ name: uniqueName('ctr'), image, cmd: ['sh', '-c', 'trap "exit 0" TERM; sleep 600 & wait'], mounts: [{ type: 'volume', name, source: '', destination: '/data', readOnly: false }] }),
  );
  await engine.start(id);
  return v.mountpoint;
}

beforeAll(async () => {
  engineA = await ensureEngine();
  secondDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-repl-2nd-'));
  second = await startSecondEngine(secondDir);
  engineB = await ensureEngine(second.socket);
  mountA = await volumeWithContainer(engineA, volA, await busyboxImage());
  mountB = await volumeWithContainer(engineB, volB, await busyboxImage(second.socket));
  // the 40 MiB pushes are throttled to 16 MiB/s so that they can be caught under way
  const replication = ['bandwidth = "16MiB"', 'timeout = "5s"', 'retry = "1s"'].join('\n');
  a = await makeAgent('a', { extra: volumeEntry(volA), replication });
  b = await makeAgent('b', { docker: `unix://${second.socket}`, extra: volumeEntry(volB), replication });
  await writeConfig(a, [{ agent: b }]);
  await writeConfig(b, [{ agent: a }]);
});

afterAll(async () => {
  await fleet.stopAll();
  await cleanup();
  if (second) {
    for (const c of await engineB.listContainers()) await engineB.removeContainer(c.id, { force: true }).catch(() => {});
    await second.stop();
  }
  await fsp.rm(secondDir, { recursive: true, force: true });
  await cleanupDirs();
});

const start = (agent: TestAgent): Daemon => fleet.start(agent);

async function healthy(d: Daemon): Promise<void> {
  await until('the agent answers', async () => (await d.get('/healthz')).status === 200, { daemon: d, timeoutMs: 30_000 });
}

/** Snapshots of a volume in a repository or replica, newest last, read with `password`. */
async function volumeSnapshots(repo: string, volume: string, password: string): Promise<{ id: string; time: string }[]> {
  const r = await lifeboat(['snapshots', '--repo', repo, '--json'], { password });
  if (r.code !== 0) throw new Error(r.stderr);
  return r.json<{ id: string; time: string; volume: string | null }[]>().filter((s) => s.volume === volume);
}

async function restoreFile(repo: string, snapshot: string, password: string, file: string): Promise<Buffer> {
  const target = path.join(await tempDir('lifeboat-repl-restore-'), 't');
  const r = await lifeboat(['restore', snapshot, '--repo', repo, '--target', target], { password });
  if (r.code !== 0) throw new Error(r.stderr);
  return fsp.readFile(path.join(target, file));
}

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** Waits until the source's newest snapshot of `volume` is in the holder's replica; returns its id. */
async function replicated(source: TestAgent, holder: TestAgent, volume: string, after: string | undefined, d: Daemon): Promise<string> {
  return until(
    `a new snapshot of ${volume} replicated from ${source.name} to ${holder.name}`,
    async () => {
      const own = (await volumeSnapshots(source.repo, volume, source.password)).at(-1);
      if (!own || own.id === after) return undefined;
      if (!fs.existsSync(path.join(replicaOf(holder, source), 'config.json'))) return undefined;
      const there = await volumeSnapshots(replicaOf(holder, source), volume, source.password);
      return there.some((s) => s.id === own.id) ? own.id : undefined;
    },
    { daemon: d, timeoutMs: 60_000, intervalMs: 250 },
  );
}

describe('two agents replicating to each other', () => {
  let da: Daemon;
  let db: Daemon;

  it('a write on A is in B\'s replica within seconds, restores on B with A\'s password only, and verifies', async () => {
    db = start(b);
    da = start(a);
    await Promise.all([healthy(da), healthy(db)]);
    const first = await replicated(a, b, volA, undefined, da);

    await fsp.writeFile(path.join(mountA, 'note.txt'), 'written on A\n');
    const wrote = Date.now();
    const snap = await replicated(a, b, volA, first, da);
    // debounce 1 s + backup + push, on a busy 2-core machine
    expect(Date.now() - wrote).toBeLessThan(20_000);
    const replica = replicaOf(b, a);
    expect((await restoreFile(replica, snap, a.password, 'note.txt')).toString()).toBe('written on A\n');
    expectFailure(await lifeboat(['snapshots', '--repo', replica], { password: b.password }), 1, 'LB_ERR_WRONG_PASSWORD');
    const verify = await lifeboat(['verify', '--repo', replica, '--read-data', '--json'], { password: a.password });
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.json<{ problems: unknown[] }>().problems).toEqual([]);

    const p = await until('A sees B up to date', async () => {
      const x = await peer(da, 'b');
      return x.pending === 0 && x.state === 'idle' && x;
    }, { daemon: da });
    expect(p).toMatchObject({ pending: 0, lag_s: 0, failures: 0, last_error: null, push: true });
    const cli = await lifeboat(['--config', a.config, '--json', 'peers'], { password: null });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.json<{ name: string; pending: number }[]>()).toEqual([expect.objectContaining({ name: 'b', pending: 0 })]);
    const metrics = (await da.get('/metrics')).body;
    expect(metrics).toMatch(/\nlifeboat_replication_pushes_total\{peer="b",result="success"\} [1-9]/);
    expect(metrics).toMatch(/\nlifeboat_peer_pending_snapshots\{peer="b"\} 0\n/);
    // what a disaster on A would lose of this volume, given what B holds: seconds
    const rpo = new RegExp(`\\nlifeboat_rpo_seconds\\{volume="${volA}",peer="b"\\} ([0-9.e+-]+)\\n`).exec(metrics);
    expect(rpo, metrics).not.toBeNull();
    expect(Number(rpo![1])).toBeLessThan(120);
    const bMetrics = (await db.get('/metrics')).body;
    expect(bMetrics).toMatch(/\nlifeboat_replica_received_bytes_total\{peer="a"\} [1-9]/);
    expect((await peer(db, 'a')).replica?.snapshots).toBeGreaterThanOrEqual(2);
  });

  it('and B to A likewise, from B\'s own engine', async () => {
    await fsp.writeFile(path.join(mountB, 'note.txt'), 'written on B\n');
    const snap = await until('a snapshot of B\'s volume with the note', async () => {
      const s = (await volumeSnapshots(b.repo, volB, b.password)).at(-1);
      return s && (await restoreFile(b.repo, s.id, b.password, 'note.txt').then((x) => x.toString() === 'written on B\n', () => false)) && s.id;
    }, { daemon: db, timeoutMs: 30_000, intervalMs: 500 });
    await until('B\'s snapshot in A\'s replica', async () => (await volumeSnapshots(replicaOf(a, b), volB, b.password).catch(() => [])).some((s) => s.id === snap), { daemon: db, timeoutMs: 30_000 });
    expect((await restoreFile(replicaOf(a, b), snap, b.password, 'note.txt')).toString()).toBe('written on B\n');
  });

  it('`lifeboat replicate` goes through the running agent', async () => {
    // no password: only the agent, which has it, can push
    const r = await lifeboat(['--config', a.config, '--json', 'replicate', 'b'], { password: null });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json<PushOutcome[]>()).toEqual([expect.objectContaining({ peer: 'b', ok: true })]);
    expectFailure(await lifeboat(['--config', a.config, 'replicate', 'nobody'], { password: null }), 2, 'LB_ERR_USAGE');
  });

  it('an agent whose id nobody configured is refused at the handshake, and the peer logs it', async () => {
    const stranger = await makeAgent('stranger');
    await writeConfig(stranger, [{ agent: b }]);
    await lifeboat(['init', '--repo', stranger.repo], { password: stranger.password });
    const r = await lifeboat(['--config', stranger.config, 'replicate'], { password: stranger.password });
    expect(expectFailure(r, 1, 'LB_ERR_PEER_IDENTITY')).toMatch(/^replication to b failed: /);
    await until('B logs the refusal', () => db.logs.some((l) => l.msg === 'refused a peer whose id is not configured' && l.id === stranger.id), { daemon: db });
    expect(fs.existsSync(replicaOf(b, stranger))).toBe(false);
  });

  it('the source killed in the middle of a push: restarted, the push resumes and the replica restores bit-exact', async () => {
    const big = crypto.randomBytes(40 * 1024 * 1024);
    const before = packFiles(replicaOf(b, a));
    await fsp.writeFile(path.join(mountA, 'big.bin'), big);
    await until('the push under way, part of it on B', async () => (await peer(da, 'b')).state === 'pushing' && packFiles(replicaOf(b, a)) > before, { daemon: da, intervalMs: 50, timeoutMs: 60_000 });
    da.child.kill('SIGKILL');
    await da.exited;
    da = start(a);
    await healthy(da);
    await until('A up to date with B again', async () => {
      const p = await peer(da, 'b');
      return p.pending === 0 && p.state === 'idle';
    }, { daemon: da, timeoutMs: 60_000 });
    const snap = (await volumeSnapshots(a.repo, volA, a.password)).at(-1)!;
    expect(sha(await restoreFile(replicaOf(b, a), snap.id, a.password, 'big.bin'))).toBe(sha(big));
  });

  it('the peer killed in the middle of a push: restarted, the source\'s retry resumes and the replica restores bit-exact', async () => {
    const big = crypto.randomBytes(40 * 1024 * 1024);
    const before = packFiles(replicaOf(b, a));
    await fsp.writeFile(path.join(mountA, 'big2.bin'), big);
    await until('the push under way, part of it on B', async () => (await peer(da, 'b')).state === 'pushing' && packFiles(replicaOf(b, a)) > before, { daemon: da, intervalMs: 50, timeoutMs: 60_000 });
    db.child.kill('SIGKILL');
    await db.exited;
    await until('A notices', async () => (await peer(da, 'b')).failures > 0, { daemon: da, timeoutMs: 30_000 });
    db = start(b);
    await healthy(db);
    await until('A up to date with B again', async () => {
      const p = await peer(da, 'b');
      return p.pending === 0 && p.state !== 'pushing' && p.failures === 0;
    }, { daemon: da, timeoutMs: 90_000 });
    const snap = (await volumeSnapshots(a.repo, volA, a.password)).at(-1)!;
    expect(sha(await restoreFile(replicaOf(b, a), snap.id, a.password, 'big2.bin'))).toBe(sha(big));
    const verify = await lifeboat(['verify', '--repo', replicaOf(b, a), '--read-data', '--json'], { password: a.password });
    expect(verify.json<{ problems: unknown[] }>().problems).toEqual([]);
  });
});
