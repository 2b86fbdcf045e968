import { describe, expect, it } from 'vitest';
import type { BlobId } from './ids.ts';
import { applyPolicy, type RetentionPolicy } from './retention.ts';
import type { Snapshot } from './snapshot.ts';

let counter = 0;
function snap(time: string, host = 'h1', source = '/data', volume: string | null = null): Snapshot {
  counter++;
  return {
    id: `${time}#${host}#${source}#${counter}`,
    time: new Date(time).toISOString(),
    host,
    source,
    volume,
    parent: null,
    tree: Buffer.alloc(32) as BlobId,
    meta: null,
    tags: [],
    splitter: { kind: 'fixed', size: 65536 },
    stats: {} as Snapshot['stats'],
  };
}

/** The times of the kept snapshots, newest first. */
function kept(snaps: Snapshot[], policy: RetentionPolicy): string[] {
  return applyPolicy(snaps, policy)
    .filter((d) => d.keep)
    .map((d) => d.snapshot.time)
    .sort()
    .reverse();
}

const iso = (s: string) => new Date(s).toISOString();

describe('applyPolicy', () => {
  it('keep_last keeps the newest N whatever the input order', () => {
    const snaps = [3, 1, 4, 5, 9, 2, 6].map((d) => snap(`2024-01-0${d}T12:00:00Z`));
    expect(kept(snaps, { keep_last: 3 })).toEqual(['2024-01-09', '2024-01-06', '2024-01-05'].map((d) => iso(`${d}T12:00:00Z`)));
    expect(kept(snaps, { keep_last: 100 })).toHaveLength(7);
  });

  it('returns one decision per snapshot, in input order, with reasons for the kept ones', () => {
    const snaps = [snap('2024-01-01T00:00:00Z'), snap('2024-01-02T00:00:00Z')];
    const d = applyPolicy(snaps, { keep_last: 1, keep_daily: 1 });
    expect(d.map((x) => x.snapshot)).toEqual(snaps);
    expect(d[0]).toMatchObject({ keep: false, reasons: [] });
    expect(d[1]).toMatchObject({ keep: true, reasons: ['last', 'daily'] });
  });

  it('keep_daily keeps the newest snapshot of each of the N most recent days that have one', () => {
    const snaps = [
      '2024-03-01T08:00:00Z',
      '2024-03-01T20:00:00Z', // newest of Mar 1
      '2024-03-03T01:00:00Z', // Mar 2 has none: it does not use up a slot
      '2024-03-03T23:59:59Z', // newest of Mar 3
      '2024-03-04T00:00:00Z', // Mar 4, a second after Mar 3 ends
      '2024-03-04T00:00:01Z', // newest of Mar 4
    ].map((t) => snap(t));
    expect(kept(snaps, { keep_daily: 3 })).toEqual(['2024-03-04T00:00:01Z', '2024-03-03T23:59:59Z', '2024-03-01T20:00:00Z'].map(iso));
    expect(kept(snaps, { keep_daily: 1 })).toEqual([iso('2024-03-04T00:00:01Z')]);
  });

  it('keep_hourly buckets by hour', () => {
    const snaps = ['2024-03-01T10:05:00Z', '2024-03-01T10:55:00Z', '2024-03-01T11:00:00Z', '2024-03-01T13:30:00Z'].map((t) => snap(t));
    expect(kept(snaps, { keep_hourly: 2 })).toEqual(['2024-03-01T13:30:00Z', '2024-03-01T11:00:00Z'].map(iso));
    expect(kept(snaps, { keep_hourly: 10 })).toEqual(['2024-03-01T13:30:00Z', '2024-03-01T11:00:00Z', '2024-03-01T10:55:00Z'].map(iso));
  });

  it('keep_weekly buckets by ISO week: Monday starts a week, and a week spans New Year', () => {
    const snaps = [
      '2024-12-22T12:00:00Z', // Sunday, week 51
      '2024-12-23T12:00:00Z', // Monday, week 52
      '2024-12-29T12:00:00Z', // Sunday, week 52 (newest of it)
      '2024-12-30T12:00:00Z', // Monday: ISO week 1 of 2025
      '2025-01-01T12:00:00Z', // Wednesday, same ISO week 2025-W01
      '2025-01-05T12:00:00Z', // Sunday, still 2025-W01 (newest of it)
    ].map((t) => snap(t));
    expect(kept(snaps, { keep_weekly: 2 })).toEqual(['2025-01-05T12:00:00Z', '2024-12-29T12:00:00Z'].map(iso));
    expect(kept(snaps, { keep_weekly: 3 })).toEqual(['2025-01-05T12:00:00Z', '2024-12-29T12:00:00Z', '2024-12-22T12:00:00Z'].map(iso));
  });

  it('keep_monthly buckets by calendar month, skipping empty months', () => {
    const snaps = ['2023-11-30T00:00:00Z', '2024-01-01T00:00:00Z', '2024-01-31T23:00:00Z', '2024-02-29T00:00:00Z', '2024-03-01T00:00:00Z'].map((t) =>
      snap(t),
    );
    expect(kept(snaps, { keep_monthly: 3 })).toEqual(['2024-03-01T00:00:00Z', '2024-02-29T00:00:00Z', '2024-01-31T23:00:00Z'].map(iso));
    expect(kept(snaps, { keep_monthly: 4 })).toContain(iso('2023-11-30T00:00:00Z'));
  });

  it('keep_yearly buckets by calendar year', () => {
    const snaps = ['2023-05-01', '2024-02-01', '2024-11-30', '2026-01-01'].map((d) => snap(`${d}T00:00:00Z`));
    expect(kept(snaps, { keep_yearly: 2 })).toEqual(['2026-01-01T00:00:00.000Z', '2024-11-30T00:00:00.000Z']);
  });

  it('keep_within keeps what was taken within that long of the newest of the same source, however old the newest is', () => {
    const snaps = ['2026-01-10T12:00:00Z', '2026-01-09T13:00:00Z', '2026-01-09T11:00:00Z', '2025-12-01T00:00:00Z'].map((t) => snap(t));
    const other = snap('2025-06-01T00:00:00Z', 'h2');
    const day = 86_400_000;
    expect(kept([...snaps, other], { keep_within: day })).toEqual(['2026-01-10T12:00:00.000Z', '2026-01-09T13:00:00.000Z', '2025-06-01T00:00:00.000Z']);
  });

  it('keep_tag keeps every snapshot carrying one of the tags, and alone is a policy', () => {
    const tagged = { ...snap('2026-01-01T00:00:00Z'), tags: ['release', 'x'] };
    const plain = snap('2026-01-02T00:00:00Z');
    const decisions = applyPolicy([tagged, plain], { keep_tag: ['release'] });
    expect(decisions.map((d) => [d.keep, d.reasons])).toEqual([[true, ['tag']], [false, []]]);
    expect(applyPolicy([tagged, plain], { keep_tag: [] }).every((d) => d.keep)).toBe(true);
  });

  it('keeps the union of the rules', () => {
    // Ten days, two snapshots a day.
    const snaps = Array.from({ length: 20 }, (_, i) => snap(`2024-05-${String(1 + (i >> 1)).padStart(2, '0')}T${i % 2 ? '18' : '06'}:00:00Z`));
    const result = kept(snaps, { keep_last: 3, keep_daily: 4, keep_monthly: 2 });
    // last: May 10 18h, 10 06h, 9 18h; daily adds May 8 18h and 7 18h; monthly's May is May 10 18h (one month only).
    expect(result).toEqual(['2024-05-10T18', '2024-05-10T06', '2024-05-09T18', '2024-05-08T18', '2024-05-07T18'].map((t) => iso(`${t}:00:00Z`)));
  });

  it('applies the policy per host and source', () => {
    const snaps = [
      snap('2024-01-01T00:00:00Z', 'h1', '/a'),
      snap('2024-01-02T00:00:00Z', 'h1', '/a'),
      snap('2024-01-01T00:00:00Z', 'h1', '/b'),
      snap('2024-01-01T00:00:00Z', 'h2', '/a'),
      snap('2024-01-03T00:00:00Z', 'h2', '/a'),
    ];
    const d = applyPolicy(snaps, { keep_last: 1 });
    expect(d.map((x) => x.keep)).toEqual([false, true, true, false, true]);
  });

  it('keeps everything under an empty policy', () => {
    const snaps = ['2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z'].map((t) => snap(t));
    for (const policy of [{}, { keep_last: undefined, keep_daily: undefined }]) {
      const d = applyPolicy(snaps, policy);
      expect(d.every((x) => x.keep)).toBe(true);
    }
  });

  it('treats an all-zero policy as empty, as restic does, instead of forgetting everything', () => {
    const snaps = ['2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z'].map((t) => snap(t));
    expect(applyPolicy(snaps, { keep_last: 0 }).every((x) => x.keep)).toBe(true);
    expect(applyPolicy(snaps, { keep_last: 0, keep_daily: 0, keep_weekly: 0 }).every((x) => x.keep)).toBe(true);
    // A zero next to a real rule is simply that rule.
    expect(kept(snaps, { keep_last: 1, keep_daily: 0 })).toEqual([iso('2024-01-02T00:00:00Z')]);
  });

  it('handles no snapshots', () => {
    expect(applyPolicy([], { keep_last: 2 })).toEqual([]);
  });
});
