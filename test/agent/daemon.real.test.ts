/**
 * `lifeboat run` as a real process on the real engine: continuous mode
 * commits a snapshot seconds after a write, the endpoint answers, SIGTERM
 * stops it cleanly without leaving a container paused, and a port in use
 * fails the start with exit 2.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/agent/status.ts';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import { cleanup as cleanupDirs, lifeboat, tempDir } from '../cli/run.ts';
import { busyboxImage, cleanup, ensureEngine, TEST_LABELS, testSpec, uniqueName } from '../docker/harness.ts';
import { type Daemon, freePort, startDaemon, until } from './daemon.ts';

const DEBOUNCE_MS = 1000;

let engine: DockerodeEngine;
let dir: string;
let repo: string;
let volume: { name: string; mountpoint: string };
let container: string;
let daemon: Daemon | undefined;

async function writeConfig(name: string, listen: string, extra = ''): Promise<string> {
  const file = path.join(dir, name);
  await fsp.writeFile(
    file,
    [
      '[agent]',
      `state_dir = ${JSON.stringify(path.join(dir, 'state'))}`,
      `listen = ${JSON.stringify(listen)}`,
      '[repository]',
      `path = ${JSON.stringify(repo)}`,
      '[backup]',
      'workers = 2',
      '[docker]',
      'stop_timeout = "2s"',
      '[journal]',
      'aggregate = "200ms"',
      '[volumes]',
      'track = "listed"',
      '[[volume]]',
      `name = ${JSON.stringify(volume.name)}`,
      'continuous = true',
      `debounce = "${DEBOUNCE_MS}ms"`,
      '[[volume]]',
      'name = "lbt-no-such-volume"',
      extra,
    ].join('\n'),
  );
  return file;
}

beforeAll(async () => {
  engine = await ensureEngine();
  await busyboxImage();
  dir = await tempDir('lifeboat-daemon-');
  repo = path.join(dir, 'repo');
  expect((await lifeboat(['init', '--repo', repo])).code).toBe(0);
  const v = await engine.createVolume(uniqueName('vol'), { labels: { ...TEST_LABELS } });
  volume = { name: v.name, mountpoint: v.mountpoint };
  await fsp.writeFile(path.join(volume.mountpoint, 'base.txt'), 'present before the agent started\n');
  // 10,000 more files in 100 directories: the incremental must not visit them
  for (let d = 0; d < 100; d++) {
    await fsp.mkdir(path.join(volume.mountpoint, `d${d}`));
    for (let f = 0; f < 100; f++) await fsp.writeFile(path.join(volume.mountpoint, `d${d}`, `f${f}`), `${d}/${f}\n`);
  }
  // a writer the backup pauses: after the agent stops, it must be running again
  container = await engine.createContainer(
    testSpec({
      name: uniqueName('ctr'),
      cmd: ['sleep', '600'],
      stopSignal: 'SIGKILL',
      labels: { 'lifeboat.pause-during-backup': 'true' },
      mounts: [{ type: 'volume', name: volume.name, source: '', destination: '/data', readOnly: false }],
    }),
  );
  await engine.start(container);
});

afterAll(async () => {
  daemon?.kill();
  await cleanup();
  await cleanupDirs();
});

/** The nice value of each thread of a process (field 19 of /proc/PID/task/TID/stat). */
function threadNices(pid: number): number[] {
  return fs.readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])];
    } catch {
      return []; // a thread that ended meanwhile
    }
  });
}

const volumeStatus = async (d: Daemon) => {
  const r = await d.get('/status');
  return (JSON.parse(r.body) as StatusReport).volumes.find((v) => v.name === volume.name);
};

describe('lifeboat run on a real engine', () => {
  it('continuous mode: a write is in a committed snapshot within the debounce plus a few seconds; metrics, health and status show it', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const config = await writeConfig('agent.toml', address);
    const d = (daemon = startDaemon(config, address));
    await until('healthz ok', async () => (await d.get('/healthz')).status === 200, { daemon: d });
    // continuous mode begins with a backup (a full scan: nothing was watched before)
    const first = await until('the first snapshot', async () => {
      const v = await volumeStatus(d);
      return (v?.last_snapshot && !v.running && v.journal.state === 'clean' && v) || undefined;
    }, { daemon: d });

    // it runs below the applications ([agent] nice = 10 by default): every thread, the backup's workers among them
    const nices = threadNices(d.child.pid!);
    expect(nices.length).toBeGreaterThan(8);
    expect(new Set(nices)).toEqual(new Set([10]));

    await fsp.writeFile(path.join(volume.mountpoint, 'd42', 'f7'), 'a write the recovery point must catch up with\n');
    const wrote = Date.now();
    const after = await until('a snapshot covering the write', async () => {
      const v = await volumeStatus(d);
      return (v?.last_snapshot && v.last_snapshot.id !== first.last_snapshot!.id && !v.running && v) || undefined;
    }, { daemon: d, intervalMs: 50, timeoutMs: DEBOUNCE_MS + 10_000 });
    const delay = Date.now() - wrote;
    expect(delay).toBeGreaterThanOrEqual(DEBOUNCE_MS);
    expect(delay).toBeLessThan(DEBOUNCE_MS + 5_000);
    // the journal's take named the changed file: the backup examined it and its directory, not the 10,101 entries
    expect(after.last_backup).toMatchObject({ files: 10_001, examined: 2 });
    expect(after.last_backup!.bytes_read).toBe('a write the recovery point must catch up with\n'.length);
    expect(after.last_backup!.lag_ms).toBeGreaterThanOrEqual(DEBOUNCE_MS);
    expect(after.last_backup!.lag_ms).toBeLessThanOrEqual(delay + 500);

    const status = JSON.parse((await d.get('/status')).body) as StatusReport;
    expect(status.agent).toMatchObject({ running: true, pid: d.child.pid, listen: address });
    expect(status.engine.reachable).toBe(true);
    expect(status.engine.version).toMatch(/^\d+\./);
    expect(status.missing).toEqual(['lbt-no-such-volume']);
    expect(status.peers).toEqual([]);
    expect(d.logs.filter((l) => l.level === 'error').map((l) => l.msg)).toEqual([
      'volume lbt-no-such-volume is listed in [[volume]] but the Docker engine has no volume of that name; the other volumes are backed up as usual',
    ]);

    const metrics = await d.get('/metrics');
    expect(metrics.status).toBe(200);
    const v = `{volume="${volume.name}"}`;
    expect(metrics.body).toMatch(new RegExp(`\\nlifeboat_volume_last_backup_lag_seconds\\{volume="${volume.name}"\\} [\\d.]+`));
    expect(metrics.body).toContain(`\nlifeboat_volume_last_backup_read_bytes${v} `);
    expect(metrics.body).toContain(`\nlifeboat_volume_recovery_point_age_seconds${v} `);
    expect(metrics.body).toContain(`\nlifeboat_backups_total{volume="${volume.name}",result="success"} `);
    expect(metrics.body).toContain('\nlifeboat_engine_up 1');
    expect(metrics.body).toMatch(/\nprocess_resident_memory_bytes \d+/);
    expect(JSON.parse((await d.get('/healthz')).body)).toEqual({ status: 'ok' });

    // `lifeboat status` asks the running agent
    const cli = await lifeboat(['--config', config, '--json', 'status']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.json<StatusReport>().agent.pid).toBe(d.child.pid);
  });

  it('a CLI backup of a volume the agent tracks goes through the agent: one at a time, and its status sees it', async () => {
    const d = daemon!;
    const config = path.join(dir, 'agent.toml');
    const before = (await volumeStatus(d))!.last_snapshot!.id;
    // two at once, as two operators might: the agent runs them one after the other, the container
    // paused by one backup at a time, and both end with a snapshot
    const [a, b] = await Promise.all([lifeboat(['--config', config, '--json', 'backup', volume.name]), lifeboat(['--config', config, '--json', 'backup', volume.name])]);
    for (const r of [a, b]) expect(r.code, r.stderr).toBe(0);
    const [sa, sb] = [a.json<{ snapshot: string; through_agent: boolean }>(), b.json<{ snapshot: string; through_agent: boolean }>()];
    expect([sa.through_agent, sb.through_agent]).toEqual([true, true]);
    expect(sa.snapshot).not.toBe(sb.snapshot);
    const now = (await volumeStatus(d))!;
    expect([sa.snapshot, sb.snapshot]).toContain(now.last_snapshot!.id);
    expect(now.last_snapshot!.id).not.toBe(before);
    expect(d.logs.filter((l) => l.msg === `missed a manual backup of volume ${volume.name}: the previous one has not ended`)).toEqual([]);
    // what the agent cannot honour is refused, not silently dropped
    const tagged = await lifeboat(['--config', config, 'backup', volume.name, '--tag', 'x']);
    expect(tagged.code).toBe(2);
    expect(tagged.stderr).toContain('--tag apply only when no agent runs');
    expect((await engine.inspectContainer(container))!.state).toBe('running');
  });

  it('a CLI restore into a volume the agent tracks goes through the agent, never beside a backup of it', async () => {
    const d = daemon!;
    const config = path.join(dir, 'agent.toml');
    const list = await lifeboat(['--config', config, '--json', 'snapshots', '--volume', volume.name]);
    expect(list.code, list.stderr).toBe(0);
    const first = list.json<{ id: string }[]>()[0]!.id;
    // a restore needs the volume's containers stopped
    await engine.stop(container, 1);
    try {
      await fsp.writeFile(path.join(volume.mountpoint, 'base.txt'), 'changed after the snapshot\n');
      const r = await lifeboat(['--config', config, '--json', 'restore', first, '--to-volume', volume.name, '--force']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json()).toMatchObject({ snapshot: first, volume: volume.name, errors: 0 });
      expect(await fsp.readFile(path.join(volume.mountpoint, 'base.txt'), 'utf8')).toBe('present before the agent started\n');
      // the agent did it, in its queue: its log says so
      expect(d.logs.some((l) => l.msg === `restored snapshot ${first.slice(0, 8)} into volume ${volume.name}`)).toBe(true);
    } finally {
      await engine.start(container);
    }
  });

  it('SIGTERM during a backup: exits 0 within seconds, the paused container runs again', async () => {
    const d = daemon!;
    // a backup big enough to be caught under way
    await fsp.writeFile(path.join(volume.mountpoint, 'big.bin'), Buffer.alloc(64 * 1024 * 1024, 3));
    const caught = await until('the backup under way', async () => (await volumeStatus(d))?.running === true, { daemon: d, intervalMs: 20, timeoutMs: DEBOUNCE_MS + 10_000 }).then(
      () => true,
      () => false,
    );
    const signalled = Date.now();
    d.child.kill('SIGTERM');
    const exit = await d.exited;
    expect(exit, d.stderr()).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeLessThan(10_000);
    expect((await engine.inspectContainer(container))!.state).toBe('running');
    expect(d.logs.at(-1)!.msg).toBe('lifeboat agent stopped');
    if (caught) {
      // the backup under way was let finish, not abandoned
      const msgs = d.logs.map((l) => l.msg);
      const waited = msgs.indexOf(`stopping: waiting for backup of volume ${volume.name} to finish`);
      expect(waited, msgs.join('\n')).toBeGreaterThan(0);
      expect(msgs.slice(waited)).toContain(`volume ${volume.name} backed up`);
    }
    expect(d.stderr()).toBe('');
    daemon = undefined;

    // without an agent, status says so and reads the repository itself
    const config = path.join(dir, 'agent.toml');
    const r = await lifeboat(['--config', config, '--json', 'status']);
    expect(r.code, r.stderr).toBe(0);
    const s = r.json<StatusReport>();
    expect(s.agent.running).toBe(false);
    expect(s.notes[0]).toMatch(/^agent: not running \(nothing answers at http:\/\/127\.0\.0\.1:\d+: connection refused\)$/);
    expect(s.volumes.map((x) => x.name)).toEqual([volume.name]);
    expect(s.volumes[0]!.last_snapshot).not.toBeNull();
    const text = await lifeboat(['--config', config, 'status']);
    expect(text.stdout).toMatch(/^agent {6}not running/);
  });

  it('a port in use: exit 2 with the address in the message, nothing started', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const address = `127.0.0.1:${(blocker.address() as net.AddressInfo).port}`;
    try {
      const config = await writeConfig('busy.toml', address);
      const d = startDaemon(config, address);
      const exit = await d.exited;
      expect(exit.code).toBe(2);
      expect(d.stderr()).toBe(`lifeboat: agent.listen: cannot listen on ${address}: the address is in use (is another agent running?) [LB_ERR_LISTEN]\n`);
      expect(d.logs).toEqual([]);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });
});
