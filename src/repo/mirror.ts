import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Backend, FileInfo, FileKind } from '../backend/backend.ts';
import { LocalBackend } from '../backend/local.ts';
import { FileExistsError, ReplicaMismatchError, UsageError } from '../errors/errors.ts';
import { rebuildIndex, type RebuildReport } from './rebuild.ts';
import type { Repository } from './repository.ts';
import { SNAPSHOT_ID } from './snapshot-record.ts';
import { repositoryConfigSchema } from './store.ts';

/** What a push or fetch copied (files that were there already are not counted). */
export interface MirrorReport {
  readonly keys: number;
  readonly packs: number;
  readonly snapshots: number;
  readonly bytes: number;
}

export interface MirrorOptions {
  /** Files in flight at once (each pack is held in memory while it travels: about 16 MiB). */
  readonly concurrency?: number;
  readonly onFile?: (kind: FileKind, file: FileInfo) => void;
  readonly signal?: AbortSignal;
}

const CONFIG = 'config.json';

/**
 * Copies what `to` lacks of a repository: its config and key files, then its
 * packs, then its snapshot records, so that a record is there only once every
 * pack it needs is. The records are listed before the packs: a snapshot's
 * packs were written before its record, so every pack a listed record needs
 * is in the pack listing. A shared lock keeps prune (exclusive) from taking a
 * pack between the listing and its copy.
 *
 * Nothing in `to` is ever replaced or deleted: it is append-only for this
 * writer, so a bucket with object lock serves, and what the source forgets
 * stays there until the target's own retention removes it. A `to` that holds
 * another repository is refused.
 */
export async function pushRepository(repo: Repository, to: Backend, opts: MirrorOptions = {}): Promise<MirrorReport> {
  const lock = repo.lock('shared');
  try {
    await claim(to, repo.id, repo.backend);
    const records = (await names(repo.backend, 'snapshot')).filter((f) => SNAPSHOT_ID.test(f.name));
    const packs = await names(repo.backend, 'pack');
    return await copyMissing(repo.backend, to, [['key', await names(repo.backend, 'key')], ['pack', packs], ['snapshot', records]], opts);
  } finally {
    lock.release();
  }
}

/**
 * Makes `dir` (absent or empty, or a fetch of the same repository left
 * unfinished) a local copy of the repository `from` holds, and its index from
 * the packs' trailers and the records: every command then works on it, with
 * the repository's password. Only what `dir` lacks is copied. The config
 * comes first, so an unfinished fetch is known for what it is; without its
 * index (made last) no command takes it for a repository yet.
 */
export async function fetchRepository(from: Backend, dir: string, opts: MirrorOptions = {}): Promise<MirrorReport & { readonly index: RebuildReport }> {
  const abs = path.resolve(dir);
  const config = await remoteConfig(from);
  if (!config) throw new ReplicaMismatchError(`${from.location} holds no repository (no config.json)`);
  const entries = await fsp.readdir(abs).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
  const local = new LocalBackend(abs);
  if (entries.length > 0 && (await remoteConfig(local))?.id !== config.id) throw new UsageError(`${abs} is not empty, nor an earlier fetch of repository ${config.id}: fetch into an empty or new directory`);
  for (const sub of ['', 'packs', 'snapshots', 'keys']) await fsp.mkdir(path.join(abs, sub), { recursive: true, mode: 0o700 });
  if (!(await local.stat('config', CONFIG))) await local.writeOnce('config', CONFIG, await from.read('config', CONFIG));
  const records = (await names(from, 'snapshot')).filter((f) => SNAPSHOT_ID.test(f.name));
  const packs = await names(from, 'pack');
  const copied = await copyMissing(from, local, [['key', await names(from, 'key')], ['pack', packs], ['snapshot', records]], opts);
  return { ...copied, index: await rebuildIndex(abs) };
}

/** Writes the repository's config to `to`, or checks that the one there is this repository's. */
async function claim(to: Backend, id: string, from: Backend): Promise<void> {
  const there = await remoteConfig(to);
  if (there?.id === id) return;
  if (there) throw new ReplicaMismatchError(`${to.location} holds repository ${there.id}, not ${id}: another repository, or this host's was made anew; give it another bucket or prefix`);
  await writeOnceOrThere(to, 'config', CONFIG, await from.read('config', CONFIG));
}

async function remoteConfig(b: Backend): Promise<{ id: string } | undefined> {
  if (!(await b.stat('config', CONFIG))) return undefined;
  let parsed;
  try {
    parsed = repositoryConfigSchema.safeParse(JSON.parse((await b.read('config', CONFIG)).toString('utf8')));
  } catch {
    parsed = undefined;
  }
  if (!parsed?.success) throw new ReplicaMismatchError(`${b.location} has a config.json that is not a Lifeboat repository's`);
  return parsed.data;
}

async function names(b: Backend, kind: FileKind): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const f of b.list(kind)) out.push(f);
  return out;
}

/** Copies, kind after kind, the files `to` lacks; `concurrency` at a time within a kind. */
async function copyMissing(from: Backend, to: Backend, kinds: readonly (readonly [FileKind, readonly FileInfo[]])[], opts: MirrorOptions): Promise<MirrorReport> {
  const counts = { keys: 0, packs: 0, snapshots: 0, bytes: 0 };
  const field = { key: 'keys', pack: 'packs', snapshot: 'snapshots' } as const;
  for (const [kind, files] of kinds) {
    const there = new Set((await names(to, kind)).map((f) => f.name));
    const todo = files.filter((f) => !there.has(f.name));
    let next = 0;
    let failed = false;
    const lane = async () => {
      try {
        while (next < todo.length && !failed) {
          opts.signal?.throwIfAborted();
          const f = todo[next++]!;
          await writeOnceOrThere(to, kind, f.name, await from.read(kind, f.name));
          counts[field[kind as keyof typeof field]]++;
          counts.bytes += f.size;
          opts.onFile?.(kind, f);
        }
      } catch (err) {
        failed = true; // the other lanes stop after the file they carry
        throw err;
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, lane));
  }
  return counts;
}

/** Files are named once (packs by random names, records by snapshot id): one already there of the same size is this one. */
async function writeOnceOrThere(to: Backend, kind: FileKind, name: string, data: Buffer): Promise<void> {
  try {
    await to.writeOnce(kind, name, data);
  } catch (err) {
    if (!(err instanceof FileExistsError) || (await to.stat(kind, name))?.size !== data.length) throw err;
  }
}
