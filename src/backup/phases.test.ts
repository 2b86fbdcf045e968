import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestRepo, restoreTo, type TestRepo } from '../repo/testing/fixture.ts';
import { pseudoRandomBytes } from '../repo/testing/tree-builder.ts';
import { backup } from './archiver.ts';

const KiB = 1024;

/**
 * A database's online backup reads its files first, then ends the backup
 * (which says what recovery needs), then reads the WAL written meanwhile:
 * the archiver's two phases.
 */
describe('a backup in two phases', () => {
  let t: TestRepo;
  let src: string;
  beforeEach(async () => {
    t = await openTestRepo();
    src = path.join(await t.temp.make(), 'pgdata');
    await fsp.mkdir(path.join(src, 'base'), { recursive: true });
    await fsp.mkdir(path.join(src, 'pg_wal'));
    await fsp.writeFile(path.join(src, 'base', 'rel'), pseudoRandomBytes(300 * KiB, 1));
    await fsp.writeFile(path.join(src, 'pg_wal', '0001'), 'wal one\n');
  });
  afterEach(() => t.close());

  const base = () => ({ source: src, host: 'h', splitter: { kind: 'fixed' as const, size: 64 * KiB }, packSize: t.packSize, compressionLevel: 3, pool: t.pool, tolerateChanges: true });
  const run = (between: () => Promise<void>, label = 'START WAL LOCATION: 0/2000028\n') =>
    backup(t.repo, {
      ...base(),
      phases: {
        last: ['pg_wal'],
        add: ['backup_label'],
        between: async () => {
          await between();
          return { files: new Map([['backup_label', Buffer.from(label)]]), capturedAt: new Date('2026-12-07T10:00:00Z') };
        },
      },
    });

  it('reads the data before between(), the WAL after it, and adds its files; the time is the one it gives', async () => {
    const s = await run(async () => {
      // written after the first phase: the data as it was is in the snapshot, the WAL as it is now
      await fsp.writeFile(path.join(src, 'base', 'rel'), pseudoRandomBytes(300 * KiB, 2));
      await fsp.appendFile(path.join(src, 'pg_wal', '0001'), 'more wal\n');
      await fsp.writeFile(path.join(src, 'pg_wal', '0002'), 'wal two\n');
    });
    expect(s.time).toBe('2026-12-07T10:00:00.000Z');
    const out = path.join(await t.temp.make(), 'out');
    await restoreTo(t, s, out);
    expect((await fsp.readFile(path.join(out, 'base', 'rel'))).equals(pseudoRandomBytes(300 * KiB, 1))).toBe(true);
    expect(await fsp.readFile(path.join(out, 'pg_wal', '0001'), 'utf8')).toBe('wal one\nmore wal\n');
    expect(await fsp.readFile(path.join(out, 'pg_wal', '0002'), 'utf8')).toBe('wal two\n');
    expect(await fsp.readFile(path.join(out, 'backup_label'), 'utf8')).toBe('START WAL LOCATION: 0/2000028\n');
    expect((await fsp.stat(path.join(out, 'backup_label'))).mode & 0o777).toBe(0o600);
  });

  it('adds a new backup_label every time, and a journalled backup still does', async () => {
    await run(async () => {}, 'first\n');
    await fsp.appendFile(path.join(src, 'pg_wal', '0001'), 'x\n');
    const second = await backup(t.repo, {
      ...base(),
      changes: { mode: 'paths', paths: new Set(['pg_wal/0001']) },
      phases: { last: ['pg_wal'], add: ['backup_label'], between: async () => ({ files: new Map([['backup_label', Buffer.from('second\n')]]), capturedAt: new Date() }) },
    });
    const out = path.join(await t.temp.make(), 'out');
    await restoreTo(t, second, out);
    expect(await fsp.readFile(path.join(out, 'backup_label'), 'utf8')).toBe('second\n');
    expect(await fsp.readFile(path.join(out, 'pg_wal', '0001'), 'utf8')).toBe('wal one\nx\n');
  });
});
