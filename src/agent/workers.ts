import type { Repository } from '../repo/repository.ts';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { type PoolOptions, RepoWorkers } from '../workers/pool.ts';
import type { CaptureItem, CaptureResult, CheckReply, FlushReply, RestoreItem, RestoreReply, StoreItem, StoreReply } from '../workers/protocol.ts';

/**
 * A worker pool that can be abandoned mid-backup: abort() fails every job in
 * flight and every later one, then terminates the workers. The backup then
 * fails as it would on any error, which is what returns paused or stopped
 * containers to their state (withQuiesced's finally); terminating the
 * workers alone would leave its jobs, and so the containers, waiting forever.
 */
export class AbortableWorkers extends RepoWorkers {
  readonly #abort = Promise.withResolvers<never>();
  #reason: Error | undefined;

  constructor(repo: Repository, opts: PoolOptions) {
    super(repo, opts);
    this.#abort.promise.catch(() => {});
  }

  get aborted(): boolean {
    return this.#reason !== undefined;
  }

  override store(splitter: SplitterSpec, items: readonly StoreItem[]): Promise<StoreReply> {
    return this.#guard(() => super.store(splitter, items));
  }

  override restore(items: readonly RestoreItem[]): Promise<RestoreReply> {
    return this.#guard(() => super.restore(items));
  }

  override check(pack: string): Promise<CheckReply> {
    return this.#guard(() => super.check(pack));
  }

  override capture(item: CaptureItem): Promise<CaptureResult> {
    return this.#guard(() => super.capture(item));
  }

  override flush(): Promise<FlushReply['packs']> {
    return this.#guard(() => super.flush());
  }

  /** After abort there is nothing left to reset: the workers and their open packs are gone (prune removes the files). */
  override reset(): Promise<void> {
    return this.#reason ? Promise.resolve() : super.reset();
  }

  /** Fails every job in flight and to come with `reason`, and terminates the workers. */
  async abort(reason: Error): Promise<void> {
    if (this.#reason) return;
    this.#reason = reason;
    this.#abort.reject(reason);
    await this.terminate();
  }

  #guard<T>(job: () => Promise<T>): Promise<T> {
    if (this.#reason) return Promise.reject(this.#reason);
    const p = job();
    p.catch(() => {});
    return Promise.race([p, this.#abort.promise]);
  }
}

/**
 * Keeps the agent's one worker pool only while it is used: made on the first
 * acquire, closed once it has been idle for idleMs, so an idle agent holds no
 * worker threads (each costs a V8 isolate: 10-20 MB).
 */
export class PoolKeeper {
  readonly #make: () => AbortableWorkers;
  readonly #idleMs: number;
  #pool: AbortableWorkers | undefined;
  #users = 0;
  #timer: NodeJS.Timeout | undefined;
  #closing: Promise<void> = Promise.resolve();

  constructor(make: () => AbortableWorkers, idleMs: number) {
    this.#make = make;
    this.#idleMs = idleMs;
  }

  /** Whether worker threads exist right now. */
  get open(): boolean {
    return this.#pool !== undefined;
  }

  async acquire(): Promise<AbortableWorkers> {
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

  /** Abandons the jobs of the pool in use, if any (see AbortableWorkers.abort). */
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
