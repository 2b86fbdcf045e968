import { taskModule, type WorkerPool } from '../workers/pool.ts';

/** The restore's task module, for a pool's modules (see worker-tasks.ts). */
export const RESTORE_TASKS = taskModule(import.meta.url, './worker-tasks');


/**
 * Part of a file to write. Either `create` names a file to make (exclusively,
 * never following a symlink), truncate to `size`, write and close; or `fd` is
 * a file the main thread holds open (a large file written in ranges by every
 * worker), written here and left open. `meta` is applied after the write.
 */
export interface RestoreItem {
  /** The entry's path in the target, for messages. */
  readonly path: string;
  /**
   * Where to create the file: on Linux `/proc/self/fd/<dirfd>/<name>`, under a
   * directory descriptor the main thread holds open until this item is done
   * (workers share the process's descriptors); elsewhere the plain path.
   */
  readonly create: string | null;
  readonly fd: number | null;
  readonly size: number;
  readonly offset: number;
  readonly blocks: readonly string[];
  readonly meta: { readonly mode: number; readonly uid: number; readonly gid: number; readonly mtime: string } | null;
}

export interface RestoreResult {
  readonly bytesWritten: number;
  readonly error: string | null;
}

export interface RestoreReply {
  readonly results: readonly RestoreResult[];
}

/** Writes files (or ranges of them) from their blocks on a worker. */
export function restoreFiles(pool: WorkerPool, items: readonly RestoreItem[]): Promise<RestoreReply> {
  return pool.run('restore', items);
}
