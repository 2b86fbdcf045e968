// Markdown tables and target checks for the replication benchmark (Lifeboat push vs rsync).
import { errorLine, fmt, mb, table, type Target, times } from './report.ts';

export type ReplicationStepName = 'first' | 'incremental';
export const REPLICATION_STEPS: readonly ReplicationStepName[] = ['first', 'incremental'];
const TITLE: Record<ReplicationStepName, string> = { first: 'first replication', incremental: '1% change' };

/** One command, as GNU time saw it. */
export interface CmdRecord {
  readonly ok: boolean;
  readonly error?: string;
  readonly wallS: number;
  readonly userS: number;
  readonly sysS: number;
  readonly maxRssKiB: number;
  /** Cores the rest of the machine kept busy on average meanwhile (its busy CPU time less this command's and its receiver's, ÷ wall time). */
  readonly otherCores: number;
  /** The tool's own report: Lifeboat's --json output (a PushReport for a push), rsync's --stats counters. */
  readonly reported?: Record<string, unknown>;
}

/** A transfer across the link: a push, or an rsync run. */
export interface TransferRecord extends CmdRecord {
  /** Bytes each way as the tool counts them (Lifeboat: frames on the connection; rsync: --stats totals). */
  readonly sentBytes: number;
  readonly receivedBytes: number;
  /** Bytes each way through the veth pair: IP packets, TCP/IP headers (and TLS records) included. */
  readonly linkSentBytes: number;
  readonly linkReceivedBytes: number;
  /** CPU seconds on the receiving side (the peer agent; the rsync daemon's connection processes). */
  readonly receiverCpuS: number;
  /** Peak RSS of the peer agent since it started (KiB); rsync's receiver is not sampled. */
  readonly receiverPeakRssKiB?: number;
}

export interface ReplicationStep {
  readonly backup?: CmdRecord;
  readonly push?: TransferRecord;
  readonly rsync?: TransferRecord;
}

export type ReplicationSteps = Partial<Record<ReplicationStepName, ReplicationStep>>;

export interface ReplicaCheck {
  /** The replica restored on the peer: equal to the source (per-file SHA-256)? */
  readonly replica?: { readonly ok: boolean; readonly wallS: number; readonly diffs: readonly string[]; readonly error?: string };
  /** rsync's copy, checked the same way (that the bar is a real copy). */
  readonly rsyncCopy?: { readonly diffs: readonly string[] };
}

const ok = <T extends CmdRecord>(r: T | undefined): r is T => r !== undefined && r.ok;
const wire = (r: TransferRecord | undefined): number | undefined => (ok(r) ? r.sentBytes + r.receivedBytes : undefined);
const link = (r: TransferRecord | undefined): number | undefined => (ok(r) ? r.linkSentBytes + r.linkReceivedBytes : undefined);
const div = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || !(b > 0) ? undefined : a / b;

/** The push's own duration_ms (hello to the last answer), without the command's start-up and the TLS handshake. */
function pushInsideS(s: ReplicationStep | undefined): number | undefined {
  const ms = ok(s?.push) ? s.push.reported?.['duration_ms'] : undefined;
  return typeof ms === 'number' ? ms / 1000 : undefined;
}

/** Backup + push wall time; undefined unless both succeeded. */
export function lifeboatWallS(s: ReplicationStep | undefined): number | undefined {
  return ok(s?.backup) && ok(s?.push) ? s.backup.wallS + s.push.wallS : undefined;
}

export function evaluateReplicationTargets(steps: ReplicationSteps, changedBytes: number, check: ReplicaCheck): Target[] {
  const inc = steps.incremental;
  const t = (target: string, value: number | undefined, limit: number, detail = ''): Target => ({
    target,
    value: `${times(value)}${detail} (need <= ${times(limit)})`,
    status: value === undefined || !Number.isFinite(value) ? 'n/a' : value <= limit ? 'PASS' : 'MISS',
  });
  const rsyncS = ok(inc?.rsync) ? inc.rsync.wallS : undefined;
  const replica = check.replica;
  return [
    t('1% change: Lifeboat wire bytes ÷ truly changed', div(wire(inc?.push), changedBytes), 1.3),
    t('1% change: Lifeboat wire bytes ÷ rsync wire bytes', div(wire(inc?.push), wire(inc?.rsync)), 1),
    t(
      '1% change: Lifeboat time (backup + push) ÷ rsync time',
      div(lifeboatWallS(inc), rsyncS),
      1,
      `; push alone ${times(div(ok(inc?.push) ? inc.push.wallS : undefined, rsyncS))}`,
    ),
    {
      target: 'replica restored on the peer equals the source',
      value: replica === undefined ? '–' : replica.ok ? (replica.diffs.length === 0 ? 'identical' : 'DIFFERS') : 'restore FAILED',
      status: replica === undefined ? 'n/a' : replica.ok && replica.diffs.length === 0 ? 'PASS' : 'MISS',
    },
  ];
}

function lifeboatDetail(r: TransferRecord): string {
  const p = r.reported ?? {};
  const n = (k: string): number | undefined => (typeof p[k] === 'number' ? (p[k] as number) : undefined);
  return (
    `${n('snapshots') ?? '?'} snapshot(s), ${n('blobs_sent') ?? '?'} blobs of ${mb(n('bytes_sent'))} stored bytes, ` +
    `${n('ids_queried') ?? '?'} ids queried`
  );
}

function rsyncDetail(r: TransferRecord): string {
  const p = r.reported ?? {};
  const n = (k: string): number | undefined => (typeof p[k] === 'number' ? (p[k] as number) : undefined);
  return `${n('filesTransferred') ?? '?'} files transferred, literal data ${mb(n('literalBytes'))}, matched data ${mb(n('matchedBytes'))}`;
}

export function renderReplicationReport(steps: ReplicationSteps, changedBytes: number, check: ReplicaCheck, targets: readonly Target[], cores: number): string {
  const rows = REPLICATION_STEPS.flatMap((name) => {
    const s = steps[name];
    const rsyncS = ok(s?.rsync) ? s.rsync.wallS : undefined;
    const cell = (r: CmdRecord | undefined): string => (r === undefined ? '–' : r.ok ? fmt(r.wallS) : 'FAIL');
    const both = lifeboatWallS(s);
    return [
      [`${TITLE[name]}: backup`, cell(s?.backup), '', ''],
      [`${TITLE[name]}: push`, cell(s?.push), cell(s?.rsync), fmt(div(ok(s?.push) ? s.push.wallS : undefined, rsyncS))],
      [`${TITLE[name]}: backup + push`, fmt(both), cell(s?.rsync), fmt(div(both, rsyncS))],
      [`${TITLE[name]}: the push inside its command`, fmt(pushInsideS(s)), cell(s?.rsync), fmt(div(pushInsideS(s), rsyncS))],
    ];
  });
  const others = REPLICATION_STEPS.flatMap((name) => {
    const s = steps[name];
    const cores = (r: CmdRecord | undefined): string => (ok(r) ? fmt(r.otherCores, 1) : '–');
    return [
      [`${TITLE[name]}: backup`, cores(s?.backup), ''],
      [`${TITLE[name]}: push / rsync`, cores(s?.push), cores(s?.rsync)],
    ];
  });

  const byteRows = REPLICATION_STEPS.flatMap((name) => {
    const s = steps[name];
    return [
      [`${TITLE[name]}: own count`, mb(wire(s?.push)), mb(wire(s?.rsync)), times(div(wire(s?.push), wire(s?.rsync)))],
      [`${TITLE[name]}: on the link`, mb(link(s?.push)), mb(link(s?.rsync)), times(div(link(s?.push), link(s?.rsync)))],
    ];
  });
  const inc = steps.incremental;
  byteRows.push([
    `${TITLE.incremental}: own count ÷ truly changed`,
    times(div(wire(inc?.push), changedBytes)),
    times(div(wire(inc?.rsync), changedBytes)),
    '',
  ]);

  const directions = REPLICATION_STEPS.flatMap((name) => {
    const s = steps[name];
    const each = (r: TransferRecord | undefined): string[] =>
      ok(r) ? [mb(r.sentBytes), mb(r.receivedBytes)] : ['–', '–'];
    return [[TITLE[name], ...each(s?.push), ...each(s?.rsync)]];
  });

  const cpu = REPLICATION_STEPS.flatMap((name) => {
    const s = steps[name];
    const own = (r: CmdRecord | undefined): string => (ok(r) ? fmt(r.userS + r.sysS) : '–');
    const peer = (r: TransferRecord | undefined): string => (ok(r) ? fmt(r.receiverCpuS) : '–');
    return [
      [`${TITLE[name]}: backup`, own(s?.backup), '–', '', ''],
      [`${TITLE[name]}: push / rsync`, own(s?.push), peer(s?.push), own(s?.rsync), peer(s?.rsync)],
    ];
  });
  const rss = REPLICATION_STEPS.flatMap((name) => {
    const s = steps[name];
    const mib = (k: number | undefined): string => fmt(k === undefined ? undefined : k / 1024, 0);
    return [
      [`${TITLE[name]}: backup`, mib(ok(s?.backup) ? s.backup.maxRssKiB : undefined), '', ''],
      [`${TITLE[name]}: push / rsync`, mib(ok(s?.push) ? s.push.maxRssKiB : undefined), mib(s?.push?.receiverPeakRssKiB), mib(ok(s?.rsync) ? s.rsync.maxRssKiB : undefined)],
    ];
  });

  const details = REPLICATION_STEPS.flatMap((name) => {
    const s = steps[name];
    return [
      ...(ok(s?.push) ? [`- lifeboat, ${TITLE[name]}: ${lifeboatDetail(s.push)}`] : []),
      ...(ok(s?.rsync) ? [`- rsync, ${TITLE[name]}: ${rsyncDetail(s.rsync)}`] : []),
    ];
  });
  const failures = REPLICATION_STEPS.flatMap((name) => {
    const s = steps[name] ?? {};
    return (['backup', 'push', 'rsync'] as const).flatMap((k) => {
      const r = s[k];
      return r && !r.ok ? [`- ${TITLE[name]}, ${k}: ${errorLine(r.error ?? '')}`] : [];
    });
  });
  const replica = check.replica;
  const verdict = (diffs: readonly string[] | undefined): string =>
    diffs === undefined ? '–' : diffs.length === 0 ? 'identical' : `DIFFERS (${diffs.slice(0, 3).join('; ')})`;

  return [
    table(['wall time (s)', 'lifeboat', 'rsync', 'lifeboat/rsync'], rows),
    '',
    `Truly changed by the 1% mutation: ${mb(changedBytes)} (${changedBytes} bytes)`,
    '',
    table(['bytes on the wire, both ways', 'lifeboat', 'rsync', 'lifeboat/rsync'], byteRows),
    '',
    table(['own count, each way', 'lifeboat sent', 'lifeboat received', 'rsync sent', 'rsync received'], directions),
    '',
    ...details,
    '',
    table(['CPU user+sys (s)', 'lifeboat source', 'lifeboat peer', 'rsync sender', 'rsync receiver'], cpu),
    '',
    table(['peak RSS (MiB)', 'lifeboat source', 'lifeboat peer (agent, so far)', 'rsync sender'], rss),
    '',
    table([`other processes meanwhile (cores busy, of ${cores})`, 'lifeboat', 'rsync'], others),
    '',
    `Replica restored on the peer (per-file SHA-256 vs source): ${
      replica === undefined ? '–' : replica.ok ? `${verdict(replica.diffs)} (restore ${fmt(replica.wallS)} s)` : `restore FAILED: ${errorLine(replica.error ?? '')}`
    }; rsync's copy: ${verdict(check.rsyncCopy?.diffs)}`,
    '',
    table(['target', 'measured', 'result'], targets.map((x) => [x.target, x.value, x.status]), false),
    ...(failures.length ? ['', 'Failures:', ...failures] : []),
  ].join('\n');
}
