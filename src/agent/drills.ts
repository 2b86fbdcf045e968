import fs from 'node:fs';
import path from 'node:path';
import { readPasswordFile } from '../config/password.ts';
import type { Config } from '../config/schema.ts';
import type { PeerConfig } from '../replicate/replicator.ts';
import type { AgentCatalog } from '../catalog/agent-catalog.ts';
import { UsageError } from '../errors/errors.ts';
import type { DockerEngine } from '../docker/engine.ts';
import { describeFailure } from '../errors/errors.ts';
import type { Logger } from '../log/logger.ts';
import type { DrillResult } from '../recover/drill.ts';
import { Repository } from '../repo/repository.ts';
import { replicaDir } from '../replicate/replica-path.ts';
import type { WorkerPool } from '../workers/pool.ts';
import { openRepoWorkers } from './workers.ts';

/** The last scheduled drill of one source: its result, or why it could not run. */
export interface DrillRecord {
  readonly source: string;
  readonly at: string;
  readonly ok: boolean;
  readonly duration_ms: number | null;
  readonly result: DrillResult | null;
  readonly error: string | null;
}

/** A drill's verdict as the catalog keeps it for the console's history. */
export interface DrillSummary {
  readonly at: string;
  readonly ok: boolean;
  readonly duration_ms: number | null;
  readonly error: string | null;
}

/** Drill verdicts kept per source. */
const HISTORY = 20;
const historyKey = (source: string) => `drill-history:${source}`;

/** The newest drill verdicts of a source, oldest first (a damaged entry reads as none). */
export function drillHistory(catalog: AgentCatalog, source: string): DrillSummary[] {
  try {
    const v: unknown = JSON.parse(catalog.getMeta(historyKey(source)) ?? '[]');
    return Array.isArray(v) ? (v as DrillSummary[]) : [];
  } catch {
    return [];
  }
}

export function rememberDrill(catalog: AgentCatalog, r: DrillRecord): void {
  const kept = [...drillHistory(catalog, r.source), { at: r.at, ok: r.ok, duration_ms: r.duration_ms, error: r.error }].slice(-HISTORY);
  catalog.setMeta(historyKey(r.source), JSON.stringify(kept));
}

/** The replicas held here: each [[peer]] whose repository this agent holds. */
export function heldReplicas(config: Config): PeerConfig[] {
  return config.peer.filter((p) => fs.existsSync(path.join(replicaDir(config.agent.state_dir, p.id), 'config.json')));
}

/**
 * Runs `fn` on a peer's replica opened with its password, and a worker pool
 * for it. A peer without `password_file` cannot be read: the replica is
 * sealed with its password.
 */
export async function withReplica<T>(config: Config, peer: PeerConfig, fn: (repo: Repository, pool: WorkerPool) => Promise<T>): Promise<T> {
  if (!peer.password_file) throw new UsageError(`[[peer]] ${peer.name} has no password_file: reading its replica needs ${peer.name}'s repository password`);
  const repo = await Repository.open(replicaDir(config.agent.state_dir, peer.id), readPasswordFile(peer.password_file));
  let pool: WorkerPool | undefined;
  try {
    pool = openRepoWorkers(repo, { workers: config.backup.workers, level: 0, packSize: config.repository.pack_size });
    return await fn(repo, pool);
  } finally {
    await pool?.close();
    repo.close();
  }
}

/**
 * The DR drill (scheduled by [drill] schedule, or asked for): each peer whose
 * replica this agent holds (or only `only`) is recovered into isolation on
 * this engine and checked (see src/recover/drill.ts), one after the other. A
 * peer without `password_file` cannot be drilled: that is a failed drill,
 * reported as such, not a silent skip.
 */
export async function drillReplicas(config: Config, engine: DockerEngine, log: Logger, signal: AbortSignal, only?: string): Promise<DrillRecord[]> {
  const { drill } = await import('../recover/drill.ts');
  const out: DrillRecord[] = [];
  for (const peer of heldReplicas(config)) {
    if (only !== undefined && peer.name !== only) continue;
    const at = new Date().toISOString();
    try {
      const result = await withReplica(config, peer, (repo, pool) =>
        drill(engine, repo, peer.name, { onlyHostSnapshots: false, pool, workDir: path.join(config.agent.state_dir, 'tmp'), log, signal }),
      );
      out.push({ source: peer.name, at, ok: result.ok, duration_ms: result.duration_ms, result, error: result.error });
      (result.ok ? log.info : log.error).call(log, { source: peer.name, run_id: result.run_id, duration_ms: result.duration_ms }, `drill of ${peer.name}: ${result.ok ? 'passed' : 'FAILED'}`);
    } catch (err) {
      const f = describeFailure(err);
      out.push({ source: peer.name, at, ok: false, duration_ms: null, result: null, error: `${f.message} [${f.code}]` });
      log.error({ source: peer.name, code: f.code, err: f.message }, `drill of ${peer.name} could not run: ${f.message}`);
    }
  }
  return out;
}
