import type { Logger } from 'pino';
import type { ContainerState, DockerEngine } from '../docker/engine.ts';
import type { Repository } from '../repo/repository.ts';
import type { WorkerPool } from '../workers/pool.ts';
import { type Applied, type ApplyOptions, applyPlan } from './apply.ts';
import { buildPlan, type PlanOptions, type RecoveryPlan } from './plan.ts';
import { type Preflight, preflight } from './preflight.ts';
import { recoveryTarget } from './target.ts';

export interface RecoverOptions extends Omit<PlanOptions, 'host'> {
  /** Only snapshots recorded under the host's name (a local repository); false: every snapshot (a replica holds only that host's). */
  readonly onlyHostSnapshots: boolean;
  /** Replace existing containers and non-empty volumes that a recovery did not make. */
  readonly force?: boolean;
  /** Check and report only; change nothing. */
  readonly dryRun?: boolean;
  readonly pool: WorkerPool;
  /** Where image trees are unpacked while they load (under the state directory). */
  readonly workDir: string;
  readonly log: Logger;
  /** Epoch milliseconds recovery times are measured from; default now. The CLI passes its process start. */
  readonly startedAt?: number;
  /** Once aborted (Ctrl-C), nothing more is started: what is left is skipped with the reason "aborted". */
  readonly signal?: AbortSignal;
  readonly onProgress?: ApplyOptions['onProgress'];
}

/** This engine's platform, as reports print it. */
export interface EngineReport {
  readonly name: string;
  readonly os: string;
  readonly architecture: string;
  readonly os_version: string;
  readonly isolation: 'process' | 'hyperv' | null;
  readonly volume_drivers: readonly string[];
}

export function engineReport(e: Preflight['engine']): EngineReport {
  return { name: e.name, os: e.os, architecture: e.architecture, os_version: e.osVersion, isolation: e.isolation, volume_drivers: e.volumeDrivers };
}

/** What `recover` prints with --json: the plan with every check, and with what happened unless a dry run. */
export interface RecoveryReport {
  readonly host: string;
  readonly at: string | null;
  readonly dry_run: boolean;
  /** Every container and volume recovered (or already there); false when something was skipped or failed. */
  readonly complete: boolean;
  readonly engine: EngineReport;
  readonly volumes: readonly {
    readonly name: string;
    readonly target: string;
    readonly snapshot: string;
    readonly time: string;
    readonly driver: string;
    readonly action: string;
    readonly outcome: string | null;
    readonly reason: string | null;
    readonly files: number | null;
    readonly bytes: number | null;
    /** How long the restore took. */
    readonly ms: number | null;
    readonly blockers: readonly string[];
    readonly warnings: readonly string[];
  }[];
  readonly images: readonly {
    readonly id: string;
    readonly tags: readonly string[];
    readonly platform: string;
    readonly source: string;
    readonly snapshot: string | null;
    readonly outcome: string | null;
    readonly error: string | null;
    /** How long loading took. */
    readonly ms: number | null;
    readonly blockers: readonly string[];
    readonly warnings: readonly string[];
  }[];
  readonly networks: readonly { readonly name: string; readonly action: string; readonly outcome: string | null }[];
  /** In start order. */
  readonly containers: readonly {
    readonly name: string;
    readonly target: string;
    readonly image_id: string;
    readonly state_at_backup: ContainerState;
    readonly start: boolean;
    readonly action: string;
    readonly outcome: string | null;
    readonly id: string | null;
    readonly reason: string | null;
    readonly rto_ms: number | null;
    readonly blockers: readonly string[];
    readonly warnings: readonly string[];
  }[];
  readonly blockers: readonly string[];
  readonly warnings: readonly string[];
  /** From the command's start until the last container it started was running; null when it started none. */
  readonly rto_ms: number | null;
  readonly duration_ms: number;
}

/**
 * Brings a host's containers back on this engine from a repository (a replica
 * or a local one, opened with the source host's password): the plan, the
 * preflight, and unless a dry run, the recovery. Safe to run again: what a
 * recovery of this host made (lifeboat.recovered-from=HOST) is recognised
 * and kept, never replaced; containers it made and did not start yet are
 * started.
 */
export async function recover(engine: DockerEngine, repo: Repository, host: string, opts: RecoverOptions): Promise<RecoveryReport> {
  const startedAt = opts.startedAt ?? Date.now();
  const plan = await buildPlan(repo, { host: opts.onlyHostSnapshots ? host : null, ...(opts.at ? { at: opts.at } : {}), ...(opts.containers ? { containers: opts.containers } : {}) });
  const target = recoveryTarget(plan, host, opts.force ?? false);
  const pre = await preflight(engine, repo, plan, target);
  const apply = { pool: opts.pool, workDir: opts.workDir, log: opts.log, startedAt, ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) };
  const applied = opts.dryRun ? undefined : await applyPlan(engine, repo, plan, pre, target, apply);
  return report(host, plan, pre, applied, startedAt);
}

function report(host: string, plan: RecoveryPlan, pre: Preflight, applied: Applied | undefined, startedAt: number): RecoveryReport {
  const containers = pre.containers.map((c, i) => {
    const done = applied?.containers[i];
    const planned = plan.containers.find((p) => p.name === c.name)!;
    return {
      name: c.name,
      target: c.target,
      image_id: c.imageId,
      state_at_backup: planned.state,
      start: c.start,
      action: c.action,
      outcome: done?.outcome ?? null,
      id: done?.id ?? c.existingId,
      reason: done?.reason ?? null,
      rto_ms: done?.rtoMs ?? null,
      blockers: c.blockers,
      warnings: c.warnings,
    };
  });
  const volumes = pre.volumes.map((v, i) => {
    const done = applied?.volumes[i];
    return {
      name: v.name,
      target: v.target,
      snapshot: v.snapshot,
      time: v.time,
      driver: v.driver,
      action: v.action,
      outcome: done?.outcome ?? null,
      reason: done?.reason ?? null,
      files: done?.files ?? null,
      bytes: done?.bytes ?? null,
      ms: done?.ms ?? null,
      blockers: v.blockers,
      warnings: v.warnings,
    };
  });
  const rtos = containers.flatMap((c) => (c.rto_ms === null ? [] : [c.rto_ms]));
  const complete = applied
    ? applied.containers.every((c) => c.outcome !== 'skipped' && c.outcome !== 'failed') && applied.volumes.every((v) => v.outcome === 'restored' || v.outcome === 'kept')
    : pre.blockers.length === 0;
  return {
    host,
    at: plan.at,
    dry_run: applied === undefined,
    complete,
    engine: engineReport(pre.engine),
    volumes,
    images: pre.images.map((img, i) => ({
      id: img.id,
      tags: img.repoTags,
      platform: img.platform,
      source: img.source,
      snapshot: img.snapshot,
      outcome: applied?.images[i]?.outcome ?? null,
      error: applied?.images[i]?.error ?? null,
      ms: applied?.images[i]?.ms ?? null,
      blockers: img.blockers,
      warnings: img.warnings,
    })),
    networks: pre.networks.map((n, i) => ({ name: n.name, action: n.action, outcome: applied?.networks[i]?.outcome ?? null })),
    containers,
    blockers: pre.blockers,
    warnings: pre.warnings,
    rto_ms: rtos.length > 0 ? Math.max(...rtos) : null,
    duration_ms: Date.now() - startedAt,
  };
}
