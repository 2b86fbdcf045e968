import { type RepoPoolSettings, repoPoolOptions } from '../../agent/workers.ts';
import type { Repository } from '../../repo/repository.ts';
import { WorkerPool } from '../../workers/pool.ts';
import type { StoreItem, StoreReply } from '../jobs.ts';

/** The real repository pool, with a way in around every store job: override store(). */
export class StoreHookedPool extends WorkerPool {
  constructor(repo: Repository, settings: RepoPoolSettings) {
    super(repoPoolOptions(repo, settings));
  }

  /** Called for every store job; `send` runs it on the workers. */
  store(_items: readonly StoreItem[], send: () => Promise<StoreReply>): Promise<StoreReply> {
    return send();
  }

  override run<T>(op: string, payload: unknown): Promise<T> {
    if (op !== 'store') return super.run(op, payload);
    const { items } = payload as { items: readonly StoreItem[] };
    return this.store(items, () => super.run<StoreReply>(op, payload)) as Promise<T>;
  }
}
