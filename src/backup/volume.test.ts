import fsp from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentCatalog } from '../catalog/agent-catalog.ts';
import type { ContainerSpec } from '../docker/engine.ts';
import { FakeEngine } from '../docker/fake-engine.ts';
import { spec, volumeMount } from '../docker/testing/inventory-fixture.ts';
import { HookFailedError, SourceError, VolumeExcludedError, VolumeNotEmptyError, VolumeNotFoundError } from '../errors/errors.ts';
import { listSnapshots, loadSnapshotMeta } from '../repo/snapshots.ts';
import { openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { describeTree, diffTrees } from '../repo/testing/tree-compare.ts';
import { restoreToVolume } from '../restore/volume.ts';
import type { StoreItem, StoreReply } from './jobs.ts';
import { StoreHookedPool } from './testing/store-hook.ts';
import { backupVolume, type VolumeSnapshotMeta } from './volume.ts';

const log = pino({ level: 'silent' });

describe('backupVolume (fake engine)', () => {
  let t: TestRepo;
  let engine: FakeEngine;
  let mountpoint: string;
  let catalog: AgentCatalog;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    catalog = AgentCatalog.open(await t.temp.make('lifeboat-state-'));
    engine = new FakeEngine(await t.temp.make('lifeboat-engine-'));
    engine.addImage({ repoTags: ['app:1'] });
    engine.addImage({ repoTags: ['db:1'], layers: [{ '/bin/db': 'db' }, { '/etc/db.conf': 'conf' }] });
    mountpoint = (await engine.createVolume('data')).mountpoint;
    await fsp.mkdir(path.join(mountpoint, 'pg'));
    await fsp.writeFile(path.join(mountpoint, 'pg', 'table'), Buffer.alloc(300_000, 5));
    await fsp.writeFile(path.join(mountpoint, 'hello.txt'), 'hello\n');
  });
  afterEach(() => {
    catalog.close();
    return t.close();
  });

  async function run(name: string, over: Partial<ContainerSpec> = {}, start = true): Promise<string> {
    const id = await engine.createContainer(spec(name, over.image ?? 'app:1', { mounts: [volumeMount('data', '/data')], networkMode: 'none', ...over }));
    if (start) await engine.start(id);
    return id;
  }

  const options = async () => ({
    volume: 'data',
    host: 'host-a',
    splitter: { kind: 'fixed' as const, size: 64 * 1024 },
    packSize: t.packSize,
    compressionLevel: 3,
    pool: t.pool,
    hookTimeoutMs: 5_000,
    stopTimeoutSeconds: 1,
    workDir: await t.temp.make('lifeboat-work-'),
    captureDir: await t.temp.make('lifeboat-capture-'),
    fingerprints: catalog.fingerprints('data'),
    log,
    quiesceJournal: catalog,
  });
  const state = async (id: string) => (await engine.inspectContainer(id))!.state;
  const calls = (id: string) => engine.calls.filter((c) => c.target === id).map((c) => c.method);

  it('pauses and stops as labelled, in dependency order, and returns every container to its state', async () => {
    const db = await run('db', { image: 'db:1', labels: { 'lifeboat.stop-during-backup': 'true' } });
    const app = await run('app', { labels: { 'lifeboat.stop-during-backup': 'true', 'lifeboat.depends-on': 'db' } });
    const cache = await run('cache', { labels: { 'lifeboat.pause-during-backup': 'true' } });
    const idle = await run('idle', { labels: { 'lifeboat.stop-during-backup': 'true' } }, false);
    engine.calls.length = 0;

    const r = await backupVolume(engine, t.repo, await options());

    expect(await Promise.all([db, app, cache].map(state))).toEqual(['running', 'running', 'running']);
    expect(await state(idle)).toBe('created'); // never started, so never touched
    expect(calls(idle)).toEqual([]);
    expect(calls(cache)).toEqual(['pause', 'unpause']);
    // Dependents stop first and start last.
    const order = engine.calls.filter((c) => c.method === 'stop' || c.method === 'start').map((c) => `${c.method} ${c.target === db ? 'db' : 'app'}`);
    expect(order).toEqual(['stop app', 'stop db', 'start db', 'start app']);
    expect(r.report.actions.map((a) => `${a.container} ${a.action}`).sort()).toEqual(['app stopped', 'cache paused', 'db stopped']);
    for (const a of r.report.actions) expect(a.ms).toBeGreaterThanOrEqual(0);

    expect(r.snapshot.volume).toBe('data');
    const copy = await restoreToVolume(engine, t.repo, r.snapshot, { volume: 'copy', force: false, pool: t.pool });
    expect(diffTrees(await describeTree(mountpoint), await describeTree(copy.volume.mountpoint))).toEqual([]);
  });

  it('records the containers\' specs and saves each image once, layer files and all', async () => {
    await run('one', { env: ['A=1'], labels: { role: 'web' } });
    await run('two');
    const first = await backupVolume(engine, t.repo, await options());
    const meta = (await loadSnapshotMeta(t.repo, first.snapshot)) as VolumeSnapshotMeta;
    expect(meta.kind).toBe('volume');
    expect(meta.containers.map((c) => c.spec.name).sort()).toEqual(['one', 'two']);
    expect(meta.containers.find((c) => c.spec.name === 'one')!.spec).toMatchObject({ env: ['A=1'], labels: { role: 'web' } });
    expect(meta.images).toHaveLength(1);
    expect(meta.images[0]!.repoTags).toEqual(['app:1']);
    const imageSnapshots = listSnapshots(t.repo).filter((s) => s.tags.includes('image'));
    expect(imageSnapshots.map((s) => s.id)).toEqual([meta.images[0]!.snapshot]);

    const second = await backupVolume(engine, t.repo, await options());
    expect(((await loadSnapshotMeta(t.repo, second.snapshot)) as VolumeSnapshotMeta).images[0]!.snapshot).toBe(meta.images[0]!.snapshot);
    expect(listSnapshots(t.repo).filter((s) => s.tags.includes('image'))).toHaveLength(1);
    expect(second.snapshot.parent).toBe(first.snapshot.id);
  });

  it('fails the backup on a failing backup-pre hook, before touching any container', async () => {
    const app = await run('app', { labels: { 'lifeboat.backup-pre': 'echo flushing; exit 3', 'lifeboat.pause-during-backup': 'true' } });
    engine.calls.length = 0;
    const err = await backupVolume(engine, t.repo, await options()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HookFailedError);
    expect((err as Error).message).toBe('lifeboat.backup-pre of container app exited with 3: flushing');
    expect(calls(app)).toEqual(['exec']);
    expect(await state(app)).toBe('running');
    expect(listSnapshots(t.repo).filter((s) => s.volume === 'data')).toEqual([]);
  });

  it('reports a failing backup-post hook as a warning; the snapshot stands', async () => {
    await run('app', { labels: { 'lifeboat.backup-post': 'exit 1' } });
    const r = await backupVolume(engine, t.repo, await options());
    expect(r.report.warnings).toEqual(['lifeboat.backup-post of container app exited with 1']);
    expect(listSnapshots(t.repo).map((s) => s.id)).toContain(r.snapshot.id);
  });

  it('times out a hook that hangs', async () => {
    await run('app', { labels: { 'lifeboat.backup-pre': 'sleep 5' } });
    const err = await backupVolume(engine, t.repo, { ...(await options()), hookTimeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HookFailedError);
    expect((err as Error).message).toMatch(/did not finish within 300 ms/);
  });

  it('restarts stopped and unpauses paused containers when the backup itself fails', async () => {
    const db = await run('db', { labels: { 'lifeboat.stop-during-backup': 'true' } });
    const cache = await run('cache', { labels: { 'lifeboat.pause-during-backup': 'true' } });
    // The read fails: the mountpoint vanishes (as a volume driver losing its storage would).
    await fsp.rm(mountpoint, { recursive: true });
    await expect(backupVolume(engine, t.repo, await options())).rejects.toBeInstanceOf(SourceError);
    expect(await state(db)).toBe('running');
    expect(await state(cache)).toBe('running');
  });

  it('thaws the frozen containers once the files are copied, before any is read, and the snapshot is what was frozen', async () => {
    const db = await run('db', { labels: { 'lifeboat.stop-during-backup': 'true' } });
    const cache = await run('cache', { labels: { 'lifeboat.pause-during-backup': 'true' } });
    const frozen = await describeTree(mountpoint);
    const states: string[] = [];
    let first = true;
    const opts = await options();
    const pool = new (class extends StoreHookedPool {
      override async store(items: readonly StoreItem[], send: () => Promise<StoreReply>): Promise<StoreReply> {
        // the first read of the volume's files (the images were stored before anything was frozen)
        if (first && items.some((i) => i.path.startsWith(opts.captureDir))) {
          first = false;
          states.push(await state(db), await state(cache));
          await fsp.writeFile(path.join(mountpoint, 'hello.txt'), 'written once the containers ran again\n');
        }
        return send();
      }
    })(t.repo, { workers: 2, level: 3, packSize: t.packSize });
    try {
      const r = await backupVolume(engine, t.repo, { ...opts, pool });
      expect(states).toEqual(['running', 'running']);
      await restoreToVolume(engine, t.repo, r.snapshot, { volume: 'copy', force: false, pool });
      expect(diffTrees(frozen, await describeTree((await engine.inspectVolume('copy'))!.mountpoint), { root: false })).toEqual([]);
    } finally {
      await pool.close();
    }
  });

  it('reads in place, frozen throughout, when the copies cannot be written, and says so', async () => {
    const cache = await run('cache', { labels: { 'lifeboat.pause-during-backup': 'true' } });
    const notADir = path.join(await t.temp.make('lifeboat-file-'), 'file');
    await fsp.writeFile(notADir, '');
    const warnings: string[] = [];
    const warned = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) });
    engine.calls.length = 0;
    const r = await backupVolume(engine, t.repo, { ...(await options()), captureDir: notADir, log: warned });
    expect(r.snapshot.stats.errors).toBe(0);
    expect(calls(cache)).toEqual(['pause', 'unpause', 'pause', 'unpause']);
    expect(await state(cache)).toBe('running');
    expect(warnings).toEqual(['could not copy the files while the containers were frozen: reading them in place, frozen throughout']);
  });

  it('takes lifeboat.consistency=pause and =stop as the two labels, and refuses a value it does not know before touching anything', async () => {
    const cache = await run('cache', { labels: { 'lifeboat.consistency': 'pause' } });
    const db = await run('db', { labels: { 'lifeboat.consistency': 'STOP' } });
    engine.calls.length = 0;
    await backupVolume(engine, t.repo, await options());
    expect(calls(cache)).toEqual(['pause', 'unpause']);
    expect(calls(db)).toEqual(['stop', 'start']);

    const odd = await run('odd', { labels: { 'lifeboat.consistency': 'mysql', 'lifeboat.backup-pre': 'touch /pre-ran' } });
    engine.calls.length = 0;
    const err = await backupVolume(engine, t.repo, await options()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LB_ERR_LABEL', exitCode: 2, message: 'container odd carries lifeboat.consistency="mysql": not one of postgres, pause, stop' });
    expect(engine.calls).toEqual([]); // no hook run, no image saved, nothing paused
    expect([await state(cache), await state(db), await state(odd)]).toEqual(['running', 'running', 'running']);
  });

  it('runs backup-post once the containers are back, also when the backup then fails (a pre hook\'s lock is undone)', async () => {
    const marker = path.join(await t.temp.make('lifeboat-post-'), 'ran');
    await run('cache', { labels: { 'lifeboat.pause-during-backup': 'true', 'lifeboat.backup-post': `touch ${marker}` } });
    await fsp.rm(mountpoint, { recursive: true });
    await expect(backupVolume(engine, t.repo, await options())).rejects.toBeInstanceOf(SourceError);
    await expect(fsp.access(marker)).resolves.toBeUndefined();
  });

  it('refuses a volume that does not exist or is excluded', async () => {
    await expect(backupVolume(engine, t.repo, { ...(await options()), volume: 'nope' })).rejects.toBeInstanceOf(VolumeNotFoundError);
    await run('app', { labels: { 'lifeboat.exclude': 'true' } });
    await expect(backupVolume(engine, t.repo, await options())).rejects.toBeInstanceOf(VolumeExcludedError);
  });
});

describe('restoreToVolume (fake engine)', () => {
  let t: TestRepo;
  let engine: FakeEngine;
  let catalog: AgentCatalog;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    catalog = AgentCatalog.open(await t.temp.make('lifeboat-state-'));
    engine = new FakeEngine(await t.temp.make('lifeboat-engine-'));
    const v = await engine.createVolume('data');
    await fsp.writeFile(path.join(v.mountpoint, 'file'), 'snapshot content');
  });
  afterEach(() => {
    catalog.close();
    return t.close();
  });

  const snapshotOfData = async () =>
    (
      await backupVolume(engine, t.repo, {
        volume: 'data',
        host: 'h',
        splitter: { kind: 'fixed', size: 65536 },
        packSize: t.packSize,
        compressionLevel: 3,
        pool: t.pool,
        hookTimeoutMs: 1000,
        stopTimeoutSeconds: 1,
        workDir: await t.temp.make(),
        captureDir: await t.temp.make(),
        log,
        quiesceJournal: catalog,
      })
    ).snapshot;

  it('creates a missing volume through the engine and restores into its mountpoint', async () => {
    const s = await snapshotOfData();
    const r = await restoreToVolume(engine, t.repo, s, { volume: 'fresh', force: false, pool: t.pool });
    expect(r.created).toBe(true);
    expect(engine.calls.some((c) => c.method === 'createVolume' && c.target === 'fresh')).toBe(true);
    expect(await fsp.readFile(path.join(r.volume.mountpoint, 'file'), 'utf8')).toBe('snapshot content');
  });

  it('refuses a non-empty volume unless forced, and then replaces its contents', async () => {
    const s = await snapshotOfData();
    const other = await engine.createVolume('other');
    await fsp.writeFile(path.join(other.mountpoint, 'stale'), 'x');
    await expect(restoreToVolume(engine, t.repo, s, { volume: 'other', force: false, pool: t.pool })).rejects.toBeInstanceOf(VolumeNotEmptyError);
    expect(await fsp.readdir(other.mountpoint)).toEqual(['stale']);
    await restoreToVolume(engine, t.repo, s, { volume: 'other', force: true, pool: t.pool });
    expect(await fsp.readdir(other.mountpoint)).toEqual(['file']);
  });
});
