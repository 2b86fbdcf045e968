import os from 'node:os';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CorruptIndexError, RepositoryLockedError } from '../errors/errors.ts';
import { removeAllLocks, removeStaleLocks, STALE_MS } from './lock.ts';
import { Repository } from './repository.ts';
import { openTestRepo, TEST_PASSWORD, type TestRepo } from './testing/fixture.ts';
import { INDEX_DB } from './index-db.ts';

function insertLock(t: TestRepo, row: { exclusive: boolean; host: string; pid: number; refreshed: number }): void {
  t.repo[INDEX_DB]
    .prepare('INSERT INTO locks (id, exclusive, host, pid, created, refreshed) VALUES (?, ?, ?, ?, ?, ?)')
    .run(`foreign-${row.pid}-${row.host}`, row.exclusive ? 1 : 0, row.host, row.pid, new Date(row.refreshed).toISOString(), row.refreshed);
}

/** A lock row of SQL literals, as a damaged page (or a hand edit) could leave it: SQLite keeps any value in any column. */
function insertRaw(t: TestRepo, values: Partial<Record<'id' | 'exclusive' | 'host' | 'pid' | 'created' | 'refreshed', string>>): void {
  const v = { id: "'0123456789abcdef'", exclusive: '1', host: "'elsewhere'", pid: '1', created: "'2026-01-01T00:00:00.000Z'", refreshed: String(Date.now()), ...values };
  t.repo[INDEX_DB].exec(`INSERT INTO locks (id, exclusive, host, pid, created, refreshed) VALUES (${v.id}, ${v.exclusive}, ${v.host}, ${v.pid}, ${v.created}, ${v.refreshed})`);
}

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}

const lockCount = (t: TestRepo) => t.repo[INDEX_DB].prepare('SELECT count(*) FROM locks').pluck().get() as number;

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
    expect(t.repo[INDEX_DB].prepare('SELECT pid FROM locks').pluck().all()).toEqual([process.pid]);
    ex.release();
  });

  it('respects a fresh lock of another host, and breaks one not refreshed for ten minutes', () => {
    insertLock(t, { exclusive: true, host: 'elsewhere', pid: 1, refreshed: Date.now() });
    expect(() => t.repo.lock('shared')).toThrow(RepositoryLockedError);
    t.repo[INDEX_DB].prepare('UPDATE locks SET refreshed = ?').run(Date.now() - 11 * 60_000);
    t.repo.lock('exclusive').release();
    expect(lockCount(t)).toBe(0);
  });

  it('release is idempotent', () => {
    const l = t.repo.lock('exclusive');
    l.release();
    l.release();
    t.repo.lock('exclusive').release();
  });

  it('a lock refreshed further ahead of this clock than the stale period is stale; one less far ahead is respected', () => {
    insertLock(t, { exclusive: true, host: 'elsewhere', pid: 1, refreshed: Date.now() + STALE_MS / 2 });
    expect(() => t.repo.lock('shared')).toThrow(RepositoryLockedError);
    for (const ahead of [STALE_MS + 60_000, 10 * 365 * 86_400_000, Number.MAX_SAFE_INTEGER - Date.now()]) {
      t.repo[INDEX_DB].prepare('UPDATE locks SET refreshed = ?').run(Date.now() + ahead);
      const ex = t.repo.lock('exclusive');
      expect(t.repo[INDEX_DB].prepare('SELECT pid FROM locks').pluck().all()).toEqual([process.pid]);
      ex.release();
      insertLock(t, { exclusive: true, host: 'elsewhere', pid: 1, refreshed: 0 });
    }
  });

  it('says how to remove a lock of another host whose process it cannot check', () => {
    insertLock(t, { exclusive: false, host: 'elsewhere', pid: 4242, refreshed: Date.now() });
    const err = thrown(() => t.repo.lock('exclusive'));
    expect(err).toBeInstanceOf(RepositoryLockedError);
    expect(err.message).toContain('lifeboat unlock');
  });

  describe('rows whose values are not of their kind', () => {
    const garbage: [string, Parameters<typeof insertRaw>[1]][] = [
      ['no id', { id: 'NULL' }],
      ['an id that is a blob', { id: "x'00ff'" }],
      ['an empty id', { id: "''" }],
      ['exclusive 2', { exclusive: '2' }],
      ['exclusive 0.5', { exclusive: '0.5' }],
      ['exclusive as text', { exclusive: "'yes'" }],
      ['a host that is a blob', { host: "x'68'" }],
      ['an empty host', { host: "''" }],
      ['a host of two lines', { host: "'a' || char(10) || 'b'" }],
      ['a host longer than any host name', { host: "'" + 'h'.repeat(300) + "'" }],
      ['pid 0', { pid: '0' }],
      ['a negative pid', { pid: '-7' }],
      ['a fractional pid', { pid: '1.5' }],
      ['a pid as text', { pid: "'abc'" }],
      ['a pid beyond any pid', { pid: String(2 ** 31) }],
      ['a created time that is a blob', { created: "x'00'" }],
      ['a created time of a megabyte', { created: "printf('%.*c', 1000000, 'x')" }],
      ['refreshed as text', { refreshed: "'soon'" }],
      ['an infinite refreshed time', { refreshed: '1e999' }],
      ['a refreshed time that is a blob', { refreshed: "x'01'" }],
    ];

    it.each(garbage)('a row with %s is LB_ERR_CORRUPT_INDEX for every taker, naming the row and the way out; it stays until unlock --remove-all', (_what, values) => {
      insertRaw(t, values);
      for (const kind of ['shared', 'exclusive'] as const) {
        const err = thrown(() => t.repo.lock(kind));
        expect(err).toBeInstanceOf(CorruptIndexError);
        expect((err as CorruptIndexError).code).toBe('LB_ERR_CORRUPT_INDEX');
        expect(err.message).toMatch(/^the repository index is damaged: lock row 1 /);
        expect(err.message).toContain('lifeboat unlock --remove-all');
        expect(err.message).not.toContain('\n');
      }
      // Not broken as stale, not deleted: the damage stays visible.
      expect(lockCount(t)).toBe(1);
      expect(() => removeStaleLocks(t.repo[INDEX_DB])).toThrow(CorruptIndexError);
      expect(lockCount(t)).toBe(1);

      const report = removeAllLocks(t.repo[INDEX_DB]);
      expect(report.removed).toHaveLength(1);
      expect(report.removed[0]!.damaged).toMatch(/.+/);
      expect(report.remaining).toBe(0);
      expect(lockCount(t)).toBe(0);
      t.repo.lock('exclusive').release();
    });

    it('names the first damaged row and counts the others', () => {
      insertRaw(t, { id: "'a'", pid: "'x'" });
      insertRaw(t, { id: "'b'", exclusive: '7' });
      insertLock(t, { exclusive: false, host: 'elsewhere', pid: 3, refreshed: Date.now() });
      const err = thrown(() => t.repo.lock('shared'));
      expect(err).toBeInstanceOf(CorruptIndexError);
      expect(err.message).toContain('lock row 1 (id "a")');
      expect(err.message).toContain('1 more damaged lock row');
    });
  });

  describe('unlock', () => {
    it('without --remove-all removes the stale locks only, and says what it removed and what is left', () => {
      const mine = t.repo.lock('shared'); // first: a taker breaks the stale locks itself
      insertLock(t, { exclusive: true, host: os.hostname(), pid: 999_999, refreshed: Date.now() });
      insertLock(t, { exclusive: false, host: 'elsewhere', pid: 11, refreshed: Date.now() - STALE_MS - 60_000 });
      insertLock(t, { exclusive: false, host: 'elsewhere', pid: 12, refreshed: Date.now() });
      const report = removeStaleLocks(t.repo[INDEX_DB]);
      expect(report.removed.map((l) => [l.pid, l.host, l.exclusive, l.damaged])).toEqual(
        expect.arrayContaining([
          [999_999, os.hostname(), 1, null],
          [11, 'elsewhere', 0, null],
        ]),
      );
      expect(report.removed).toHaveLength(2);
      expect(report.remaining).toBe(2);
      expect(t.repo[INDEX_DB].prepare('SELECT pid FROM locks ORDER BY pid').pluck().all()).toEqual([12, process.pid].sort((a, b) => a - b));
      expect(removeStaleLocks(t.repo[INDEX_DB])).toEqual({ removed: [], remaining: 2 });
      mine.release();
    });

    it('--remove-all removes every lock, live ones too, and reports damaged values printably', () => {
      const mine = t.repo.lock('shared');
      insertRaw(t, { id: "x'00ff'", exclusive: "'yes'", host: "x'68'", pid: '-1', created: "x'00'", refreshed: '1e999' });
      const report = removeAllLocks(t.repo[INDEX_DB]);
      expect(report.remaining).toBe(0);
      expect(report.removed).toHaveLength(2);
      const damaged = report.removed.find((l) => l.damaged !== null)!;
      expect(damaged).toMatchObject({ id: "x'00ff'", exclusive: 'yes', host: "x'68'", pid: -1, created: "x'00'", refreshed: 'Infinity' });
      expect(JSON.parse(JSON.stringify(report))).toEqual(report);
      expect(report.removed.find((l) => l.damaged === null)).toMatchObject({ pid: process.pid, host: os.hostname(), exclusive: 0 });
      expect(lockCount(t)).toBe(0);
      mine.release(); // its row is gone already: harmless
      t.repo.lock('exclusive').release();
    });
  });
});
