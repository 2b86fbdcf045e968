import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import { prune, type PruneReport, REPACK_UNUSED } from '../repo/prune.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { forgetUnusedImages } from '../backup/image-retention.ts';
import { forget } from '../repo/forget.ts';
import { hasPolicy } from '../repo/retention.ts';

export interface RetentionReport {
  readonly skipped: boolean;
  readonly kept: number;
  readonly removed: readonly string[];
  readonly prune: PruneReport | null;
  readonly durationMs: number;
}

/**
 * One retention run: the [retention] policy over this host's snapshots
 * (forget, under the exclusive lock), its image snapshots that no volume
 * snapshot names any more, then prune (which takes the lock itself). Nothing happens, with a log line, while [retention] sets no rule.
 * The agent runs it through its job queue, so none of its own backups is
 * under way; another process's backup makes the lock fail, and the run is
 * tried again at the next schedule.
 */
export async function runRetention(repo: Repository, config: Config, log: Logger): Promise<RetentionReport> {
  const started = performance.now();
  const policy = config.retention;
  if (!hasPolicy(policy)) {
    log.info('retention: [retention] sets no keep_* rule, so nothing is forgotten');
    return { skipped: true, kept: 0, removed: [], prune: null, durationMs: 0 };
  }
  const host = config.agent.host;
  const own = (s: Snapshot) => s.host === host;
  const decisions = forget(repo, policy, { which: own });
  const images = await forgetUnusedImages(repo, { which: own });
  const removed = new Set([...decisions.filter((d) => !d.keep).map((d) => d.snapshot.id), ...images.map((s) => s.id)]);
  const kept = decisions.filter((d) => !removed.has(d.snapshot.id)).length;
  const pruned = await prune(repo, { maxUnused: REPACK_UNUSED, packSize: config.repository.pack_size });
  const durationMs = Math.round(performance.now() - started);
  log.info({ kept, removed: removed.size, ...pruned, duration_ms: durationMs }, `retention: forgot ${removed.size} snapshots, kept ${kept}, pruned`);
  return { skipped: false, kept, removed: [...removed], prune: pruned, durationMs };
}
