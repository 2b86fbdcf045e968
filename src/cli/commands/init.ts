import type { Command } from 'commander';
import { Repository } from '../../repo/repository.ts';
import { type GlobalOptions, makeContext, obtainPassword, type RepoOptions, repoPath } from '../context.ts';
import { repoCommand } from '../program.ts';

export function registerInit(program: Command): void {
  repoCommand(program, 'init', 'create a new, empty repository').action(async (opts: RepoOptions, cmd: Command) => {
    const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
    const dir = repoPath(ctx, opts);
    const repo = await Repository.init(dir, await obtainPassword(ctx, opts, { repo: dir, confirm: true }));
    repo.close();
    ctx.out({ repository: repo.dir, id: repo.id }, () => `created repository ${repo.id} at ${repo.dir}`);
  });
}
