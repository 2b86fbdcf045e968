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

/** `docker -H unix://socket ...args`: its stdout, or an error carrying its output. */
export async function docker(...args: string[]): Promise<string> {
  try {
    return (await execFileP('docker', ['-H', `unix://${DEFAULT_SOCKET}`, ...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`docker ${args.join(' ')}: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/** Polls `check` every 100 ms until it returns true; fails after `ms`. */
export async function until(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}
