import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { LABEL } from '../docker/consistency.ts';
import type { DockerEngine } from '../docker/engine.ts';
import type { Repository } from '../repo/repository.ts';
import type { WorkerPool } from '../workers/pool.ts';
import { type Applied, type ApplyOptions, applyPlan, type Made } from './apply.ts';
import { RECOVERY_LABEL } from './labels.ts';
import { buildPlan } from './plan.ts';
import { preflight } from './preflight.ts';
import { type EngineReport, engineReport } from './recover.ts';
import { drillTarget } from './target.ts';
import { checkAgainstSnapshot, type DataCheck } from './volume-check.ts';
import { type UpResult, waitUntilUp } from './wait.ts';

export interface DrillOptions {
  /** Only snapshots recorded under the host's name (a local repository); false: every snapshot (a replica). */
  readonly onlyHostSnapshots: boolean;
  readonly pool: WorkerPool;
  /** Where image trees are unpacked while they load (under the state directory). */
  readonly workDir: string;
  readonly log: Logger;
  /** How long each container gets to come up and pass its healthcheck; default 120 s. */
  readonly upTimeoutMs?: number;
  /** A container without a healthcheck counts as up once it has run this long; default 3 s. */
  readonly settleMs?: number;
  /** Stops waiting and cleans up (the agent shutting down, Ctrl+C). */
  readonly signal?: AbortSignal;
  /** The run id (drillRunId()); the caller makes it to name the drill's leftovers should it be killed. Default a new one. */
  readonly runId?: string;
  readonly onProgress?: ApplyOptions['onProgress'];
}

/** A new drill run id: the prefix of every name a drill uses, and its lifeboat.drill label. */
export function drillRunId(): string {
  return `lbdrill-${randomBytes(3).toString('hex')}`;
}

/** A drill's outcome: plain JSON, for `drill --json`, the agent's status and its metrics. */
export interface DrillResult {
  readonly host: string;
  /** The prefix of every name the drill used, and the value of its lifeboat.drill label. */
  readonly run_id: string;
  readonly started_at: string;
  readonly duration_ms: number;
  /** Every container that ran at backup time came up (healthy where it has a healthcheck) on data equal to its snapshot, and the drill left nothing behind. */
  readonly ok: boolean;
  readonly engine: EngineReport;
  /** In start order. */
  readonly containers: readonly DrillContainer[];
  readonly volumes: readonly DrillVolume[];
  /** Images the drill had to load from the repository (and removed after). */
  readonly images_loaded: readonly string[];
  readonly blockers: readonly string[];
  readonly warnings: readonly string[];
  readonly cleanup: { readonly ok: boolean; readonly left: readonly string[] };
  /** A failure that ended the drill early (the engine went away...), or null. */
  readonly error: string | null;
}

export interface DrillContainer {
  readonly name: string;
  readonly drill_name: string;
  /** It was running at backup time, so the drill started it; one that was stopped is only created. */
  readonly started: boolean;
  /** Null when it was not started. */
  readonly came_up: boolean | null;
  /** Null without a healthcheck (or when not started). */
  readonly healthy: boolean | null;
  /** Its lifeboat.drill-check command answered; null without one (or when not started). */
  readonly answered: boolean | null;
  /** Every volume it mounts matched its snapshot; null when it mounts none from a snapshot. */
  readonly data_matched: boolean | null;
  /** From its start until it was up. */
  readonly up_ms: number | null;
  /** Why it did not come up, or was not created. */
  readonly reason: string | null;
}

export interface DrillVolume {
  readonly name: string;
  readonly drill_name: string;
  readonly snapshot: string;
  readonly time: string;
  /** Null when it was not restored (reason). */
  readonly data_matched: boolean | null;
  readonly files: number | null;
  readonly bytes: number | null;
  readonly difference_count: number;
  readonly differences: readonly string[];
  readonly reason: string | null;
}

/**
 * A DR drill: recovers a host's containers from a repository into isolation
 * on this engine (see drillTarget: renamed, no published ports, an internal
 * network), checks each volume against its snapshot block for block before
 * any container starts, starts in dependency order those that ran at backup
 * time, waits for each to run (and for its healthcheck to pass where it has
 * one), and removes everything it made, whatever happened. Throws only while
 * planning, before it has made anything; after that, failures are in the
 * result.
 */
export async function drill(engine: DockerEngine, repo: Repository, host: string, opts: DrillOptions): Promise<DrillResult> {
  const startedAt = Date.now();
  const runId = opts.runId ?? drillRunId();
  const plan = await buildPlan(repo, { host: opts.onlyHostSnapshots ? host : null });
  const target = drillTarget(plan, host, runId);
  const pre = await preflight(engine, repo, plan, target);
  const made: Made = { containers: [], volumes: [], networks: [], images: [] };
  const data = new Map<string, DataCheck>();
  const ups = new Map<string, UpResult>();
  let applied: Applied | undefined;
  let error: string | null = null;
  try {
    applied = await applyPlan(engine, repo, plan, pre, target, {
      pool: opts.pool,
      workDir: opts.workDir,
      log: opts.log,
      startedAt,
      afterRestore: async (v, volume, snapshot) => void data.set(v.target, await checkAgainstSnapshot(repo, snapshot, volume.mountpoint)),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    }, made);
    const started = applied.containers.filter((c) => c.outcome === 'started');
    const waits = await Promise.allSettled(
      started.map(async (c) => {
        const name = pre.containers.find((p) => p.target === c.target)?.name;
        const check = plan.containers.find((p) => p.name === name)?.spec.labels[LABEL.drillCheck];
        ups.set(
          c.target,
          await waitUntilUp(engine, c.id!, { timeoutMs: opts.upTimeoutMs ?? 120_000, settleMs: opts.settleMs ?? 3000, ...(check ? { check } : {}), ...(opts.signal ? { signal: opts.signal } : {}) }),
        );
      }),
    );
    const failed = waits.find((w) => w.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (err) {
    error = (err as Error).message;
    opts.log.error({ err: error }, 'the drill failed');
  }
  const cleanup = await removeDrill(engine, runId, made);

  const volumes: DrillVolume[] = pre.volumes.map((v, i) => {
    const check = data.get(v.target);
    const outcome = applied?.volumes[i];
    return {
      name: v.name,
      drill_name: v.target,
      snapshot: v.snapshot,
      time: v.time,
      data_matched: check?.matched ?? null,
      files: check?.files ?? null,
      bytes: check?.bytes ?? null,
      difference_count: check?.differenceCount ?? 0,
      differences: check?.differences ?? [],
      reason: check ? null : (outcome?.reason ?? (v.blockers.join('; ') || null)),
    };
  });
  const containers: DrillContainer[] = pre.containers.map((c, i) => {
    const outcome = applied?.containers[i];
    const up = ups.get(c.target);
    const spec = target.spec(plan.containers.find((p) => p.name === c.name)!);
    const mounted = spec.mounts.flatMap((m) => (m.type === 'volume' && m.name && data.has(m.name) ? [data.get(m.name)!] : []));
    const fromSnapshots = spec.mounts.filter((m) => m.type === 'volume' && pre.volumes.some((v) => v.target === m.name)).length;
    return {
      name: c.name,
      drill_name: c.target,
      started: outcome?.outcome === 'started',
      came_up: up ? up.up : null,
      healthy: up ? up.healthy : null,
      answered: up ? up.answered : null,
      data_matched: fromSnapshots === 0 ? null : mounted.length === fromSnapshots && mounted.every((d) => d.matched),
      up_ms: up?.up ? up.ms : null,
      reason: up?.reason ?? outcome?.reason ?? (outcome ? null : c.blockers.join('; ') || null),
    };
  });
  const ok =
    error === null &&
    cleanup.ok &&
    pre.blockers.length === 0 &&
    volumes.every((v) => v.data_matched === true) &&
    containers.every((c, i) => c.data_matched !== false && (pre.containers[i]!.start ? c.came_up === true : applied?.containers[i]?.outcome === 'created'));
  return {
    host,
    run_id: runId,
    started_at: new Date(startedAt).toISOString(),
    duration_ms: Date.now() - startedAt,
    ok,
    engine: engineReport(pre.engine),
    containers,
    volumes,
    images_loaded: made.images,
    blockers: pre.blockers,
    warnings: pre.warnings,
    cleanup,
    error,
  };
}

/**
 * Removes what a drill made: what it recorded, and anything else carrying its
 * run id (a volume the engine created for a mount, say). Returns what could
 * not be removed.
 */
async function removeDrill(engine: DockerEngine, runId: string, made: Made): Promise<{ ok: boolean; left: string[] }> {
  const left: string[] = [];
  const mine = (name: string, labels: Readonly<Record<string, string>>) => labels[RECOVERY_LABEL.drill] === runId || name.startsWith(`${runId}-`) || name === runId;
  const attempt = async (what: string, fn: () => Promise<void>) => fn().catch((err: Error) => void left.push(`${what}: ${err.message}`));

  const containers = new Set(made.containers);
  await attempt('list containers', async () => {
    for (const c of await engine.listContainers()) if (mine(c.name, c.labels)) containers.add(c.id);
  });
  for (const id of containers) await attempt(`container ${id.slice(0, 12)}`, () => engine.removeContainer(id, { force: true }));
  const volumes = new Set(made.volumes);
  await attempt('list volumes', async () => {
    for (const v of await engine.listVolumes()) if (mine(v.name, v.labels)) volumes.add(v.name);
  });
  for (const name of volumes) await attempt(`volume ${name}`, () => engine.removeVolume(name));
  const networks = new Set(made.networks);
  await attempt('list networks', async () => {
    for (const n of await engine.listNetworks()) if (mine(n.name, n.labels)) networks.add(n.name);
  });
  for (const name of networks) await attempt(`network ${name}`, () => engine.removeNetwork(name));
  for (const id of made.images) await attempt(`image ${id}`, () => engine.removeImage(id));
  return { ok: left.length === 0, left };
}
