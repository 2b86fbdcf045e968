import path from 'node:path';
import type { Command } from 'commander';
import type { Backend, FileInfo, FileKind } from '../../backend/backend.ts';
import { fetchRepository, type MirrorOptions, type MirrorReport, pushRepository } from '../../repo/mirror.ts';
import { openTarget, targetNamed } from '../../replicate/targets.ts';
import { formatBytes } from '../../util/units.ts';
import { type Context, type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { repoCommand } from '../program.ts';
import { ProgressLine } from '../progress.ts';

const summary = (r: MirrorReport) => `${r.packs} packs, ${r.snapshots} snapshot records, ${r.keys} key files (${formatBytes(r.bytes)})`;

/**
 * Object-storage targets ([[target]] in the config): `push` copies what the
 * bucket lacks of the repository, `fetch` makes a local copy of what a bucket
 * holds, from which every command (restore, recover --repo) works with the
 * repository's password: a lost host's data back from the bucket alone.
 */
export function registerTarget(program: Command): void {
  const target = program.command('target').description('copy the repository to an S3 bucket ([[target]] in the config), or fetch one from it');
  repoCommand(target, 'push', 'copy to the target what it lacks: packs, then snapshot records (never replaces or deletes anything there)')
    .argument('<name>', 'the [[target]] name')
    .action(async (name: string, opts: RepoOptions, cmd: Command) => {
      const { ctx, bucket, mirror, done } = transferOf(cmd, name, 'sent');
      const r = await withRepo(ctx, opts, (repo) => pushRepository(repo, bucket, mirror)).finally(done);
      ctx.out({ target: name, location: bucket.location, ...r }, () => `pushed to ${name} (${bucket.location}): ${summary(r)}`);
    });
  target
    .command('fetch')
    .description('make DIR a local copy of the repository the target holds, and its index (then restore or recover --repo DIR)')
    .argument('<name>', 'the [[target]] name')
    .requiredOption('--into <dir>', 'an empty or new directory (or an unfinished fetch of the same repository, which goes on)')
    .action(async (name: string, opts: { into: string }, cmd: Command) => {
      const { ctx, bucket, mirror, done } = transferOf(cmd, name, 'fetched');
      const r = await fetchRepository(bucket, opts.into, mirror).finally(done);
      const dir = path.resolve(opts.into);
      ctx.out({ target: name, location: bucket.location, repository: dir, ...r }, () => `fetched from ${name} (${bucket.location}) into ${dir}: ${summary(r)}; ${r.index.snapshots} snapshots indexed`);
    });
}

/** The target a command names, its bucket, and a status line counting what the transfer moves. */
function transferOf(cmd: Command, name: string, verb: string): { ctx: Context; bucket: Backend; mirror: MirrorOptions; done: () => void } {
  const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
  const t = targetNamed(ctx.config, name);
  const progress = new ProgressLine(ctx.interactive);
  let files = 0;
  let bytes = 0;
  const onFile = (_kind: FileKind, f: FileInfo) => progress.update(++files, (bytes += f.size), verb);
  return { ctx, bucket: openTarget(t, ctx.configFile), mirror: { concurrency: t.concurrency, onFile }, done: () => progress.done() };
}
