import type { Command } from 'commander';
import { readPasswordFile } from '../../config/password.ts';
import { UsageError } from '../../errors/errors.ts';
import type { Repository } from '../../repo/repository.ts';
import { type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { repoCommand } from '../program.ts';
import { table } from './snapshots.ts';

interface NewPasswordOptions extends RepoOptions {
  newPasswordFile?: string;
}

/** The password to add: --new-password-file, else LIFEBOAT_NEW_PASSWORD (restic's RESTIC_NEW_PASSWORD). */
function newPassword(opts: NewPasswordOptions): string {
  if (opts.newPasswordFile !== undefined) return readPasswordFile(opts.newPasswordFile);
  const env = process.env.LIFEBOAT_NEW_PASSWORD;
  if (env) return env;
  throw new UsageError('no new password: pass --new-password-file FILE or set LIFEBOAT_NEW_PASSWORD');
}

/**
 * Several passwords per repository, restic's model: each key file wraps the
 * same master keys with one password, so adding or removing a password
 * rewrites no data.
 */
export function registerKey(program: Command): void {
  const key = program.command('key').description('list, add, remove or change the passwords that open the repository (one key file each)');
  const withNew = (c: Command) => c.option('--new-password-file <file>', 'the new password\'s file (first line; else LIFEBOAT_NEW_PASSWORD)');
  const run = <O extends RepoOptions>(cmd: Command, opts: O, fn: (repo: Repository) => Promise<{ value: unknown; text: string }>) => {
    const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
    return withRepo(ctx, opts, async (repo) => {
      const r = await fn(repo);
      ctx.out(r.value, () => r.text);
    });
  };

  repoCommand(key, 'list', 'the key files; * marks the one the password in use opened').action((opts: RepoOptions, cmd: Command) =>
    run(cmd, opts, async (repo) => {
      const keys = await repo.listKeys();
      const rows = keys.map((k) => [`${k.current ? '*' : ' '}${k.name}`, k.created ?? '-', k.damaged ? 'DAMAGED' : k.kdf!]);
      return { value: keys, text: table(['KEY', 'CREATED', 'KDF'], rows) };
    }),
  );
  withNew(repoCommand(key, 'add', 'add a password: a new key file for the same master keys')).action((opts: NewPasswordOptions, cmd: Command) =>
    run(cmd, opts, async (repo) => {
      const name = await repo.addPassword(newPassword(opts));
      return { value: { added: name }, text: `added key ${name}` };
    }),
  );
  repoCommand(key, 'remove', 'remove a key file (never the one the password in use opened); its password no longer opens this repository')
    .argument('<name>', 'the key file, as key list names it')
    .action((name: string, opts: RepoOptions, cmd: Command) =>
      run(cmd, opts, async (repo) => {
        await repo.removeKey(name);
        return { value: { removed: name }, text: `removed key ${name}` };
      }),
    );
  withNew(repoCommand(key, 'passwd', 'change the password in use: add the new one, then remove the old one\'s key file')).action((opts: NewPasswordOptions, cmd: Command) =>
    run(cmd, opts, async (repo) => {
      const { added, removed } = await repo.changePassword(newPassword(opts));
      return { value: { added, removed }, text: `changed the password: added key ${added}, removed key ${removed}` };
    }),
  );
}
