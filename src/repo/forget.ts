import { applyPolicy, type Decision, type RetentionPolicy } from './retention.ts';
import type { Snapshot } from './snapshot.ts';
import { deleteSnapshots, listSnapshots } from './snapshots.ts';
import type { Store } from './store.ts';

/**
 * Applies a retention policy to the snapshots `which` selects (all by
 * default), deciding and deleting under the exclusive lock so that no backup
 * commits a snapshot in between. A dry run only decides, and takes no lock.
 * Prune is separate: it takes the lock itself.
 */
export function forget(store: Store, policy: RetentionPolicy, opts: { which?: (s: Snapshot) => boolean; dryRun?: boolean } = {}): Decision[] {
  const decide = () => applyPolicy(listSnapshots(store).filter(opts.which ?? (() => true)), policy);
  if (opts.dryRun) return decide();
  const lock = store.lock('exclusive');
  try {
    const decisions = decide();
    deleteSnapshots(store, decisions.filter((d) => !d.keep).map((d) => d.snapshot.id));
    return decisions;
  } finally {
    lock.release();
  }
}
