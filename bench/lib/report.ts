// Markdown tables and target checks for the repository benchmark.
import type { ToolName } from './tools.ts';

export type StepName = 'full' | 'nochange' | 'incremental' | 'restore';
export const STEPS: readonly StepName[] = ['full', 'nochange', 'incremental', 'restore'];
const STEP_TITLE: Record<StepName, string> = {
  full: 'full backup',
  nochange: 'no-change backup',
  incremental: '1% incremental',
  restore: 'restore latest',
};

export interface StepRecord {
  readonly ok: boolean;
  readonly error?: string;
  readonly wallS: number;
  readonly maxRssKiB: number;
  readonly userS: number;
  readonly sysS: number;
  /** Backups: repository growth in bytes (du -sb after - before). */
  readonly grownBytes?: number;
  /** Lifeboat's --json backup output. */
  readonly reported?: Record<string, unknown>;
  /** Restore: restored tree equals the source (per-file SHA-256). */
  readonly verified?: boolean;
  readonly verifyDiffs?: readonly string[];
}

export type StepTable = Record<StepName, Partial<Record<ToolName, StepRecord>>>;

export interface Target {
  readonly target: string;
  readonly value: string;
  readonly status: 'PASS' | 'MISS' | 'n/a';
}

const MB = 1e6;
export const fmt = (n: number | undefined, digits = 2): string => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits));
export const mb = (n: number | undefined): string =>
  n === undefined || !Number.isFinite(n)
    ? '–'
    : Math.abs(n) >= MB
      ? `${(n / MB).toFixed(2)} MB`
      : Math.abs(n) >= 1e3
        ? `${(n / 1e3).toFixed(1)} kB`
        : `${n} B`;
export const times = (n: number | undefined, digits = 2): string => (n === undefined || !Number.isFinite(n) ? '–' : `${n.toFixed(digits)}x`);

/** One line of a tool's error output: the first line mentioning an error, else the last line. */
export function errorLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return (lines.find((l) => /error/i.test(l)) ?? lines.at(-1) ?? 'failed').slice(0, 240);
}

function ok(r: StepRecord | undefined): r is StepRecord {
  return r !== undefined && r.ok;
}

function ratio(steps: StepTable, step: StepName, other: ToolName): number | undefined {
  const a = steps[step].lifeboat;
  const b = steps[step][other];
  return ok(a) && ok(b) && b.wallS > 0 ? a.wallS / b.wallS : undefined;
}

export function table(header: readonly string[], rows: readonly (readonly string[])[], numeric = true): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  const rule = header.map((_, i) => (i > 0 && numeric ? '---:' : '---'));
  return [line(header), line(rule), ...rows.map(line)].join('\n');
}

export function lifeboatStored(steps: StepTable): number | undefined {
  const v = steps.incremental.lifeboat?.reported?.['bytes_stored'];
  return typeof v === 'number' ? v : undefined;
}

/** The goals of the performance issue (#15): each a measured ratio against a limit. */
export function evaluateTargets(steps: StepTable, changedBytes: number): Target[] {
  const peers = ['restic', 'borg'] as const;
  const check = (name: string, value: number | undefined, limit: number, what: string): Target =>
    value === undefined
      ? { target: name, value: '–', status: 'n/a' }
      : { target: name, value: `${times(value)} ${what} (need <= ${times(limit)})`, status: value <= limit ? 'PASS' : 'MISS' };
  /** Lifeboat's wall time over the faster peer's. */
  const vsFaster = (step: StepName, limit: number, name: string): Target => {
    const a = steps[step].lifeboat;
    const walls = peers.map((p) => steps[step][p]).filter(ok).map((r) => r.wallS);
    return check(name, ok(a) && walls.length > 0 ? a.wallS / Math.min(...walls) : undefined, limit, 'the faster peer');
  };
  const vsRestic = (step: StepName, limit: number, name: string, of: (r: StepRecord) => number): Target => {
    const a = steps[step].lifeboat;
    const b = steps[step].restic;
    return check(name, ok(a) && ok(b) && of(b) > 0 ? of(a) / of(b) : undefined, limit, "restic's");
  };
  const cpu = (r: StepRecord) => r.userS + r.sysS;
  const rss = (r: StepRecord) => r.maxRssKiB;
  const grown = steps.incremental.lifeboat?.grownBytes;
  const stored = lifeboatStored(steps);
  const storedTarget: Target =
    grown === undefined || !ok(steps.incremental.lifeboat)
      ? { target: 'incremental stores <= 1.3x changed', value: '–', status: 'n/a' }
      : {
          target: 'incremental stores <= 1.3x changed',
          value:
            `repo grew ${times(grown / changedBytes)}` +
            (stored === undefined ? '' : `, bytes_stored ${times(stored / changedBytes)}`) +
            ' (need <= 1.30x)',
          status: Math.max(grown, stored ?? 0) <= 1.3 * changedBytes ? 'PASS' : 'MISS',
        };
  const restored = steps.restore.lifeboat;
  return [
    vsFaster('full', 0.6, 'full backup, wall'),
    vsRestic('full', 0.6, 'full backup, CPU', cpu),
    vsFaster('incremental', 0.33, '1% in-place change, wall'),
    storedTarget,
    vsFaster('restore', 0.6, 'restore, wall'),
    vsRestic('restore', 1, 'restore, CPU', cpu),
    vsRestic('full', 1, 'full backup, peak RSS', rss),
    vsRestic('restore', 1, 'restore, peak RSS', rss),
    {
      target: 'restore equals source',
      value: restored?.verified === undefined ? '–' : restored.verified ? 'identical' : 'DIFFERS',
      status: restored?.verified === undefined ? 'n/a' : restored.verified ? 'PASS' : 'MISS',
    },
  ];
}

export function renderReport(tools: readonly ToolName[], steps: StepTable, changedBytes: number, targets: readonly Target[]): string {
  const hasLb = tools.includes('lifeboat');
  const others = tools.filter((t): t is 'restic' | 'borg' => t !== 'lifeboat');
  const cell = (r: StepRecord | undefined, f: (r: StepRecord) => string): string =>
    r === undefined ? '–' : r.ok ? f(r) : 'FAIL';

  const timeRows = STEPS.map((s) => [
    STEP_TITLE[s],
    ...tools.map((t) => cell(steps[s][t], (r) => fmt(r.wallS))),
    ...(hasLb ? others.map((o) => fmt(ratio(steps, s, o))) : []),
  ]);
  const timeHeader = ['wall time (s)', ...tools, ...(hasLb ? others.map((o) => `lifeboat/${o}`) : [])];

  const cpuRows = STEPS.map((s) => [STEP_TITLE[s], ...tools.map((t) => cell(steps[s][t], (r) => fmt(r.userS + r.sysS)))]);
  const rssRows = STEPS.map((s) => [STEP_TITLE[s], ...tools.map((t) => cell(steps[s][t], (r) => fmt(r.maxRssKiB / 1024, 0)))]);

  const growth = (['full', 'nochange', 'incremental'] as const).map((s) => [
    `${STEP_TITLE[s]}: repo growth`,
    ...tools.map((t) => cell(steps[s][t], (r) => mb(r.grownBytes))),
  ]);
  const multiple = [
    '1% incremental: growth ÷ changed',
    ...tools.map((t) => cell(steps.incremental[t], (r) => (r.grownBytes === undefined ? '–' : times(r.grownBytes / changedBytes)))),
  ];
  const stored = lifeboatStored(steps);
  const storedRow = hasLb
    ? [
        [
          '1% incremental: bytes_stored (own report)',
          ...tools.map((t) => (t === 'lifeboat' && stored !== undefined ? `${mb(stored)} (${times(stored / changedBytes)})` : '–')),
        ],
      ]
    : [];

  const failures = STEPS.flatMap((s) =>
    tools.flatMap((t) => {
      const r = steps[s][t];
      return r && !r.ok ? [`- ${t} ${STEP_TITLE[s]}: ${errorLine(r.error ?? '')}`] : [];
    }),
  );

  return [
    table(timeHeader, timeRows),
    '',
    table(['CPU user+sys (s)', ...tools], cpuRows),
    '',
    table(['peak RSS (MiB)', ...tools], rssRows),
    '',
    `Truly changed by the 1% mutation: ${mb(changedBytes)} (${changedBytes} bytes)`,
    '',
    table(['stored bytes', ...tools], [...growth, multiple, ...storedRow]),
    '',
    `Restore check (per-file SHA-256 vs source): ${tools
      .map((t) => `${t} ${steps.restore[t]?.verified === undefined ? '–' : steps.restore[t]?.verified ? 'identical' : 'DIFFERS'}`)
      .join(', ')}`,
    '',
    table(['target', 'measured', 'result'], targets.map((t) => [t.target, t.value, t.status]), false),
    ...(failures.length ? ['', 'Failures:', ...failures] : []),
  ].join('\n');
}
