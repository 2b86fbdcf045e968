import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { DockerEngine, VolumeInfo } from '../docker/engine.ts';
import { SourceError, VolumeNotEmptyError } from '../errors/errors.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { addressing, DIR_FLAGS, FD_DIR, restore, type RestoreOptions, type RestoreStats } from './restorer.ts';

const openFd = promisify(fs.open);
const closeFd = promisify(fs.close);

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
    await emptyDirectory(volume.mountpoint);
  }
  const stats = await restore(repo, snapshot, { ...opts, target: volume.mountpoint });
  return { volume, created: !existing, stats };
}

/**
 * Removes everything in a directory without following a symlink, even one
 * swapped in while it runs: on Linux every directory is opened (O_NOFOLLOW)
 * and its entries unlinked relative to that descriptor, as restore creates
 * them (see Addressing in restorer.ts); elsewhere by path, with fs.rm.
 */
export async function emptyDirectory(dir: string): Promise<void> {
  if (addressing() === 'path') {
    for (const name of await fsp.readdir(dir)) await fsp.rm(path.join(dir, name), { recursive: true, force: true });
    return;
  }
  const fd = await openFd(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    await emptyByFd(fd, dir);
  } finally {
    await closeFd(fd);
  }
}

async function emptyByFd(fd: number, where: string): Promise<void> {
  for (const name of await fsp.readdir(`${FD_DIR}/${fd}`)) {
    const at = `${FD_DIR}/${fd}/${name}`;
    const full = path.join(where, name);
    try {
      let sub: number | undefined;
      try {
        sub = await openFd(at, DIR_FLAGS);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        // Not a directory, or a symlink (to one or not): the name itself goes.
        if (code !== 'ENOTDIR' && code !== 'ELOOP') throw err;
      }
      if (sub === undefined) {
        await fsp.unlink(at).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
        continue;
      }
      try {
        await emptyByFd(sub, full);
      } finally {
        await closeFd(sub);
      }
      await fsp.rmdir(at);
    } catch (err) {
      // Name the entry, not the descriptor path it was reached by.
      if (err instanceof Error) err.message = err.message.replaceAll(at, full);
      throw err;
    }
  }
}
