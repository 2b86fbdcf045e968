/**
 * `backup --path` keeps its block fingerprints in a cache on this host
 * ($LIFEBOAT_CACHE_DIR, $XDG_CACHE_HOME/lifeboat, ~/.cache/lifeboat), so a
 * large file changed in place has only its changed blocks hashed. The cache
 * is never needed: damaged or unwritable, backups go on as without it.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cleanup, ok, okJson, sql, tempDir } from './run.ts';

afterAll(cleanup);

async function source(): Promise<{ dir: string; repo: string; src: string; big: string }> {
  const dir = await tempDir();
  const src = path.join(dir, 'src');
  await fsp.mkdir(src);
  const big = path.join(src, 'big');
  await fsp.writeFile(big, Buffer.alloc(4 << 20).map((_, i) => (i * 2654435761) >>> 24));
  const repo = path.join(dir, 'repo');
  await ok(['init', '--repo', repo]);
  return { dir, repo, src, big };
}

function touch(file: string): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from('changed'), 0, 7, 1 << 20);
  fs.closeSync(fd);
}

describe('the fingerprint cache of directory backups', () => {
  test('is kept per repository under LIFEBOAT_CACHE_DIR, and an in-place change restores exactly', async () => {
    const { dir, repo, src, big } = await source();
    const cache = path.join(dir, 'cache');
    const env = { LIFEBOAT_CACHE_DIR: cache };
    await ok(['backup', '--repo', repo, '--path', src], { env });
    const [id] = fs.readdirSync(cache);
    const rows = (await sql(path.join(cache, id!, 'fingerprints.db'), 'SELECT path, length(hashes) AS n FROM fingerprints')) as { path: string; n: number }[];
    expect(rows).toEqual([{ path: 'big', n: 64 * 8 }]);
    expect(fs.statSync(path.join(cache, id!)).mode & 0o777).toBe(0o700);
    touch(big);
    const second = await okJson<{ bytes_new: number }>(['backup', '--repo', repo, '--path', src, '--json'], { env });
    expect(second.bytes_new).toBeLessThan(64 * 1024 + 8 * 1024);
    await ok(['restore', 'latest', '--repo', repo, '--target', path.join(dir, 'out')]);
    expect(fs.readFileSync(path.join(dir, 'out', 'big')).equals(fs.readFileSync(big))).toBe(true);
  });

  test('damaged or unwritable, it costs hashing, never the backup', async () => {
    const { dir, repo, src, big } = await source();
    const cache = path.join(dir, 'cache');
    await ok(['backup', '--repo', repo, '--path', src], { env: { LIFEBOAT_CACHE_DIR: cache } });
    const [id] = fs.readdirSync(cache);
    fs.writeFileSync(path.join(cache, id!, 'fingerprints.db'), 'not a database, not anymore');
    touch(big);
    await ok(['backup', '--repo', repo, '--path', src], { env: { LIFEBOAT_CACHE_DIR: cache } });
    const blocked = path.join(dir, 'a-file');
    fs.writeFileSync(blocked, '');
    touch(big);
    await ok(['backup', '--repo', repo, '--path', src], { env: { LIFEBOAT_CACHE_DIR: blocked } });
    await ok(['restore', 'latest', '--repo', repo, '--target', path.join(dir, 'out')]);
    expect(fs.readFileSync(path.join(dir, 'out', 'big')).equals(fs.readFileSync(big))).toBe(true);
  });
});
