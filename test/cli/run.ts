/**
 * Runs the real CLI (bin/lifeboat) as a child process, the way an operator or
 * an outside check does: no TTY on any stream, a clean environment, and the
 * exit code, signal and both outputs captured.
 */
import { execFile, spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { makeSmallTree } from './tree.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin', 'lifeboat');
/** The pinned runtime the CLI runs on (better-sqlite3 is built for it, not for whatever node is on PATH). */
export const NODE = path.join(ROOT, 'node_modules', 'node', 'bin', 'node');
export const PASSWORD = 'correct horse battery staple';

export interface RunResult {
  /** Exit code, or null when the process died by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as JSON (fails the test with the raw output when it is not). */
  json<T = any>(): T;
}

export interface RunOptions {
  /** Extra environment; a value of undefined removes the variable. */
  readonly env?: Record<string, string | undefined>;
  /** LIFEBOAT_PASSWORD; null leaves it unset. Default: PASSWORD. */
  readonly password?: string | null;
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

/** Runs `bin/lifeboat ...args` to completion. Never rejects on a non-zero exit. */
export function lifeboat(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    // Hermetic: nothing of the caller's Lifeboat or debug settings leaks in.
    if (v !== undefined && !k.startsWith('LIFEBOAT_') && k !== 'NODE_OPTIONS' && !k.startsWith('VITEST')) env[k] = v;
  }
  // the fingerprint cache of directory backups, in a place cleanup() removes, not the home's
  env.LIFEBOAT_CACHE_DIR = CACHE;
  const password = opts.password === undefined ? PASSWORD : opts.password;
  if (password !== null) env.LIFEBOAT_PASSWORD = password;
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { cwd: opts.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      resolve({
        code,
        signal,
        stdout,
        stderr,
        json<T>(): T {
          try {
            return JSON.parse(stdout) as T;
          } catch {
            throw new Error(`lifeboat ${args.join(' ')}: stdout is not JSON:\n${stdout}\nstderr:\n${stderr}`);
          }
        },
      });
    });
  });
}

const show = (args: readonly string[], r: RunResult) =>
  `lifeboat ${args.join(' ')}\n  exit ${r.code} signal ${r.signal}\n  stdout: ${r.stdout.slice(0, 2000)}\n  stderr: ${r.stderr.slice(0, 2000)}`;

/** Runs and requires success: exit 0, and nothing on stderr (no progress: stderr is not a terminal). */
export async function ok(args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  const r = await lifeboat(args, opts);
  expect(r.code, show(args, r)).toBe(0);
  expect(r.stderr, show(args, r)).toBe('');
  return r;
}

/** Runs with --json appended and requires success; returns the parsed output. */
export async function okJson<T = any>(args: readonly string[], opts?: RunOptions): Promise<T> {
  return (await ok([...args, '--json'], opts)).json<T>();
}

/**
 * Runs and requires the error contract: the exit code, and exactly one line on
 * stderr, `lifeboat: <message> [CODE]`. Returns the message.
 */
export async function fails(args: readonly string[], exitCode: 1 | 2, code: string, opts?: RunOptions): Promise<string> {
  const r = await lifeboat(args, opts);
  return expectFailure(r, exitCode, code, args);
}

export function expectFailure(r: RunResult, exitCode: 1 | 2, code: string, args: readonly string[] = []): string {
  expect(r.code, show(args, r)).toBe(exitCode);
  const m = /^lifeboat: (.+) \[([A-Z0-9_]+)\]\n$/.exec(r.stderr);
  expect(m, `stderr is not one "lifeboat: <message> [CODE]" line\n${show(args, r)}`).not.toBeNull();
  expect(m![2], show(args, r)).toBe(code);
  return m![1]!;
}

/** A fresh temporary directory; `cleanup` removes every one made so far. */
export async function tempDir(prefix = 'lifeboat-cli-'): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}
const made: string[] = [];
export async function cleanup(): Promise<void> {
  for (const dir of [...made.splice(0), CACHE]) await fsp.rm(dir, { recursive: true, force: true });
}
/** LIFEBOAT_CACHE_DIR of every run, unless a test sets its own. */
export const CACHE = path.join(os.tmpdir(), `lifeboat-cli-cache-${process.pid}`);

const execFileP = promisify(execFile);

/**
 * Runs SQL against a repository's index.db on the pinned runtime, out of
 * process (better-sqlite3 is native and built for that runtime only).
 */
export async function sql(dbFile: string, statement: string, params: readonly unknown[] = []): Promise<unknown> {
  const script = `
    const Database = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'better-sqlite3'))});
    const [file, stmt, params] = [process.argv[1], process.argv[2], JSON.parse(process.argv[3])];
    const db = new Database(file);
    db.pragma('busy_timeout = 10000');
    const s = db.prepare(stmt);
    const out = s.reader ? s.all(...params) : s.run(...params);
    db.close();
    process.stdout.write(JSON.stringify(out));
  `;
  const { stdout } = await execFileP(NODE, ['-e', script, dbFile, statement, JSON.stringify(params)]);
  return JSON.parse(stdout);
}

/** A temp dir with a small source tree in src/ and the path repo/ for a repository (not created). */
export async function smallSource(): Promise<{ dir: string; repo: string; src: string }> {
  const dir = await tempDir();
  const src = path.join(dir, 'src');
  await fsp.mkdir(src);
  await makeSmallTree(src);
  return { dir, repo: path.join(dir, 'repo'), src };
}
