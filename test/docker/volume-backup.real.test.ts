/**
 * Volume backup and restore against the real engine, through the CLI: the
 * consistency labels do what they say while a container keeps writing.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import { lifeboat, tempDir, cleanup as cleanupDirs } from '../cli/run.ts';
import { busyboxImage, cleanup, ensureEngine, TEST_LABELS, testSpec, uniqueName } from './harness.ts';

let engine: DockerodeEngine;
let dir: string;
let config: string;
let repo: string;

beforeAll(async () => {
  engine = await ensureEngine();
  await busyboxImage();
  dir = await tempDir('lifeboat-volume-');
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

const cli = (args: string[]) => lifeboat(['--config', config, '--json', ...args], { timeoutMs: 120_000 });

async function volumeWith(files: Record<string, Buffer | string> = {}): Promise<{ name: string; mountpoint: string }> {
  const v = await engine.createVolume(uniqueName('vol'), { labels: { ...TEST_LABELS } });
  for (const [name, content] of Object.entries(files)) await fsp.writeFile(path.join(v.mountpoint, name), content);
  return { name: v.name, mountpoint: v.mountpoint };
}

async function container(volume: string, labels: Record<string, string>, cmd: string[], start = true): Promise<string> {
  const id = await engine.createContainer(
    testSpec({
      name: uniqueName('ctr'),
      cmd,
      labels,
      // sleep and the shell ignore SIGTERM as PID 1: stop with KILL, the data is the volume's anyway.
      stopSignal: 'SIGKILL',
      mounts: [{ type: 'volume', name: volume, source: '', destination: '/data', readOnly: false }],
    }),
  );
  if (start) await engine.start(id);
  return id;
}

const state = async (id: string) => (await engine.inspectContainer(id))!.state;
const lines = (text: string) => text.split('\n').filter((l) => l !== '');

describe('volume backup on a real engine', () => {
  it('pause-during-backup: the snapshot holds what the writer had written at the pause, and it writes on after', async () => {
    // The writer appends i to a, then to b, forever; 24 MiB between them in name order makes
    // an unpaused read of b come long after the read of a, so b would run far ahead.
    const vol = await volumeWith({ 'm-filler': Buffer.alloc(24 << 20, 1) });
    const writer = await container(vol.name, { 'lifeboat.pause-during-backup': 'true' }, [
      'sh',
      '-c',
      'i=0; while true; do i=$((i+1)); echo $i >> /data/a; echo $i >> /data/z; done',
    ]);
    await waitFor(async () => lines(await fsp.readFile(path.join(vol.mountpoint, 'z'), 'utf8').catch(() => '')).length > 1000);

    const r = await cli(['backup', vol.name]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.json();
    expect(out.volume).toBe(vol.name);
    expect(out.containers).toEqual([{ container: expect.any(String), action: 'paused', ms: expect.any(Number) }]);
    expect(await state(writer)).toBe('running');

    const target = await engine.createVolume(uniqueName('copy'), { labels: { ...TEST_LABELS } });
    const restored = await cli(['restore', out.snapshot, '--to-volume', target.name]);
    expect(restored.code, restored.stderr).toBe(0);
    const a = lines(await fsp.readFile(path.join(target.mountpoint, 'a'), 'utf8'));
    const z = lines(await fsp.readFile(path.join(target.mountpoint, 'z'), 'utf8'));
    // Frozen between or within one iteration: a has z's lines, or one more.
    expect(a.length - z.length).toBeGreaterThanOrEqual(0);
    expect(a.length - z.length).toBeLessThanOrEqual(1);
    expect(a).toEqual(a.map((_, i) => String(i + 1)));
    expect(z).toEqual(a.slice(0, z.length));
    // The live volume went on from exactly there.
    const live = lines(await fsp.readFile(path.join(vol.mountpoint, 'a'), 'utf8'));
    await waitFor(async () => lines(await fsp.readFile(path.join(vol.mountpoint, 'a'), 'utf8')).length > live.length);
    expect(live.slice(0, a.length)).toEqual(a);
  });

  it('stop-during-backup: a running container is stopped and started again; a stopped one stays stopped', async () => {
    const vol = await volumeWith({ 'data.db': 'rows\n' });
    const running = await container(vol.name, { 'lifeboat.stop-during-backup': 'true' }, ['sleep', '600']);
    const stopped = await container(vol.name, { 'lifeboat.stop-during-backup': 'true' }, ['sleep', '600']);
    await engine.stop(stopped, 1);
    const r = await cli(['backup', vol.name]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json().containers.map((c: { action: string }) => c.action)).toEqual(['stopped']);
    expect(await state(running)).toBe('running');
    expect(await state(stopped)).toBe('exited');
  });

  it('a failing backup-pre hook fails the backup with a clear error and leaves the container running', async () => {
    const vol = await volumeWith({ 'x': 'y' });
    const app = await container(
      vol.name,
      { 'lifeboat.backup-pre': 'echo cannot flush >&2; exit 7', 'lifeboat.pause-during-backup': 'true' },
      ['sleep', '600'],
    );
    const before = (await cli(['snapshots'])).json().length;
    const r = await cli(['backup', vol.name]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^lifeboat: lifeboat\.backup-pre of container lbt-ctr-\w+ exited with 7: cannot flush \[LB_ERR_HOOK_FAILED\]$/m);
    expect(await state(app)).toBe('running');
    expect((await cli(['snapshots'])).json().length).toBe(before);
  });

  it('restores into a new volume with ownership and modes, and refuses a non-empty one without --force', async () => {
    const vol = await volumeWith();
    await fsp.mkdir(path.join(vol.mountpoint, 'pgdata'), { mode: 0o700 });
    await fsp.writeFile(path.join(vol.mountpoint, 'pgdata', 'PG_VERSION'), '16\n', { mode: 0o600 });
    await fsp.chown(path.join(vol.mountpoint, 'pgdata'), 999, 999);
    await fsp.chown(path.join(vol.mountpoint, 'pgdata', 'PG_VERSION'), 999, 999);
    const snap = (await cli(['backup', vol.name])).json().snapshot;

    const fresh = uniqueName('fresh');
    const r = await cli(['restore', snap, '--to-volume', fresh]);
    expect(r.code, r.stderr).toBe(0);
    const created = (await engine.inspectVolume(fresh))!;
    try {
      const st = await fsp.stat(path.join(created.mountpoint, 'pgdata', 'PG_VERSION'));
      expect([st.uid, st.gid, st.mode & 0o777]).toEqual([999, 999, 0o600]);
      const d = await fsp.stat(path.join(created.mountpoint, 'pgdata'));
      expect([d.uid, d.mode & 0o777]).toEqual([999, 0o700]);

      const again = await cli(['restore', snap, '--to-volume', fresh]);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('[LB_ERR_VOLUME_NOT_EMPTY]');
      expect((await cli(['restore', snap, '--to-volume', fresh, '--force'])).code).toBe(0);
    } finally {
      await engine.removeVolume(fresh);
    }
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}
