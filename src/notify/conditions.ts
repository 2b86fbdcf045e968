/**
 * The conditions the agent notifies about, decided from a plain picture of
 * its state: no clock, no I/O, so every rule and boundary is a unit test.
 * Every subject gets every condition of its kind, firing or not, so that the
 * Notifier sees a condition end as well as start.
 */
import cron from 'node-cron';
import { formatDuration } from '../util/units.ts';
import type { AlertDetail, ConditionEvent } from './alert.ts';

/**
 * Failed attempts in a row before a peer or target counts as unreachable:
 * one failure is a blip, three are an outage (/healthz says degraded from
 * then on too).
 */
export const UNREACHABLE_FAILURES = 3;

export interface VolumeInput {
  readonly name: string;
  /** When the last backup that succeeded ended (ISO), null if none. */
  readonly lastSuccess: string | null;
  /** Capture time of the newest snapshot (ISO), null if none. */
  readonly lastSnapshotTime: string | null;
  readonly lastError: { readonly time: string; readonly message: string; readonly code: string } | null;
  /** The [[volume]] rpo, when one is configured. */
  readonly rpoTargetMs: number | null;
  /** The widest gap between the volume's scheduled runs (cronIntervalMs), or its continuous ceiling. */
  readonly scheduleIntervalMs: number;
}

/** A peer's or target's push state: the fields of PeerStatus and TargetStatus this needs. */
export interface LinkInput {
  readonly name: string;
  readonly failures: number;
  readonly last_error: string | null;
  readonly last_success: string | null;
}

/** A scheduled drill's result (DrillRecord's fields). */
export interface DrillInput {
  readonly source: string;
  readonly ok: boolean;
  readonly error: string | null;
  readonly at: string;
}

export interface ConditionsInput {
  readonly volumes: readonly VolumeInput[];
  readonly peers: readonly LinkInput[];
  readonly targets: readonly LinkInput[];
  readonly drills: readonly DrillInput[];
  /** ms since the epoch. */
  readonly now: number;
  /** When the agent started (ISO): a volume never backed up is measured from then. */
  readonly agentStarted: string;
  /** [alerts] overdue_factor. */
  readonly overdueFactor: number;
}

export interface Condition {
  readonly event: ConditionEvent;
  readonly subject: string;
  readonly firing: boolean;
  readonly summary: string;
  readonly detail: AlertDetail;
}

export function evaluateConditions(input: ConditionsInput): Condition[] {
  const { now } = input;
  const started = Date.parse(input.agentStarted);
  const out: Condition[] = [];

  for (const v of input.volumes) {
    const success = v.lastSuccess === null ? null : Date.parse(v.lastSuccess);
    const err = v.lastError;
    const failed = err !== null && (success === null || Date.parse(err.time) > success);
    out.push({
      event: 'backup_failed',
      subject: v.name,
      firing: failed,
      summary: failed ? `volume ${v.name}: backup failed: ${err.message} [${err.code}]` : `volume ${v.name}: backups succeed${v.lastSuccess ? ` (last at ${v.lastSuccess})` : ''}`,
      detail: { volume: v.name, last_success: v.lastSuccess, error: err?.message ?? null, code: err?.code ?? null, error_time: err?.time ?? null },
    });

    // measured from the agent's start while there is nothing to measure from: a new volume is not late at once
    const successAge = now - (success ?? started);
    const overdueAfter = input.overdueFactor * v.scheduleIntervalMs;
    const overdue = successAge > overdueAfter;
    const since = v.lastSuccess === null ? `never backed up in the ${formatDuration(successAge)} since the agent started` : `no successful backup for ${formatDuration(successAge)}`;
    out.push({
      event: 'overdue',
      subject: v.name,
      firing: overdue,
      summary: overdue
        ? `volume ${v.name}: ${since}, over ${input.overdueFactor} x its schedule interval of ${formatDuration(v.scheduleIntervalMs)} (${formatDuration(overdueAfter)})`
        : `volume ${v.name}: backed up on schedule`,
      detail: { volume: v.name, last_success: v.lastSuccess, age_s: Math.round(successAge / 1000), threshold_s: Math.round(overdueAfter / 1000) },
    });

    const snapshotAge = now - (v.lastSnapshotTime === null ? started : Date.parse(v.lastSnapshotTime));
    const rpoLimit = v.rpoTargetMs === null ? null : 2 * v.rpoTargetMs;
    const overRpo = rpoLimit !== null && snapshotAge > rpoLimit;
    out.push({
      event: 'rpo_over_target',
      subject: v.name,
      firing: overRpo,
      summary: overRpo
        ? `volume ${v.name}: ${v.lastSnapshotTime === null ? `no snapshot in the ${formatDuration(snapshotAge)} since the agent started` : `newest snapshot is ${formatDuration(snapshotAge)} old`}, over twice its RPO target of ${formatDuration(v.rpoTargetMs!)} (${formatDuration(rpoLimit)})`
        : `volume ${v.name}: recovery point within target`,
      detail: { volume: v.name, last_snapshot: v.lastSnapshotTime, age_s: Math.round(snapshotAge / 1000), rpo_s: v.rpoTargetMs === null ? null : v.rpoTargetMs / 1000, threshold_s: rpoLimit === null ? null : rpoLimit / 1000 },
    });
  }

  const links = (event: 'peer_unreachable' | 'target_unreachable', kind: 'peer' | 'target', list: readonly LinkInput[]) => {
    for (const l of list) {
      const firing = l.failures >= UNREACHABLE_FAILURES;
      out.push({
        event,
        subject: l.name,
        firing,
        summary: firing
          ? `${kind} ${l.name} unreachable: ${l.failures} pushes failed in a row (last success ${l.last_success ?? 'never'}): ${l.last_error ?? 'no error recorded'}`
          : `${kind} ${l.name}: pushes succeed`,
        detail: { [kind]: l.name, failures: l.failures, last_success: l.last_success, last_error: l.last_error },
      });
    }
  };
  links('peer_unreachable', 'peer', input.peers);
  links('target_unreachable', 'target', input.targets);

  const lastDrill = new Map<string, DrillInput>();
  for (const d of input.drills) {
    const seen = lastDrill.get(d.source);
    if (!seen || Date.parse(d.at) >= Date.parse(seen.at)) lastDrill.set(d.source, d);
  }
  for (const d of lastDrill.values()) {
    out.push({
      event: 'drill_failed',
      subject: d.source,
      firing: !d.ok,
      summary: d.ok ? `drill of ${d.source} passed at ${d.at}` : `drill of ${d.source} failed at ${d.at}: ${d.error ?? 'no reason recorded'}`,
      detail: { source: d.source, at: d.at, error: d.error },
    });
  }
  return out;
}

/** Runs looked at: enough to cover a weekend of a weekdays-only schedule, or a month of a twice-monthly one. */
const RUNS_SAMPLED = 8;

/**
 * The widest gap between a cron schedule's next runs (ms): an irregular
 * schedule ("0 9 * * 1-5") is judged by its longest wait, so a weekend is not
 * an overdue backup.
 */
export function cronIntervalMs(expression: string): number {
  const task = cron.createTask(expression, () => {});
  try {
    const runs = task.getNextRuns(RUNS_SAMPLED).map((d) => d.getTime());
    return Math.max(...runs.slice(1).map((t, i) => t - runs[i]!));
  } finally {
    void task.destroy();
  }
}
