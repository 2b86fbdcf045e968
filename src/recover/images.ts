import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import tarFs from 'tar-fs';
import type { DockerEngine } from '../docker/engine.ts';
import { EngineRequestError } from '../errors/errors.ts';
import type { Repository } from '../repo/repository.ts';
import { findSnapshot } from '../repo/snapshots.ts';
import { restore } from '../restore/restorer.ts';
import type { WorkerPool } from '../workers/pool.ts';

export interface ImageLoadOptions {
  readonly pool: WorkerPool;
  /** The image's `docker save` tree is restored under here, then removed. */
  readonly workDir: string;
  /** Tags to give the loaded image; [] loads it untagged (a drill leaves no tag behind). */
  readonly tags: readonly string[];
}

/**
 * Loads an image into the engine from its image snapshot: the `docker save`
 * tree (one file per layer) is restored to a work directory and streamed to
 * the engine as a tar, so memory does not grow with the image. The tags the
 * archive carries are the ones asked for, so a tag that names another image
 * here is not moved. Fails unless the engine then has the image under its id.
 */
export async function loadImageFromRepository(engine: DockerEngine, repo: Repository, imageId: string, snapshotId: string, opts: ImageLoadOptions): Promise<void> {
  const snapshot = findSnapshot(repo, snapshotId);
  const dir = path.join(opts.workDir, `load-${imageId.replace(/^sha256:/, '').slice(0, 16)}-${randomBytes(4).toString('hex')}`);
  await fsp.mkdir(opts.workDir, { recursive: true, mode: 0o700 });
  try {
    await restore(repo, snapshot, { target: dir, pool: opts.pool });
    await setManifestTags(dir, opts.tags);
    await engine.loadImage(Readable.from(tarFs.pack(dir), { objectMode: false }));
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  const loaded = await engine.inspectImage(imageId);
  if (!loaded) throw new EngineRequestError(`loading image snapshot ${snapshot.id.slice(0, 8)} did not give image ${imageId}`);
}

/** manifest.json of a `docker save` archive names the tags `docker load` applies. */
async function setManifestTags(dir: string, tags: readonly string[]): Promise<void> {
  const file = path.join(dir, 'manifest.json');
  const manifest = JSON.parse(await fsp.readFile(file, 'utf8')) as { RepoTags?: string[] | null }[];
  for (const entry of manifest) entry.RepoTags = tags.length > 0 ? [...tags] : null;
  await fsp.writeFile(file, JSON.stringify(manifest));
}
