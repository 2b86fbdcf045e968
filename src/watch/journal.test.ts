import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentCatalog } from '../catalog/agent-catalog.ts';
import { ChangeJournal } from './journal.ts';
import { RESCAN, RESTAT } from './rescan.ts';

const log = pino({ level: 'silent' });

describe('ChangeJournal (real watcher)', () => {
  let dir: string;
  let vol: string;
  let catalog: AgentCatalog;
  let journal: ChangeJournal;
  let clock: number;

  const open = (over: Partial<{ maxPaths: number; fullScanIntervalMs: number; aggregateMs: number }> = {}) =>
    new ChangeJournal({ catalog, log, aggregateMs: over.aggregateMs ?? 50, maxPaths: over.maxPaths ?? 1000, fullScanIntervalMs: over.fullScanIntervalMs ?? 3_600_000, now: () => new Date(clock) });

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-journal-'));
    vol = path.join(dir, 'vol');
    await fsp.mkdir(path.join(vol, 'a', 'b'), { recursive: true });
    await fsp.writeFile(path.join(vol, 'a', 'b', 'f.txt'), 'one');
    await fsp.writeFile(path.join(vol, 'top.txt'), 'top');
    catalog = AgentCatalog.open(path.join(dir, 'state'));
    clock = Date.parse('2026-01-01T00:00:00Z');
    journal = open();
    await journal.watch('data', vol);
  });
  afterEach(async () => {
    await journal.close();
    catalog.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Waits for the journal's next recorded batch. */
  const changed = () => new Promise<number>((resolve) => journal.once('changed', (_v: string, n: number) => resolve(n)));

  it('commits its batches without fsync (a restart distrusts it anyway), beside a catalog whose commits are synced', async () => {
    const NORMAL = 1;
    const FULL = 2;
    expect(catalog.unsyncedDb.pragma('synchronous', { simple: true })).toBe(NORMAL);
    expect(catalog.db.pragma('synchronous', { simple: true })).toBe(FULL);
    const batch = changed();
    await fsp.writeFile(path.join(vol, 'new.txt'), 'new');
    await batch;
    // what it recorded is in the file, seen by the synced connection too
    expect(catalog.db.prepare('SELECT path FROM journal WHERE volume = ?').pluck().all('data')).toContain('new.txt');
  });

  it('starts untrusted: the first take is a full scan, whose commit makes it trusted', async () => {
    const first = journal.take('data');
    expect(first).toMatchObject({ mode: 'full', reason: 'agent started' });
    first.commit();
    expect(journal.status('data')).toMatchObject({ watching: true, trusted: true, reason: null, dirty: 0 });
    expect(journal.take('data')).toMatchObject({ mode: 'paths', paths: new Set() });
  });

  it('records changed files, and the directory of an added or removed entry', async () => {
    journal.take('data').commit();
    const batch = changed();
    await fsp.writeFile(path.join(vol, 'a', 'b', 'f.txt'), 'two');
    await fsp.writeFile(path.join(vol, 'a', 'new.txt'), 'new');
    await fsp.rm(path.join(vol, 'top.txt'));
    await batch;
    await new Promise((r) => setTimeout(r, 200)); // let every event of the three writes land
    const take = journal.take('data');
    expect(take.mode).toBe('paths');
    expect([...take.paths].sort()).toEqual(['', 'a', 'a/b/f.txt', 'a/new.txt', 'top.txt']);
    take.commit();
    expect(journal.status('data').dirty).toBe(0);
  });

  it('keeps a change made after a take was begun, for the next backup', async () => {
    journal.take('data').commit();
    let batch = changed();
    await fsp.writeFile(path.join(vol, 'top.txt'), 'v2');
    await batch;
    const take = journal.take('data');
    batch = changed();
    await fsp.writeFile(path.join(vol, 'top.txt'), 'v3'); // during "the backup"
    await batch;
    take.commit();
    expect([...journal.take('data').paths]).toEqual(['top.txt']);
  });

  it('records a directory crowded within one aggregation window as one rescan of its subtree', async () => {
    await journal.close();
    journal = open({ aggregateMs: 1500 });
    await journal.watch('data', vol);
    journal.take('data').commit();
    // made outside and moved in: the watcher reports every entry it finds in it at once
    const outside = path.join(dir, 'many');
    await fsp.mkdir(outside);
    for (let i = 0; i < 150; i++) fs.writeFileSync(path.join(outside, `f${i}`), String(i));
    const batch = changed();
    await fsp.rename(outside, path.join(vol, 'many'));
    await batch;
    const paths = journal.take('data').paths;
    expect(paths.has(`many/${RESCAN}`)).toBe(true);
    expect([...paths].filter((p) => p.startsWith('many/f'))).toEqual([]);
  });

  it('records a hot directory\'s entries to be looked at again once its watch has rested', async () => {
    journal.take('data').commit();
    const batches: Promise<number>[] = [changed()];
    const fds = ['f.txt', 'g.txt'].map((n) => fs.openSync(path.join(vol, 'a', 'b', n), 'a'));
    for (let i = 0; i < 1000; i++) fs.writeSync(fds[i % 2]!, 'x');
    for (const fd of fds) fs.closeSync(fd);
    // while the watch rests: no event of its own
    fs.writeFileSync(path.join(vol, 'a', 'b', 'unseen'), 'x');
    const marked = () => journal.take('data').paths.has(`a/b/${RESTAT}`);
    while (!marked()) {
      await batches.at(-1);
      batches.push(changed());
    }
    expect(journal.take('data').paths.size).toBeLessThan(40);
  });

  it('gives up past max_paths: the next take is a full scan, and only a clean full scan restores trust', async () => {
    await journal.close();
    journal = open({ maxPaths: 5 });
    await journal.watch('data', vol);
    journal.take('data').commit();
    const full = journal.take('data');
    for (let i = 0; i < 8; i++) await fsp.writeFile(path.join(vol, `x${i}`), 'x');
    await new Promise((r) => setTimeout(r, 300));
    expect(journal.status('data')).toMatchObject({ trusted: false, reason: 'overflow: more than 5 changed paths' });
    full.commit(); // a take begun before the overflow cannot vouch for what came after
    expect(journal.take('data')).toMatchObject({ mode: 'full' });
    journal.take('data').commit();
    expect(journal.status('data').trusted).toBe(true);
  });

  it('asks for a periodic full scan, and again after the agent restarts', async () => {
    journal.take('data').commit();
    clock += 3_600_000;
    expect(journal.take('data')).toMatchObject({ mode: 'full', reason: 'periodic full scan' });
    journal.take('data').commit();
    await journal.close();
    journal = open();
    await journal.watch('data', vol);
    expect(journal.take('data')).toMatchObject({ mode: 'full', reason: 'agent started' });
  });
});
