import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tarFs from 'tar-fs';
import type { DockerEngine, ImageInfo } from '../docker/engine.ts';
import type { Repository } from '../repo/repository.ts';
import { IMAGE_TAG, type Snapshot } from '../repo/snapshot.ts';
import { snapshotsTagged } from '../repo/snapshots.ts';
import { backup, type BackupOptions } from './archiver.ts';

/** What a volume snapshot records of an image its containers use. */
export interface SavedImage {
  readonly id: string;
  readonly repoTags: readonly string[];
  readonly os: string;
  readonly architecture: string;
  readonly osVersion: string | null;
  /** The snapshot holding the image's `docker save` output. */
  readonly snapshot: string;
}

/** The tag naming the image a snapshot holds: this prefix, then the image id. */
export const IMAGE_TAG_PREFIX = 'image:';
export const imageTag = (id: string): string => `${IMAGE_TAG_PREFIX}${id}`;

/**
 * Saves images into the repository, once per image id. `docker save` is
 * unpacked into a work directory and backed up as a tree: every layer is its
 * own file, cut into blocks from its first byte, so a layer that several
 * images share is stored (and later replicated) once.
 */
export async function saveImages(
  engine: DockerEngine,
  repo: Repository,
  images: readonly ImageInfo[],
  opts: Omit<BackupOptions, 'source' | 'tags' | 'meta' | 'volume'> & { readonly workDir: string },
): Promise<SavedImage[]> {
  const saved: SavedImage[] = [];
  for (const image of images) {
    const existing: Snapshot | undefined = snapshotsTagged(repo, imageTag(image.id))[0];
    const snapshot = existing ?? (await saveOne(engine, repo, image, opts));
    saved.push({
      id: image.id,
      repoTags: image.repoTags,
      os: image.os,
      architecture: image.architecture,
      osVersion: image.osVersion,
      snapshot: snapshot.id,
    });
  }
  return saved;
}

async function saveOne(
  engine: DockerEngine,
  repo: Repository,
  image: ImageInfo,
  opts: Omit<BackupOptions, 'source' | 'tags' | 'meta' | 'volume'> & { readonly workDir: string },
): Promise<Snapshot> {
  const dir = path.join(opts.workDir, `image-${image.id.replace(/^sha256:/, '').slice(0, 24)}`);
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    await pipeline(await engine.saveImage(image.id), tarFs.extract(dir));
    return await backup(repo, { ...opts, source: dir, tags: [IMAGE_TAG, imageTag(image.id)], meta: { kind: 'image', image } });
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
