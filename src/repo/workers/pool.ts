import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { CorruptDataError, LifeboatError } from '../../errors/errors.ts';
import type { MasterKeys } from '../crypto.ts';
import type { HashReply, Job, Reply, SealReply, UnsealReply, WorkerInit } from './protocol.ts';

interface Pending {
  resolve: (value: never) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  /** Jobs answered in order: a worker handles its messages one at a time. */
  queue: Pending[];
}

class WorkerFailure extends LifeboatError {
  readonly code = 'LB_ERR_WORKER';
}

/**
 * Hashing, compression and sealing run on worker threads, one per core by
 * default, so the main thread only reads files, consults the index and writes
 * packs. Jobs go to the worker with the shortest queue.
 */
export class BlobPool {
  readonly #slots: Slot[];
  #closed = false;

  constructor(keys: MasterKeys, opts: { workers?: number; level: number }) {
    const size = Math.max(1, opts.workers ?? os.availableParallelism());
    const init: WorkerInit = { enc: keys.enc, mac: keys.mac, level: opts.level };
    this.#slots = Array.from({ length: size }, () => this.#spawn(init));
  }

  get size(): number {
    return this.#slots.length;
  }

  #spawn(init: WorkerInit): Slot {
    const worker = new Worker(new URL('./blob-worker.ts', import.meta.url), { workerData: init });
    const slot: Slot = { worker, queue: [] };
    worker.on('message', (reply: Reply) => {
      const pending = slot.queue.shift();
      if (!pending) return;
      if (reply.ok) pending.resolve(reply.value as never);
      else pending.reject(rebuildError(reply.error));
    });
    worker.on('error', (err) => this.#failAll(slot, err));
    worker.on('exit', (code) => {
      if (!this.#closed) this.#failAll(slot, new WorkerFailure(`blob worker exited with code ${code}`));
    });
    return slot;
  }

  #failAll(slot: Slot, err: Error): void {
    for (const p of slot.queue.splice(0)) p.reject(err);
  }

  #run<T>(job: Job, transfer: ArrayBuffer[]): Promise<T> {
    let best = this.#slots[0]!;
    for (const s of this.#slots) if (s.queue.length < best.queue.length) best = s;
    return new Promise<T>((resolve, reject) => {
      best.queue.push({ resolve: resolve as (v: never) => void, reject });
      best.worker.postMessage(job, transfer);
    });
  }

  hash(job: Omit<Extract<Job, { op: 'hash' }>, 'op'>): Promise<HashReply> {
    return this.#run({ op: 'hash', ...job }, [job.buf]);
  }

  seal(job: Omit<Extract<Job, { op: 'seal' }>, 'op'>): Promise<SealReply> {
    return this.#run({ op: 'seal', ...job }, [job.buf, job.ids]);
  }

  unseal(job: Omit<Extract<Job, { op: 'unseal' }>, 'op'>): Promise<UnsealReply> {
    return this.#run({ op: 'unseal', ...job }, [job.buf, job.ids]);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
  }
}

function rebuildError(e: { name: string; code: string; message: string }): Error {
  if (e.code === 'LB_ERR_CORRUPT_DATA') return new CorruptDataError(e.message);
  return new WorkerFailure(`${e.name}: ${e.message}`);
}
