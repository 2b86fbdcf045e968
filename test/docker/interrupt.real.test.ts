/**
 * Ctrl-C on `lifeboat backup VOLUME` (issue 12, item 8), against the real
 * engine through the real CLI: SIGINT or SIGTERM while the volume's
 * containers are stopped and paused puts both back before the process exits
 * (exit 1, one line with LB_ERR_INTERRUPTED), releases the repository lock
 * and leaves no quiesce journal behind; a second signal during that cleanup
 * exits at once, naming what it leaves, and the next backup puts it back.
 *
 * The first test signals a backup that is really reading: the volume holds a
 * sparse file of 64 GiB (zeros cost no disk, but every byte is read and
 * hashed), far more than the test waits for. The others hold the backup at
 * the fault point "quiesced" (src/util/fault.ts), so the signals land at a
 * known point without any timing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import type { ContainerState } from '../../src/docker/engine.ts';
import { BIN, cleanup as cleanupDirs, expectFailure, lifeboat, PASSWORD, type RunResult, sql, tempDir } from '../cli/run.ts';
import { busyboxImage, cleanup, ensureEngine, TEST_LABELS, testSpec, uniqueName } from './harness.ts';

let engine: DockerodeEngine;
let dir: string;
let config: string;
let repo: string;

beforeAll(async () => {
  engine = await ensureEngine();
  await busyboxImage();
  dir = await tempDir('lifeboat-interrupt-');
  repo = path.join(dir, 'repo');
  config = path.join(dir, 'lifeboat.toml');
  await fsp.writeFile(
    config,
    [
      '[agent]',
      `state_dir = ${JSON.stringify(path.join(dir, 'state'))}`,
      '[repository]',
      `path = ${JSON.stringify(repo)}`,
      '[docker]',
      'hook_timeout = "10s"',
      'stop_timeout = "5s"',
    ].join('\n'),
  );
  expect((await lifeboat(['init', '--repo', repo])).code).toBe(0);
});

afterAll(async () => {
  await cleanup();
  await cleanupDirs();
});

interface Running {
  readonly child: ChildProcess;
  readonly done: Promise<RunResult>;
}

/** Starts `lifeboat --config CONFIG args...` as lifeboat() in ../cli/run.ts does, keeping the child to signal it. */
function start(args: readonly string[], env: Record<string, string> = {}): Running {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('LIFEBOAT_') && k !== 'NODE_OPTIONS' && !k.startsWith('VITEST')) clean[k] = v;
  }
  const child = spawn(BIN, ['--config', config, ...args], { env: { ...clean, LIFEBOAT_PASSWORD: PASSWORD, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      resolve({ code, signal, stdout, stderr: Buffer.concat(err).toString('utf8'), json: () => JSON.parse(stdout) });
    });
  });
  return { child, done };
}

const state = async (id: string): Promise<ContainerState> => (await engine.inspectContainer(id))!.state;

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A volume used by two running containers: one stopped during backups, one paused. */
async function setup(fill: (mountpoint: string) => Promise<void>): Promise<{ volume: string; stopper: { id: string; name: string }; pauser: { id: string; name: string } }> {
  const v = await engine.createVolume(uniqueName('int'), { labels: { ...TEST_LABELS } });
  await fill(v.mountpoint);
  const run = async (label: string) => {
    const name = uniqueName(label.includes('stop') ? 'stopper' : 'pauser');
    const id = await engine.createContainer(
      testSpec({
        name,
        cmd: ['sleep', '600'],
        labels: { [label]: 'true' },
        // sleep ignores SIGTERM as PID 1: stop with KILL
        stopSignal: 'SIGKILL',
        mounts: [{ type: 'volume', name: v.name, source: '', destination: '/data', readOnly: false }],
      }),
    );
    await engine.start(id);
    return { id, name };
  };
  return { volume: v.name, stopper: await run('lifeboat.stop-during-backup'), pauser: await run('lifeboat.pause-during-backup') };
}

const journal = async () => (await sql(path.join(dir, 'state', 'catalog.db'), 'SELECT name, action FROM quiesced ORDER BY name')) as { name: string; action: string }[];
const locks = async () => (await sql(path.join(repo, 'index.db'), 'SELECT pid FROM locks')) as { pid: number }[];
const volumeSnapshots = async (volume: string) =>
  ((await lifeboat(['--config', config, 'snapshots', '--json'])).json<{ volume: string | null }[]>()).filter((s) => s.volume === volume);

/** Starts `backup VOLUME` held at the fault point "quiesced": both containers are stopped or paused once it is there. */
async function heldBackup(volume: string): Promise<Running & { release: () => Promise<void> }> {
  const hold = path.join(dir, `hold-${Date.now()}`);
  const r = start(['backup', volume], { LIFEBOAT_FAULT: 'quiesced', LIFEBOAT_FAULT_HOLD: hold });
  await until('the backup to hold with its containers quiesced', () => fs.existsSync(hold) || r.child.exitCode !== null);
  expect(fs.existsSync(hold), 'the backup reached the fault point').toBe(true);
  return { ...r, release: () => fsp.rm(hold) };
}

describe('SIGINT and SIGTERM on backup VOLUME', () => {
  it('SIGINT while the volume is being read: both containers run again before it exits 1 with LB_ERR_INTERRUPTED, the lock released', async () => {
    const { volume, stopper, pauser } = await setup(async (m) => {
      await fsp.writeFile(path.join(m, 'small'), 'a few bytes\n');
      const fh = await fsp.open(path.join(m, 'huge.img'), 'w');
      await fh.truncate(64 * 1024 ** 3);
      await fh.close();
    });
    const r = start(['backup', volume]);
    // the event: both containers quiesced (the engine's state, polled), and the read under way
    await until('the stopper to be stopped and the pauser paused', async () => (await state(stopper.id)) === 'exited' && (await state(pauser.id)) === 'paused');
    await until('the backup to hold its lock', async () => (await locks()).length > 0);
    expect(r.child.exitCode, 'the backup is still running').toBeNull();
    const signalled = Date.now();
    r.child.kill('SIGINT');
    const out = await r.done;

    expect(out.signal, out.stderr).toBeNull();
    const message = expectFailure(out, 1, 'LB_ERR_INTERRUPTED');
    expect(message).toBe(`backup of volume ${volume} interrupted by SIGINT: no snapshot of it was saved, and its containers are back as they were`);
    expect(Date.now() - signalled, 'it stopped reading at once, not at the end of the volume').toBeLessThan(30_000);
    expect(await state(stopper.id)).toBe('running');
    expect(await state(pauser.id)).toBe('running');
    expect(await journal()).toEqual([]);
    expect(await locks()).toEqual([]);
    expect(await volumeSnapshots(volume)).toEqual([]);
  });

  it('SIGTERM does the same', async () => {
    const { volume, stopper, pauser } = await setup(async (m) => fsp.writeFile(path.join(m, 'data'), 'rows\n'));
    const held = await heldBackup(volume);
    expect([await state(stopper.id), await state(pauser.id)]).toEqual(['exited', 'paused']);
    held.child.kill('SIGTERM');
    await held.release();
    const out = await held.done;
    expect(expectFailure(out, 1, 'LB_ERR_INTERRUPTED')).toBe(
      `backup of volume ${volume} interrupted by SIGTERM: no snapshot of it was saved, and its containers are back as they were`,
    );
    expect([await state(stopper.id), await state(pauser.id)]).toEqual(['running', 'running']);
    expect(await journal()).toEqual([]);
    expect(await locks()).toEqual([]);
    expect(await volumeSnapshots(volume)).toEqual([]);
  });

  it('a second signal exits at once, naming the containers it leaves; the next backup puts them back', async () => {
    const { volume, stopper, pauser } = await setup(async (m) => fsp.writeFile(path.join(m, 'data'), 'rows\n'));
    const held = await heldBackup(volume);
    // both arrive while the backup holds, so the second comes before any container is put back
    held.child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 200));
    held.child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 200));
    await held.release();
    const out = await held.done;
    const message = expectFailure(out, 1, 'LB_ERR_INTERRUPTED');
    expect(message).toMatch(
      new RegExp(`^backup of volume ${volume} interrupted by SIGINT, and again: exiting without putting back (.+); the next volume backup or the agent puts them back, or docker unpause / docker start them$`),
    );
    expect(message).toContain(`container ${stopper.name} (stopped)`);
    expect(message).toContain(`container ${pauser.name} (paused)`);
    expect([await state(stopper.id), await state(pauser.id)]).toEqual(['exited', 'paused']);
    expect(await journal()).toEqual([
      { name: pauser.name, action: 'paused' },
      { name: stopper.name, action: 'stopped' },
    ].sort((a, b) => a.name.localeCompare(b.name)));

    // the next volume backup returns what the interrupted one left, as after a crash
    const next = await lifeboat(['--config', config, 'backup', volume, '--json'], { timeoutMs: 120_000 });
    expect(next.code, next.stderr).toBe(0);
    expect([await state(stopper.id), await state(pauser.id)]).toEqual(['running', 'running']);
    expect(await journal()).toEqual([]);
  });
});

describe('SIGINT on drill', () => {
  it('ends the wait, removes everything the drill made, and exits 1 with LB_ERR_INTERRUPTED', async () => {
    // a host of its own, whose one container never passes its healthcheck: the drill waits for it (120 s)
    const host = uniqueName('drill-src');
    const hostConfig = path.join(dir, `${host}.toml`);
    await fsp.writeFile(hostConfig, `${await fsp.readFile(config, 'utf8')}\n`.replace('[agent]\n', `[agent]\nhost = ${JSON.stringify(host)}\n`));
    const v = await engine.createVolume(uniqueName('drillvol'), { labels: { ...TEST_LABELS } });
    await fsp.writeFile(path.join(v.mountpoint, 'data'), 'rows\n');
    const id = await engine.createContainer(
      testSpec({
        name: uniqueName('never-healthy'),
        cmd: ['sleep', '600'],
        stopSignal: 'SIGKILL',
        mounts: [{ type: 'volume', name: v.name, source: '', destination: '/data', readOnly: false }],
        healthcheck: { test: ['CMD', 'false'], intervalNs: 1_000_000_000, timeoutNs: 1_000_000_000, retries: 1000, startPeriodNs: 0 },
      }),
    );
    await engine.start(id);
    const backedUp = await lifeboat(['--config', hostConfig, 'backup', v.name], { timeoutMs: 120_000 });
    expect(backedUp.code, backedUp.stderr).toBe(0);

    const r = start(['drill', '--from', host, '--repo', repo]);
    const drilled = async () => (await engine.listContainers()).filter((c) => c.labels['lifeboat.drill-from'] === host);
    await until('the drill copy of the container to run', async () => (await drilled()).some((c) => c.state === 'running'));
    const runId = (await drilled())[0]!.labels['lifeboat.drill']!;
    expect(r.child.exitCode, 'the drill is still waiting').toBeNull();
    r.child.kill('SIGINT');
    const out = await r.done;

    expect(out.signal, out.stderr).toBeNull();
    expect(expectFailure(out, 1, 'LB_ERR_INTERRUPTED')).toBe(`drill ${runId} of host ${host} interrupted by SIGINT: everything it made was removed`);
    const mine = (name: string, labels: Readonly<Record<string, string>> | null) => name.includes(runId) || labels?.['lifeboat.drill'] === runId;
    expect((await engine.listContainers()).filter((c) => mine(c.name, c.labels))).toEqual([]);
    expect((await engine.listVolumes()).filter((x) => mine(x.name, x.labels))).toEqual([]);
    expect((await engine.listNetworks()).filter((n) => mine(n.name, n.labels))).toEqual([]);
    expect(await locks()).toEqual([]);
  });
});
