// first: module hooks that must be in place before dockerode loads (see the module)
import '../docker/lazy-deps.ts';
import { CommanderError } from 'commander';
import { describeFailure } from '../errors/errors.ts';
import { buildProgram } from './program.ts';

/** Exit codes: 0 ok, 1 the operation failed, 2 bad usage or config. */
async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and --version "fail" with code 0; everything else commander rejects is usage.
      return err.exitCode === 0 ? 0 : 2;
    }
    const f = describeFailure(err);
    process.stderr.write(`lifeboat: ${f.message} [${f.code}]\n`);
    if (f.code === 'LB_ERR_INTERNAL' && process.env.LIFEBOAT_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return f.exitCode;
  }
}

process.exitCode = await main(process.argv);
