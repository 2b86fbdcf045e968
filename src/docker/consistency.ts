import fs from 'node:fs';
import type { Logger } from 'pino';
import { HookFailedError, LabelError } from '../errors/errors.ts';
import { faultPoint } from '../util/fault.ts';
import type { ContainerDetail, DockerEngine } from './engine.ts';
import { namespaceOwners } from './runtime.ts';

/** The labels, in offen/docker-volume-backup's vocabulary under the prefix lifeboat. */
export const LABEL = {
  exclude: 'lifeboat.exclude',
  stop: 'lifeboat.stop-during-backup',
  pause: 'lifeboat.pause-during-backup',
  pre: 'lifeboat.backup-pre',
  post: 'lifeboat.backup-post',
  /** Extra dependencies, "name,name": containers this one needs started first. */
  dependsOn: 'lifeboat.depends-on',
  /**
   * How the container's data is made consistent: `postgres` (its online
   * backup protocol, no freeze), or `pause` and `stop` (as the two labels above).
   */
  consistency: 'lifeboat.consistency',
  /** A command (sh -c) a drill runs in the recovered container until it exits 0: the application answers. */
  drillCheck: 'lifeboat.drill-check',
} as const;

export function flag(labels: Readonly<Record<string, string>>, key: string): boolean {
  return /^(1|true|yes|on)$/i.test(labels[key] ?? '');
}

const CONSISTENCY = ['postgres', 'pause', 'stop'] as const;
export type Consistency = (typeof CONSISTENCY)[number];

/**
 * What a container's labels ask for its data's consistency during a backup;
 * a value of lifeboat.consistency this version does not know is refused
 * (LabelError), not taken as nothing: the backup would not be what they meant.
 */
export function consistencyOf(c: Pick<ContainerDetail, 'name' | 'labels'>): Consistency | undefined {
  const asked = c.labels[LABEL.consistency];
  if (asked !== undefined) {
    const known = CONSISTENCY.find((k) => k === asked.trim().toLowerCase());
    if (!known) throw new LabelError(`container ${c.name} carries ${LABEL.consistency}=${JSON.stringify(asked)}: not one of ${CONSISTENCY.join(', ')}`);
    return known;
  }
  return flag(c.labels, LABEL.stop) ? 'stop' : flag(c.labels, LABEL.pause) ? 'pause' : undefined;
}

export type QuiesceAction = 'paused' | 'stopped';

/** A container a backup paused or stopped and has not returned to running yet. */
export interface QuiescedRow {
  readonly container: string;
  readonly name: string;
  readonly action: QuiesceAction;
  /** When it was noted (ISO). */
  readonly since: string;
  /** The process returning it ("pid/start time"); null once that process gave up. */
  readonly owner: string | null;
}

/**
 * Where each pause and stop is noted before it happens and cleared once
 * undone, so a crash cannot leave it in place (the agent catalog keeps it).
 */
export interface QuiesceJournal {
  /** Records, before the engine is asked, that `owner` pauses or stops a container. */
  noteQuiesced(row: { container: string; name: string; action: QuiesceAction; owner: string }): void;
  /** The container is back in its running state. */
  clearQuiesced(container: string): void;
  /** Its owner could not return the container: it is left for whoever replays the journal. */
  releaseQuiesced(container: string): void;
  /** Takes over, in one transaction, the rows `abandoned` says no live process is returning. */
  claimQuiesced(owner: string, abandoned: (owner: string | null) => boolean): QuiescedRow[];
  quiesced(): QuiescedRow[];
}

export interface QuiesceOptions {
  readonly hookTimeoutMs: number;
  readonly stopTimeoutSeconds: number;
  readonly log: Logger;
  /** Where each pause and stop is noted before it happens and cleared once undone, so a crash cannot leave it in place. */
  readonly journal: QuiesceJournal;
  /**
   * Once aborted (Ctrl-C on the CLI), nothing more is paused or stopped and
   * the work is not begun: what was is returned, and the abort's reason thrown.
   */
  readonly signal?: AbortSignal;
}

export interface ContainerAction {
  readonly container: string;
  readonly action: QuiesceAction;
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
 * paused; then, when work calls thaw() (it has captured what it reads) or
 * ends, whatever happened, paused ones are unpaused and stopped ones started
 * (dependencies first; as their state then asks: an engine that restarted
 * meanwhile left the paused ones exited too), and backup-post commands run.
 * Only containers that were running are touched: one that was stopped stays
 * so. An abort (opts.signal) stops it between steps: what it had paused or
 * stopped is returned, and the abort's reason thrown.
 *
 * Every pause and stop is noted in the journal before the engine is asked and
 * cleared once undone. A container this process cannot return (the engine went
 * away) is released in the journal; one it never gets to (it was killed) stays
 * owned by a dead process; returnAbandoned() returns both later.
 */
export async function withQuiesced<T>(
  engine: DockerEngine,
  containers: readonly ContainerDetail[],
  opts: QuiesceOptions,
  work: (thaw: () => Promise<void>) => Promise<T>,
): Promise<{ result: T; report: QuiesceReport }> {
  const running = startOrder(containers.filter((c) => c.state === 'running' && !flag(c.labels, LABEL.exclude)));
  for (const c of running) await runHook(engine, c, 'pre', opts);
  opts.signal?.throwIfAborted();

  const owner = processToken();
  const quiesced: { c: ContainerDetail; action: QuiesceAction; at: number }[] = [];
  const quiesce = async (c: ContainerDetail, action: QuiesceAction, ask: () => Promise<void>) => {
    opts.signal?.throwIfAborted();
    opts.log.info({ container: c.name }, `${action === 'paused' ? 'pausing' : 'stopping'} for the backup`);
    opts.journal.noteQuiesced({ container: c.id, name: c.name, action, owner });
    // Returned afterwards even when asking failed: the engine may have done it anyway.
    quiesced.push({ c, action, at: performance.now() });
    await ask();
  };
  const actions: ContainerAction[] = [];
  const failures: string[] = [];
  const warnings: string[] = [];
  let thawed: Promise<void> | undefined;
  // Never rejects: what could not be returned is reported once the work is over.
  const thaw = () =>
    (thawed ??= (async () => {
      // Paused ones first (they resume at once), then the stopped ones, dependencies first.
      const byAction = (a: QuiesceAction) => quiesced.filter((q) => q.action === a).reverse();
      for (const { c, action, at } of [...byAction('paused'), ...byAction('stopped')]) {
        try {
          await returnToRunning(engine, c.id);
          opts.journal.clearQuiesced(c.id);
          actions.push({ container: c.name, action, ms: Math.round(performance.now() - at) });
        } catch (err) {
          opts.journal.releaseQuiesced(c.id);
          failures.push(`${c.name} (${action}): ${(err as Error).message}`);
        }
      }
      for (const a of actions) opts.log.info({ container: a.container, ms: a.ms }, `was ${a.action} for the backup`);
      if (failures.length > 0) return;
      for (const c of running) await runHook(engine, c, 'post', opts).catch((err: Error) => warnings.push(err.message));
    })());
  let result: T | undefined;
  let failed: { error: unknown } | undefined;
  try {
    for (const c of [...running].reverse()) {
      if (consistencyOf(c) === 'stop') await quiesce(c, 'stopped', () => engine.stop(c.id, opts.stopTimeoutSeconds));
    }
    for (const c of running) {
      if (consistencyOf(c) === 'pause') await quiesce(c, 'paused', () => engine.pause(c.id));
    }
    faultPoint('quiesced');
    opts.signal?.throwIfAborted();
    result = await work(thaw);
  } catch (error) {
    failed = { error };
  }
  await thaw();
  // A container left paused or stopped is worse than a failed backup: say so above all else.
  if (failures.length > 0) {
    opts.log.error({ failures }, 'could not return containers to their running state');
    const also = failed ? `; the backup had failed too: ${(failed.error as Error).message}` : '';
    throw new HookFailedError(
      `could not return containers to their running state: ${failures.join('; ')}${also} ` +
        '(the agent returns them once the engine answers again, as does the next volume backup)',
    );
  }
  if (failed) throw failed.error;
  return { result: result as T, report: { actions, warnings } };
}

/** What returnAbandoned did with one container. */
export interface ReturnedContainer {
  readonly container: string;
  readonly name: string;
  readonly action: QuiesceAction;
  /** "unpaused" or "started"; "running" when nothing was needed; "gone" when it no longer exists. */
  readonly outcome: Awaited<ReturnType<typeof returnToRunning>>;
}

/**
 * Returns to running the containers that a backup paused or stopped and never
 * returned, because its process died (a kill, a power cut) or gave up (the
 * engine went away; an engine restarted without live-restore leaves them all
 * exited, paused ones too). Rows of a backup still running are left to it.
 * The agent calls this when it (re)connects to the engine, and every volume
 * backup before it starts. Whatever the engine cannot return now stays in
 * the journal for the next call; only a failing catalog rejects.
 */
export async function returnAbandoned(engine: DockerEngine, journal: QuiesceJournal, log: Logger): Promise<ReturnedContainer[]> {
  const rows = journal.claimQuiesced(processToken(), ownerGone);
  const done: ReturnedContainer[] = [];
  // Paused ones first, then stopped ones, dependencies first.
  const details = new Map<string, ContainerDetail>();
  for (const r of rows) {
    const d = await engine.inspectContainer(r.container).catch(() => undefined);
    if (d) details.set(r.container, d);
  }
  const stoppedFirst = startOrder(rows.filter((r) => r.action === 'stopped').flatMap((r) => details.get(r.container) ?? []));
  const order = [
    ...rows.filter((r) => r.action === 'paused'),
    ...stoppedFirst.map((d) => rows.find((r) => r.container === d.id)!),
    ...rows.filter((r) => r.action === 'stopped' && !details.has(r.container)),
  ];
  for (const r of order) {
    try {
      const outcome = await returnToRunning(engine, r.container);
      journal.clearQuiesced(r.container);
      done.push({ container: r.container, name: r.name, action: r.action, outcome });
      log.warn({ container: r.name, was: r.action, since: r.since, outcome }, `returned container ${r.name} to running: an interrupted backup had left it ${r.action}`);
    } catch (err) {
      journal.releaseQuiesced(r.container);
      log.error({ container: r.name, was: r.action, err: (err as Error).message }, `could not return container ${r.name} to running yet; will try again`);
    }
  }
  return done;
}

/**
 * The containers this process has paused or stopped and not returned yet, as
 * the journal has them: what exiting now would leave so.
 */
export function quiescedByThisProcess(journal: Pick<QuiesceJournal, 'quiesced'>): QuiescedRow[] {
  const me = processToken();
  return journal.quiesced().filter((r) => r.owner === me);
}

/** Unpauses or starts a container, as its state needs. */
async function returnToRunning(engine: DockerEngine, id: string): Promise<'unpaused' | 'started' | 'running' | 'gone'> {
  const c = await engine.inspectContainer(id);
  if (!c) return 'gone';
  if (c.state === 'running' || c.state === 'restarting') return 'running';
  if (c.state === 'paused') {
    await engine.unpause(id);
    return 'unpaused';
  }
  await engine.start(id);
  return 'started';
}

/** This process as the journal names an owner: its pid and start time, so a later process given the same pid is not taken for it. */
function processToken(pid = process.pid): string {
  return `${pid}/${startTime(pid) ?? ''}`;
}

/** Start time in clock ticks since boot (Linux); undefined elsewhere or when the process is gone. */
function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces), from field 3 on; starttime is field 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function ownerGone(owner: string | null): boolean {
  if (owner === null) return true;
  const [pid, start] = owner.split('/');
  try {
    process.kill(Number(pid), 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
  }
  return start !== '' && startTime(Number(pid)) !== start;
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
 * Dependencies first: a container sharing another's namespaces (network,
 * IPC or PID mode container:X), linking to it, or naming it in compose's
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
    for (const owner of namespaceOwners(c.spec)) add(owner);
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
