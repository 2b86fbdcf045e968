import { setTimeout as sleep } from 'node:timers/promises';
import type { DockerEngine } from '../docker/engine.ts';

export interface UpOptions {
  /** Give up after this long. */
  readonly timeoutMs: number;
  /**
   * The application's own check (the lifeboat.drill-check label: `pg_isready`,
   * a SQL query): run in the container with `sh -c` once it runs (and is
   * healthy, with a healthcheck), again every pollMs until it exits 0. Up
   * means it answered; a process that runs but does not answer (a database
   * still replaying its WAL) is not up.
   */
  readonly check?: string;
  /** A container without a healthcheck counts as up once it has run this long without stopping. */
  readonly settleMs: number;
  readonly pollMs?: number;
  readonly signal?: AbortSignal;
}

export interface UpResult {
  readonly up: boolean;
  /** Null when the container has no healthcheck. */
  readonly healthy: boolean | null;
  /** Whether the check command answered (exit 0); null without one. */
  readonly answered: boolean | null;
  /** From the call until it was up (or gave up). */
  readonly ms: number;
  readonly reason: string | null;
}

/**
 * Waits until a started container is up: healthy when it has a healthcheck,
 * else running for settleMs without stopping; and, with a check command,
 * answering it. A container that stops, turns unhealthy or is removed is not
 * up; neither is one still starting, or not answering, at the timeout.
 */
export async function waitUntilUp(engine: DockerEngine, id: string, opts: UpOptions): Promise<UpResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const answered = opts.check === undefined ? null : false;
  let runningSince: number | undefined;
  let last = 'not yet running';
  for (;;) {
    if (opts.signal?.aborted) return { up: false, healthy: null, answered, ms: elapsed(), reason: 'aborted' };
    const c = await engine.inspectContainer(id);
    if (!c) return { up: false, healthy: null, answered, ms: elapsed(), reason: 'the container was removed' };
    if (c.state === 'exited' || c.state === 'dead') return { up: false, healthy: null, answered, ms: elapsed(), reason: `it stopped (${c.state}) after starting` };
    if (c.state === 'running') {
      runningSince ??= performance.now();
      const healthy = c.health === undefined ? null : c.health === 'healthy';
      if (c.health === 'unhealthy') return { up: false, healthy: false, answered, ms: elapsed(), reason: 'its healthcheck reports unhealthy' };
      const running = c.health === 'healthy' || (c.health === undefined && (opts.check !== undefined || performance.now() - runningSince >= opts.settleMs));
      if (running && opts.check === undefined) return { up: true, healthy, answered, ms: elapsed(), reason: null };
      if (running) {
        const r = await engine.exec(id, ['sh', '-c', opts.check!], { timeoutMs: Math.max(1000, opts.timeoutMs - elapsed()) }).catch((err: Error) => ({ exitCode: -1, output: err.message, timedOut: false }));
        if (r.exitCode === 0 && !r.timedOut) return { up: true, healthy, answered: true, ms: elapsed(), reason: null };
        const tail = r.output.trim().split('\n').at(-1) ?? '';
        last = `its check ${JSON.stringify(opts.check)} ${r.timedOut ? 'timed out' : `exited with ${r.exitCode}`}${tail ? `: ${tail.slice(0, 200)}` : ''}`;
      } else {
        last = c.health === 'starting' ? 'its healthcheck had not passed yet' : 'running, not yet settled';
      }
    } else {
      runningSince = undefined;
      last = `state ${c.state}`;
    }
    if (elapsed() >= opts.timeoutMs) {
      return { up: false, healthy: c.health === undefined ? null : c.health === 'healthy', answered, ms: elapsed(), reason: `not up within ${Math.round(opts.timeoutMs / 1000)} s (${last})` };
    }
    await sleep(opts.pollMs ?? 250, undefined, { signal: opts.signal }).catch(() => undefined);
  }
}
