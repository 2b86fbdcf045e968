import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cleanup, fails, lifeboat, ok, okJson, tempDir } from './run.ts';
import { flipBytes, hashFiles, packFiles, randomBytes } from './tree.ts';

afterAll(cleanup);

/** A repository with one snapshot of one 1 MiB file. */
async function oneFileRepo(): Promise<{ dir: string; repo: string; src: string; snapshot: string }> {
  const dir = await tempDir();
  const repo = path.join(dir, 'repo');
  const src = path.join(dir, 'src');
  await fsp.mkdir(src);
  await fsp.writeFile(path.join(src, 'data.bin'), randomBytes(1024 * 1024, 'corrupt-me'));
  await ok(['init', '--repo', repo]);
  const snapshot = (await okJson(['backup', '--repo', repo, '--path', src])).snapshot as string;
  return { dir, repo, src, snapshot };
}

/** The largest pack: the one that holds data.bin (trees are packed apart from file data). */
async function dataPack(repo: string): Promise<string> {
  const packs = await packFiles(repo);
  expect(packs.length).toBeGreaterThan(0);
  return packs.map((p) => ({ p, size: fs.statSync(p).size })).sort((a, b) => b.size - a.size)[0]!.p;
}

describe.concurrent('a corrupted pack', () => {
  test('verify --read-data exits 1 naming the snapshot and the file; restore exits 1 with LB_ERR_CORRUPT_DATA', async () => {
    const { dir, repo, snapshot } = await oneFileRepo();
    // Blobs come first in a pack, the trailer last: byte 100 of the data pack is in data.bin's first block.
    flipBytes(await dataPack(repo), 100);
    const damaged = await hashFiles(path.join(repo, 'packs'));

    const text = await lifeboat(['verify', '--repo', repo, '--read-data']);
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/^lifeboat: .+ \[LB_ERR_VERIFY_FAILED\]\n$/);
    expect(text.stdout).toContain(snapshot.slice(0, 8));
    expect(text.stdout).toContain('data.bin');

    const json = await lifeboat(['verify', '--repo', repo, '--read-data', '--json']);
    expect(json.code).toBe(1);
    const report = json.json();
    expect(report.ok).toBe(false);
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0].affects).toEqual([{ snapshot: snapshot.slice(0, 8), path: expect.stringMatching(/(^|\/)data\.bin$/) }]);

    const target = path.join(dir, 'restored');
    const message = await fails(['restore', snapshot, '--repo', repo, '--target', target], 1, 'LB_ERR_CORRUPT_DATA');
    expect(message).toMatch(/altered|damaged|authentic/);

    // Detecting damage does not add to it.
    expect(await hashFiles(path.join(repo, 'packs'))).toEqual(damaged);
  });

  test('a damaged pack trailer is found by a plain verify, without --read-data', async () => {
    const { repo } = await oneFileRepo();
    const pack = await dataPack(repo);
    flipBytes(pack, fs.statSync(pack).size - 20);
    const r = await lifeboat(['verify', '--repo', repo]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^lifeboat: .+ \[LB_ERR_VERIFY_FAILED\]\n$/);
    expect(r.stdout).toContain(path.basename(pack));
  });

  test('a missing pack is found by a plain verify', async () => {
    const { repo } = await oneFileRepo();
    const pack = await dataPack(repo);
    await fsp.rm(pack);
    const r = await lifeboat(['verify', '--repo', repo, '--json']);
    expect(r.code).toBe(1);
    expect(r.json().problems.map((p: { kind: string }) => p.kind)).toContain('missing-pack');
  });
});

describe.concurrent('a corrupted index.db', () => {
  test('every command fails with one line, LB_ERR_CORRUPT_INDEX, exit 1, and the packs stay untouched', async () => {
    const { dir, repo, src } = await oneFileRepo();
    const index = path.join(repo, 'index.db');
    const fd = fs.openSync(index, 'r+');
    fs.writeSync(fd, Buffer.from('this is no db!!\0'), 0, 16, 0);
    fs.closeSync(fd);
    const packsBefore = await hashFiles(path.join(repo, 'packs'));
    const target = path.join(dir, 'restored');
    for (const args of [
      ['snapshots', '--repo', repo],
      ['backup', '--repo', repo, '--path', src],
      ['verify', '--repo', repo, '--read-data'],
      ['restore', 'latest', '--repo', repo, '--target', target],
      ['prune', '--repo', repo],
    ]) {
      const message = await fails(args, 1, 'LB_ERR_CORRUPT_INDEX');
      expect(message).toContain('index');
    }
    expect(await hashFiles(path.join(repo, 'packs'))).toEqual(packsBefore);
    await expect(fsp.stat(target)).rejects.toThrow();
  });

  test('a missing index.db is LB_ERR_CORRUPT_INDEX too, and is not silently recreated', async () => {
    const { repo } = await oneFileRepo();
    await fsp.rm(path.join(repo, 'index.db'));
    await fails(['snapshots', '--repo', repo], 1, 'LB_ERR_CORRUPT_INDEX');
    await expect(fsp.stat(path.join(repo, 'index.db'))).rejects.toThrow();
  });
});

/**
 * Damage that the workers meet (they read the index themselves): every kind
 * ends restore and verify in one line with a stable code, never a stack
 * trace, and repair --rebuild-index mends what was only the index's.
 */
describe.concurrent('index rows that lie to the workers', () => {
  const cases: { name: string; damage: (db: import('better-sqlite3').Database, pack: string) => void }[] = [
    { name: 'a wrong offset', damage: (db) => db.prepare('UPDATE blobs SET offset = offset + 7 WHERE type = 0').run() },
    { name: 'an offset past the end', damage: (db) => db.prepare('UPDATE blobs SET offset = 1e12 WHERE type = 0').run() },
    { name: 'a huge length', damage: (db) => db.prepare('UPDATE blobs SET length = 4e9 WHERE type = 0').run() },
    { name: 'a text offset', damage: (db) => db.prepare("UPDATE blobs SET offset = 'x' WHERE type = 0").run() },
    { name: 'a vanished pack row', damage: (db, pack) => db.prepare('DELETE FROM packs WHERE name = ?').run(pack) },
    { name: 'a pack row naming no file', damage: (db, pack) => db.prepare('UPDATE packs SET name = ? WHERE name = ?').run('f'.repeat(32), pack) },
    { name: 'a pack name of the wrong kind', damage: (db, pack) => db.prepare('UPDATE packs SET name = 42 WHERE name = ?').run(pack) },
  ];
  for (const c of cases) {
    test(`${c.name}: restore and verify fail in one line; repair --rebuild-index mends it`, async () => {
      const { dir, repo, src, snapshot } = await oneFileRepo();
      const pack = path.basename(await dataPack(repo));
      const { default: Database } = await import('better-sqlite3');
      const db = new Database(path.join(repo, 'index.db'));
      db.pragma('foreign_keys = OFF');
      c.damage(db, pack);
      db.close();
      for (const args of [['restore', snapshot, '--target', path.join(dir, 'out')], ['verify', '--read-data']]) {
        const r = await lifeboat([...args, '--repo', repo]);
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr, r.stderr).toMatch(/^lifeboat: [^\n]+ \[LB_ERR_[A-Z_]+\]\n$/);
        expect(r.stderr).not.toMatch(/LB_ERR_INTERNAL|    at /);
      }
      await ok(['repair', '--rebuild-index', '--repo', repo]);
      const out = path.join(dir, 'mended');
      await ok(['restore', snapshot, '--repo', repo, '--target', out]);
      expect(await hashFiles(out)).toEqual(await hashFiles(src));
    });
  }
});
