/**
 * The docker CLI against the test engine, for tests that drive containers as
 * an operator would (docker run, exec, inspect), and polling without fixed
 * sleeps.
 */
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { DEFAULT_SOCKET } from '../docker/harness.ts';

const execFileP = promisify(execFile);

/** The docker CLI against the engine at `socket`: `docker -H unix://socket ...args` gives its stdout, or an error carrying its output. */
export function dockerAt(socket: string): (...args: string[]) => Promise<string> {
  return async (...args) => {
    try {
      return (await execFileP('docker', ['-H', `unix://${socket}`, ...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;
    } catch (err) {
      const e = err as Error & { stdout?: string; stderr?: string };
      throw new Error(`docker ${args.join(' ')}: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  };
}

/** The docker CLI against the test engine. */
export const docker = dockerAt(DEFAULT_SOCKET);

/** Polls `check` every 100 ms until it returns true; fails after `ms`. */
export async function until(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}
