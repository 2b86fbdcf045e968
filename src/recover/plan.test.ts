import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NothingToRecoverError, UsageError } from '../errors/errors.ts';
import { spec, volumeMount } from '../docker/testing/inventory-fixture.ts';
import { backupDir, openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { buildPlan } from './plan.ts';
import { HOST, type SourceHost, sourceHost } from './testing/source-host.ts';

describe('buildPlan', () => {
  let t: TestRepo;
  let src: SourceHost;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    src = await sourceHost(t);
  });
  afterEach(async () => {
    src.close();
    await t.close();
  });

  it('takes the newest snapshot of each volume, the containers they record in dependency order, and their images', async () => {
    await src.backup('data');
    const cache = await src.backup('cache');
    const data = await src.backup('data');
    const plan = await buildPlan(t.repo, { host: HOST });
    expect(plan.volumes.map((v) => [v.name, v.snapshot.id])).toEqual([
      ['cache', cache.id],
      ['data', data.id],
    ]);
    expect(plan.volumes.find((v) => v.name === 'data')).toMatchObject({ driver: 'local', labels: { tier: 'db' } });
    expect(plan.containers.map((c) => c.name)).toEqual(['armapp', 'cacher', 'db', 'idle', 'side', 'web']);
    expect(plan.containers.find((c) => c.name === 'idle')).toMatchObject({ state: 'created', start: false });
    expect(plan.containers.find((c) => c.name === 'db')).toMatchObject({ state: 'running', start: true, sourceId: src.ids.db, snapshot: data.id });
    expect([...plan.images.values()].map((i) => i.repoTags).sort()).toEqual([['app:1'], ['arm:1']]);
    expect(plan.at).toBeNull();
  });

  it('at a point in time takes the newest snapshot at or before it, and the containers as recorded then', async () => {
    const first = await src.backup('data');
    await src.a.removeContainer(src.ids.idle!);
    await src.a.stop(src.ids.side!, 1);
    await new Promise((r) => setTimeout(r, 5)); // distinct snapshot times
    const second = await src.backup('data');
    const then = await buildPlan(t.repo, { host: HOST, at: new Date(first.time) });
    expect(then.volumes.map((v) => v.snapshot.id)).toEqual([first.id]);
    expect(then.containers.map((c) => c.name)).toContain('idle');
    expect(then.containers.find((c) => c.name === 'side')!.start).toBe(true);
    const now = await buildPlan(t.repo, { host: HOST });
    expect(now.volumes.map((v) => v.snapshot.id)).toEqual([second.id]);
    expect(now.containers.map((c) => c.name)).not.toContain('idle');
    expect(now.containers.find((c) => c.name === 'side')).toMatchObject({ state: 'exited', start: false });
    await expect(buildPlan(t.repo, { host: HOST, at: new Date(Date.parse(first.time) - 1000) })).rejects.toBeInstanceOf(NothingToRecoverError);
  });

  it('keeps the newest record of a container that several volume snapshots name', async () => {
    const both = (env: string[]) =>
      src.a.createContainer(spec('both', 'app:1', { env, networkMode: 'none', mounts: [volumeMount('cache', '/cache'), volumeMount('data', '/data')] }));
    const first = await both(['V=1']);
    await src.backup('data');
    await src.a.removeContainer(first);
    await both(['V=2']);
    await src.backup('cache');
    const plan = await buildPlan(t.repo, { host: HOST });
    expect(plan.containers.filter((x) => x.name === 'both')).toHaveLength(1);
    expect(plan.containers.find((x) => x.name === 'both')!.spec.env).toEqual(['V=2']);
  });

  it('selects containers by name with their volumes and images, and only the host asked for', async () => {
    await src.backup('data');
    await src.backup('cache');
    const plan = await buildPlan(t.repo, { host: HOST, containers: ['cacher'] });
    expect(plan.containers.map((c) => c.name)).toEqual(['cacher']);
    expect(plan.volumes.map((v) => v.name)).toEqual(['cache']);
    expect([...plan.images.values()].map((i) => i.repoTags)).toEqual([['app:1']]);
    await expect(buildPlan(t.repo, { host: HOST, containers: ['nope'] })).rejects.toThrow(UsageError);
    await expect(buildPlan(t.repo, { host: 'host-b' })).rejects.toThrow(/no volume snapshot of host host-b/);
    expect((await buildPlan(t.repo, { host: null })).volumes).toHaveLength(2);
  });

  it('ignores directory snapshots and refuses a repository without volume snapshots', async () => {
    const dir = await t.temp.make();
    await fsp.writeFile(path.join(dir, 'f'), 'x');
    await backupDir(t, dir, { host: HOST });
    await expect(buildPlan(t.repo, { host: HOST })).rejects.toBeInstanceOf(NothingToRecoverError);
    await src.backup('cache');
    expect((await buildPlan(t.repo, { host: HOST })).volumes.map((v) => v.name)).toEqual(['cache']);
  });
});
