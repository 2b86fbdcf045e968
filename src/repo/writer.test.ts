import crypto from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NoSpaceError } from '../errors/errors.ts';
import { blobId, seal } from './crypto.ts';
import { BlobType } from './ids.ts';
import { listPackFiles } from './pack.ts';
import { openTestRepo, type TestRepo } from './testing/fixture.ts';
import { BlobWriter } from './writer.ts';
import { INDEX_DB } from './index-db.ts';

describe('BlobWriter on a full disk', () => {
  let t: TestRepo;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 1 });
  });
  afterEach(() => t.close());

  it('refuses a pack the index has no room for with NoSpaceError, and deletes its file, which nothing can use', async () => {
    const writer = new BlobWriter(t.repo, 64 << 20);
    const ids = Array.from({ length: 2000 }, (_, i) => {
      const plain = crypto.randomBytes(64 + (i % 7));
      const id = blobId(t.repo.keys, plain);
      writer.add(id, BlobType.data, seal(t.repo.keys, id, BlobType.data, plain, { level: 0 }), plain.length);
      return id;
    });
    // SQLite's own disk full: not a page more than the index has now.
    t.repo[INDEX_DB].pragma(`max_page_count = ${t.repo[INDEX_DB].pragma('page_count', { simple: true }) as number}`);
    expect(() => writer.flush()).toThrow(NoSpaceError);
    expect(await listPackFiles(t.repo.dir)).toEqual([]);
    expect(ids.some((id) => t.repo.hasBlob(id))).toBe(false);
  });
});
