import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.ts';
import { RepositoryLockedError } from '../errors/errors.ts';
import type { Logger } from '../log/logger.ts';
import { prune, REPACK_UNUSED } from '../repo/prune.ts';
import { forget } from '../repo/forget.ts';
import { hasPolicy } from '../repo/retention.ts';
import { Store } from '../repo/store.ts';
import { replicaDir } from './replica-path.ts';

export interface ReplicaRetentionReport {
  readonly source: string;
  readonly kept: number;
  readonly removed: number;
  readonly bytes_freed: number;
}

/**
 * The peer's own retention over the replicas it holds ([replication.retention],
 * else [retention]): a source can never make its peer delete anything, so
 * this is the only way replicated snapshots go. Runs without the sources'
 * passwords: snapshot rows are in clear and prune marks through the edges
 * each source declared. A replica a push is writing right now is skipped
 * until the next run.
 */
export async function replicaRetention(config: Config, log: Logger): Promise<ReplicaRetentionReport[]> {
  const policy = config.replication.retention ?? config.retention;
  if (!hasPolicy(policy)) return [];
  const out: ReplicaRetentionReport[] = [];
  for (const peer of config.peer) {
    const dir = replicaDir(config.agent.state_dir, peer.id);
    if (!fs.existsSync(path.join(dir, 'config.json'))) continue;
    const store = Store.openStore(dir);
    try {
      const decisions = forget(store, policy);
      const removed = decisions.filter((d) => !d.keep).length;
      const kept = decisions.length - removed;
      const pruned = await prune(store, { maxUnused: REPACK_UNUSED, packSize: config.repository.pack_size });
      out.push({ source: peer.name, kept, removed, bytes_freed: pruned.bytes_freed });
      log.info({ source: peer.name, kept, removed, ...pruned }, `replica of ${peer.name}: forgot ${removed} snapshots, kept ${kept}, pruned`);
    } catch (err) {
      if (!(err instanceof RepositoryLockedError)) throw err;
      log.info({ source: peer.name }, `replica of ${peer.name} is being written; its retention waits for the next run`);
    } finally {
      store.close();
    }
  }
  return out;
}
