import { LifeboatError } from '../errors/errors.ts';

/** A job that was still waiting when the queue closed: it never started. */
export class JobCancelledError extends LifeboatError {
  readonly code = 'LB_ERR_CANCELLED';
}

interface Waiting {
  readonly name: string;
  readonly start: () => void;
  readonly cancel: (err: Error) => void;
}

/**
 * Runs jobs one at a time, in the order they were queued. The agent puts
 * every repository write through one queue: backups share the repository's
 * worker pool, so one at a time keeps memory bounded, and retention (which
 * needs the exclusive lock) never meets a backup of this agent.
 */
export class JobQueue {
  readonly #waiting: Waiting[] = [];
  #running: { readonly name: string; readonly done: Promise<void> } | undefined;
  #closed = false;

  /** The job running now, if any. */
  get running(): string | undefined {
    return this.#running?.name;
  }

  /** Jobs waiting their turn. */
  get waiting(): readonly string[] {
    return this.#waiting.map((w) => w.name);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues fn; resolves or rejects with its result. Rejects with JobCancelledError when the queue closes first. */
  run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new JobCancelledError(`not starting ${name}: the agent is stopping`));
    return new Promise<T>((resolve, reject) => {
      const start = () => {
        const done = (async () => {
          try {
            resolve(await fn());
          } catch (err) {
            reject(err as Error);
          }
        })();
        this.#running = { name, done };
        void done.then(() => {
          this.#running = undefined;
          this.#next();
        });
      };
      this.#waiting.push({ name, start, cancel: reject });
      if (!this.#running) this.#next();
    });
  }

  #next(): void {
    if (this.#running || this.#closed) return;
    this.#waiting.shift()?.start();
  }

  /** Takes no more jobs, cancels those waiting, and resolves when the running one (if any) has ended. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiting.splice(0)) w.cancel(new JobCancelledError(`${w.name} cancelled: the agent is stopping`));
    await this.#running?.done;
  }

  /** Resolves when the running job (if any) has ended, without closing. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running.done;
  }
}
