import { type Backend } from '../backend/backend.ts';
import { FileExistsError } from '../errors/errors.ts';

export interface KeyFileText {
  readonly name: string;
  readonly text: string;
}

/** The repository's key files, by name (each wraps the master keys with one password). */
export async function readKeyFiles(backend: Backend): Promise<KeyFileText[]> {
  const names: string[] = [];
  for await (const f of backend.list('key')) if (f.name.endsWith('.json')) names.push(f.name);
  names.sort();
  return Promise.all(names.map(async (name) => ({ name, text: (await backend.read('key', name)).toString('utf8') })));
}

/** Adds a key file unless one of that name exists: key files are never replaced. */
export async function addKeyFile(backend: Backend, key: KeyFileText): Promise<void> {
  await backend.writeOnce('key', key.name, Buffer.from(key.text, 'utf8')).catch((err: unknown) => {
    if (!(err instanceof FileExistsError)) throw err;
  });
}
