import cron from 'node-cron';
import type { AgentCatalog } from '../catalog/agent-catalog.ts';
import type { Config } from '../config/schema.ts';
import { hasPolicy, type RetentionPolicy } from '../repo/retention.ts';
import type { PeerStatus } from '../replicate/replicator.ts';
import type { TargetStatus } from '../replicate/target-pusher.ts';
import type { JournalStatus } from '../watch/journal.ts';
import type { VolumeRecord } from './backups.ts';
import type { DrillRecord, DrillSummary } from './drills.ts';
import { type TrackedVolume, trackedVolumes } from './tracked.ts';
import { cronIntervalMs } from '../notify/conditions.ts';

/** What `lifeboat status --json` prints and GET /status answers. Times are ISO 8601 UTC. */
export interface StatusReport {
  readonly agent: {
    readonly running: boolean;
    readonly pid: number | null;
    readonly uptime_s: number | null;
    readonly version: string | null;
    readonly host: string;
    readonly started: string | null;
    /** Where its HTTP endpoint listens, or null (off, or the agent is not running). */
    readonly listen: string | null;
    /** Jobs: the one running and those waiting (backups run one at a time). */
    readonly jobs: { readonly running: string | null; readonly waiting: readonly string[] } | null;
  };
  readonly engine: {
    readonly address: string;
    /** null when nobody asked (status without an agent could not tell). */
    readonly reachable: boolean | null;
    readonly version: string | null;
    readonly last_error: string | null;
    readonly last_reconcile: string | null;
  };
  readonly volumes: readonly VolumeStatus[];
  /** [[volume]] names the engine does not have (logged as errors; the rest goes on). */
  readonly missing: readonly string[];
  /** The [[peer]] entries: pushes to each, and the replica of each held here. */
  readonly peers: readonly PeerStatus[];
  /** The object-storage targets' pushes (empty when none is configured, or no agent runs). */
  readonly targets: readonly TargetStatus[];
  /** Scheduled DR drills of the replicas held here: the schedule, and each source's last drill. */
  readonly drills: {
    readonly schedule: string | null;
    readonly next_run: string | null;
    readonly last: readonly DrillRecord[];
    /** Per source, its newest verdicts, oldest first. */
    readonly history: Readonly<Record<string, readonly DrillSummary[]>>;
  };
  readonly retention: {
    readonly schedule: string;
    readonly next_run: string | null;
    /** The keep_* rules, or null when none is set (nothing is forgotten). */
    readonly policy: RetentionPolicy | null;
    readonly last_run: string | null;
    readonly last_error: string | null;
  };
  /** Problems reading the repository or catalog (status without an agent). */
  readonly notes: readonly string[];
}

export type JournalState = 'clean' | 'dirty' | 'full-scan' | 'off';

export interface VolumeStatus {
  readonly name: string;
  readonly last_snapshot: { readonly id: string; readonly time: string; readonly age_s: number } | null;
  readonly journal: {
    /** clean: nothing changed; dirty: changes recorded; full-scan: the next backup scans the volume (reason says why); off: not watched. */
    readonly state: JournalState;
    readonly trusted: boolean;
    readonly dirty: number;
    readonly reason: string | null;
    readonly last_full_scan: string | null;
  };
  readonly schedule: string;
  readonly next_run: string | null;
  /**
   * The recovery point objective it is held to (s): the rpo of a continuous
   * volume, else its schedule's interval plus its last backup's duration (the
   * oldest its newest snapshot gets when every run succeeds).
   */
  readonly rpo_target_s: number;
  readonly continuous: boolean;
  readonly debounce_ms: number | null;
  readonly running: boolean;
  readonly last_backup: {
    readonly time: string;
    readonly duration_ms: number;
    readonly files: number;
    readonly examined: number | null;
    readonly bytes_read: number;
    readonly bytes_new: number;
    readonly bytes_stored: number;
    /** Size of the files in the snapshot. */
    readonly bytes_total: number;
    /** How long the volume's containers were paused or stopped for it (0: not at all). */
    readonly frozen_ms: number;
    /** Write-to-snapshot delay of that backup, when it covered journalled changes. */
    readonly lag_ms: number | null;
  } | null;
  readonly last_error: { readonly time: string; readonly message: string; readonly code: string } | null;
}

export function journalView(s: JournalStatus | undefined): VolumeStatus['journal'] {
  if (!s || !s.watching) {
    return { state: 'off', trusted: false, dirty: s?.dirty ?? 0, reason: s?.reason ?? 'not watched: the next backup scans the whole volume', last_full_scan: s?.lastFullScan ?? null };
  }
  const state: JournalState = !s.trusted ? 'full-scan' : s.dirty > 0 ? 'dirty' : 'clean';
  return { state, trusted: s.trusted, dirty: s.dirty, reason: s.reason, last_full_scan: s.lastFullScan };
}

export function snapshotView(s: { id: string; time: string } | null, now: number): VolumeStatus['last_snapshot'] {
  return s && { id: s.id, time: s.time, age_s: Math.max(0, Math.round((now - Date.parse(s.time)) / 1000)) };
}

export function lastBackupView(r: VolumeRecord | undefined): VolumeStatus['last_backup'] {
  if (!r?.lastSuccess || !r.lastStats) return null;
  const s = r.lastStats;
  return {
    time: r.lastSuccess,
    duration_ms: r.lastDurationMs ?? s.duration_ms,
    files: s.files,
    examined: s.examined ?? null,
    bytes_read: s.bytes_read,
    bytes_new: s.bytes_new,
    bytes_stored: s.bytes_stored,
    bytes_total: s.bytes_total,
    frozen_ms: r.lastFrozenMs ?? 0,
    lag_ms: r.lastLagMs,
  };
}

export function policyView(policy: RetentionPolicy): RetentionPolicy | null {
  if (!hasPolicy(policy)) return null;
  return Object.fromEntries(Object.entries(policy).filter(([, v]) => v !== undefined)) as RetentionPolicy;
}

/** See VolumeStatus.rpo_target_s. */
export function rpoTargetSeconds(v: Pick<TrackedVolume, 'continuous' | 'rpoMs' | 'schedule'>, lastDurationMs: number | null): number {
  if (v.continuous) return v.rpoMs / 1000;
  return Math.round((cronIntervalMs(v.schedule) + (lastDurationMs ?? 0)) / 1000);
}

/** The next time a cron expression fires, without scheduling anything. */
export function nextCronRun(expression: string): string | null {
  const task = cron.createTask(expression, () => {});
  try {
    return task.getNextRuns(1)[0]?.toISOString() ?? null;
  } finally {
    void task.destroy();
  }
}

export interface OfflineInputs {
  readonly config: Config;
  /** The catalog, when the state directory has one. */
  readonly catalog: AgentCatalog | undefined;
  /** Newest snapshot per volume of this host, or why the repository could not be read. */
  readonly snapshots: ReadonlyMap<string, { id: string; time: string }> | { readonly error: string };
  readonly engine: StatusReport['engine'];
  readonly peers: readonly PeerStatus[];
  readonly listen: string | null;
  readonly why: string;
  readonly now?: number;
}

/** What `lifeboat status` can tell by itself when no agent answers: catalog, repository, config. */
export function offlineStatus(i: OfflineInputs): StatusReport {
  const now = i.now ?? Date.now();
  const notes = [i.why];
  const snapshots = 'error' in i.snapshots ? new Map<string, { id: string; time: string }>() : i.snapshots;
  if ('error' in i.snapshots) notes.push(`repository: ${i.snapshots.error}`);
  let volumes: VolumeStatus[] = [];
  let missing: string[] = [];
  if (i.catalog) {
    const t = trackedVolumes(i.catalog, i.config);
    missing = [...t.missing];
    volumes = [...t.volumes.values()].map((v) => ({
      name: v.name,
      last_snapshot: snapshotView(snapshots.get(v.name) ?? null, now),
      journal: journalView(undefined),
      schedule: v.schedule,
      next_run: nextCronRun(v.schedule),
      rpo_target_s: rpoTargetSeconds(v, null),
      continuous: v.continuous,
      debounce_ms: v.continuous ? v.debounceMs : null,
      running: false,
      last_backup: null,
      last_error: null,
    }));
  } else {
    notes.push(`no catalog in ${i.config.agent.state_dir} yet: the agent has never run with this state directory`);
  }
  return {
    agent: { running: false, pid: null, uptime_s: null, version: null, host: i.config.agent.host, started: null, listen: i.listen, jobs: null },
    engine: i.engine,
    volumes,
    missing,
    peers: i.peers,
    targets: [],
    drills: { schedule: i.config.drill.schedule ?? null, next_run: i.config.drill.schedule ? nextCronRun(i.config.drill.schedule) : null, last: [], history: {} },
    retention: {
      schedule: i.config.schedule.retention,
      next_run: nextCronRun(i.config.schedule.retention),
      policy: policyView(i.config.retention),
      last_run: null,
      last_error: null,
    },
    notes,
  };
}
