// Run a command under GNU time (`/usr/bin/time -f '%e %M %U %S'`) and parse wall time and peak RSS.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TimedResult {
  readonly argv: readonly string[];
  readonly code: number | null;
  /** Elapsed wall-clock seconds. */
  readonly wallS: number;
  /** Peak resident set size in KiB (largest single process of the tree, per getrusage). */
  readonly maxRssKiB: number;
  readonly userS: number;
  readonly sysS: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

export const GNU_TIME = '/usr/bin/time';

export function runTimed(argv: readonly string[], opts: RunOptions = {}): TimedResult {
  const dir = mkdtempSync(join(tmpdir(), 'bench-time-'));
  const out = join(dir, 'time.txt');
  try {
    const r = spawnSync(GNU_TIME, ['-o', out, '-f', '%e %M %U %S', ...argv], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 512 << 20,
    });
    if (r.error) throw r.error;
    // On failure GNU time first writes "Command exited with non-zero status N"; the format line is last.
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    const fields = (lines.at(-1) ?? '').trim().split(/\s+/).map(Number);
    const [wallS = NaN, maxRssKiB = NaN, userS = NaN, sysS = NaN] = fields;
    return { argv, code: r.status, wallS, maxRssKiB, userS, sysS, stdout: r.stdout, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Throws with the command's stderr tail unless it exited 0. */
export function ensureOk(r: TimedResult, what: string): TimedResult {
  if (r.code !== 0) {
    const tail = (r.stderr || r.stdout).trim().split('\n').slice(-8).join('\n');
    throw new Error(`${what} failed (exit ${r.code}): ${r.argv.join(' ')}\n${tail}`);
  }
  return r;
}
