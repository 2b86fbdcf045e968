import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, lifeboat, PASSWORD } from './run.ts';

const run = promisify(execFile);

/** Runs the CLI under `script`, which gives it a pseudo-terminal, as a person at a shell would. */
async function atTerminal(args: string[]): Promise<string> {
  const cmd = [BIN, ...args].map((a) => `'${a}'`).join(' ');
  const { stdout } = await run('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, LIFEBOAT_PASSWORD: PASSWORD } });
  return stdout;
}

describe('progress display', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lifeboat-progress-'));
    await fsp.mkdir(path.join(dir, 'src'));
    await fsp.writeFile(path.join(dir, 'src', 'data'), Buffer.alloc(12 << 20, 7));
    expect((await lifeboat(['init', '--repo', path.join(dir, 'repo')])).code).toBe(0);
  });
  afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

  it('shows a self-erasing status line on a terminal and still prints the result', async () => {
    const out = await atTerminal(['backup', '--repo', path.join(dir, 'repo'), '--path', path.join(dir, 'src')]);
    expect(out).toMatch(/\r\x1b\[Kread \d+ files, [\d.]+ \w+ \([\d.]+ \w+\/s\)/);
    expect(out).toMatch(/snapshot [0-9a-f]{8} saved/);
  });

  it('counts a restore, a verify --read-data and a prune against their totals, with the time left', async () => {
    const restored = await atTerminal(['restore', 'latest', '--repo', path.join(dir, 'repo'), '--target', path.join(dir, 'restored')]);
    expect(restored).toMatch(/\r\x1b\[Krestored \d+\/1 files, [\d.]+ \w+\/12\.0 MiB \([\d.]+ \w+\/s\), \d+:\d\d left/);
    const verified = await atTerminal(['verify', '--read-data', '--repo', path.join(dir, 'repo')]);
    expect(verified).toMatch(/\r\x1b\[Kread \d+\/\d+ packs, /);
    expect(verified).toMatch(/checked 1 snapshots/);
    const pruned = await atTerminal(['prune', '--repo', path.join(dir, 'repo')]);
    expect(pruned).toMatch(/\r\x1b\[Kscanned \d+\/\d+ packs/);
    expect(pruned).toMatch(/\r\x1b\[Kwalked 0\/1 snapshots/);
    expect(pruned).toMatch(/pruned: /);
  });

  it('shows nothing but the result with --json, even on a terminal', async () => {
    const out = await atTerminal(['--json', 'restore', 'latest', '--repo', path.join(dir, 'repo'), '--target', path.join(dir, 'out')]);
    expect(out).not.toContain('\x1b[K');
    expect(JSON.parse(out.trim())).toMatchObject({ files: 1, bytes_written: 12 << 20 });
  });
});
