import path from 'node:path';
import type { Logger } from 'pino';
import type { AgentCatalog } from '../catalog/agent-catalog.ts';
import { compressionLevel, type Config } from '../config/schema.ts';
import { consistencyOf, flag, LABEL, type QuiesceJournal, type QuiesceReport, returnAbandoned, withQuiesced } from '../docker/consistency.ts';
import type { ContainerDetail, ContainerSpec, ContainerState, DockerEngine, ImageInfo, VolumeInfo } from '../docker/engine.ts';
import type { PsqlSessions } from '../docker/postgres-backup.ts';
import { CaptureFailedError, VolumeExcludedError, VolumeNotFoundError } from '../errors/errors.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { backup, type BackupOptions } from './archiver.ts';
import type { CaptureStats } from './capture.ts';
import type { FingerprintStore } from './fingerprints.ts';
import { type SavedImage, saveImages } from './images.ts';
import { backupPostgres, type PostgresChain } from './postgres.ts';

/**
 * What a volume snapshot records besides the files (sealed in its meta blob):
 * enough to bring the volume's containers back on another host.
 */
export interface VolumeSnapshotMeta {
  readonly kind: 'volume';
  readonly volume: { readonly name: string; readonly driver: string; readonly labels: Readonly<Record<string, string>> };
  readonly containers: readonly {
    readonly id: string;
    readonly state: ContainerState;
    readonly imageId: string;
    readonly spec: ContainerSpec;
  }[];
  readonly images: readonly SavedImage[];
  /** A PostgreSQL data directory's place in its chain of base and WAL-only backups. */
  readonly postgres?: PostgresChain;
}

export interface VolumeBackupOptions extends Omit<BackupOptions, 'source' | 'volume' | 'meta' | 'tags'> {
  readonly volume: string;
  readonly hookTimeoutMs: number;
  readonly stopTimeoutSeconds: number;
  /** Where `docker save` output is unpacked while it is backed up. */
  readonly workDir: string;
  /**
   * Where the files of a volume whose containers are frozen are copied before
   * they thaw (reflinks when on the volume's XFS or btrfs file system).
   */
  readonly captureDir: string;
  /** The volume's block fingerprints from its last backup: a capture copies, and a read hashes, only the blocks that changed. */
  readonly fingerprints?: FingerprintStore;
  readonly log: Logger;
  /** The agent catalog's record of containers paused or stopped, so none stays so after a crash. */
  readonly quiesceJournal: QuiesceJournal;
  /**
   * Once aborted (Ctrl-C on the CLI), the backup stops between its steps and
   * nothing more is paused or stopped; the reading itself stops through the
   * worker pool, which the caller abandons (WorkerPool.abort).
   */
  readonly signal?: AbortSignal;
  /** The agent's psql sessions, kept open between a PostgreSQL volume's backups. */
  readonly psqlSessions?: PsqlSessions;
}

/**
 * What a configuration sets for a volume's backup, the agent's and the
 * CLI's alike, with the agent catalog that keeps its quiesce journal and
 * fingerprints.
 */
export function configuredVolumeBackup(config: Config, catalog: AgentCatalog, volume: string) {
  return {
    volume,
    host: config.agent.host,
    splitter: { kind: config.backup.chunker, size: config.backup.block_size } satisfies SplitterSpec,
    packSize: config.repository.pack_size,
    compressionLevel: compressionLevel(config),
    hookTimeoutMs: config.docker.hook_timeout,
    stopTimeoutSeconds: Math.ceil(config.docker.stop_timeout / 1000),
    workDir: path.join(config.agent.state_dir, 'tmp'),
    captureDir: config.backup.capture_dir,
    fingerprints: catalog.fingerprints(volume),
    quiesceJournal: catalog,
  };
}

export interface VolumeBackupResult {
  readonly snapshot: Snapshot;
  readonly report: QuiesceReport;
  readonly images: readonly SavedImage[];
}

/** Containers (inspected) that mount a volume. */
export async function containersUsing(engine: DockerEngine, volume: string): Promise<ContainerDetail[]> {
  const users = (await engine.listContainers()).filter((c) => c.mounts.some((m) => m.type === 'volume' && m.name === volume));
  const details = await Promise.all(users.map((c) => engine.inspectContainer(c.id)));
  return details.filter((d): d is ContainerDetail => d !== undefined);
}

/** A volume is left out when it, or any container that mounts it, carries lifeboat.exclude. */
export function exclusionOf(volume: VolumeInfo, containers: readonly ContainerDetail[]): string | undefined {
  if (flag(volume.labels, LABEL.exclude)) return `volume ${volume.name} carries ${LABEL.exclude}`;
  const c = containers.find((x) => flag(x.labels, LABEL.exclude));
  return c && `container ${c.name}, which mounts volume ${volume.name}, carries ${LABEL.exclude}`;
}

/**
 * Backs up one Docker volume: its images first (no container is disturbed for
 * those), then its files from the engine's mountpoint with its containers made
 * consistent as their labels ask, recording their specs with the snapshot.
 */
export async function backupVolume(engine: DockerEngine, repo: Repository, opts: VolumeBackupOptions): Promise<VolumeBackupResult> {
  // What an interrupted backup left paused or stopped goes back first (its containers may be this volume's).
  await returnAbandoned(engine, opts.quiesceJournal, opts.log);
  opts.signal?.throwIfAborted();
  const volume = await engine.inspectVolume(opts.volume);
  if (!volume) throw new VolumeNotFoundError(opts.volume);
  const containers = await containersUsing(engine, volume.name);
  const excluded = exclusionOf(volume, containers);
  if (excluded) throw new VolumeExcludedError(`not backing up volume ${volume.name}: ${excluded}`);
  for (const c of containers) consistencyOf(c); // a label it does not know fails the backup before anything is done

  const imageIds = [...new Set(containers.map((c) => c.imageId))];
  const infos = (await Promise.all(imageIds.map((id) => engine.inspectImage(id)))).filter((i): i is ImageInfo => i !== undefined);
  const { volume: _v, hookTimeoutMs, stopTimeoutSeconds, workDir, captureDir, fingerprints, log, changes, quiesceJournal: journal, signal, psqlSessions, ...archive } = opts;
  // From saving (or reusing) the images to the snapshot that names them: forgetUnusedImages, exclusive, cannot come between.
  const lock = repo.lock('shared');
  try {
    const images = await saveImages(engine, repo, infos, { ...archive, workDir });
    signal?.throwIfAborted();
    const meta: VolumeSnapshotMeta = {
      kind: 'volume',
      volume: { name: volume.name, driver: volume.driver, labels: volume.labels },
      containers: containers.map((c) => ({ id: c.id, state: c.state, imageId: c.imageId, spec: c.spec })),
      images,
    };
    const database = containers.find((c) => c.state === 'running' && consistencyOf(c) === 'postgres');
    // the database is made consistent by its own protocol: it is neither paused nor stopped
    const frozen = containers.filter((c) => c !== database);
    const read = { ...archive, ...(changes ? { changes } : {}), ...(fingerprints ? { fingerprints } : {}), source: volume.mountpoint, volume: volume.name, tags: ['volume'], meta };
    // Frozen containers wait only for a copy of what the backup reads, not for the backup.
    const freezes = !database && frozen.some((c) => c.state === 'running' && !flag(c.labels, LABEL.exclude) && consistencyOf(c) !== undefined);
    const dir = path.join(captureDir, `capture-${volume.name}`);
    const copied = (thaw: () => Promise<void>) => async (captured: CaptureStats) => {
      log.info({ volume: volume.name, ...captured }, 'copied what the backup reads: its containers run again');
      await thaw();
    };
    const run = (capture: boolean) =>
      withQuiesced(engine, frozen, { hookTimeoutMs, stopTimeoutSeconds, log, journal, ...(signal ? { signal } : {}) }, (thaw) =>
        database
          ? backupPostgres(engine, repo, database, read, { timeoutMs: hookTimeoutMs, log, ...(psqlSessions ? { sessions: psqlSessions } : {}) })
          : backup(repo, capture ? { ...read, capture: { dir, thaw: copied(thaw) } } : read),
      );
    let done: Awaited<ReturnType<typeof run>>;
    try {
      done = await run(freezes);
    } catch (err) {
      if (!(err instanceof CaptureFailedError)) throw err;
      log.warn({ volume: volume.name, err: err.message }, 'could not copy the files while the containers were frozen: reading them in place, frozen throughout');
      done = await run(false);
    }
    return { snapshot: done.result, report: done.report, images };
  } finally {
    lock.release();
  }
}
