/**
 * The repository lock: rows in index.db's locks table (src/repo/lock.ts).
 * A lock held by a live process on this host is respected; one whose process
 * is gone, or that nobody refreshed for ten minutes, is broken.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from 'vitest';
import { cleanup, fails, ok, okJson, sql, tempDir, smallSource } from './run.ts';

const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await cleanup();
});

/** A live process to hold a lock in name: `sleep 30`, reaped when it dies. */
function sleeper(): { pid: number; kill: () => Promise<void> } {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let killed = false;
  return {
    pid: child.pid!,
    kill: async () => {
      if (killed) return exited;
      killed = true;
      child.kill('SIGKILL');
      await exited; // reaped: a zombie would still answer kill(pid, 0)
    },
  };
}

async function insertLock(repo: string, o: { exclusive: boolean; pid: number; host?: string; refreshed?: number }): Promise<string> {
  const id = crypto.randomBytes(8).toString('hex');
  const now = o.refreshed ?? Date.now();
  await sql(path.join(repo, 'index.db'), 'INSERT INTO locks (id, exclusive, host, pid, created, refreshed) VALUES (?, ?, ?, ?, ?, ?)', [
    id,
    o.exclusive ? 1 : 0,
    o.host ?? os.hostname(),
    o.pid,
    new Date(now).toISOString(),
    now,
  ]);
  return id;
}

async function lockRows(repo: string): Promise<unknown[]> {
  return (await sql(path.join(repo, 'index.db'), 'SELECT id FROM locks')) as unknown[];
}

let dir: string;
let repo: string;
let src: string;

beforeAll(async () => {
  ({ dir, repo, src } = await smallSource());
  await ok(['init', '--repo', repo]);
  await ok(['backup', '--repo', repo, '--path', src]);
});

const count = async () => (await okJson<unknown[]>(['snapshots', '--repo', repo])).length;

describe('an exclusive lock held by a live process on this host', () => {
  test('backup, restore, verify, forget and prune exit 1 with LB_ERR_REPOSITORY_LOCKED; after the holder dies, backup works', async () => {
    const holder = sleeper();
    onTestFinished(holder.kill);
    await insertLock(repo, { exclusive: true, pid: holder.pid });
    const before = await count();

    const message = await fails(['backup', '--repo', repo, '--path', src], 1, 'LB_ERR_REPOSITORY_LOCKED');
    expect(message).toContain(String(holder.pid));
    await fails(['restore', 'latest', '--repo', repo, '--target', path.join(dir, 'never')], 1, 'LB_ERR_REPOSITORY_LOCKED');
    await fails(['verify', '--repo', repo, '--read-data'], 1, 'LB_ERR_REPOSITORY_LOCKED');
    await fails(['forget', '--repo', repo, '--keep-last', '0', '--prune'], 1, 'LB_ERR_REPOSITORY_LOCKED');
    await fails(['prune', '--repo', repo], 1, 'LB_ERR_REPOSITORY_LOCKED');
    expect(await count()).toBe(before);
    await expect(fsp.stat(path.join(dir, 'never'))).rejects.toThrow();
    // The refused commands left the holder's row alone and added none.
    expect(await lockRows(repo)).toHaveLength(1);

    await holder.kill();
    await ok(['backup', '--repo', repo, '--path', src]);
    expect(await count()).toBe(before + 1);
    // The stale row was broken, and the backup released its own.
    expect(await lockRows(repo)).toEqual([]);
  });
});

describe('a shared lock held by a live process (a backup in progress)', () => {
  test('another backup, restore and verify go ahead; forget and prune are refused', async () => {
    const holder = sleeper();
    onTestFinished(holder.kill);
    const id = await insertLock(repo, { exclusive: false, pid: holder.pid });
    const before = await count();
    await ok(['backup', '--repo', repo, '--path', src]);
    await ok(['restore', 'latest', '--repo', repo, '--target', path.join(await tempDir(), 't')]);
    await ok(['verify', '--repo', repo]);
    await fails(['forget', '--repo', repo, '--keep-last', '1'], 1, 'LB_ERR_REPOSITORY_LOCKED');
    await fails(['prune', '--repo', repo], 1, 'LB_ERR_REPOSITORY_LOCKED');
    expect(await count()).toBe(before + 1);
    expect(await lockRows(repo)).toEqual([{ id }]);
    await holder.kill();
    await ok(['prune', '--repo', repo]);
    expect(await lockRows(repo)).toEqual([]);
  });
});

describe('locks of other hosts', () => {
  test('a fresh one is respected (its process cannot be checked); one not refreshed for over ten minutes is broken', async () => {
    await sql(path.join(repo, 'index.db'), 'DELETE FROM locks');
    await insertLock(repo, { exclusive: true, pid: 1, host: 'some-other-host.invalid' });
    const message = await fails(['backup', '--repo', repo, '--path', src], 1, 'LB_ERR_REPOSITORY_LOCKED');
    expect(message).toContain('some-other-host.invalid');
    await sql(path.join(repo, 'index.db'), 'UPDATE locks SET refreshed = ?', [Date.now() - 11 * 60_000]);
    await ok(['backup', '--repo', repo, '--path', src]);
    expect(await lockRows(repo)).toEqual([]);
  });
});
