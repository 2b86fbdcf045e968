import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { CorruptDataError, CorruptIndexError, LifeboatError, NoSpaceError } from '../errors/errors.ts';
import type { Reply, Request, WorkerData } from './protocol.ts';

/** How long close() waits for a worker to let go of its resources before ending it anyway (one stuck in a long job). */
const CLOSE_WAIT_MS = 5_000;

/** The worker entry beside this module: entry.ts from the sources (tests), entry.js from the build. */
const ENTRY = taskModule(import.meta.url, './entry');

/**
 * A module beside `base` (an import.meta.url) by its name without extension:
 * the .ts file when running from the sources, the .js one from the build.
 */
export function taskModule(base: string, name: string): URL {
  return new URL(`${name}${base.endsWith('.ts') ? '.ts' : '.js'}`, base);
}

interface Slot {
  readonly worker: Worker;
  /** A worker handles its messages one at a time, so replies come back in this order. */
  readonly queue: { resolve: (v: unknown) => void; reject: (e: Error) => void }[];
}

class WorkerFailure extends LifeboatError {
  readonly code = 'LB_ERR_WORKER';
}

export interface PoolOptions {
  /** Task modules every worker loads (see TaskModule in entry.ts). */
  readonly modules: readonly URL[];
  /** Handed to each module's open() in every worker. */
  readonly init: unknown;
  /** Default: one per core. */
  readonly workers?: number | undefined;
}

/**
 * Worker threads that run the tasks their modules name: the repository's
 * heavy lifting (reading source files, hashing, compressing, sealing and
 * packing blocks, and the reverse for restore). Workers start on the first
 * job, so a command that finds nothing to do never pays for them.
 *
 * A pool can be abandoned (abort): every job in flight and every later one
 * fails with the reason, and the workers are terminated. A backup then fails
 * as on any error, which is what returns paused containers to their state;
 * terminating the workers alone would leave its jobs waiting forever.
 */
export class WorkerPool {
  readonly size: number;
  readonly #data: WorkerData;
  readonly #abort = Promise.withResolvers<never>();
  #reason: Error | undefined;
  #slots: Slot[] = [];
  #closed = false;

  constructor(opts: PoolOptions) {
    this.size = Math.max(1, opts.workers ?? os.availableParallelism());
    this.#data = { modules: opts.modules.map((m) => m.href), init: opts.init };
    this.#abort.promise.catch(() => {});
  }

  #spawn(): Slot {
    const worker = new Worker(ENTRY, { workerData: this.#data });
    const slot: Slot = { worker, queue: [] };
    worker.on('message', (reply: Reply) => {
      const pending = slot.queue.shift();
      if (!pending) return;
      if (reply.ok) pending.resolve(reply.value);
      else pending.reject(rebuildError(reply.error));
    });
    const failAll = (err: Error) => {
      for (const p of slot.queue.splice(0)) p.reject(err);
    };
    worker.on('error', failAll);
    worker.on('exit', (code) => {
      if (!this.#closed) failAll(new WorkerFailure(`worker exited with code ${code}`));
    });
    return slot;
  }

  #post<T>(slot: Slot, request: Request): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      slot.queue.push({ resolve: resolve as (v: unknown) => void, reject });
      slot.worker.postMessage(request);
    });
  }

  /** The worker with the fewest jobs queued. */
  #pick(): Slot {
    if (this.#slots.length === 0) this.#slots = Array.from({ length: this.size }, () => this.#spawn());
    let best = this.#slots[0]!;
    for (const s of this.#slots) if (s.queue.length < best.queue.length) best = s;
    return best;
  }

  #guard<T>(job: () => Promise<T>): Promise<T> {
    if (this.#reason) return Promise.reject(this.#reason);
    const p = job();
    p.catch(() => {});
    return Promise.race([p, this.#abort.promise]);
  }

  /** Runs a task on the least busy worker. */
  run<T>(op: string, payload: unknown): Promise<T> {
    return this.#guard(() => this.#post<T>(this.#pick(), { op, payload }));
  }

  /** Runs a task on every worker started so far (none started: no run). */
  each<T>(op: string, payload: unknown): Promise<T[]> {
    return this.#guard(() => Promise.all(this.#slots.map((s) => this.#post<T>(s, { op, payload }))));
  }

  /** Jobs worth keeping queued so no worker waits for the main thread. */
  get depth(): number {
    return this.size * 3;
  }

  get aborted(): boolean {
    return this.#reason !== undefined;
  }

  /** Fails every job in flight and to come with `reason`, and terminates the workers. */
  async abort(reason: Error): Promise<void> {
    if (this.#reason) return;
    this.#reason = reason;
    this.#abort.reject(reason);
    await this.terminate();
  }

  /**
   * Ends the workers. Each first lets its modules close (an index connection
   * torn down by terminate() while the worker collects garbage, as it does
   * after every job, can abort the whole process).
   */
  async close(): Promise<void> {
    const slots = this.#slots;
    await Promise.all(
      slots.map((s) => Promise.race([this.#post(s, { op: 'close', payload: null }).catch(() => {}), new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref())])),
    );
    await this.terminate();
  }

  /** Ends the workers now, whatever they are doing (a backup abandoned). */
  async terminate(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
    this.#slots = [];
  }
}

function rebuildError(e: { code: string; message: string }): Error {
  if (e.code === 'LB_ERR_CORRUPT_DATA') return new CorruptDataError(e.message);
  if (e.code === 'LB_ERR_CORRUPT_INDEX') return new CorruptIndexError(e.message);
  if (e.code === 'LB_ERR_NO_SPACE') return new NoSpaceError(e.message);
  if (e.code.startsWith('LB_ERR_')) return new WorkerFailure(e.message);
  return Object.assign(new Error(e.message), { code: e.code });
}
