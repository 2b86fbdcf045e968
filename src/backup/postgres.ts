import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ContainerDetail, DockerEngine } from '../docker/engine.ts';
import { flushedWal, type PsqlSessions, startPostgresBackup, type WalPosition } from '../docker/postgres-backup.ts';
import { DatabaseBackupError } from '../errors/errors.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { latestSnapshotOf, loadSnapshotMeta } from '../repo/snapshots.ts';
import { MiB } from '../util/units.ts';
import { backup, type BackupOptions, ParentUnusableError, type ReadWindow } from './archiver.ts';

/**
 * A PostgreSQL snapshot's place in its chain: a base backup (the data files
 * read under the online-backup protocol), then snapshots that add only the
 * WAL written since, every other file the base's. Restored, any of them
 * replays the WAL from the base's start to its own end.
 */
export interface PostgresChain {
  /** The WAL directory, relative to the volume. */
  readonly walDir: string;
  /** Where the base backup started: recovery needs every segment from this one on. */
  readonly start: WalPosition;
  /** The cluster's system identifier: WAL of another cluster never continues a chain. */
  readonly system: string;
  /** The segment being written when this snapshot's WAL was read: those before it are in the snapshot whole. */
  readonly segment: string;
  /**
   * Where the WAL was flushed to (LSN) before this snapshot's WAL was read:
   * `segment` up to there is in the snapshot as it stays (WAL is only
   * appended), so the next backup reads that segment from there on.
   * Absent in a base backup.
   */
  readonly flushed?: string;
  /** The base backup's snapshot; null in the base backup itself. */
  readonly base: string | null;
}

/** WAL past the base after which the next backup is a base backup again: it bounds what a recovery replays. */
export const WAL_PER_BASE = 1024 * MiB;

const SEGMENT = /^[0-9A-F]{24}$/;

export interface PostgresBackupOptions {
  readonly timeoutMs: number;
  readonly log: Logger;
  /** Sessions kept open between backups (the agent's); without, each backup opens its own. */
  readonly sessions?: PsqlSessions;
}

/**
 * Backs up a volume holding a running PostgreSQL's data directory without
 * pausing it. After a base backup, each backup reads only the WAL flushed
 * since (a few MB, not the data files a checkpoint rewrote), as long as the
 * chain holds: the same timeline, at most WAL_PER_BASE past the base, and no
 * segment recycled before it was read whole. Otherwise a base backup again.
 */
export async function backupPostgres(engine: DockerEngine, repo: Repository, db: ContainerDetail, read: BackupOptions & { readonly meta: object }, opts: PostgresBackupOptions): Promise<Snapshot> {
  const parent = latestSnapshotOf(repo, read.host, path.resolve(read.source));
  const chain = parent && chainOf(await loadSnapshotMeta(repo, parent).catch(() => null));
  if (parent && chain) {
    // before asking: whatever committed until now is at or below the flushed position
    const capturedAt = new Date();
    const now = await flushedWal(engine, db, chain.start.lsn, opts);
    let why = brokenChain(chain, now, read.source);
    const wal = why === undefined ? walChanges(read.source, chain, now) : undefined;
    if (wal === undefined) why ??= `the WAL directory ${chain.walDir} cannot be listed`;
    else {
      try {
        return await backup(repo, {
          ...read,
          meta: { ...read.meta, postgres: { ...chain, segment: now.segment, flushed: now.lsn, base: chain.base ?? parent.id } satisfies PostgresChain },
          tolerateChanges: true,
          capturedAt,
          ...wal,
        });
      } catch (err) {
        if (!(err instanceof ParentUnusableError)) throw err;
        why = err.message;
      }
    }
    opts.log.info({ volume: read.volume, why }, 'PostgreSQL: a base backup');
  }
  return baseBackup(engine, repo, db, read, opts);
}

/** Why the chain cannot go on from where PostgreSQL is now, if it cannot. */
export function brokenChain(chain: PostgresChain, now: Awaited<ReturnType<typeof flushedWal>>, source: string): string | undefined {
  if (now.system !== chain.system) return `another cluster (system identifier ${now.system})`;
  if (now.segment.slice(0, 8) !== chain.start.segment.slice(0, 8)) return `the timeline changed (${now.segment.slice(0, 8)})`;
  if (now.bytesSince < 0) return 'the WAL is behind the base backup';
  if (now.bytesSince > WAL_PER_BASE) return `${Math.round(now.bytesSince / MiB)} MiB of WAL since the base backup`;
  if (!fs.existsSync(path.join(source, chain.walDir, chain.segment))) return `WAL segment ${chain.segment} was recycled before it was read whole`;
  return undefined;
}

/** The data files under pg_backup_start / pg_backup_stop, then the WAL: the head of a chain. */
async function baseBackup(engine: DockerEngine, repo: Repository, db: ContainerDetail, read: BackupOptions & { readonly meta: object }, opts: PostgresBackupOptions): Promise<Snapshot> {
  const pg = await startPostgresBackup(engine, db, opts);
  const mount = db.mounts.find((m) => m.type === 'volume' && m.name === read.volume);
  const inside = mount && (pg.dataDirectory === mount.destination ? '' : pg.dataDirectory.startsWith(`${mount.destination}/`) ? pg.dataDirectory.slice(mount.destination.length + 1) : undefined);
  if (inside === undefined) {
    await pg.abort();
    throw new DatabaseBackupError(`PostgreSQL in container ${db.name} keeps its data in ${pg.dataDirectory}, which is not on volume ${read.volume} (mounted at ${mount?.destination ?? 'nowhere'})`);
  }
  const at = (name: string) => (inside === '' ? name : `${inside}/${name}`);
  if (fs.lstatSync(path.join(read.source, at('pg_wal')), { throwIfNoEntry: false })?.isDirectory() !== true) {
    await pg.abort();
    throw new DatabaseBackupError(`PostgreSQL in container ${db.name} keeps its WAL outside volume ${read.volume} (pg_wal is not a directory there: initdb --waldir?): its backups could not be restored`);
  }
  // every data file is looked at: the journal's changes since the last backup miss those its WAL-only parents did not read
  const { changes: _journal, ...whole } = read;
  try {
    return await backup(repo, {
      ...whole,
      // the base's own WAL up to its start segment is whole; later segments are read again by the next backup
      meta: { ...read.meta, postgres: { walDir: at('pg_wal'), start: pg.start, system: pg.system, segment: pg.start.segment, base: null } satisfies PostgresChain },
      tolerateChanges: true,
      phases: {
        last: [at('pg_wal')],
        add: [at('backup_label'), at('tablespace_map')],
        between: async () => {
          const end = await pg.stop();
          const files = new Map([[at('backup_label'), Buffer.from(end.labelFile)]]);
          if (end.tablespaceMap !== '') files.set(at('tablespace_map'), Buffer.from(end.tablespaceMap));
          return { files, capturedAt: end.at };
        },
      },
    });
  } catch (err) {
    await pg.abort();
    throw err;
  }
}

/**
 * What a WAL-only backup looks at: every entry of the WAL directory now (the
 * unchanged ones by their metadata alone), keeping the parent's segments of
 * the chain that PostgreSQL has since recycled; and of the segments from the
 * parent's on, only what PostgreSQL wrote since the parent read them, up to
 * where it has flushed now. Past that a segment is taken as zeros, as
 * PostgreSQL makes a new one, and its recovery ends there: the segments
 * recycled ahead of the one being written (old WAL under new names) and the
 * unwritten rest of that one are neither read nor stored.
 */
function walChanges(source: string, chain: PostgresChain, now: WalPosition): Pick<BackupOptions, 'changes' | 'windows'> | undefined {
  const dir = path.join(source, chain.walDir);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return undefined;
  }
  const timeline = chain.start.segment.slice(0, 8);
  const windows = new Map<string, ReadWindow>();
  for (const name of names) {
    if (!SEGMENT.test(name) || !name.startsWith(timeline) || name < chain.segment) continue;
    const size = fs.statSync(path.join(dir, name), { throwIfNoEntry: false })?.size ?? 0;
    const from = name === chain.segment && chain.flushed !== undefined ? segmentOffset(chain.flushed, name, size) ?? 0 : 0;
    const to = name < now.segment ? size : name === now.segment ? segmentOffset(now.lsn, name, size) : 0;
    // a flushed position outside its own segment (a segment size not the file's): read it whole
    windows.set(`${chain.walDir}/${name}`, { from, to: to ?? size });
  }
  return {
    windows,
    changes: {
      mode: 'paths',
      paths: new Set([chain.walDir, ...names.map((n) => `${chain.walDir}/${n}`)]),
      retain: (rel) => {
        const name = rel.slice(chain.walDir.length + 1);
        return rel.startsWith(`${chain.walDir}/`) && SEGMENT.test(name) && name.startsWith(timeline) && name >= chain.start.segment;
      },
    },
  };
}

/** Where an LSN falls in a segment file of `size` bytes, if it falls in that one. */
export function segmentOffset(lsn: string, segment: string, size: number): number | undefined {
  const [hi, lo] = lsn.split('/');
  if (!(size > 0 && (size & (size - 1)) === 0) || hi === undefined || lo === undefined) return undefined;
  const at = (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
  // a segment's name: timeline, then the LSN's high 32 bits, then the segment within them
  const number = BigInt(`0x${segment.slice(8, 16)}`) * (0x100000000n / BigInt(size)) + BigInt(`0x${segment.slice(16, 24)}`);
  return at / BigInt(size) === number ? Number(at % BigInt(size)) : undefined;
}

/** The chain a snapshot's metadata records, if it is whole. */
function chainOf(meta: unknown): PostgresChain | undefined {
  const c = (meta as { postgres?: Partial<PostgresChain> } | null)?.postgres;
  const position = (p: unknown): p is WalPosition => typeof (p as WalPosition)?.lsn === 'string' && SEGMENT.test((p as WalPosition).segment ?? '');
  if (!c || typeof c.walDir !== 'string' || c.walDir.split('/').includes('..') || typeof c.system !== 'string' || !position(c.start) || !SEGMENT.test(c.segment ?? '') || !(c.base === null || typeof c.base === 'string')) return undefined;
  if (c.flushed !== undefined && !/^[0-9A-F]+\/[0-9A-F]+$/.test(c.flushed)) return undefined;
  return c as PostgresChain;
}
