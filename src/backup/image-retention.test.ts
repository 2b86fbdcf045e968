import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spec, volumeMount } from '../docker/testing/inventory-fixture.ts';
import { RepositoryLockedError } from '../errors/errors.ts';
import { buildPlan } from '../recover/plan.ts';
import { HOST, type SourceHost, sourceHost } from '../recover/testing/source-host.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { deleteSnapshots, listSnapshots } from '../repo/snapshots.ts';
import { openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { forgetUnusedImages } from './image-retention.ts';
import { imageTag } from './images.ts';

describe('forgetUnusedImages', () => {
  let t: TestRepo;
  let src: SourceHost;
  /** Volume snapshots: data (app:1, arm:1), cache before (app:1) and after (app:2) its container moved to app:2. */
  let data: Snapshot;
  let cacheOld: Snapshot;
  let cacheNew: Snapshot;
  let ids: Record<'app1' | 'app2' | 'arm1', string>;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    src = await sourceHost(t);
    data = await src.backup('data');
    cacheOld = await src.backup('cache');
    src.a.addImage({ repoTags: ['app:2'], layers: [{ 'bin/app': 'app binary, version 2' }] });
    await src.a.removeContainer(src.ids.cacher!, { force: true });
    await src.a.createContainer(spec('cacher', 'app:2', { networkMode: 'none', mounts: [volumeMount('cache', '/cache')] }));
    cacheNew = await src.backup('cache');
    const idOf = async (ref: string) => (await src.a.inspectImage(ref))!.id;
    ids = { app1: await idOf('app:1'), app2: await idOf('app:2'), arm1: await idOf('arm:1') };
  });
  afterEach(async () => {
    src.close();
    await t.close();
  });

  const imageSnapshots = () =>
    listSnapshots(t.repo)
      .filter((s) => s.tags.includes('image'))
      .map((s) => s.tags.find((tag) => tag.startsWith('image:'))!)
      .sort();

  it('keeps every image a volume snapshot names', async () => {
    expect(imageSnapshots()).toEqual([ids.app1, ids.app2, ids.arm1].map(imageTag).sort());
    expect(await forgetUnusedImages(t.repo)).toEqual([]);
    expect(imageSnapshots()).toHaveLength(3);
  });

  it('forgets the images only forgotten snapshots named, and recovery of what is left still finds its images', async () => {
    deleteSnapshots(t.repo, [cacheOld.id]);
    expect(await forgetUnusedImages(t.repo)).toEqual([]);

    const dryRun = await forgetUnusedImages(t.repo, { dryRun: true, without: new Set([data.id]) });
    expect(dryRun.map((s) => s.tags.find((tag) => tag.startsWith('image:'))).sort()).toEqual([imageTag(ids.app1), imageTag(ids.arm1)].sort());
    expect(imageSnapshots()).toHaveLength(3);

    deleteSnapshots(t.repo, [data.id]);
    const forgotten = await forgetUnusedImages(t.repo);
    expect(forgotten.map((s) => s.id).sort()).toEqual(dryRun.map((s) => s.id).sort());
    expect(imageSnapshots()).toEqual([imageTag(ids.app2)]);

    const plan = await buildPlan(t.repo, { host: HOST });
    expect(plan.volumes.map((v) => v.snapshot.id)).toEqual([cacheNew.id]);
    expect([...plan.images.values()].map((i) => [i.id, listSnapshots(t.repo).some((s) => s.id === i.snapshot)])).toEqual([[ids.app2, true]]);
  });

  it("considers only the image snapshots `which` selects (an agent's own host's)", async () => {
    deleteSnapshots(t.repo, [data.id, cacheOld.id]);
    expect(await forgetUnusedImages(t.repo, { which: (s) => s.host === 'another-host' })).toEqual([]);
    expect(imageSnapshots()).toHaveLength(3);
  });

  it('waits for no backup: while one holds the repository, it fails and deletes nothing', async () => {
    deleteSnapshots(t.repo, [data.id, cacheOld.id]);
    const backupInFlight = t.repo.lock('shared');
    try {
      await expect(forgetUnusedImages(t.repo)).rejects.toBeInstanceOf(RepositoryLockedError);
    } finally {
      backupInFlight.release();
    }
    expect(imageSnapshots()).toHaveLength(3);
  });
});
