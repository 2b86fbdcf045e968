import { setTimeout as sleep } from 'node:timers/promises';
import type { DockerEngine } from '../docker/engine.ts';

export interface UpOptions {
  /** Give up after this long. */
  readonly timeoutMs: number;
  /** A container without a healthcheck counts as up once it has run this long without stopping. */
  readonly settleMs: number;
  readonly pollMs?: number;
  readonly signal?: AbortSignal;
}

export interface UpResult {
  readonly up: boolean;
  /** Null when the container has no healthcheck. */
  readonly healthy: boolean | null;
  /** From the call until it was up (or gave up). */
  readonly ms: number;
  readonly reason: string | null;
}

/**
 * Waits until a started container is up: healthy when it has a healthcheck,
 * else running for settleMs without stopping. A container that stops, turns
 * unhealthy or is removed is not up; neither is one still starting at the
 * timeout.
 */
export async function waitUntilUp(engine: DockerEngine, id: string, opts: UpOptions): Promise<UpResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let runningSince: number | undefined;
  let last = 'not yet running';
  for (;;) {
    if (opts.signal?.aborted) return { up: false, healthy: null, ms: elapsed(), reason: 'aborted' };
    const c = await engine.inspectContainer(id);
    if (!c) return { up: false, healthy: null, ms: elapsed(), reason: 'the container was removed' };
    if (c.state === 'exited' || c.state === 'dead') return { up: false, healthy: null, ms: elapsed(), reason: `it stopped (${c.state}) after starting` };
    if (c.state === 'running') {
      runningSince ??= performance.now();
      if (c.health === 'healthy') return { up: true, healthy: true, ms: elapsed(), reason: null };
      if (c.health === 'unhealthy') return { up: false, healthy: false, ms: elapsed(), reason: 'its healthcheck reports unhealthy' };
      if (c.health === undefined && performance.now() - runningSince >= opts.settleMs) return { up: true, healthy: null, ms: elapsed(), reason: null };
      last = c.health === 'starting' ? 'its healthcheck had not passed yet' : 'running, not yet settled';
    } else {
      runningSince = undefined;
      last = `state ${c.state}`;
    }
    if (elapsed() >= opts.timeoutMs) {
      return { up: false, healthy: c.health === undefined ? null : false, ms: elapsed(), reason: `not up within ${Math.round(opts.timeoutMs / 1000)} s (${last})` };
    }
    await sleep(opts.pollMs ?? 250, undefined, { signal: opts.signal }).catch(() => undefined);
  }
}
