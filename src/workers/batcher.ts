import { Semaphore } from '../util/semaphore.ts';

const BATCH_ITEMS = 64;
const BATCH_BYTES = 4 << 20;

/**
 * Feeds a tree walk's items to the workers. Small items share a job (one
 * message for many small files), large ones go alone; at most `depth` jobs
 * are in flight, and pace() holds the walk so it runs at most one job ahead
 * of the workers: memory follows the jobs in flight, not the tree.
 */
export class JobBatcher<I, R> {
  /** The first job that failed; the walk stops at its next step. */
  failure: unknown;
  readonly #send: (items: I[]) => Promise<readonly R[]>;
  readonly #jobs: Semaphore;
  readonly #inFlight = new Set<Promise<unknown>>();
  #items: I[] = [];
  #waiters: PromiseWithResolvers<R>[] = [];
  #bytes = 0;
  #held: Promise<void> | undefined;

  constructor(send: (items: I[]) => Promise<readonly R[]>, depth: number) {
    this.#send = send;
    this.#jobs = new Semaphore(depth);
  }

  /** Adds an item to the shared job, sent once full; resolves with the item's result. */
  add(item: I, bytes: number): Promise<R> {
    const waiter = Promise.withResolvers<R>();
    waiter.promise.catch(() => {}); // a failed job fails the walk through `failure`
    this.#items.push(item);
    this.#waiters.push(waiter);
    this.#bytes += bytes;
    if (this.#items.length >= BATCH_ITEMS || this.#bytes >= BATCH_BYTES) this.#sendBatch();
    return waiter.promise;
  }

  /** Sends one item as a job of its own. */
  alone(item: I): Promise<R> {
    const result = this.#dispatch([item]).then((r) => r[0]!);
    result.catch(() => {});
    return result;
  }

  /** Sends the partly filled shared job: the walk is about to wait on its items. */
  async flush(): Promise<void> {
    this.#sendBatch();
    await this.pace();
  }

  /**
   * Holds every job back until the returned function is called (with an
   * error: they fail with it, unsent), and pace() no longer waits meanwhile: a walk that captures files while containers
   * are frozen dispatches them all before any is read.
   */
  hold(): (failed?: unknown) => void {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    promise.catch(() => {}); // each held job fails with it
    this.#held = promise;
    return (failed?: unknown) => {
      this.#held = undefined;
      if (failed === undefined) resolve();
      else reject(failed);
    };
  }

  /** Resolves once a job slot is free. */
  async pace(): Promise<void> {
    if (this.#held) return;
    await this.#jobs.acquire();
    this.#jobs.release();
    if (this.failure) throw this.failure;
  }

  #sendBatch(): void {
    if (this.#items.length === 0) return;
    const waiters = this.#waiters;
    const items = this.#items;
    this.#items = [];
    this.#waiters = [];
    this.#bytes = 0;
    this.#dispatch(items).then(
      (r) => r.forEach((res, i) => waiters[i]!.resolve(res)),
      (err) => waiters.forEach((w) => w.reject(err)),
    );
  }

  /** Waits until no job is in flight, so a failed walk can clean up after the last reply. */
  async settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  async #dispatch(items: I[]): Promise<readonly R[]> {
    await this.#held;
    await this.#jobs.acquire();
    const job = this.#send(items);
    this.#inFlight.add(job);
    try {
      return await job;
    } catch (err) {
      this.failure ??= err;
      throw err;
    } finally {
      this.#inFlight.delete(job);
      this.#jobs.release();
    }
  }
}
