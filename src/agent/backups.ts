import { describeFailure } from '../errors/errors.ts';
import type { Logger } from '../log/logger.ts';
import type { Snapshot, SnapshotStats } from '../repo/snapshot.ts';
import { shortId } from '../repo/snapshot.ts';
import type { JournalTake } from '../watch/journal.ts';
import { JobCancelledError, type JobQueue } from './queue.ts';

/** What started a backup. */
export type TriggerReason = 'schedule' | 'continuous' | 'manual';

export type Outcome = 'success' | 'failure' | 'skipped' | 'cancelled';

export interface BackupResult {
  readonly volume: string;
  readonly reason: TriggerReason;
  readonly outcome: Outcome;
  readonly snapshot?: Snapshot;
  /** Wall time of the backup itself, queue wait excluded (ms). */
  readonly durationMs?: number;
  /**
   * Recovery point lag of this backup: from the first change it covers (the
   * journal's first report of it) to the snapshot being committed (ms).
   * Undefined when the journal reported no change before it began.
   */
  readonly lagMs?: number;
  /** How long the volume's containers were paused or stopped for it (ms); 0 when none was. */
  readonly frozenMs?: number;
  readonly journal?: { readonly mode: JournalTake['mode']; readonly reason: string | null; readonly paths: number };
  readonly error?: { readonly message: string; readonly code: string };
}

/** What the agent knows of one volume's backups (status and metrics read it). */
export interface VolumeRecord {
  lastSnapshot: { id: string; time: string } | null;
  lastSuccess: string | null;
  lastDurationMs: number | null;
  lastStats: SnapshotStats | null;
  lastLagMs: number | null;
  /** How long the last successful backup kept the volume's containers paused or stopped (ms). */
  lastFrozenMs: number | null;
  lastError: { time: string; message: string; code: string } | null;
  /** Queued or running. */
  busy: boolean;
  running: boolean;
  /** ms since the epoch of the first change the journal reported that no backup has taken yet. */
  pendingSince: number | null;
  /** A continuous trigger arrived while busy: run again when done. */
  rerun: boolean;
}

export interface BackupsOptions {
  readonly queue: JobQueue;
  readonly log: Logger;
  /** The journal's take for the volume, or undefined without a journal (the backup scans the volume). */
  readonly take?: (volume: string) => JournalTake | undefined;
  /** Backs the volume up; rejects on failure (after returning its containers to their state). */
  readonly run: (volume: string, take: JournalTake | undefined) => Promise<{ snapshot: Snapshot; warnings?: readonly string[]; frozenMs?: number }>;
  /** A backup begins (after its wait in the queue). */
  readonly onStart?: (volume: string, reason: TriggerReason) => void;
  readonly onResult?: (r: BackupResult) => void;
  readonly now?: () => number;
}

/**
 * Backups of the tracked volumes, one volume never twice at once: schedule,
 * continuous mode and manual triggers share one mutex per volume, and all
 * volumes share the agent's job queue (one backup writes at a time). A
 * scheduled trigger that finds the volume busy is skipped (a missed run,
 * logged); a continuous one makes the volume run again once the current
 * backup ends, since the changes that triggered it may be newer than its
 * take; a manual one (the CLI's backup) waits for it and then runs.
 */
export class VolumeBackups {
  /** The work on each volume queued or running now (a backup, or a restore into it). */
  readonly #current = new Map<string, Promise<unknown>>();
  readonly #opts: BackupsOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #records = new Map<string, VolumeRecord>();
  readonly #inFlight = new Set<Promise<unknown>>();

  constructor(opts: BackupsOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#now = opts.now ?? Date.now;
  }

  record(volume: string): VolumeRecord {
    let r = this.#records.get(volume);
    if (!r) {
      r = {
        lastSnapshot: null,
        lastSuccess: null,
        lastDurationMs: null,
        lastStats: null,
        lastLagMs: null,
        lastFrozenMs: null,
        lastError: null,
        busy: false,
        running: false,
        pendingSince: null,
        rerun: false,
      };
      this.#records.set(volume, r);
    }
    return r;
  }

  get volumes(): string[] {
    return [...this.#records.keys()];
  }

  /** The newest snapshot the repository already holds of the volume (at start). */
  seed(volume: string, snapshot: Pick<Snapshot, 'id' | 'time'>): void {
    const r = this.record(volume);
    if (!r.lastSnapshot || r.lastSnapshot.time < snapshot.time) r.lastSnapshot = { id: snapshot.id, time: snapshot.time };
  }

  /** The journal reported changes in the volume (now, unless `at` says when). */
  noteChange(volume: string, at = this.#now()): void {
    const r = this.record(volume);
    if (r.pendingSince === null || at < r.pendingSince) r.pendingSince = at;
  }

  /** The volume is no longer tracked: forget what is not worth keeping (a running backup finishes). */
  drop(volume: string): void {
    const r = this.#records.get(volume);
    if (r && !r.busy) {
      this.#records.delete(volume);
      this.#current.delete(volume);
    }
  }

  /** Settles when every backup started so far has ended. */
  async settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  trigger(volume: string, reason: TriggerReason): Promise<BackupResult> {
    const r = this.record(volume);
    // someone asked for a snapshot of the volume now: after the one under way, not instead of it
    if (r.busy && reason === 'manual') {
      const again = () => this.trigger(volume, reason);
      return this.#current.get(volume)!.then(again, again);
    }
    if (r.busy) {
      if (reason === 'continuous') {
        r.rerun = true;
        this.#log.debug({ volume }, 'changes while a backup of the volume is under way: another follows it');
      } else {
        this.#log.warn({ volume, reason }, `missed a ${reason === 'schedule' ? 'scheduled' : reason} backup of volume ${volume}: the previous one has not ended`);
      }
      const skipped: BackupResult = { volume, reason, outcome: 'skipped' };
      this.#opts.onResult?.(skipped);
      return Promise.resolve(skipped);
    }
    return this.#hold(volume, r, () => this.#queued(volume, reason, r));
  }

  /**
   * Other work on a volume (a restore into it), run as one of its backups
   * would be: after the work under way, none beside it, in the agent's job
   * queue. A change the journal reports meanwhile backs the volume up right after.
   */
  exclusive<T>(volume: string, name: string, fn: () => Promise<T>): Promise<T> {
    const r = this.record(volume);
    if (r.busy) {
      const again = () => this.exclusive(volume, name, fn);
      return this.#current.get(volume)!.then(again, again);
    }
    return this.#hold(volume, r, () => this.#opts.queue.run(name, fn));
  }

  /** The volume is busy while `work` runs; a continuous trigger that came meanwhile runs after it. */
  #hold<T>(volume: string, r: VolumeRecord, work: () => Promise<T>): Promise<T> {
    r.busy = true;
    const p = work().finally(() => {
      r.busy = false;
      r.running = false;
      this.#inFlight.delete(p);
      if (r.rerun) {
        r.rerun = false;
        if (!this.#opts.queue.closed) void this.trigger(volume, 'continuous');
      }
    });
    this.#inFlight.add(p);
    this.#current.set(volume, p);
    return p;
  }

  async #queued(volume: string, reason: TriggerReason, r: VolumeRecord): Promise<BackupResult> {
    try {
      return await this.#opts.queue.run(`backup of volume ${volume}`, () => this.#run(volume, reason, r));
    } catch (err) {
      if (!(err instanceof JobCancelledError)) throw err;
      r.rerun = false;
      const cancelled: BackupResult = { volume, reason, outcome: 'cancelled' };
      this.#opts.onResult?.(cancelled);
      return cancelled;
    }
  }

  async #run(volume: string, reason: TriggerReason, r: VolumeRecord): Promise<BackupResult> {
    r.running = true;
    const started = this.#now();
    // everything the journal recorded up to here is in this take: the changes it covers began at pendingSince
    const take = this.#opts.take?.(volume);
    const covers = r.pendingSince;
    r.pendingSince = null;
    const journal = take && { mode: take.mode, reason: take.reason, paths: take.paths.size };
    this.#log.info({ volume, reason, journal }, `backing up volume ${volume}`);
    this.#opts.onStart?.(volume, reason);
    let result: BackupResult;
    try {
      const { snapshot, warnings, frozenMs = 0 } = await this.#opts.run(volume, take);
      take?.commit();
      const done = this.#now();
      const durationMs = done - started;
      const lagMs = covers === null ? undefined : Math.max(0, done - covers);
      r.lastSnapshot = { id: snapshot.id, time: snapshot.time };
      r.lastSuccess = new Date(done).toISOString();
      r.lastDurationMs = durationMs;
      r.lastStats = snapshot.stats;
      r.lastFrozenMs = frozenMs;
      r.lastError = null;
      if (lagMs !== undefined) r.lastLagMs = lagMs;
      const s = snapshot.stats;
      this.#log.info(
        {
          volume,
          reason,
          snapshot: shortId(snapshot.id),
          files: s.files,
          examined: s.examined,
          bytes_read: s.bytes_read,
          bytes_new: s.bytes_new,
          bytes_stored: s.bytes_stored,
          duration_ms: durationMs,
          ...(frozenMs > 0 ? { frozen_ms: frozenMs } : {}),
          ...(lagMs === undefined ? {} : { lag_ms: lagMs }),
        },
        `volume ${volume} backed up`,
      );
      if (s.errors > 0) this.#log.warn({ volume, snapshot: shortId(snapshot.id), errors: s.errors }, `snapshot of volume ${volume} saved, but ${s.errors} entries could not be read`);
      for (const w of warnings ?? []) this.#log.warn({ volume }, w);
      result = { volume, reason, outcome: 'success', snapshot, durationMs, frozenMs, ...(lagMs === undefined ? {} : { lagMs }), ...(journal ? { journal } : {}) };
    } catch (err) {
      // the changes stay untaken: the next backup covers them, and its lag counts from their start
      if (covers !== null && (r.pendingSince === null || covers < r.pendingSince)) r.pendingSince = covers;
      const f = describeFailure(err);
      r.lastError = { time: new Date(this.#now()).toISOString(), message: f.message, code: f.code };
      this.#log.error({ volume, reason, err: f.message, code: f.code }, `backup of volume ${volume} failed`);
      result = { volume, reason, outcome: 'failure', durationMs: this.#now() - started, error: { message: f.message, code: f.code }, ...(journal ? { journal } : {}) };
    }
    this.#opts.onResult?.(result);
    return result;
  }
}
