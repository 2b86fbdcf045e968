// What a process and a network link have used so far, from /proc and /sys (Linux): CPU time and
// peak memory of a long-running child (the peer agent, the rsync daemon), bytes through an interface.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds (user + system) of a process itself, and of its children it has waited for. */
export function cpuSeconds(pid: number): { self: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after "pid (comm) ": state is [0], utime [11], stime [12], cutime [13], cstime [14]
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  return { self: (f[11]! + f[12]!) / CLK_TCK, children: (f[13]! + f[14]!) / CLK_TCK };
}

/** CPU seconds the whole machine has been busy so far, all cores (/proc/stat: all but idle and iowait; steal counts as busy). */
export function machineBusyS(): number {
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + steal) / CLK_TCK;
}

/** Peak resident set size (VmHWM) in KiB. */
export function peakRssKiB(pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

/** Waits until the process has no child left (a daemon has reaped the ones serving a finished connection). */
export async function childrenReaped(pid: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const children = (): string =>
    spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }).stdout.trim();
  while (children() !== '') {
    if (Date.now() > deadline) throw new Error(`process ${pid} still has children after ${timeoutMs / 1000} s`);
    await sleep(20);
  }
}

export interface LinkBytes {
  readonly tx: number;
  readonly rx: number;
}

/** The interface holding `address` (e.g. this end of a veth pair). */
export function interfaceOf(address: string): string {
  const out = spawnSync('ip', ['-o', 'addr', 'show', 'to', address], { encoding: 'utf8' }).stdout;
  const name = out.split(/\s+/)[1]?.replace(/@.*$/, '');
  if (!name) throw new Error(`no interface holds ${address}`);
  return name;
}

/** Bytes sent and received through an interface so far (IP packets, headers included). */
export function linkBytes(iface: string): LinkBytes {
  const read = (what: string): number => Number(readFileSync(`/sys/class/net/${iface}/statistics/${what}`, 'utf8'));
  return { tx: read('tx_bytes'), rx: read('rx_bytes') };
}
