/**
 * Lock rows whose values are not of their kind, and `lifeboat unlock`. A
 * damaged row is the index's damage (LB_ERR_CORRUPT_INDEX), visible to every
 * command and removed only by `unlock --remove-all`; plain `unlock` removes
 * stale locks.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cleanup, fails, ok, okJson, smallSource, sql } from './run.ts';

afterAll(cleanup);

let repo: string;
let src: string;
let index: string;

beforeAll(async () => {
  ({ repo, src } = await smallSource());
  index = path.join(repo, 'index.db');
  await ok(['init', '--repo', repo]);
  await ok(['backup', '--repo', repo, '--path', src]);
});

const count = async () => (await okJson<unknown[]>(['snapshots', '--repo', repo])).length;
const lockRows = async () => (await sql(index, 'SELECT pid FROM locks ORDER BY pid')) as { pid: unknown }[];

async function insertLock(o: { id: string; exclusive: number; host: string; pid: number; refreshed: number }): Promise<void> {
  await sql(index, 'INSERT INTO locks (id, exclusive, host, pid, created, refreshed) VALUES (?, ?, ?, ?, ?, ?)', [
    o.id,
    o.exclusive,
    o.host,
    o.pid,
    new Date(o.refreshed).toISOString(),
    o.refreshed,
  ]);
}

describe('a lock row of garbage values', () => {
  test('backup and prune fail with LB_ERR_CORRUPT_INDEX and one line; unlock --remove-all removes it; then backup works', async () => {
    await sql(index, "INSERT INTO locks (id, exclusive, host, pid, created, refreshed) VALUES ('garbage', 'yes', 'h', -1, x'00', 'soon')");
    const before = await count();

    const message = await fails(['backup', '--repo', repo, '--path', src], 1, 'LB_ERR_CORRUPT_INDEX');
    expect(message).toContain('lock row');
    expect(message).toContain('"garbage"');
    expect(message).toContain('lifeboat unlock --remove-all');
    await fails(['prune', '--repo', repo], 1, 'LB_ERR_CORRUPT_INDEX');
    // Plain unlock removes stale locks only: the damaged row is not one, and it says so the same way.
    expect(await fails(['unlock', '--repo', repo], 1, 'LB_ERR_CORRUPT_INDEX')).toContain('lifeboat unlock --remove-all');
    // Nothing broke it silently.
    expect(await lockRows()).toEqual([{ pid: -1 }]);
    expect(await count()).toBe(before);

    const report = await okJson<{ removed: Record<string, unknown>[]; remaining: number }>(['unlock', '--repo', repo, '--remove-all']);
    expect(report.remaining).toBe(0);
    expect(report.removed).toHaveLength(1);
    expect(report.removed[0]).toMatchObject({ id: 'garbage', exclusive: 'yes', host: 'h', pid: -1, created: "x'00'", refreshed: 'soon' });
    expect(report.removed[0]!.damaged).toEqual(expect.any(String));
    expect(await lockRows()).toEqual([]);

    await ok(['backup', '--repo', repo, '--path', src]);
    expect(await count()).toBe(before + 1);
    await ok(['prune', '--repo', repo]);
    expect(await lockRows()).toEqual([]);
  });
});

describe('unlock', () => {
  test('without --remove-all removes stale locks (a gone process on this host, one not refreshed for ten minutes) and keeps live ones', async () => {
    const gone = spawnSync('true').pid!; // run and reaped: no such process any more
    await insertLock({ id: 'gone', exclusive: 1, host: os.hostname(), pid: gone, refreshed: Date.now() });
    await insertLock({ id: 'old', exclusive: 0, host: 'some-other-host.invalid', pid: 2, refreshed: Date.now() - 11 * 60_000 });
    await insertLock({ id: 'live', exclusive: 1, host: 'some-other-host.invalid', pid: 3, refreshed: Date.now() });
    await fails(['backup', '--repo', repo, '--path', src], 1, 'LB_ERR_REPOSITORY_LOCKED');

    const text = (await ok(['unlock', '--repo', repo])).stdout;
    expect(text).toMatch(/removed 2 stale locks/);
    expect(text).toContain(`pid ${gone}`);
    expect(text).toMatch(/1 live lock left/);
    expect(await lockRows()).toEqual([{ pid: 3 }]);
    expect(await okJson(['unlock', '--repo', repo])).toEqual({ removed: [], remaining: 1 });
    await fails(['backup', '--repo', repo, '--path', src], 1, 'LB_ERR_REPOSITORY_LOCKED');

    const all = (await ok(['unlock', '--repo', repo, '--remove-all'])).stdout;
    expect(all).toContain('some-other-host.invalid');
    expect(all).toMatch(/removed 1 lock\b/);
    expect(await lockRows()).toEqual([]);
    await ok(['backup', '--repo', repo, '--path', src]);
  });

  test('takes the repository password like every repository command', async () => {
    await fails(['unlock', '--repo', repo, '--remove-all'], 1, 'LB_ERR_WRONG_PASSWORD', { password: 'not the password' });
    await fails(['unlock'], 2, 'LB_ERR_USAGE');
  });
});
