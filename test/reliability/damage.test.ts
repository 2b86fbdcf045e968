/**
 * The damage matrix (issue 12, "The suite that keeps it so"): damage to every
 * kind of file of a repository and to every table of its index (emptied,
 * truncated, rows deleted, values of the wrong kind), each followed by every
 * command on a fresh copy of one pristine repository, then the checks of
 * damage-matrix.ts: the command succeeded or failed in one documented line,
 * no intact pack a snapshot needs was deleted, nothing was written outside
 * the repository, and after `repair --rebuild-index` every snapshot restores
 * bit-exact (but those whose data the damage itself destroyed).
 *
 * Bounded in CI (about two minutes on two cores): every damage kind with
 * prune and a backup (of the unchanged source, or of a changed one, in
 * turn), verify when the damage is one verify must report, and every other
 * kind with one more command in rotation. LIFEBOAT_DAMAGE_FULL=1 runs every
 * command after every damage (about fourteen minutes).
 * LIFEBOAT_DAMAGE_OFFSET shifts the rotation; LIFEBOAT_DAMAGE_KINDS and
 * LIFEBOAT_DAMAGE_COMMANDS (regular expressions) pick cells;
 * LIFEBOAT_DAMAGE_JOBS cells run at once (default 2: they are CPU-bound);
 * LIFEBOAT_DAMAGE_TABLE=1 prints what each command answered, as a table.
 *
 * Counts go to report.ts: damage_kinds, commands_after_damage,
 * intact_packs_deleted (must be 0), files_written_outside (must be 0),
 * snapshots_checked and snapshots_lost.
 *
 * The product bugs the matrix found are listed below (FOUND_BUGS), each with
 * a test of its own: a regression test once fixed, a failing test while open
 * (an open bug's failures are labelled with its id and kept out of the
 * matrix's own tests, so that the matrix still guards everything else).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, tempDir } from '../cli/run.ts';
import { buildPristine, type CellResult, cli, COMMANDS, type Command, DAMAGE_KINDS, type DamageKind, limiter, must, type Pristine, runCell } from './damage-matrix.ts';
import { writeSummary } from './report.ts';

const FULL = process.env.LIFEBOAT_DAMAGE_FULL === '1';
const JOBS = Math.max(1, Number(process.env.LIFEBOAT_DAMAGE_JOBS ?? 2));
const OFFSET = Number(process.env.LIFEBOAT_DAMAGE_OFFSET ?? 0);
const KINDS = new RegExp(process.env.LIFEBOAT_DAMAGE_KINDS ?? '');
const ONLY = new RegExp(process.env.LIFEBOAT_DAMAGE_COMMANDS ?? '');

/**
 * Product bugs the matrix found, each with a test of its own below (the
 * cells that showed it, taken from the matrix when it ran them). A fixed
 * one's test is a regression test. An open one's failures (matched by damage
 * kind, command and text) are kept out of the matrix's own tests, and its
 * test fails until it is fixed. Every matching failure is labelled with the
 * bug's id in the report.
 */
interface FoundBug {
  readonly id: string;
  /** Still in src/: its failures are not the matrix's own, and its test fails. */
  readonly open?: true;
  readonly title: string;
  /** What went wrong, and where in src/ it was. */
  readonly detail: string;
  /** The damage kinds it shows after; any when absent. */
  readonly kinds?: readonly string[];
  /** The commands it shows after; all when absent. */
  readonly commands?: readonly string[];
  readonly pattern: RegExp;
  /** The cells its own test runs (or takes from the matrix, when it ran them). */
  readonly repro: readonly { readonly kind: string; readonly command: string }[];
  /** Or a reproduction of its own (an intermittent bug), returning what it showed. */
  readonly reproduce?: () => Promise<string[]>;
}
const BACKUPS = ['backup (unchanged source)', 'backup (changed source)'];
const FOUND_BUGS: readonly FoundBug[] = [
  {
    id: 'BUG-1',
    title: "restore died of an unhandled rejection (a stack trace, no LB_ERR line) on a block the index had no valid row for",
    detail:
      'restore died of an unhandled rejection, printing a stack trace and no LB_ERR line, when a large file named a block the index had no valid row for ' +
      '(src/restore/restorer.ts walkDir: the #guard promise of a file was pushed to `pending` without a handler while the walk went on awaiting)',
    kinds: ['packs: the row of a pack A2 needs deleted', 'blobs: text offsets', 'blobs: types out of range', 'blobs: rows naming a pack row that does not exist'],
    commands: ['restore'],
    pattern: /→ restore: restore: (a stack trace|exit 1 without exactly one)/,
    repro: [{ kind: 'packs: the row of a pack A2 needs deleted', command: 'restore' }],
  },
  {
    id: 'BUG-2',
    title: "restore allocated a blobs row's raw_length unchecked: LB_ERR_WORKER after JSON log lines",
    detail:
      "a blobs row's raw_length was not bounded (rows.ts blobRow checked only that it is a count): restore allocated it (extract-task.ts isZero: Buffer.alloc(rawLength)), " +
      'failing with "Array buffer allocation failed [LB_ERR_WORKER]" after JSON log lines on stderr; verify --read-data passed over the same index',
    kinds: ['blobs: huge raw lengths'],
    commands: ['restore'],
    pattern: /→ restore: restore: exit 1 without exactly one/,
    repro: [{ kind: 'blobs: huge raw lengths', command: 'restore' }],
  },
  {
    id: 'BUG-3',
    title: "a snapshots row id '../../x' made every command write a record outside the repository, and forget --prune delete a snapshot's packs",
    detail:
      "a snapshots row's id was not checked before its record was written from it (snapshots.ts reconcileSnapshots → snapshot-record.ts writeRecord): " +
      "every command that opened the repository wrote snapshots/<id> with id '../../x' outside the repository; forget then kept the bogus row and " +
      'forgot the real snapshot, and prune deleted its packs',
    kinds: ['snapshots: an id that walks out of snapshots/'],
    pattern: /written beside the repository|intact needed pack|snapshot B1 .* is not listed/,
    repro: [
      { kind: 'snapshots: an id that walks out of snapshots/', command: 'unlock' },
      { kind: 'snapshots: an id that walks out of snapshots/', command: 'forget --keep-last 1 --prune' },
    ],
  },
  {
    id: 'BUG-4',
    title: "a damaged snapshot record made repair --rebuild-index fail, though its index row could rewrite it",
    detail:
      'a damaged snapshot record (truncated, emptied, garbage, or named for another id) made repair --rebuild-index fail with LB_ERR_CORRUPT_INDEX naming the record, ' +
      'although the index row that could rewrite it was intact; the only way out was to move the file aside by hand (the matrix does, then checks); ' +
      'the failed rebuild left index.db.rebuild behind (rebuild.ts readAllRecords threw on the first bad record)',
    kinds: ['snapshot record truncated', 'snapshot record of garbage', 'snapshot record emptied', 'snapshot record renamed to a new id', 'snapshot record renamed over another'],
    pattern: /check's repair --rebuild-index failed: .*snapshot record .* is damaged/,
    repro: [
      { kind: 'snapshot record truncated', command: 'unlock' },
      { kind: 'snapshot record renamed to a new id', command: 'snapshots' },
    ],
  },
  {
    id: 'BUG-5',
    title: "repair --rebuild-index dropped a snapshot whose record was missing (and failed with ENOENT without snapshots/)",
    detail:
      'repair --rebuild-index read only the records, never the old index rows: with a record deleted, the rebuilt index silently lacked that snapshot ' +
      '(its data then went at the next prune); with snapshots/ deleted it failed with LB_ERR_SYSTEM_ENOENT (rebuild.ts: no reconcile with the old rows first)',
    kinds: ['snapshot record deleted', 'snapshots/ deleted'],
    commands: ['repair --rebuild-index'],
    pattern: /is not listed|ENOENT/,
    repro: [
      { kind: 'snapshot record deleted', command: 'repair --rebuild-index' },
      { kind: 'snapshots/ deleted', command: 'repair --rebuild-index' },
    ],
  },
  {
    id: 'BUG-6',
    title: "backup deduplicated against a truncated pack and committed a snapshot that did not restore",
    detail:
      'a backup deduplicated against the blobs of a pack file shorter than the index says (store.ts forgetMissingPacks dropped only packs that were gone, ' +
      'not those whose size differs from packs.size): it committed a snapshot that did not restore, and said nothing',
    kinds: ['pack truncated'],
    commands: BACKUPS,
    pattern: /new backup of .* does not restore/,
    repro: [{ kind: 'pack truncated', command: 'backup (unchanged source)' }],
  },
  {
    id: 'BUG-7',
    title: "a stray file in packs/ made every backup fail with LB_ERR_SYSTEM_ENOTDIR",
    detail: 'a file directly in packs/ (packs/README.txt) made every backup fail with LB_ERR_SYSTEM_ENOTDIR (store.ts #packFiles read every entry of packs/ as a directory)',
    kinds: ['foreign files in packs/ (names no pack has)'],
    commands: BACKUPS,
    pattern: /ENOTDIR/,
    repro: [{ kind: 'foreign files in packs/ (names no pack has)', command: 'backup (unchanged source)' }],
  },
  {
    id: 'BUG-8',
    title: 'an older index.db brought a forgotten snapshot back (its record rewritten from a stale row), after which verify failed and prune refused',
    detail:
      'a row without a record was taken for a lost record, never for a snapshot forgotten since the index was copied: with index.db replaced by a copy ' +
      'from before a forget, the first command that opened the repository (snapshots.ts reconcileSnapshots) wrote the forgotten snapshot\'s record back ' +
      'from the stale row, and repair --rebuild-index (rebuild.ts, rewriting missing records from the old rows) did the same when the copy was stale ' +
      'enough to be refused; once the forgotten data was pruned, verify failed and prune refused (LB_ERR_PRUNE_REFUSED) until it was forgotten again',
    kinds: ['index.db an older copy of itself', 'index.db an older copy of itself, from before a forget'],
    pattern: /forgotten before the damage/,
    repro: [
      { kind: 'index.db an older copy of itself, from before a forget', command: 'snapshots' },
      { kind: 'index.db an older copy of itself', command: 'repair --rebuild-index' },
    ],
  },
  {
    id: 'BUG-9',
    title: 'a command that ended while a worker was still loading better-sqlite3 aborted the process (SIGABRT, "FATAL ERROR: Error::New napi_get_last_error_info"), intermittently',
    detail:
      'src/workers/pool.ts spawned every worker on the first job and close() terminated them all at once: a restore whose few jobs one worker did ended while ' +
      'another was still inside better-sqlite3\'s napi_register_module_v1, and N-API aborted the whole process (exit 134, no LB_ERR line, after the restore ' +
      'was done). The matrix met it 3 times in about 3,600 restores (each the small snapshot B1, 2 workers); a one-file snapshot restored with ' +
      '[backup] workers = 16 showed it about once in 10-20',
    pattern: /killed by SIGABRT|napi_get_last_error_info/,
    repro: [],
    // a few seconds in CI, which caught it about one run in three; LIFEBOAT_ABORT_RUNS=100 (or a full run) caught it almost surely
    reproduce: () => abortsOfSmallRestores(Number(process.env.LIFEBOAT_ABORT_RUNS ?? (FULL ? 60 : 8)), FULL || process.env.LIFEBOAT_ABORT_RUNS ? 16 : 8),
  },
  {
    id: 'BUG-10',
    title: 'verify and verify --read-data reported nothing wrong with blob rows whose raw_length no blob may have, which restore refuses',
    detail:
      "with the blobs rows' raw_length set to 2^53-1, restore fails with LB_ERR_CORRUPT_INDEX (\"a blob row claims ... bytes\", rows.ts blobRow), " +
      'but verify and verify --read-data exit 0 ("no errors"): the query that finds index rows disagreeing with their pack\'s trailer ' +
      '(src/repo/verify.ts, "index rows that name no copy") compares id, pack, offset, length and type, not raw_length; so `lifeboat repair` ' +
      '(which rebuilds the index only when verify finds index problems) says "nothing left to repair" and restore still fails after it',
    kinds: ['blobs: huge raw lengths'],
    commands: ['verify', 'verify --read-data'],
    pattern: /exited 0 over index values of the wrong kind/,
    repro: [{ kind: 'blobs: huge raw lengths', command: 'verify --read-data' }],
  },
];

/** BUG-9's reproduction: `runs` restores of a one-file snapshot with `workers` workers, two at a time; what aborted. */
async function abortsOfSmallRestores(runs: number, workers: number): Promise<string[]> {
  const dir = await tempDir('lifeboat-damage-abort-');
  const [repo, src, config] = ['repo', 'src', 'lifeboat.toml'].map((n) => path.join(dir, n)) as [string, string, string];
  await fsp.mkdir(src);
  await fsp.writeFile(path.join(src, 'one.txt'), 'one small file\n');
  await fsp.writeFile(config, `[backup]\nworkers = ${workers}\n`);
  await must(['init', '--repo', repo]);
  await must(['backup', '--repo', repo, '--path', src]);
  const shown: string[] = [];
  const one = limiter(2);
  await Promise.all(
    Array.from({ length: runs }, (_, i) =>
      one(async () => {
        const r = await cli(['restore', 'latest', '--repo', repo, '--config', config, '--target', path.join(dir, `t${i}`)]);
        if (r.code !== 0) shown.push(`restore ${i + 1} of ${runs}: exit ${r.code ?? r.signal}: ${r.stderr.split('\n')[0]}`);
      }),
    ),
  );
  await fsp.rm(dir, { recursive: true, force: true });
  return shown;
}

/** A failure as one line of the report, named by its known bug if it is one. */
const summaryLine = (text: string, bug: FoundBug | undefined): string => {
  const line = text.split('\n')[0]!;
  return `${bug ? `[${bug.id}] ` : ''}${line.length > 400 ? `${line.slice(0, 400)}...` : line}`;
};

const bugOf = (kind: string, command: string, failure: string): FoundBug | undefined =>
  FOUND_BUGS.find((b) => (b.kinds === undefined || b.kinds.includes(kind)) && (b.commands === undefined || b.commands.includes(command)) && b.pattern.test(failure));

const byName = (name: string): Command => {
  const c = COMMANDS.find((x) => x.name === name);
  if (!c) throw new Error(`no command ${name}`);
  return c;
};
const ALWAYS = ['prune'];
const ROTATING = COMMANDS.map((c) => c.name).filter((n) => !ALWAYS.includes(n) && !n.startsWith('backup'));

/**
 * The commands run after a damage: all of them, or in CI prune and a backup
 * (of the unchanged source and of a changed one, in turn), verify when the
 * damage is one verify must report, and on every other kind one more command
 * in rotation (so each of them follows three or four kinds in a run).
 */
function commandsFor(kind: DamageKind, i: number): Command[] {
  const n = i + OFFSET;
  const names = FULL
    ? COMMANDS.map((c) => c.name)
    : [
        ...ALWAYS,
        Math.floor(n / 2) % 2 === 0 ? 'backup (unchanged source)' : 'backup (changed source)',
        ...(kind.destroys || kind.unmendable ? ['verify'] : []),
        ...(n % 2 === 0 ? [ROTATING[(n / 2) % ROTATING.length]!] : []),
      ];
  return [...new Set(names)].filter((n) => ONLY.test(n)).map(byName);
}

const kinds = DAMAGE_KINDS.filter((k) => KINDS.test(k.name));
const results: CellResult[] = [];
const failures: string[] = [];
let pristine: Pristine | undefined;
const started = performance.now();

/**
 * Every cell of the matrix runs in one pool of JOBS. A kind's cells start
 * when its test starts, with the next kind's, so the pool never waits for a
 * kind's last cell (and a filtered run starts only what it runs).
 */
const cellsOf = new Map<string, Promise<CellResult[]>>();
const limit = limiter(JOBS);
function schedule(kind: DamageKind | undefined): void {
  if (!kind || cellsOf.has(kind.name) || !pristine) return;
  const p = pristine;
  const run = Promise.all(commandsFor(kind, DAMAGE_KINDS.indexOf(kind)).map((c) => limit(() => runCell(p, kind, c))));
  run.catch(() => {});
  cellsOf.set(kind.name, run);
}

beforeAll(async () => {
  pristine = await buildPristine(COMMANDS);
}, 300_000);

afterAll(async () => {
  const sum = (f: (r: CellResult) => number) => results.reduce((n, r) => n + f(r), 0);
  const counts = {
    damage_kinds: new Set(results.map((r) => r.kind)).size,
    commands_after_damage: results.length,
    intact_packs_deleted: sum((r) => r.packsDeleted),
    files_written_outside: sum((r) => r.writtenOutside),
    snapshots_checked: sum((r) => r.snapshotsChecked),
    snapshots_lost: sum((r) => r.snapshotsLost),
  };
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  console.log(
    `damage matrix (${FULL ? 'full' : 'CI'}): ${counts.damage_kinds} damage kinds, ${counts.commands_after_damage} commands after damage in ${seconds} s ` +
      `(${(sum((r) => r.ms) / Math.max(1, results.length) / 1000).toFixed(2)} s a cell, ${JOBS} at once); ` +
      `intact packs deleted ${counts.intact_packs_deleted}, files written outside ${counts.files_written_outside}, ` +
      `snapshots checked ${counts.snapshots_checked}, lost ${counts.snapshots_lost}`,
  );
  // the matrix, damage by command: what each command answered
  const cols = COMMANDS.map((c) => c.name).filter((n) => results.some((r) => r.command === n));
  const lines = [`| damage | ${cols.join(' | ')} |`, `| --- | ${cols.map(() => '---').join(' | ')} |`];
  for (const k of new Set(results.map((r) => r.kind))) {
    const cell = (c: string) => {
      const r = results.find((x) => x.kind === k && x.command === c);
      if (!r) return '';
      return `${r.outcome.replace(/^LB_ERR_/, '')}${r.failures.length > 0 ? ' **FAIL**' : ''}`;
    };
    lines.push(`| ${k} | ${cols.map(cell).join(' | ')} |`);
  }
  if (process.env.LIFEBOAT_DAMAGE_TABLE) console.log(lines.join('\n'));
  writeSummary({ suite: 'damage', part: FULL ? 'matrix-full' : 'matrix', counts, failures });
  await cleanup();
});

describe(`the damage matrix: ${kinds.length} kinds of damage, each followed by ${FULL ? 'every command' : 'prune, a backup and (every other) a command in rotation'}`, () => {
  for (const kind of kinds) {
    const commands = commandsFor(kind, DAMAGE_KINDS.indexOf(kind));
    if (commands.length === 0) continue;
    it(`${kind.name}: then ${commands.map((c) => c.name).join(', ')}`, async () => {
      expect(pristine, 'the pristine repository was not built').toBeDefined();
      schedule(kind);
      schedule(kinds[kinds.indexOf(kind) + 1]);
      const cells = await cellsOf.get(kind.name)!;
      results.push(...cells);
      const found = cells.flatMap((r) => r.failures.map((f) => ({ command: r.command, text: `${kind.name} → ${r.command}: ${f}` })));
      for (const f of found) failures.push(summaryLine(f.text, bugOf(kind.name, f.command, f.text)));
      // an open bug's failures are its own test's (below)
      expect(found.filter((f) => !bugOf(kind.name, f.command, f.text)?.open).map((f) => f.text)).toEqual([]);
    }, 600_000);
  }
});

describe('bugs the damage matrix found: OPEN ones fail until fixed, fixed ones are regression tests', () => {
  for (const b of FOUND_BUGS) {
    it(`${b.id} (${b.open ? 'OPEN' : 'fixed'}): ${b.title}`, async () => {
      expect(pristine).toBeDefined();
      const shown: string[] = (await b.reproduce?.()) ?? [];
      for (const { kind, command } of b.repro) {
        let r = results.find((x) => x.kind === kind && x.command === command);
        if (!r) {
          r = await limit(() => runCell(pristine!, DAMAGE_KINDS.find((k) => k.name === kind)!, byName(command)));
          results.push(r);
          failures.push(...r.failures.map((f) => summaryLine(`${kind} → ${command}: ${f}`, bugOf(kind, command, `${kind} → ${command}: ${f}`))));
        }
        shown.push(...r.failures.filter((f) => b.pattern.test(`${kind} → ${command}: ${f}`)).map((f) => `${kind} → ${command}: ${f}`));
      }
      expect(shown, `${b.id} ${b.open ? 'is still there' : 'is back'}: ${b.detail}`).toEqual([]);
    }, 300_000);
  }
});
