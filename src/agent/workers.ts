import { BACKUP_TASKS } from '../backup/jobs.ts';
import { REPO_TASKS, repoWorkerInit } from '../repo/jobs.ts';
import type { Repository } from '../repo/repository.ts';
import { RESTORE_TASKS } from '../restore/jobs.ts';
import { type PoolOptions, WorkerPool } from '../workers/pool.ts';

export interface RepoPoolSettings {
  /** Default: one per core. */
  readonly workers?: number | undefined;
  /** zstd level for stored blocks; 0: none. */
  readonly level: number;
  readonly packSize: number;
}

/** A pool whose workers run every repository task: backup's, restore's and the repository's own. */
export function repoPoolOptions(repo: Repository, settings: RepoPoolSettings): PoolOptions {
  return { modules: [REPO_TASKS, BACKUP_TASKS, RESTORE_TASKS], init: repoWorkerInit(repo, settings), workers: settings.workers };
}

export function openRepoWorkers(repo: Repository, settings: RepoPoolSettings): WorkerPool {
  return new WorkerPool(repoPoolOptions(repo, settings));
}

/**
 * Keeps the agent's one worker pool only while it is used: made on the first
 * acquire, closed once it has been idle for idleMs, so an idle agent holds no
 * worker threads (each costs a V8 isolate: 10-20 MB).
 */
export class PoolKeeper {
  readonly #make: () => WorkerPool;
  readonly #idleMs: number;
  #pool: WorkerPool | undefined;
  #users = 0;
  #timer: NodeJS.Timeout | undefined;
  #closing: Promise<void> = Promise.resolve();

  constructor(make: () => WorkerPool, idleMs: number) {
    this.#make = make;
    this.#idleMs = idleMs;
  }

  /** Whether worker threads exist right now. */
  get open(): boolean {
    return this.#pool !== undefined;
  }

  async acquire(): Promise<WorkerPool> {
    this.#clearTimer();
    await this.#closing;
    this.#users++;
    this.#pool ??= this.#make();
    return this.#pool;
  }

  release(): void {
    this.#users = Math.max(0, this.#users - 1);
    if (this.#users > 0 || !this.#pool) return;
    // a pool that was aborted is of no further use: drop it now
    if (this.#pool.aborted || this.#idleMs <= 0) {
      this.#closeNow();
      return;
    }
    this.#clearTimer();
    this.#timer = setTimeout(() => this.#closeNow(), this.#idleMs);
    this.#timer.unref();
  }

  /** Abandons the jobs of the pool in use, if any (see WorkerPool.abort). */
  async abort(reason: Error): Promise<void> {
    await this.#pool?.abort(reason);
  }

  async close(): Promise<void> {
    this.#clearTimer();
    this.#closeNow();
    await this.#closing;
  }

  #closeNow(): void {
    this.#clearTimer();
    const pool = this.#pool;
    if (!pool) return;
    this.#pool = undefined;
    this.#closing = this.#closing.then(() => pool.close()).catch(() => {});
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
