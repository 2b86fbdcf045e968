/**
 * Crash consistency: backup, prune (after a forget) and restore killed with
 * SIGKILL at seeded fault points, about 75 times in all (crash-harness.ts says
 * what is checked after each kill). Its figures go to report.ts, per scenario.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, test } from 'vitest';
import { cleanup, ok } from '../cli/run.ts';
import { diffManifests, makeRichTree } from '../cli/tree.ts';
import { type Chain, digestManifest, plantLeftovers, reportTallies, runChain, type Scenario } from './crash-harness.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

afterAll(async () => {
  reportTallies();
  await cleanup();
});

/** Registers the snapshot a completed backup printed, with the source as it is now. */
async function registerBackup(h: Chain, stdout: string): Promise<void> {
  const { snapshot } = JSON.parse(stdout) as { snapshot: string };
  h.committed.push({ id: snapshot, expected: await digestManifest(h.src), restoredAfterKill: false });
}

/**
 * One round of change to a source: a new 1.25 MiB file (two packs with the
 * 1 MiB packs), the one before it deleted, a small file that stays for
 * good, and (with `db`) 4 blocks of a database-like file rewritten in place.
 * Every round is the same shape, so every run passes each point as often as
 * the recording did. (Prune leaves db out: which of its earlier rewrites are
 * still live, and so how much a prune repacks, depends on where the rewrites fell.)
 */
async function changeSource(h: Chain, round: number | string, opts: { db: boolean }): Promise<void> {
  if (opts.db) {
    const db = path.join(h.src, 'db.bin');
    if (!fs.existsSync(db)) await fsp.writeFile(db, h.bytes(256 * KiB, 'db'));
    const rw = await fsp.open(db, 'r+');
    try {
      for (let k = 0; k < 4; k++) await rw.write(h.bytes(4 * KiB, `db-${round}-${k}`), 0, 4 * KiB, Math.floor(h.random() * 64) * 4 * KiB);
    } finally {
      await rw.close();
    }
  }
  await fsp.mkdir(path.join(h.src, 'gen'), { recursive: true });
  for (const name of await fsp.readdir(path.join(h.src, 'gen'))) await fsp.rm(path.join(h.src, 'gen', name));
  await fsp.writeFile(path.join(h.src, 'gen', `gen-${round}.bin`), h.bytes(1.25 * MiB, `gen-${round}`));
  await fsp.mkdir(path.join(h.src, 'kept'), { recursive: true });
  await fsp.writeFile(path.join(h.src, 'kept', `kept-${round}.bin`), h.bytes(16 * KiB, `kept-${round}`));
}

const backupScenario: Scenario = {
  name: 'backup',
  restoreAfterKill: 'new',
  chains: [
    [
      { point: 'pack-blob', kills: 8 },
      { point: 'pack-synced', kills: 3 },
      { point: 'pack-finished', kills: 4 },
    ],
    [
      { point: 'pack-written', kills: 3 },
      { point: 'pack-indexed', kills: 4 },
      { point: 'backup-walked', kills: 2 },
      { point: 'index-committed', kills: 3 },
      { point: 'snapshot-saved', kills: 3, commits: true },
    ],
  ],
  async setup(h) {
    await changeSource(h, 'base', { db: true });
    await h.rerun();
  },
  prepare: (h, round) => changeSource(h, round, { db: true }),
  command: (h) => ['backup', '--path', h.src],
  completed: (h, r) => registerBackup(h, r.stdout),
};

/** Backs up one round of change, so the forget in the killed command has a snapshot to drop. */
async function backupRound(h: Chain, round: number | string): Promise<void> {
  await changeSource(h, round, { db: false });
  await registerBackup(h, (await ok(h.args(['backup', '--path', h.src, '--json']))).stdout);
}

const KEEP = 2;

const pruneScenario: Scenario = {
  name: 'prune',
  // What a prune moves (repacks) is the kept files' blocks, and the newest snapshot has every
  // kept file: restoring it checks all that moved; verify re-reads the rest.
  restoreAfterKill: 'new',
  chains: [
    [
      { point: 'pack-blob', kills: 4 },
      { point: 'pack-synced', kills: 2 },
      { point: 'pack-finished', kills: 3 },
      { point: 'prune-repacked', kills: 3 },
    ],
    [
      { point: 'prune-indexed', kills: 4 },
      { point: 'prune-pack-deleted', kills: 5 },
      { point: 'prune-orphan-removed', kills: 4 },
    ],
  ],
  async setup(h) {
    for (let r = 0; r < KEEP; r++) await backupRound(h, `base-${r}`);
  },
  async prepare(h, round) {
    await backupRound(h, round);
    await plantLeftovers(h, `${h.label}/${round}`);
  },
  // Every kill point lies in the prune, after the forget committed.
  command: () => ['forget', '--keep-last', String(KEEP), '--prune'],
  async completed(h) {
    h.committed = h.committed.slice(-KEEP);
  },
  mustList: (h) => h.committed.slice(-KEEP),
};

const restoreScenario: Scenario = {
  name: 'restore',
  restoreAfterKill: 'none',
  chains: [
    [{ point: 'restore-block', kills: 10 }],
    [
      { point: 'restore-file', kills: 6 },
      { point: 'restore-dir', kills: 4 },
    ],
  ],
  async setup(h) {
    await makeRichTree(h.src);
    await registerBackup(h, (await ok(h.args(['backup', '--path', h.src, '--json']))).stdout);
  },
  async prepare() {},
  command: (h) => ['restore', h.committed[0]!.id, '--target', h.fresh('target')],
  // The completed run is the bit-exact check: its target against the snapshot's source.
  async completed(h, r) {
    const { target } = JSON.parse(r.stdout) as { target: string };
    const diffs = diffManifests(h.committed[0]!.expected, await digestManifest(target));
    if (diffs.length > 0) throw new Error(`${h.label}: restore of ${h.committed[0]!.id.slice(0, 8)} differs:\n${diffs.join('\n')}`);
    h.checked(h.committed[0]!);
    await fsp.rm(target, { recursive: true, force: true });
  },
};

const scenarios = [backupScenario, pruneScenario, restoreScenario];

describe.concurrent('killed with SIGKILL at seeded fault points, then checked and run again', () => {
  for (const scenario of scenarios) {
    for (const [index, plans] of scenario.chains.entries()) {
      const points = plans.map((p) => `${p.point} x${p.kills}`).join(', ');
      test(`${scenario.name} #${index}: ${points}`, () => runChain(scenario, index), 600_000);
    }
  }
});
