import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { deleteSnapshots, listSnapshots, loadSnapshotMeta } from '../repo/snapshots.ts';
import { imageTag } from './images.ts';
import type { VolumeSnapshotMeta } from './volume.ts';

/**
 * Image snapshots that no volume snapshot names any more: their containers
 * moved to newer images, and retention has since forgotten every snapshot
 * that recorded the old ones. A time policy cannot decide this (each image is
 * the only snapshot of its source, so it would keep every image forever);
 * what recovery can still ask for does.
 *
 * Decided and deleted under the exclusive lock, reading the metadata of every
 * volume snapshot of every host; a volume backup holds a shared lock from
 * saving (or reusing) its images until the snapshot that names them is
 * committed, so none is forgotten in between. Metadata that cannot be read
 * stops it before anything is deleted. `which` narrows the image snapshots
 * considered (an agent: its own host's); snapshots in `without` count as gone
 * (what a dry run of a time policy would forget).
 */
export async function forgetUnusedImages(
  repo: Repository,
  opts: { which?: (s: Snapshot) => boolean; without?: ReadonlySet<string>; dryRun?: boolean } = {},
): Promise<Snapshot[]> {
  const lock = opts.dryRun ? undefined : repo.lock('exclusive');
  try {
    const all = listSnapshots(repo).filter((s) => !opts.without?.has(s.id));
    const used = new Set<string>();
    for (const s of all) {
      if (!s.tags.includes('volume')) continue;
      const meta = (await loadSnapshotMeta(repo, s)) as Partial<VolumeSnapshotMeta> | null;
      for (const image of meta?.images ?? []) used.add(imageTag(image.id));
    }
    const unused = all.filter((s) => s.tags.includes('image') && (opts.which?.(s) ?? true) && !s.tags.some((t) => used.has(t)));
    if (!opts.dryRun) deleteSnapshots(repo, unused.map((s) => s.id));
    return unused;
  } finally {
    lock?.release();
  }
}
