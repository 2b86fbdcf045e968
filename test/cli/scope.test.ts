import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, fails, ok, okJson, tempDir } from './run.ts';

/**
 * "latest" is the newest snapshot of one source: restoring it must never take
 * another source's data (seen: `restore latest --to-volume` wrote another
 * volume's files). Filters choose the source, as restic's do.
 */
describe('snapshot filters and a scoped "latest"', () => {
  let repo: string;
  let a: string;
  let b: string;
  beforeAll(async () => {
    const root = await tempDir();
    repo = path.join(root, 'repo');
    a = path.join(root, 'a');
    b = path.join(root, 'b');
    await fsp.mkdir(a);
    await fsp.mkdir(b);
    await fsp.writeFile(path.join(a, 'only-in-a'), 'a');
    await fsp.writeFile(path.join(b, 'only-in-b'), 'b');
    await ok(['init', '--repo', repo]);
    await ok(['backup', '--repo', repo, '--path', a, '--tag', 'first']);
    await ok(['backup', '--repo', repo, '--path', b]);
    await ok(['backup', '--repo', repo, '--path', a, '--host', 'other-host']);
  }, 120_000);
  afterAll(cleanup);

  it('refuses an unscoped "latest" over several sources with exit 2, naming them', async () => {
    const message = await fails(['restore', 'latest', '--repo', repo, '--target', path.join(await tempDir(), 'out')], 2, 'LB_ERR_SNAPSHOT_AMBIGUOUS');
    expect(message).toContain(`:${a}`);
    expect(message).toContain(`:${b}`);
    expect(message).toContain('other-host');
  });

  it('restores the newest snapshot of the source the filters select, and only its data', async () => {
    const out = path.join(await tempDir(), 'out');
    await ok(['restore', 'latest', '--repo', repo, '--target', out, '--path', b]);
    expect(await fsp.readdir(out)).toEqual(['only-in-b']);
    const out2 = path.join(await tempDir(), 'out');
    const r = await okJson(['restore', 'latest', '--repo', repo, '--target', out2, '--path', a, '--host', 'other-host']);
    expect(await fsp.readdir(out2)).toEqual(['only-in-a']);
    const list = await okJson<{ id: string; host: string }[]>(['snapshots', '--repo', repo, '--host', 'other-host']);
    expect(list.map((s) => s.id)).toEqual([r.snapshot]);
  });

  it('lists and forgets only what the filters select', async () => {
    expect(await okJson<unknown[]>(['snapshots', '--repo', repo, '--path', a])).toHaveLength(2);
    expect(await okJson<unknown[]>(['snapshots', '--repo', repo, '--tag', 'first'])).toHaveLength(1);
    expect(await okJson<unknown[]>(['snapshots', '--repo', repo, '--tag', 'first', '--tag', 'nope'])).toHaveLength(0);
    await fails(['restore', 'latest', '--repo', repo, '--target', path.join(await tempDir(), 'x'), '--volume', 'none'], 1, 'LB_ERR_SNAPSHOT_NOT_FOUND');
    const dry = await okJson<{ removed: string[] }>(['forget', '--repo', repo, '--keep-last', '1', '--path', b, '--dry-run']);
    expect(dry.removed).toEqual([]);
    const all = await okJson<{ removed: string[] }>(['forget', '--repo', repo, '--keep-last', '1', '--host', 'nobody', '--dry-run']);
    expect(all.removed).toEqual([]);
  });

  it('forgets by tag, time window and year as restic does, and says what a bad window is', async () => {
    const snaps = await okJson<{ id: string; tags: string[] }[]>(['snapshots', '--repo', repo]);
    const tagged = snaps.find((s) => s.tags.includes('first'))!.id;
    // --keep-tag alone is a policy: everything without the tag would go
    const byTag = await okJson<{ removed: string[] }>(['forget', '--repo', repo, '--keep-tag', 'first', '--dry-run']);
    expect(byTag.removed.sort()).toEqual(snaps.map((s) => s.id).filter((id) => id !== tagged).sort());
    // every source's newest is within any window of itself; a year keeps each source's newest
    expect((await okJson<{ removed: string[] }>(['forget', '--repo', repo, '--keep-within', '1h30m', '--dry-run'])).removed).toEqual([]);
    expect((await okJson<{ removed: string[] }>(['forget', '--repo', repo, '--keep-yearly', '1', '--dry-run'])).removed).toEqual([]);
    expect(await fails(['forget', '--repo', repo, '--keep-within', '90 minutes'], 2, 'LB_ERR_USAGE')).toContain('--keep-within takes a duration');
  });
});
