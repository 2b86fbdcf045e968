/**
 * ls, dump and check, and backup's exit 3, through the real CLI.
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BIN, cleanup, fails, lifeboat, NODE, ok, okJson, PASSWORD, smallSource } from './run.ts';

afterAll(cleanup);

/** The CLI's stdout as bytes (a dumped file is binary). */
function stdoutBytes(args: readonly string[]): Buffer {
  const r = spawnSync(BIN, args, { env: { PATH: process.env.PATH, LIFEBOAT_PASSWORD: PASSWORD }, maxBuffer: 64 << 20 });
  expect(r.status, r.stderr.toString()).toBe(0);
  return r.stdout;
}

describe('ls and dump', () => {
  let repo: string;
  let src: string;
  const big = crypto.randomBytes(5 * 1024 * 1024 + 123);
  beforeAll(async () => {
    ({ repo, src } = await smallSource());
    // 4 KiB blocks: this file's 1,281 blocks go into list blobs, not the tree
    await fsp.writeFile(path.join(src, 'sub', 'big.bin'), big);
    await ok(['init', '--repo', repo]);
    await ok(['backup', '--repo', repo, '--path', src, '--block-size', '4KiB']);
  });

  test('ls lists every entry depth first, or those under a path; -l and --json say what each is', async () => {
    const all = (await ok(['ls', 'latest', '--repo', repo])).stdout.trim().split('\n');
    expect(all).toEqual(['/data.bin', '/notes-link', '/sub', '/sub/big.bin', '/sub/empty', '/sub/notes.txt']);
    expect((await ok(['ls', 'latest', 'sub/', '--repo', repo])).stdout.trim().split('\n')).toEqual(['/sub', '/sub/big.bin', '/sub/empty', '/sub/notes.txt']);
    expect((await ok(['ls', 'latest', '/data.bin', '--repo', repo])).stdout).toBe('/data.bin\n');
    const long = (await ok(['ls', 'latest', '--repo', repo, '-l'])).stdout;
    expect(long).toMatch(/^l[rwx-]{9} .* \/notes-link -> sub\/notes\.txt$/m);
    expect(long).toMatch(new RegExp(`^-rw[rwx-]{7} +\\d+ +\\d+ +${big.length} \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d /sub/big.bin$`, 'm'));
    const json = await okJson<{ path: string; type: string; size: number; target?: string }[]>(['ls', 'latest', '--repo', repo]);
    expect(json.map((e) => `${e.type} ${e.path}`)).toEqual(['file /data.bin', 'symlink /notes-link', 'dir /sub', 'file /sub/big.bin', 'dir /sub/empty', 'file /sub/notes.txt']);
    expect(json.find((e) => e.path === '/notes-link')?.target).toBe('sub/notes.txt');
    expect(await fails(['ls', 'latest', '/sub/nothing', '--repo', repo], 1, 'LB_ERR_PATH_NOT_FOUND')).toContain('/sub/nothing');
  });

  test('dump writes a file\'s bytes, blocks and lists alike, and refuses what is not a file', async () => {
    expect(stdoutBytes(['dump', 'latest', '/sub/big.bin', '--repo', repo]).equals(big)).toBe(true);
    expect(stdoutBytes(['dump', 'latest', 'data.bin', '--repo', repo]).equals(await fsp.readFile(path.join(src, 'data.bin')))).toBe(true);
    expect(stdoutBytes(['dump', 'latest', 'sub/notes.txt', '--repo', repo]).toString()).toBe('notes for small\n');
    expect(await fails(['dump', 'latest', '/sub', '--repo', repo], 2, 'LB_ERR_USAGE')).toContain('a dir, not a file');
    await fails(['dump', 'latest', '/nope', '--repo', repo], 1, 'LB_ERR_PATH_NOT_FOUND');
  });

  test('check is verify', async () => {
    expect(await okJson(['check', '--repo', repo])).toEqual(await okJson(['verify', '--repo', repo]));
  });
});

describe('a backup that could not read everything', () => {
  test('exits 3: the snapshot is saved, LB_ERR_INCOMPLETE says what was missed', async () => {
    const { repo, src } = await smallSource();
    await ok(['init', '--repo', repo]);
    // a file rewritten without pause while the backup reads it: every attempt sees it change
    const hot = path.join(src, 'hot.bin');
    await fsp.writeFile(hot, crypto.randomBytes(32 << 20));
    const writer = spawn(NODE, ['-e', `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(hot)},'r+');let i=0;process.stdout.write('go\\n');for(;;){fs.writeSync(fd,'x',(i++*4099)%${32 << 20});}`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => writer.stdout.once('data', () => resolve()));
      const r = await lifeboat(['backup', '--repo', repo, '--path', src]);
      expect(r.code, r.stderr).toBe(3);
      expect(r.stderr).toMatch(/^lifeboat: snapshot [0-9a-f]{8} saved, but 1 entries could not be read \[LB_ERR_INCOMPLETE\]$/m);
    } finally {
      writer.kill('SIGKILL');
    }
    const snaps = await okJson<{ stats: { errors: number } }[]>(['snapshots', '--repo', repo]);
    expect(snaps).toHaveLength(1);
    expect(snaps[0]!.stats.errors).toBe(1);
  });
});

describe('diff and find', () => {
  test('diff names what was added, removed, modified, changed type or only metadata, and nothing of an unchanged directory', async () => {
    const { repo, src } = await smallSource();
    await fsp.mkdir(path.join(src, 'deep/er'), { recursive: true });
    await fsp.writeFile(path.join(src, 'deep/er/same.txt'), 'unchanged\n');
    await fsp.writeFile(path.join(src, 'gone.txt'), 'bye\n');
    await fsp.writeFile(path.join(src, 'becomes-dir'), 'a file first\n');
    await ok(['init', '--repo', repo]);
    const first = await okJson<{ snapshot: string }>(['backup', '--repo', repo, '--path', src]);
    await fsp.rm(path.join(src, 'gone.txt'));
    await fsp.writeFile(path.join(src, 'new.txt'), 'hello\n');
    await fsp.appendFile(path.join(src, 'sub/notes.txt'), 'more\n');
    await fsp.chmod(path.join(src, 'data.bin'), 0o600);
    await fsp.rm(path.join(src, 'becomes-dir'));
    await fsp.mkdir(path.join(src, 'becomes-dir'));
    const second = await okJson<{ snapshot: string }>(['backup', '--repo', repo, '--path', src]);
    const out = (await ok(['diff', first.snapshot, second.snapshot, '--repo', repo])).stdout;
    expect(out).toBe(['T    /becomes-dir', 'U    /data.bin', '-    /gone.txt', '+    /new.txt', 'M    /sub/notes.txt', '', '1 added, 1 removed, 1 modified, 1 type changed, 1 metadata only', ''].join('\n'));
    const json = await okJson<{ path: string; change: string }[]>(['diff', first.snapshot, second.snapshot, '--repo', repo]);
    expect(json).toContainEqual({ path: '/new.txt', change: 'added' });
    expect(json.some((d) => d.path.startsWith('/deep'))).toBe(false);
    expect(await okJson(['diff', first.snapshot, first.snapshot, '--repo', repo])).toEqual([]);
  });

  test('find matches names, or paths when the pattern has a slash, in every snapshot selected', async () => {
    const { repo, src } = await smallSource();
    await ok(['init', '--repo', repo]);
    const a = await okJson<{ snapshot: string }>(['backup', '--repo', repo, '--path', src]);
    await fsp.writeFile(path.join(src, 'sub', 'more.txt'), 'x');
    const b = await okJson<{ snapshot: string }>(['backup', '--repo', repo, '--path', src]);
    const byName = await okJson<{ snapshot: string; path: string }[]>(['find', '*.txt', '--repo', repo]);
    expect(byName.map((f) => `${f.snapshot === a.snapshot ? 'a' : f.snapshot === b.snapshot ? 'b' : '?'} ${f.path}`)).toEqual(['a /sub/notes.txt', 'b /sub/more.txt', 'b /sub/notes.txt']);
    expect((await okJson<{ path: string }[]>(['find', '/sub/m*', '--repo', repo])).map((f) => f.path)).toEqual(['/sub/more.txt']);
    expect(await okJson(['find', 'nothing-*', '--repo', repo])).toEqual([]);
    expect((await ok(['find', 'data.bin', '--repo', repo])).stdout).toMatch(/^[0-9a-f]{8} +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +-rw.* \/data\.bin$/m);
  });
});

describe('a partial restore', () => {
  test('--include restores what matches, below it too, and the directories on the way; --exclude leaves out what matches and below', async () => {
    const { dir, repo, src } = await smallSource();
    await fsp.mkdir(path.join(src, 'db/pg_wal'), { recursive: true });
    await fsp.writeFile(path.join(src, 'db/base.sql'), 'base\n');
    await fsp.writeFile(path.join(src, 'db/pg_wal/0001'), 'wal\n');
    await fsp.mkdir(path.join(src, 'unrelated/deeper'), { recursive: true });
    await fsp.writeFile(path.join(src, 'unrelated/deeper/x.txt'), 'x\n');
    await ok(['init', '--repo', repo]);
    await ok(['backup', '--repo', repo, '--path', src]);
    const tree = async (root: string) => (await fsp.readdir(root, { recursive: true })).map((p) => p.toString()).sort();

    const sql = path.join(dir, 'sql');
    await ok(['restore', 'latest', '--repo', repo, '--target', sql, '--include', '*.sql']);
    expect(await tree(sql)).toEqual(['db', 'db/base.sql']);

    const dbOnly = path.join(dir, 'db-only');
    await ok(['restore', 'latest', '--repo', repo, '--target', dbOnly, '--include', '/db', '--exclude', 'pg_wal']);
    expect(await tree(dbOnly)).toEqual(['db', 'db/base.sql']);

    const allBut = path.join(dir, 'all-but');
    await ok(['restore', 'latest', '--repo', repo, '--target', allBut, '--exclude', '/unrelated', '--exclude', '*.bin']);
    expect(await tree(allBut)).toEqual(['db', 'db/base.sql', 'db/pg_wal', 'db/pg_wal/0001', 'notes-link', 'sub', 'sub/empty', 'sub/notes.txt']);
    expect(await fsp.readFile(path.join(allBut, 'db/pg_wal/0001'), 'utf8')).toBe('wal\n');
  });
});

describe('backup --exclude', () => {
  test('leaves out what the globs match, from the flag and from a file, and what is below an excluded directory', async () => {
    const { dir, repo, src } = await smallSource();
    await fsp.mkdir(path.join(src, 'cache/deep'), { recursive: true });
    await fsp.writeFile(path.join(src, 'cache/deep/big.tmp'), 'scratch');
    await fsp.writeFile(path.join(src, 'sub/keep.log'), 'log');
    const list = path.join(dir, 'excludes');
    await fsp.writeFile(list, '# scratch space\n/cache\n\n*.log\n');
    await ok(['init', '--repo', repo]);
    await ok(['backup', '--repo', repo, '--path', src, '--exclude', 'data.bin', '--exclude-file', list]);
    expect((await ok(['ls', 'latest', '--repo', repo])).stdout.trim().split('\n')).toEqual(['/notes-link', '/sub', '/sub/empty', '/sub/notes.txt']);
    await fails(['backup', '--repo', repo, '--path', src, '--exclude-file', path.join(dir, 'missing')], 2, 'LB_ERR_USAGE');
  });
});

describe('stats', () => {
  test('says what the snapshots hold restored and what the repository stores for them, deduplicated', async () => {
    const { repo, src } = await smallSource();
    await ok(['init', '--repo', repo]);
    await ok(['backup', '--repo', repo, '--path', src]);
    await ok(['backup', '--repo', repo, '--path', src, '--host', 'another']);
    const s = await okJson<{ snapshots: number; restore_bytes: number; repository: { raw_bytes: number; stored_bytes: number; snapshots: number; packs: number } }>(['stats', '--repo', repo]);
    const one = (await okJson<{ stats: { bytes_total: number } }[]>(['snapshots', '--repo', repo]))[0]!.stats.bytes_total;
    expect(s.snapshots).toBe(2);
    expect(s.restore_bytes).toBe(2 * one);
    // the second backup stored nothing new: the repository holds the data once (plus trees)
    expect(s.repository.raw_bytes).toBeGreaterThanOrEqual(one);
    expect(s.repository.raw_bytes).toBeLessThan(one * 1.1);
    expect(s.repository).toMatchObject({ snapshots: 2 });
    expect((await okJson<{ snapshots: number }>(['stats', '--repo', repo, '--host', 'another'])).snapshots).toBe(1);
    expect((await ok(['stats', '--repo', repo])).stdout).toMatch(/^2 snapshots: \d+ files, .* when restored\nrepository: 2 snapshots, \d+ blobs of /);
  });
});
