/**
 * The Docker engine dies while a volume backup has its containers paused and
 * stopped, on a second dockerd of the test's own: SIGKILL to dockerd and to
 * its containerd. The backup holds at the fault point "quiesced" (src/util/
 * fault.ts: LIFEBOAT_FAULT_HOLD) while the test kills and restarts the engine,
 * so nothing depends on timing. A dockerd restarted without live-restore
 * leaves every container exited, the paused one too; whatever happens, both
 * containers must end running, as they were before the backup:
 *
 * - the engine is back before the backup ends: the backup returns them itself;
 * - the engine is still down when the backup ends: the backup fails, and the
 *   agent (lifeboat run), reconnecting, returns them from the quiesce journal;
 * - the backup itself is killed while they are quiesced: the next volume
 *   backup returns them before it starts.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import type { ContainerState } from '../../src/docker/engine.ts';
import { type Daemon, freePort, startDaemon, until } from '../agent/daemon.ts';
import { cleanup as cleanupDirs, lifeboat, ok, okJson, type RunResult, sql, tempDir } from '../cli/run.ts';
import { randomBytes } from '../cli/tree.ts';
import { busyboxImage, ensureEngine, type SecondEngine, startSecondEngine, TEST_LABELS, testSpec, uniqueName } from '../docker/harness.ts';
import { noteFailure } from './crash-harness.ts';
import { writeSummary } from './report.ts';

let dir: string;
let second: SecondEngine | undefined;
let engine: DockerodeEngine;
let config: string;
let volume: string;
let ids: { paused: string; stopped: string };
let daemon: Daemon | undefined;
let listen: string;
/** For report.ts: engine kills and backup kills, and the times both containers ended running with the repository sound. */
const counts = { faults_injected: 0, crashes_survived: 0 };
const failures: string[] = [];

const engineDir = () => path.join(dir, 'engine');

beforeAll(async () => {
  dir = await tempDir('lifeboat-engine-kill-');
  second = await startSecondEngine(engineDir());
  engine = await ensureEngine(second.socket);
  const image = await busyboxImage(second.socket);
  volume = (await engine.createVolume(uniqueName('ek'), { labels: { ...TEST_LABELS } })).name;
  const mountpoint = (await engine.inspectVolume(volume))!.mountpoint;
  await fsp.writeFile(path.join(mountpoint, 'data.bin'), randomBytes(2 * 1024 * 1024, 'engine-kill'));
  const run = async (name: string, label: string) => {
    const id = await engine.createContainer(
      testSpec({
        name: uniqueName(name),
        image,
        cmd: ['sh', '-c', 'trap "exit 0" TERM; sleep 600 & wait'],
        labels: { [label]: 'true' },
        mounts: [{ type: 'volume', name: volume, source: '', destination: '/data', readOnly: false }],
      }),
    );
    await engine.start(id);
    return id;
  };
  ids = { paused: await run('paused', 'lifeboat.pause-during-backup'), stopped: await run('stopped', 'lifeboat.stop-during-backup') };
  config = path.join(dir, 'lifeboat.toml');
  listen = `127.0.0.1:${await freePort()}`;
  await fsp.writeFile(
    config,
    [
      '[agent]',
      `state_dir = ${JSON.stringify(path.join(dir, 'state'))}`,
      `listen = ${JSON.stringify(listen)}`,
      '[repository]',
      `path = ${JSON.stringify(path.join(dir, 'repo'))}`,
      '[docker]',
      `host = ${JSON.stringify(`unix://${second.socket}`)}`,
      'stop_timeout = "5s"',
      '[journal]',
      'enabled = false',
      // the agent backs nothing up by itself: the test's CLI backups are the only ones
      '[volumes]',
      'track = "listed"',
    ].join('\n'),
  );
  await ok(['init', '--config', config]);
});

afterAll(async () => {
  writeSummary({ suite: 'faults', part: 'engine-kill', counts, failures });
  daemon?.kill();
  if (second) {
    // a test that failed with the engine killed: bring it back to remove what it holds
    if (!(await engine.ping().then(() => true, () => false))) second = await startSecondEngine(engineDir()).catch(() => undefined);
    for (const id of Object.values(ids ?? {})) await engine.removeContainer(id, { force: true }).catch(() => {});
    if (volume) await engine.removeVolume(volume).catch(() => {});
    await second?.stop();
  }
  // whatever a killed engine left mounted under its data-root
  for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n').reverse()) {
    const target = line.split(' ')[1];
    if (dir && target?.startsWith(dir)) spawnSync('umount', ['-l', target]);
  }
  await cleanupDirs();
});

const states = async (): Promise<ContainerState[]> =>
  Promise.all([ids.paused, ids.stopped].map(async (id) => (await engine.inspectContainer(id))!.state));
const bothRunning = async () => (await states()).every((s) => s === 'running');
const journal = async () => (await sql(path.join(dir, 'state', 'catalog.db'), 'SELECT action, owner FROM quiesced ORDER BY action')) as { action: string; owner: string | null }[];

/** Starts `backup VOLUME` held at the fault point "quiesced" (containers paused and stopped); resolves once it is there. */
async function heldBackup(): Promise<{ release: () => Promise<RunResult> }> {
  const hold = path.join(dir, `hold-${Date.now()}`);
  const running = lifeboat(['--config', config, 'backup', volume, '--json'], {
    env: { LIFEBOAT_FAULT: 'quiesced', LIFEBOAT_FAULT_HOLD: hold },
    timeoutMs: 120_000,
  });
  await until('the backup to hold with its containers quiesced', () => fs.existsSync(hold) || undefined, { timeoutMs: 60_000 });
  expect(await states()).toEqual(['paused', 'exited']);
  expect(await journal()).toHaveLength(2);
  return {
    release: async () => {
      await fsp.rm(hold);
      return running;
    },
  };
}

/** SIGKILL to dockerd and to the containerd it started, as an OOM kill or a crash would end them. */
async function killEngine(): Promise<void> {
  const dockerd = second!.pid;
  const containerd = childrenOf(dockerd).filter((pid) => commOf(pid) === 'containerd');
  expect(containerd, 'the second dockerd runs a containerd of its own').toHaveLength(1);
  for (const pid of [dockerd, ...containerd]) process.kill(pid, 'SIGKILL');
  counts.faults_injected++;
  await until('dockerd and containerd to be gone', () => [dockerd, ...containerd].every((pid) => !fs.existsSync(`/proc/${pid}`)) || undefined);
  await expect(engine.ping()).rejects.toThrow();
}

async function restartEngine(): Promise<void> {
  second = await startSecondEngine(engineDir());
  // without live-restore, the containers went down with the daemon, the paused one too
  expect(await states()).toEqual(['exited', 'exited']);
}

/** The repository came through it too: it verifies clean, every blob read back. */
async function survived(): Promise<void> {
  const check = await okJson(['--config', config, 'verify', '--read-data']);
  expect(check.problems).toEqual([]);
  counts.crashes_survived++;
}

function childrenOf(pid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map(Number)
    .filter((p) => {
      try {
        const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    });
}

function commOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

describe('the Docker engine killed mid-backup: the containers end in their prior running state', () => {
  it('the engine is back before the backup ends: the backup returns both itself', async (ctx) => {
    ctx.onTestFailed(noteFailure(failures, 'engine back before the backup ends'));
    expect(await bothRunning()).toBe(true);
    const backup = await heldBackup();
    await killEngine();
    await restartEngine();
    const r = await backup.release();
    expect(r.code, r.stderr).toBe(0);
    const out = r.json();
    expect(out.containers.map((c: { action: string }) => c.action).sort()).toEqual(['paused', 'stopped']);
    expect(await states()).toEqual(['running', 'running']);
    expect(await journal()).toEqual([]);
    await survived();
  });

  it('the engine is still down when the backup ends: the backup fails saying so, and the agent returns both when it reconnects', async (ctx) => {
    ctx.onTestFailed(noteFailure(failures, 'engine down when the backup ends'));
    expect(await bothRunning()).toBe(true);
    daemon = startDaemon(config, listen);
    await until('the agent connected to the engine', () => daemon!.logs.some((l) => l.msg === 'docker engine connected; following its events') || undefined, {
      daemon,
      timeoutMs: 30_000,
    });
    const backup = await heldBackup();
    await killEngine();
    const r = await backup.release();
    // its last line is the error (the line above is the log's record of it)
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/\nlifeboat: could not return containers to their running state: .+ \[LB_ERR_HOOK_FAILED\]\n$/);
    // released by the backup that gave up: nobody owns them now
    expect(await journal()).toEqual([
      { action: 'paused', owner: null },
      { action: 'stopped', owner: null },
    ]);

    await restartEngine();
    await until('the agent to start both containers again', bothRunning, { daemon, timeoutMs: 90_000 });
    expect(await journal()).toEqual([]);
    const returned = daemon.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('returned container '));
    expect(returned.map((l) => l.was).sort()).toEqual(['paused', 'stopped']);
    daemon.child.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
    daemon = undefined;
    await survived();
  });

  it('the backup is killed while they are quiesced: the next volume backup returns both before it starts', async (ctx) => {
    ctx.onTestFailed(noteFailure(failures, 'backup killed while quiesced'));
    expect(await bothRunning()).toBe(true);
    const trace = path.join(dir, 'trace');
    const killed = await lifeboat(['--config', config, 'backup', volume], { env: { LIFEBOAT_FAULT: 'quiesced', LIFEBOAT_FAULT_TRACE: trace } });
    expect(killed.signal).toBe('SIGKILL');
    expect(await fsp.readFile(trace, 'utf8')).toContain('kill quiesced 1');
    counts.faults_injected++;
    expect(await states()).toEqual(['paused', 'exited']);
    // owned by a process that is gone
    expect((await journal()).map((j) => j.owner === null)).toEqual([false, false]);

    const next = await lifeboat(['--config', config, 'backup', volume, '--json']);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toMatch(/returned container .+ to running: an interrupted backup had left it paused/);
    expect(next.stderr).toMatch(/returned container .+ to running: an interrupted backup had left it stopped/);
    expect(await states()).toEqual(['running', 'running']);
    expect(await journal()).toEqual([]);
    await survived();
  });
});
