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
