/**
 * A person at a terminal with no password configured is asked for it, without
 * echo; init asks twice. Run under script(1), which gives the CLI a terminal.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { BIN, cleanup, okJson, smallSource } from './run.ts';

afterAll(cleanup);

/** Runs the CLI on a pseudo-terminal, typing each answer once its prompt has appeared. */
function onTerminal(args: readonly string[], answers: readonly { after: string; type: string }[]): Promise<{ code: number | null; output: string }> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', TERM: 'dumb' };
  const command = [BIN, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  let next = 0;
  const feed = () => {
    while (next < answers.length && output.split(answers[next]!.after).length - 1 > answers.slice(0, next).filter((a) => a.after === answers[next]!.after).length) {
      child.stdin.write(`${answers[next]!.type}\r`);
      next++;
    }
  };
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
    feed();
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

describe('the password prompt', () => {
  test('init asks twice without echo; a later command asks once; the password typed opens the repository', async () => {
    const { repo, src } = await smallSource();
    const secret = 'typed at the terminal';
    const init = await onTerminal(['init', '--repo', repo], [
      { after: 'new password for repository', type: secret },
      { after: 'the same password again', type: secret },
    ]);
    expect(init.code, init.output).toBe(0);
    expect(init.output).toContain('created repository');
    expect(init.output).not.toContain(secret);
    const backup = await onTerminal(['backup', '--repo', repo, '--path', src], [{ after: 'password for repository', type: secret }]);
    expect(backup.code, backup.output).toBe(0);
    expect(backup.output).not.toContain(secret);
    expect(await okJson<unknown[]>(['snapshots', '--repo', repo], { password: secret })).toHaveLength(1);
    const mismatch = await onTerminal(['init', '--repo', path.join(repo, '..', 'other')], [
      { after: 'new password for repository', type: 'one' },
      { after: 'the same password again', type: 'two' },
    ]);
    expect(mismatch.code).toBe(2);
    expect(mismatch.output).toContain('the two passwords differ [LB_ERR_USAGE]');
  });
});
