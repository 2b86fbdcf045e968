/**
 * `lifeboat repair`: damage found by verify --read-data is mended with good
 * copies from the peer's replica, proven against the repository's key; damage
 * the peer never saw is reported, not hidden.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeTree, diffTrees } from '../../src/repo/testing/tree-compare.ts';
import { type Daemon, until } from '../agent/daemon.ts';
import { cleanup as cleanupDirs, expectFailure, lifeboat, sql, tempDir } from '../cli/run.ts';
import { makeAgent, run, type TestAgent, writeConfig } from './agents.ts';

let a: TestAgent & { setup: object };
let b: TestAgent & { setup: object };
let db: Daemon;
let src: string;

const cli = (args: string[]) => lifeboat(['--config', a.config, ...args], { password: a.password });

/** Flips a byte in the middle of the stored bytes of a blob; returns its id (hex). */
async function damage(where: 'data' | 'pack', pick = 0): Promise<string> {
  const rows = (await sql(path.join(a.repo, 'index.db'), 'SELECT hex(b.id) AS id, p.name AS pack, b.offset AS offset, b.length AS length FROM blobs b JOIN packs p ON p.id = b.pack WHERE b.type = 0 ORDER BY b.pack, b.offset')) as { id: string; pack: string; offset: number; length: number }[];
  const row = rows[pick]!;
  const file = path.join(a.repo, 'packs', row.pack.slice(0, 2), row.pack);
  if (where === 'pack') {
    await fsp.rm(file);
  } else {
    const fh = await fsp.open(file, 'r+');
    const at = row.offset + (row.length >> 1);
    const byte = Buffer.alloc(1);
    await fh.read(byte, 0, 1, at);
    byte[0]! ^= 0x5a;
    await fh.write(byte, 0, 1, at);
    await fh.close();
  }
  return row.id.toLowerCase();
}

beforeAll(async () => {
  a = await makeAgent('a');
  b = await makeAgent('b');
  await writeConfig(a, [{ agent: b }]);
  await writeConfig(b, [{ agent: a, push: false }]);
  src = path.join(await tempDir('lifeboat-repair-src-'), 'data');
  await fsp.mkdir(src);
  for (let i = 0; i < 8; i++) await fsp.writeFile(path.join(src, `f${i}`), crypto.randomBytes(300 * 1024));
  expect((await lifeboat(['backup', '--repo', a.repo, '--path', src, '--host', 'a'], { password: a.password })).code).toBe(0);
  db = run(b);
  await until('B answers', async () => (await db.get('/healthz')).status === 200, { daemon: db, timeoutMs: 30_000 });
  const r = await cli(['replicate']);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  db?.kill();
  await db?.exited;
  await cleanupDirs();
});

async function restoresEqual(): Promise<void> {
  const target = path.join(await tempDir('lifeboat-repair-restore-'), 't');
  const r = await lifeboat(['restore', 'latest', '--repo', a.repo, '--target', target], { password: a.password });
  expect(r.code, r.stderr).toBe(0);
  expect(diffTrees(await describeTree(src), await describeTree(target))).toEqual([]);
}

describe('repair from the peer\'s replica', () => {
  it('mends a block damaged on disk: verify names it, repair fetches and proves the good copy, verify is clean and the restore exact', async () => {
    const id = await damage('data', 3);
    const v = await lifeboat(['verify', '--repo', a.repo, '--read-data', '--json'], { password: a.password });
    expect(v.code).toBe(1);
    const problems = v.json<{ problems: { kind: string; blob?: string; affects?: { path: string }[] }[] }>().problems;
    expect(problems).toEqual([expect.objectContaining({ kind: 'damaged-blob', blob: id, affects: [expect.objectContaining({ path: expect.stringMatching(/\/f\d$/) })] })]);
    const r = await cli(['repair', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ wanted: 1, repaired: 1, from: { b: 1 }, problems: [] });
    const again = await lifeboat(['verify', '--repo', a.repo, '--read-data', '--json'], { password: a.password });
    expect(again.json<{ problems: unknown[] }>().problems).toEqual([]);
    await restoresEqual();
  });

  it('brings back every blob of a pack that is gone', async () => {
    await damage('pack', 0);
    const r = await cli(['repair', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = r.json<{ wanted: number; repaired: number; problems: unknown[] }>();
    expect(report.repaired).toBe(report.wanted);
    expect(report.wanted).toBeGreaterThan(0);
    await restoresEqual();
  });

  it('reports damage the peer never saw as not repaired (exit 1), and changes nothing else', async () => {
    await fsp.writeFile(path.join(src, 'late'), crypto.randomBytes(200 * 1024));
    expect((await lifeboat(['backup', '--repo', a.repo, '--path', src, '--host', 'a'], { password: a.password })).code).toBe(0);
    const rows = (await sql(path.join(a.repo, 'index.db'), 'SELECT count(*) AS n FROM blobs WHERE type = 0')) as { n: number }[];
    // the newest data blob is the late file's, which was never pushed
    const id = await damage('data', rows[0]!.n - 1);
    const r = await cli(['repair', '--json']);
    expect(expectFailure(r, 1, 'LB_ERR_REPAIR_INCOMPLETE')).toMatch(/1 problems remain/);
    expect(JSON.parse(r.stdout)).toMatchObject({ wanted: 1, repaired: 0, problems: [expect.objectContaining({ blob: id })] });
    expect(fs.existsSync(path.join(a.repo, 'index.db'))).toBe(true);
  });
});
