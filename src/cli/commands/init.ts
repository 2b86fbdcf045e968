import type { Command } from 'commander';
import { Repository } from '../../repo/repository.ts';
import { type GlobalOptions, makeContext, type RepoOptions, readPassword, repoPath } from '../context.ts';
import { repoCommand } from '../program.ts';

export function registerInit(program: Command): void {
  repoCommand(program, 'init', 'create a new, empty repository').action(async (opts: RepoOptions, cmd: Command) => {
    const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
    const repo = await Repository.init(repoPath(ctx, opts), readPassword(ctx, opts));
    repo.close();
    ctx.out({ repository: repo.dir, id: repo.id }, () => `created repository ${repo.id} at ${repo.dir}`);
  });
}
