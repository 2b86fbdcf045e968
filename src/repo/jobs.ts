import { taskModule, type WorkerPool } from '../workers/pool.ts';
import type { Repository } from './repository.ts';

/** The repository's task module, for a pool's modules (see worker-tasks.ts). */
export const REPO_TASKS = taskModule(import.meta.url, './worker-tasks');

/** What every worker of a repository pool opens: the keys, the index (read-only) and its own pack writer. */
export interface RepoWorkerInit {
  readonly enc: Uint8Array;
  readonly mac: Uint8Array;
  /** zstd level for blocks a worker stores; 0: none. */
  readonly level: number;
  readonly repoDir: string;
  readonly packSize: number;
}

export function repoWorkerInit(repo: Repository, opts: { level: number; packSize: number }): RepoWorkerInit {
  return { enc: repo.keys.enc, mac: repo.keys.mac, level: opts.level, repoDir: repo.dir, packSize: opts.packSize };
}

/** A pack a worker finished and fsynced: its trailer says what the index should record. */
export interface PackReport {
  readonly name: string;
  readonly size: number;
  readonly trailer: Uint8Array;
}

export interface CheckReply {
  /** Ids (hex) of blobs that fail authentication or do not hash to their id. */
  readonly bad: readonly string[];
  readonly blobs: number;
}

/** Ends a write session: every worker finishes its open pack; returns all packs not yet reported. */
export async function flushPacks(pool: WorkerPool): Promise<PackReport[]> {
  return (await pool.each<PackReport[]>('flush', null)).flat();
}

/**
 * Abandons a failed write session: open packs are deleted, and no worker
 * trusts what it packed. After an abort there is nothing left to reset (the
 * workers and their open packs are gone; prune removes the files).
 */
export async function resetPacks(pool: WorkerPool): Promise<void> {
  if (!pool.aborted) await pool.each('reset', null).catch(() => {});
}

/**
 * Tells the workers a pack they reported is in the index, so the ids they
 * packed into it need no longer be remembered (other workers ignore the name).
 * Messages keep their order, so a worker hears this before its next job.
 */
export function acknowledgePack(pool: WorkerPool, pack: string): void {
  pool.each('ack', pack).catch(() => {});
}

/** Reads a whole pack on a worker and checks every blob in it. */
export function checkPackOn(pool: WorkerPool, pack: string): Promise<CheckReply> {
  return pool.run('check', pack);
}
