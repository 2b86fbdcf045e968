import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { CorruptDataError, CorruptIndexError, LifeboatError, NoSpaceError } from '../errors/errors.ts';
import type { Repository } from '../repo/repository.ts';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import type {
  CaptureItem,
  CaptureResult,
  CheckReply,
  FlushReply,
  Job,
  Reply,
  RestoreItem,
  RestoreReply,
  StoreItem,
  StoreReply,
  WorkerInit,
} from './protocol.ts';

/** How long close() waits for a worker to let go of its connection before ending it anyway (one stuck in a long job). */
const CLOSE_WAIT_MS = 5_000;

/** The worker entry beside this module: entry.ts from the sources (tests), entry.js from the build. */
const ENTRY = new URL(import.meta.url.endsWith('.ts') ? './entry.ts' : './entry.js', import.meta.url);

interface Slot {
  readonly worker: Worker;
  /** A worker handles its messages one at a time, so replies come back in this order. */
  readonly queue: { resolve: (v: unknown) => void; reject: (e: Error) => void }[];
  /** Packs indexed since this worker's last store job; they travel with the next one. */
  acks: string[];
}

class WorkerFailure extends LifeboatError {
  readonly code = 'LB_ERR_WORKER';
}

export interface PoolOptions {
  readonly workers?: number;
  readonly level: number;
  readonly packSize: number;
}

/**
 * Worker threads that do the repository's heavy lifting: reading source
 * files, hashing, compressing, sealing and packing blocks, and the reverse
 * for restore. One per core by default. Workers start on the first job, so a
 * command that finds nothing to do never pays for them.
 */
export class RepoWorkers {
  readonly size: number;
  readonly #init: WorkerInit;
  #slots: Slot[] = [];
  #closed = false;

  constructor(repo: Repository, opts: PoolOptions) {
    this.size = Math.max(1, opts.workers ?? os.availableParallelism());
    this.#init = { enc: repo.keys.enc, mac: repo.keys.mac, level: opts.level, repoDir: repo.dir, packSize: opts.packSize };
  }

  #spawn(): Slot {
    const worker = new Worker(ENTRY, { workerData: this.#init });
    const slot: Slot = { worker, queue: [], acks: [] };
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
      if (!this.#closed) failAll(new WorkerFailure(`repository worker exited with code ${code}`));
    });
    return slot;
  }

  #slotsReady(): Slot[] {
    if (this.#slots.length === 0) this.#slots = Array.from({ length: this.size }, () => this.#spawn());
    return this.#slots;
  }

  #post<T>(slot: Slot, job: Job): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      slot.queue.push({ resolve: resolve as (v: unknown) => void, reject });
      slot.worker.postMessage(job);
    });
  }

  /** The worker with the fewest jobs queued. */
  #pick(): Slot {
    const slots = this.#slotsReady();
    let best = slots[0]!;
    for (const s of slots) if (s.queue.length < best.queue.length) best = s;
    return best;
  }

  #run<T>(job: Job): Promise<T> {
    return this.#post<T>(this.#pick(), job);
  }

  store(splitter: SplitterSpec, items: readonly StoreItem[]): Promise<StoreReply> {
    const slot = this.#pick();
    const acks = slot.acks;
    slot.acks = [];
    return this.#post(slot, { op: 'store', splitter, items, acks });
  }

  /** Tells the workers a pack they reported is in the index (names of other workers' packs are ignored). */
  acknowledge(pack: string): void {
    for (const s of this.#slots) s.acks.push(pack);
  }

  restore(items: readonly RestoreItem[]): Promise<RestoreReply> {
    return this.#run({ op: 'restore', items });
  }

  check(pack: string): Promise<CheckReply> {
    return this.#run({ op: 'check', pack });
  }

  capture(item: CaptureItem): Promise<CaptureResult> {
    return this.#run({ op: 'capture', item });
  }

  /** Ends a write session: every worker finishes its open pack; returns all packs not yet reported. */
  async flush(): Promise<FlushReply['packs']> {
    const replies = await Promise.all(this.#slots.map((s) => this.#post<FlushReply>(s, { op: 'flush' })));
    for (const s of this.#slots) s.acks = [];
    return replies.flatMap((r) => r.packs);
  }

  /** Abandons a failed write session: open packs are deleted, and no worker trusts what it packed. */
  async reset(): Promise<void> {
    await Promise.allSettled(this.#slots.map((s) => this.#post(s, { op: 'reset' })));
    for (const s of this.#slots) s.acks = [];
  }

  /** Jobs worth keeping queued so no worker waits for the main thread. */
  get depth(): number {
    return this.size * 3;
  }

  /**
   * Ends the workers. Each first closes its index connection, as its last
   * job: a connection torn down by terminate() while the worker collects
   * garbage (as it does after every job) can abort the whole process.
   */
  async close(): Promise<void> {
    const slots = this.#slots;
    await Promise.all(
      slots.map((s) => Promise.race([this.#post(s, { op: 'close' }).catch(() => {}), new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref())])),
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
