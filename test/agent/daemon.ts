/**
 * Runs `bin/lifeboat run` as a real child process, as systemd would: logs (JSON
 * lines on stdout) collected, the endpoint asked over HTTP.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { BIN, PASSWORD, ROOT } from '../cli/run.ts';

export { freePort } from '../../src/util/testing/ports.ts';

export interface Daemon {
  readonly child: ChildProcess;
  readonly address: string;
  /** Log lines so far, parsed. */
  readonly logs: Record<string, unknown>[];
  readonly stderr: () => string;
  /** Resolves with the exit code (or the signal) once the process has ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  get(path: string): Promise<{ status: number; body: string }>;
  /** SIGKILL if still running (afterAll safety net). */
  kill(): void;
}

export function httpGet(address: string, path: string, timeoutMs = 5000, token?: string): Promise<{ status: number; body: string }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, timeout: timeoutMs, headers: token === undefined ? {} : { Authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

export interface DaemonOptions {
  /** LIFEBOAT_PASSWORD; default PASSWORD. */
  readonly password?: string;
  /** Run inside this network namespace (`ip netns exec`). */
  readonly netns?: string;
  /** More environment (LIFEBOAT_FAULT, ...). */
  readonly env?: Readonly<Record<string, string>>;
  /** The endpoint's token ([agent] token_file), sent by get(). */
  readonly token?: string;
}

/** Starts the daemon; `address` is the config's [agent] listen. */
export function startDaemon(config: string, address: string, opts: DaemonOptions = {}): Daemon {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('LIFEBOAT_') && k !== 'NODE_OPTIONS' && !k.startsWith('VITEST')) env[k] = v;
  }
  env.LIFEBOAT_PASSWORD = opts.password ?? PASSWORD;
  Object.assign(env, opts.env);
  const [cmd, args] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, BIN, 'run', '--config', config]] : [BIN, ['run', '--config', config]];
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  let partial = '';
  child.stdout!.on('data', (b: Buffer) => {
    partial += b.toString('utf8');
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line, unparsed: true });
      }
    }
  });
  const err: Buffer[] = [];
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return {
    child,
    address,
    logs,
    stderr: () => Buffer.concat(err).toString('utf8'),
    exited,
    get: (path) => httpGet(address, path, 5000, opts.token),
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** Polls until probe returns something truthy; fails with `what` and the daemon's recent log. */
export async function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, opts: { timeoutMs?: number; intervalMs?: number; daemon?: Daemon } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  for (;;) {
    const v = await Promise.resolve(probe()).catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) {
      const tail = opts.daemon ? `\nlog:\n${opts.daemon.logs.slice(-15).map((l) => JSON.stringify(l)).join('\n')}\nstderr: ${opts.daemon.stderr()}` : '';
      throw new Error(`timed out waiting for ${what}${tail}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}
