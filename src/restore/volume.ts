import fsp from 'node:fs/promises';
import path from 'node:path';
import type { DockerEngine, VolumeInfo } from '../docker/engine.ts';
import { SourceError, VolumeNotEmptyError } from '../errors/errors.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { restore, type RestoreOptions, type RestoreStats } from './restorer.ts';

export interface VolumeRestoreOptions extends Omit<RestoreOptions, 'target' | 'allowNonEmpty'> {
  readonly volume: string;
  /** Replace the contents of a volume that is not empty. */
  readonly force: boolean;
}

/**
 * Restores a snapshot into a Docker volume, creating it through the engine
 * when it does not exist, and writing at the mountpoint the engine reports.
 * A volume in use by a running container is refused: its files would change
 * under the process. A non-empty one is refused unless forced, and then
 * emptied first, so the result is the snapshot and nothing else.
 */
export async function restoreToVolume(
  engine: DockerEngine,
  repo: Repository,
  snapshot: Snapshot,
  opts: VolumeRestoreOptions,
): Promise<{ volume: VolumeInfo; created: boolean; stats: RestoreStats }> {
  const existing = await engine.inspectVolume(opts.volume);
  if (existing) {
    const users = (await engine.listContainers()).filter(
      (c) => c.state === 'running' && c.mounts.some((m) => m.type === 'volume' && m.name === opts.volume),
    );
    if (users.length > 0) {
      throw new SourceError(`volume ${opts.volume} is in use by running containers (${users.map((c) => c.name).join(', ')}); stop them first`);
    }
  }
  const volume = existing ?? (await engine.createVolume(opts.volume));
  const entries = await fsp.readdir(volume.mountpoint);
  if (entries.length > 0) {
    if (!opts.force) throw new VolumeNotEmptyError(opts.volume);
    for (const name of entries) await fsp.rm(path.join(volume.mountpoint, name), { recursive: true, force: true });
  }
  const stats = await restore(repo, snapshot, { ...opts, target: volume.mountpoint });
  return { volume, created: !existing, stats };
}
