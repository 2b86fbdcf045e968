import type { Logger } from 'pino';
import { HookFailedError } from '../errors/errors.ts';
import type { ContainerDetail, DockerEngine } from './engine.ts';

/** The labels, in offen/docker-volume-backup's vocabulary under the prefix lifeboat. */
export const LABEL = {
  exclude: 'lifeboat.exclude',
  stop: 'lifeboat.stop-during-backup',
  pause: 'lifeboat.pause-during-backup',
  pre: 'lifeboat.backup-pre',
  post: 'lifeboat.backup-post',
  /** Extra dependencies, "name,name": containers this one needs started first. */
  dependsOn: 'lifeboat.depends-on',
} as const;

export function flag(labels: Readonly<Record<string, string>>, key: string): boolean {
  return /^(1|true|yes|on)$/i.test(labels[key] ?? '');
}

export interface QuiesceOptions {
  readonly hookTimeoutMs: number;
  readonly stopTimeoutSeconds: number;
  readonly log: Logger;
}

export interface ContainerAction {
  readonly container: string;
  readonly action: 'paused' | 'stopped';
  /** How long the container was paused or stopped, for the report. */
  readonly ms: number;
}

export interface QuiesceReport {
  readonly actions: readonly ContainerAction[];
  /** Problems after the work: a post hook that failed. The work's result stands. */
  readonly warnings: readonly string[];
}

/**
 * Runs `work` (the read of a volume) with the containers that use the volume
 * made consistent, as their labels ask: backup-pre commands first (any
 * failure aborts before anything is stopped), then stop-during-backup
 * containers are stopped (dependents first) and pause-during-backup ones
 * paused; afterwards, whatever happened, paused ones are unpaused and stopped
 * ones started (dependencies first), then backup-post commands run. Only
 * containers that were running are touched: one that was stopped stays so.
 */
export async function withQuiesced<T>(
  engine: DockerEngine,
  containers: readonly ContainerDetail[],
  opts: QuiesceOptions,
  work: () => Promise<T>,
): Promise<{ result: T; report: QuiesceReport }> {
  const running = startOrder(containers.filter((c) => c.state === 'running' && !flag(c.labels, LABEL.exclude)));
  for (const c of running) await runHook(engine, c, 'pre', opts);

  const stopped: { c: ContainerDetail; at: number }[] = [];
  const paused: { c: ContainerDetail; at: number }[] = [];
  const actions: ContainerAction[] = [];
  let result: T | undefined;
  let failed: { error: unknown } | undefined;
  try {
    for (const c of [...running].reverse()) {
      if (!flag(c.labels, LABEL.stop)) continue;
      opts.log.info({ container: c.name }, 'stopping for the backup');
      await engine.stop(c.id, opts.stopTimeoutSeconds);
      stopped.push({ c, at: performance.now() });
    }
    for (const c of running) {
      if (!flag(c.labels, LABEL.pause) || flag(c.labels, LABEL.stop)) continue;
      opts.log.info({ container: c.name }, 'pausing for the backup');
      await engine.pause(c.id);
      paused.push({ c, at: performance.now() });
    }
    result = await work();
  } catch (error) {
    failed = { error };
  }
  {
    const failures: string[] = [];
    for (const { c, at } of [...paused].reverse()) {
      await engine.unpause(c.id).then(
        () => actions.push({ container: c.name, action: 'paused', ms: Math.round(performance.now() - at) }),
        (err: Error) => failures.push(`unpause ${c.name}: ${err.message}`),
      );
    }
    for (const { c, at } of [...stopped].reverse()) {
      await engine.start(c.id).then(
        () => actions.push({ container: c.name, action: 'stopped', ms: Math.round(performance.now() - at) }),
        (err: Error) => failures.push(`start ${c.name}: ${err.message}`),
      );
    }
    for (const a of actions) opts.log.info({ container: a.container, ms: a.ms }, `was ${a.action} for the backup`);
    // A container left paused or stopped is worse than a failed backup: say so above all else.
    if (failures.length > 0) {
      opts.log.error({ failures }, 'could not return containers to their running state');
      const also = failed ? `; the backup had failed too: ${(failed.error as Error).message}` : '';
      throw new HookFailedError(`could not return containers to their running state: ${failures.join('; ')}${also}`);
    }
  }
  if (failed) throw failed.error;
  const warnings: string[] = [];
  for (const c of running) {
    await runHook(engine, c, 'post', opts).catch((err: Error) => warnings.push(err.message));
  }
  return { result: result as T, report: { actions, warnings } };
}

async function runHook(engine: DockerEngine, c: ContainerDetail, which: 'pre' | 'post', opts: QuiesceOptions): Promise<void> {
  const command = c.labels[which === 'pre' ? LABEL.pre : LABEL.post];
  if (!command) return;
  const label = `lifeboat.backup-${which}`;
  const r = await engine.exec(c.id, ['sh', '-c', command], { timeoutMs: opts.hookTimeoutMs }).catch((err: Error) => {
    throw new HookFailedError(`${label} of container ${c.name} could not run: ${err.message}`);
  });
  opts.log.info({ container: c.name, hook: which, exitCode: r.exitCode, output: r.output }, `${label} ran`);
  if (r.timedOut) throw new HookFailedError(`${label} of container ${c.name} did not finish within ${opts.hookTimeoutMs} ms`);
  if (r.exitCode !== 0) {
    const tail = r.output.trim().split('\n').at(-1) ?? '';
    throw new HookFailedError(`${label} of container ${c.name} exited with ${r.exitCode}${tail ? `: ${tail}` : ''}`);
  }
}

/**
 * Dependencies first: a container sharing another's network namespace
 * (network mode container:X), linking to it, or naming it in compose's
 * depends_on (same project) or in lifeboat.depends-on comes after it. Ties
 * and cycles fall back to name order, so the order is always total.
 */
export function startOrder(containers: readonly ContainerDetail[]): ContainerDetail[] {
  const byKey = new Map<string, ContainerDetail>();
  for (const c of containers) {
    byKey.set(c.id, c);
    byKey.set(c.name, c);
  }
  const deps = new Map<ContainerDetail, Set<ContainerDetail>>();
  for (const c of containers) {
    const needs = new Set<ContainerDetail>();
    const add = (key: string | undefined) => {
      const d = key === undefined ? undefined : byKey.get(key.replace(/^\//, ''));
      if (d && d !== c) needs.add(d);
    };
    const mode = c.spec.networkMode;
    if (mode.startsWith('container:')) add(mode.slice('container:'.length));
    for (const link of c.spec.links) add(link.split(':')[0]);
    for (const name of (c.labels[LABEL.dependsOn] ?? '').split(',')) add(name.trim() || undefined);
    const project = c.labels['com.docker.compose.project'];
    for (const entry of (c.labels['com.docker.compose.depends_on'] ?? '').split(',')) {
      const service = entry.split(':')[0]?.trim();
      if (!service) continue;
      for (const other of containers) {
        if (other.labels['com.docker.compose.project'] === project && other.labels['com.docker.compose.service'] === service) add(other.id);
      }
    }
    deps.set(c, needs);
  }
  const order: ContainerDetail[] = [];
  const pending = [...containers].sort((a, b) => a.name.localeCompare(b.name));
  while (pending.length > 0) {
    const ready = pending.findIndex((c) => [...deps.get(c)!].every((d) => order.includes(d)));
    order.push(...pending.splice(ready === -1 ? 0 : ready, 1));
  }
  return order;
}
