/**
 * Crash between pack and snapshot: the backup kills itself with SIGKILL at a
 * fault point (src/util/fault.ts), as a power cut or the OOM killer would.
 * The write order (pack, index, snapshot) must leave the repository without
 * the new snapshot but otherwise sound, and the leftovers for prune.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cleanup, lifeboat, ok, okJson, smallSource } from './run.ts';
import { diffManifests, du, manifest, randomBytes } from './tree.ts';

afterAll(cleanup);

const MiB = 1024 * 1024;

interface Case {
  /** LIFEBOAT_FAULT value. */
  readonly fault: string;
  readonly what: string;
  /** Pack files the crash leaves that the index does not name. */
  readonly orphanFiles: (n: number) => boolean;
  /** Use 1 MiB packs, so a backup writes several. */
  readonly smallPacks?: boolean;
}

const cases: Case[] = [
  { fault: 'pack-written', what: 'after a pack is fsynced, before its index rows', orphanFiles: (n) => n >= 1 },
  { fault: 'index-committed', what: 'after packs and index are committed, before the snapshot row', orphanFiles: (n) => n === 0 },
  {
    fault: 'pack-written:2',
    what: 'at the second of several packs (one indexed, one not, one half written)',
    orphanFiles: (n) => n >= 1,
    smallPacks: true,
  },
];

// Each case has its own repository: run them side by side.
describe.concurrent('crash between pack and snapshot', () => {
  describe.each(cases)('killed $what ($fault)', ({ fault, orphanFiles, smallPacks }) => {
    test('only earlier snapshots are listed, verify is clean, the next backup works, prune reclaims, everything restores', async () => {
      const { dir, repo, src } = await smallSource();
      const config: string[] = [];
      if (smallPacks) {
        const file = path.join(dir, 'lifeboat.toml');
        await fsp.writeFile(file, '[repository]\npack_size = "1MiB"\n');
        config.push('--config', file);
      }
      const run = (args: string[]) => [...args, '--repo', repo, ...config];

      await ok(run(['init']));
      const a = (await okJson(run(['backup', '--path', src]))).snapshot as string;
      const expectedA = await manifest(src);

      // New data only the crashed backup has.
      await fsp.writeFile(path.join(src, 'crash-only.bin'), randomBytes(3 * MiB, `crash-${fault}`));
      const crashed = await lifeboat(run(['backup', '--path', src]), { env: { LIFEBOAT_FAULT: fault } });
      expect(crashed.signal, `exit ${crashed.code}: ${crashed.stderr}`).toBe('SIGKILL');
      expect(crashed.code).toBeNull();
      expect(crashed.stdout).toBe('');

      expect((await okJson<{ id: string }[]>(run(['snapshots']))).map((s) => s.id)).toEqual([a]);
      const check = await okJson(run(['verify', '--read-data']));
      expect(check.ok).toBe(true);
      expect(check.problems).toEqual([]);
      expect(check.snapshots).toBe(1);
      expect(orphanFiles(check.unreferenced_packs), `unreferenced_packs = ${check.unreferenced_packs}`).toBe(true);
      if (check.unreferenced_packs > 0) {
        expect((await ok(run(['verify']))).stdout).toMatch(/unreferenced/);
      }

      // The next backup succeeds (and breaks the dead process's lock): without the crashed data, with new data.
      await fsp.rm(path.join(src, 'crash-only.bin'));
      await fsp.writeFile(path.join(src, 'after.bin'), randomBytes(MiB / 2, `after-${fault}`));
      const b = await okJson(run(['backup', '--path', src]));
      expect(b.parent).toBe(a);
      const expectedB = await manifest(src);

      const before = await du(path.join(repo, 'packs'));
      const pruned = await okJson(run(['prune']));
      const after = await du(path.join(repo, 'packs'));
      expect(pruned.bytes_freed).toBeGreaterThan(0);
      expect(after).toBeLessThan(before);
      if (check.unreferenced_packs > 0) expect(pruned.orphans_removed).toBeGreaterThanOrEqual(check.unreferenced_packs);
      // The crashed backup's 3 MiB of random data is gone (written at least in part before the kill).
      expect(before - after).toBeGreaterThanOrEqual(smallPacks ? MiB : 3 * MiB);

      const clean = await okJson(run(['verify', '--read-data']));
      expect(clean.ok).toBe(true);
      expect(clean.unreferenced_packs).toBe(0);

      for (const [id, expected] of [[a, expectedA], [b.snapshot, expectedB]] as const) {
        const target = path.join(dir, `restored-${id.slice(0, 8)}`);
        await ok(run(['restore', id, '--target', target]));
        expect(diffManifests(expected, await manifest(target))).toEqual([]);
      }
    });
  });

  describe('a backup killed and simply run again', () => {
    test('index-committed: the rerun reuses what the crashed run stored', async () => {
      const { dir, repo, src } = await smallSource();
      await ok(['init', '--repo', repo]);
      const crashed = await lifeboat(['backup', '--repo', repo, '--path', src], { env: { LIFEBOAT_FAULT: 'index-committed' } });
      expect(crashed.signal).toBe('SIGKILL');
      expect(await okJson(['snapshots', '--repo', repo])).toEqual([]);
      const rerun = await okJson(['backup', '--repo', repo, '--path', src]);
      // Its blocks are indexed already: nothing new to store.
      expect(rerun.bytes_new).toBe(0);
      const target = path.join(dir, 'restored');
      await ok(['restore', 'latest', '--repo', repo, '--target', target]);
      expect(diffManifests(await manifest(src), await manifest(target))).toEqual([]);
    });
  });
});
