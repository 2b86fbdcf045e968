import fs from 'node:fs';
import path from 'node:path';
import { readPasswordFile } from '../config/password.ts';
import type { Config } from '../config/schema.ts';
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

/**
 * The scheduled DR drill ([drill] schedule): each peer whose replica this
 * agent holds is recovered into isolation on this engine and checked (see
 * src/recover/drill.ts), one after the other. A peer without `password_file`
 * cannot be drilled (the replica is sealed with its password): that is a
 * failed drill, reported as such, not a silent skip.
 */
export async function drillReplicas(config: Config, engine: DockerEngine, log: Logger, signal: AbortSignal): Promise<DrillRecord[]> {
  const { drill } = await import('../recover/drill.ts');
  const out: DrillRecord[] = [];
  for (const peer of config.peer) {
    const dir = replicaDir(config.agent.state_dir, peer.id);
    if (!fs.existsSync(path.join(dir, 'config.json'))) continue;
    const at = new Date().toISOString();
    const failed = (error: string): DrillRecord => ({ source: peer.name, at, ok: false, duration_ms: null, result: null, error });
    if (!peer.password_file) {
      out.push(failed(`[[peer]] ${peer.name} has no password_file: the drill needs ${peer.name}'s repository password to read its replica`));
      continue;
    }
    let repo: Repository | undefined;
    let pool: WorkerPool | undefined;
    try {
      repo = await Repository.open(dir, readPasswordFile(peer.password_file));
      pool = openRepoWorkers(repo, { workers: config.backup.workers, level: 0, packSize: config.repository.pack_size });
      const result = await drill(engine, repo, peer.name, { onlyHostSnapshots: false, pool, workDir: path.join(config.agent.state_dir, 'tmp'), log, signal });
      out.push({ source: peer.name, at, ok: result.ok, duration_ms: result.duration_ms, result, error: result.error });
      (result.ok ? log.info : log.error).call(log, { source: peer.name, run_id: result.run_id, duration_ms: result.duration_ms }, `drill of ${peer.name}: ${result.ok ? 'passed' : 'FAILED'}`);
    } catch (err) {
      const f = describeFailure(err);
      out.push(failed(`${f.message} [${f.code}]`));
      log.error({ source: peer.name, code: f.code, err: f.message }, `drill of ${peer.name} could not run: ${f.message}`);
    } finally {
      await pool?.close();
      repo?.close();
    }
  }
  return out;
}
