// rsync for the replication benchmark: a daemon (`rsync --daemon`) inside a network namespace,
// so that a copy crosses a real link with nothing but Debian's rsync package (no ssh, no keys),
// and the counters of `rsync --stats`.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { childrenReaped, cpuSeconds } from './proc.ts';

export interface RsyncStats {
  /** "Total bytes sent" / "Total bytes received": rsync's protocol stream, each way. */
  readonly sentBytes: number;
  readonly receivedBytes: number;
  /** File data sent as is ("Literal data") and rebuilt from the receiver's blocks ("Matched data"). */
  readonly literalBytes: number;
  readonly matchedBytes: number;
  readonly filesTransferred: number;
}

/** Parses `rsync --stats` output (3.x groups digits with commas); undefined when a counter is missing. */
export function parseRsyncStats(out: string): RsyncStats | undefined {
  const num = (label: string): number | undefined => {
    const m = new RegExp(`^${label}: ([\\d,]+)`, 'm').exec(out);
    return m ? Number(m[1]!.replace(/,/g, '')) : undefined;
  };
  const stats = {
    sentBytes: num('Total bytes sent'),
    receivedBytes: num('Total bytes received'),
    literalBytes: num('Literal data'),
    matchedBytes: num('Matched data'),
    filesTransferred: num('Number of regular files transferred'),
  };
  return Object.values(stats).every((v) => v !== undefined) ? (stats as RsyncStats) : undefined;
}

export interface RsyncDaemon {
  /** Where a client pushes to: rsync://address:port/module/ */
  readonly url: string;
  readonly pid: number;
  /** CPU seconds of the connections served so far (the daemon forks one process tree per connection and reaps it). */
  servedCpuS(): Promise<number>;
  stop(): Promise<void>;
}

export interface RsyncDaemonOptions {
  readonly netns: string;
  readonly address: string;
  readonly port: number;
  /** Where the daemon's config and log go. */
  readonly dir: string;
  /** The directory the module writes into. */
  readonly dest: string;
}

/** Starts `rsync --daemon --no-detach` in the namespace, serving one writable module on `dest`. */
export async function startRsyncDaemon(o: RsyncDaemonOptions): Promise<RsyncDaemon> {
  mkdirSync(o.dir, { recursive: true });
  mkdirSync(o.dest, { recursive: true });
  const conf = join(o.dir, 'rsyncd.conf');
  writeFileSync(
    conf,
    [
      'use chroot = no',
      `log file = ${join(o.dir, 'rsyncd.log')}`,
      '[copy]',
      `  path = ${o.dest}`,
      '  read only = no',
      '  uid = root',
      '  gid = root',
      '',
    ].join('\n'),
  );
  const log = openSync(join(o.dir, 'rsyncd.out'), 'a');
  // `ip netns exec` execs rsync in place: the pid is the daemon's
  const child: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', o.netns, 'rsync', '--daemon', '--no-detach', `--config=${conf}`, `--address=${o.address}`, `--port=${o.port}`],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 15_000;
  while (!(await accepts(o.address, o.port))) {
    if (child.exitCode !== null) throw new Error(`rsync --daemon exited with ${child.exitCode}; see ${join(o.dir, 'rsyncd.out')}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`rsync --daemon did not listen on ${o.address}:${o.port} within 15 s`);
    }
    await sleep(50);
  }
  const pid = child.pid!;
  return {
    url: `rsync://${o.address}:${o.port}/copy/`,
    pid,
    servedCpuS: async () => {
      await childrenReaped(pid);
      return cpuSeconds(pid).children;
    },
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
