/**
 * Test fixtures for repository-level tests (and the CLI tests): temporary
 * directories that clean themselves up, and an opened repository with a blob
 * pool. Not part of the product; nothing under src/ outside tests imports it.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { backup, type BackupOptions } from '../../backup/archiver.ts';
import { restore, type RestoreStats } from '../../restore/restorer.ts';
import { Repository } from '../repository.ts';
import type { Snapshot } from '../snapshot.ts';
import type { SplitterSpec } from '../splitter-spec.ts';
import { openRepoWorkers } from '../../agent/workers.ts';
import type { WorkerPool } from '../../workers/pool.ts';

export const TEST_PASSWORD = 'correct horse battery staple';

/** Makes temporary directories and removes them all on cleanup(), even read-only ones. */
export class TempDirs {
  readonly #dirs: string[] = [];

  async make(prefix = 'lifeboat-test-'): Promise<string> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
    this.#dirs.push(dir);
    return dir;
  }

  async cleanup(): Promise<void> {
    for (const dir of this.#dirs.splice(0)) await removeTree(dir);
  }
}

/** rm -rf that first gives back write and search permission (a test tree may hold 0o500 dirs). */
export async function removeTree(dir: string): Promise<void> {
  const unlock = (p: string) => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      return;
    }
    if (!st.isDirectory()) return;
    fs.chmodSync(p, 0o700);
    for (const name of fs.readdirSync(p)) unlock(path.join(p, name));
  };
  unlock(dir);
  await fsp.rm(dir, { recursive: true, force: true });
}

export interface TestRepo {
  readonly dir: string;
  /** The open repository; replaced by reopen(). */
  readonly repo: Repository;
  readonly pool: WorkerPool;
  /** The pack size the workers were started with. */
  readonly packSize: number;
  readonly temp: TempDirs;
  /** Closes the repository and opens it again from disk, as a new process would. */
  reopen(): Promise<Repository>;
  /** Ends the workers (and their connections to the index); the pool starts new ones on its next job. */
  restartWorkers(): Promise<void>;
  /** Closes the pool and the repository, then removes every temporary directory. */
  close(): Promise<void>;
}

/** A fresh repository in a temporary directory, with `workers` repository workers (default 2) writing packs of `packSize` (default 1 MiB). */
export async function openTestRepo(opts: { workers?: number; level?: number; packSize?: number } = {}): Promise<TestRepo> {
  const temp = new TempDirs();
  const dir = path.join(await temp.make('lifeboat-repo-'), 'repo');
  let repo = await Repository.init(dir, TEST_PASSWORD);
  const packSize = opts.packSize ?? 1024 * 1024;
  const newPool = () => openRepoWorkers(repo, { workers: opts.workers ?? 2, level: opts.level ?? 3, packSize });
  let pool = newPool();
  let closed = false;
  return {
    dir,
    get repo() {
      return repo;
    },
    get pool() {
      return pool;
    },
    async restartWorkers() {
      await pool.close();
      pool = newPool();
    },
    packSize,
    temp,
    async reopen() {
      repo.close();
      repo = await Repository.open(dir, TEST_PASSWORD);
      return repo;
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.close();
      repo.close();
      await temp.cleanup();
    },
  };
}

export interface BackupSettings {
  /** What the change journal would hand the backup. */
  changes?: BackupOptions['changes'];
  readonly host?: string;
  readonly splitter?: SplitterSpec;
  readonly compressionLevel?: number;
  /** Accept entries the backup could not read instead of failing the test. */
  readonly allowWarnings?: boolean;
  /** Told of repository damage the backup worked around. */
  readonly onDamage?: (message: string) => void;
  /** Recorded as the snapshot's Docker volume. */
  readonly volume?: string;
  readonly windows?: BackupOptions['windows'];
  readonly capture?: BackupOptions['capture'];
  readonly fingerprints?: BackupOptions['fingerprints'];
}

/** backup() with test defaults (fixed 64 KiB blocks, the pool's pack size); fails on any warning unless allowed. */
export async function backupDir(t: TestRepo, source: string, settings: BackupSettings = {}): Promise<Snapshot> {
  const warnings: string[] = [];
  const snapshot = await backup(t.repo, {
    source,
    host: settings.host ?? 'test-host',
    splitter: settings.splitter ?? { kind: 'fixed', size: 64 * 1024 },
    packSize: t.packSize,
    compressionLevel: settings.compressionLevel ?? 3,
    pool: t.pool,
    ...(settings.changes ? { changes: settings.changes } : {}),
    onWarning: (p, err) => warnings.push(`${p}: ${err.message}`),
    ...(settings.onDamage ? { onDamage: settings.onDamage } : {}),
    ...(settings.volume ? { volume: settings.volume } : {}),
    ...(settings.windows ? { windows: settings.windows } : {}),
    ...(settings.capture ? { capture: settings.capture } : {}),
    ...(settings.fingerprints ? { fingerprints: settings.fingerprints } : {}),
  });
  if (!settings.allowWarnings && warnings.length > 0) throw new Error(`backup warned:\n${warnings.join('\n')}`);
  return snapshot;
}

/** restore() into target; fails on any warning (an entry it could not write) unless allowed. */
export async function restoreTo(t: TestRepo, snapshot: Snapshot, target: string, opts: { allowWarnings?: boolean } = {}): Promise<RestoreStats> {
  const warnings: string[] = [];
  const stats = await restore(t.repo, snapshot, { target, pool: t.pool, onWarning: (p, err) => warnings.push(`${p}: ${err.message}`) });
  if (!opts.allowWarnings && (warnings.length > 0 || stats.errors > 0)) {
    throw new Error(`restore warned (${stats.errors} errors):\n${warnings.join('\n')}`);
  }
  return stats;
}
