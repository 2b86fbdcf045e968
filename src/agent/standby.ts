import type { Logger } from 'pino';
import { IMAGE_TAG_PREFIX } from '../backup/images.ts';
import { readPasswordFile } from '../config/password.ts';
import type { PeerConfig } from '../replicate/replicator.ts';
import type { DockerEngine } from '../docker/engine.ts';
import { describeFailure } from '../errors/errors.ts';
import { freeTags } from '../recover/apply.ts';
import { loadImageFromRepository } from '../recover/images.ts';
import { replicaDir } from '../replicate/replica-path.ts';
import { Repository } from '../repo/repository.ts';
import { IMAGE_TAG, type Snapshot } from '../repo/snapshot.ts';
import { loadSnapshotMeta } from '../repo/snapshots.ts';
import { openRepoWorkers } from './workers.ts';

export interface StandbyOptions {
  readonly engine: DockerEngine;
  readonly stateDir: string;
  /** Where image trees are unpacked while they load. */
  readonly workDir: string;
  readonly log: Logger;
}

/**
 * A warm standby of the peers that say so (`standby = true`): each image a
 * peer's backup saved is loaded into this engine as soon as its snapshot
 * arrives, with the tags that are free here, so that a recovery finds it
 * present and only creates and starts containers. One load at a time; one
 * that fails is logged, and recovery loads the image itself.
 */
export class Standby {
  readonly #opts: StandbyOptions;
  #queue: Promise<void> = Promise.resolve();

  constructor(opts: StandbyOptions) {
    this.#opts = opts;
  }

  /** A snapshot of `peer` was committed into its replica here. */
  arrived(peer: PeerConfig, snapshot: Snapshot): void {
    if (!peer.standby || !snapshot.tags.includes(IMAGE_TAG)) return;
    const image = snapshot.tags.find((t) => t.startsWith(IMAGE_TAG_PREFIX))?.slice(IMAGE_TAG_PREFIX.length);
    if (!image) return;
    this.#queue = this.#queue.then(() =>
      this.#load(peer, snapshot, image).catch((err: unknown) => {
        const f = describeFailure(err);
        this.#opts.log.warn({ peer: peer.name, image, code: f.code, err: f.message }, `standby: could not load image ${image.slice(0, 19)} of ${peer.name}: ${f.message}`);
      }),
    );
  }

  /** Resolves once every load asked for so far has ended. */
  settled(): Promise<void> {
    return this.#queue;
  }

  async #load(peer: PeerConfig, snapshot: Snapshot, image: string): Promise<void> {
    const { engine, log } = this.#opts;
    if (await engine.inspectImage(image)) return;
    const started = performance.now();
    const repo = await Repository.open(replicaDir(this.#opts.stateDir, peer.id), readPasswordFile(peer.password_file!), { reserve: 'keep' });
    const pool = openRepoWorkers(repo, { workers: 1, level: 1, packSize: 1 << 20 });
    try {
      const meta = (await loadSnapshotMeta(repo, snapshot)) as { image?: { repoTags?: unknown } } | null;
      const repoTags = Array.isArray(meta?.image?.repoTags) ? meta.image.repoTags.filter((t): t is string => typeof t === 'string') : [];
      const tags = await freeTags(engine, { id: image, repoTags });
      await loadImageFromRepository(engine, repo, image, snapshot.id, { pool, workDir: this.#opts.workDir, tags });
      log.info({ peer: peer.name, image, tags, ms: Math.round(performance.now() - started) }, `standby: loaded image ${tags[0] ?? image.slice(0, 19)} of ${peer.name}`);
    } finally {
      await pool.close();
      repo.close();
    }
  }
}
