import type { Snapshot } from './snapshot.ts';

export interface RetentionPolicy {
  readonly keep_last?: number | undefined;
  readonly keep_hourly?: number | undefined;
  readonly keep_daily?: number | undefined;
  readonly keep_weekly?: number | undefined;
  readonly keep_monthly?: number | undefined;
  readonly keep_yearly?: number | undefined;
  /** Keep every snapshot taken within this long (ms) of the newest of its host and source. */
  readonly keep_within?: number | undefined;
  /** Keep every snapshot that carries one of these tags. */
  readonly keep_tag?: readonly string[] | undefined;
}

export interface Decision {
  readonly snapshot: Snapshot;
  readonly keep: boolean;
  /** Which rules kept it ("last", "daily", ...); empty for a removed snapshot. */
  readonly reasons: readonly string[];
}

type Bucket = (d: Date) => string;
const pad = (n: number) => String(n).padStart(2, '0');
type PeriodRule = 'keep_hourly' | 'keep_daily' | 'keep_weekly' | 'keep_monthly' | 'keep_yearly';
const BUCKETS: readonly (readonly [PeriodRule, string, Bucket])[] = [
  ['keep_hourly', 'hourly', (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}`],
  ['keep_daily', 'daily', (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`],
  ['keep_weekly', 'weekly', isoWeek],
  ['keep_monthly', 'monthly', (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}`],
  ['keep_yearly', 'yearly', (d) => `${d.getUTCFullYear()}`],
];

/** Whether a policy sets any rule (a rule of 0, or no tag, is no rule: restic's Empty()). */
export function hasPolicy(policy: RetentionPolicy): boolean {
  return [policy.keep_last, policy.keep_within, ...BUCKETS.map(([k]) => policy[k])].some((n) => typeof n === 'number' && n > 0) || (policy.keep_tag?.length ?? 0) > 0;
}

/**
 * restic's semantics, per host and source: keep the newest N; for each period
 * rule keep the newest snapshot of each of the N most recent periods that
 * have one. A policy that sets nothing (or only zeros) keeps everything: forgetting all by a
 * typo is not a safe default.
 */
export function applyPolicy(snapshots: readonly Snapshot[], policy: RetentionPolicy): Decision[] {
  // restic's Empty(): a rule of 0 is no rule, so `--keep-last 0` keeps all rather than forgetting all.
  if (!hasPolicy(policy)) return snapshots.map((snapshot) => ({ snapshot, keep: true, reasons: ['no policy'] }));
  const groups = new Map<string, Snapshot[]>();
  for (const s of snapshots) {
    const key = `${s.host}\0${s.volume ?? s.source}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  const reasons = new Map<string, string[]>();
  for (const group of groups.values()) {
    const newestFirst = [...group].sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
    newestFirst.slice(0, policy.keep_last ?? 0).forEach((s) => add(reasons, s.id, 'last'));
    if (policy.keep_within) {
      const since = Date.parse(newestFirst[0]!.time) - policy.keep_within;
      for (const s of newestFirst) if (Date.parse(s.time) >= since) add(reasons, s.id, 'within');
    }
    const tags = policy.keep_tag ?? [];
    for (const s of newestFirst) if (s.tags.some((t) => tags.includes(t))) add(reasons, s.id, 'tag');
    for (const [key, label, bucket] of BUCKETS) {
      let left = policy[key] ?? 0;
      let previous: string | undefined;
      for (const s of newestFirst) {
        if (left <= 0) break;
        const b = bucket(new Date(s.time));
        if (b === previous) continue;
        previous = b;
        add(reasons, s.id, label);
        left--;
      }
    }
  }
  return snapshots.map((snapshot) => {
    const r = reasons.get(snapshot.id) ?? [];
    return { snapshot, keep: r.length > 0, reasons: r };
  });
}

function add(map: Map<string, string[]>, id: string, reason: string): void {
  map.set(id, [...(map.get(id) ?? []), reason]);
}

function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${pad(week)}`;
}
