import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { UsageError } from '../errors/errors.ts';

/** A repository password kept in a file: its first line (a trailing newline is not part of it). */
export function readPasswordFile(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read password file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const line = text.split(/\r?\n/, 1)[0] ?? '';
  if (line === '') throw new UsageError(`password file ${file} is empty`);
  return line;
}

/**
 * A repository password printed by a command (a secret store's client): the
 * first line of what it writes to stdout. A command that fails or prints
 * nothing is a usage error that says so, never a password of "".
 */
export function passwordFromCommand(command: string): string {
  const [shell, flag] = process.platform === 'win32' ? ['cmd.exe', '/c'] : ['/bin/sh', '-c'];
  let out: string;
  try {
    out = execFileSync(shell, [flag, command], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 60_000 });
  } catch (err) {
    const e = err as { status?: number | null; signal?: string | null; code?: string };
    const how = e.code === 'ETIMEDOUT' ? 'did not finish within 60 s' : e.status != null ? `exited with status ${e.status}` : `failed (${e.signal ?? e.code ?? 'unknown'})`;
    throw new UsageError(`LIFEBOAT_PASSWORD_COMMAND ${how}`);
  }
  const line = out.split(/\r?\n/, 1)[0] ?? '';
  if (line === '') throw new UsageError('LIFEBOAT_PASSWORD_COMMAND printed no password');
  return line;
}
