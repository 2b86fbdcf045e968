import type { Logger } from 'pino';
import type { Backend } from '../backend/backend.ts';
import { describeFailure } from '../errors/errors.ts';
import { type MirrorReport, pushRepository } from '../repo/mirror.ts';
import type { Repository } from '../repo/repository.ts';

/** The longest wait between retries of a failing push. */
const RETRY_MAX_MS = 5 * 60_000;

/** A target as /status shows it. */
export interface TargetStatus {
  readonly name: string;
  readonly location: string;
  readonly state: 'pushing' | 'idle' | 'retrying';
  readonly last_attempt: string | null;
  readonly last_success: string | null;
  readonly last_error: string | null;
  readonly failures: number;
  readonly next_retry: string | null;
  readonly last_push: MirrorReport | null;
}

export interface TargetPusherOptions {
  readonly name: string;
  readonly backend: Backend;
  readonly concurrency: number;
  /** The first retry's wait after a failure; each further one doubles, up to 5 min. */
  readonly retryMs: number;
  readonly log: Logger;
}

/**
 * The agent's pushes to one object-storage target: one at a time, a request
 * made while one runs is served by one more after it (never lost, never
 * queued twice), and a failure is retried after `retryMs`, doubling up to
 * 5 minutes, until a push succeeds.
 */
export class TargetPusher {
  readonly #repo: Repository;
  readonly #opts: TargetPusherOptions;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #retry: { timer: NodeJS.Timeout; at: Date } | undefined;
  #failures = 0;
  #lastAttempt: Date | null = null;
  #lastSuccess: Date | null = null;
  #lastError: string | null = null;
  #lastPush: MirrorReport | null = null;

  constructor(repo: Repository, opts: TargetPusherOptions) {
    this.#repo = repo;
    this.#opts = opts;
  }

  get name(): string {
    return this.#opts.name;
  }

  /** Pushes what the target lacks, now or right after the push under way; resolves when that push ends. */
  request(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#running) {
      this.#again = true;
      return this.#running.then(() => this.#running ?? undefined);
    }
    this.#clearRetry();
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#stopped) {
        this.#again = false;
        void this.request();
      }
    });
    return this.#running;
  }

  status(): TargetStatus {
    return {
      name: this.#opts.name,
      location: this.#opts.backend.location,
      state: this.#running ? 'pushing' : this.#retry ? 'retrying' : 'idle',
      last_attempt: this.#lastAttempt?.toISOString() ?? null,
      last_success: this.#lastSuccess?.toISOString() ?? null,
      last_error: this.#lastError,
      failures: this.#failures,
      next_retry: this.#retry?.at.toISOString() ?? null,
      last_push: this.#lastPush,
    };
  }

  /** No further push starts; resolves once the one under way ends. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#clearRetry();
    await this.#running;
  }

  async #run(): Promise<void> {
    this.#lastAttempt = new Date();
    try {
      const report = await pushRepository(this.#repo, this.#opts.backend, { concurrency: this.#opts.concurrency });
      this.#lastPush = report;
      this.#lastSuccess = new Date();
      this.#lastError = null;
      this.#failures = 0;
      if (report.snapshots + report.packs + report.keys > 0) this.#opts.log.info({ target: this.#opts.name, ...report }, 'pushed to the object-storage target');
    } catch (err) {
      this.#failures++;
      const f = describeFailure(err);
      this.#lastError = `${f.message} [${f.code}]`;
      const wait = Math.min(RETRY_MAX_MS, this.#opts.retryMs * 2 ** (this.#failures - 1));
      this.#opts.log.warn({ target: this.#opts.name, err: f.message, code: f.code, retry_in_ms: wait }, 'push to the object-storage target failed');
      if (!this.#stopped) {
        const timer = setTimeout(() => void this.request(), wait);
        timer.unref();
        this.#retry = { timer, at: new Date(Date.now() + wait) };
      }
    }
  }

  #clearRetry(): void {
    if (this.#retry) clearTimeout(this.#retry.timer);
    this.#retry = undefined;
  }
}
