import os from 'node:os';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RepositoryLockedError } from '../errors/errors.ts';
import { Repository } from './repository.ts';
import { openTestRepo, TEST_PASSWORD, type TestRepo } from './testing/fixture.ts';

function insertLock(t: TestRepo, row: { exclusive: boolean; host: string; pid: number; refreshed: number }): void {
  t.repo.db
    .prepare('INSERT INTO locks (id, exclusive, host, pid, created, refreshed) VALUES (?, ?, ?, ?, ?, ?)')
    .run(`foreign-${row.pid}-${row.host}`, row.exclusive ? 1 : 0, row.host, row.pid, new Date(row.refreshed).toISOString(), row.refreshed);
}

const lockCount = (t: TestRepo) => t.repo.db.prepare('SELECT count(*) FROM locks').pluck().get() as number;

describe('repository lock', () => {
  let t: TestRepo;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 1 });
  });
  afterEach(() => t.close());

  it('an exclusive lock keeps out shared and exclusive takers until released', () => {
    const ex = t.repo.lock('exclusive');
    expect(() => t.repo.lock('shared')).toThrow(RepositoryLockedError);
    expect(() => t.repo.lock('exclusive')).toThrow(RepositoryLockedError);
    ex.release();
    t.repo.lock('shared').release();
    expect(lockCount(t)).toBe(0);
  });

  it('shared locks coexist, and keep out an exclusive taker', () => {
    const a = t.repo.lock('shared');
    const b = t.repo.lock('shared');
    expect(() => t.repo.lock('exclusive')).toThrow(RepositoryLockedError);
    a.release();
    expect(() => t.repo.lock('exclusive')).toThrow(RepositoryLockedError);
    b.release();
    t.repo.lock('exclusive').release();
  });

  it('names the holder in the error', () => {
    const ex = t.repo.lock('exclusive');
    try {
      t.repo.lock('shared');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(RepositoryLockedError);
      expect((err as Error).message).toContain(`pid ${process.pid}`);
      expect((err as Error).message).toContain(os.hostname());
    } finally {
      ex.release();
    }
  });

  it('is respected by a second process-like opener of the same repository', async () => {
    const other = await Repository.open(t.dir, TEST_PASSWORD);
    try {
      const ex = t.repo.lock('exclusive');
      expect(() => other.lock('shared')).toThrow(RepositoryLockedError);
      ex.release();
      const sh = other.lock('shared');
      expect(() => t.repo.lock('exclusive')).toThrow(RepositoryLockedError);
      sh.release();
    } finally {
      other.close();
    }
  });

  it('breaks the lock of a process that no longer exists on this host', () => {
    insertLock(t, { exclusive: true, host: os.hostname(), pid: 999_999, refreshed: Date.now() });
    const ex = t.repo.lock('exclusive');
    expect(t.repo.db.prepare('SELECT pid FROM locks').pluck().all()).toEqual([process.pid]);
    ex.release();
  });

  it('respects a fresh lock of another host, and breaks one not refreshed for ten minutes', () => {
    insertLock(t, { exclusive: true, host: 'elsewhere', pid: 1, refreshed: Date.now() });
    expect(() => t.repo.lock('shared')).toThrow(RepositoryLockedError);
    t.repo.db.prepare('UPDATE locks SET refreshed = ?').run(Date.now() - 11 * 60_000);
    t.repo.lock('exclusive').release();
    expect(lockCount(t)).toBe(0);
  });

  it('release is idempotent', () => {
    const l = t.repo.lock('exclusive');
    l.release();
    l.release();
    t.repo.lock('exclusive').release();
  });
});
