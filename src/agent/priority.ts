import fs from 'node:fs';
import os from 'node:os';

/**
 * Lowers the agent's CPU priority to `nice` (0 leaves it as it is): under
 * contention the applications it protects get the cores first and a backup
 * waits, which costs RPO only while the host is saturated. On Linux a nice
 * value belongs to each thread: every thread the process has now (V8's and
 * libuv's among them) is set, and threads made later (the workers) inherit
 * it from the thread that makes them. Elsewhere it is the process's priority
 * class. Lowering needs no privilege.
 */
export function lowerPriority(nice: number): void {
  if (nice === 0) return;
  if (process.platform !== 'linux') {
    os.setPriority(0, nice);
    return;
  }
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      os.setPriority(Number(tid), nice);
    } catch {
      // a thread that ended meanwhile
    }
  }
}
