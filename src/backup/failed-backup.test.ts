import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NoSpaceError } from '../errors/errors.ts';
import { listPackFiles } from '../repo/pack.ts';
import { Store } from '../repo/store.ts';
import { openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { pseudoRandomBytes } from '../repo/testing/tree-builder.ts';
import { StoreHookedPool } from './testing/store-hook.ts';
import type { StoreItem, StoreReply } from './jobs.ts';
import { backup } from './archiver.ts';
import { INDEX_DB } from '../repo/index-db.ts';

const KiB = 1024;

/** Workers whose store jobs fail once `failAfter` have run, as a disk that fills up makes them. */
class FillingWorkers extends StoreHookedPool {
  jobs = 0;
  failAfter = Infinity;
  override store(_items: readonly StoreItem[], send: () => Promise<StoreReply>): Promise<StoreReply> {
    if (++this.jobs > this.failAfter) return Promise.reject(new NoSpaceError('no space left (test)'));
    return send();
  }
}

/**
 * A failed backup gives back what it wrote, indexed packs included, unless
 * another writer may have deduplicated against them: then prune does.
 */
describe('a backup that fails after indexing packs', () => {
  let t: TestRepo;
  let pool: FillingWorkers;
  let src: string;
  beforeEach(async () => {
    t = await openTestRepo({ packSize: 64 * KiB });
    pool = new FillingWorkers(t.repo, { workers: 1, level: 3, packSize: 64 * KiB });
    src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(src);
    // files over 1 MiB go to the workers one job each
    for (let i = 0; i < 10; i++) await fsp.writeFile(path.join(src, `f${i}`), pseudoRandomBytes(1200 * KiB, i));
  });
  afterEach(async () => {
    await pool.close();
    await t.close();
  });

  const run = () =>
    backup(t.repo, { source: src, host: 'h', splitter: { kind: 'fixed', size: 64 * KiB }, packSize: 64 * KiB, compressionLevel: 3, pool });

  it('takes its packs and their rows back when it held the repository alone', async () => {
    pool.failAfter = 3;
    await expect(run()).rejects.toBeInstanceOf(NoSpaceError);
    expect(await listPackFiles(t.dir)).toEqual([]);
    expect(t.repo[INDEX_DB].prepare('SELECT count(*) FROM packs').pluck().get()).toBe(0);
    expect(t.repo[INDEX_DB].prepare('SELECT count(*) FROM blobs').pluck().get()).toBe(0);
  });

  it('leaves them to prune while another writer holds the repository', async () => {
    const other = Store.openStore(t.dir);
    const lock = other.lock('shared');
    try {
      pool.failAfter = 3;
      await expect(run()).rejects.toBeInstanceOf(NoSpaceError);
      expect((await listPackFiles(t.dir)).length).toBeGreaterThan(0);
      expect(t.repo[INDEX_DB].prepare('SELECT count(*) FROM packs').pluck().get()).toBeGreaterThan(0);
    } finally {
      lock.release();
      other.close();
    }
  });
});
