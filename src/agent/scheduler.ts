import cron, { type ScheduledTask, type TaskOptions } from 'node-cron';
import type { Logger } from '../log/logger.ts';

export type CreateTask = (expression: string, fn: () => Promise<unknown>, options: TaskOptions) => ScheduledTask;

export interface SchedulerOptions {
  readonly log: Logger;
  /** Runs one scheduled backup of a volume; resolves when it has ended (queued, run, or skipped). */
  readonly backup: (volume: string) => Promise<unknown>;
  readonly retention: () => Promise<unknown>;
  /** Told about every scheduled run that did not happen, and why: a volume's backup, or another job. */
  readonly onMissed?: (what: { volume?: string; job: string; at: Date; why: 'overlap' | 'late' }) => void;
  /** node-cron's createTask, replaceable in tests. */
  readonly createTask?: CreateTask;
}

interface Entry {
  readonly expression: string;
  readonly task: ScheduledTask;
}

/** The agent's jobs besides volume backups, each on a schedule of its own. */
export type JobName = 'retention' | 'replication' | 'targets' | 'drill';
const jobKey = (name: JobName) => `\0${name}`;
const isJob = (key: string) => key.startsWith('\0');

/**
 * The agent's clock: one node-cron task per tracked volume (its [[volume]]
 * schedule or [schedule].backup) and one per other job (retention,
 * replication, drills). A run that comes due
 * while the previous run of the same task has not ended (still queued behind
 * other jobs, or running) is not started: node-cron's noOverlap drops it, and
 * it is logged as missed. So is a run the process was too busy to start on
 * time (node-cron's missed execution).
 */
export class Scheduler {
  readonly #log: Logger;
  readonly #opts: SchedulerOptions;
  readonly #create: CreateTask;
  readonly #tasks = new Map<string, Entry>();
  #stopped = false;

  constructor(opts: SchedulerOptions) {
    this.#log = opts.log;
    this.#opts = opts;
    this.#create = opts.createTask ?? ((expr, fn, options) => cron.createTask(expr, fn, options));
  }

  /** Makes the volume tasks exactly these (name -> cron expression): new ones start, gone ones stop, changed ones restart. */
  setVolumes(schedules: ReadonlyMap<string, string>): void {
    if (this.#stopped) return;
    for (const [key] of this.#tasks) {
      if (!isJob(key) && !schedules.has(key)) this.#remove(key);
    }
    for (const [volume, expression] of schedules) {
      if (this.#tasks.get(volume)?.expression === expression) continue;
      this.#remove(volume);
      this.#add(volume, expression, () => this.#opts.backup(volume), { volume });
    }
  }

  setRetention(expression: string): void {
    this.setJob('retention', expression, () => this.#opts.retention());
  }

  /** Runs `run` on `expression`; null removes the job. */
  setJob(name: JobName, expression: string | null, run: () => Promise<unknown>): void {
    const key = jobKey(name);
    if (this.#stopped || this.#tasks.get(key)?.expression === expression) return;
    this.#remove(key);
    if (expression !== null) this.#add(key, expression, run, { job: name });
  }

  /** When the volume's next scheduled backup is due, or null when it has no task. */
  nextRun(volume: string): Date | null {
    return this.#next(volume);
  }

  nextRetention(): Date | null {
    return this.#next(jobKey('retention'));
  }

  nextJob(name: JobName): Date | null {
    return this.#next(jobKey(name));
  }

  expressionOf(volume: string): string | undefined {
    return this.#tasks.get(volume)?.expression;
  }

  get volumes(): string[] {
    return [...this.#tasks.keys()].filter((k) => !isJob(k));
  }

  /** Stops every task; runs already started go on (the agent waits for its queue). */
  stop(): void {
    this.#stopped = true;
    for (const key of [...this.#tasks.keys()]) this.#remove(key);
  }

  #next(key: string): Date | null {
    const entry = this.#tasks.get(key);
    if (!entry) return null;
    return entry.task.getNextRuns(1)[0] ?? null;
  }

  #add(key: string, expression: string, run: () => Promise<unknown>, of: { volume: string } | { job: JobName }): void {
    const volume = 'volume' in of ? of.volume : undefined;
    const job = 'job' in of ? of.job : 'backup';
    const what = volume === undefined ? job : `backup of volume ${volume}`;
    const task = this.#create(
      expression,
      async () => {
        try {
          await run();
        } catch (err) {
          // the job reports its own failures; anything reaching here is unexpected, and must not stop the task
          this.#log.error({ err, volume }, `scheduled ${what} failed`);
        }
      },
      { name: volume === undefined ? job : `backup:${volume}`, noOverlap: true, logger: cronLogger(this.#log) },
    );
    task.on('execution:overlap', (ctx) => {
      this.#log.warn({ volume, scheduled: ctx.date.toISOString(), schedule: expression }, `missed a scheduled ${what}: the previous one has not ended`);
      this.#opts.onMissed?.({ ...(volume === undefined ? {} : { volume }), job, at: ctx.date, why: 'overlap' });
    });
    task.on('execution:missed', (ctx) => {
      this.#log.warn({ volume, scheduled: ctx.date.toISOString(), schedule: expression }, `missed a scheduled ${what}: the agent was too busy to start it on time`);
      this.#opts.onMissed?.({ ...(volume === undefined ? {} : { volume }), job, at: ctx.date, why: 'late' });
    });
    this.#tasks.set(key, { expression, task });
    void task.start();
  }

  #remove(key: string): void {
    const entry = this.#tasks.get(key);
    if (!entry) return;
    this.#tasks.delete(key);
    void entry.task.destroy();
  }
}

/** node-cron's own messages, into the agent's log (it would print to the console). */
function cronLogger(log: Logger): NonNullable<TaskOptions['logger']> {
  const text = (m: string | Error) => (m instanceof Error ? m.message : m);
  return {
    info: (m) => log.debug({ component: 'cron' }, m),
    // overlaps and misses are logged by the scheduler itself, with the volume
    warn: (m) => log.debug({ component: 'cron' }, m),
    error: (m, err) => log.error({ component: 'cron', err: err ?? (m instanceof Error ? m : undefined) }, text(m)),
    debug: (m) => log.debug({ component: 'cron' }, text(m)),
  };
}
