import type { Logger } from 'pino';
import type { ContainerSpec, DockerEngine, VolumeInfo } from '../docker/engine.ts';
import type { Repository } from '../repo/repository.ts';
import { findSnapshot } from '../repo/snapshots.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { restoreToVolume } from '../restore/volume.ts';
import type { WorkerPool } from '../workers/pool.ts';
import { loadImageFromRepository } from './images.ts';
import type { RecoveryPlan } from './plan.ts';
import { type ContainerCheck, imageName, type ImageCheck, type Preflight, type VolumeCheck } from './preflight.ts';
import { hardDependencies, type Target } from './target.ts';

export interface ApplyOptions {
  readonly pool: WorkerPool;
  /** Where image trees are restored while they are loaded. */
  readonly workDir: string;
  readonly log: Logger;
  /** Epoch milliseconds the recovery time is measured from (the command's start). */
  readonly startedAt: number;
  /** Runs after each volume is restored and before any container is created (a drill checks the data here). */
  readonly afterRestore?: (check: VolumeCheck, volume: VolumeInfo, snapshot: Snapshot) => Promise<void>;
  /** Once aborted, nothing more is started: what is left is skipped with the reason "aborted". */
  readonly signal?: AbortSignal;
  /** Each volume's restore as it goes: files and bytes written, of the snapshot's. */
  readonly onProgress?: (volume: string, done: { files: number; bytes: number }, total: { files: number; bytes: number }) => void;
}

export interface ImageOutcome {
  readonly id: string;
  /** present: was here; loaded: from the repository; failed: could not be loaded; unused: no container to create needs it. */
  readonly outcome: 'present' | 'loaded' | 'failed' | 'unused';
  readonly tags: readonly string[];
  readonly error: string | null;
  /** How long loading took. */
  readonly ms: number | null;
}

export interface VolumeOutcome {
  readonly target: string;
  readonly outcome: 'restored' | 'kept' | 'skipped' | 'failed';
  readonly reason: string | null;
  readonly files: number | null;
  readonly bytes: number | null;
  readonly ms: number | null;
}

export interface NetworkOutcome {
  readonly name: string;
  readonly outcome: 'created' | 'exists' | 'unused' | 'failed';
  readonly error: string | null;
}

export interface ContainerOutcome {
  readonly target: string;
  readonly id: string | null;
  /**
   * started: created and started (it ran at backup time); created: created
   * and left stopped, as it was; kept: a recovery made it before (started now
   * if it should run and did not); skipped: not attempted (reason); failed:
   * attempted and failed (reason).
   */
  readonly outcome: 'started' | 'created' | 'kept' | 'skipped' | 'failed';
  readonly reason: string | null;
  /** From the command's start until the engine reported it running; null unless this run started it. */
  readonly rtoMs: number | null;
}

export interface Applied {
  readonly images: readonly ImageOutcome[];
  readonly volumes: readonly VolumeOutcome[];
  readonly networks: readonly NetworkOutcome[];
  /** In start order. */
  readonly containers: readonly ContainerOutcome[];
  /** What this run created on the engine: container ids, volume, network and image names. */
  readonly made: Made;
}

export interface Made {
  readonly containers: string[];
  readonly volumes: string[];
  readonly networks: string[];
  readonly images: string[];
}

/**
 * Carries out a checked plan: replaces what --force said to, loads missing
 * images while it restores volumes, creates networks, then creates the
 * containers in dependency order and starts those that were running at backup
 * time. One thing failing skips what depends on it (with the reason) and
 * nothing else. Every object created is pushed to `made` as it is made, so a
 * caller that passes its own record can remove exactly those, even after a
 * throw.
 */
export async function applyPlan(
  engine: DockerEngine,
  repo: Repository,
  plan: RecoveryPlan,
  pre: Preflight,
  target: Target,
  opts: ApplyOptions,
  made: Made = { containers: [], volumes: [], networks: [], images: [] },
): Promise<Applied> {
  const run = new Run(engine, repo, plan, pre, target, opts, made);
  await run.replace();
  // The engine unpacks image layers while the workers write volume files.
  const [images, volumes] = await Promise.all([run.images(), run.volumes()]);
  const networks = await run.networks();
  const containers = await run.containers();
  return { images, volumes, networks, containers, made };
}

class Run {
  /** Target container name -> why it is not recovered. */
  readonly #skip = new Map<string, string>();
  readonly #engine: DockerEngine;
  readonly #repo: Repository;
  readonly #plan: RecoveryPlan;
  readonly #pre: Preflight;
  readonly #target: Target;
  readonly #opts: ApplyOptions;
  readonly #made: Made;

  constructor(engine: DockerEngine, repo: Repository, plan: RecoveryPlan, pre: Preflight, target: Target, opts: ApplyOptions, made: Made) {
    this.#engine = engine;
    this.#repo = repo;
    this.#plan = plan;
    this.#pre = pre;
    this.#target = target;
    this.#opts = opts;
    this.#made = made;
    for (const c of pre.containers) if (c.blockers.length > 0) this.#skip.set(c.target, c.blockers.join('; '));
  }

  /** Containers still to be recovered, in start order. */
  #active(): ContainerCheck[] {
    return this.#pre.containers.filter((c) => !this.#skip.has(c.target));
  }

  /** Checked before each step: an abort skips everything not yet begun. */
  #aborted(): boolean {
    if (!this.#opts.signal?.aborted) return false;
    for (const c of this.#active()) this.#skip.set(c.target, 'aborted');
    return true;
  }

  #spec(c: ContainerCheck): ContainerSpec {
    return this.#target.spec(this.#plan.containers.find((p) => p.name === c.name)!);
  }

  async replace(): Promise<void> {
    for (const c of this.#active()) {
      if (c.action !== 'replace') continue;
      await this.#engine.removeContainer(c.existingId!, { force: true }).catch((err: Error) => this.#skip.set(c.target, `could not remove the existing container: ${err.message}`));
    }
  }

  async images(): Promise<ImageOutcome[]> {
    const out: ImageOutcome[] = [];
    for (const image of this.#pre.images) {
      const users = this.#active().filter((c) => c.imageId === image.id && c.action !== 'keep');
      if (image.source !== 'repository' || users.length === 0 || this.#aborted()) {
        out.push({ id: image.id, outcome: image.source === 'engine' && users.length > 0 ? 'present' : 'unused', tags: [], error: null, ms: null });
        continue;
      }
      const started = performance.now();
      try {
        const tags = this.#target.kind === 'drill' ? [] : await freeTags(this.#engine, image);
        await loadImageFromRepository(this.#engine, this.#repo, image.id, image.snapshot!, { pool: this.#opts.pool, workDir: this.#opts.workDir, tags });
        this.#made.images.push(image.id);
        out.push({ id: image.id, outcome: 'loaded', tags, error: null, ms: Math.round(performance.now() - started) });
      } catch (err) {
        const why = (err as Error).message;
        this.#opts.log.warn({ image: image.id, err: why }, 'could not load an image');
        out.push({ id: image.id, outcome: 'failed', tags: [], error: why, ms: null });
        for (const c of users) this.#skip.set(c.target, `image ${imageName(image)} could not be loaded: ${why}`);
      }
    }
    return out;
  }

  async volumes(): Promise<VolumeOutcome[]> {
    const out: VolumeOutcome[] = [];
    for (const v of this.#pre.volumes) {
      if (v.blockers.length > 0 || v.action === 'keep' || this.#aborted()) {
        const reason = v.blockers.join('; ') || (v.action === 'keep' ? null : 'aborted');
        out.push({ target: v.target, outcome: v.action === 'keep' ? 'kept' : 'skipped', reason, files: null, bytes: null, ms: null });
        continue;
      }
      const planned = this.#plan.volumes.find((p) => p.name === v.name)!;
      try {
        if (!(await this.#engine.inspectVolume(v.target))) {
          await this.#engine.createVolume(v.target, { driver: v.driver, labels: this.#target.volumeLabels(planned) });
          this.#made.volumes.push(v.target);
        }
        const snapshot = findSnapshot(this.#repo, v.snapshot);
        const progress = this.#opts.onProgress;
        const total = { files: snapshot.stats.files, bytes: snapshot.stats.bytes_total };
        const r = await restoreToVolume(this.#engine, this.#repo, snapshot, {
          volume: v.target,
          force: v.action !== 'create',
          pool: this.#opts.pool,
          ...(progress ? { onProgress: (p: { files: number; bytesWritten: number }) => progress(v.target, { files: p.files, bytes: p.bytesWritten }, total) } : {}),
        });
        if (r.stats.errors > 0) throw new Error(`${r.stats.errors} entries could not be restored`);
        await this.#opts.afterRestore?.(v, r.volume, snapshot);
        out.push({ target: v.target, outcome: 'restored', reason: null, files: r.stats.files, bytes: r.stats.bytes_written, ms: r.stats.duration_ms });
      } catch (err) {
        const why = (err as Error).message;
        this.#opts.log.warn({ volume: v.target, err: why }, 'could not restore a volume');
        out.push({ target: v.target, outcome: 'failed', reason: why, files: null, bytes: null, ms: null });
        for (const c of this.#active()) {
          if (this.#spec(c).mounts.some((m) => m.type === 'volume' && m.name === v.target)) this.#skip.set(c.target, `volume ${v.target} could not be restored: ${why}`);
        }
      }
    }
    return out;
  }

  async networks(): Promise<NetworkOutcome[]> {
    const out: NetworkOutcome[] = [];
    for (const n of this.#pre.networks) {
      const users = this.#active().filter((c) => {
        const spec = this.#spec(c);
        return spec.networkMode === n.name || spec.networks.some((x) => x.name === n.name);
      });
      if (n.action === 'exists' || users.length === 0) {
        out.push({ name: n.name, outcome: users.length === 0 ? 'unused' : 'exists', error: null });
        continue;
      }
      try {
        await this.#engine.createNetwork({ name: n.name, internal: this.#target.network.internal, labels: { ...this.#target.network.labels } });
        this.#made.networks.push(n.name);
        out.push({ name: n.name, outcome: 'created', error: null });
      } catch (err) {
        const why = (err as Error).message;
        out.push({ name: n.name, outcome: 'failed', error: why });
        for (const c of users) this.#skip.set(c.target, `network ${n.name} could not be created: ${why}`);
      }
    }
    return out;
  }

  async containers(): Promise<ContainerOutcome[]> {
    const out: ContainerOutcome[] = [];
    for (const c of this.#pre.containers) {
      this.#aborted();
      const spec = this.#spec(c);
      const lost = hardDependencies(spec).find((d) => out.some((o) => o.target === d && (o.outcome === 'skipped' || o.outcome === 'failed')));
      const why = this.#skip.get(c.target) ?? (lost ? `needs container ${lost}, which was not recovered` : undefined);
      if (why) {
        out.push({ target: c.target, id: null, outcome: 'skipped', reason: why, rtoMs: null });
        continue;
      }
      let id = c.action === 'keep' ? c.existingId! : null;
      try {
        if (id === null) {
          const image = (await this.#engine.inspectImage(spec.image))?.id === c.imageId ? spec.image : c.imageId;
          id = await this.#engine.createContainer({ ...spec, image });
          this.#made.containers.push(id);
        }
        const state = (await this.#engine.inspectContainer(id))?.state;
        if (!c.start || state === 'running') {
          out.push({ target: c.target, id, outcome: c.action === 'keep' ? 'kept' : 'created', reason: null, rtoMs: null });
          continue;
        }
        await this.#engine.start(id);
        const now = (await this.#engine.inspectContainer(id))?.state;
        if (now !== 'running') throw new Error(`it stopped right after starting (${now ?? 'removed'})`);
        out.push({ target: c.target, id, outcome: c.action === 'keep' ? 'kept' : 'started', reason: null, rtoMs: Date.now() - this.#opts.startedAt });
      } catch (err) {
        const reason = (err as Error).message;
        this.#opts.log.warn({ container: c.target, err: reason }, 'could not recover a container');
        out.push({ target: c.target, id, outcome: 'failed', reason, rtoMs: null });
      }
    }
    return out;
  }
}

/** The image's tags that are free here or already name it: loading must not move a tag off another image. */
export async function freeTags(engine: DockerEngine, image: Pick<ImageCheck, 'id' | 'repoTags'>): Promise<string[]> {
  const out: string[] = [];
  for (const tag of image.repoTags) {
    const current = await engine.inspectImage(tag);
    if (!current || current.id === image.id) out.push(tag);
  }
  return out;
}
