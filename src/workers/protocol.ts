import type { SplitterSpec } from '../repo/splitter-spec.ts';

/**
 * Messages between the main thread and the repository workers. Workers read
 * and write files and packs themselves, so file contents and sealed blobs never
 * cross threads: messages carry paths, ids and pack trailers only.
 */
export interface WorkerInit {
  readonly enc: Uint8Array;
  readonly mac: Uint8Array;
  readonly level: number;
  readonly repoDir: string;
  readonly packSize: number;
}

/** A file, or a block-aligned range of one, to read into blocks. `end` null reads to EOF. */
export interface StoreItem {
  readonly path: string;
  readonly start: number;
  readonly end: number | null;
}

export interface StoreResult {
  /** Block ids in order, 32 bytes each. */
  readonly ids: Uint8Array;
  readonly bytesRead: number;
  /** Set when the file could not be read; the backup goes on without it. */
  readonly error: string | null;
}

/** Part of a file to write: `create` makes the file (size, truncate); `meta` is applied after the write. */
export interface RestoreItem {
  readonly path: string;
  readonly create: boolean;
  readonly size: number;
  readonly offset: number;
  readonly blocks: readonly string[];
  readonly meta: { readonly mode: number; readonly uid: number; readonly gid: number; readonly mtime: string } | null;
}

export interface RestoreResult {
  readonly bytesWritten: number;
  readonly error: string | null;
}

/** A pack a worker finished and fsynced: its trailer says what the index should record. */
export interface PackReport {
  readonly name: string;
  readonly size: number;
  readonly trailer: Uint8Array;
}

export type Job =
  | {
      readonly op: 'store';
      readonly splitter: SplitterSpec;
      readonly items: readonly StoreItem[];
      /** Packs the index now holds: their ids no longer need remembering. */
      readonly acks: readonly string[];
    }
  | { readonly op: 'flush' }
  | { readonly op: 'reset' }
  | { readonly op: 'restore'; readonly items: readonly RestoreItem[] }
  | { readonly op: 'check'; readonly pack: string };

export interface StoreReply {
  readonly results: readonly StoreResult[];
  readonly packs: readonly PackReport[];
}
export interface FlushReply {
  readonly packs: readonly PackReport[];
}
export interface RestoreReply {
  readonly results: readonly RestoreResult[];
}
export interface CheckReply {
  /** Ids (hex) of blobs that fail authentication or do not hash to their id. */
  readonly bad: readonly string[];
  readonly blobs: number;
}

export type Reply =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: { readonly code: string; readonly message: string } };
